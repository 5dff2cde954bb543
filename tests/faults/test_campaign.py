"""A small campaign through the whole farm with its faults in the middle (the fault-suite
version of `bench/campaign.py --faults`): two gearmand (persistent queues), two status
servers on one real PostgreSQL, three worker processes on two "hosts" (work directories),
every one given both gearmand and both servers. Real identity runs against the Keystone
keep the workers busy while dry runs queue behind them; then, while runs are queued and
running: kill -9 of one gearmand, of one status server (every process of it), of one
worker host's processes (its Tempest included), each started again as systemd would.

Goals: every run ends exactly once in a final state (one final state applied in its
history, one worker saying it), none lost, none completed twice against the cloud; the
store and both gearmand agree at the end (nothing queued or running in either); nothing
left under any worker's directory."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from farm_lab.keystone import Keystone
from farm_lab.pool import Pool
from farm_lab.server import FarmServer
from farm_worker.environments import PrepareResult
from harness.checks import leftovers, processes_under
from harness.postgres import Postgres

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
FINAL = {"passed", "failed", "error", "cancelled", "timed_out", "rejected"}
DUMMY = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}
TOKENS = r"tempest\.api\.identity\.v3\.test_tokens"
REAL, DRY = 6, 40


def wait_until(what: str, check: Any, timeout_s: float = 600, every_s: float = 0.2) -> Any:
    end = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"{what}: not after {timeout_s} s"
        time.sleep(every_s)


def test_a_campaign_through_kill_9_of_gearmand_server_and_worker_host(
        tmp_path: Path, keystone: Keystone, postgres: Postgres, worker_cache: Path,
        tempest47: PrepareResult) -> None:
    pool = Pool(tmp_path, postgres.new_database(), worker_cache,
                server_extra={"stale_after_s": 10, "monitor_interval_s": 1})
    pool.start()
    try:
        g1 = pool.gearmands[0]
        a, b = pool.servers
        versions = ["47.0.0"]
        real = [f"c-real-{n}" for n in range(REAL)]
        dry = [f"c-dry-{n:02d}" for n in range(DRY)]

        def submit(tid: str, via: FarmServer) -> None:
            fields: dict[str, Any] = {"dry_run": True, "conf": DUMMY} if tid in dry else \
                {"conf": keystone.tempest_conf()}
            r = via.api("POST", "/v1/tests", json={
                "test_id": tid, "tempest": {"version": "47.0.0"}, "tests": {"regex": TOKENS},
                **fields})
            assert r.status_code == 201, r.text

        def state(tid: str) -> str:
            return str(a.api("GET", f"/v1/tests/{tid}").json()["test"]["state"])

        # host h2 takes the first real run; the others queue behind host h1's two slots
        victim = pool.worker("h2", 1, versions)
        submit(real[0], a)
        wait_until("Tempest running on host h2", lambda: processes_under(victim.work_dir))
        for slot in (1, 2):
            pool.worker("h1", slot, versions)
        for n, tid in enumerate(real[1:] + dry):
            submit(tid, (b, a)[n % 2])

        pool.kill_host("h2")  # every process of host h2: the worker, its Tempest
        pool.worker("h2", 1, versions)  # started again on the same directories (systemd)
        wait_until("both slots of h1 running a real run",
                   lambda: sum(state(t) == "running" for t in real[1:]) == 2)
        queued = pool.queued()
        g1.kill()  # kill -9 with jobs on its persistent queue and running
        time.sleep(1)
        g1.start()
        b.kill()  # every process of it: gunicorn's master and workers, its monitor
        time.sleep(1)
        b.serve()

        docs: dict[str, Any] = wait_until(
            "every run final",
            lambda: (lambda d: d if all(x["test"]["state"] in FINAL for x in d.values())
                     else None)({t: a.api("GET", f"/v1/tests/{t}").json()
                                 for t in real + dry}),
            timeout_s=1200, every_s=1)
        wait_until("nothing queued or running in either gearmand",
                   lambda: pool.queued() == 0, timeout_s=300)
        logs = "".join(w.output() for w in pool.workers.values())
        for tid, doc in docs.items():
            test = doc["test"]
            finals = [h for h in doc["history"] if h["applied"] and h["state"] in FINAL]
            assert len(finals) == 1, (tid, doc["history"])
            passed = re.findall(rf"\[test {tid}\] passed\b", logs)
            # a copy the server stopped (gearmand handed the job out again) says so
            errors = len(re.findall(rf"\[test {tid}\] error\b", logs))
            assert errors <= len(re.findall(rf"\[test {tid}\] not taken by the server",
                                            logs)), (tid, errors)
            if tid in dry:
                assert test["state"] == "passed", doc
            else:
                assert test["state"] == "passed" or (
                    tid == real[0] and "worker lost" in test["message"]), doc
            # once against the cloud: one copy ran to its end (and none after it)
            assert len(passed) == (1 if test["state"] == "passed" else 0), (tid, passed)
        # the store agrees: nothing it holds is waiting for a worker any more
        listed = a.api("GET", "/v1/tests", params={"limit": 500}).json()["tests"]
        assert {t["state"] for t in listed} <= FINAL
        for w in pool.workers.values():
            assert leftovers(w.work_dir) == [], w.worker_id
        print(f"campaign: {REAL} real + {DRY} dry runs, {queued} queued or running at the "
              "faults; all final once, none lost")
    finally:
        pool.stop()
