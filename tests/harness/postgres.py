"""A real PostgreSQL server on 127.0.0.1 for the tests (Debian's postgresql package),
run as our own child process in a throwaway data directory."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from farm_lab.loopback import free_port


def find_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user."""
    if os.geteuid() == 0:  # setpriv execs: the child's PID is the server's own
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", *argv]
    return argv


@dataclass
class Postgres:
    """`data` defaults to a new directory under /tmp that the postgres user can reach
    (pytest's own temporary directories are private to root)."""

    data: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _made: bool = False

    def start(self, timeout_s: float = 60) -> None:
        initdb, postgres = find_bin("initdb"), find_bin("postgres")
        if not initdb or not postgres:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
        self.port = self.port or free_port()
        if self.data is None:
            self.data = Path(tempfile.mkdtemp(prefix="farm-pg-"))
            self._made = True
        self.data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        data = self.data
        subprocess.run(_as_postgres([initdb, "-D", str(data / "db"), "-A", "trust",
                                     "-U", "postgres", "--no-sync"]),
                       check=True, capture_output=True)
        log = (data / "postgres.log").open("wb")
        self.proc = subprocess.Popen(
            _as_postgres([postgres, "-D", str(data / "db"), "-h", "127.0.0.1",
                          "-p", str(self.port), "-k", str(data), "-c", "fsync=off"]),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError((data / "postgres.log").read_text()[-2000:])
            if subprocess.run([find_bin("pg_isready") or "pg_isready", "-h", "127.0.0.1",
                               "-p", str(self.port)], capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("PostgreSQL did not start")

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"farm_{uuid.uuid4().hex[:12]}"
        subprocess.run([find_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p",
                        str(self.port), "-U", "postgres", name], check=True,
                       capture_output=True)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self._made and self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)
