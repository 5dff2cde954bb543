"""The cost of one run outside Tempest's own tests, and what keeping the test list saves.

    .venv/bin/python bench/run_cost.py [--dry-runs 10] [--rounds 2] [--no-real]

One gearmand, `farm-server serve` (SQLite), a real Keystone, all on loopback, and
`farm-worker run` serving Tempest 47.0.0 from one of two caches:
- kept: the template as `farm-worker prepare` makes it, with its test list (TESTS.txt);
- listing: a copy of it that keeps no list (what a worker did before), so every job runs
  `tempest init` and `tempest run --list-tests` again.
Dry runs of `tempest.api.identity` alternate between the two, round by round (the machine
is noisy), each from the client's submit to `passed` as the client sees it (a 20 ms poll of
the server's API). Then, unless --no-real, --real-rounds pairs of the identity run for real:
through the farm (its phases read from the worker's own metrics, farm_worker_phase_seconds;
the CPU of the farm's processes and of the worker with its Tempest), and the same selection
by `tempest run` directly with the same conf against the same Keystone, in ABBA order.
Goals (issue 22): a warm dry run ≤ 1.5 s; the farm's real run ≤ 1.0x the direct one (the
median ratio); the farm's own CPU ≤ 5% of the worker's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from farm_lab import keystone as ks
from farm_lab.gearmand import Gearmand
from farm_lab.loopback import descendants, free_port
from farm_lab.pool import cpu_seconds
from farm_lab.server import FarmServer
from farm_lab.venvs import cache_root
from farm_lab.workers import WorkerProcess, start_worker
from farm_server.store import Store
from farm_worker.building import READY
from farm_worker.environments import EnvironmentCache
from farm_worker.fsutil import make_read_only

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness.direct import direct_run

VERSION = "47.0.0"
REGEX = r"^tempest\.api\.identity"
DRY_GOAL_S = 1.5


def listing_cache(kept: Path, base: Path) -> Path:
    """A cache whose 47.0.0 template is a copy of the kept one without its test list."""
    cache = EnvironmentCache(kept)
    template = cache.template(VERSION)
    if template is None or template.tests is None:
        raise SystemExit(f"prepare {VERSION} first: farm-worker prepare {VERSION}")
    root = base / "listing-cache"
    copy = EnvironmentCache(root)  # the same layout, the shipped locks
    build = root / "builds" / template.path.name
    shutil.copytree(template.path, build, symlinks=True)
    info = json.loads((build / READY).read_text())
    info["tests_file"] = None
    (build / READY).chmod(0o644)
    (build / READY).write_text(json.dumps(info, indent=1) + "\n")
    make_read_only(build)
    (root / "envs" / template.key.name).symlink_to(f"../builds/{build.name}")
    copied = copy.template(VERSION)
    assert copied is not None and copied.tests is None
    return root


def submit_and_wait(server: FarmServer, test_id: str, doc: dict[str, object],
                    final: str = "passed", timeout_s: float = 1800,
                    store: Store | None = None) -> float:
    """Seconds from the submit to `final` as the client sees it (polling the API), or as the
    server stored it (polling `store` from this process: the server's CPU is then the
    run's alone)."""
    started = time.monotonic()
    r = server.api("POST", "/v1/tests", json={**doc, "test_id": test_id})
    if r.status_code != 201:
        raise SystemExit(f"submit {test_id}: {r.status_code} {r.text[:300]}")
    end = started + timeout_s
    while time.monotonic() < end:
        if store is not None:
            row = store.get(test_id)
            state = row.state if row is not None else "queued"
        else:
            state = server.api("GET", f"/v1/tests/{test_id}").json()["test"]["state"]
        if state == final:
            return time.monotonic() - started
        if state in ("failed", "error", "timed_out", "cancelled", "passed"):
            raise SystemExit(f"{test_id} ended {state}, not {final}")
        time.sleep(0.02)
    raise SystemExit(f"{test_id} did not end in {timeout_s} s")


def phases(port: int) -> dict[str, float]:
    """farm_worker_phase_seconds_sum by phase, from a worker's metrics."""
    out: dict[str, float] = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("farm_worker_phase_seconds_sum{"):
            name = line.split('phase="', 1)[1].split('"', 1)[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


def farm_run(server: FarmServer, gearmand: Gearmand, worker: WorkerProcess,
             metrics_port: int, conf: dict[str, Any], test_id: str) -> dict[str, Any]:
    """The identity run through the farm: submit to `passed` (as stored: polled from the
    database by this process, so the server's CPU is the run's alone), the worker's phases,
    and the CPU of the farm's processes (gearmand, the server's) and of the worker's (its
    Tempest included: reaped by the worker, its CPU is in the worker's cutime)."""
    assert gearmand.proc is not None and server.proc is not None
    farm_pids = [gearmand.proc.pid, server.proc.pid, *descendants(server.proc.pid)]
    before = (phases(metrics_port), cpu_seconds(farm_pids),
              cpu_seconds([worker.proc.pid, *descendants(worker.proc.pid)]))
    store = Store(server.database_url)
    try:
        seconds = submit_and_wait(server, test_id, {
            "tempest": {"version": VERSION}, "conf": conf, "tests": {"regex": REGEX}},
            store=store)
    finally:
        store.engine.dispose()
    return {"s": seconds,
            "phases": {k: v - before[0].get(k, 0.0) for k, v in phases(metrics_port).items()},
            "farm_cpu": cpu_seconds(farm_pids) - before[1],
            "worker_cpu": cpu_seconds([worker.proc.pid, *descendants(worker.proc.pid)])
            - before[2]}


def real_runs(server: FarmServer, gearmand: Gearmand, worker: WorkerProcess, metrics_port: int,
              conf: dict[str, Any], base: Path, cache_dir: Path, rounds: int) -> str:
    """`rounds` pairs of the identity run, through the farm and by `tempest run` directly,
    in ABBA order (farm, direct, direct, farm, ...: a drift of the machine or of Keystone
    falls on both); printed, and the summary for the last line."""
    template = EnvironmentCache(cache_dir).template(VERSION)
    assert template is not None
    farm: list[dict[str, Any]] = []
    direct: list[float] = []
    for n in range(rounds):
        for kind in (("farm", "direct") if n % 2 == 0 else ("direct", "farm")):
            if kind == "farm":
                farm.append(farm_run(server, gearmand, worker, metrics_port, conf,
                                     f"real-identity-{n}"))
                continue
            started = time.monotonic()
            counts = direct_run(template.path, conf, base / f"direct-{n}",
                                ["--regex", REGEX]).counts()
            direct.append(time.monotonic() - started)
            if counts.passed == 0 or counts.failed:
                raise SystemExit(f"the direct run: {counts}")
    for run, direct_s in zip(farm, direct, strict=True):
        outside = sum(v for k, v in run["phases"].items() if k != "run")
        print("the real identity run through the farm, by phase: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in run["phases"].items())
              + f"; outside Tempest's tests {outside:.2f} s; farm {run['s']:.1f} s (submit "
              f"to passed), direct `tempest run` {direct_s:.1f} s; CPU: the farm's own "
              f"(gearmand, the server) {run['farm_cpu'] * 1000:.0f} ms, the worker's (with "
              f"its Tempest) {run['worker_cpu']:.1f} s")
    ratio = statistics.median(r["s"] / d for r, d in zip(farm, direct, strict=True))
    share = sum(r["farm_cpu"] for r in farm) / sum(r["worker_cpu"] for r in farm)
    return (f"; real run farm/direct {ratio:.2f}x (median of {rounds}; goal ≤ 1.0x); the "
            f"farm's CPU {share * 100:.2f}% of the worker's (goal ≤ 5%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-runs", type=int, default=10, help="per cache and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-real", action="store_true", help="dry runs only (no Keystone)")
    parser.add_argument("--real-rounds", type=int, default=2,
                        help="pairs of real runs, farm and direct (ABBA order)")
    parser.add_argument("--cache-dir", type=Path, default=cache_root() / "worker-cache")
    args = parser.parse_args()
    # stopped (SIGTERM): the finally blocks stop what was started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    EnvironmentCache(args.cache_dir).prepare(VERSION)
    with tempfile.TemporaryDirectory(prefix="farm-bench-cost-") as tmp:
        base = Path(tmp)
        caches = {"kept": args.cache_dir, "listing": listing_cache(args.cache_dir, base)}
        gearmand = Gearmand(base / "gearmand", queue="builtin")
        gearmand.start()
        server = FarmServer(base / "server", [gearmand.address], extra={"monitor": False})
        keystone: ks.Keystone | None = None
        worker: WorkerProcess | None = None
        try:
            server.start()
            if not args.no_real:
                keystone = ks.up(base / "keystone")
            conf = keystone.tempest_conf() if keystone else {
                "identity": {"uri_v3": "http://127.0.0.1:9/v3"}}
            doc = {"tempest": {"version": VERSION}, "conf": conf,
                   "tests": {"regex": "tempest.api.identity"}, "dry_run": True}
            dry: dict[str, list[float]] = {name: [] for name in caches}
            metrics_port = free_port()
            n = 0
            for _round in range(args.rounds):
                for name, cache in caches.items():
                    worker = start_worker(base / f"w-{name}", gearman=[gearmand.address],
                                          cache_dir=cache, versions=[VERSION],
                                          worker_id=f"cost-{name}", callbacks=[{
                                              "url": server.url,
                                              "token": server.worker_token}],
                                          metrics_port=metrics_port)
                    submit_and_wait(server, f"warm-{name}-{n}", doc)  # a warm worker
                    for _ in range(args.dry_runs):
                        n += 1
                        dry[name].append(submit_and_wait(server, f"dry-{name}-{n}", doc))
                    worker.stop()
                    worker = None
            for name, values in dry.items():
                print(f"dry run of tempest.api.identity, {name:7}: p50 "
                      f"{statistics.median(values):.2f} s, max {max(values):.2f} s "
                      f"({len(values)} runs)")
            kept_s, listing_s = (statistics.median(dry[k]) for k in ("kept", "listing"))
            line = (f"dry run submit-to-passed {kept_s:.2f} s = {kept_s / listing_s:.2f}x the "
                    f"listing worker's {listing_s:.2f} s (goal ≤ {DRY_GOAL_S} s: "
                    f"{'met' if kept_s <= DRY_GOAL_S else 'NOT met'})")
            if keystone is not None:
                worker = start_worker(base / "w-real", gearman=[gearmand.address],
                                      cache_dir=args.cache_dir, versions=[VERSION],
                                      worker_id="cost-real", callbacks=[{
                                          "url": server.url, "token": server.worker_token}],
                                      metrics_port=metrics_port)
                line += real_runs(server, gearmand, worker, metrics_port, conf, base,
                                  args.cache_dir, args.real_rounds)
            print(line)
        finally:
            if worker is not None:
                worker.stop()
            if keystone is not None:
                keystone.stop()
            server.stop()
            gearmand.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
