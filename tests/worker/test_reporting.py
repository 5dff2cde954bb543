"""Reporting to a real HTTP server on loopback: order, coalescing, retries, give-up, secrets."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from farm_lab.loopback import free_port
from farm_worker.exceptions import ReportError
from farm_worker.protocol import Counts, TestState
from farm_worker.reporting import CallbackClient, Reporter, pending_reports, wait_pending
from harness.recorder import Recorder


def test_reports_arrive_in_order_with_token(recorder: Recorder, tmp_path: Path) -> None:
    recorder.token = "tok-abc123"
    sub = tmp_path / "r.subunit"
    sub.write_bytes(b"\xb3subunit-bytes")
    rep = Reporter(CallbackClient(recorder.url, "tok-abc123"), "t1", "w1", retry_s=5)
    rep.state(TestState.INSTALLING, "tempest 47.0.0")
    rep.state(TestState.RUNNING, "3 tests")
    rep.progress(TestState.RUNNING, "a", Counts(total=3, done=1, passed=1))
    rep.state(TestState.UPLOADING)
    rep.upload(sub)
    rep.state(TestState.PASSED, "3 passed")
    assert rep.close(10)
    assert recorder.states("t1") == ["installing", "running", "uploading", "passed"]
    assert recorder.uploads("t1") == [b"\xb3subunit-bytes"]
    progress = [r["progress"] for r in recorder.status_reports("t1") if "progress" in r]
    assert progress == [{"done": 1, "total": 3, "current": "a", "passed": 1, "failed": 0,
                         "skipped": 0, "classes_failed": 0, "classes_skipped": 0,
                         "not_run": 2}]


def test_progress_reports_are_coalesced_while_waiting(recorder: Recorder) -> None:
    recorder.fail_next = 1  # hold the first report back for one retry
    rep = Reporter(CallbackClient(recorder.url, None), "t2", "w1", retry_s=10)
    rep.state(TestState.RUNNING, "50 tests", Counts(total=50))
    for done in range(1, 51):
        rep.progress(TestState.RUNNING, f"t{done}", Counts(total=50, done=done, passed=done))
    rep.state(TestState.PASSED, "50 passed", Counts(total=50, done=50, passed=50))
    assert rep.close(20)
    reports = recorder.status_reports("t2")
    dones = [r["progress"]["done"] for r in reports if "progress" in r]
    assert dones[-1] == 50
    assert len(dones) < 50
    # a state report carries counts too, and progress never replaces it
    assert reports[0]["message"] == "50 tests" and reports[0]["progress"]["total"] == 50
    assert reports[-1]["status"] == "passed" and reports[-1]["progress"]["not_run"] == 0


def test_transient_errors_are_retried(recorder: Recorder) -> None:
    recorder.fail_next = 2
    recorder.fail_status = 503
    rep = Reporter(CallbackClient(recorder.url, None), "t3", "w1", retry_s=30)
    rep.state(TestState.PASSED)
    assert rep.close(30)
    assert recorder.states("t3") == ["passed"]
    assert [r.answered for r in recorder.requests] == [503, 503, 202]


def test_client_errors_are_not_retried_and_do_not_raise(recorder: Recorder,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    recorder.token = "right-token"
    rep = Reporter(CallbackClient(recorder.url, "wrong-token-xyz"), "t4", "w1", retry_s=30)
    rep.state(TestState.RUNNING)
    rep.state(TestState.PASSED)
    assert not rep.close(10)
    assert [r.answered for r in recorder.requests] == [405, 405]
    assert "HTTP 405" in caplog.text
    assert "wrong-token-xyz" not in caplog.text


def test_unreachable_server_gives_up_after_retry_window() -> None:
    client = CallbackClient(f"http://127.0.0.1:{free_port()}/", "tok")
    start = time.monotonic()
    with pytest.raises(ReportError, match="gave up after 2 s: ConnectionError"):
        client.call("POST", "update-test-status/", retry_s=2, json={})
    assert time.monotonic() - start < 10


def test_server_down_then_back_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    rep = Reporter(CallbackClient(f"http://127.0.0.1:{port}/", None), "t5", "w1", retry_s=60)
    rep.state(TestState.RUNNING)
    rep.state(TestState.PASSED)
    time.sleep(1.5)  # the first attempts fail: nothing listens yet
    rec = Recorder().start(port)
    try:
        assert rep.close(60)
        assert rec.states("t5") == ["running", "passed"]
    finally:
        rec.stop()


def test_no_client_means_nothing_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    rep = Reporter(None, "t6", "w1")
    rep.state(TestState.PASSED)
    assert rep.close(1)
    assert caplog.records == [] or all(r.levelno < logging.ERROR for r in caplog.records)


@pytest.mark.parametrize(("answer", "reason"), [
    ({"test_id": "t7", "state": "running", "report": "superseded", "worker": "w2"},
     'superseded: the server gave test t7 to worker "w2"'),
    ({"test_id": "t7", "state": "passed", "report": "keep"},
     "stopped: test t7 has ended on the server (passed)"),
    ({"test_id": "t7", "state": "running", "report": "apply"}, None),
    ({"test_id": "t7", "state": "running", "report": "keep"}, None),
    ({"accepted": True}, None),  # a plain RefStack-style answer
])
def test_the_servers_answer_can_stop_the_job(recorder: Recorder, answer: dict[str, str],
                                            reason: str | None) -> None:
    recorder.status_answer = answer
    told: list[str] = []
    rep = Reporter(CallbackClient(recorder.url, None), "t7", "w1", retry_s=5,
                   on_stop=told.append)
    rep.state(TestState.RUNNING, "1/3")
    rep.state(TestState.RUNNING, "2/3")
    assert rep.close() is True
    assert told == ([reason] if reason else [])  # told once, however many answers say so
    assert rep.stopped == reason


def test_reports_left_when_the_job_ends_are_delivered_in_the_background() -> None:
    """The server is down when the job ends: close() gives up waiting, not delivering;
    the reports arrive once it is back, while the worker would be on its next job."""
    port = free_port()
    rep = Reporter(CallbackClient(f"http://127.0.0.1:{port}/", None), "t8", "w1", retry_s=60)
    rep.state(TestState.RUNNING)
    rep.state(TestState.PASSED, "3 passed")
    assert rep.close(1) is False and rep.pending
    assert pending_reports() == 2
    rec = Recorder().start(port)
    try:
        end = time.monotonic() + 30
        while pending_reports() and time.monotonic() < end:
            time.sleep(0.1)
        assert pending_reports() == 0 and not rep.pending and rep.failures == []
        assert rec.states("t8") == ["running", "passed"]
        assert wait_pending(1) == 0
    finally:
        rec.stop()


def test_reports_still_pending_at_exit_are_abandoned_and_counted() -> None:
    rep = Reporter(CallbackClient(f"http://127.0.0.1:{free_port()}/", None), "t9", "w1",
                   retry_s=60)
    rep.state(TestState.PASSED)
    assert rep.close(0.5) is False
    started = time.monotonic()
    assert wait_pending(1) == 1
    assert time.monotonic() - started < 15 and pending_reports() == 0
    assert "1 reports abandoned" in rep.failures
