"""The multiprocess metrics directory of one `farm-server serve`.

Every process of a server (gunicorn's master and workers, the monitor) counts into one
directory, made at start and removed at exit. A server killed with -9 cannot remove its
own, so each start removes those whose server is gone. "Gone" is told by a lock, not by
a pid: the master holds a shared `flock` on the directory's `serve.lock`, its gunicorn
workers inherit it and the monitor takes its own (`hold`), so an exclusive lock can be
had exactly when no process of that server is left. A pid can be reused, or belong to
another pid namespace that shares /tmp; a lock cannot mislead that way.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "farm-metrics-"
LOCK = "serve.lock"
# a directory is given its lock within microseconds of being made; one without a lock
# this old was left by a server killed in between (or by a version without locks)
UNLOCKED_GRACE_S = 600.0


@contextlib.contextmanager
def serve_dir() -> Iterator[Path]:
    """A new metrics directory, locked for this process and its forks, removed at exit;
    the directories of servers that are gone are removed first."""
    remove_abandoned()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    pending = path / f".{LOCK}"
    fd = os.open(pending, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        # named only once locked: a `serve.lock` that another start can lock is abandoned
        pending.rename(path / LOCK)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def hold(path: Path) -> int | None:
    """Hold `path` (a server's directory) for this process's life: the monitor, a process
    of its own, keeps its counts' directory while it runs. The fd, or None for a directory
    `serve_dir` did not make."""
    try:
        fd = os.open(path / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def remove_abandoned(tmp: Path | None = None) -> list[Path]:
    """Remove the metrics directories (ours: same owner) that no live server holds; return
    them."""
    removed = []
    for path in Path(tmp or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.geteuid():
                continue
        except OSError:
            continue
        if _abandoned(path):
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                log.warning("could not remove the metrics directory %s of a server that "
                            "is gone", path)
            else:
                removed.append(path)
    return removed


def _abandoned(path: Path) -> bool:
    try:
        fd = os.open(path / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        try:
            return time.time() - path.stat().st_mtime > UNLOCKED_GRACE_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a process of that server still holds it
    finally:
        os.close(fd)  # also lets the lock go: nobody else wants it
    return True
