"""A real gearmand (Debian's gearman-job-server) on 127.0.0.1, as our own child process."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm_client.gearman_client import Gearman, GearmanError, Server
from farm_lab.loopback import free_port, stop_process


def find_gearmand() -> str | None:
    return shutil.which("gearmand") or next(
        (p for p in ("/usr/sbin/gearmand", "/usr/local/sbin/gearmand") if Path(p).exists()),
        None)


def admin(port: int, command: str) -> list[str]:
    """One gearmand admin command (the client's own implementation of the protocol)."""
    return Gearman([Server("127.0.0.1", port)]).admin(Server("127.0.0.1", port), command)


def status(port: int) -> dict[str, tuple[int, int, int]]:
    """function -> (queued, running, workers)."""
    out = {}
    for line in admin(port, "status"):
        parts = line.split("\t")
        if len(parts) == 4:
            out[parts[0]] = (int(parts[1]), int(parts[2]), int(parts[3]))
    return out


@dataclass
class Gearmand:
    state: Path
    port: int = field(default_factory=free_port)
    retries: int = 0  # -j: 0 = re-queue forever when a worker dies mid-job
    queue: str = "libsqlite3"
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15) -> None:
        binary = find_gearmand()
        if binary is None:
            raise RuntimeError("gearmand not installed: apt-get install gearman-job-server")
        self.state.mkdir(parents=True, exist_ok=True)
        argv = [binary, "-L", "127.0.0.1", "-p", str(self.port),
                "-l", str(self.state / "gearmand.log"), "--verbose", "INFO",
                "--job-handle-prefix", f"H:{int(time.time())}", "-j", str(self.retries)]
        if self.queue == "libsqlite3":
            argv += ["-q", "libsqlite3", f"--libsqlite3-db={self.state / 'queue.sqlite'}"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gearmand exited {self.proc.returncode}: "
                                   f"{(self.state / 'gearmand.log').read_text()[-500:]}")
            try:
                admin(self.port, "version")
                return
            except GearmanError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("gearmand did not answer")

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, 10)
        self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.contextmanager
def running(state: Path, **options: Any) -> Iterator[Gearmand]:
    """A started gearmand (options: Gearmand's fields), stopped on the way out."""
    server = Gearmand(state, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
