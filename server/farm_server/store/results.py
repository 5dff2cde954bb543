"""A test's results: the subunit stream as uploaded, and a row per test in it."""

from __future__ import annotations

import enum
import hashlib

from sqlalchemy import (
    delete,
    select,
)

from farm_client.subunit_results import Collector
from farm_server.models import (
    ResultFileRow,
    ResultRow,
    TestRow,
    utcnow,
)
from farm_server.store.engine import StoreBase


class Stored(enum.Enum):
    NO_TEST = "no test"
    STORED = "stored"
    DUPLICATE = "duplicate"  # the same bytes as the test's results: nothing changed


class Results(StoreBase):
    def store_results(self, test_id: str, parsed: Collector, data: bytes,
                      cpid: str | None = None) -> Stored:
        """Replace the test's results; the same file again (a worker's outbox delivers at
        least once) is a duplicate and changes nothing. The worker's `cpid` is kept unless
        one was given at submit."""
        digest = hashlib.sha256(data).hexdigest()
        with self.write() as s:
            test = s.scalar(select(TestRow).where(TestRow.id == test_id).with_for_update())
            if test is None:
                return Stored.NO_TEST
            if s.scalar(select(ResultFileRow.sha256).where(
                    ResultFileRow.test_id == test_id)) == digest:
                return Stored.DUPLICATE
            s.execute(delete(ResultRow).where(ResultRow.test_id == test_id))
            s.execute(delete(ResultFileRow).where(ResultFileRow.test_id == test_id))
            tests = parsed.tests
            s.add_all(ResultRow(test_id=test_id, name=t.test_id, status=t.status,
                                duration_s=t.duration_s, detail=t.detail)
                      for t in tests)
            s.add(ResultFileRow(test_id=test_id, data=data, size=len(data), sha256=digest))
            counts = parsed.counts()  # the file's word over the reports' on the outcomes
            test.passed, test.failed, test.skipped = counts.passed, counts.failed, counts.skipped
            test.classes_failed, test.classes_skipped = (counts.classes_failed,
                                                         counts.classes_skipped)
            # the file does not know what was selected; the worker's reports do
            test.total = test.total or test.progress_total or counts.total
            if cpid and not test.cpid:
                test.cpid = cpid
            test.updated_at = utcnow()
        return Stored.STORED

    def results(self, test_id: str) -> tuple[list[ResultRow], ResultFileRow | None]:
        with self.read() as s:
            rows = list(s.scalars(select(ResultRow).where(ResultRow.test_id == test_id)
                                  .order_by(ResultRow.id)))
            return rows, s.get(ResultFileRow, test_id)
