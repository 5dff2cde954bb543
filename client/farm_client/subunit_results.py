"""An uploaded subunit v2 stream -> per-test rows and a summary (python-subunit parses).

Unlike the worker's live parser this one is strict: a body that is not a subunit
stream is refused, so nothing half-understood is stored.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

import subunit
import testtools

from farm_client.exceptions import FarmClientError
from farm_worker.protocol import SUBUNIT_FAILED, SUBUNIT_FINAL, SUBUNIT_PASSED, SUBUNIT_SKIPPED


class NotSubunit(FarmClientError, ValueError):
    """The bytes are not a (non-empty, well-formed) subunit v2 stream."""


@dataclass
class TestResult:
    __test__ = False

    name: str
    status: str
    duration_s: float | None
    detail: str = ""


@dataclass
class ParsedResults:
    tests: list[TestResult] = field(default_factory=list)
    first: dt.datetime | None = None
    last: dt.datetime | None = None

    def count(self, statuses: frozenset[str]) -> int:
        return sum(t.status in statuses for t in self.tests)

    @property
    def passed(self) -> int:
        return self.count(SUBUNIT_PASSED)

    @property
    def failed(self) -> int:
        return self.count(SUBUNIT_FAILED)

    @property
    def skipped(self) -> int:
        return self.count(SUBUNIT_SKIPPED)

    @property
    def duration_s(self) -> float:
        return (self.last - self.first).total_seconds() if self.first and self.last else 0.0


class _Collector(testtools.StreamResult):
    def __init__(self) -> None:
        super().__init__()
        self.out = ParsedResults()
        self._start: dict[str, dt.datetime] = {}
        self._detail: dict[str, list[bytes]] = {}
        self.parse_error: str | None = None

    def status(self, test_id: str | None = None, test_status: str | None = None,
               test_tags: set[str] | None = None, runnable: bool = True,
               file_name: str | None = None, file_bytes: bytes | None = None,
               eof: bool = False, mime_type: str | None = None,
               route_code: str | None = None, timestamp: dt.datetime | None = None) -> None:
        if test_id == "subunit.parser":  # python-subunit's report of a damaged packet
            if file_bytes and file_name == "Parser Error":
                self.parse_error = file_bytes.decode("utf-8", "replace")
            return
        if timestamp is not None:
            self.out.first = self.out.first or timestamp
            self.out.last = timestamp
        if not test_id:
            return
        if file_bytes and file_name in ("traceback", "reason"):
            self._detail.setdefault(test_id, []).append(file_bytes)
        if test_status == "inprogress" and timestamp is not None:
            self._start[test_id] = timestamp
        elif test_status in SUBUNIT_FINAL:
            start = self._start.pop(test_id, None)
            duration = ((timestamp - start).total_seconds()
                        if start is not None and timestamp is not None else None)
            detail = b"".join(self._detail.pop(test_id, [])).decode("utf-8", "replace")
            self.out.tests.append(TestResult(test_id, test_status, duration, detail))


def parse(data: bytes) -> ParsedResults:
    """Parse a whole stream; NotSubunit when it is empty, not subunit, or damaged."""
    if not data:
        raise NotSubunit("the file is empty")
    collector = _Collector()
    try:
        subunit.ByteStreamToStreamResult(io.BytesIO(data)).run(collector)
    except Exception as exc:  # python-subunit raises a bare Exception on non-subunit bytes
        raise NotSubunit(f"not a subunit v2 stream ({str(exc)[:80]})") from None
    if collector.parse_error:
        raise NotSubunit(f"damaged subunit stream: {collector.parse_error[:200]}")
    if not collector.out.tests:
        raise NotSubunit("the stream holds no test result")
    return collector.out
