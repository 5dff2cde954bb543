"""A job's reports through the worker's durable outbox, to a real HTTP server on loopback:
order, coalescing, retries, refusals set aside, a server away, a process started again,
what is on disk (never a token), and the size cap."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm_lab.loopback import free_port
from farm_worker.courier import Courier
from farm_worker.exceptions import ReportError
from farm_worker.outbox import Outbox
from farm_worker.protocol import Counts, TestState
from farm_worker.reporting import CallbackClient, Reporter
from harness.recorder import Recorder


class Couriers:
    """Couriers on outboxes under one directory, each stopped at the end."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.made: list[Courier] = []

    def __call__(self, name: str = "w1", token: str | None = None, **kwargs: float) -> Courier:
        kwargs.setdefault("backoff_max_s", 0.5)
        c = Courier(Outbox(self.base / name), lambda url: token, **kwargs)  # type: ignore[arg-type]
        c.start()
        self.made.append(c)
        return c


@pytest.fixture
def couriers(tmp_path: Path) -> Iterator[Couriers]:
    made = Couriers(tmp_path / "outbox")
    try:
        yield made
    finally:
        for c in made.made:
            c.stop()


def wait_until(cond: object, timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not met"
        time.sleep(0.05)


def test_reports_arrive_in_order_with_token_and_an_id(recorder: Recorder, tmp_path: Path,
                                                      couriers: Couriers) -> None:
    recorder.token = "tok-abc123"
    sub = tmp_path / "r.subunit"
    sub.write_bytes(b"\xb3subunit-bytes")
    rep = Reporter(couriers(token="tok-abc123"), recorder.url, "t1", "w1")
    # the server holds the first report until all are queued: whether the progress report
    # went out before UPLOADING replaced it is otherwise a race (CI on 5c06526 saw it go)
    recorder.gate.clear()
    rep.state(TestState.INSTALLING, "tempest 47.0.0")
    rep.state(TestState.RUNNING, "3 tests")
    rep.progress(TestState.RUNNING, "a", Counts(total=3, done=1, passed=1))
    rep.state(TestState.UPLOADING)
    rep.upload(sub, "cloud-1")
    rep.state(TestState.PASSED, "3 passed")
    recorder.gate.set()
    assert rep.close(30)
    assert recorder.states("t1") == ["installing", "running", "uploading", "passed"]
    assert recorder.uploads("t1") == [b"\xb3subunit-bytes"]
    upload = next(r for r in recorder.requests if r.path == "/post-result")
    assert upload.query == {"test_id": ["t1"], "worker": ["w1"], "cpid": ["cloud-1"]}
    reports = recorder.status_reports("t1")
    ids = [r["report_id"] for r in reports if r["status"] != "running" or "report_id" in r]
    assert len(set(ids)) == len(ids) == 4 and all(i.startswith("w1:") for i in ids)
    # the progress report (memory only) was dropped: a state report was owed after it
    assert [r["status"] for r in reports] == ["installing", "running", "uploading", "passed"]
    assert sub.exists()  # the outbox linked the file; the worker's results_dir keeps it


def test_progress_reports_are_coalesced_while_waiting(recorder: Recorder,
                                                      couriers: Couriers) -> None:
    courier = couriers()
    rep = Reporter(courier, recorder.url, "t2", "w1")
    recorder.gate.clear()  # the server holds the first report until all are queued
    rep.state(TestState.RUNNING, "50 tests", Counts(total=50))
    for done in range(1, 51):
        rep.progress(TestState.RUNNING, f"t{done}", Counts(total=50, done=done, passed=done))
    recorder.gate.set()
    assert courier.wait(20) == 0
    reports = recorder.status_reports("t2")
    dones = [r["progress"]["done"] for r in reports if "report_id" not in r]
    assert dones == [50]  # the newest only
    assert reports[0]["message"] == "50 tests" and reports[0]["progress"]["total"] == 50


def test_transient_errors_are_retried(recorder: Recorder, couriers: Couriers) -> None:
    recorder.fail_next = 2
    recorder.fail_status = 503
    courier = couriers()
    rep = Reporter(courier, recorder.url, "t3", "w1")
    rep.state(TestState.PASSED)
    # the job stops waiting at the first failure (the report is safe on disk) ...
    assert rep.close(30) is False and rep.pending
    assert courier.wait(30) == 0  # ... and the courier goes on
    assert recorder.states("t3") == ["passed"]
    assert [r.answered for r in recorder.requests] == [503, 503, 202]


def test_a_refused_entry_is_set_aside_and_delivery_goes_on(
        recorder: Recorder, couriers: Couriers, caplog: pytest.LogCaptureFixture) -> None:
    """A 400 is not retried forever: the entry is set aside, logged, and the next goes."""
    recorder.fail_next, recorder.fail_status = 1, 400
    courier = couriers()
    rep = Reporter(courier, recorder.url, "t4", "w1")
    rep.state(TestState.RUNNING)
    rep.state(TestState.PASSED)
    assert not rep.close(10)
    assert [r.answered for r in recorder.requests] == [400, 202]
    assert recorder.states("t4") == ["passed"]
    assert "HTTP 400" in rep.failures[0]
    aside = courier.outbox.root / "set-aside"
    [kept] = aside.glob("*.json")
    assert json.loads(kept.read_text())["body"]["status"] == "running"
    assert "HTTP 400" in kept.with_suffix(".why").read_text()
    assert "set aside" in caplog.text
    assert courier.outbox.size() == (0, 0)


def test_an_unknown_host_is_refused_and_the_token_never_logged(
        recorder: Recorder, couriers: Couriers, caplog: pytest.LogCaptureFixture) -> None:
    recorder.token = "right-token"
    courier = couriers(token="wrong-token-xyz")
    rep = Reporter(courier, recorder.url, "t4b", "w1")
    rep.state(TestState.PASSED)
    assert not rep.close(10)
    assert [r.answered for r in recorder.requests] == [405]
    assert "HTTP 405" in caplog.text and "wrong-token-xyz" not in caplog.text


def test_unreachable_server_gives_up_a_fetch_after_its_retry_window() -> None:
    client = CallbackClient(f"http://127.0.0.1:{free_port()}/", "tok")
    start = time.monotonic()
    with pytest.raises(ReportError, match="gave up after 2 s: ConnectionError"):
        client.call("GET", "get-miniconf?test_id=x", retry_s=2)
    assert time.monotonic() - start < 10


def test_no_callback_means_nothing_is_sent(couriers: Couriers,
                                           caplog: pytest.LogCaptureFixture) -> None:
    courier = couriers()
    rep = Reporter(courier, None, "t6", "w1")
    rep.state(TestState.PASSED)
    assert rep.close(1)
    assert courier.outbox.size() == (0, 0)
    assert all(r.levelno < logging.ERROR for r in caplog.records)


@pytest.mark.parametrize(("answer", "reason"), [
    ({"test_id": "t7", "state": "running", "report": "superseded", "worker": "w2"},
     'superseded: on the server, test t7 is held by worker "w2"'),
    ({"test_id": "t7", "state": "passed", "report": "keep"},
     "stopped: test t7 has ended on the server (passed)"),
    ({"test_id": "t7", "state": "running", "report": "apply"}, None),
    ({"test_id": "t7", "state": "running", "report": "keep"}, None),
    ({"test_id": "t7", "state": "running", "report": "duplicate"}, None),
    ({"accepted": True}, None),  # a plain RefStack-style answer
])
def test_the_servers_answer_can_stop_the_job(recorder: Recorder, couriers: Couriers,
                                            answer: dict[str, str], reason: str | None) -> None:
    recorder.status_answer = answer
    told: list[str] = []
    rep = Reporter(couriers(), recorder.url, "t7", "w1", on_stop=told.append)
    rep.state(TestState.RUNNING, "1/3")
    rep.state(TestState.RUNNING, "2/3")
    assert rep.close() is True
    assert told == ([reason] if reason else [])  # told once, however many answers say so
    assert rep.stopped == reason


def test_reports_left_when_the_job_ends_are_delivered_beside_the_next(
        couriers: Couriers) -> None:
    """The server is down when the job ends: close() stops waiting, the entries stay on
    disk and arrive once it is back, while the worker would be on its next job."""
    port = free_port()
    courier = couriers()
    rep = Reporter(courier, f"http://127.0.0.1:{port}/", "t8", "w1")
    rep.state(TestState.RUNNING)
    rep.state(TestState.PASSED, "3 passed")
    assert rep.close(1) is False and rep.pending
    assert courier.owed() == 2 and courier.outbox.size()[0] == 2
    rec = Recorder().start(port)
    try:
        assert courier.wait(60) == 0
        assert rec.states("t8") == ["running", "passed"] and rep.failures == []
        assert courier.outbox.size() == (0, 0)
    finally:
        rec.stop()


def test_a_process_started_again_delivers_what_the_last_one_owed(
        tmp_path: Path, couriers: Couriers) -> None:
    """Entries survive the process: a new courier on the outbox sends them, in order,
    with the token of its configuration (none is on disk)."""
    port = free_port()
    first = couriers("w9", token="cfg-token-1")
    sub = tmp_path / "r.subunit"
    sub.write_bytes(b"\xb3bytes")
    first.remember_token(f"http://127.0.0.1:{port}/", "payload-token-2")
    rep = Reporter(first, f"http://127.0.0.1:{port}/", "t9", "w9")
    for state in (TestState.RUNNING, TestState.UPLOADING):
        rep.state(state)
    rep.upload(sub)
    rep.state(TestState.FAILED, "1 failed")
    rep.close(0.5)
    first.stop()  # the process goes (as at a restart); nothing was delivered
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "outbox").rglob("*") if p.is_file())
    assert b"cfg-token-1" not in on_disk and b"payload-token-2" not in on_disk
    root = tmp_path / "outbox" / "w9"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in root.glob("0*")} == {0o600}
    rec = Recorder(token="cfg-token-1").start(port)
    try:
        second = couriers("w9", token="cfg-token-1")
        assert second.wait(60) == 0
        assert rec.states("t9") == ["running", "uploading", "failed"]
        assert rec.uploads("t9") == [b"\xb3bytes"]
        assert [r.path for r in rec.requests] == ["/update-test-status/"] * 2 + [
            "/post-result", "/update-test-status/"]
    finally:
        rec.stop()


def test_a_second_process_cannot_deliver_the_same_outbox(couriers: Couriers) -> None:
    couriers("w10")
    with pytest.raises(Exception, match=r"delivered by another process \(pid \d+\)"):
        couriers("w10")


def test_corrupt_entries_are_set_aside_and_delivery_goes_on(
        recorder: Recorder, tmp_path: Path, couriers: Couriers) -> None:
    """Power lost mid-write (by an older writer), a subunit file gone: set aside, logged;
    the good entry after them is delivered."""
    first = couriers("w11")
    Reporter(first, recorder.url, "t11", "w11")  # nothing sent yet
    first.stop()
    box = Outbox(tmp_path / "outbox" / "w11")
    good = box.add_status("t11", recorder.url, {"test_id": "t11", "status": "passed",
                                                "worker": "w11"})
    truncated = box.root / f"{good.seq - 2:020d}.t11.json"
    truncated.write_bytes(good.path.read_bytes()[:20])
    sub = tmp_path / "x.subunit"
    sub.write_bytes(b"x")
    lost = box.add_upload("t11", recorder.url, sub, "w11", None)
    lost.data.unlink()
    second = couriers("w11")
    assert second.wait(30) == 0
    assert recorder.states("t11") == ["passed"]
    aside = sorted(p.name for p in (box.root / "set-aside").iterdir())
    assert truncated.name in aside and lost.path.name in aside
    assert box.size() == (0, 0)


def test_an_entry_past_its_age_is_set_aside(couriers: Couriers) -> None:
    courier = couriers(keep_s=1.5)
    rep = Reporter(courier, f"http://127.0.0.1:{free_port()}/", "t12", "w1")
    rep.state(TestState.PASSED)
    assert courier.wait(60) == 0
    [why] = (courier.outbox.root / "set-aside").glob("*.why")
    assert "undelivered for" in why.read_text() and "outbox_keep_s" in why.read_text()
    assert "undelivered for" in rep.failures[0]


def test_a_full_outbox_says_so_and_drains(tmp_path: Path, couriers: Couriers) -> None:
    port = free_port()
    courier = couriers(max_bytes=1)
    assert not courier.full
    Reporter(courier, f"http://127.0.0.1:{port}/", "t13", "w1").state(TestState.PASSED)
    depth = courier.depth()
    assert courier.full and depth["full"] and depth["entries"] == 1 and depth["bytes"] > 1
    rec = Recorder().start(port)
    try:
        wait_until(lambda: not courier.full)
        assert courier.depth()["bytes"] == 0
    finally:
        rec.stop()


def test_a_dropped_entry_is_not_sent(couriers: Couriers) -> None:
    port = free_port()
    courier = couriers()
    rep = Reporter(courier, f"http://127.0.0.1:{port}/", "t14", "w1")
    rep.state(TestState.RUNNING)
    rep.state(TestState.PASSED)
    rep.close(0.2)
    assert courier.outbox.drop("t14") == 2
    rec = Recorder().start(port)
    try:
        assert courier.wait(60) == 0
        assert rec.requests == []
    finally:
        rec.stop()


def test_recover_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    root = tmp_path / "w15"
    box = Outbox(root)
    (root / ".tmp-00000000000000000001.t.json").write_text("{")
    (root / "00000000000000000002.t.subunit").write_bytes(b"x")  # its entry never written
    assert sorted(p.name for p in box.recover()) == [
        ".tmp-00000000000000000001.t.json", "00000000000000000002.t.subunit"]
    assert os.listdir(root) == []
