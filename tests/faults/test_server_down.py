"""The status server goes down while a worker reports: the worker retries, the running
Tempest finishes, the next runs wait for their configuration, and once the server is back
every state and every result reaches it, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from farm_lab.gearmand import Gearmand
from farm_lab.keystone import Keystone
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.checks import leftovers

from .conftest import submit

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
FINAL = {"passed", "failed", "error", "cancelled", "timed_out", "rejected"}
DUMMY = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}


def test_server_down_while_the_worker_reports(tmp_path: Path, gearmand: Gearmand,
                                              workers: WorkerFactory, keystone: Keystone,
                                              tempest47: PrepareResult) -> None:
    server = FarmServer(tmp_path / "server", [gearmand.address]).start()
    try:
        w = server_worker(workers, server, "sd", report_flush_s=2)
        submit(server, "sd-run", keystone.tempest_conf(),
               r"tempest\.api\.identity\.v3\.test_tokens")
        for tid in ("sd-dry-1", "sd-dry-2"):
            submit(server, tid, DUMMY, "tempest.api.identity.v3", dry_run=True)
        server.wait_state("sd-run", {"running"})
        server.stop()
        down = time.monotonic()
        # Tempest finishes without the server; the job ends with its last reports pending
        w.wait_for(r"\[test sd-run\] passed")
        w.wait_for(r"\[test sd-run\] \d+ reports not delivered: they stay in the outbox")
        w.wait_for(r"GET get-miniconf: ConnectionError")  # the next job waits
        time.sleep(max(0.0, 10 - (time.monotonic() - down)))
        server.serve()
        back = time.monotonic()

        docs = {}
        for tid in ("sd-run", "sd-dry-1", "sd-dry-2"):
            docs[tid] = server.wait_state(tid, FINAL, 180)
            assert docs[tid]["test"]["state"] == "passed", docs[tid]["test"]
        print(f"server down {back - down:.0f} s: all final {time.monotonic() - back:.0f} s "
              "after it came back")
        run = docs["sd-run"]
        applied = [h["state"] for h in run["history"] if h["applied"]]
        assert applied[-2:] == ["uploading", "passed"] and applied.count("passed") == 1
        results = server.api("GET", "/v1/tests/sd-run/results").json()["results"]
        assert len(results) == run["test"]["summary"]["passed"] == 3  # stored once
        assert "reports of ended jobs" not in w.output()  # nothing waited for at exit
        assert "report lost" not in w.output() and "abandoned" not in w.output()
        assert leftovers(w.work_dir) == []
    finally:
        server.stop()
