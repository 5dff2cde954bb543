"""Tests: created before their job is queued, reports applied by the state machine
(farm_server.lifecycle) with the test row locked, the history, the monitor's queries."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from farm_server import metrics
from farm_server.lifecycle import RUNNING_STATES, Report, Verdict, decide, is_late_news
from farm_server.models import (
    ReportRow,
    TestRow,
    utcnow,
)
from farm_server.store.engine import COUNT_CAP, StoreBase, StoreError, as_utc, capped_count
from farm_server.store.tokens import WORKERS
from farm_worker.protocol import COUNT_KEYS, FINAL_STATE_VALUES, FINAL_STATES, TestState
from farm_worker.redaction import scrub_conf

TESTS: Table = TestRow.__table__  # type: ignore[assignment]
REPORTS: Table = ReportRow.__table__  # type: ignore[assignment]
# The statements of the hot path, built once (building them costs more than running them).
_MOVING = ("state", "message", "worker", "progress_done", "progress_total",
           "progress_current", "passed", "failed", "skipped", "total", "classes_failed",
           "classes_skipped", "updated_at", "started_at", "finished_at", "last_report_at")
# a report's progress -> the test's columns (the counts keep their names)
_PROGRESS_COLUMNS = {**{key: key for key in COUNT_KEYS if key not in ("done", "total")},
                     "done": "progress_done", "total": "progress_total",
                     "current": "progress_current"}
_SELECT_TEST = (select(*(TESTS.c[name] for name in _MOVING), TESTS.c.tempest_version,
                       TESTS.c.created_at)
                .where(TESTS.c.id == bindparam("tid")).with_for_update())
_INSERT_REPORT = insert(REPORTS)
_KNOWN_REPORT = select(REPORTS.c.id).where(REPORTS.c.test_id == bindparam("tid"),
                                           REPORTS.c.report_id == bindparam("rid"))
_UPDATE_TEST = (update(TESTS).where(TESTS.c.id == bindparam("tid"))
                .values({name: bindparam(name) for name in _MOVING}))
_FORGET_CONF = (update(TESTS).where(TESTS.c.id == bindparam("tid"))
                .values(conf_json=None, accounts_json=None))
# a report's payload may carry the run's outcome beyond its counts: the tempest.conf it
# uses (from `running` on), what its test list matched and its compliance (final reports)
OUTCOME_KEYS = {"selection": "selection_json", "compliance": "compliance_json",
                "conf": "tempest_conf_json"}
_FINAL = sorted(FINAL_STATE_VALUES)




def outcome_columns(payload: Any) -> dict[str, str]:
    """The outcome a report's payload carries, as column values; a conf is kept only as
    {section: {key: text}}, with any secret-looking value removed (the worker removed them
    already: this holds even for one that did not)."""
    if not isinstance(payload, dict):
        return {}
    out = {}
    for key, column in OUTCOME_KEYS.items():
        value = payload.get(key)
        if not value:
            continue
        if key == "conf":
            if not (isinstance(value, dict) and all(
                    isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
                    for v in value.values())):
                continue
            value = scrub_conf(value)
        out[column] = json.dumps(value)
    return out


@dataclass(frozen=True)
class Applied:
    verdict: Verdict
    state: TestState
    worker: str | None = None  # who holds the test (told to a superseded worker)



class Tests(StoreBase):
    def create_test(self, row: TestRow, submit: Callable[[], tuple[str, str]],
                    user: str | None) -> TestRow:
        """Insert the test, then queue its job: a worker may take the job at once and
        ask for the test's conf, so the test is committed before the job exists. If
        queueing fails, the test is removed again: nothing is stored. StoreError if the
        test id exists."""
        with self.write() as s:
            if s.scalar(select(TESTS.c.id).where(TESTS.c.id == row.id)) is not None:
                raise StoreError(f"test {row.id!r} exists already")
            now = utcnow()
            row.created_at = row.updated_at = now
            row.submitted_by = user
            s.add(row)
            s.flush()  # the row first: no ORM relationship orders the two inserts
            s.add(ReportRow(test_id=row.id, at=now, source="api", worker=None,
                            state=row.state, message=row.message, applied=True))
        try:
            server, handle = submit()
        except BaseException:
            with self.write() as s:  # (a monitor pass in between may have added a report)
                s.execute(delete(ReportRow).where(ReportRow.test_id == row.id))
                s.execute(delete(TestRow).where(TestRow.id == row.id))
            raise
        self.set_job(row.id, server, handle)
        row.gearman_server, row.gearman_handle = server, handle
        return row

    def get(self, test_id: str) -> TestRow | None:
        with self.read() as s:
            return s.get(TestRow, test_id)

    def exists(self, test_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(TESTS.c.id).where(TESTS.c.id == test_id)).first() \
                is not None

    def holder(self, test_id: str) -> tuple[TestState, str | None] | None:
        """A test's state and the worker holding it (None: no such test); one narrow read
        for the claims that status updates make."""
        with self.engine.connect() as conn:
            found = conn.execute(select(TESTS.c.state, TESTS.c.worker)
                                 .where(TESTS.c.id == test_id)).first()
        return None if found is None else (TestState(found.state), found.worker)

    def find(self, *, states: list[str] | None = None, version: str | None = None,
             guideline: str | None = None, target: str | None = None,
             limit: int = 50, offset: int = 0,
             cap: int = COUNT_CAP) -> tuple[list[TestRow], int, bool]:
        """A page of tests, newest first; how many match (up to `cap`; capped_count) and
        whether there are more than that."""
        query = select(TestRow)
        if states:
            query = query.where(TestRow.state.in_(states))
        if version:
            query = query.where(TestRow.tempest_version == version)
        if guideline:
            query = query.where(TestRow.guideline == guideline)
        if target:
            query = query.where(TestRow.guideline_target == target)
        with self.read() as s:
            total, capped = capped_count(s, query.with_only_columns(TestRow.id), cap)
            rows = list(s.scalars(query.order_by(TestRow.created_at.desc(), TestRow.id)
                                  .limit(limit).offset(offset)))
        return rows, total, capped

    def history(self, test_id: str) -> list[ReportRow]:
        with self.read() as s:
            return list(s.scalars(select(ReportRow).where(ReportRow.test_id == test_id)
                                  .order_by(ReportRow.id)))

    def count_reports(self, test_id: str, source: str, message_prefix: str) -> int:
        with self.read() as s:
            return int(s.scalar(select(func.count()).select_from(ReportRow).where(
                ReportRow.test_id == test_id, ReportRow.source == source,
                ReportRow.message.startswith(message_prefix))) or 0)

    def active_counts(self) -> list[tuple[str, int]]:
        """(state, tests) of the tests not in a final state (for the metrics)."""
        with self.read() as s:
            rows = s.execute(select(TestRow.state, func.count()).where(
                TestRow.state.not_in(_FINAL)).group_by(TestRow.state))
            return [(str(state), int(count)) for state, count in rows]

    def active(self) -> list[TestRow]:
        """Tests not in a final state (for the monitor)."""
        with self.read() as s:
            return list(s.scalars(select(TestRow).where(TestRow.state.not_in(_FINAL))))

    def versions_of_handles(self, server: str, handles: list[str]) -> dict[str, str]:
        """handle -> Tempest version of the tests whose job is `handle` on `server`."""
        if not handles:
            return {}
        with self.read() as s:
            rows = s.execute(select(TestRow.gearman_handle, TestRow.tempest_version).where(
                TestRow.gearman_server == server, TestRow.gearman_handle.in_(handles)))
            return {str(h): str(v) for h, v in rows}

    def forget_ended_secrets(self) -> bool:
        """Make sure no ended test's Tempest configuration (its cloud's passwords) is kept:
        drop any still stored (a test that ended before this was done at once), and on
        SQLite, once tests ended since the last pass, move the WAL into the database file
        and truncate it, so that no old copy of a row stays in either file (secure_delete
        zeroes freed space). True when it checkpointed; a busy database is tried again on
        the next call. Run by the monitor, off the workers' report path."""
        with self.write() as s:
            s.execute(update(TestRow).where(TestRow.state.in_(_FINAL),
                                            TestRow.conf_json.is_not(None))
                      .values(conf_json=None).execution_options(synchronize_session=False))
            latest = s.scalar(select(func.max(TestRow.finished_at)))
        if self.engine.dialect.name != "sqlite" or latest is None \
                or latest == self._scrubbed_up_to:
            return False
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, *_frames = cur.fetchone() or (1,)
            cur.close()
        finally:
            raw.close()
        if busy:
            return False
        self._scrubbed_up_to = latest
        return True

    def apply(self, test_id: str, report: Report, *, source: str,
              progress: dict[str, Any] | None = None, payload: Any = None,
              worker_name: str | None = None, fence: bool = True,
              report_id: str | None = None, kept_by: str | None = None) -> Applied | None:
        """Record a report and move the test as the state machine says; None if no test.
        A `report_id` the test's history holds is a report delivered again: `duplicate`.

        The hot path of the server (workers report several times a second): prepared SQL
        statements, no ORM unit of work.
        """
        with self.write_sql() as conn:
            row = conn.execute(_SELECT_TEST, {"tid": test_id}).first()
            if row is None:
                return None
            current = TestState(row.state)
            # what the test shows now is the last report that moved it
            shown = Report(current, row.message, row.worker,
                           (row.progress_done, row.progress_total, row.progress_current))
            if report_id is not None and conn.execute(
                    _KNOWN_REPORT, {"tid": test_id, "rid": report_id}).first() is not None:
                return Applied(Verdict.DUPLICATE, current, row.worker)
            # `kept_by`: the holder was asked (holders.py, before this transaction) and
            # still has the test; it counts only if it holds it still
            keeps = kept_by is not None and kept_by == row.worker \
                and claims_held(current, row.worker, report)
            verdict = decide(current, shown, report, source, fence, keeps)
            ended: tuple[str, str, float | None, float | None] | None = None
            if verdict is Verdict.DUPLICATE:
                return Applied(verdict, current, row.worker)
            moves = report  # what the test shows; the history keeps the report as sent
            if is_late_news(current, shown, report, source):
                moves = Report(report.state, f"{report.message} (delivered late, after the "
                                             f"monitor ended it: {shown.message})"[:4096],
                               report.worker, report.progress)
            now = utcnow()
            conn.execute(_INSERT_REPORT, {
                "test_id": test_id, "at": now, "source": source, "worker": report.worker,
                "state": report.state.value, "message": report.message,
                "progress_json": json.dumps(progress) if progress else None,
                "payload_json": json.dumps(payload) if payload is not None else None,
                "applied": verdict is Verdict.APPLY, "report_id": report_id})
            values = {name: row._mapping[name] for name in _MOVING}
            if source == "worker" and verdict is not Verdict.SUPERSEDED:
                values["last_report_at"] = now
            if verdict is Verdict.APPLY:
                values.update(_moved(moves, progress, now, row.started_at is None))
                current = report.state
            conn.execute(_UPDATE_TEST, {"tid": test_id, **values})
            if verdict is Verdict.APPLY and current in FINAL_STATES:
                conn.execute(_FORGET_CONF, {"tid": test_id})  # its cloud's passwords
                ended = _ended(row.tempest_version, current, row.created_at,
                               values["started_at"], values["finished_at"])
            if verdict is Verdict.APPLY:
                outcome = outcome_columns(payload)
                if outcome:
                    conn.execute(update(TESTS).where(TESTS.c.id == test_id).values(**outcome))
            if worker_name and self._seen_long_ago(worker_name):
                conn.execute(update(WORKERS).where(WORKERS.c.name == worker_name)
                             .values(last_seen_at=now))
            applied = Applied(verdict, current, values.get("worker"))
        if ended is not None:  # counted once it is committed
            metrics.run_ended(*ended)
        return applied

    def _seen_long_ago(self, worker: str) -> bool:
        """Write a worker's last_seen_at at most once a minute per process."""
        now = time.monotonic()
        if now - self._seen.get(worker, -3600.0) < 60:
            return False
        self._seen[worker] = now
        return True

    def leftover_cancel_jobs(self) -> list[TestRow]:
        """Final tests whose cancel job may still wait in gearmand."""
        with self.read() as s:
            return list(s.scalars(select(TestRow).where(TestRow.state.in_(_FINAL),
                                                        TestRow.cancel_handle.is_not(None))))

    def set_job(self, test_id: str, server: str, handle: str) -> None:
        with self.write_sql() as conn:
            conn.execute(update(TESTS).where(TESTS.c.id == test_id)
                         .values(gearman_server=server, gearman_handle=handle))

    def set_cancel_job(self, test_id: str, server: str | None, handle: str | None) -> None:
        with self.write() as s:
            test = s.get(TestRow, test_id)
            if test is not None:
                test.cancel_server, test.cancel_handle = server, handle


def claims_held(current: TestState, holder: str | None, report: Report) -> bool:
    """A claim (installing) by a worker other than the one holding the running test."""
    return (current in RUNNING_STATES and report.state is TestState.INSTALLING
            and bool(holder) and bool(report.worker) and report.worker != holder)


def _ended(version: str, state: TestState, created: dt.datetime, started: dt.datetime | None,
           finished: dt.datetime | None) -> tuple[str, str, float | None, float | None]:
    """A run's end as the metrics count it: version, state, queue wait, duration."""
    begun, ended, submitted = as_utc(started), as_utc(finished), as_utc(created)
    if begun is None or ended is None or submitted is None:  # never taken by a worker
        return version, state.value, None, None
    return (version, state.value, (begun - submitted).total_seconds(),
            (ended - begun).total_seconds())


def _moved(report: Report, progress: dict[str, Any] | None, now: dt.datetime,
           not_started: bool) -> dict[str, Any]:
    """The test row's new values when a report moves it."""
    state = report.state
    values: dict[str, Any] = {"state": state.value, "message": report.message,
                              "updated_at": now}
    if state is TestState.INSTALLING or (state is TestState.RUNNING and not_started):
        values["started_at"] = now
    if report.worker:
        values["worker"] = report.worker
    if progress:  # the counts as the worker has them now (a final state carries its last)
        values.update({column: progress[key] for key, column in _PROGRESS_COLUMNS.items()
                       if key in progress})
        if isinstance(progress.get("total"), int):
            values["total"] = progress["total"]
    if state in FINAL_STATES:
        values["finished_at"] = now
    return values
