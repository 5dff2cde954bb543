"""A Tempest that stops producing output (its cloud accepts connections and never answers)
is killed at the job's timeout_s and ends `timed_out`, leaving nothing behind."""

from __future__ import annotations

import time

import pytest

from farm_worker.environments import PrepareResult
from harness.checks import leftovers, processes_under
from harness.loopback import Silent
from harness.server import FarmServer
from harness.workers import WorkerFactory

from .conftest import server_worker, submit

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.slow]
TIMEOUT_S = 20


def test_a_hung_tempest_is_killed_at_timeout_s(workers: WorkerFactory, server: FarmServer,
                                               hanging_cloud: Silent,
                                               tempest47: PrepareResult) -> None:
    w = server_worker(workers, server, "hung")
    conf = {"identity": {"uri_v3": f"http://127.0.0.1:{hanging_cloud.port}/v3"},
            "auth": {"use_dynamic_credentials": True, "admin_username": "admin",
                     "admin_password": "Hung-pw-9431", "admin_project_name": "admin",
                     "admin_domain_name": "Default"}}
    started = time.monotonic()
    submit(server, "hung-1", conf, r"tempest\.api\.identity\.v3\.test_tokens",
           timeout_s=TIMEOUT_S)
    server.wait_state("hung-1", {"running"}, 120)
    doc = server.wait_state("hung-1", {"passed", "failed", "error", "timed_out"}, 120)
    took = time.monotonic() - started
    assert doc["test"]["state"] == "timed_out", doc["test"]
    assert f"timeout_s={TIMEOUT_S}" in doc["test"]["message"]
    assert hanging_cloud.conns, "Tempest never reached the hanging cloud"
    assert TIMEOUT_S <= took < TIMEOUT_S + 30, took
    print(f"hung Tempest: timeout_s={TIMEOUT_S}, timed_out {took:.1f} s after submit")
    summary = doc["test"]["summary"]
    assert summary["passed"] == summary["failed"] == 0, summary
    assert leftovers(w.work_dir) == []
    assert processes_under(w.work_dir) == []
    assert w.proc.poll() is None
