"""The cost of one run outside Tempest's own tests, and what keeping the test list saves.

    .venv/bin/python bench/run_cost.py [--dry-runs 10] [--rounds 2] [--no-real]

One gearmand, `farm-server serve` (SQLite), a real Keystone, all on loopback, and
`farm-worker run` serving Tempest 47.0.0 from one of two caches:
- kept: the template as `farm-worker prepare` makes it, with its test list (TESTS.txt);
- listing: a copy of it that keeps no list (what a worker did before), so every job runs
  `tempest init` and `tempest run --list-tests` again.
Dry runs of `tempest.api.identity` alternate between the two, round by round (the machine
is noisy), each from the client's submit to `passed` as the client sees it (a 20 ms poll of
the server's API). Then, unless --no-real, the identity run for real through the farm, its
phases read from the worker's own metrics (farm_worker_phase_seconds), against the same
selection run by `tempest run` directly with the same conf against the same Keystone.
Goals (issue 22): a warm dry run ≤ 1.5 s; the farm's real run ≤ 1.0x the direct one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from farm_lab import keystone as ks
from farm_lab.gearmand import Gearmand
from farm_lab.loopback import free_port
from farm_lab.server import FarmServer
from farm_lab.venvs import cache_root
from farm_lab.workers import WorkerProcess, start_worker
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
                    final: str = "passed", timeout_s: float = 1800) -> float:
    """Seconds from the submit to `final` as the client sees it."""
    started = time.monotonic()
    r = server.api("POST", "/v1/tests", json={**doc, "test_id": test_id})
    if r.status_code != 201:
        raise SystemExit(f"submit {test_id}: {r.status_code} {r.text[:300]}")
    end = started + timeout_s
    while time.monotonic() < end:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-runs", type=int, default=10, help="per cache and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-real", action="store_true", help="dry runs only (no Keystone)")
    parser.add_argument("--cache-dir", type=Path, default=cache_root() / "worker-cache")
    args = parser.parse_args()
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
                before = phases(metrics_port)
                farm_s = submit_and_wait(server, "real-identity",
                                         {**doc, "dry_run": False,
                                          "tests": {"regex": REGEX}})
                spent = {k: v - before.get(k, 0.0) for k, v in phases(metrics_port).items()}
                started = time.monotonic()
                template = EnvironmentCache(args.cache_dir).template(VERSION)
                assert template is not None
                counts = direct_run(template.path, conf, base / "direct",
                                    ["--regex", REGEX]).counts()
                direct_s = time.monotonic() - started
                outside = sum(v for k, v in spent.items() if k != "run")
                print("the real identity run through the farm, by phase: "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
                      + f"; outside Tempest's tests {outside:.2f} s")
                print(f"the same run: farm {farm_s:.1f} s (submit to passed), direct "
                      f"`tempest run` {direct_s:.1f} s ({counts.passed} passed)")
                line += f"; real run farm/direct {farm_s / direct_s:.2f}x (goal ≤ 1.0x)"
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
