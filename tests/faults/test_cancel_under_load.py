"""Cancel under load: 20 real runs queued on two workers, every other one cancelled while
some are running and the rest queued. Exactly those end `cancelled`, the others pass, and
no process, workspace or job is left behind."""

from __future__ import annotations

import time

import pytest

from farm_lab.gearmand import Gearmand, status
from farm_lab.keystone import Keystone
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.checks import leftovers

from .conftest import submit

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
REGEX = r"tempest\.api\.identity\.v3\.test_tokens"
FINAL = {"passed", "failed", "error", "cancelled", "timed_out", "rejected"}


def states(server: FarmServer, ids: list[str]) -> dict[str, str]:
    return {tid: server.api("GET", f"/v1/tests/{tid}").json()["test"]["state"] for tid in ids}


def test_cancel_every_other_run_of_twenty(workers: WorkerFactory, server: FarmServer,
                                          gearmand: Gearmand, keystone: Keystone,
                                          tempest47: PrepareResult) -> None:
    pool = [server_worker(workers, server, f"load-{n}") for n in (1, 2)]
    ids = [f"load-{n:02d}" for n in range(20)]
    for tid in ids:
        submit(server, tid, keystone.tempest_conf(), REGEX)
    cancel = ids[1::2]
    end = time.monotonic() + 180
    while True:  # cancel when both workers run (load-00 and load-01), the rest queued
        now = states(server, ids)
        if list(now.values()).count("running") == 2:
            break
        assert time.monotonic() < end, now
        time.sleep(0.3)
    assert {now[t] for t in cancel} == {"running", "queued"}, now
    for tid in cancel:
        r = server.api("POST", f"/v1/tests/{tid}/cancel")
        assert r.status_code in (200, 202), (tid, r.text)  # 200: removed from the queue
    end = time.monotonic() + 900
    while set((final := states(server, ids)).values()) - FINAL:
        assert time.monotonic() < end, final
        time.sleep(1)
    assert {t for t, s in final.items() if s == "cancelled"} == set(cancel), final
    assert {final[t] for t in ids if t not in cancel} == {"passed"}, final
    history = server.api("GET", "/v1/tests/load-01").json()["history"]
    assert "running" in [h["state"] for h in history]  # a running one was cancelled
    for tid in ids[3::2]:  # and the queued ones never started
        history = server.api("GET", f"/v1/tests/{tid}").json()["history"]
        assert "running" not in [h["state"] for h in history], (tid, history)
    for w in pool:
        assert leftovers(w.work_dir) == [], w.worker_id
        assert w.proc.poll() is None
    # the monitor removes cancel jobs left after their test ended; nothing of ours stays
    # queued (the session's gearmand: other tests' jobs are not ours)
    end = time.monotonic() + 60
    while queued := {f: q for f, (q, _, _) in status(gearmand.port).items()
                     if q and (f == "tempest:run:47.0.0" or f.startswith("tempest:cancel:load-"))}:
        assert time.monotonic() < end, queued
        time.sleep(0.5)
