"""A gear client for tests (TCP_NODELAY set, WORK_STATUS and WORK_DATA kept in order)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

import gear


class _NoDelayConnection(gear.Connection):  # type: ignore[misc]
    def connect(self) -> None:
        super().connect()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TestClient(gear.Client):  # type: ignore[misc]
    __test__ = False

    def __init__(self, *servers: str) -> None:
        super().__init__(client_id=f"test-{uuid.uuid4().hex[:6]}")
        for server in servers:
            host, port = server.rsplit(":", 1)
            with self.connections_condition:
                self.inactive_connections.append(
                    _NoDelayConnection(host, int(port), client_id=self.client_id))
                self.connections_condition.notify_all()
        self.waitForServer(timeout=10)

    def handleWorkStatus(self, packet: gear.Packet) -> gear.Job:
        job = super().handleWorkStatus(packet)
        job.__dict__.setdefault("statuses", []).append(
            (int(job.numerator), int(job.denominator)))
        return job

    def submit(self, function: str, payload: bytes | dict[str, Any], unique: str | None = None,
               background: bool = False) -> gear.Job:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        job = gear.Job(function, data, unique=unique or uuid.uuid4().hex)
        self.submitJob(job, background=background, timeout=10)
        return job


def take_job(port: int, function: str) -> tuple[bytes, bytes | None]:
    """Act as a worker once: take a job of `function` from gearmand on 127.0.0.1:port,
    complete it, and return its (arguments, unique)."""
    w = gear.Worker(client_id=f"probe-{uuid.uuid4().hex[:6]}")
    try:
        w.addServer("127.0.0.1", port)
        w.registerFunction(function)
        w.waitForServer(timeout=5)
        job = w.getJob()
        job.sendWorkComplete(b"{}")
        return bytes(job.arguments), job.unique
    finally:
        w.shutdown()


def wait(job: gear.Job, timeout_s: float) -> gear.Job:
    end = time.monotonic() + timeout_s
    while not job.complete:
        if time.monotonic() > end:
            raise TimeoutError(f"job {job.handle} not complete after {timeout_s} s")
        time.sleep(0.05)
    return job


def events(job: gear.Job) -> list[dict[str, Any]]:
    out = []
    for chunk in job.data:
        doc = json.loads(chunk)
        if "event" in doc:
            out.append(doc)
    return out


def summary(job: gear.Job) -> dict[str, Any]:
    """The WORK_COMPLETE document (the last data chunk without an "event" key)."""
    for chunk in reversed(job.data):
        doc = json.loads(chunk)
        if "event" not in doc:
            return dict(doc)
    raise AssertionError(f"job {job.handle} has no summary; failure={job.failure} "
                         f"exception={job.exception!r}")


def statuses(job: gear.Job) -> list[tuple[int, int]]:
    return list(job.__dict__.get("statuses", []))
