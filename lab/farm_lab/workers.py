"""Real `farm-worker run` processes for tests and the demo, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from farm_lab.gearmand import Gearmand, status

TEMPEST = "47.0.0"  # the version most tests run
FARM_WORKER = str(Path(sys.executable).parent / "farm-worker")


@dataclass
class WorkerProcess:
    worker_id: str
    config: Path
    log: Path
    work_dir: Path
    proc: subprocess.Popen[bytes]

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 60) -> int:
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (drain); a job still running after 5 s gets a second SIGTERM (the worker
        cancels it and cleans up); SIGKILL as the last resort. Job mounts a killed worker
        left (here, or by a test) are undone. The exit code."""
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        for pgid_file in self.work_dir.rglob("pgid") if self.work_dir.exists() else []:
            with contextlib.suppress(ValueError, OSError):  # a killed job's Tempest
                os.killpg(int(pgid_file.read_text()), signal.SIGKILL)
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        for line in mounts:
            point = line.split()[4]
            if point.startswith(str(self.work_dir)):
                subprocess.run(["umount", "-l", point], check=False)
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout_s: float = 120) -> None:
        """Wait until the worker's log has a line matching the regex `pattern`."""
        end = time.monotonic() + timeout_s
        while not re.search(pattern, self.output()):
            assert time.monotonic() < end, f"{pattern!r} not in {self.log}"
            time.sleep(0.1)


def write_config(path: Path, **keys: Any) -> Path:
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


def worker_config(base: Path, *, gearman: list[str], cache_dir: Path, versions: list[str],
                  worker_id: str, **extra: Any) -> Path:
    """The configuration file of a worker whose directories are under `base`."""
    base.mkdir(parents=True, exist_ok=True)
    keys: dict[str, Any] = {"worker_id": worker_id, "gearman_servers": gearman,
                            "tempest_versions": versions, "cache_dir": str(cache_dir),
                            "work_dir": str(base / "work"), "results_dir": str(base / "results"),
                            "outbox_dir": str(base / "outbox"),
                            "log_level": "INFO"}
    keys.update(extra)
    return write_config(base / f"{worker_id}.yaml", **keys)


def start_worker(base: Path, *, gearman: list[str], cache_dir: Path, versions: list[str],
                 worker_id: str, wait_for: str | None = None, timeout_s: float = 120,
                 **extra: Any) -> WorkerProcess:
    """Start `farm-worker run` and wait until gearmand lists it for `wait_for`."""
    config = worker_config(base, gearman=gearman, cache_dir=cache_dir, versions=versions,
                           worker_id=worker_id, **extra)
    work_dir = base / "work"
    log = base / f"{worker_id}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_WORKER_")}
    with log.open("ab") as fh:  # a worker started again on the same directory appends
        proc = subprocess.Popen([FARM_WORKER, "run", "-c", str(config)], stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    worker = WorkerProcess(worker_id, config, log, work_dir, proc)
    function = wait_for or f"farm:ping:{worker_id}"
    port = int(gearman[0].rsplit(":", 1)[1])
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.returncode}:\n{worker.output()[-3000:]}")
        if status(port).get(function, (0, 0, 0))[2] > 0:
            return worker
        time.sleep(0.1)
    worker.stop()
    raise RuntimeError(f"worker did not register {function}:\n{worker.output()[-3000:]}")


class WorkerFactory:
    """Starts real worker processes against the session's gearmand; stops them all."""

    def __init__(self, base: Path, gearmand: Gearmand, cache: Path) -> None:
        self.base, self.gearmand, self.cache = base, gearmand, cache
        self.started: list[WorkerProcess] = []

    def start(self, worker_id: str = "w1", versions: tuple[str, ...] = (TEMPEST,),
              **extra: object) -> WorkerProcess:
        extra.setdefault("gearman", [self.gearmand.address])
        extra.setdefault("cache_dir", self.cache)
        w = start_worker(self.base / worker_id, versions=list(versions), worker_id=worker_id,
                         **extra)  # type: ignore[arg-type]
        self.started.append(w)
        return w

    def stop_all(self) -> None:
        for w in self.started:
            w.stop()
