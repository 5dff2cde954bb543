"""What a worker sends while a job runs (WORK_DATA events) and when it ends (the summary)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from farm_worker.protocol.fields import show
from farm_worker.protocol.names import TestState


# --- events (WORK_DATA) and the summary (WORK_COMPLETE) ------------------------------------
@dataclass(frozen=True)
class StateEvent:
    """The job's state changed (WORK_DATA `{"event": "state", ...}`)."""

    test_id: str | None
    state: TestState
    worker: str
    message: str = ""
    time: float | None = None  # epoch seconds at the worker

    def to_dict(self) -> dict[str, Any]:
        return {"event": "state", "test_id": self.test_id, "state": self.state.value,
                "worker": self.worker, "message": self.message, "time": self.time}


COUNT_KEYS = ("total", "done", "passed", "failed", "skipped", "classes_failed",
              "classes_skipped")


@dataclass(frozen=True)
class Counts:
    """How a run's tests stand; the same numbers on the wire, in the store and on screen.

    `total` is the tests selected. `passed`, `failed` and `skipped` are tests that reported
    that outcome. `classes_failed` and `classes_skipped` count the setUpClass/tearDownClass
    (and module) fixtures that failed or skipped: Tempest reports them as pseudo-tests, and
    the tests of such a class never report. `done` is the tests accounted for, those of a
    failed or skipped class included (what a progress bar shows); `not_run` is the selected
    tests that reported nothing.
    """

    total: int = 0
    done: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    classes_failed: int = 0
    classes_skipped: int = 0

    @property
    def reported(self) -> int:
        return self.passed + self.failed + self.skipped

    @property
    def not_run(self) -> int:
        return max(self.total - self.reported, 0)

    @property
    def any_failed(self) -> bool:
        return bool(self.failed or self.classes_failed)

    def to_dict(self) -> dict[str, int]:
        return {**{key: getattr(self, key) for key in COUNT_KEYS}, "not_run": self.not_run}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Counts:
        """Strict: ValueError naming a key whose value is not a count; absent keys are 0."""
        return cls(**{key: _count(doc, key) for key in COUNT_KEYS})

    @classmethod
    def lenient(cls, doc: Mapping[str, Any] | None) -> Counts:
        """For display: what is not a count (None, absent, damaged) reads as 0."""
        doc = doc or {}
        return cls(**{key: v if isinstance(v := doc.get(key), int) and not isinstance(v, bool)
                      and v >= 0 else 0 for key in COUNT_KEYS})

    def describe(self) -> str:
        """`3 passed, 1 failed, 0 skipped, 134 not run of 138 selected; 2 classes failed in
        setUpClass or tearDownClass`."""
        text = (f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped, "
                f"{self.not_run} not run of {self.total} selected")
        if self.classes_failed:
            text += (f"; {self.classes_failed} class{'es' if self.classes_failed > 1 else ''}"
                     " failed in setUpClass or tearDownClass")
        if self.classes_skipped:
            text += (f"; {self.classes_skipped} class{'es' if self.classes_skipped > 1 else ''}"
                     " skipped whole")
        return text


@dataclass(frozen=True)
class ProgressEvent:
    """A test ended in the live subunit stream (WORK_DATA `{"event": "progress", ...}`)."""

    test_id: str
    current: str
    counts: Counts

    def to_dict(self) -> dict[str, Any]:
        return {"event": "progress", "test_id": self.test_id, "current": self.current,
                **self.counts.to_dict()}


Event = StateEvent | ProgressEvent


def state_event(test_id: str | None, state: TestState, worker: str,
                message: str = "") -> dict[str, Any]:
    return StateEvent(test_id, state, worker, message, round(time.time(), 3)).to_dict()


def progress_event(test_id: str, current: str, counts: Counts) -> dict[str, Any]:
    return ProgressEvent(test_id, current, counts).to_dict()


def _count(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key}: {show(value)} is not a count")
    return value


def parse_event(data: bytes | str | Mapping[str, Any]) -> Event | None:
    """A WORK_DATA chunk as the event it is; None for anything else (not JSON, another
    kind, the WORK_COMPLETE summary). ValueError for an event whose fields are wrong."""
    try:
        doc = data if isinstance(data, Mapping) else json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, Mapping):
        return None
    kind = doc.get("event")
    if kind == "state":
        try:
            state = TestState(doc.get("state"))
        except ValueError:
            raise ValueError(f"state: {show(doc.get('state'))} is not a state") from None
        at = doc.get("time")
        return StateEvent(doc.get("test_id"), state, str(doc.get("worker") or ""),
                          str(doc.get("message") or ""),
                          float(at) if isinstance(at, int | float) else None)
    if kind == "progress":
        return ProgressEvent(str(doc.get("test_id") or ""), str(doc.get("current") or ""),
                             Counts.from_dict(doc))
    return None


@dataclass
class Failure:
    test: str
    detail: str = ""


@dataclass
class Summary:
    """The result of one job, as sent in WORK_COMPLETE and printed by `execute --json`."""

    test_id: str | None
    state: TestState
    counts: Counts = dc_field(default_factory=Counts)
    duration_s: float = 0.0
    subunit: str | None = None
    message: str = ""
    field: str | None = None
    worker: str | None = None
    tempest_version: str | None = None
    failures: list[Failure] = dc_field(default_factory=list)
    # an explicit test list: what it matched and what this Tempest lacks (matching.Matched)
    selection: dict[str, Any] | None = None
    # a guideline run: its compliance report, per capability (compliance.report)
    compliance: dict[str, Any] | None = None
    # the tempest.conf the run used (discovered or given), each secret's value removed
    conf: dict[str, dict[str, str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id, "state": self.state.value, **self.counts.to_dict(),
            "duration_s": round(self.duration_s, 3), "subunit": self.subunit,
            "message": self.message, "field": self.field, "worker": self.worker,
            "tempest_version": self.tempest_version,
            "failures": [{"test": f.test, "detail": f.detail} for f in self.failures],
            "selection": self.selection, "compliance": self.compliance, "conf": self.conf,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Summary:
        return cls(
            test_id=doc.get("test_id"), state=TestState(doc["state"]),
            counts=Counts.from_dict(doc),
            duration_s=doc.get("duration_s", 0.0), subunit=doc.get("subunit"),
            message=doc.get("message", ""), field=doc.get("field"), worker=doc.get("worker"),
            tempest_version=doc.get("tempest_version"),
            failures=[Failure(f["test"], f.get("detail", "")) for f in doc.get("failures", [])],
            selection=doc.get("selection"), compliance=doc.get("compliance"),
            conf=doc.get("conf"),
        )


def encode_event(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
