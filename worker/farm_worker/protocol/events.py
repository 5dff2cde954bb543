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


@dataclass(frozen=True)
class ProgressEvent:
    """A test ended in the live subunit stream (WORK_DATA `{"event": "progress", ...}`)."""

    test_id: str
    done: int
    total: int
    current: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"event": "progress", "test_id": self.test_id, "done": self.done,
                "total": self.total, "current": self.current, "passed": self.passed,
                "failed": self.failed, "skipped": self.skipped}


Event = StateEvent | ProgressEvent


def state_event(test_id: str | None, state: TestState, worker: str,
                message: str = "") -> dict[str, Any]:
    return StateEvent(test_id, state, worker, message, round(time.time(), 3)).to_dict()


def progress_event(test_id: str, done: int, total: int, current: str,
                   passed: int, failed: int, skipped: int) -> dict[str, Any]:
    return ProgressEvent(test_id, done, total, current, passed, failed, skipped).to_dict()


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
        return ProgressEvent(str(doc.get("test_id") or ""), _count(doc, "done"),
                             _count(doc, "total"), str(doc.get("current") or ""),
                             _count(doc, "passed"), _count(doc, "failed"),
                             _count(doc, "skipped"))
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
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0
    duration_s: float = 0.0
    subunit: str | None = None
    message: str = ""
    field: str | None = None
    worker: str | None = None
    tempest_version: str | None = None
    failures: list[Failure] = dc_field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id, "state": self.state.value, "passed": self.passed,
            "failed": self.failed, "skipped": self.skipped, "total": self.total,
            "duration_s": round(self.duration_s, 3), "subunit": self.subunit,
            "message": self.message, "field": self.field, "worker": self.worker,
            "tempest_version": self.tempest_version,
            "failures": [{"test": f.test, "detail": f.detail} for f in self.failures],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Summary:
        return cls(
            test_id=doc.get("test_id"), state=TestState(doc["state"]),
            passed=doc.get("passed", 0), failed=doc.get("failed", 0),
            skipped=doc.get("skipped", 0), total=doc.get("total", 0),
            duration_s=doc.get("duration_s", 0.0), subunit=doc.get("subunit"),
            message=doc.get("message", ""), field=doc.get("field"), worker=doc.get("worker"),
            tempest_version=doc.get("tempest_version"),
            failures=[Failure(f["test"], f.get("detail", "")) for f in doc.get("failures", [])],
        )


def encode_event(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
