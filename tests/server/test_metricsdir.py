"""The metrics directory of `farm-server serve`: kept while any process of its server
lives, removed by the next start once none does, whatever the pids say."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_server import metricsdir
from harness.checks import procs, wait_gone

# a server's master: makes the directory, forks a "gunicorn worker" that inherits the
# lock, prints both, and waits to be told to leave
MASTER = """
import os, sys, time
from farm_server import metricsdir
with metricsdir.serve_dir() as path:
    child = os.fork()
    if child == 0:
        time.sleep(3600)
        os._exit(0)
    print(path, child, flush=True)
    sys.stdin.readline()
"""
# the monitor: holds a directory it did not make
MONITOR = """
import sys
from pathlib import Path
from farm_server import metricsdir
metricsdir.hold(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.readline()
"""


def wait_removed(tmp: Path, path: Path) -> None:
    """Until the next start would remove `path` (its last process is gone), and does."""
    end = time.monotonic() + 60
    while metricsdir.remove_abandoned(tmp) != [path]:
        assert time.monotonic() < end, f"{path} is still held"
        time.sleep(0.05)
    assert not path.exists()


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, int]]:
    with subprocess.Popen([sys.executable, "-c", MASTER], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "TMPDIR": str(tmp_path)}) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        try:
            path, child = Path(line[0]), int(line[1])
            yield proc, path, child
        finally:
            for pid in [str(proc.pid), *line[1:]]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def test_the_directory_of_a_live_server_stays(tmp_path: Path, master: Any) -> None:
    proc, path, _child = master
    assert path.parent == tmp_path and path.name.startswith(f"farm-metrics-{proc.pid}-")
    assert metricsdir.remove_abandoned(tmp_path) == []
    assert (path / "serve.lock").exists()


def test_a_killed_server_s_directory_goes_once_its_last_process_is_gone(
        tmp_path: Path, master: Any) -> None:
    """kill -9 of the master: its gunicorn worker still holds the lock (it counts into
    the directory); once the worker is gone too, the directory goes."""
    proc, path, child = master
    proc.kill()
    proc.wait()
    assert metricsdir.remove_abandoned(tmp_path) == []
    assert path.is_dir()
    os.kill(child, signal.SIGKILL)
    wait_removed(tmp_path, path)


def test_a_clean_exit_removes_the_directory(tmp_path: Path, master: Any) -> None:
    proc, path, child = master
    os.kill(child, signal.SIGKILL)
    proc.communicate("\n", timeout=60)
    assert proc.returncode == 0 and not path.exists()


def test_the_monitor_keeps_the_directory_of_a_master_that_is_gone(
        tmp_path: Path, master: Any) -> None:
    proc, path, child = master
    with subprocess.Popen([sys.executable, "-c", MONITOR, str(path)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as monitor:
        try:
            assert monitor.stdout is not None and monitor.stdout.readline() == "held\n"
            gone = procs([proc.pid, child])
            for pid in (proc.pid, child):
                os.kill(pid, signal.SIGKILL)
            proc.wait()
            wait_gone(gone)
            assert metricsdir.remove_abandoned(tmp_path) == [] and path.is_dir()
        finally:
            monitor.kill()
    assert metricsdir.remove_abandoned(tmp_path) == [path]


def test_a_pid_says_nothing(tmp_path: Path) -> None:
    """The failure seen on CI: a directory named after a pid that is alive (reused, or
    this process's own) whose server is gone."""
    path = tmp_path / f"farm-metrics-{os.getpid()}-abcd1234"
    path.mkdir()
    (path / "serve.lock").touch()
    (path / "counter_1.db").write_bytes(b"x")
    assert metricsdir.remove_abandoned(tmp_path) == [path]


def test_a_directory_without_its_lock_goes_only_when_old(tmp_path: Path) -> None:
    """Being made (the lock comes a moment later) or left by a server killed in that
    moment, or by a version without locks."""
    young, old = tmp_path / "farm-metrics-1-young", tmp_path / "farm-metrics-2-old"
    young.mkdir()
    old.mkdir()
    then = time.time() - metricsdir.UNLOCKED_GRACE_S - 60
    os.utime(old, (then, then))
    assert metricsdir.remove_abandoned(tmp_path) == [old]
    assert young.is_dir()


def test_what_is_not_ours_stays(tmp_path: Path) -> None:
    other = tmp_path / "farm-metrics-3-other"
    other.mkdir()
    (other / "serve.lock").touch()
    os.chown(other, 65534, 65534)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "serve.lock").touch()
    (tmp_path / "farm-metrics-4-link").symlink_to(target)
    (tmp_path / "farm-metrics-5-file").write_text("")
    assert metricsdir.remove_abandoned(tmp_path) == []
    assert other.is_dir() and target.is_dir()
