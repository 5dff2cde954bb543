"""A Tempest that stops producing output (its cloud accepts connections and never answers)
is killed at the job's timeout_s and ends `timed_out`, leaving nothing behind."""

from __future__ import annotations

import time

import pytest

from farm_lab.loopback import Silent
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.checks import leftovers, processes_under

from .conftest import submit

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.slow]
TIMEOUT_S = 45  # Tempest reaches the cloud in seconds; ten times that on a loaded machine


def test_a_hung_tempest_is_killed_at_timeout_s(workers: WorkerFactory, server: FarmServer,
                                               hanging_cloud: Silent,
                                               tempest47: PrepareResult) -> None:
    w = server_worker(workers, server, "hung", preflight=False)  # Tempest meets the hang
    started = time.monotonic()
    submit(server, "hung-1", hanging_cloud.tempest_conf(),
           r"tempest\.api\.identity\.v3\.test_tokens", timeout_s=TIMEOUT_S)
    server.wait_state("hung-1", {"running"}, 300)
    doc = server.wait_state("hung-1", {"passed", "failed", "error", "timed_out"}, 300)
    took = time.monotonic() - started
    assert doc["test"]["state"] == "timed_out", doc["test"]
    assert f"timeout_s={TIMEOUT_S}" in doc["test"]["message"]
    assert hanging_cloud.conns, "Tempest never reached the hanging cloud"
    # the deadline starts once the tests are listed; after it: the kill (at most
    # KILL_GRACE_S), the cleanup and the last report. Without the kill the run would wait
    # a day (Silent.tempest_conf), so an end well before that can only be the timeout
    assert TIMEOUT_S <= took < TIMEOUT_S + 90, took
    print(f"hung Tempest: timeout_s={TIMEOUT_S}, timed_out {took:.1f} s after submit")
    summary = doc["test"]["summary"]
    assert summary["passed"] == summary["failed"] == 0, summary
    assert leftovers(w.work_dir) == []
    assert processes_under(w.work_dir) == []
    assert w.proc.poll() is None
