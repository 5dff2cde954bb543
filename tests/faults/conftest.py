"""The fault suite: each fault is caused for real (kill -9, a hanging endpoint, a server
that goes away, thousands of bad inputs) against real gearmand, workers and `farm serve`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from harness.loopback import Silent
from harness.server import FarmServer
from harness.workers import WorkerFactory, WorkerProcess


def server_worker(workers: WorkerFactory, server: FarmServer, name: str,
                  **extra: Any) -> WorkerProcess:
    """A worker that reports to `server` with its worker token."""
    return workers.start(name, callbacks=[{"url": server.url, "token": server.worker_token}],
                         **extra)


def submit(server: FarmServer, test_id: str, conf: Mapping[str, Any], regex: str,
           **fields: Any) -> None:
    r = server.api("POST", "/v1/tests", json={
        "test_id": test_id, "tempest": {"version": "47.0.0"}, "conf": conf,
        "tests": {"regex": regex}, **fields})
    assert r.status_code == 201, r.text


@pytest.fixture
def hanging_cloud() -> Iterator[Silent]:
    """A cloud endpoint that accepts connections and never answers."""
    s = Silent()
    try:
        yield s
    finally:
        s.stop()
