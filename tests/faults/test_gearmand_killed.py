"""gearmand killed (kill -9) with 50 runs queued on its persistent queue (libsqlite3) and
one running: after the restart every queued run runs exactly once, the running one ends in
a final state, and the server's store agrees with what the workers ran."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from farm_lab.gearmand import running as running_gearmand
from farm_lab.gearmand import status
from farm_lab.keystone import Keystone
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.checks import leftovers

from .conftest import submit

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
FINAL = {"passed", "failed", "error", "cancelled", "timed_out", "rejected"}
DUMMY = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}
QUEUED = 50


def test_gearmand_killed_with_fifty_queued_and_one_running(
        tmp_path: Path, workers: WorkerFactory, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    with running_gearmand(tmp_path / "gearmand") as gearmand:
        server = FarmServer(tmp_path / "server", [gearmand.address],
                            extra={"stale_after_s": 5, "monitor_interval_s": 1}).start()
        try:
            first = server_worker(workers, server, "gk-a", gearman=[gearmand.address])
            submit(server, "gk-long", keystone.tempest_conf(),
                   r"tempest\.api\.identity\.v3\.test_tokens")
            server.wait_state("gk-long", {"running"})
            ids = [f"gk-{n:02d}" for n in range(QUEUED)]
            for tid in ids:
                submit(server, tid, DUMMY, "tempest.api.identity.v3.test_tokens", dry_run=True)
            assert status(gearmand.port)["tempest:run:47.0.0"][:2] == (QUEUED + 1, 1)

            gearmand.kill()
            time.sleep(1)
            gearmand.start()
            restarted = time.monotonic()
            second = server_worker(workers, server, "gk-b", gearman=[gearmand.address])

            end = time.monotonic() + 900
            docs: dict[str, Any] = {}
            while True:
                docs = {t: server.api("GET", f"/v1/tests/{t}").json()
                        for t in [*ids, "gk-long"]}
                if all(d["test"]["state"] in FINAL for d in docs.values()):
                    break
                assert time.monotonic() < end, {t: d["test"]["state"] for t, d in docs.items()}
                time.sleep(1)
            drained = time.monotonic() - restarted
            # nothing of ours queued or running in gearmand any more: no copy of a job can
            # start after this, so the logs below hold every run there will be
            end = time.monotonic() + 120
            while True:
                queue = status(gearmand.port)
                if not any(q for q, _, _ in queue.values()):
                    break
                assert time.monotonic() < end, queue
                time.sleep(0.5)

            logs = first.output() + second.output()
            for tid in ids:
                assert docs[tid]["test"]["state"] == "passed", docs[tid]
                started = re.findall(rf"\[test {tid}\] installing", logs)
                assert len(started) == 1, (tid, started)  # ran exactly once
                # one claim by a worker; the monitor never submitted it again (a dry run
                # on a loaded machine can be silent for stale_after_s: the monitor asks
                # gearmand about it by test id, and never resubmits a running test)
                history = docs[tid]["history"]
                claims = [h for h in history if h["applied"] and h["source"] == "worker"
                          and h["state"] == "installing"]
                assert len(claims) == 1, history
                assert not [h for h in history if "resubmitted" in h["message"]], history
            # the running one: gearmand reloads it from its queue and hands it out again;
            # one copy runs to the end, the other is told to stop by the server (the
            # second claim supersedes the first; a copy of an ended test stops at once)
            long = docs["gk-long"]["test"]
            assert long["state"] == "passed", long
            copies = len(re.findall(r"\[test gk-long\] installing", logs))
            stopped = re.findall(r"\[test gk-long\] (superseded|stopped): .*", logs)
            assert len(stopped) == copies - 1, (copies, stopped)
            results = server.api("GET", "/v1/tests/gk-long/results").json()["results"]
            assert len(results) == long["summary"]["passed"] + long["summary"]["skipped"] == 3
            holder = {"gk-a": first, "gk-b": second}[long["worker"]]
            assert "[test gk-long] passed" in holder.output()  # the store has the run it holds
            # a copy the other worker took was stopped (the second copy may as well have gone
            # to the holder itself, once its first copy ended: then the other saw none)
            for other in [w for w in (first, second) if w is not holder]:
                if "[test gk-long]" in other.output():
                    assert re.search(r"\[test gk-long\] (cancelled|not taken by the server): "
                                     r"(superseded|stopped)", other.output()), other.output()
            print(f"gearmand kill -9: {QUEUED} queued ran once each, all final "
                  f"{drained:.0f} s after the restart; the running one: {copies} copies, "
                  f"{len(stopped)} stopped by the server")
            for w in (first, second):
                assert w.proc.poll() is None and leftovers(w.work_dir) == []
        finally:
            server.stop()
