"""The monitor against a real gearmand that restarts under it without persistence."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import gear
import pytest

from farm_client.gearman_client import Gearman, Server
from farm_lab.gearmand import Gearmand, admin, status
from farm_lab.workers import WorkerProcess, start_worker
from farm_server.models import utcnow
from farm_server.monitor import Monitor
from farm_worker.environments import PrepareResult
from farm_worker.outbox import Outbox
from farm_worker.protocol import cancel_function, parse_payload, run_function
from harness.gearclient import take_job
from server.conftest import App


def monitor(app: App, *, later_s: float = 0) -> Monitor:
    state = app.app.extensions["farm"]
    return Monitor(app.store, state.gearman, stale_after_s=60,
                   callback_url=app.config.callback_url,
                   clock=lambda: utcnow() + dt.timedelta(seconds=later_s))


def create(app: App, test_id: str) -> None:
    r = app.client.post("/v1/tests", headers=app.user(), json={
        "test_id": test_id, "tempest": {"version": "47.0.0"}, "queue_anyway": True,
        "conf": {"a": {"b": 1}}, "tests": {"regex": "x"}, "dry_run": True})
    assert r.status_code == 201, r.json


def report(app: App, test_id: str, state: str) -> None:
    r = app.client.post("/update-test-status/", headers=app.worker(),
                        json={"test_id": test_id, "status": state})
    assert r.status_code == 202


def states(app: App, test_id: str) -> list[tuple[str, str]]:
    return [(h.source, h.state) for h in app.store.history(test_id)]


def gone(gearmand: Gearmand, unique: str) -> None:
    """Wait until gearmand has processed the job's WORK_COMPLETE."""
    end = time.monotonic() + 10
    while unique in admin(gearmand.port, "show unique jobs"):
        assert time.monotonic() < end, f"gearmand still has {unique}"
        time.sleep(0.02)


def owing_worker(tmp_path: Path, gearmand: Gearmand, cache: Path, worker_id: str,
                 test_id: str) -> WorkerProcess:
    """A real worker whose outbox owes a final report of `test_id` (to a server that
    refuses connections: port 9), as when the run's server was away."""
    Outbox(tmp_path / "w" / "outbox" / worker_id).add_status(
        test_id, "http://127.0.0.1:9/", {"test_id": test_id, "status": "passed"})
    return start_worker(tmp_path / "w", gearman=[gearmand.address], cache_dir=cache,
                        versions=["47.0.0"], worker_id=worker_id)


def test_nothing_to_do_when_gearmand_has_every_job(farm_app: App) -> None:
    create(farm_app, "m0")
    assert monitor(farm_app, later_s=3600).run_once() == []


def test_a_lost_queued_job_is_resubmitted(farm_app: App, own_gearmand: Gearmand) -> None:
    create(farm_app, "m1")
    own_gearmand.stop()  # the builtin queue: every job is gone after a restart
    own_gearmand.start()
    assert admin(own_gearmand.port, "show unique jobs") == []
    actions = monitor(farm_app).run_once()
    assert actions == ["m1: resubmitted (gearmand no longer had the job)"]
    assert admin(own_gearmand.port, "show unique jobs") == ["m1"]
    assert states(farm_app, "m1")[-1] == ("monitor", "queued")
    # the job is the same as the first: a worker gets a valid payload without the conf
    raw, _ = take_job(own_gearmand.port, run_function("47.0.0"))
    payload = parse_payload(raw)
    assert payload.test_id == "m1" and payload.conf is None and payload.dry_run


def test_a_resubmitted_job_is_the_job_first_queued(farm_app: App,
                                                   own_gearmand: Gearmand) -> None:
    """A guideline run with accounts, discovery and its own timeout: the job queued again
    carries all of it (the monitor once queued the selection alone: a guideline run came
    back without its compliance, an accounts run without its accounts)."""
    name = "tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token"
    r = farm_app.client.post("/v1/tests", headers=farm_app.user(), json={
        "test_id": "m9", "tempest": {"version": "47.0.0"}, "queue_anyway": True,
        "timeout_s": 900, "dry_run": True, "discover": {"network_id": "public"},
        "conf": {"identity": {"uri_v3": "http://127.0.0.1:5000/v3"},
                 "auth": {"admin_username": "admin", "admin_password": "pw-m9"}},
        "accounts": [{"username": "u1", "password": "pw-u1", "project_name": "p1"}],
        "tests": {"list": [name]},
        "guideline": {"version": "2020.06", "target": "platform", "types": ["required"],
                      "capabilities": [{"name": "identity-v3-tokens-create",
                                        "status": "required", "tests": [name]}]}})
    assert r.status_code == 201, r.json
    first, _ = take_job(own_gearmand.port, run_function("47.0.0"))  # taken, then lost
    gone(own_gearmand, "m9")
    assert monitor(farm_app).run_once() == ["m9: resubmitted (gearmand no longer had the job)"]
    again, unique = take_job(own_gearmand.port, run_function("47.0.0"))
    assert unique == b"m9"
    assert parse_payload(again).to_dict() == parse_payload(first).to_dict()
    assert b"pw-" not in again


def test_a_job_that_keeps_vanishing_ends_error(farm_app: App, own_gearmand: Gearmand) -> None:
    """A worker that takes jobs but cannot reach the server would otherwise get the same
    test again and again."""
    create(farm_app, "m5")
    m = monitor(farm_app)
    for _ in range(3):
        take_job(own_gearmand.port, run_function("47.0.0"))  # no report reaches the server
        gone(own_gearmand, "m5")
        (action,) = m.run_once()
        assert action.startswith("m5: resubmitted"), action
    take_job(own_gearmand.port, run_function("47.0.0"))
    gone(own_gearmand, "m5")
    (action,) = m.run_once()
    assert "vanished from gearmand 4 times without a report" in action
    test = farm_app.store.get("m5")
    assert test is not None and test.state == "error"


def test_a_silent_running_test_whose_job_is_gone_ends_error(farm_app: App,
                                                           own_gearmand: Gearmand) -> None:
    create(farm_app, "m2")
    report(farm_app, "m2", "running")
    own_gearmand.stop()
    own_gearmand.start()
    assert monitor(farm_app, later_s=30).run_once() == []  # not stale yet
    (action,) = monitor(farm_app, later_s=3600).run_once()
    assert action.startswith("m2: error (worker lost: no report for ")
    test = farm_app.store.get("m2")
    assert test is not None and test.state == "error" and "worker lost" in test.message
    assert states(farm_app, "m2")[-1] == ("monitor", "error")


def test_a_silent_running_test_gearmand_queued_again_goes_back_to_queued(
        farm_app: App, own_gearmand: Gearmand) -> None:
    create(farm_app, "m3")
    w = gear.Worker(client_id="dies")
    w.addServer("127.0.0.1", own_gearmand.port)
    w.registerFunction(run_function("47.0.0"))
    w.waitForServer(timeout=5)
    w.getJob()
    report(farm_app, "m3", "running")
    assert monitor(farm_app, later_s=3600).run_once() == []  # running in gearmand: fine
    w.shutdown()  # the worker dies: gearmand queues the job again
    end = time.monotonic() + 10
    while status(own_gearmand.port)[run_function("47.0.0")][1] != 0:
        assert time.monotonic() < end, "gearmand still shows the job running"
        time.sleep(0.05)
    (action,) = monitor(farm_app, later_s=3600).run_once()
    assert "queued (queued again by gearmand: the worker was lost" in action
    test = farm_app.store.get("m3")
    assert test is not None and test.state == "queued"


def test_a_cancel_job_left_after_the_test_ended_is_removed(farm_app: App,
                                                           own_gearmand: Gearmand) -> None:
    create(farm_app, "m4")
    report(farm_app, "m4", "running")
    assert farm_app.client.post("/v1/tests/m4/cancel", headers=farm_app.user()).status_code \
        == 202
    report(farm_app, "m4", "passed")  # it finished before a worker took the cancel
    assert status(own_gearmand.port)[cancel_function("m4")][0] == 1
    assert monitor(farm_app).run_once() == ["m4: removed the cancel job left after passed"]
    test = farm_app.store.get("m4")
    assert test is not None and test.cancel_handle is None
    ignored = [line.split("\t")[2] for line in admin(own_gearmand.port, "show jobs")
               if line]
    assert "1" in ignored  # gearmand marks it cancelled; no worker will run it


def test_a_job_that_ends_while_a_pass_runs_is_not_run_again(
        farm_app: App, own_gearmand: Gearmand, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass's snapshot of gearmand lists a silent test's job; its worker finishes it
    before the pass looks at that test. Nothing is submitted again: that would run the
    test a second time (a worker whose final report is late is judged on the next pass)."""
    create(farm_app, "m6")
    report(farm_app, "m6", "running")
    gearman = farm_app.app.extensions["farm"].gearman
    snapshot = gearman.unique_jobs

    def snapshot_then_the_job_ends(server: Server) -> set[str]:
        found: set[str] = snapshot(server)
        take_job(own_gearmand.port, run_function("47.0.0"))
        gone(own_gearmand, "m6")
        return found

    monkeypatch.setattr(gearman, "unique_jobs", snapshot_then_the_job_ends)
    assert monitor(farm_app, later_s=3600).run_once() == []
    assert admin(own_gearmand.port, "show unique jobs") == []  # not submitted again
    assert states(farm_app, "m6")[-1] == ("worker", "running")
    monkeypatch.undo()
    (action,) = monitor(farm_app, later_s=3600).run_once()  # no report came: lost
    assert action.startswith("m6: error (worker lost: ")


def test_a_test_queued_while_a_pass_asks_gearmand_is_not_resubmitted(
        farm_app: App, own_gearmand: Gearmand, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass's snapshot of gearmand is older than a test created just after it: that
    test's job is not missing, it was queued after the question (found by the fault suite:
    fifty tests created one after the other, each resubmitted once by a pass between)."""
    gearman = farm_app.app.extensions["farm"].gearman
    snapshot = gearman.unique_jobs

    def snapshot_then_a_test_is_created(server: Server) -> set[str]:
        found: set[str] = snapshot(server)
        create(farm_app, "m7")
        return found

    monkeypatch.setattr(gearman, "unique_jobs", snapshot_then_a_test_is_created)
    assert monitor(farm_app, later_s=3600).run_once() == []
    monkeypatch.undo()
    assert states(farm_app, "m7") == [("api", "queued")]
    assert monitor(farm_app, later_s=3600).run_once() == []  # the next pass: gearmand has it


def test_a_test_stored_but_not_yet_queued_is_left_to_the_server_queueing_it(
        farm_app: App, own_gearmand: Gearmand, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass between the commit of a new test and the submission of its job leaves it
    alone; one that finds it still unqueued `stale_after_s` later (the server stopped in
    between) queues it."""
    gearman: Gearman = farm_app.app.extensions["farm"].gearman
    submit = gearman.submit
    passes: list[list[str]] = []

    def a_pass_then_submit(function: str, payload: bytes, unique: str) -> tuple[Server, str]:
        monkeypatch.setattr(gearman, "submit", submit)  # the monitor's own submissions
        passes.append(monitor(farm_app).run_once())
        passes.append(monitor(farm_app, later_s=3600).run_once())
        return submit(function, payload, unique)

    monkeypatch.setattr(gearman, "submit", a_pass_then_submit)
    create(farm_app, "m8")
    monkeypatch.undo()
    assert passes == [[], ["m8: resubmitted (stored but never queued)"]]
    assert admin(own_gearmand.port, "show unique jobs") == ["m8"]  # one job: the same unique
    assert monitor(farm_app, later_s=3600).run_once() == []


@pytest.mark.tempest
def test_a_silent_run_whose_worker_still_owes_its_reports_is_not_lost(
        farm_app: App, own_gearmand: Gearmand, tmp_path: Path, worker_cache: Path,
        tempest47: PrepareResult) -> None:
    """Its job is gone from gearmand and it has been silent for an hour, but its worker is
    alive and still owes reports of it (its outbox: the server was away): the monitor
    asks the worker (holders.py) and leaves the run to its late reports. The same run
    held by a worker no gearmand lists ends `error` (worker lost)."""
    for tid in ("m7", "m8"):
        create(farm_app, tid)
    r = farm_app.client.post("/update-test-status/", headers=farm_app.worker(), json={
        "test_id": "m7", "status": "running", "worker": "m7-holder"})
    assert r.status_code == 202
    report(farm_app, "m8", "running")  # held by the host's name: no such worker
    own_gearmand.stop()  # both jobs gone (the builtin queue)
    own_gearmand.start()
    worker = owing_worker(tmp_path, own_gearmand, worker_cache, "m7-holder", "m7")
    try:
        actions = monitor(farm_app, later_s=3600).run_once()
        assert [a.split(":")[0] for a in actions] == ["m8"], actions
        assert "worker lost" in actions[0]
        test = farm_app.store.get("m7")
        assert test is not None and test.state == "running"
    finally:
        worker.stop()


@pytest.mark.tempest
def test_a_queued_run_a_worker_ran_while_the_server_was_away_is_not_queued_again(
        farm_app: App, own_gearmand: Gearmand, tmp_path: Path, worker_cache: Path,
        tempest47: PrepareResult) -> None:
    """gearmand no longer has the job and no worker has reported on the run: either
    gearmand lost it, or a worker ran it while this server was away and its reports wait
    in its outbox (found by the campaign bench: a worker ran a dry run three times, twice
    queued again by the monitor). The monitor asks every worker (holders.keepers): the run
    a live worker owes is left to its reports; the other one is queued again."""
    create(farm_app, "q1")
    r = farm_app.client.post("/v1/tests", headers=farm_app.user(), json={
        "test_id": "q2", "tempest": {"version": "40.0.0"}, "queue_anyway": True,
        "conf": {"a": {"b": 1}}, "tests": {"regex": "x"}, "dry_run": True})
    assert r.status_code == 201, r.json
    own_gearmand.stop()  # both jobs gone (the builtin queue)
    own_gearmand.start()
    worker = owing_worker(tmp_path, own_gearmand, worker_cache, "q1-runner", "q1")
    try:
        actions = monitor(farm_app).run_once()
        assert actions == ["q2: resubmitted (gearmand no longer had the job)"], actions
        assert states(farm_app, "q1") == [("api", "queued")]
        assert admin(own_gearmand.port, "show unique jobs") == ["q2"]
    finally:
        worker.stop()
