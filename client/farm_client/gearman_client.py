"""The client side of gearman: the only module of farm_client that imports gear.

Submissions go through one long-lived gear.Client per process (TCP_NODELAY set: without
it every round trip costs ~40 ms, FIELD_NOTES). gear only submits to servers it is
connected to, so a down server is skipped. Queue state comes from gearmand's text admin
protocol (`status`, `show jobs`, `show unique jobs`, `workers`, `cancel job`) and one
binary request gear has no call for (GET_STATUS_UNIQUE: a job by its test id).

gear has admin request classes (StatusAdminRequest, ...), but they go through the gear
Client's own connection to a server, shared with the job traffic and reconnected in the
background: a request to a server that is down waits on gear's reconnect, not on a
timeout of ours, and there is no connection at all to a server the client never reached.
So each admin request here opens its own short connection with its own timeout (what
`gearadmin` does); each answer is a few lines of text to split.
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import gear

from farm_client.exceptions import FarmClientError
from farm_worker.protocol import PING_PREFIX, RUN_PREFIX, parse_address, version_of_function

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_PORT = 4730
# binary protocol packet types gear has no call for
GET_STATUS_UNIQUE, STATUS_RES_UNIQUE = 41, 42
_FINAL_KINDS = frozenset({"complete", "fail", "exception", "disconnect"})
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
    def parse(cls, text: str, default_port: int = DEFAULT_PORT) -> Server:
        """`host`, `host:port` or `[v6addr]:port`; ValueError for anything else."""
        try:
            host, port = parse_address(text)
        except ValueError:
            raise ValueError(f"{text.strip()!r} is not host or host:port") from None
        return cls(host, port or default_port)


@dataclass(frozen=True)
class FunctionStatus:
    name: str
    queued: int
    running: int
    workers: int


@dataclass(frozen=True)
class UniqueStatus:
    """GET_STATUS_UNIQUE of a job's unique id (the test id) on one gearmand."""

    server: Server
    known: bool
    running: bool
    done: int
    total: int
    clients: int  # foreground clients waiting on it


@dataclass(frozen=True)
class Update:
    """Something a worker sent about a foreground job."""

    kind: str  # "data" | "status" | "complete" | "fail" | "exception" | "disconnect"
    data: bytes = b""
    done: int = 0
    total: int = 0


class ForegroundJob:
    """A foreground job: its updates arrive in order on a queue, read with `updates()`."""

    def __init__(self, function: str, payload: bytes, unique: str | None) -> None:
        self.gear_job = _StreamedJob(self, function, payload, unique)
        self._updates: queue.Queue[Update] = queue.Queue()
        self.final: Update | None = None
        self.server: Server | None = None
        self.finished_at: float | None = None  # perf_counter() when the end arrived

    @property
    def handle(self) -> str:
        return bytes(self.gear_job.handle or b"").decode()

    def _put(self, update: Update) -> None:
        if update.kind in _FINAL_KINDS:
            self.finished_at = time.perf_counter()
        self._updates.put(update)

    def updates(self, timeout_s: float | None = None,
                poll_s: float = 0.25) -> Iterator[Update | None]:
        """Every update until the final one; None every `poll_s` without one (so the
        caller can redraw, or give up after `timeout_s`: then it stops early)."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while self.final is None:
            left = poll_s if end is None else min(poll_s, end - time.monotonic())
            if left <= 0:
                return
            try:
                update = self._updates.get(timeout=left)
            except queue.Empty:
                yield None
                continue
            if update.kind in _FINAL_KINDS:
                self.final = update
            yield update

    def wait(self, timeout_s: float | None = None) -> Update | None:
        for _ in self.updates(timeout_s):
            pass
        return self.final


class _StreamedJob(gear.Job):  # type: ignore[misc]
    def __init__(self, owner: ForegroundJob, function: str, payload: bytes,
                 unique: str | None) -> None:
        super().__init__(function, payload, unique=unique)
        self.owner = owner


class _NoDelayConnection(gear.Connection):  # type: ignore[misc]
    def connect(self) -> None:
        super().connect()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _forward(job: Any, update: Update) -> Any:
    if isinstance(job, _StreamedJob):
        job.owner._put(update)
    return job


class _Client(gear.Client):  # type: ignore[misc]
    """gear's client with TCP_NODELAY, whose foreground jobs stream their updates."""

    def __init__(self, servers: Iterable[Server]) -> None:
        super().__init__(client_id=f"farm-{uuid.uuid4().hex[:8]}")
        with self.connections_condition:
            for s in servers:
                self.inactive_connections.append(
                    _NoDelayConnection(s.host, s.port, client_id=self.client_id))
            self.connections_condition.notify_all()

    def handleWorkData(self, packet: gear.Packet) -> Any:
        return _forward(super().handleWorkData(packet),
                        Update("data", bytes(packet.getArgument(1, True))))

    def handleWorkStatus(self, packet: gear.Packet) -> Any:
        job = super().handleWorkStatus(packet)
        try:
            done, total = int(packet.getArgument(1)), int(packet.getArgument(2))
        except ValueError:
            return job
        return _forward(job, Update("status", done=done, total=total))

    def handleWorkComplete(self, packet: gear.Packet) -> Any:
        return _forward(super().handleWorkComplete(packet),
                        Update("complete", bytes(packet.getArgument(1, True))))

    def handleWorkFail(self, packet: gear.Packet) -> Any:
        return _forward(super().handleWorkFail(packet), Update("fail"))

    def handleWorkException(self, packet: gear.Packet) -> Any:
        return _forward(super().handleWorkException(packet),
                        Update("exception", bytes(packet.getArgument(1, True))))

    def handleDisconnect(self, job: Any) -> Any:
        return _forward(super().handleDisconnect(job), Update("disconnect"))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("gearmand closed the connection")
        data += chunk
    return data


def served_versions(functions: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Tempest version -> workers, from (function name, workers) rows of `status`."""
    out = {}
    for name, workers in functions:
        version = version_of_function(name)
        if name.startswith(RUN_PREFIX) and version and workers:
            out[version] = workers
    return out


class Gearman:
    """Several gearmand servers, seen as one farm queue."""

    def __init__(self, servers: Iterable[Server], connect_timeout_s: float = 10.0):
        self.servers = list(servers)
        self.connect_timeout_s = connect_timeout_s
        self._client: _Client | None = None
        self._lock = threading.Lock()
        # gear matches each JOB_CREATED to the oldest submit waiting on its connection: two
        # threads submitting at once could be handed each other's handles (the status
        # server's request threads share this client), so submits go one at a time
        self._submit_lock = threading.Lock()

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
            with self._submit_lock:
                client.submitJob(job, background=background, timeout=self.connect_timeout_s)
        except (gear.GearmanError, gear.TimeoutError, gear.NoConnectedServersError,
                OSError) as exc:
            raise GearmanError(f"submitting {function}: {exc.__class__.__name__} {exc}") \
                from None
        if background:  # gear would keep every background job in this table forever
            job.connection.related_jobs.pop(job.handle, None)
        server = Server(job.connection.host, job.connection.port)
        return server, job.handle.decode()

    def start(self, function: str, payload: bytes, unique: str | None = None) -> ForegroundJob:
        """Submit a foreground job; read its updates from the returned object. gearmand
        withdraws it if this client goes away before a worker takes it."""
        client = self._gear()
        job = ForegroundJob(function, payload, unique)
        try:
            with self._submit_lock:
                client.submitJob(job.gear_job, background=False,
                                 timeout=self.connect_timeout_s)
        except (gear.GearmanError, gear.TimeoutError, gear.NoConnectedServersError,
                OSError) as exc:
            raise GearmanError(f"submitting {function}: {exc.__class__.__name__} {exc}") \
                from None
        conn = job.gear_job.connection
        job.server = Server(conn.host, conn.port)
        return job

    def call(self, function: str, payload: bytes = b"", unique: str | None = None,
             timeout_s: float = 30.0) -> bytes:
        """A foreground job's WORK_COMPLETE data; GearmanError on failure or timeout."""
        job = self.start(function, payload, unique)
        final = job.wait(timeout_s)
        if final is None:
            raise GearmanError(f"{function}: no answer within {timeout_s:g} s")
        if final.kind != "complete":
            raise GearmanError(f"{function}: {final.kind} {final.data.decode(errors='replace')}"
                               .rstrip())
        return final.data

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

    def withdrawn(self, server: Server) -> list[str]:
        """Handles of jobs withdrawn with `cancel job`: gearmand marks them ignored and
        keeps counting them as queued until a worker takes (and drops) them."""
        return [h for h, (_retries, ignored, _waiting) in self.jobs(server).items()
                if ignored]

    def _binary(self, server: Server, kind: int, data: bytes, answer: int,
                timeout_s: float = 5.0) -> list[bytes]:
        """One request of the binary protocol on its own connection; the answer's fields."""
        request = b"\0REQ" + struct.pack(">II", kind, len(data)) + data
        try:
            with socket.create_connection((server.host, server.port), timeout=timeout_s) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(request)
                head = _recv_exactly(s, 12)
                magic, got, size = head[:4], *struct.unpack(">II", head[4:])
                body = _recv_exactly(s, size)
        except OSError as exc:
            raise GearmanError(f"gearmand {server}: {exc.__class__.__name__}: {exc}") from None
        if magic != b"\0RES" or got != answer:
            raise GearmanError(f"gearmand {server}: unexpected answer ({got}) to request {kind}")
        return body.split(b"\0")

    def unique_status(self, server: Server, unique: str,
                      timeout_s: float = 5.0) -> UniqueStatus:
        """GET_STATUS_UNIQUE: where a test id's job stands on one gearmand."""
        fields = self._binary(server, GET_STATUS_UNIQUE, unique.encode(), STATUS_RES_UNIQUE,
                              timeout_s)
        _, known, running, done, total, clients = (fields + [b"0"] * 6)[:6]
        return UniqueStatus(server, known == b"1", running == b"1", int(done or 0),
                            int(total or 0), int(clients or 0))

    def _answers(self, ask: Callable[[Server], _T]) -> Iterator[tuple[Server, _T]]:
        """`ask(server)` of every server in turn, skipping those that do not answer;
        GearmanError (every server's reason) once it is clear that none did."""
        errors = []
        for server in self.servers:
            try:
                answer = ask(server)
            except GearmanError as exc:
                errors.append(str(exc))
                continue
            yield server, answer
        if len(errors) == len(self.servers):
            raise GearmanError("; ".join(errors))

    def locate(self, unique: str) -> UniqueStatus | None:
        """The job with this unique id on the first server that has it (None: on none of
        those that answered)."""
        for _, st in self._answers(lambda server: self.unique_status(server, unique)):
            if st.known:
                return st
        return None

    def worker_ids(self) -> dict[str, list[Server]]:
        """Farm workers (their `farm:ping:<id>` function) -> the servers they serve."""
        out: dict[str, list[Server]] = {}
        for server, rows in self._answers(self.workers):
            for row in rows:
                for name in row["functions"]:
                    if name.startswith(PING_PREFIX):
                        out.setdefault(name[len(PING_PREFIX):], []).append(server)
        return out

    def cancel_queued(self, server: Server, handle: str) -> bool:
        """Remove a job that no worker has taken yet (gearmand's `cancel job`)."""
        try:
            return self.admin(server, f"cancel job {handle}") == ["OK"]
        except GearmanError:
            return False

    def registered_versions(self) -> dict[str, int]:
        """Tempest version -> workers serving it, over every reachable server."""
        versions: dict[str, int] = {}
        for _, functions in self._answers(self.status):
            for version, workers in served_versions((f.name, f.workers)
                                                    for f in functions).items():
                versions[version] = max(versions.get(version, 0), workers)
        return versions
