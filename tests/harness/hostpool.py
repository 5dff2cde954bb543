"""The pool of `farm_lab.pool` with its workers on booted hosts (harness.nspawn): each host
a systemd-nspawn machine in its own network namespace, each worker slot a systemd unit on
its host (`farm-worker-<slot>-<n>`, started with systemd-run).

- gearmand, the status servers and PostgreSQL stay on this machine; their ports are relayed
  to the hosts' bridge (`Hosts.bridge`: the same port on the bridge's address), and the
  servers hand out the relayed address as their callback URL.
- The hosts see this machine's Python, the project's virtualenv and sources, and the
  worker cache read-only (bind mounts at the same paths: the templates are prepared once,
  not per host). Each host has its own read-write directory for its slots (work, outbox,
  results, logs) and its own `.state` of the cache (flocks, last-use marks).
- `kill_host` is `systemctl kill --signal=SIGKILL` of the host's worker units (their
  control groups: a job's Tempest too); `worker` starts a slot's unit again.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from farm_lab.gearmand import status
from farm_lab.loopback import descendants
from farm_lab.pool import Pool, Worker
from farm_lab.venvs import cache_root
from farm_lab.workers import worker_config
from harness.checks import processes_under
from harness.nspawn import Hosts

REPO = Path(__file__).resolve().parents[2]
FARM_WORKER = Path(sys.executable).parent / "farm-worker"


@dataclass
class HostWorker:
    """A worker slot running as a systemd unit on a booted host."""

    worker_id: str
    hosts: Hosts
    host: str
    unit: str
    config: Path
    log: Path
    work_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pids(self) -> list[int]:
        """Its processes as this machine's /proc sees them (the worker, its jobs)."""
        return [pid for p in processes_under(self.config) for pid in (p, *descendants(p))]

    def stop(self, timeout_s: float = 30) -> int:
        """systemctl stop: SIGTERM, the worker drains (systemd's stop timeout after)."""
        done = self.hosts.ssh(self.host, f"systemctl stop {self.unit}; "
                                         f"systemctl reset-failed {self.unit} 2>/dev/null; true")
        return done.returncode


@dataclass
class HostPool(Pool):
    """Pool with its workers on `host_count` booted hosts h1..hN."""

    host_count: int = 4
    nspawn_cache: Path = field(default_factory=lambda: cache_root() / "nspawn")
    hosts: Hosts | None = None
    relayed: set[int] = field(default_factory=set)
    starts: int = 0

    def start(self) -> HostPool:
        self.hosts = Hosts(self.base / "nspawn", self.nspawn_cache)
        ro = {REPO, Path(sys.prefix), Path(sys.base_prefix), self.cache_dir}
        self.hosts.binds["*"] = [f"--bind-ro={p}" for p in sorted(ro)
                                 if not any(q in p.parents for q in ro)]
        for i in range(1, self.host_count + 1):
            name = f"h{i}"
            own = self.base / name
            (own / "cache-state").mkdir(parents=True, exist_ok=True)
            self.hosts.binds[name] = [f"--bind={own}",
                                      f"--bind={own / 'cache-state'}:{self.cache_dir / '.state'}"]
        try:
            self.hosts.up(self.host_count)
            super().start()
        except BaseException:
            self.stop()
            raise
        return self

    def reach(self, port: int) -> str:
        assert self.hosts is not None
        if port not in self.relayed:
            self.hosts.bridge(f"farm{port}", port, f"127.0.0.1:{port}")
            self.relayed.add(port)
        return f"{self.hosts.bridge_ip}:{port}"

    def worker(self, host: str, slot: int, versions: list[str]) -> Worker:
        assert self.hosts is not None
        keys = self.worker_config(host, slot, versions)
        name, base = keys["worker_id"], self.base / host / str(slot)
        config = worker_config(base, **keys)
        self.starts += 1  # a killed unit stays loaded (failed): each start is a new unit
        unit, log = f"farm-worker-{slot}-{self.starts}", base / f"{name}.log"
        started = self.hosts.ssh(host, (
            f"systemd-run --unit={unit} --property=StandardOutput=append:{log} "
            f"--property=StandardError=append:{log} {FARM_WORKER} run -c {config}"))
        if started.returncode != 0:
            raise RuntimeError(f"{host}: {unit} did not start: {started.stderr}")
        worker = HostWorker(name, self.hosts, host, unit, config, log, base / "work")
        self.workers[name] = worker
        end = time.monotonic() + 120
        port = self.gearmands[0].port
        while status(port).get(f"farm:ping:{name}", (0, 0, 0))[2] == 0:
            if time.monotonic() > end:
                raise RuntimeError(f"{name} did not register on {host}:\n"
                                   f"{worker.output()[-3000:]}")
            time.sleep(0.1)
        return worker

    def kill_host(self, host: str) -> list[str]:
        assert self.hosts is not None
        killed = [n for n in self.workers if n.startswith(f"{host}-")]
        units = " ".join(w.unit for n, w in self.workers.items()
                         if n in killed and isinstance(w, HostWorker))
        self.hosts.ssh(host, f"systemctl kill --signal=SIGKILL {units}")
        end = time.monotonic() + 60
        while any(w.pids() for n, w in self.workers.items()
                  if n in killed and isinstance(w, HostWorker)):
            if time.monotonic() > end:
                raise RuntimeError(f"{host}: workers outlived SIGKILL")
            time.sleep(0.05)
        return killed

    def relay_pids(self) -> list[int]:
        """The socat relays of the farm's ports (with their reaped per-connection forks)."""
        assert self.hosts is not None
        return [pid for name, pid in self.hosts.pids.items() if name.startswith("socat-farm")]

    def worker_pids(self) -> list[int]:
        return [p for w in self.workers.values() if isinstance(w, HostWorker)
                for p in w.pids()]

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.hosts is not None:
                self.hosts.down()
