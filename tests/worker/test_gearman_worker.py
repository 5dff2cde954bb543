"""The worker process against a real gearmand: rejects, real runs, cancel, drain, ping."""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from farm_lab.gearmand import Gearmand, admin, status
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.loopback import free_port
from farm_lab.workers import TEMPEST, WorkerFactory
from farm_worker.environments import PrepareResult
from farm_worker.protocol import RUN_ANY, cancel_function, run_function
from farm_worker.results import summarize_file
from harness.checks import leftovers, wait_for_state
from harness.gearclient import TestClient, events, statuses, summary, wait
from harness.payloads import INVALID, valid
from harness.recorder import Recorder

pytestmark = [pytest.mark.gearman, pytest.mark.tempest]
SMOKE = r"tempest\.api\.identity\..*smoke"
RUN = run_function(TEMPEST)


def identity_payload(test_id: str, keystone: Keystone, regex: str = SMOKE,
                     **changes: Any) -> dict[str, Any]:
    return valid(test_id=test_id, conf=keystone.tempest_conf(), tests={"regex": regex},
                 dry_run=False, **changes)


def test_invalid_payloads_are_rejected_and_the_worker_goes_on(
        workers: WorkerFactory, client: TestClient, tempest47: PrepareResult) -> None:
    w = workers.start("rej")
    jobs = [(name, field, client.submit(RUN, raw)) for name, raw, field, _ in INVALID]
    mismatch = client.submit(RUN, valid(tempest={"version": "40.0.0"}))
    for name, field, job in jobs:
        doc = summary(wait(job, 30))
        assert doc["state"] == "rejected", (name, doc)
        assert doc["field"] == field, (name, doc)
        assert doc["message"].startswith(f"{field}: "), (name, doc)
        assert [e["state"] for e in events(job)] == ["rejected"]
    doc = summary(wait(mismatch, 30))
    assert (doc["state"], doc["field"]) == ("rejected", "tempest.version")
    assert "does not match the function's version 47.0.0" in doc["message"]
    ok = summary(wait(client.submit(RUN, valid(test_id="after-rejects")), 120))
    assert ok["state"] == "passed" and ok["total"] > 100, ok
    assert "dry run" in ok["message"]
    assert w.proc.poll() is None
    assert leftovers(w.work_dir) == []


@pytest.mark.cloud
def test_identity_smoke_run_reports_everything(
        workers: WorkerFactory, client: TestClient, keystone: Keystone, recorder: Recorder,
        tempest47: PrepareResult) -> None:
    recorder.token = "worker-token-77aa"
    w = workers.start("smoke", callbacks=[{"url": recorder.url, "token": "worker-token-77aa"}])
    job = client.submit(RUN, identity_payload(
        "smoke-1", keystone, callback={"url": recorder.url}))
    doc = summary(wait(job, 600))
    assert doc["state"] == "passed", doc
    assert doc["passed"] >= 10 and doc["failed"] == 0
    assert doc["total"] == doc["passed"] + doc["skipped"]
    # WORK_COMPLETE's counts are those of the subunit stream the worker kept and uploaded
    kept = Path(doc["subunit"])
    counted = summarize_file(kept)
    c = counted.counts()
    assert (c.passed, c.failed, c.skipped) == (doc["passed"], doc["failed"], doc["skipped"])
    assert doc["not_run"] == 0 and doc["classes_failed"] == 0
    assert recorder.uploads("smoke-1") == [kept.read_bytes()]
    # events in order, WORK_STATUS up to n/n
    states = [e["state"] for e in events(job) if e["event"] == "state"]
    assert states == ["installing", "running", "uploading", "passed"]
    progress = [e for e in events(job) if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == doc["total"]
    # the total is known from `running` on, before any test ends
    assert (progress[0]["done"], progress[0]["total"]) == (0, doc["total"])
    st = statuses(job)
    assert st[-1] == (doc["total"], doc["total"])
    assert [n for n, _ in st] == sorted(n for n, _ in st)
    # the callback server saw the same story, with the worker's token
    assert recorder.states("smoke-1") == ["installing", "running", "uploading", "passed"]
    assert all(r.headers["Authorization"] == "Bearer worker-token-77aa"
               for r in recorder.requests)
    for secret in (ADMIN_PASSWORD, "worker-token-77aa"):
        assert secret not in w.output()
    # progress is throttled to at most two events a second
    times = {e["state"]: e["time"] for e in events(job) if e["event"] == "state"}
    assert len(progress) <= 2 * (times["uploading"] - times["running"]) + 3
    assert ADMIN_PASSWORD not in json.dumps([r.json() for r in recorder.requests
                                             if r.path == "/update-test-status/"])
    assert leftovers(w.work_dir) == []


@pytest.mark.cloud
def test_conf_and_tests_come_from_the_callback(
        workers: WorkerFactory, client: TestClient, keystone: Keystone, recorder: Recorder,
        tempest47: PrepareResult) -> None:
    w = workers.start("mini")
    cases = ["tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token[id-x]",
             "tempest.api.identity.v3.test_domains.DefaultDomainTestJSON."
             "test_default_domain_exists"]
    recorder.miniconf["mini-1"] = keystone.tempest_conf()
    recorder.testcases["mini-1"] = cases
    payload = valid(test_id="mini-1", callback={"url": recorder.url})
    del payload["conf"], payload["tests"]
    doc = summary(wait(client.submit(RUN, payload), 120))
    assert doc["state"] == "passed" and doc["total"] == 2, doc
    paths = [r.path for r in recorder.requests]
    assert "/get-miniconf" in paths and "/get-testcases" in paths
    assert leftovers(w.work_dir) == []


def test_gearmand_is_told_the_outcome_once_the_final_report_is_on_disk(
        workers: WorkerFactory, client: TestClient, recorder: Recorder,
        tempest47: PrepareResult) -> None:
    """WORK_COMPLETE does not wait for the server's answers: a worker killed while it waits
    for them must not have gearmand hand the ended run to another worker (the reports are
    in its outbox; its next start delivers them). The worker still waits for them before
    it takes the next job."""
    w = workers.start("early", report_flush_s=300)
    recorder.gate.clear()  # the server takes every report, and answers none for now
    try:
        doc = summary(wait(client.submit(RUN, valid(test_id="early-1",
                                                    callback={"url": recorder.url})), 50))
        assert doc["state"] == "passed", doc
        assert recorder.requests == []  # not one report answered yet
        # nor given up on: the first attempt (REPORT_TIMEOUT_S, 10 s) is still waiting
        # (a job that waited for the answers would complete only once it failed)
        assert "kept in the outbox, retrying" not in w.output()
    finally:
        recorder.gate.set()
    end = time.monotonic() + 120
    while recorder.states("early-1")[-1:] != ["passed"]:
        assert time.monotonic() < end, recorder.states("early-1")
        time.sleep(0.1)
    assert leftovers(w.work_dir) == []


def test_a_copy_whose_test_has_ended_on_the_server_ends_cancelled(
        workers: WorkerFactory, client: TestClient, recorder: Recorder,
        tempest47: PrepareResult) -> None:
    """gearmand handed the job out again after the test ended (its first copy passed while
    this copy's claim was still on its way): the server answers the conf fetch with 404
    and the test's final state. The copy stops, `cancelled`, saying why, not `error` (found
    by the fault suite's campaign on CI)."""
    w = workers.start("late")
    recorder.ended["late-1"] = "passed"
    payload = valid(test_id="late-1", callback={"url": recorder.url}, dry_run=True)
    del payload["conf"]
    doc = summary(wait(client.submit(RUN, payload), 120))
    assert doc["state"] == "cancelled", doc
    assert doc["message"] == "stopped: test late-1 has ended on the server (passed)"
    assert "[test late-1] error" not in w.output()
    assert leftovers(w.work_dir) == []


@pytest.mark.cloud
def test_timeout_kills_tempest_and_cleans_up(
        workers: WorkerFactory, client: TestClient, keystone: Keystone, recorder: Recorder,
        tempest47: PrepareResult) -> None:
    w = workers.start("slow")
    job = client.submit(RUN, identity_payload("slow-1", keystone, regex="tempest.api.identity",
                                              timeout_s=8, callback={"url": recorder.url}))
    wait_for_state(job, "running")
    started = time.monotonic()
    doc = summary(wait(job, 120))
    # the identity suite takes minutes against this Keystone, far past timeout_s=8
    assert doc["state"] == "timed_out", doc
    # killed at the deadline (set before listing), not at the end of the suite: the rest is
    # the kill's grace, the cleanup and the last report
    assert time.monotonic() - started < 8 + 60
    assert recorder.states("slow-1")[-1] == "timed_out"
    assert leftovers(w.work_dir) == []


@pytest.mark.cloud
def test_sigterm_drains_the_running_job_then_exits_zero(
        workers: WorkerFactory, client: TestClient, gearmand: Gearmand, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    w = workers.start("drain")
    job = client.submit(RUN, identity_payload("drain-1", keystone))
    wait_for_state(job, "running")
    w.signal(signal.SIGTERM)
    doc = summary(wait(job, 600))
    assert doc["state"] == "passed", doc
    assert w.wait(60) == 0
    assert "draining" in w.output()
    assert status(gearmand.port).get(RUN, (0, 0, 0))[2] == 0  # nobody serves it any more
    assert leftovers(w.work_dir) == []


@pytest.mark.cloud
def test_second_sigterm_cancels_the_running_job(
        workers: WorkerFactory, client: TestClient, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    w = workers.start("twice")
    job = client.submit(RUN, identity_payload("twice-1", keystone, regex="tempest.api.identity"))
    wait_for_state(job, "running")
    w.signal(signal.SIGTERM)
    w.wait_for("draining")  # the first one was handled: the second is a second
    w.signal(signal.SIGTERM)
    doc = summary(wait(job, 60))
    assert doc["state"] == "cancelled", doc
    assert "stopping" in doc["message"]
    assert w.wait(60) == 0
    assert leftovers(w.work_dir) == []


@pytest.mark.cloud
def test_cancel_a_running_test(workers: WorkerFactory, client: TestClient, gearmand: Gearmand,
                               keystone: Keystone, tempest47: PrepareResult) -> None:
    w = workers.start("cxl")
    job = client.submit(RUN, identity_payload("cxl-1", keystone, regex="tempest.api.identity"))
    wait_for_state(job, "running")
    asked = time.monotonic()
    answer = wait(client.submit(cancel_function("cxl-1"), b"", background=False), 60)
    assert json.loads(answer.data[-1])["cancelled"] is True
    doc = summary(wait(job, 60))
    took = time.monotonic() - asked
    assert doc["state"] == "cancelled", doc
    print(f"cancel of a running test: cancelled {took:.1f} s after the cancel was asked")
    assert leftovers(w.work_dir) == []
    # the cancel function went away with the test
    assert status(gearmand.port).get(cancel_function("cxl-1"), (0, 0, 0))[2] == 0


@pytest.mark.cloud
def test_cancel_a_queued_test_before_it_starts(
        workers: WorkerFactory, client: TestClient, gearmand: Gearmand, keystone: Keystone,
        recorder: Recorder, tempest47: PrepareResult) -> None:
    w = workers.start("cq")
    first = client.submit(RUN, identity_payload("cq-a", keystone))
    wait_for_state(first, "running")
    # the cancel first: it waits in gearmand before cq-b is even queued, so it is there
    # when the worker takes cq-b, however soon that is
    client.submit(cancel_function("cq-b"), b"", background=True)
    second = client.submit(RUN, identity_payload("cq-b", keystone,
                                                 callback={"url": recorder.url}))
    assert summary(wait(first, 600))["state"] == "passed"
    doc = summary(wait(second, 60))
    assert doc["state"] == "cancelled", doc
    assert "running" not in recorder.states("cq-b")
    assert status(gearmand.port).get(cancel_function("cq-b"), (0, 0, 0))[0] == 0
    assert leftovers(w.work_dir) == []


def test_ping_answers_with_worker_facts(workers: WorkerFactory, client: TestClient,
                                        tempest47: PrepareResult) -> None:
    workers.start("pinged")
    answer = wait(client.submit("farm:ping:pinged", b""), 10)
    doc = json.loads(answer.data[-1])
    assert doc["worker"] == "pinged" and doc["versions"] == [TEMPEST]
    assert doc["busy"] is None and len(doc["load"]) == 3


def test_a_full_outbox_takes_no_job_until_it_drains(
        workers: WorkerFactory, client: TestClient, gearmand: Gearmand,
        tempest47: PrepareResult) -> None:
    """At outbox_max_size the worker withdraws its run functions (a job waits in gearmand
    for another worker), says so in its log and its ping, and serves again once the
    status server has taken what it owed."""
    port = free_port()
    w = workers.start("full", outbox_max_size=1, report_flush_s=1)
    done = client.submit(RUN, valid(test_id="full-1", callback={
        "url": f"http://127.0.0.1:{port}/"}))
    assert summary(wait(done, 300))["state"] == "passed"
    w.wait_for(r"outbox \S+ is full \(\d+ entries, \d+ of 1 bytes\): taking no new job")
    end = time.monotonic() + 60
    while status(gearmand.port).get(RUN, (0, 0, 0))[2] != 0:
        assert time.monotonic() < end, "the run function is still registered"
        time.sleep(0.1)
    pong = json.loads(wait(client.submit("farm:ping:full", b""), 10).data[-1])
    assert pong["outbox"]["full"] and pong["outbox"]["entries"] == 2  # installing, passed
    waiting = client.submit(RUN, valid(test_id="full-2"))
    assert status(gearmand.port)[RUN] == (1, 0, 0)  # queued, and no worker can take it
    rec = Recorder().start(port)
    try:
        assert summary(wait(waiting, 300))["state"] == "passed"
        assert rec.states("full-1") == ["installing", "passed"]
        w.wait_for("outbox below its cap again: taking jobs")
    finally:
        rec.stop()


def test_worker_reconnects_after_gearmand_restarts(
        workers: WorkerFactory, tmp_path: Path, tempest47: PrepareResult) -> None:
    own = Gearmand(tmp_path / "gm", queue="builtin")
    own.start()
    try:
        w = workers.start("recon", gearman=[own.address])
        own.stop()
        time.sleep(1)
        own.start()
        end = time.monotonic() + 30
        while status(own.port).get(RUN, (0, 0, 0))[2] == 0:
            assert time.monotonic() < end, w.output()[-2000:]
            time.sleep(0.2)
        c = TestClient(own.address)
        try:
            doc = summary(wait(c.submit(RUN, valid(test_id="recon-1")), 120))
        finally:
            c.shutdown()
        assert doc["state"] == "passed"
        assert w.stop() == 0
        end = time.monotonic() + 30  # gearmand forgets the stopped worker's connections
        while lines := [x for x in admin(own.port, "workers") if " recon" in x]:
            assert time.monotonic() < end, lines
            time.sleep(0.1)
    finally:
        own.stop()


def test_install_on_demand_prepares_then_serves_the_version(
        workers: WorkerFactory, client: TestClient, gearmand: Gearmand, tmp_path: Path,
        tempest47: PrepareResult) -> None:
    from harness.pypi import LocalIndex

    index = LocalIndex().add(Path(tempest47.wheelhouse), dt.datetime(2026, 1, 1)).start()
    try:
        w = workers.start("ondemand", versions=(), wait_for=RUN_ANY, install_on_demand=True,
                          cache_dir=str(tmp_path / "own-cache"), index_url=index.url)
        doc = summary(wait(client.submit(RUN_ANY, valid(test_id="od-1")), 600))
        assert doc["state"] == "passed" and doc["total"] > 100, doc
        assert any(r.startswith("/files/tempest-47.0.0") for r in index.requests)
        assert status(gearmand.port).get(RUN, (0, 0, 0))[2] >= 1  # now served by name too
        assert "preparing tempest 47.0.0" in w.output()
        # a version the index does not have: `error`, nothing published, the worker goes on
        bad = summary(wait(client.submit(RUN_ANY, valid(test_id="od-2",
                                                        tempest={"version": "99.0.0"})), 120))
        assert bad["state"] == "error", bad
        assert "tempest 99.0.0: no such release on the index" in bad["message"]
        assert not list((tmp_path / "own-cache" / "envs").glob("tempest-99.0.0*"))
        assert w.proc.poll() is None
    finally:
        index.stop()


@pytest.mark.cloud
def test_unexpected_error_is_a_work_exception_and_the_worker_goes_on(
        workers: WorkerFactory, client: TestClient, keystone: Keystone, tmp_path: Path,
        tempest47: PrepareResult) -> None:
    not_a_dir = tmp_path / "results-is-a-file"
    not_a_dir.write_text("")
    w = workers.start("oops", results_dir=str(not_a_dir))
    job = wait(client.submit(RUN, identity_payload(
        "oops-1", keystone, regex=r"test_domains\.DefaultDomainTestJSON")), 300)
    assert job.failure and job.exception is None  # gearmand turns it into WORK_FAIL
    states = [e for e in events(job) if e["event"] == "state"]  # progress events between
    assert states[-1]["state"] == "error"
    assert "internal error: FileExistsError" in states[-1]["message"]
    assert "Traceback" in w.output()
    ok = summary(wait(client.submit(RUN, valid(test_id="oops-2")), 120))
    assert ok["state"] == "passed"
    assert w.proc.poll() is None
    assert leftovers(w.work_dir) == []


def test_invalid_config_stops_the_worker_at_start(tmp_path: Path) -> None:
    import subprocess

    from farm_lab.workers import FARM_WORKER

    bad = tmp_path / "worker.yaml"
    bad.write_text("gearman_servers: ['h:0']\ntempest_versions: ['47.0.0']\n")
    proc = subprocess.run([FARM_WORKER, "run", "-c", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{bad}:1: gearman_servers[0]: \"h:0\" has port 0 outside 1-65535" in proc.stderr


def test_one_worker_serves_several_gearmand(workers: WorkerFactory, gearmand: Gearmand,
                                            tmp_path: Path, tempest47: PrepareResult) -> None:
    second = Gearmand(tmp_path / "gm2", queue="builtin")
    second.start()
    try:
        w = workers.start("both", gearman=[gearmand.address, second.address])
        end = time.monotonic() + 30
        while status(second.port).get(RUN, (0, 0, 0))[2] == 0:
            assert time.monotonic() < end, w.output()[-2000:]
            time.sleep(0.1)
        clients = [TestClient(gearmand.address), TestClient(second.address)]
        try:
            jobs = [c.submit(RUN, valid(test_id=f"both-{i}")) for i, c in enumerate(clients)]
            for job in jobs:
                assert summary(wait(job, 120))["state"] == "passed"
        finally:
            for c in clients:
                c.shutdown()
    finally:
        second.stop()


def test_every_gearman_socket_has_tcp_nodelay(gearmand: Gearmand) -> None:
    import socket

    from farm_worker.gearman_worker import _GearWorker

    w = _GearWorker(client_id="nodelay-probe")
    try:
        w.addServer("127.0.0.1", gearmand.port)
        w.waitForServer(timeout=10)
        (conn,) = w.active_connections
        assert conn.conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert conn.conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        w.shutdown()
