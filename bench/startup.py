"""The CPU a `farm` call costs before it does anything: `--help`, and `farm status` of a
test straight to gearmand and through the status server.

    .venv/bin/python bench/startup.py [--runs 15]

Starts gearmand and `farm-server serve` on loopback, queues a test, then runs each command
`--runs` times, interleaved, and takes the median of each one's user+system CPU (from
wait4, so the machine's load does not count as it would in wall time). The baseline,
measured in the same run: `python -c pass` with the same interpreter; the server path's
floor, `python -c "import requests"`, the HTTP library it cannot do without. The goal is
`farm --help` and `farm status` under 0.3 s of CPU; the last line is e.g.
`farm status (server) 0.21 s CPU (7.0x python -c pass; goal 0.3 s: met)`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from farm_lab.gearmand import Gearmand
from farm_lab.server import FarmServer

BIN = Path(sys.executable).parent
GOAL_S = 0.3


def cpu_seconds(argv: list[str], env: dict[str, str]) -> float:
    """The user+system CPU of one run of `argv` and its children."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-bench-startup-") as tmp:
        base = Path(tmp)
        gearmand = Gearmand(base / "gearmand", queue="builtin")
        gearmand.start()
        server = FarmServer(base / "server", [gearmand.address], extra={"monitor": False})
        try:
            server.start()
            server.queue_test("bench-1")
            env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
            env.update(FARM_CONFIG=os.devnull, PYTHONDONTWRITEBYTECODE="1")
            farm = str(BIN / "farm")
            cases = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "python -c 'import requests'": [sys.executable, "-c", "import requests"],
                "farm --help": [farm, "--help"],
                "farm status (gearmand)": [farm, "status", "bench-1", "--direct",
                                           "--gearman", gearmand.address],
                "farm status (server)": [farm, "status", "bench-1", "--server", server.url,
                                         "--token", server.user_token],
            }
            for argv in cases.values():  # warm the page cache and the .pyc files
                cpu_seconds(argv, {**env, "PYTHONDONTWRITEBYTECODE": ""})
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.runs):
                for name, argv in cases.items():
                    samples[name].append(cpu_seconds(argv, env))
        finally:
            server.stop()
            gearmand.stop()
    median = {name: statistics.median(values) for name, values in samples.items()}
    baseline = median["python -c pass"]
    for name, cpu in median.items():
        line = f"{name} {cpu:.3f} s CPU ({cpu / baseline:.1f}x python -c pass"
        if name.startswith("farm"):
            line += f"; goal {GOAL_S:g} s: {'met' if cpu < GOAL_S else 'NOT met'}"
        print(line + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
