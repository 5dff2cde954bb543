"""Checks tests make on what a job left behind: processes, directories, mounts."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gear

from farm_lab.loopback import proc_stat
from harness.gearclient import events


def processes_under(path: Path) -> list[int]:
    """PIDs whose working directory or command line lies under `path`."""
    found = []
    prefix = str(path.resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd.startswith(prefix) or prefix in cmdline:
            found.append(int(entry))
    return found


@dataclass(frozen=True)
class Proc:
    """A process: its pid and its start time (a pid used again is another process)."""

    pid: int
    start: str


def procs(pids: list[int]) -> list[Proc]:
    """The processes that run under these pids now."""
    return [Proc(pid, fields[19]) for pid in pids if (fields := proc_stat(pid))]


def running(proc: Proc) -> bool:
    """It exists and is not a zombie (dead, its files closed, not yet reaped: an orphan's
    reaper may never come where PID 1 is not an init)."""
    fields = proc_stat(proc.pid)
    return fields is not None and fields[19] == proc.start and fields[0] != "Z"


def wait_gone(gone: list[Proc], timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while any(running(p) for p in gone):
        if time.monotonic() > end:
            raise AssertionError(f"still running: {[p for p in gone if running(p)]}")
        time.sleep(0.05)


def leftovers(work_dir: Path) -> list[str]:
    """Anything a finished job left in a worker's work directory: files, mounts, processes."""
    out = [str(p) for p in work_dir.rglob("*") if p.is_file() or
           (p.is_dir() and p.parent != work_dir)] if work_dir.exists() else []
    mounts = Path("/proc/self/mountinfo").read_text()
    out += [line for line in mounts.splitlines() if str(work_dir) in line]
    out += [f"pid {pid}" for pid in processes_under(work_dir)]
    return out


def wait_for_state(job: gear.Job, state: str, timeout_s: float = 120) -> dict[str, Any]:
    """Block until the job's WORK_DATA shows `state`; the event."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for ev in events(job):
            if ev["event"] == "state" and ev["state"] == state:
                return ev
        if job.complete:
            break
        time.sleep(0.1)
    raise AssertionError(f"job never reached {state}: {[e.get('state') for e in events(job)]}")
