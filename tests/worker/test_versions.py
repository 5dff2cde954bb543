"""Version coverage: every shipped lock prepares and lists its tests through gearmand; a
real identity run on an older Tempest against the same Keystone."""

from __future__ import annotations

import pytest

from farm_lab.keystone import Keystone
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from farm_worker.protocol import run_function
from harness.gearclient import TestClient, summary, wait
from harness.payloads import valid

pytestmark = [pytest.mark.gearman, pytest.mark.tempest]
VERSIONS = ("33.0.0", "40.0.0", "47.0.0")


def test_every_shipped_version_lists_its_tests_through_gearmand(
        workers: WorkerFactory, client: TestClient, tempest33: PrepareResult,
        tempest40: PrepareResult, tempest47: PrepareResult) -> None:
    workers.start("multi", versions=VERSIONS, wait_for=run_function("33.0.0"))
    jobs = {v: client.submit(run_function(v), valid(test_id=f"all-{v}", tests={},
                                                    tempest={"version": v}))
            for v in VERSIONS}
    for version, job in jobs.items():
        doc = summary(wait(job, 300))
        assert doc["state"] == "passed", doc
        assert doc["tempest_version"] == version
        assert doc["total"] > 1000, doc


@pytest.mark.cloud
def test_older_tempest_runs_identity_smoke_against_keystone(
        workers: WorkerFactory, client: TestClient, keystone: Keystone,
        tempest40: PrepareResult) -> None:
    workers.start("old", versions=("40.0.0",), wait_for=run_function("40.0.0"))
    doc = summary(wait(client.submit(run_function("40.0.0"), valid(
        test_id="old-smoke", tempest={"version": "40.0.0"}, dry_run=False,
        conf=keystone.tempest_conf(), tests={"regex": r"tempest\.api\.identity\..*smoke"})),
        600))
    # Tempest 40 (2024) predates Keystone 30 (2026): one of its smoke tests sends fields the
    # newer API rejects (HTTP 400, "Additional properties are not allowed"). The farm must
    # report exactly that, with the traceback, and everything else passed.
    assert doc["state"] == "failed", doc
    assert doc["passed"] >= 10 and doc["failed"] == 1
    (failure,) = doc["failures"]
    assert "CredentialsTestJSON.test_credentials_create_get_update_delete" in failure["test"]
    assert "Additional properties are not allowed" in failure["detail"]
