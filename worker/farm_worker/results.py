"""A subunit v2 stream -> per-test outcomes, the current test and the summary counts.

The one collector of the farm: the worker feeds it Tempest's live stream, the status
server an uploaded file. Parsing is python-subunit's and the grouping of events into
tests is testtools' `StreamToDict` (what stestr's subunit-trace uses); this module only
decides what counts as passed, failed and skipped, and keeps failure details (bounded).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import subunit
import testtools

from farm_worker.protocol import (
    SUBUNIT_FAILED,
    SUBUNIT_FINAL,
    SUBUNIT_PASSED,
    SUBUNIT_SKIPPED,
    Counts,
)

if TYPE_CHECKING:
    from testtools.content import Content
    from testtools.testresult.real import TestDict

_DETAIL_FILES = ("traceback", "reason")
MAX_DETAIL_BYTES = 64 * 1024  # per test: enough for a traceback, bounded for the summary
PARSER_ID = "subunit.parser"  # python-subunit reports a damaged packet as this pseudo-test
# unittest reports an error in a class or module fixture as a pseudo-test of this name
_FIXTURE = re.compile(
    r"(?:setUpClass|tearDownClass|setUpModule|tearDownModule) \((?P<scope>[^()]+)\)")


def fixture_scope(test_id: str) -> str | None:
    """The class (or module) of a fixture pseudo-test, `setUpClass (a.b.C)` -> `a.b.C`;
    None for a real test."""
    m = _FIXTURE.fullmatch(test_id)
    return m.group("scope") if m else None


def in_scope(test_id: str, scope: str) -> bool:
    """Whether a test (`a.b.C.test_x[id-...]`) belongs to a class or module `scope`."""
    return test_id.split("[", 1)[0].startswith(scope + ".")


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False  # not a pytest test class

    test_id: str  # as Tempest names it, attributes included: `tempest.a.B.test_c[id-...]`
    status: str  # a subunit status: success, fail, skip, xfail, uxsuccess
    duration_s: float | None
    detail: str = ""

    @property
    def scope(self) -> str | None:
        """For a setUpClass/tearDownClass pseudo-test, the class it stands for."""
        return fixture_scope(self.test_id)

    @property
    def passed(self) -> bool:
        return self.status in SUBUNIT_PASSED

    @property
    def failed(self) -> bool:
        return self.status in SUBUNIT_FAILED


def _detail(details: dict[str, Content]) -> str:
    """The traceback and skip reason of a test, at most MAX_DETAIL_BYTES of them."""
    out = bytearray()
    for name in _DETAIL_FILES:
        content = details.get(name)
        if content is None:
            continue
        for chunk in content.iter_bytes():
            out.extend(chunk[: MAX_DETAIL_BYTES - len(out)])
            if len(out) >= MAX_DETAIL_BYTES:
                return bytes(out).decode("utf-8", "replace")
    return bytes(out).decode("utf-8", "replace")


class Collector(testtools.StreamToDict):
    """Collects outcomes as tests finish; thread-safe to read while a stream is consumed.

    `on_start(test_id)` is called when a test goes in progress, `on_test(outcome)` once
    per finished test. setUpClass/tearDownClass errors appear as pseudo-tests, counted as
    classes (`Counts.classes_failed`), not as tests; a test still in progress when the
    stream ends is not counted. `selected`, the tests the run was given, makes the counts'
    total and lets the tests of a failed class count as done.
    """

    def __init__(self, on_test: Callable[[TestOutcome], None] | None = None,
                 on_start: Callable[[str], None] | None = None,
                 selected: Iterable[str] | None = None):
        super().__init__(self._finished)
        self.selected = list(selected) if selected is not None else None
        self._on_outcome = on_test
        self._on_start = on_start
        self._lock = threading.Lock()
        self.outcomes: dict[str, TestOutcome] = {}
        self.current: str = ""
        self.first_time: dt.datetime | None = None
        self.last_time: dt.datetime | None = None
        self.parse_error: str | None = None

    def status(self, test_id: str | None = None, test_status: str | None = None,
               test_tags: set[str] | None = None, runnable: bool = True,
               file_name: str | None = None, file_bytes: bytes | None = None,
               eof: bool = False, mime_type: str | None = None,
               route_code: str | None = None, timestamp: dt.datetime | None = None) -> None:
        if timestamp is not None:
            self.first_time = self.first_time or timestamp
            self.last_time = timestamp
        super().status(test_id=test_id, test_status=test_status, test_tags=test_tags,
                       runnable=runnable, file_name=file_name, file_bytes=file_bytes,
                       eof=eof, mime_type=mime_type, route_code=route_code,
                       timestamp=timestamp)
        if test_status == "inprogress" and test_id:
            self.current = test_id
            if self._on_start:
                self._on_start(test_id)

    def _finished(self, test: TestDict) -> None:
        if test["id"] == PARSER_ID:
            error = test["details"].get("Parser Error")
            self.parse_error = error.as_text() if error is not None else "unreadable packet"
            return
        if test["status"] not in SUBUNIT_FINAL:  # in progress when the stream ended
            return
        start, end = test["timestamps"]
        duration = (end - start).total_seconds() if start is not None and end is not None else None
        outcome = TestOutcome(test["id"], test["status"], duration, _detail(test["details"]))
        with self._lock:
            self.outcomes[outcome.test_id] = outcome
        if self._on_outcome:
            self._on_outcome(outcome)

    @property
    def done(self) -> int:
        return len(self.outcomes)

    @property
    def tests(self) -> list[TestOutcome]:
        """Every finished test, in the order they finished (a test run twice: its last)."""
        with self._lock:
            return list(self.outcomes.values())

    def counts(self) -> Counts:
        """The run's counts so far (tests only; fixtures as classes)."""
        with self._lock:
            outcomes = list(self.outcomes.values())
        real = [o for o in outcomes if o.scope is None]
        fixtures = [o for o in outcomes if o.scope is not None]
        ended = [o.scope for o in fixtures if o.scope and o.status not in SUBUNIT_PASSED]
        reported = {o.test_id for o in real}
        selected = self.selected if self.selected is not None else list(reported)
        # the tests of a class whose fixture failed or skipped will not report: done too
        done = len(reported) + sum(
            1 for t in selected if t not in reported and any(in_scope(t, c) for c in ended))
        return Counts(
            total=len(selected), done=min(done, len(selected)),
            passed=sum(o.status in SUBUNIT_PASSED for o in real),
            failed=sum(o.status in SUBUNIT_FAILED for o in real),
            skipped=sum(o.status in SUBUNIT_SKIPPED for o in real),
            classes_failed=sum(o.status in SUBUNIT_FAILED for o in fixtures),
            classes_skipped=sum(o.status in SUBUNIT_SKIPPED for o in fixtures))

    def failures(self) -> list[TestOutcome]:
        return [o for o in self.tests if o.failed]

    @property
    def wall_s(self) -> float:
        """From the stream's first timestamp to its last."""
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


def consume(stream: IO[bytes], results: Collector, copy_to: IO[bytes] | None = None,
            non_subunit_name: str | None = "stdout") -> None:
    """Parse a subunit v2 stream until EOF, optionally keeping the raw bytes.

    Bytes that are not subunit (Tempest's own output) are passed over as `stdout` unless
    `non_subunit_name` is None, when python-subunit treats them as a damaged stream.
    """
    source: IO[bytes] | _Tee = _Tee(stream, copy_to) if copy_to is not None else stream
    case = subunit.ByteStreamToStreamResult(source, non_subunit_name=non_subunit_name)
    results.startTestRun()
    try:
        case.run(results)
    finally:
        results.stopTestRun()


def summarize_file(path: Path) -> Collector:
    """Outcomes of a finished subunit file."""
    results = Collector()
    with path.open("rb") as fh:
        consume(fh, results)
    return results
