"""gearmand's memory with many runs queued, as the status server queues them.

    .venv/bin/python bench/queue_memory.py [--jobs 10000]

gearmand as the role deploys it (the libsqlite3 persistent queue) and `farm-server serve`
(SQLite, no worker), on loopback. --jobs runs are submitted through the API
(`queue_anyway`: no worker serves the version), each a real job with a conf and a
regex, in order. gearmand's resident memory (VmRSS) is read before (the baseline of the
same run) and after, with the queue file's size; and again after the server has cancelled
every one of them (withdrawn from gearmand's queue). Prints the bytes per queued job and e.g.
`gearmand with 10,000 runs queued: 31 MB (+26 MB, 2.7 KB a run; 6.2x its empty RSS)`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from farm_lab.gearmand import Gearmand, status
from farm_lab.server import FarmServer


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-bench-queue-") as tmp:
        base = Path(tmp)
        gearmand = Gearmand(base / "gearmand")  # libsqlite3, as deployed
        gearmand.start()
        server = FarmServer(base / "server", [gearmand.address], extra={"monitor": False})
        try:
            server.start()
            assert gearmand.proc is not None
            empty = rss_bytes(gearmand.proc.pid)
            conf = {"identity": {"uri_v3": "https://keystone.example.org:5000/v3",
                                 "admin_password": "not-a-real-one"},
                    "auth": {"admin_username": "admin", "admin_project_name": "admin"}}

            def submit(n: int) -> None:
                r = server.api("POST", "/v1/tests", json={
                    "test_id": f"q-{n:06d}", "tempest": {"version": "47.0.0"},
                    "queue_anyway": True, "conf": conf,
                    "tests": {"regex": r"^tempest\.api\.(identity|compute|image)\.",
                              "exclude": ["test_create_server_with_admin_password"]}})
                if r.status_code != 201:
                    raise SystemExit(f"submit {n}: {r.status_code} {r.text[:300]}")

            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(submit, range(args.jobs)))
            seconds = time.monotonic() - started
            queued = status(gearmand.port)["tempest:run:47.0.0"][0]
            full = rss_bytes(gearmand.proc.pid)
            queue_file = base / "gearmand" / "queue.sqlite"
            file_size = queue_file.stat().st_size
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(
                    lambda n: server.api("POST", f"/v1/tests/q-{n:06d}/cancel").status_code,
                    range(args.jobs)))
            removed = answers.count(200)  # withdrawn from gearmand (`cancel job`)
            after = rss_bytes(gearmand.proc.pid)
        finally:
            server.stop()
            gearmand.stop()
    per_job = (full - empty) / max(queued, 1)
    print(f"submitted {args.jobs:,} runs through the API in {seconds:.0f} s "
          f"({args.jobs / seconds:.0f} a second); gearmand lists {queued:,} queued")
    print(f"gearmand empty: {mb(empty)}; with {queued:,} queued: {mb(full)}; queue file "
          f"{mb(file_size)}; after cancelling them ({removed:,} withdrawn from gearmand): "
          f"{mb(after)} (gearmand's `status` still counts withdrawn jobs)")
    print(f"gearmand with {queued:,} runs queued: {mb(full)} (+{mb(full - empty)}, "
          f"{per_job / 1024:.1f} KB a run; {full / empty:.1f}x its empty RSS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
