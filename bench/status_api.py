"""Status reports per second against the server as deployed (gunicorn, SQLite, WAL).

    .venv/bin/python bench/status_api.py [--seconds 10] [--connections 8]

Starts gearmand and `farm-server serve` (its defaults: 3 gunicorn sync processes on
SQLite) on loopback, creates a test, then drives `POST /update-test-status/` with wrk (one
thread, 8 connections, so the load generator takes one of the 2 cores): each report a new
progress (so every request is a real write: a report row and the test row), the worker
token checked on each. The baseline, measured in the same run against the same server:
`GET /healthz` (no database). Prints requests/s and p99 of both, and e.g.
`update-test-status 812 req/s, p99 23 ms (0.71x of a trivial endpoint)`.

Then the cost of being watched: the same reports while a scraper reads `/metrics` every
second (as Prometheus does), in rounds alternating with rounds without it; the last line
is e.g. `with /metrics scraped every second: 0.98x of the reports without`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import requests

from farm_lab.gearmand import Gearmand
from farm_lab.server import FarmServer

LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format(
    '{"test_id":"bench-1","status":"running","message":"%d","progress":{"done":%d,"total":1000000}}',
    counter, counter)
  return wrk.format("POST", "/update-test-status/", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer TOKEN"}, body)
end
"""


def wrk(url: str, seconds: int, connections: int, script: Path | None) -> tuple[float, float]:
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert m, out
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} requests failed:\n{out}")
    return rate, p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds with and as many without /metrics scraped (default 4)")
    parser.add_argument("--processes", type=int, help="gunicorn processes (default: farm "
                                                      "serve's own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-bench-api-") as tmp:
        base = Path(tmp)
        gearmand = Gearmand(base / "gearmand", queue="builtin")
        gearmand.start()
        server = FarmServer(base / "server", [gearmand.address], extra={
            "monitor": False, **({"processes": args.processes} if args.processes else {})})
        try:
            server.start()
            server.queue_test("bench-1")
            script = base / "report.lua"
            script.write_text(LUA.replace("TOKEN", server.worker_token))
            wrk(server.url + "healthz", 2, args.connections, None)  # warm up
            base_rate, base_p99 = wrk(server.url + "healthz", args.seconds,
                                      args.connections, None)
            rate, p99 = wrk(server.url + "update-test-status/", args.seconds,
                            args.connections, script)
            reports = len(server.api("GET", "/v1/tests/bench-1").json()["history"])
            # rounds in the order A B B A A B B A ... (each on a test of its own), so that
            # drift (the database growing, the machine's other load) weighs on both alike
            plain: list[float] = []
            scraped: list[float] = []
            scrapes = 0
            for i in range(2 * args.rounds):
                watched = i % 4 in (1, 2)
                test_id = f"bench-m{i}"
                server.queue_test(test_id)
                script.write_text(LUA.replace("TOKEN", server.worker_token)
                                  .replace("bench-1", test_id))
                with Scraper(server.url + "metrics", server.user_token,
                             on=watched) as scraper:
                    rate_i = wrk(server.url + "update-test-status/", args.seconds,
                                 args.connections, script)[0]
                (scraped if watched else plain).append(rate_i)
                scrapes += scraper.scrapes
        finally:
            server.stop()
            gearmand.stop()
    print(f"GET /healthz {base_rate:.0f} req/s, p99 {base_p99:.1f} ms")
    print(f"stored {reports} reports")
    print(f"update-test-status {rate:.0f} req/s, p99 {p99:.1f} ms "
          f"({rate / base_rate:.2f}x of a trivial endpoint)")
    with_metrics, without = sum(scraped) / len(scraped), sum(plain) / len(plain)
    print(f"rounds without /metrics scraped: {', '.join(f'{r:.0f}' for r in plain)} req/s; "
          f"with: {', '.join(f'{r:.0f}' for r in scraped)} req/s "
          f"({scrapes} scrapes of /metrics in all)")
    print(f"with /metrics scraped every second: {with_metrics / without:.2f}x of the reports "
          "without")
    return 0


class Scraper:
    """GET /metrics every second in a thread, as Prometheus would, while wrk runs."""

    def __init__(self, url: str, token: str, on: bool = True) -> None:
        self.url, self.token, self.on = url, token, on
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        if self.on:
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self.on:
            self._thread.join(30)

    def _run(self) -> None:
        with requests.Session() as s:
            while not self._stop.is_set():
                r = s.get(self.url, headers={"Authorization": f"Bearer {self.token}"},
                          timeout=30)
                r.raise_for_status()
                self.scrapes += 1
                self._stop.wait(1.0)


if __name__ == "__main__":
    sys.exit(main())
