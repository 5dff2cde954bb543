"""Does the status server's cost per report and per page grow with its store?

    .venv/bin/python bench/growth.py [--db sqlite|postgresql|both] [--runs 100000]
                                     [--tests-per-run 100] [--rounds 2] [--seconds 8]

For each database, two `farm-server serve` (their defaults, one gearmand) side by side:
one on an "empty" store, one on a store of --runs runs with --tests-per-run per-test rows
each (100,000 x 100 = 10,000,000, written as bench/dashboard.py writes them). The empty
store holds one page of runs (50, written the same way): a truly empty one would answer
`farm list` with no rows, and the figure would measure the page, not the store. On each, in
rounds alternating between the two (A B B A ..., so the machine's drift weighs on both):
- `POST /update-test-status/` with wrk (as bench/status_api.py), each round on a run of its
  own: requests per second;
- what `farm list` asks, `GET /v1/tests` (the newest 50), and `farm list` itself (the CLI,
  wall time): p50 and p99.
The last line per database: the big store's figures as a ratio of the empty one's. Goal
(issue 22): within 20% (reports >= 0.80x, `farm list` <= 1.20x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from dashboard import on_databases, populate, timed
from status_api import LUA, wrk

from farm_lab.gearmand import Gearmand
from farm_lab.server import FarmServer

FARM = str(Path(sys.executable).parent / "farm")
PAGE = 50  # the "empty" store: one page of `farm list`, so that both list the same rows


def cli_list(server: FarmServer, n: int) -> tuple[float, float]:
    """p50 and p99 in ms of `farm list` (wall time of the command)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(FARM_CONFIG=os.devnull, FARM_SERVER_URL=server.url, FARM_TOKEN=server.user_token)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([FARM, "list"], env=env, check=True, capture_output=True)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[-1]


def bench(label: str, base: Path, urls: tuple[str | None, str | None],
          args: argparse.Namespace) -> list[str]:
    gearmand = Gearmand(base / "gearmand", queue="builtin")
    gearmand.start()
    servers: dict[str, FarmServer] = {}
    try:
        for name, url in zip(("empty", "big"), urls, strict=True):
            extra = {"monitor": False, **({"database_url": url} if url else {})}
            server = FarmServer(base / name, [gearmand.address], extra=extra)
            server.start()
            server.stop()
            populate(url or f"sqlite:///{base / name / 'server.db'}",
                     args.runs if name == "big" else PAGE, args.tests_per_run)
            server.serve(300)
            servers[name] = server
        figures: dict[str, dict[str, list[float]]] = {
            n: {"reports": [], "api p50": [], "api p99": [], "cli p50": []} for n in servers}
        order = [("empty", "big"), ("big", "empty")]
        for r in range(args.rounds):
            for name in order[r % 2]:
                server = servers[name]
                test_id = f"growth-{r}"
                server.queue_test(test_id)
                script = base / f"{name}-{r}.lua"
                script.write_text(LUA.replace("TOKEN", server.worker_token)
                                  .replace("bench-1", test_id))
                figures[name]["reports"].append(wrk(server.url + "update-test-status/",
                                                    args.seconds, 8, script)[0])
                with requests.Session() as s:
                    s.headers["Authorization"] = f"Bearer {server.user_token}"
                    p50, p99 = timed(s, server.url + "v1/tests", 200)
                figures[name]["api p50"].append(p50)
                figures[name]["api p99"].append(p99)
                figures[name]["cli p50"].append(cli_list(server, 10)[0])
                print(f"  {label} {name} round {r}: " + ", ".join(
                    f"{k} {v[-1]:.1f}" for k, v in figures[name].items()), flush=True)
    finally:
        for server in servers.values():
            server.stop()
        gearmand.stop()
    m = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in figures.items()}
    rows = args.runs * args.tests_per_run
    lines = [f"{label}: a store of {PAGE} runs / of {args.runs:,} runs and {rows:,} per-test "
             "rows"]
    for key, unit in (("reports", "req/s"), ("api p50", "ms"), ("api p99", "ms"),
                      ("cli p50", "ms")):
        lines.append(f"  {key:8} {m['empty'][key]:8.1f} / {m['big'][key]:8.1f} {unit} "
                     f"({m['big'][key] / m['empty'][key]:.2f}x)")
    reports = m["big"]["reports"] / m["empty"]["reports"]
    listing = m["big"]["api p50"] / m["empty"]["api p50"]
    ok = reports >= 0.8 and listing <= 1.2
    lines.append(f"{label}: reports {reports:.2f}x, farm list {listing:.2f}x of an empty "
                 f"store (goal within 20%: {'met' if ok else 'NOT met'})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--tests-per-run", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-bench-growth-") as tmp:
        lines = on_databases(args.db, Path(tmp), lambda label, base, new_database: bench(
            label, base, (new_database(), new_database()), args))
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
