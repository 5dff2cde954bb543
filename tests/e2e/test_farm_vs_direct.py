"""The farm's main job end to end, as `make demo` runs it: `farm-server serve` on SQLite, a worker
with Tempest 47.0.0, a real Keystone, `farm submit --wait` of the identity API tests
through the server. In the same test the same Tempest runs the same selection against the
same Keystone directly (`tempest run`, no farm): the counts must be equal. Both wall times
are printed; their ratio is a figure for the README, not an assertion.

The same run with the conf discovered by python-tempestconf: from credentials only it
passes; with what keystone.conf sets and no API shows (the security compliance rules) added
as overrides, it counts what the hand-written conf counts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.direct import direct_run
from harness.farmcli import farm

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
REGEX = r"^tempest\.api\.identity"


Counts = tuple[int, int, int]


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory, keystone: Keystone,
           tempest47: PrepareResult) -> tuple[Counts, float]:
    """Plain `tempest run` of the selection with the hand-written conf: counts, seconds."""
    started = time.monotonic()
    c = direct_run(Path(tempest47.template), keystone.tempest_conf(),
                   tmp_path_factory.mktemp("direct"), ["--regex", REGEX]).counts()
    return (c.passed, c.failed, c.skipped), time.monotonic() - started


def run_through_the_farm(tmp_path: Path, server: FarmServer, test_id: str,
                         conf: dict[str, Any], *extra: str) -> tuple[Counts, float]:
    path = tmp_path / f"{test_id}.json"
    path.write_text(json.dumps(conf))
    env = {"FARM_SERVER_URL": server.url, "FARM_TOKEN": server.user_token}
    started = time.monotonic()
    r = farm(tmp_path, "submit", "--tempest", "47.0.0", "--conf", str(path), "--regex", REGEX,
             "--test-id", test_id, "--wait", *extra, env=env, timeout_s=1800)
    seconds = time.monotonic() - started
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert ADMIN_PASSWORD not in r.stdout + r.stderr
    summary = server.api("GET", f"/v1/tests/{test_id}").json()["test"]["summary"]
    return (summary["passed"], summary["failed"], summary["skipped"]), seconds


def test_the_farm_counts_what_tempest_counts(tmp_path: Path, server: FarmServer,
                                             workers: WorkerFactory, keystone: Keystone,
                                             direct: tuple[Counts, float]) -> None:
    workers.start("e2e", callbacks=[{"url": server.url, "token": server.worker_token}])
    farm_counts, farm_s = run_through_the_farm(tmp_path, server, "e2e-identity",
                                               keystone.tempest_conf())
    direct_counts, direct_s = direct
    print(f"\nfarm: {farm_counts} in {farm_s:.1f} s; direct tempest run: "
          f"{tuple(direct_counts)} in {direct_s:.1f} s; ratio {farm_s / direct_s:.2f}")
    assert farm_counts == direct_counts
    assert farm_counts[0] >= 100 and farm_counts[1] == 0
    assert ADMIN_PASSWORD not in server.log.read_text()


def test_a_discovered_conf_counts_what_the_hand_written_one_does(
        tmp_path: Path, server: FarmServer, workers: WorkerFactory, keystone: Keystone,
        direct: tuple[Counts, float]) -> None:
    workers.start("e2e-disc", callbacks=[{"url": server.url, "token": server.worker_token}])
    credentials = {"identity": {"uri_v3": f"{keystone.public_url}/v3"},
                   "auth": {k: v for k, v in keystone.tempest_conf()["auth"].items()
                            if k != "admin_system"}}
    # credentials only: it passes; what differs is what only keystone.conf says
    alone, _ = run_through_the_farm(tmp_path, server, "e2e-discover-only", credentials,
                                    "--discover")
    assert alone[0] >= 100 and alone[1] == 0, alone
    kept = farm(tmp_path, "results", "e2e-discover-only", "--conf",
                env={"FARM_SERVER_URL": server.url, "FARM_TOKEN": server.user_token})
    assert kept.returncode == 0, kept.stderr
    assert "[identity-feature-enabled]\napi_v2 = False\napi_v3 = True\n" in kept.stdout
    assert "admin_password = <removed>\n" in kept.stdout
    assert "security_compliance" not in kept.stdout and ADMIN_PASSWORD not in kept.stdout
    # with those few options as overrides, the counts are the hand-written conf's
    policy = keystone.policy_conf()
    overrides = {**credentials, "identity": {**credentials["identity"], **policy["identity"]},
                 "identity-feature-enabled": policy["identity-feature-enabled"]}
    with_policy, seconds = run_through_the_farm(tmp_path, server, "e2e-discover", overrides,
                                                "--discover")
    added = sum(map(len, policy.values()))
    print(f"\ndiscovered: {alone} (credentials only), {with_policy} (+ {added} keystone.conf "
          f"options) in {seconds:.1f} s; hand-written, direct: {direct[0]}")
    assert with_policy == direct[0]
