"""`make demo`: the farm's main job, end to end, on this machine, for real.

gearmand, a real Keystone on 127.0.0.1, one worker with Tempest 47.0.0 prepared; the
`tempest.api.identity` run goes through gearmand to the worker, which streams progress
back; the summary is printed and everything started here is stopped again, also on
Ctrl-C or failure. Caches (the Tempest template, the Keystone venv) are kept in
$FARM_CACHE, so a second run starts in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from farm_worker.environments import EnvironmentCache  # noqa: E402
from farm_worker.protocol import Payload, Selection, run_function  # noqa: E402
from harness.gearclient import TestClient, events, statuses, summary  # noqa: E402
from harness.gearmand import Gearmand  # noqa: E402
from harness.keystone import up as keystone_up  # noqa: E402
from harness.workers import start_worker  # noqa: E402

VERSION = "47.0.0"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def watch(job: Any, started: float) -> None:
    seen = 0
    while not job.complete:
        evs = events(job)
        for ev in evs[seen:]:
            if ev["event"] == "state":
                print(f"    [{time.monotonic() - started:6.1f}s] state {ev['state']}"
                      + (f": {ev['message']}" if ev["message"] else ""), flush=True)
            else:
                print(f"    [{time.monotonic() - started:6.1f}s] {ev['done']:>4}/{ev['total']} "
                      f"passed {ev['passed']} failed {ev['failed']} skipped {ev['skipped']}  "
                      f"{ev['current'].split('[')[0][-70:]}", flush=True)
        seen = len(evs)
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regex", default=r"^tempest\.api\.identity",
                        help="the Tempest selection to run (default: the identity API tests)")
    args = parser.parse_args()
    cache_root = Path(os.environ.get("FARM_CACHE")
                      or Path.home() / ".cache" / "refstack-farm")
    os.environ.setdefault("FARM_TEST_CACHE", str(cache_root))
    started_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="farm-demo-") as tmp:
        base = Path(tmp)
        stack: list[object] = []
        try:
            step(f"preparing Tempest {VERSION} (locked dependency set; cached after the "
                 f"first run) in {cache_root / 'worker-cache'}")
            prepared = EnvironmentCache(cache_root / "worker-cache").prepare(VERSION)
            print(f"    {'built' if prepared.built else 'ready'} in {prepared.seconds:.1f} s: "
                  f"{prepared.tests_listed} tests available")

            step("starting gearmand on 127.0.0.1 (persistent queue: libsqlite3)")
            gearmand = Gearmand(base / "gearmand")
            gearmand.start()
            stack.append(gearmand)
            print(f"    gearmand pid {gearmand.proc.pid if gearmand.proc else '?'} on "
                  f"{gearmand.address}")

            step("starting a real Keystone on 127.0.0.1 (the cloud under test)")
            keystone = keystone_up(base / "keystone")
            stack.append(keystone)
            print(f"    keystone pid {keystone.pid} at {keystone.url}/v3")

            step(f"starting a worker that serves tempest:run:{VERSION}")
            worker = start_worker(base / "worker", gearman=[gearmand.address],
                                  cache_dir=cache_root / "worker-cache", versions=[VERSION],
                                  worker_id="demo-worker", wait_for=run_function(VERSION),
                                  results_dir=str(ROOT / "demo-results"))
            stack.append(worker)
            print(f"    worker pid {worker.proc.pid}, log {worker.log}")

            step(f"submitting the {args.regex} run through gearmand and watching it")
            payload = Payload("demo-identity", VERSION, conf=keystone.tempest_conf(),
                              tests=Selection(args.regex), timeout_s=1800)
            client = TestClient(gearmand.address)
            stack.append(client)
            job = client.submit(run_function(VERSION), payload.encode(), unique="demo-identity")
            watch(job, time.monotonic())
            doc = summary(job)

            step(f"result: {doc['state']}")
            print(f"    passed {doc['passed']}  failed {doc['failed']}  skipped "
                  f"{doc['skipped']}  of {doc['total']}  in {doc['duration_s']:.1f} s "
                  f"(WORK_STATUS reached {statuses(job)[-1] if statuses(job) else '-'})")
            for failure in doc["failures"]:
                print(f"    FAILED {failure['test']}")
            print(f"    subunit stream: {doc['subunit']}")
            print(f"    the whole summary: {json.dumps(doc)[:300]}...")
            return 0 if doc["state"] == "passed" else 1
        except KeyboardInterrupt:
            print("\ninterrupted: stopping everything", file=sys.stderr)
            return 130
        finally:
            step("stopping everything this demo started")
            for thing in reversed(stack):
                if hasattr(thing, "shutdown"):
                    thing.shutdown()
                elif hasattr(thing, "stop"):
                    thing.stop()
            print(f"    done in {time.monotonic() - started_all:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
