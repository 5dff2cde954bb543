"""A farm of two of each on one machine: two gearmand (persistent queues), two status
servers sharing one database, and worker processes on "hosts" (here a directory each, a
slot per process), every one given both gearmand and both servers. For the fault suite's
campaign and `bench/campaign.py`; everything started is stopped by `stop()`.

Workers reach gearmand and the servers at `reach(port)`: 127.0.0.1 here; a subclass that
places the workers on booted hosts (tests/harness/hostpool.py) relays the farm's ports
into the hosts' network and starts its workers there."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from farm_lab.gearmand import Gearmand, status
from farm_lab.loopback import descendants, kill_tree, proc_stat
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerProcess, start_worker


class Worker(Protocol):
    """A worker of the pool, wherever it runs."""

    worker_id: str
    work_dir: Path

    def output(self) -> str: ...

    def stop(self, timeout_s: float = 30) -> int: ...


@dataclass
class Pool:
    base: Path
    database_url: str
    cache_dir: Path
    server_extra: dict[str, Any] = field(default_factory=dict)
    worker_extra: dict[str, Any] = field(default_factory=dict)
    gearmands: list[Gearmand] = field(default_factory=list)
    servers: list[FarmServer] = field(default_factory=list)
    workers: dict[str, Worker] = field(default_factory=dict)

    def start(self) -> Pool:
        try:
            for n in (1, 2):
                g = Gearmand(self.base / f"gearmand{n}")
                self.gearmands.append(g)
                g.start()
            for n in (1, 2):
                server = FarmServer(self.base / f"server{n}", self.gearman)
                server.extra = {"database_url": self.database_url,
                                "callback_url": f"http://{self.reach(server.port)}/",
                                **self.server_extra}
                self.servers.append(server)
                if n == 1:
                    server.start()
                else:
                    server.join(self.servers[0])
        except BaseException:
            self.stop()
            raise
        return self

    def reach(self, port: int) -> str:
        """Where workers reach the farm's service listening on 127.0.0.1:`port`."""
        return f"127.0.0.1:{port}"

    @property
    def gearman(self) -> list[str]:
        return [g.address for g in self.gearmands]

    def worker_config(self, host: str, slot: int, versions: list[str]) -> dict[str, Any]:
        """What every worker of the pool is given: both gearmand, both servers."""
        return {"gearman": [self.reach(g.port) for g in self.gearmands],
                "cache_dir": self.cache_dir, "versions": versions,
                "worker_id": f"{host}-{slot}",
                "callbacks": [{"url": f"http://{self.reach(s.port)}/",
                               "token": self.servers[0].worker_token} for s in self.servers],
                **self.worker_extra}

    def worker(self, host: str, slot: int, versions: list[str]) -> Worker:
        """Start (or start again, on the same directories) slot `slot` of `host`."""
        name = f"{host}-{slot}"
        self.workers[name] = start_worker(self.base / host / str(slot),
                                          **self.worker_config(host, slot, versions))
        return self.workers[name]

    def kill_host(self, host: str) -> list[str]:
        """kill -9 of every process of `host`'s slots (workers and their Tempest)."""
        killed = [n for n in self.workers if n.startswith(f"{host}-")]
        for name in killed:
            w = self.workers[name]
            assert isinstance(w, WorkerProcess)
            kill_tree(w.proc.pid)
            w.proc.wait()
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

    def relay_pids(self) -> list[int]:
        """Processes that carry the farm's traffic to the workers (none here)."""
        return []

    def worker_pids(self) -> list[int]:
        pids = []
        for w in self.workers.values():
            if isinstance(w, WorkerProcess) and w.proc.poll() is None:
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
        if fields := proc_stat(pid):
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick
