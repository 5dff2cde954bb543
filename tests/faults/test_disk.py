"""100 mixed runs straight through gearmand - passed, failed, timed out, cancelled (queued
and running), rejected, and runs whose worker was killed - leave 0 workspaces, 0 per-job
environments (overlay mounts or copies), 0 partial results and 0 stray processes."""

from __future__ import annotations

import functools
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gear
import pytest

from farm_lab.loopback import Silent
from farm_lab.workers import TEMPEST, WorkerFactory, WorkerProcess
from farm_worker.environments import PrepareResult
from farm_worker.protocol import cancel_function, run_function
from harness.checks import leftovers, processes_under, wait_for_state
from harness.gearclient import TestClient, events, summary, wait
from harness.payloads import INVALID, valid

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.slow]
RUN = run_function(TEMPEST)
# dry runs list the tests and need no cloud; no credentials: nothing is ever called
CLOSED = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"},
          "auth": {"use_dynamic_credentials": False}}
# fails, whatever the machine's speed: setUpClass asks for a token where nothing listens
# and the connection is refused at once (port 9, discard, is never served here)
REFUSED = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"},
           "auth": {"use_dynamic_credentials": True, "admin_username": "admin",
                    "admin_password": "Refused-pw-5528", "admin_project_name": "admin",
                    "admin_domain_name": "Default"}}
TOKENS = r"tempest\.api\.identity\.v3\.test_tokens"


def worker_of(job: gear.Job) -> str | None:
    for ev in events(job):
        if ev["event"] == "state" and ev["state"] == "running":
            return str(ev["worker"])
    return None


def test_a_hundred_mixed_runs_leave_nothing_behind(
        workers: WorkerFactory, client: TestClient, hanging_cloud: Silent,
        hanging_clouds: Callable[[], Silent], tempest47: PrepareResult) -> None:
    """Each run's expected end is the only one it can reach: runs on `Silent.tempest_conf` are
    blocked on a cloud that never answers until they are killed (timed out or cancelled) or
    the cloud goes (failed), `REFUSED` runs fail on a refused connection, dry runs need no
    cloud. Only the runs that must end timed_out have a short timeout_s: they end so whether
    it expires while Tempest starts or while it waits on the cloud."""
    # no preflight: these runs are meant to reach Tempest with a cloud that hangs or refuses
    pool: dict[str, WorkerProcess] = {n: workers.start(n, preflight=False)
                                      for n in ("disk-a", "disk-b")}
    jobs: dict[str, gear.Job] = {}
    expected: dict[str, set[str]] = {}

    def run(tid: str, ends: set[str], **fields: Any) -> gear.Job:
        jobs[tid] = client.submit(RUN, valid(test_id=tid, **fields))
        expected[tid] = ends
        return jobs[tid]

    # killed workers: each worker in turn is SIGKILLed while it runs a job blocked on a
    # hanging cloud of its own (no timeout_s to race: the payload's 600 s); the job goes
    # back to gearmand, and the cloud is released (stopped): the second copy, on a live
    # worker, finds its connections closed or refused and fails. A worker started again on
    # the dead one's directory removes what it left
    for n in range(2):
        cloud = hanging_clouds()
        job = run(f"killed-{n}", {"failed"}, conf=cloud.tempest_conf(),
                  tests={"regex": TOKENS}, dry_run=False)
        wait_for_state(job, "running", 300)
        holder = worker_of(job)
        assert holder is not None
        cloud.wait_connected(ended=functools.partial(getattr, job, "complete"))
        assert processes_under(pool[holder].work_dir), "nothing runs under the worker"
        pool[holder].proc.send_signal(signal.SIGKILL)
        pool[holder].wait(10)
        cloud.stop()
        pool[holder] = workers.start(holder, preflight=False)
        assert "left by an earlier worker" in pool[holder].output()

    for i in range(30):  # rejected
        raw = INVALID[i % len(INVALID)][1]
        jobs[f"rejected-{i}"] = client.submit(RUN, raw)
        expected[f"rejected-{i}"] = {"rejected"}
    for i in range(34):  # passed (dry runs)
        run(f"dry-{i}", {"passed"}, conf=CLOSED, tests={"regex": TOKENS})
        if i < 10:  # failed: nothing listens where the cloud should be
            run(f"fail-{i}", {"failed"}, conf=REFUSED, tests={"regex": TOKENS}, dry_run=False)
        if i < 10:  # timed out: killed at timeout_s, starting or blocked on the cloud
            run(f"slow-{i}", {"timed_out"}, conf=hanging_cloud.tempest_conf(),
                tests={"regex": TOKENS}, dry_run=False, timeout_s=3)
        if i < 12:  # cancelled while queued: the cancel waits in gearmand
            run(f"cxl-{i}", {"cancelled"}, conf=hanging_cloud.tempest_conf(),
                tests={"regex": TOKENS}, dry_run=False)
            client.submit(cancel_function(f"cxl-{i}"), b"", background=True)
    for i in range(2):  # cancelled while running
        job = run(f"cxl-run-{i}", {"cancelled"}, conf=hanging_cloud.tempest_conf(),
                  tests={"regex": TOKENS}, dry_run=False)
        wait_for_state(job, "running", 600)
        wait(client.submit(cancel_function(f"cxl-run-{i}"), b""), 30)
    assert len(jobs) == 100

    ends = {tid: summary(wait(job, 900))["state"] for tid, job in jobs.items()}
    wrong = {tid: end for tid, end in ends.items() if end not in expected[tid]}
    assert wrong == {}, wrong
    print("100 mixed runs:", dict(Counter(ends.values())))
    for w in pool.values():
        assert w.proc.poll() is None, w.output()[-3000:]
        assert leftovers(w.work_dir) == [], w.worker_id  # workspaces, overlays, processes
        results = Path(w.work_dir.parent / "results")
        assert not list(results.glob(".*.part")), w.worker_id
