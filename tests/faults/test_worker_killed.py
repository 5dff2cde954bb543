"""A worker killed (SIGKILL) mid-run: gearmand hands the job to another worker and the
test runs again; when gearmand gives up on the job (-j), the monitor ends the test
`error` ("worker lost") within the stale deadline. Either way the dead worker's workspace,
job environment and Tempest processes are gone once a worker starts again on its host."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from farm_lab.gearmand import running as running_gearmand
from farm_lab.keystone import Keystone
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import WorkerFactory, WorkerProcess
from farm_worker.environments import PrepareResult
from harness.checks import leftovers, processes_under

from .conftest import submit

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
SMOKE = r"tempest\.api\.identity\..*smoke"
FINAL = {"passed", "failed", "error", "cancelled", "timed_out", "rejected"}


def kill_mid_run(server: FarmServer, worker: WorkerProcess, test_id: str) -> None:
    """SIGKILL the worker once its Tempest run has started (its processes run under the
    worker's directory, beside the job's overlay)."""
    server.wait_state(test_id, {"running"})
    end = time.monotonic() + 60
    while not processes_under(worker.work_dir):
        assert time.monotonic() < end, "nothing ran under the worker's directory"
        assert server.api("GET", f"/v1/tests/{test_id}").json()["test"]["state"] == "running"
        time.sleep(0.05)
    worker.proc.send_signal(signal.SIGKILL)
    worker.wait(10)


def test_a_killed_worker_is_noticed_and_the_test_runs_again(
        workers: WorkerFactory, server: FarmServer, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    first = server_worker(workers, server, "srv-dies")
    submit(server, "srv-lost-1", keystone.tempest_conf(), SMOKE)
    kill_mid_run(server, first, "srv-lost-1")
    # gearmand queues the job again; the monitor (stale after 3 s) says so
    doc = server.wait_state("srv-lost-1", {"queued"}, 60)
    assert "the worker was lost" in doc["test"]["message"]
    second = server_worker(workers, server, "srv-second")
    doc = server.wait_state("srv-lost-1", FINAL)
    assert doc["test"]["state"] == "passed" and doc["test"]["worker"] == "srv-second"
    # the dead worker's leftovers go when a worker starts again on its directory
    restarted = server_worker(workers, server, "srv-dies")
    assert leftovers(restarted.work_dir) == []
    assert "left by an earlier worker" in restarted.output()
    assert second.proc.poll() is None


def test_a_job_gearmand_gives_up_on_ends_worker_lost(
        tmp_path: Path, workers: WorkerFactory, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    with running_gearmand(tmp_path / "gearmand", retries=1) as gearmand:
        server = FarmServer(tmp_path / "server", [gearmand.address],
                            extra={"stale_after_s": 3, "monitor_interval_s": 1}).start()
        try:
            worker = server_worker(workers, server, "gives-up", gearman=[gearmand.address])
            submit(server, "lost-2", keystone.tempest_conf(), SMOKE)
            kill_mid_run(server, worker, "lost-2")
            killed = time.monotonic()
            doc = server.wait_state("lost-2", FINAL, 60)
            assert doc["test"]["state"] == "error", doc["test"]
            assert doc["test"]["message"].startswith("worker lost:"), doc["test"]
            lost_after = time.monotonic() - killed
            # stale_after_s and a few monitor passes, not gearmand's nor a run's timeout:
            # 3 s here, under 30 s on a loaded machine
            assert lost_after < 3 + 30, lost_after
            print(f"worker killed, job dropped by gearmand: error after {lost_after:.1f} s "
                  "(stale_after_s=3)")
            restarted = server_worker(workers, server, "gives-up", gearman=[gearmand.address])
            assert leftovers(restarted.work_dir) == []
        finally:
            server.stop()
