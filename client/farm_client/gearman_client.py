"""The client side of gearman: the only module of farm_client that imports gear.

Submissions go through one long-lived gear.Client per process (TCP_NODELAY set: without
it every round trip costs ~40 ms, FIELD_NOTES). gear only submits to servers it is
connected to, so a down server is skipped. Queue state comes from gearmand's text admin
protocol (`status`, `show jobs`, `show unique jobs`, `workers`, `cancel job`).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gear

from farm_client.exceptions import FarmClientError
from farm_worker.protocol import RUN_PREFIX, version_of_function

log = logging.getLogger(__name__)

DEFAULT_PORT = 4730
_GET_STATUS, _STATUS_RES = 15, 20  # binary protocol packet types
_LIST_COMMANDS = ("status", "workers", "show jobs", "show unique jobs")


class GearmanError(FarmClientError):
    """gearmand could not be reached or refused a request."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Server:
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            return cls(host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT)
        host, sep, port = text.rpartition(":")
        if not sep:
            return cls(text)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is not host or host:port")
        return cls(host, int(port))


@dataclass(frozen=True)
class FunctionStatus:
    name: str
    queued: int
    running: int
    workers: int


class _NoDelayConnection(gear.Connection):  # type: ignore[misc]
    def connect(self) -> None:
        super().connect()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Client(gear.Client):  # type: ignore[misc]
    def __init__(self, servers: Iterable[Server]) -> None:
        super().__init__(client_id=f"farm-{uuid.uuid4().hex[:8]}")
        with self.connections_condition:
            for s in servers:
                self.inactive_connections.append(
                    _NoDelayConnection(s.host, s.port, client_id=self.client_id))
            self.connections_condition.notify_all()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("gearmand closed the connection")
        data += chunk
    return data


class Gearman:
    """Several gearmand servers, seen as one farm queue."""

    def __init__(self, servers: Iterable[Server], connect_timeout_s: float = 10.0):
        self.servers = list(servers)
        self.connect_timeout_s = connect_timeout_s
        self._client: _Client | None = None
        self._lock = threading.Lock()

    # ---- submissions --------------------------------------------------------------------------
    def _gear(self) -> _Client:
        with self._lock:
            if self._client is None:
                self._client = _Client(self.servers)
            client = self._client
        try:
            client.waitForServer(timeout=self.connect_timeout_s)
        except gear.TimeoutError:
            raise GearmanError("no gearmand answers (" + ", ".join(map(str, self.servers))
                               + ")") from None
        return client

    def submit(self, function: str, payload: bytes, unique: str,
               background: bool = True) -> tuple[Server, str]:
        """Queue a job; (the server that took it, its handle)."""
        client = self._gear()
        job = gear.Job(function, payload, unique=unique)
        try:
            client.submitJob(job, background=background, timeout=self.connect_timeout_s)
        except (gear.GearmanError, gear.TimeoutError, gear.NoConnectedServersError,
                OSError) as exc:
            raise GearmanError(f"submitting {function}: {exc.__class__.__name__} {exc}") \
                from None
        if background:  # gear would keep every background job in this table forever
            job.connection.related_jobs.pop(job.handle, None)
        server = Server(job.connection.host, job.connection.port)
        return server, job.handle.decode()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.shutdown()
                self._client = None

    # ---- the admin protocol -------------------------------------------------------------------
    def admin(self, server: Server, command: str, timeout_s: float = 5.0) -> list[str]:
        multi = command.startswith(_LIST_COMMANDS)
        try:
            with socket.create_connection((server.host, server.port), timeout=timeout_s) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(command.encode() + b"\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if multi and (data == b".\n" or data.endswith(b"\n.\n")):
                        break
                    if not multi and data.endswith(b"\n"):
                        break
        except OSError as exc:
            raise GearmanError(f"gearmand {server}: {exc.__class__.__name__}: {exc}") from None
        lines = [line for line in data.decode(errors="replace").splitlines() if line != "."]
        if lines and lines[0].startswith("ERR"):
            raise GearmanError(f"gearmand {server}: {command!r}: {lines[0]}")
        return lines

    def status(self, server: Server) -> list[FunctionStatus]:
        """Functions with something queued, running or a worker (gearmand keeps rows of
        functions nobody serves any more: those are left out)."""
        out = []
        for line in self.admin(server, "status"):
            parts = line.split("\t")
            if len(parts) == 4 and parts[1:] != ["0", "0", "0"]:
                out.append(FunctionStatus(parts[0], int(parts[1]), int(parts[2]),
                                          int(parts[3])))
        return out

    def workers(self, server: Server) -> list[dict[str, Any]]:
        out = []
        for line in self.admin(server, "workers"):
            head, _, functions = line.partition(" : ")
            parts = head.split()
            names = functions.split()
            if len(parts) >= 3 and names:
                out.append({"address": parts[1], "client_id": parts[2], "functions": names})
        return out

    def unique_jobs(self, server: Server) -> set[str]:
        return set(self.admin(server, "show unique jobs"))

    def jobs(self, server: Server) -> dict[str, tuple[int, bool, bool]]:
        """handle -> (retries, ignored, waiting in the queue)."""
        out = {}
        for line in self.admin(server, "show jobs"):
            parts = line.split("\t")
            if len(parts) == 4:
                out[parts[0]] = (int(parts[1]), parts[2] == "1", parts[3] == "1")
        return out

    def job_status(self, server: Server, handle: str,
                   timeout_s: float = 5.0) -> tuple[bool, bool, int, int]:
        """GET_STATUS of a job: (known, running, done, total). gear has no call for it and
        `show jobs` does not tell a running job from a queued one."""
        data = handle.encode()
        request = b"\0REQ" + struct.pack(">II", _GET_STATUS, len(data)) + data
        try:
            with socket.create_connection((server.host, server.port), timeout=timeout_s) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(request)
                head = _recv_exactly(s, 12)
                magic, kind, size = head[:4], *struct.unpack(">II", head[4:])
                body = _recv_exactly(s, size)
        except OSError as exc:
            raise GearmanError(f"gearmand {server}: {exc.__class__.__name__}: {exc}") from None
        if magic != b"\0RES" or kind != _STATUS_RES:
            raise GearmanError(f"gearmand {server}: unexpected answer to GET_STATUS ({kind})")
        _, known, running, done, total = (body.split(b"\0") + [b"0"] * 5)[:5]
        return (known == b"1", running == b"1", int(done or 0), int(total or 0))

    def cancel_queued(self, server: Server, handle: str) -> bool:
        """Remove a job that no worker has taken yet (gearmand's `cancel job`)."""
        try:
            return self.admin(server, f"cancel job {handle}") == ["OK"]
        except GearmanError:
            return False

    def registered_versions(self) -> dict[str, int]:
        """Tempest version -> workers serving it, over every reachable server."""
        versions: dict[str, int] = {}
        errors = []
        for server in self.servers:
            try:
                functions = self.status(server)
            except GearmanError as exc:
                errors.append(str(exc))
                continue
            for f in functions:
                version = version_of_function(f.name)
                if f.name.startswith(RUN_PREFIX) and version and f.workers:
                    versions[version] = max(versions.get(version, 0), f.workers)
        if len(errors) == len(self.servers):
            raise GearmanError("; ".join(errors))
        return versions

