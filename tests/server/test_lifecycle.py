"""The state machine: transitions, final states, duplicates, who may re-queue."""

from __future__ import annotations

import pytest

from farm_server.lifecycle import ALLOWED, Report, Verdict, decide
from farm_worker.protocol import FINAL_STATES, TestState

S = TestState


def r(state: TestState, message: str = "", worker: str | None = "w1") -> Report:
    return Report(state, message, worker)


@pytest.mark.parametrize(("current", "new", "verdict"), [
    (S.QUEUED, S.INSTALLING, Verdict.APPLY),
    (S.INSTALLING, S.RUNNING, Verdict.APPLY),
    (S.RUNNING, S.RUNNING, Verdict.APPLY),  # progress
    (S.RUNNING, S.UPLOADING, Verdict.APPLY),
    (S.UPLOADING, S.PASSED, Verdict.APPLY),
    (S.QUEUED, S.REJECTED, Verdict.APPLY),
    (S.QUEUED, S.ERROR, Verdict.APPLY),
    (S.RUNNING, S.INSTALLING, Verdict.APPLY),  # handed to another worker
    (S.UPLOADING, S.INSTALLING, Verdict.APPLY),
    (S.UPLOADING, S.RUNNING, Verdict.KEEP),  # a late progress report does not go back
    (S.CANCELLED, S.RUNNING, Verdict.KEEP),  # final is final
    (S.PASSED, S.FAILED, Verdict.KEEP),
    (S.RUNNING, S.QUEUED, Verdict.KEEP),  # workers never re-queue
])
def test_worker_reports(current: TestState, new: TestState, verdict: Verdict) -> None:
    assert decide(current, None, r(new)) is verdict


def test_late_news_only_from_the_holder_and_only_a_final_state() -> None:
    lost = r(S.ERROR, "worker lost: no report for 600 s", worker="w1")
    assert decide(S.ERROR, lost, r(S.PASSED)) is Verdict.APPLY
    assert decide(S.ERROR, lost, r(S.RUNNING)) is Verdict.KEEP
    assert decide(S.ERROR, lost, r(S.PASSED, worker="w2")) is Verdict.KEEP
    assert decide(S.ERROR, lost, r(S.PASSED), "monitor") is Verdict.KEEP
    other = r(S.ERROR, "preflight: [identity] uri_v3: is not set", worker="w1")
    assert decide(S.ERROR, other, r(S.PASSED)) is Verdict.KEEP


def test_only_monitor_and_api_requeue_and_never_a_final_test() -> None:
    assert decide(S.RUNNING, None, r(S.QUEUED), "monitor") is Verdict.APPLY
    assert decide(S.QUEUED, None, r(S.QUEUED), "api") is Verdict.APPLY
    assert decide(S.ERROR, None, r(S.QUEUED), "monitor") is Verdict.KEEP


def test_the_same_report_twice_is_a_duplicate() -> None:
    first = Report(S.RUNNING, "3/9", "w1", (3, 9, "a.b"))
    assert decide(S.RUNNING, first, first) is Verdict.DUPLICATE
    assert decide(S.RUNNING, first, Report(S.RUNNING, "4/9", "w1", (4, 9, "a.c"))) \
        is Verdict.APPLY


def test_every_state_has_its_transitions_and_finals_have_none() -> None:
    assert set(ALLOWED) == set(TestState)
    for final in FINAL_STATES:
        assert ALLOWED[final] == frozenset()


def test_the_last_worker_to_claim_holds_the_test() -> None:
    """gearmand handed the job to a second worker (a restart reloaded it): the second
    claim wins, the first worker's reports are superseded and tell it to stop."""
    holder = Report(S.INSTALLING, "tempest 47.0.0", "w2")
    assert decide(S.INSTALLING, holder, r(S.RUNNING, "1/3", "w1")) is Verdict.SUPERSEDED
    assert decide(S.RUNNING, holder, r(S.PASSED, "", "w1")) is Verdict.SUPERSEDED
    assert decide(S.RUNNING, holder, r(S.RUNNING, "2/3", "w2")) is Verdict.APPLY
    assert decide(S.RUNNING, holder, r(S.INSTALLING, "", "w3")) is Verdict.APPLY  # a claim
    # a report that does not name its worker is never superseded (RefStack-style clients)
    assert decide(S.RUNNING, holder, r(S.RUNNING, "", "host-1"), fence=False) is Verdict.APPLY
    # an ended test: kept, whoever reports
    assert decide(S.PASSED, holder, r(S.INSTALLING, "", "w1")) is Verdict.KEEP


def test_a_holder_that_still_has_the_test_keeps_it() -> None:
    """The holder answered that it still runs the test (or owes its reports): a second
    claim is the one told to stop; the holder's own reports go on."""
    holder = Report(S.RUNNING, "1/3", "w1")
    claim = r(S.INSTALLING, "tempest 47.0.0", "w2")
    assert decide(S.RUNNING, holder, claim, holder_keeps=True) is Verdict.SUPERSEDED
    assert decide(S.UPLOADING, holder, claim, holder_keeps=True) is Verdict.SUPERSEDED
    assert decide(S.RUNNING, holder, r(S.PASSED, "", "w1"), holder_keeps=True) \
        is Verdict.APPLY
    # not a claim, or from the holder itself, or a test not running: as before
    assert decide(S.RUNNING, holder, r(S.INSTALLING, "", "w1"), holder_keeps=True) \
        is Verdict.APPLY
    assert decide(S.QUEUED, None, claim, holder_keeps=True) is Verdict.APPLY
