"""A farm of two of each on one machine: two gearmand (persistent queues), two status
servers sharing one database, and worker processes on "hosts" (a directory each, a slot
per process), every one given both gearmand and both servers. For the fault suite's
campaign and `bench/campaign.py`; everything started is stopped by `stop()`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm_lab.gearmand import Gearmand, status
from farm_lab.loopback import descendants, kill_tree
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerProcess, start_worker


@dataclass
class Pool:
    base: Path
    database_url: str
    cache_dir: Path
    server_extra: dict[str, Any] = field(default_factory=dict)
    worker_extra: dict[str, Any] = field(default_factory=dict)
    gearmands: list[Gearmand] = field(default_factory=list)
    servers: list[FarmServer] = field(default_factory=list)
    workers: dict[str, WorkerProcess] = field(default_factory=dict)

    def start(self) -> Pool:
        try:
            for n in (1, 2):
                g = Gearmand(self.base / f"gearmand{n}")
                self.gearmands.append(g)
                g.start()
            extra = {"database_url": self.database_url, **self.server_extra}
            first = FarmServer(self.base / "server1", self.gearman, extra=extra)
            self.servers.append(first)
            first.start()
            second = FarmServer(self.base / "server2", self.gearman, extra=extra)
            self.servers.append(second)
            second.join(first)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def gearman(self) -> list[str]:
        return [g.address for g in self.gearmands]

    def worker(self, host: str, slot: int, versions: list[str]) -> WorkerProcess:
        """Start (or start again, on the same directories) slot `slot` of `host`."""
        name = f"{host}-{slot}"
        callbacks = [{"url": s.url, "token": self.servers[0].worker_token}
                     for s in self.servers]
        self.workers[name] = start_worker(self.base / host / str(slot), gearman=self.gearman,
                                          cache_dir=self.cache_dir, versions=versions,
                                          worker_id=name, callbacks=callbacks,
                                          **self.worker_extra)
        return self.workers[name]

    def kill_host(self, host: str) -> list[str]:
        """kill -9 of every process of `host`'s slots (workers and their Tempest)."""
        killed = [n for n in self.workers if n.startswith(f"{host}-")]
        for name in killed:
            kill_tree(self.workers[name].proc.pid)
            self.workers[name].proc.wait()
        return killed

    def queued(self) -> int:
        """Jobs queued or running in either gearmand."""
        return sum(q for g in self.gearmands for q, _, _ in status(g.port).values())

    def farm_pids(self) -> list[int]:
        """The farm's own processes: both gearmand, both servers (gunicorn's master and
        workers, the monitors)."""
        pids = [g.proc.pid for g in self.gearmands if g.proc is not None]
        for s in self.servers:
            if s.proc is not None:
                pids += [s.proc.pid, *descendants(s.proc.pid)]
        return pids

    def worker_pids(self) -> list[int]:
        pids = []
        for w in self.workers.values():
            if w.proc.poll() is None:
                pids += [w.proc.pid, *descendants(w.proc.pid)]
        return pids

    def stop(self) -> None:
        for w in self.workers.values():
            w.stop()
        for s in self.servers:
            s.stop()
        for g in self.gearmands:
            g.stop()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (their reaped children included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick
