"""Child processes in their own process group, killed as a whole, with a deadline.

Tempest forks stestr workers; killing only the top process would leave them running.
Every child therefore gets its own session (process group) and is stopped by signalling
the group: SIGTERM, a grace period, then SIGKILL. If the worker itself dies, the kernel
sends the direct child SIGKILL (PR_SET_PDEATHSIG) and the next worker start removes the rest.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from farm_worker import defaults

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Outcome(str, enum.Enum):
    EXITED = "exited"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class ProcessGroup:
    """A child started as the leader of a new process group."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
                 stdout: int | IO[bytes] | None = None, stderr: int | IO[bytes] | None = None,
                 pgid_file: Path | None = None):
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=stderr, start_new_session=True, preexec_fn=_die_with_parent)
        self.pgid = self.proc.pid
        log.debug("started %s (process group %d)", self.argv[0], self.pgid)
        if pgid_file is not None:
            pgid_file.write_text(f"{self.pgid}\n")

    def wait(self, deadline: float | None, cancel: threading.Event | None,
             clock: Callable[[], float] = time.monotonic, poll_s: float = 0.1) -> Outcome:
        """Wait for the child; stop the whole group when cancelled or past `deadline`."""
        while True:
            try:
                self.proc.wait(timeout=poll_s)
                return Outcome.EXITED
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.is_set():
                self.kill()
                return Outcome.CANCELLED
            if deadline is not None and clock() >= deadline:
                self.kill()
                return Outcome.TIMED_OUT

    def kill(self, grace_s: float = defaults.KILL_GRACE_S) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after `grace_s`."""
        kill_group(self.pgid, grace_s)
        try:
            self.proc.wait(timeout=grace_s + 5)
        except subprocess.TimeoutExpired:
            log.error("process %s survived SIGKILL", self.pgid)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, grace_s: float = defaults.KILL_GRACE_S) -> None:
    """Stop every process of group `pgid`; returns when none is left (or after SIGKILL)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            _reap(pgid)
            if not group_alive(pgid):
                return
            time.sleep(0.05)


def _reap(pgid: int) -> None:
    """Collect our own exited children of the group so they do not linger as zombies."""
    try:
        while True:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
            if pid == 0:
                return
    except ChildProcessError:
        return


def kill_stale_group(pgid_file: Path, owner_dir: Path) -> bool:
    """Kill a group left by a dead worker, if its leader still works in `owner_dir`."""
    try:
        pgid = int(pgid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    if not group_alive(pgid):
        return False
    try:
        cwd = Path(os.readlink(f"/proc/{pgid}/cwd"))
    except OSError:
        cwd = None
    if cwd is not None and not cwd.is_relative_to(owner_dir):
        log.warning("process %s from %s now belongs to something else; left alone",
                    pgid, pgid_file)
        return False
    log.warning("killing process group %s left behind in %s", pgid, owner_dir)
    kill_group(pgid, grace_s=1.0)
    return True
