"""A campaign through the whole farm: many dry runs over three Tempest versions, with 1, 2,
4 and 8 worker processes on four booted hosts, two gearmand and two status servers on one
PostgreSQL.

    .venv/bin/python bench/campaign.py [--runs 1000] [--workers 1,2,4,8] [--faults] [--local]

The hosts are the harness's systemd-nspawn machines (tests/harness/hostpool.py): h1-h4, each
booted with systemd in its own network namespace, each worker slot a systemd unit there (N
workers are slots h1-1, h2-1, h3-1, h4-1, h1-2, ...). Two gearmand (persistent queues) and
two `farm-server serve` sharing one real PostgreSQL run on this machine, relayed into the
hosts' network; every worker is given both gearmand and both servers, and serves 33.0.0,
40.0.0 and 47.0.0 from the worker cache, which the hosts see read-only (prepare it first:
`make bench-campaign` does). --local runs the workers as processes on this machine
instead (a directory per "host"), for a machine without systemd-nspawn.

For each worker count, --runs dry runs of `tempest.api.identity` (the versions in turn) are
submitted through both servers (4 client threads), and the bench waits until every one has
ended. From the store (the API's timestamps): runs per minute, submit-to-start
(`started_at`) and submit-to-final (`finished_at`) p50 and p99. From /proc: the CPU of the
farm's own processes (both gearmand, both servers: gunicorn's processes and the monitors)
per run, as a share of the workers' CPU (the worker processes and their children), and
PostgreSQL's. The relays into the hosts' network (socat) are the harness's, counted in
neither. The last line: throughput at N workers as a ratio of 1 worker's.

--faults: one campaign at the largest worker count with the faults of the fault suite in
the middle: `kill -9` of one gearmand when a third of the runs have ended, of one status
server (every process of it) at half, of host h2's worker units (SIGKILL to their control
groups) at two thirds (of this campaign's runs ended, read from the store), each started
again as systemd would. Then the goals are checked: every run `passed`, one final state
applied in its history, one worker saying it passed; both gearmand empty, the store holds
no run waiting, nothing left under any worker's directory. A run passed twice because h2
was killed after its worker had passed it and before that report left the host is counted
apart (printed): gearmand hands its job out again and no live worker holds it.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from farm_lab.loopback import descendants
from farm_lab.pool import Pool, cpu_seconds
from farm_lab.venvs import cache_root
from farm_server.models import TestRow
from farm_server.store import Store
from farm_worker.environments import EnvironmentCache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness.checks import leftovers
from harness.hostpool import HostPool
from harness.nspawn import missing_tools
from harness.postgres import Postgres

VERSIONS = ["33.0.0", "40.0.0", "47.0.0"]
HOSTS = ["h1", "h2", "h3", "h4"]
WAITING = "queued,installing,running,uploading"
DUMMY = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}


def slots(n: int) -> list[tuple[str, int]]:
    return [(HOSTS[i % len(HOSTS)], i // len(HOSTS) + 1) for i in range(n)]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def ended(store: Store, label: str) -> int:
    """Runs of this campaign that have ended."""
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(TestRow)
                               .where(TestRow.id.like(f"{label}-%"),
                                      TestRow.state.not_in(WAITING.split(",")))) or 0)


def waiting(store: Store) -> int:
    """Runs not ended yet, read from the store by this process (polling the servers' API
    would add the bench's own requests to the farm's CPU)."""
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(TestRow)
                               .where(TestRow.state.in_(WAITING.split(",")))) or 0)


class Faults(threading.Thread):
    """kill -9 of a gearmand, a server and a host at a third, half and two thirds."""

    def __init__(self, pool: Pool, store: Store, label: str, runs: int,
                 versions: list[str]) -> None:
        super().__init__(daemon=True)
        self.pool, self.store, self.label = pool, store, label
        self.runs, self.versions = runs, versions
        self.done: list[str] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def _wait_ended(self, share: float) -> bool:
        """Until `share` of the runs have ended while others are queued or running (False:
        the campaign ended first)."""
        while not self.stop.is_set():
            if ended(self.store, self.label) >= self.runs * share and self.pool.queued():
                return True
            self.stop.wait(0.05)
        return False

    def run(self) -> None:
        pool = self.pool
        steps: list[tuple[float, str, Callable[[], None]]] = [
            (1 / 3, "gearmand", lambda: self._again(pool.gearmands[0].kill,
                                                    pool.gearmands[0].start)),
            (1 / 2, "status server", lambda: self._again(pool.servers[1].kill,
                                                         pool.servers[1].serve)),
            (2 / 3, "host h2", self._host_again)]
        try:
            for share, what, crash in steps:
                if not self._wait_ended(share):
                    return
                queued = pool.queued()
                crash()
                self.done.append(f"{what} kill -9 ({queued} queued or running)")
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    @staticmethod
    def _again(kill: Callable[[], object], start: Callable[[], object]) -> None:
        """kill -9, and started again a second later (as systemd would)."""
        kill()
        time.sleep(1)
        start()

    def _host_again(self) -> None:
        for name in self.pool.kill_host("h2"):
            host, slot = name.rsplit("-", 1)
            self.pool.worker(host, int(slot), self.versions)


def campaign(pool: Pool, label: str, runs: int, faults: bool) -> dict[str, Any]:
    """Submit `runs` dry runs, wait for every one to end; the figures."""
    ids = [f"{label}-{n:05d}" for n in range(runs)]
    farm_pids = pool.farm_pids()
    worker_pids = pool.worker_pids()
    before = (cpu_seconds(farm_pids), cpu_seconds(worker_pids))
    relays = cpu_seconds(pool.relay_pids())
    store = Store(pool.database_url)
    try:
        result = _campaign(pool, store, label, ids, faults, farm_pids, worker_pids, before)
        result["relay_cpu"] = cpu_seconds(pool.relay_pids()) - relays
        return result
    finally:
        store.engine.dispose()


def _campaign(pool: Pool, store: Store, label: str, ids: list[str], faults: bool,
              farm_pids: list[int], worker_pids: list[int],
              before: tuple[float, float]) -> dict[str, Any]:
    runs = len(ids)
    injector = Faults(pool, store, label, runs, VERSIONS) if faults else None

    def submit(n: int) -> None:
        server = pool.servers[n % 2]
        for attempt in range(60):  # a server being restarted (faults): the other one
            try:
                r = pool.servers[(n + attempt) % 2].api("POST", "/v1/tests", json={
                    "test_id": ids[n], "tempest": {"version": VERSIONS[n % 3]},
                    "conf": DUMMY, "tests": {"regex": "tempest.api.identity"},
                    "dry_run": True})
            except OSError:
                time.sleep(0.5)
                continue
            if r.status_code in (201, 409):
                return
            raise SystemExit(f"submit {ids[n]} to {server.url}: {r.status_code} {r.text}")
        raise SystemExit(f"submit {ids[n]}: no server took it")

    started = time.monotonic()
    if injector is not None:
        injector.start()
    with ThreadPoolExecutor(4) as threads:
        list(threads.map(submit, range(runs)))
    while waiting(store) > 0:
        time.sleep(0.2)
    wall = time.monotonic() - started
    if injector is not None:
        injector.stop.set()
        injector.join(120)
        if injector.error is not None:
            raise injector.error
    farm_pids = sorted(set(farm_pids) | set(pool.farm_pids()))
    after = (cpu_seconds(farm_pids), cpu_seconds(sorted(set(pool.worker_pids())
                                                         | set(worker_pids))))
    # the store's own timestamps (the API shows whole seconds)
    with store.engine.connect() as conn:
        rows = conn.execute(select(TestRow.id, TestRow.state, TestRow.created_at,
                                   TestRow.started_at, TestRow.finished_at)
                            .where(TestRow.id.like(f"{label}-%"))).all()
    docs = [{"id": r.id, "state": r.state} for r in rows]
    to_start = [(r.started_at - r.created_at).total_seconds() for r in rows if r.started_at]
    to_end = [(r.finished_at - r.created_at).total_seconds() for r in rows if r.finished_at]
    first = min(r.created_at for r in rows)
    last = max(r.finished_at for r in rows if r.finished_at)
    farm_cpu, worker_cpu = after[0] - before[0], after[1] - before[1]
    return {"ids": ids, "docs": docs, "wall": wall,
            "per_min": len(docs) / (last - first).total_seconds() * 60,
            "start": to_start, "end": to_end, "farm_cpu": farm_cpu, "worker_cpu": worker_cpu,
            "faults": injector.done if injector else []}


def check_goals(pool: Pool, result: dict[str, Any]) -> list[str]:
    """The faults mode's goals: the problems found (none: every goal held)."""
    problems = []
    states = {t["id"]: t["state"] for t in result["docs"]}
    problems += [f"{tid}: {state}" for tid, state in states.items() if state != "passed"]
    problems += [f"{tid}: lost" for tid in result["ids"] if tid not in states]
    logs = "".join(w.output() for w in pool.workers.values())
    for tid in result["ids"]:
        said = len(re.findall(rf"\[test {tid}\] passed\b", logs))
        history = pool.servers[0].api("GET", f"/v1/tests/{tid}").json()["history"]
        if said != 1:
            problems.append(f"{tid}: said passed {said} times")
            for w in pool.workers.values():  # what each worker and the server saw of it
                lines = w.output().splitlines()
                for n, line in enumerate(lines):
                    if tid in line:
                        if f"[test {tid}] installing" in line and n:
                            print(f"  {w.worker_id}: {lines[n - 1]}")  # the job it took
                        print(f"  {w.worker_id}: {line}")
            for h in history:
                print(f"  server: {h}")
        finals = [h for h in history if h["applied"] and h["state"] in (
            "passed", "failed", "error", "cancelled", "timed_out", "rejected")]
        if len(finals) != 1:
            problems.append(f"{tid}: {len(finals)} final states applied")
    end = time.monotonic() + 120
    while pool.queued() and time.monotonic() < end:
        time.sleep(0.5)
    if pool.queued():
        problems.append(f"gearmand still holds {pool.queued()} jobs")
    for w in pool.workers.values():
        left = leftovers(w.work_dir)
        if left:
            problems.append(f"{w.worker_id} left {left[:3]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4,8",
                        help="worker counts, comma-separated (default 1,2,4,8)")
    parser.add_argument("--faults", action="store_true",
                        help="one campaign at the largest count, with faults in the middle")
    parser.add_argument("--local", action="store_true",
                        help="workers as processes on this machine, not on booted hosts")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    # stopped (SIGTERM): the finally blocks stop what was started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.local and missing_tools():
        parser.error(f"booted hosts need {', '.join(missing_tools())} (or use --local)")
    counts = sorted(int(c) for c in args.workers.split(","))
    if args.faults:
        counts = counts[-1:]
    cache_dir = args.cache_dir or cache_root() / "worker-cache"
    cache = EnvironmentCache(cache_dir)
    for version in VERSIONS:
        cache.prepare(version)
    pg = Postgres()
    pg.start()
    results: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="farm-bench-campaign-") as tmp:
        settings: dict[str, Any] = {"server_extra": {"stale_after_s": 30,
                                                      "monitor_interval_s": 2}}
        pool = (Pool(Path(tmp), pg.new_database(), cache_dir, **settings) if args.local else
                HostPool(Path(tmp), pg.new_database(), cache_dir, host_count=len(HOSTS),
                         **settings))
        try:
            pool.start()
            for n in counts:
                for host, slot in slots(n):
                    if f"{host}-{slot}" not in pool.workers:
                        pool.worker(host, slot, VERSIONS)
                pg_before = cpu_seconds([pg.proc.pid, *descendants(pg.proc.pid)]) \
                    if pg.proc else 0.0
                result = campaign(pool, f"w{n}", args.runs, args.faults)
                result["pg_cpu"] = (cpu_seconds([pg.proc.pid, *descendants(pg.proc.pid)])
                                    if pg.proc else 0.0) - pg_before
                results[n] = result
                r = result
                print(f"{n} workers: {len(r['docs'])} runs in {r['wall']:.0f} s, "
                      f"{r['per_min']:.0f} runs/min; submit-to-start p50 "
                      f"{statistics.median(r['start']):.2f} s p99 {pct(r['start'], 0.99):.2f} s;"
                      f" submit-to-final p50 {statistics.median(r['end']):.2f} s p99 "
                      f"{pct(r['end'], 0.99):.2f} s; CPU per run: workers "
                      f"{r['worker_cpu'] / args.runs * 1000:.0f} ms, farm "
                      f"{r['farm_cpu'] / args.runs * 1000:.0f} ms "
                      f"({r['farm_cpu'] / r['worker_cpu'] * 100:.1f}% of the workers'), "
                      f"PostgreSQL {r['pg_cpu'] / args.runs * 1000:.0f} ms, the harness's "
                      f"relays {r['relay_cpu'] / args.runs * 1000:.0f} ms", flush=True)
                if args.faults:
                    print("faults: " + "; ".join(r["faults"]))
                    problems = check_goals(pool, r)
        finally:
            pool.stop()
            pg.stop()
    if args.faults:
        print("faults mode: " + ("every goal held: every run passed, once, none lost, "
                                 "gearmand empty, nothing left" if not problems
                                 else f"{len(problems)} problems: {problems[:10]}"))
        return 1 if problems else 0
    one = results[counts[0]]["per_min"]
    print("throughput over 1 worker: " + ", ".join(
        f"{n} workers {r['per_min'] / one:.2f}x" for n, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
