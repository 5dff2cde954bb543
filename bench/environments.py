"""Time to a job environment ready to run, from the warm cache, against virtualenv + pip.

    .venv/bin/python bench/environments.py [--version 47.0.0] [--runs 5] [--cache DIR]

For each isolation mode the worker supports here: the time from asking the cache for the
version's template to a finished `tempest --version` in the job's environment (the mount
or copy, the shared lock, and Tempest's first start all included), then removed again.
The baseline, measured in the same run: `virtualenv` + `pip install tempest==X` with a
warm pip cache (one untimed run warms it), then `tempest --version`.
The last line compares the worker's `auto` mode with the baseline (medians of --runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from farm_worker.environments import EnvironmentCache
from farm_worker.isolation import MODES, can_overlay, job_environment, resolve_mode
from farm_worker.tempest import tempest_version


def farm_ready(cache: EnvironmentCache, version: str, mode: str, scratch: Path) -> float:
    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=scratch))
    start = time.perf_counter()
    template = cache.template(version)
    assert template is not None, f"run `farm-worker prepare {version}` first"
    with cache.in_use(template), job_environment(template.path, job_dir, mode) as env:
        home = job_dir / "home"
        home.mkdir()
        assert tempest_version(env, home) == version
        elapsed = time.perf_counter() - start
    shutil.rmtree(job_dir)
    return elapsed


def pip_ready(version: str, pip_cache: Path, scratch: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_CACHE_DIR=str(pip_cache),
               VIRTUALENV_NO_PERIODIC_UPDATE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv = Path(tempfile.mkdtemp(prefix="venv-", dir=scratch))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(venv)], check=True, env=env)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--index-url",
                    "https://pypi.org/simple", f"tempest=={version}"], check=True, env=env)
    out = subprocess.run([str(venv / "bin" / "tempest"), "--version"], check=True, env=env,
                         capture_output=True, text=True, cwd=venv).stdout
    elapsed = time.perf_counter() - start
    assert version in out, out
    shutil.rmtree(venv)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="47.0.0")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", default=os.environ.get("FARM_TEST_CACHE", str(
        Path.home() / ".cache" / "refstack-farm")), help="farm cache root (as `make test`)")
    args = parser.parse_args()
    root = Path(args.cache)
    cache = EnvironmentCache(root / "worker-cache")
    print(f"preparing tempest {args.version} (once; not timed)", file=sys.stderr)
    cache.prepare(args.version)
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as tmp:
        scratch = Path(tmp)
        modes = [m for m in MODES if m != "overlay" or can_overlay(scratch)]
        results: dict[str, float] = {}
        for mode in modes:
            farm_ready(cache, args.version, mode, scratch)  # page cache warm, as on a worker
            runs = [farm_ready(cache, args.version, mode, scratch) for _ in range(args.runs)]
            results[mode] = statistics.median(runs)
            print(f"{mode:>9}: median {results[mode]:.3f} s  runs "
                  + " ".join(f"{r:.3f}" for r in runs))
        pip_cache = root / "bench-pip-cache"
        print("warming the pip cache (not timed)", file=sys.stderr)
        pip_ready(args.version, pip_cache, scratch)
        runs = [pip_ready(args.version, pip_cache, scratch) for _ in range(args.runs)]
        baseline = statistics.median(runs)
        print(f"virtualenv+pip: median {baseline:.3f} s  runs "
              + " ".join(f"{r:.3f}" for r in runs))
        auto = resolve_mode("auto", scratch)
        ready = results[auto]
        print(f"env ready ({auto}) {ready:.2f} s vs virtualenv+pip {baseline:.1f} s: "
              f"{baseline / ready:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
