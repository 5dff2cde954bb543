"""The state machine of a test, in one place.

    queued ──▶ installing ──▶ running ──▶ uploading ──▶ passed | failed | error
       │            ▲   ╰────────┴───────────┴───────▶ cancelled | timed_out | rejected
       ╰────────────┴─ (a job gearmand hands to a second worker starts over at installing)

- Final states are final: a late report (a `running` after `cancelled`) is kept in the
  history but does not change the state.
- A state never goes back except to `installing` (the job was handed to another worker)
  or to `queued` (the monitor saw gearmand queue it again); only the monitor and the API
  may set `queued`.
- The same report twice is one report: a worker retries when an answer was lost. A report
  that carries a `report_id` the test's history already holds (a worker's outbox delivers
  at least once, maybe after newer ones, maybe from a restarted process) is answered
  `duplicate` and not recorded again.
- Late news: a test the monitor ended `error` ("worker lost") while its worker could not
  reach the server takes the final state that worker delivers later; only from the worker
  that held it, and only a final state (what came before it is history).
- One worker holds a test. A job gearmand delivers twice (a restart reloads a running
  job from its persistent queue, or hands out again the job of a worker it lost) is
  claimed (report `installing`) by a second worker. The server asks the holder first
  (holders.py): while it still runs the test, or still owes the server reports of it (its
  outbox: the server was away), the holder keeps it and the new claim is `superseded`, so
  the test never runs twice against the cloud. Otherwise (the holder is gone, does not
  answer, or has moved on) the claim wins; the first one's later reports are
  `superseded`, which tells it to stop, and its upload is refused. A copy of a test that
  already ended is told so by `keep` with a final state, and stops too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from farm_worker.protocol import DUPLICATE, FINAL_STATES, KEEP, SUPERSEDED, TestState

S = TestState
RUNNING_STATES = frozenset({S.INSTALLING, S.RUNNING, S.UPLOADING})

# state -> states a report may move it to (a state to itself: a progress update)
ALLOWED: dict[TestState, frozenset[TestState]] = {
    S.QUEUED: RUNNING_STATES | FINAL_STATES,
    S.INSTALLING: RUNNING_STATES | FINAL_STATES,
    S.RUNNING: RUNNING_STATES | FINAL_STATES,
    S.UPLOADING: frozenset({S.INSTALLING, S.UPLOADING}) | FINAL_STATES,
    **{final: frozenset() for final in FINAL_STATES},
}
REQUEUE_SOURCES = frozenset({"monitor", "api"})
WORKER_LOST = "worker lost: "  # how the monitor's `error` for a silent worker begins


class Verdict(str, enum.Enum):
    APPLY = "apply"  # the state (or the progress) changes
    KEEP = KEEP  # history only: not a transition the test can make now
    SUPERSEDED = SUPERSEDED  # from a worker that no longer holds the test: it must stop
    DUPLICATE = DUPLICATE  # the very same report again (or its report_id): not recorded


@dataclass(frozen=True)
class Report:
    state: TestState
    message: str
    worker: str | None
    progress: tuple[int | None, int | None, str | None] = (None, None, None)


def decide(current: TestState, last: Report | None, new: Report,
           source: str = "worker", fence: bool = True, holder_keeps: bool = False) -> Verdict:
    """What a new report does to a test in state `current` whose last report was `last`.
    `fence`: the report names its worker (a client that does not is never superseded).
    `holder_keeps`: the worker holding the test still runs it or owes its reports."""
    if last is not None and new == last:
        return Verdict.DUPLICATE
    if holder_keeps and fence and source == "worker" and current in RUNNING_STATES \
            and new.state is S.INSTALLING and last is not None and last.worker \
            and new.worker and new.worker != last.worker:
        return Verdict.SUPERSEDED  # a second copy of a test its holder still has
    if fence and source == "worker" and current in RUNNING_STATES \
            and new.state is not S.INSTALLING \
            and last is not None and last.worker and new.worker and new.worker != last.worker:
        return Verdict.SUPERSEDED
    if is_late_news(current, last, new, source):
        return Verdict.APPLY
    if new.state is S.QUEUED:
        allowed = current not in FINAL_STATES and source in REQUEUE_SOURCES
    else:
        allowed = new.state in ALLOWED[current]
    return Verdict.APPLY if allowed else Verdict.KEEP


def is_late_news(current: TestState, last: Report | None, new: Report,
                 source: str = "worker") -> bool:
    """A final state from the worker that held a test the monitor gave up as lost."""
    return (current is S.ERROR and source == "worker" and new.state in FINAL_STATES
            and last is not None and last.message.startswith(WORKER_LOST)
            and bool(new.worker) and new.worker == last.worker)


def can_cancel(current: TestState) -> bool:
    return current not in FINAL_STATES
