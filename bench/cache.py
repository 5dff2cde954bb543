"""A worker's environment cache with three Tempest versions, and their eviction.

    .venv/bin/python bench/cache.py

A private cache seeded with the wheelhouses of 33.0.0, 40.0.0 and 47.0.0 from the shared
one (prepare them there first: `farm-worker prepare 33.0.0 40.0.0 47.0.0`; nothing is
downloaded here). It prepares the three (template from the wheelhouse, smoke test, kept
test list), uses them in the order 33, 47, 40, then prunes with `cache_max_size` set to
fit two of them, with 47.0.0 pinned (in `tempest_versions`). Prints each entry's size,
the time of each prepare (cold from the wheelhouse, then ready), what the prune evicted
(the least recently used unpinned one: 33.0.0) and the time to make it ready again from
its wheelhouse, which eviction removes too (so: a download; here from the shared cache's
copy). The baseline of the same run: a ready `prepare` (the check a worker does at start).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from farm_lab.venvs import cache_root
from farm_worker.environments import EnvironmentCache

VERSIONS = ("33.0.0", "47.0.0", "40.0.0")  # the order they are used in


def main() -> int:
    shared = EnvironmentCache(cache_root() / "worker-cache")
    prepared = {v: shared.prepare(v) for v in VERSIONS}
    with tempfile.TemporaryDirectory(prefix="farm-bench-cache-") as tmp:
        root = Path(tmp)

        def seed(version: str) -> None:
            src = Path(prepared[version].wheelhouse)
            dst = root / "wheels" / src.name
            if not dst.exists():
                shutil.copytree(src, dst)

        cache = EnvironmentCache(root, pinned=("47.0.0",))
        cold, ready = {}, {}
        for version in VERSIONS:
            seed(version)
            started = time.monotonic()
            cache.prepare(version)
            cold[version] = time.monotonic() - started
        for version in VERSIONS:  # used in this order: 33 is the least recently used
            started = time.monotonic()
            cache.prepare(version)
            ready[version] = time.monotonic() - started
            time.sleep(0.05)
        entries = {e.version: e for e in cache.entries()}
        total = sum(e.size_bytes for e in entries.values())
        for version in ("33.0.0", "40.0.0", "47.0.0"):
            e = entries[version]
            print(f"tempest {version}: {e.size_bytes / 2**20:.0f} MB (template and "
                  f"wheelhouse); prepared cold in {cold[version]:.1f} s, ready in "
                  f"{ready[version]:.2f} s")
        largest = max(e.size_bytes for e in entries.values())
        cache.max_size = total - largest // 2  # room for two
        started = time.monotonic()
        evicted = cache.prune()
        prune_s = time.monotonic() - started
        left = sorted(e.version for e in cache.entries())
        print(f"3 versions: {total / 2**20:.0f} MB; prune to {cache.max_size / 2**20:.0f} MB "
              f"(47.0.0 pinned) evicted {[e.split('-')[1] for e in evicted]} in "
              f"{prune_s:.2f} s; left {left}")
        seed("33.0.0")
        started = time.monotonic()
        cache.prepare("33.0.0")
        again = time.monotonic() - started
    baseline = ready["47.0.0"]
    print(f"33.0.0 evicted and prepared again from its wheelhouse in {again:.1f} s = "
          f"{again / baseline:.0f}x a ready prepare ({baseline:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
