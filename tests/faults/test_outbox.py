"""Nothing lost when the status server is away: the workers' durable outboxes.

The status server is stopped for longer than a worker's fetch retries (`report_retry_s`,
made small here) while 5 runs end on 2 workers; one worker is restarted during the outage
and the other `kill -9`ed right after a run ends, then started again. When the server is
back every state and every result arrives exactly once and the outboxes are empty; while
it is away the outboxes hold no password and no token. Then a server that answers 500 for
a while (the entries wait and go), and one that answers 400 to an entry (set aside, not
retried forever)."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from farm_lab.gearmand import Gearmand, status
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import TEMPEST, WorkerFactory, WorkerProcess
from farm_worker.environments import PrepareResult
from farm_worker.protocol import run_function
from harness.checks import leftovers
from harness.gearclient import TestClient, summary, wait
from harness.payloads import valid
from harness.recorder import Recorder

from .conftest import submit

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
FINAL = {"passed", "failed", "error", "cancelled", "timed_out", "rejected"}
TOKENS = r"tempest\.api\.identity\.v3\.test_tokens"
DUMMY = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}
# small retries: the outage lasts much longer than any of them
RETRY_S = 2
FAST: dict[str, Any] = {"report_retry_s": RETRY_S, "report_backoff_max_s": 1, "report_flush_s": 1}
ENDED = re.compile(r"\[test (o-\d)\] (passed|failed|error)\b")


ALL = {f"o-{i}" for i in range(1, 6)}


def ended_on(w: WorkerProcess) -> set[str]:
    return {m.group(1) for m in ENDED.finditer(w.output())}


def ended_on_any(pool: dict[str, WorkerProcess]) -> set[str]:
    return set().union(*map(ended_on, pool.values()))


def wait_until(what: str, cond: object, timeout_s: float = 300) -> None:
    end = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, f"never: {what}"
        time.sleep(0.1)


def owed(*bases: Path) -> list[Path]:
    return [p for b in bases for p in (b / "outbox").rglob("*.json")]


def test_an_outage_with_restarts_loses_nothing_and_stores_once(
        tmp_path: Path, gearmand: Gearmand, workers: WorkerFactory, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    server = FarmServer(tmp_path / "server", [gearmand.address]).start()
    pool: dict[str, WorkerProcess] = {}
    try:
        for name in ("wa", "wb"):
            pool[name] = server_worker(workers, server, name, **FAST)
        for tid in ("o-1", "o-2"):  # real runs: they pass during the outage
            submit(server, tid, keystone.tempest_conf(), TOKENS)
        for tid in ("o-1", "o-2"):
            server.wait_state(tid, {"running"})
        for tid in ("o-3", "o-4", "o-5"):  # queued: they end error, their conf out of reach
            submit(server, tid, DUMMY, "tempest.api.identity.v3", dry_run=True)
        server.stop()
        down = time.monotonic()

        # wa: restarted (drained) once it has ended a run
        wait_until("a run ends on wa", lambda: ended_on(pool["wa"]))
        pool["wa"].stop()
        assert re.search(r"stopped after \d+ jobs; [1-9]\d* entries left in its outbox",
                         pool["wa"].output())
        pool["wa"] = server_worker(workers, server, "wa", **FAST)
        pool["wa"].wait_for(r"entries \(\d+ bytes\) owed by an earlier process; delivering")
        # all five end while the server is away (the queued ones cannot get their conf);
        # wb is kill -9ed the moment the last one has ended (gearmand has it complete: no
        # job of ours is handed to another worker), and started again
        run = run_function(TEMPEST)
        wait_until("all five end", lambda: ended_on_any(pool) == ALL
                   and status(gearmand.port).get(run, (0, 0, 0))[0] == 0)
        pool["wb"].proc.kill()
        pool["wb"].proc.wait()
        pool["wb"].stop()  # what a killed worker may leave: its Tempest, its mounts
        pool["wb"] = server_worker(workers, server, "wb", **FAST)
        pool["wb"].wait_for(r"entries \(\d+ bytes\) owed by an earlier process; delivering")
        bases = [w.work_dir.parent for w in pool.values()]
        held = owed(*bases)
        assert len(held) >= 10, held  # at least each run's installing and final state
        on_disk = b"".join(p.read_bytes() for b in bases for p in (b / "outbox").rglob("*")
                           if p.is_file())
        for secret in (ADMIN_PASSWORD, server.worker_token):
            assert secret.encode() not in on_disk
        # longer than the old give-up (report_retry_s), several times
        time.sleep(max(0.0, RETRY_S * 5 - (time.monotonic() - down)))
        server.serve()
        back = time.monotonic()

        docs = {tid: server.wait_state(tid, FINAL, 300) for tid in sorted(ALL)}
        wait_until("the outboxes are empty", lambda: not owed(*bases), 300)
        print(f"outbox: server down {back - down:.0f} s, {len(held)} entries owed; all "
              f"delivered {time.monotonic() - back:.0f} s after it came back")
        for tid in ("o-1", "o-2"):
            assert docs[tid]["test"]["state"] == "passed", docs[tid]["test"]
            results = server.api("GET", f"/v1/tests/{tid}/results").json()["results"]
            assert len(results) == docs[tid]["test"]["summary"]["passed"] == 3  # once
        for tid in ("o-3", "o-4", "o-5"):
            test = docs[tid]["test"]
            assert test["state"] == "error" and "get-miniconf" in test["message"], test
        for tid, doc in docs.items():
            worker_states = Counter(h["state"] for h in doc["history"]
                                    if h["source"] == "worker" and h["state"] != "running")
            # each state report once, though the killed and restarted workers sent again
            # what they could not know was taken
            assert set(worker_states.values()) == {1}, (tid, doc["history"])
            applied = [h["state"] for h in doc["history"] if h["applied"]]
            assert sum(s in FINAL for s in applied) == 1, (tid, applied)
        for w in pool.values():
            aside = w.work_dir.parent / "outbox" / w.worker_id / "set-aside"
            assert not aside.exists() or list(aside.iterdir()) == []
            assert "reports abandoned" not in w.output()
            assert leftovers(w.work_dir) == []
    finally:
        for w in pool.values():
            w.stop()
        server.stop()


def test_a_server_answering_500_then_400_to_one_entry(
        tmp_path: Path, workers: WorkerFactory, client: TestClient, recorder: Recorder,
        tempest47: PrepareResult) -> None:
    """Straight through gearmand to a callback server that fails: a run of 500s is waited
    out, the entries go in order once it answers; a 400 sets that entry aside, and the
    ones after it go."""
    w = workers.start("w500", report_retry_s=RETRY_S, report_backoff_max_s=1,
                      report_flush_s=1)
    run = run_function(TEMPEST)
    recorder.fail_status, recorder.fail_next = 500, 20
    job = client.submit(run, valid(test_id="s-500", callback={"url": recorder.url}))
    assert summary(wait(job, 300))["state"] == "passed"
    wait_until("the 500s are waited out", lambda: recorder.states("s-500") == [
        "installing", "passed"], 300)
    assert [r.answered for r in recorder.requests][:20] == [500] * 20
    ids = [r["report_id"] for r in recorder.status_reports("s-500") if "report_id" in r]
    assert len(ids) == len(set(ids))  # each delivered once it was answered

    recorder.fail_status, recorder.fail_next = 400, 1  # the first report of the next run
    job = client.submit(run, valid(test_id="s-400", callback={"url": recorder.url}))
    assert summary(wait(job, 300))["state"] == "passed"
    wait_until("the rest of s-400 arrives", lambda: recorder.states("s-400") == ["passed"])
    box = w.work_dir.parent / "outbox" / "w500"
    wait_until("nothing owed", lambda: not list(box.glob("*.json")))
    [kept] = (box / "set-aside").glob("*.json")
    assert '"installing"' in kept.read_text()
    assert "HTTP 400" in kept.with_suffix(".why").read_text()
    w.wait_for(r"set aside in .*set-aside: status installing of test s-400 .*HTTP 400")
    assert sum(r.answered == 400 for r in recorder.requests) == 1  # not retried
