"""The real path: `farm-server serve` (gunicorn, SQLite) queues on gearmand, a real worker runs
Tempest and reports back with its token; the API shows state, history and results."""

from __future__ import annotations

import time

import pytest

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult

pytestmark = [pytest.mark.gearman, pytest.mark.tempest]
SMOKE = r"tempest\.api\.identity\..*smoke"


def start_worker(workers: WorkerFactory, server: FarmServer, name: str) -> None:
    workers.start(name, callbacks=[{"url": server.url, "token": server.worker_token}])


def test_dry_run_through_the_server(workers: WorkerFactory, server: FarmServer,
                                    tempest47: PrepareResult) -> None:
    start_worker(workers, server, "srv-dry")
    r = server.api("POST", "/v1/tests", json={
        "test_id": "srv-dry-1", "tempest": {"version": "47.0.0"}, "dry_run": True,
        "conf": {"identity": {"uri_v3": "http://127.0.0.1:9/v3"}},
        "tests": {"regex": "tempest.api.identity"}})
    assert r.status_code == 201, r.text
    doc = server.wait_state("srv-dry-1", {"passed", "failed", "error"}, 300)
    assert doc["test"]["state"] == "passed", doc
    assert "dry run" in doc["test"]["message"]
    states = [h["state"] for h in doc["history"]]
    assert states == ["queued", "installing", "passed"]
    assert doc["history"][1]["worker"] == "srv-dry"


@pytest.mark.cloud
def test_identity_smoke_through_the_server(workers: WorkerFactory, server: FarmServer,
                                           keystone: Keystone,
                                           tempest47: PrepareResult) -> None:
    start_worker(workers, server, "srv-smoke")
    r = server.api("POST", "/v1/tests", json={
        "test_id": "srv-smoke-1", "tempest": {"version": "47.0.0"},
        "conf": keystone.tempest_conf(), "tests": {"regex": SMOKE}})
    assert r.status_code == 201, r.text
    doc = server.wait_state("srv-smoke-1", {"passed", "failed", "error"})
    assert doc["test"]["state"] == "passed", doc
    summary = doc["test"]["summary"]
    assert summary["passed"] >= 10 and summary["failed"] == 0
    assert [h["state"] for h in doc["history"] if h["applied"]][:3] == [
        "queued", "installing", "running"]
    assert doc["history"][-2]["state"] == "uploading"
    results = server.api("GET", "/v1/tests/srv-smoke-1/results").json()["results"]
    assert len(results) == summary["passed"] + summary["skipped"]
    raw = server.api("GET", "/v1/tests/srv-smoke-1/results?format=subunit").content
    assert raw.startswith(b"\xb3")
    for text in (server.log.read_text(), server.api("GET", "/v1/tests").text,
                 server.api("GET", "/v1/tests/srv-smoke-1").text):
        assert ADMIN_PASSWORD not in text


@pytest.mark.cloud
def test_cancel_a_running_test_through_the_server(workers: WorkerFactory, server: FarmServer,
                                                  keystone: Keystone,
                                                  tempest47: PrepareResult) -> None:
    start_worker(workers, server, "srv-cxl")
    server.api("POST", "/v1/tests", json={
        "test_id": "srv-cxl-1", "tempest": {"version": "47.0.0"},
        "conf": keystone.tempest_conf(), "tests": {"regex": "tempest.api.identity"}})
    server.wait_state("srv-cxl-1", {"running"})
    asked = time.monotonic()
    r = server.api("POST", "/v1/tests/srv-cxl-1/cancel")
    assert r.status_code == 202, r.text
    doc = server.wait_state("srv-cxl-1", {"cancelled", "passed", "failed", "error"}, 60)
    assert doc["test"]["state"] == "cancelled", doc["test"]  # the suite lasts minutes
    print(f"cancel through the server: cancelled {time.monotonic() - asked:.1f} s after "
          "the request")
    assert server.api("POST", "/v1/tests/srv-cxl-1/cancel").status_code == 409
