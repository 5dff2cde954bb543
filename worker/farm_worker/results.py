"""A live subunit v2 stream -> per-test outcomes, progress and the summary counts.

Parsing is python-subunit's; this module only decides what counts as passed, failed
and skipped, and keeps failure details (tracebacks) for the summary.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import subunit
import testtools

from farm_worker.protocol import SUBUNIT_FAILED, SUBUNIT_FINAL, SUBUNIT_PASSED, SUBUNIT_SKIPPED

_DETAIL_FILES = ("traceback", "reason")
MAX_DETAIL_BYTES = 64 * 1024  # per test: enough for a traceback, bounded for the summary


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False  # not a pytest test class

    test_id: str
    status: str  # a subunit status: success, fail, skip, xfail, uxsuccess
    duration_s: float | None
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status in SUBUNIT_PASSED

    @property
    def failed(self) -> bool:
        return self.status in SUBUNIT_FAILED


class LiveResults(testtools.StreamResult):
    """Collects outcomes as events arrive; `on_test` is called once per finished test.

    setUpClass/tearDownClass errors appear as pseudo-tests and count as failures.
    """

    def __init__(self, on_test: Callable[[TestOutcome], None] | None = None,
                 on_start: Callable[[str], None] | None = None):
        super().__init__()
        self._on_test = on_test
        self._on_start = on_start
        self._lock = threading.Lock()
        self._started: dict[str, dt.datetime] = {}
        self._details: dict[str, bytearray] = {}
        self.outcomes: dict[str, TestOutcome] = {}
        self.current: str = ""
        self.first_time: dt.datetime | None = None
        self.last_time: dt.datetime | None = None

    def status(self, test_id: str | None = None, test_status: str | None = None,
               test_tags: set[str] | None = None, runnable: bool = True,
               file_name: str | None = None, file_bytes: bytes | None = None,
               eof: bool = False, mime_type: str | None = None,
               route_code: str | None = None, timestamp: dt.datetime | None = None) -> None:
        if timestamp is not None:
            self.first_time = self.first_time or timestamp
            self.last_time = timestamp
        if not test_id:
            return
        if file_name in _DETAIL_FILES and file_bytes:
            buf = self._details.setdefault(test_id, bytearray())
            if len(buf) < MAX_DETAIL_BYTES:
                buf.extend(file_bytes[: MAX_DETAIL_BYTES - len(buf)])
        if test_status == "inprogress":
            if timestamp is not None:
                self._started[test_id] = timestamp
            self.current = test_id
            if self._on_start:
                self._on_start(test_id)
        elif test_status in SUBUNIT_FINAL:
            start = self._started.pop(test_id, None)
            duration = ((timestamp - start).total_seconds()
                        if start is not None and timestamp is not None else None)
            detail = bytes(self._details.pop(test_id, b"")).decode("utf-8", "replace")
            outcome = TestOutcome(test_id, test_status, duration, detail)
            with self._lock:
                self.outcomes[test_id] = outcome
            if self._on_test:
                self._on_test(outcome)

    @property
    def done(self) -> int:
        return len(self.outcomes)

    def count(self, statuses: frozenset[str]) -> int:
        with self._lock:
            return sum(o.status in statuses for o in self.outcomes.values())

    @property
    def passed(self) -> int:
        return self.count(SUBUNIT_PASSED)

    @property
    def failed(self) -> int:
        return self.count(SUBUNIT_FAILED)

    @property
    def skipped(self) -> int:
        return self.count(SUBUNIT_SKIPPED)

    def failures(self) -> list[TestOutcome]:
        with self._lock:
            return [o for o in self.outcomes.values() if o.failed]

    @property
    def wall_s(self) -> float:
        if self.first_time is None or self.last_time is None:
            return 0.0
        return (self.last_time - self.first_time).total_seconds()


class _Tee:
    """A readable that copies every byte it hands out into `sink`."""

    def __init__(self, source: IO[bytes], sink: IO[bytes]):
        self._source = source
        self._sink = sink

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self._sink.write(data)
        return data


def consume(stream: IO[bytes], results: LiveResults, copy_to: IO[bytes] | None = None) -> None:
    """Parse a subunit v2 stream until EOF, optionally keeping the raw bytes."""
    source: IO[bytes] | _Tee = _Tee(stream, copy_to) if copy_to is not None else stream
    case = subunit.ByteStreamToStreamResult(source, non_subunit_name="stdout")
    results.startTestRun()
    try:
        case.run(results)
    finally:
        results.stopTestRun()


def summarize_file(path: Path) -> LiveResults:
    """Outcomes of a finished subunit file."""
    results = LiveResults()
    with path.open("rb") as fh:
        consume(fh, results)
    return results
