"""An HTTP server on 127.0.0.1 in a daemon thread, and a quiet handler base."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float,
              poll_s: float = 0.2) -> str | None:
    """Poll `url` while `proc` runs until it answers 2xx: None when it did, else why not."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            return f"exited {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return None
        except OSError:
            time.sleep(poll_s)
    return f"did not answer on {url} within {timeout_s:g} s"


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command: [0] state, [1] ppid, [2] pgrp, [19] start time;
    None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _all_stats() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := proc_stat(int(entry))):
            found[int(entry)] = fields
    return found


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (children, their children...), from /proc."""
    parents: dict[int, list[int]] = {}
    for child, fields in _all_stats().items():
        parents.setdefault(int(fields[1]), []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def group_members(pgid: int) -> list[int]:
    """The processes of process group `pgid` that run (zombies are dead: their files are
    closed, only their reaping is left)."""
    return [pid for pid, fields in _all_stats().items()
            if int(fields[2]) == pgid and fields[0] != "Z"]


def kill_group(pgid: int, timeout_s: float = 60) -> None:
    """SIGKILL the whole process group `pgid` (a process forking meanwhile cannot escape a
    group's kill, where a list of descendants misses it) and wait until none of it runs."""
    end = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if not group_members(pgid):
            return
        if time.monotonic() > end:
            raise RuntimeError(f"process group {pgid} outlived SIGKILL: {group_members(pgid)}")
        time.sleep(0.05)


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process under it, all at once (none left to clean up after
    the others, as when a host dies)."""
    for target in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QuietHandler(BaseHTTPRequestHandler):
    head_only = False

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, code: int, data: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not self.head_only:
            self.wfile.write(data)


class Loopback:
    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


HUNG_PASSWORD = "Hung-pw-9431"  # the hanging cloud never checks it


class Silent:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers: a cloud
    endpoint that hangs. Holds every connection until stopped."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)

    def tempest_conf(self, url: str | None = None,
                     password: str = HUNG_PASSWORD) -> dict[str, Any]:
        """A conf that makes every test class of a run wait on this cloud for as long as the
        run lasts. With dynamic credentials, Tempest's setUpClass asks the identity endpoint
        (`url`, this listener by default) for an admin token before any test runs; nothing
        answers, and an http_timeout of a day means the request does not give up. Such a run
        cannot pass or fail by itself: it ends only when it is killed (at its timeout_s:
        `timed_out`), cancelled, or released by `stop()` (the connections close, it fails),
        however fast or slow the machine. (Without credentials Tempest fails on its own in
        setUpClass, "A valid credential provider is needed", and never calls the cloud.)"""
        return {"identity": {"uri_v3": f"{url or f'http://127.0.0.1:{self.port}'}/v3"},
                "auth": {"use_dynamic_credentials": True, "admin_username": "admin",
                         "admin_password": password, "admin_project_name": "admin",
                         "admin_domain_name": "Default"},
                "service-clients": {"http_timeout": 86400}}

    def wait_connected(self, connections: int = 1, timeout_s: float = 300,
                       ended: Callable[[], bool] | None = None) -> None:
        """Wait until Tempest has reached this cloud `connections` times in all: a run is
        then under way and blocked on it, not listing or starting. `ended()` true (the run
        is over) fails at once: nothing will come."""
        end = time.monotonic() + timeout_s
        while len(self.conns) < connections:
            assert not (ended and ended()), "the run ended before it reached the hanging cloud"
            assert time.monotonic() < end, f"nothing reached the hanging cloud in {timeout_s} s"
            time.sleep(0.05)

    def stop(self) -> None:
        """Close every connection (a blocked run then fails at once) and stop listening."""
        self._stop.set()
        for conn in self.conns:
            conn.close()
        self.sock.close()
