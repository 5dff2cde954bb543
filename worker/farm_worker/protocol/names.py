"""Gearman function names, the states of a test, exit codes and the server's verdicts."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from farm_worker.protocol.fields import show

# --- gearman function names ---------------------------------------------------------------
RUN_PREFIX = "tempest:run:"
RUN_ANY = "tempest:run"  # any version; registered by workers that may install on demand
CANCEL_PREFIX = "tempest:cancel:"
PING = "farm:ping"  # any worker answers: a health check of the pool
PING_PREFIX = "farm:ping:"  # one named worker answers


def run_function(version: str) -> str:
    """The function a job for this exact Tempest version is submitted to."""
    return RUN_PREFIX + version


def cancel_function(test_id: str) -> str:
    """Registered by the worker holding test_id for as long as it holds it."""
    return CANCEL_PREFIX + test_id


def ping_function(worker_id: str) -> str:
    return PING_PREFIX + worker_id


def version_of_function(name: str) -> str | None:
    """`tempest:run:47.0.0` -> `47.0.0`; any other name -> None."""
    if name.startswith(RUN_PREFIX):
        return name[len(RUN_PREFIX):]
    return None


# --- states ---------------------------------------------------------------------------------
class TestState(str, enum.Enum):
    """The life of one test run; the last six are final."""

    __test__ = False  # not a pytest test class

    QUEUED = "queued"
    INSTALLING = "installing"
    RUNNING = "running"
    UPLOADING = "uploading"
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    def __str__(self) -> str:
        return str(self.value)


# How subunit test statuses count in a summary (the worker and the server agree on this).
# setUpClass/tearDownClass errors arrive as pseudo-tests with status fail: failures.
SUBUNIT_PASSED = frozenset({"success", "xfail"})
SUBUNIT_FAILED = frozenset({"fail", "uxsuccess"})
SUBUNIT_SKIPPED = frozenset({"skip"})
SUBUNIT_FINAL = SUBUNIT_PASSED | SUBUNIT_FAILED | SUBUNIT_SKIPPED

FINAL_STATES = frozenset(
    {TestState.PASSED, TestState.FAILED, TestState.ERROR, TestState.CANCELLED,
     TestState.TIMED_OUT, TestState.REJECTED}
)
FINAL_STATE_VALUES = frozenset(state.value for state in FINAL_STATES)  # as stored and sent
STATE_VALUES = tuple(state.value for state in TestState)  # every state, in lifecycle order

# The exit code of a command that ends with a run (`farm-worker execute`, `farm watch`,
# `farm submit --wait`, the module's rc): 0 passed, 1 failed, 3 cancelled; 2 for error,
# timed_out and rejected, as for a usage error or any refusal.
EXIT_CODES = {TestState.PASSED: 0, TestState.FAILED: 1, TestState.CANCELLED: 3}
EXIT_ERROR = 2


def exit_code(state: TestState | str | None) -> int:
    """The exit code for a run that ended in `state` (None or not final: 2)."""
    try:
        return EXIT_CODES.get(TestState(state), EXIT_ERROR) if state is not None else EXIT_ERROR
    except ValueError:
        return EXIT_ERROR

# --- the callback server's answer to a status report ---------------------------------------
SUPERSEDED = "superseded"  # the report's verdict when another worker holds the test
KEEP = "keep"  # recorded, not applied; with a final state: the test has ended
DUPLICATE = "duplicate"  # a report the server already has (delivered again): not recorded
# A report's id (`report_id` of a status update): unique per test, so that a report a
# worker's outbox delivers again (at least once) is recorded once. Workers send
# "<worker id>:<sequence>".
REPORT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


def stop_reason(test_id: str, answer: Any) -> str | None:
    """Why the job must stop, from the server's answer to a status report
    ({"state", "report", "worker"}), or None to go on. It stops when another worker has
    claimed the test since (gearmand delivered the job twice) or the test has ended there
    (finished by another copy, or cancelled)."""
    if not isinstance(answer, Mapping):
        return None
    verdict = answer.get("report")
    if verdict == SUPERSEDED:
        holder = answer.get("worker")
        return (f"superseded: on the server, test {test_id} is held by "
                f"{'worker ' + show(holder) if holder else 'another worker'}")
    if verdict == KEEP:
        return ended_reason(test_id, answer)
    return None


def ended_reason(test_id: str, answer: Any) -> str | None:
    """Why the job must stop when the server says the test has ended there (its answer
    names a final `state`: to a status report, or to a fetch of the test's conf, which is
    dropped when the test ends), or None."""
    state = answer.get("state") if isinstance(answer, Mapping) else None
    if state in FINAL_STATE_VALUES:
        return f"stopped: test {test_id} has ended on the server ({state})"
    return None
