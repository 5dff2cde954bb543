"""The dashboard's pages on a big store, and the reports' throughput while pages are live.

    .venv/bin/python bench/dashboard.py [--db sqlite|postgresql|both] [--runs 10000]
                                        [--tests-per-run 150] [--streams 50]

For each database: a store of --runs runs with --tests-per-run results each (10,000 x 150 =
1,500,000 per-test rows; one test is in every run, for its history), plus two runs of 1,500
tests, behind a real `farm-server serve` (its defaults). Signed in as a person, it times
(sequentially, after a warm-up) the runs page, a 1,500-test run's page, the comparison of
the two 1,500-test runs (page and API), and the history of the test every run has; each as
p50 and p99 in ms and as a ratio of `GET /healthz` on the same server in the same run.

Then the workers' side: `POST /update-test-status/` with wrk (as bench/status_api.py does),
in rounds alternating with and without --streams open live pages (half the runs page, half
the page of the run being reported on: every report changes what they show). The last line
of each database is e.g. `reports with 50 live pages: 0.97x of the reports without`.

Targets (issue 20): runs page p99 < 150 ms, a 1,500-test run's page < 200 ms, compare of two
1,500-test runs < 300 ms, a test's history over 10,000 runs < 200 ms; reports with 50 live
pages >= 0.90x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import insert
from status_api import LUA, wrk

from farm_lab.gearmand import Gearmand
from farm_lab.server import FarmServer
from farm_server.models import ResultFileRow, ResultRow, TestRow
from farm_server.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness.postgres import Postgres

COMMON = "tempest.api.identity.v3.test_common.CommonTest.test_in_every_run"
CLOUDS = [f"cloud-{i}" for i in range(20)]
VERSIONS = ["33.0.0", "40.0.0", "47.0.0"]


def names(n: int, seed: int) -> list[str]:
    """n test names of a run: the common test, and others drawn from a pool of 3,000."""
    rnd = random.Random(seed)
    pool = rnd.sample(range(3000), n - 1)
    return [COMMON] + [f"tempest.api.mod{i % 40}.test_m{i % 7}.Class{i // 7}.test_{i}"
                       for i in pool]


def populate(url: str, runs: int, per_run: int) -> None:
    """The big store, written with bulk inserts (as fast as the database takes them)."""
    store = Store(url)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    started = time.monotonic()
    big = [("big-a", 1500, 0), ("big-b", 1500, 1)]
    plan = [(f"run-{i:05d}", per_run, i) for i in range(runs)] + big
    rows: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    with store.engine.begin() as conn:
        for i, (test_id, n, seed) in enumerate(plan):
            at = t0 + dt.timedelta(minutes=i)
            rnd = random.Random(seed * 7919 + n)
            # the two big runs run the same tests (a comparison's usual case)
            results = [(name, rnd.choices(("success", "fail", "skip"), (90, 5, 5))[0])
                       for name in names(n, 0 if n == 1500 else seed % 500)]
            failed = sum(s == "fail" for _n, s in results)
            skipped = sum(s == "skip" for _n, s in results)
            tests.append({"id": test_id, "state": "failed" if failed else "passed",
                          "tempest_version": VERSIONS[i % 3], "cpid": CLOUDS[i % 20],
                          "tests_json": '{"regex": "tempest.api", "include": [], '
                                        '"exclude": []}', "dry_run": False,
                          "message": f"{failed} failed", "worker": f"w{i % 8}",
                          "passed": n - failed - skipped, "failed": failed,
                          "skipped": skipped, "total": n, "progress_done": n,
                          "progress_total": n, "created_at": at, "updated_at": at,
                          "started_at": at, "finished_at": at + dt.timedelta(seconds=300)})
            rows += [{"test_id": test_id, "name": name, "status": status,
                      "duration_s": rnd.random() * 3,
                      "detail": "Traceback (most recent call last):\nAssertionError: x"
                      if status == "fail" else ("no service" if status == "skip" else "")}
                     for name, status in results]
            if len(rows) >= 50_000 or i == len(plan) - 1:
                conn.execute(insert(TestRow), tests)
                conn.execute(insert(ResultRow), rows)
                conn.execute(insert(ResultFileRow), [
                    {"test_id": t["id"], "data": b"\xb3", "size": 1, "uploaded_at": t0}
                    for t in tests])
                tests, rows = [], []
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    store.engine.dispose()
    print(f"  stored {len(plan)} runs, {runs * per_run + 3000} per-test rows in "
          f"{time.monotonic() - started:.0f} s", flush=True)


def timed(session: requests.Session, url: str, n: int) -> tuple[float, float]:
    """p50 and p99 in ms of n GETs (after 3 not counted)."""
    samples = []
    for i in range(n + 3):
        t = time.perf_counter()
        r = session.get(url, timeout=60)
        elapsed = (time.perf_counter() - t) * 1000
        if r.status_code != 200:
            raise SystemExit(f"GET {url}: {r.status_code} {r.text[:300]}")
        if i >= 3:
            samples.append(elapsed)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


class Streams:
    """n open live pages, as the browser holds them: read and thrown away in one thread,
    reconnected when refused (503: the process's cap) or ended, as EventSource does."""

    def __init__(self, port: int, cookie: str, paths: list[str]) -> None:
        self.port, self.cookie, self.paths = port, cookie, paths
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.bytes = self.refused = self.opened = 0
        self._later: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, path: str) -> None:
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                  f"Cookie: farm_session={self.cookie}\r\n\r\n".encode())
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, path)
        self.opened += 1

    def _run(self) -> None:
        for path in self.paths:
            self._open(path)
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.5):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                if data.startswith(b"HTTP/1.1 503"):
                    self.refused += 1
                if data and not data.startswith(b"HTTP/1.1 503"):
                    self.bytes += len(data)
                    continue
                self.sel.unregister(sock)
                sock.close()
                self._later.append((time.monotonic() + 2, key.data))  # as the page does
            now = time.monotonic()
            for due, path in [x for x in self._later if x[0] <= now]:
                self._later.remove((due, path))
                self._open(path)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]

    def __enter__(self) -> Streams:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@contextmanager
def serving(base: Path, url: str | None, runs: int, per_run: int,
            interval_s: float | None = None) -> Iterator[FarmServer]:
    gearmand = Gearmand(base / "gearmand", queue="builtin")
    gearmand.start()
    extra: dict[str, Any] = {"monitor": False}
    if interval_s:
        extra["live_interval_s"] = interval_s
    if url:
        extra["database_url"] = url
    server = FarmServer(base / "server", [gearmand.address], extra=extra)
    try:
        server.start()
        server.stop()
        populate(url or f"sqlite:///{base / 'server' / 'server.db'}", runs, per_run)
        server.serve(120)
        yield server
    finally:
        server.stop()
        gearmand.stop()


def bench(name: str, base: Path, url: str | None, args: argparse.Namespace) -> list[str]:
    print(f"{name}: filling the store", flush=True)
    out = []
    with serving(base, url, args.runs, args.tests_per_run, args.live_interval) as server:
        s = requests.Session()
        r = s.post(server.url + "signin", data={"token": server.user_token}, timeout=30)
        assert r.status_code == 200 and s.cookies.get("farm_session"), r.text[:300]
        user = {"Authorization": f"Bearer {server.user_token}"}
        h50, h99 = timed(s, server.url + "healthz", 200)
        out.append(f"{name}: GET /healthz p50 {h50:.1f} ms, p99 {h99:.1f} ms (the baseline)")
        for label, path, n, target in (
                ("runs page", "", 200, 150),
                ("runs page, filtered (cloud, state, text)",
                 "?cpid=cloud-3&state=failed&q=run-0", 100, 150),
                ("a 1,500-test run's page", "runs/big-a", 50, 200),
                ("compare of two 1,500-test runs (page)", "compare?a=big-a&b=big-b", 30, 300),
                ("the history of a test in every run", f"history?name={COMMON}", 30, 200)):
            p50, p99 = timed(s, server.url + path, n)
            out.append(f"{name}: {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                       f"({p99 / h99:.1f}x /healthz; target < {target} ms: "
                       f"{'met' if p99 < target else 'NOT met'})")
        s.headers.update(user)
        p50, p99 = timed(s, server.url + "v1/compare?a=big-a&b=big-b", 30)
        out.append(f"{name}: GET /v1/compare of two 1,500-test runs: p50 {p50:.1f} ms, "
                   f"p99 {p99:.1f} ms")
        out.append(report_to_page(name, server, s))
        out.append(reports_with_pages(name, server, base, args, s.cookies["farm_session"]))
    for line in out:
        print(line, flush=True)
    return out


def report_to_page(name: str, server: FarmServer, session: requests.Session,
                   samples: int = 20) -> str:
    """How long a worker's report takes to reach an open run page: a report posted, the
    time until its event arrives on the page's stream."""
    server.queue_test("bench-latency")
    arrived: dict[str, float] = {}
    stream = session.get(server.url + "events?test=bench-latency", stream=True, timeout=60,
                         headers={"Authorization": ""})

    def read() -> None:
        for line in stream.iter_lines(decode_unicode=True):
            for key in re.findall(r'"message":"(lat-\d+)"', line or ""):
                arrived.setdefault(key, time.perf_counter())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1)
    sent: dict[str, float] = {}
    for i in range(samples):
        key = f"lat-{i}"
        sent[key] = time.perf_counter()
        r = requests.post(server.url + "update-test-status/", timeout=30, json={
            "test_id": "bench-latency", "status": "running", "message": key},
            headers={"Authorization": f"Bearer {server.worker_token}"})
        assert r.status_code == 202, r.text
        end = time.monotonic() + 10
        while key not in arrived and time.monotonic() < end:
            time.sleep(0.005)
        time.sleep(0.1)
    stream.close()
    waits = sorted((arrived[k] - sent[k]) * 1000 for k in sent if k in arrived)
    if len(waits) < samples:
        return f"{name}: a report to an open page: {samples - len(waits)} of {samples} lost!"
    return (f"{name}: a worker's report on an open run page after p50 "
            f"{statistics.median(waits):.0f} ms, max {waits[-1]:.0f} ms ({samples} reports; "
            "goal < 1 s)")


def reports_with_pages(name: str, server: FarmServer, base: Path, args: argparse.Namespace,
                       cookie: str) -> str:
    script = base / "report.lua"
    plain: list[float] = []
    watched: list[float] = []
    refused = 0
    wrk(server.url + "healthz", 2, args.connections, None)  # warm up
    for i in range(2 * args.rounds):  # A B B A A B B A: drift weighs on both alike
        on = i % 4 in (1, 2)
        test_id = f"bench-live-{i}"
        server.queue_test(test_id)
        script.write_text(LUA.replace("TOKEN", server.worker_token).replace("bench-1",
                                                                            test_id))
        paths = [f"/events?test={test_id}" if k % 2 else "/events"
                 for k in range(args.streams)] if on else []
        with Streams(server.port, cookie, paths) as streams:
            time.sleep(2 if on else 0)  # the pages connected and their first events read
            rate = wrk(server.url + "update-test-status/", args.seconds, args.connections,
                       script)[0]
            refused += streams.refused
        (watched if on else plain).append(rate)
    without, with_ = sum(plain) / len(plain), sum(watched) / len(watched)
    return (f"{name}: reports without live pages {', '.join(f'{r:.0f}' for r in plain)} "
            f"req/s; with {args.streams}: {', '.join(f'{r:.0f}' for r in watched)} req/s "
            f"({refused} stream connections refused by a full process and retried)\n"
            f"{name}: reports with {args.streams} live pages: {with_ / without:.2f}x of the "
            "reports without (target >= 0.90x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tests-per-run", type=int, default=150)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--live-interval", type=float,
                        help="the server's live_interval_s (default: its own)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds with and as many without live pages (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-bench-dash-") as tmp:
        lines = on_databases(args.db, Path(tmp), lambda label, base, new_database: bench(
            label, base, new_database(), args))
    print("\n" + "\n".join(lines))
    return 0


Bench = Callable[[str, Path, Callable[[], "str | None"]], list[str]]


def on_databases(which: str, tmp: Path, run: Bench) -> list[str]:
    """`run(label, directory, new_database)` on SQLite and/or a real PostgreSQL (`which`:
    sqlite, postgresql or both); `new_database()` is a new database's URL (None: SQLite,
    the server's own file). Their lines, in order."""
    lines = []
    if which in ("sqlite", "both"):
        lines += run("SQLite", tmp / "sqlite", lambda: None)
    if which in ("postgresql", "both"):
        pg = Postgres()
        pg.start()
        try:
            lines += run("PostgreSQL", tmp / "pg", pg.new_database)
        finally:
            pg.stop()
    return lines


if __name__ == "__main__":
    sys.exit(main())
