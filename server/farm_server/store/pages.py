"""What the dashboard reads and keeps: sign-in sessions, the runs page's query, the tests
changed lately (live updates), a test's history across runs, a run's ETA and its previous
run. Each query is one indexed statement (docs/dashboard.md#what-the-pages-cost)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select

from farm_server.models import (
    ReportRow,
    ResultFileRow,
    ResultRow,
    SessionRow,
    TestRow,
    utcnow,
)
from farm_server.store.engine import COUNT_CAP, StoreBase, as_utc, capped_count
from farm_server.store.tokens import hash_token
from farm_worker.protocol import FINAL_STATE_VALUES

# the runs that have results to compare or to time: ended with their tests run
_ENDED_WITH_RESULTS = ("passed", "failed")


@dataclass(frozen=True)
class RunsFilter:
    states: Sequence[str] = ()
    version: str | None = None
    cpid: str | None = None
    guideline: str | None = None
    text: str | None = None  # in the id, the message or the worker


@dataclass(frozen=True)
class HistoryPoint:
    test_id: str
    created_at: dt.datetime
    cpid: str | None
    tempest_version: str
    status: str
    duration_s: float | None


class Pages(StoreBase):
    # ---- sessions -------------------------------------------------------------------------
    def create_session(self, user: str, ttl_s: int) -> tuple[str, str]:
        """A new sign-in: (the cookie's value, its CSRF token). Only the value's hash is
        stored; expired sessions are removed on the way."""
        value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with self.write() as s:
            s.execute(delete(SessionRow).where(SessionRow.expires_at < now))
            s.add(SessionRow(id_hash=hash_token(value), user=user, csrf=csrf, created_at=now,
                             expires_at=now + dt.timedelta(seconds=ttl_s)))
        return value, csrf

    def session_for(self, value: str) -> SessionRow | None:
        """The unexpired session of a cookie value, or None."""
        with self.read() as s:
            row = s.get(SessionRow, hash_token(value))
        if row is None or (as_utc(row.expires_at) or utcnow()) <= utcnow():
            return None
        return row

    def end_session(self, value: str) -> None:
        with self.write() as s:
            s.execute(delete(SessionRow).where(SessionRow.id_hash == hash_token(value)))

    # ---- the runs page --------------------------------------------------------------------
    def runs(self, f: RunsFilter, limit: int, offset: int,
             cap: int = COUNT_CAP) -> tuple[list[TestRow], int, bool]:
        """A page of runs, newest first; how many match (up to `cap`) and whether more."""
        query = select(TestRow)
        if f.states:
            query = query.where(TestRow.state.in_(list(f.states)))
        for column, value in ((TestRow.tempest_version, f.version), (TestRow.cpid, f.cpid),
                              (TestRow.guideline, f.guideline)):
            if value:
                query = query.where(column == value)
        if f.text:
            like = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace(
                "_", "\\_") + "%"
            query = query.where(or_(TestRow.id.like(like, escape="\\"),
                                    TestRow.message.like(like, escape="\\"),
                                    TestRow.worker.like(like, escape="\\")))
        with self.read() as s:
            total, capped = capped_count(s, query.with_only_columns(TestRow.id), cap)
            rows = list(s.scalars(query.order_by(TestRow.created_at.desc(), TestRow.id)
                                  .limit(limit).offset(offset)))
        return rows, total, capped

    def facets(self) -> dict[str, list[str]]:
        """The values the runs page's filters offer."""
        with self.read() as s:
            return {
                "version": sorted(v for v in s.scalars(
                    select(TestRow.tempest_version).distinct()) if v),
                "cpid": sorted(v for v in s.scalars(select(TestRow.cpid).distinct()) if v),
                "guideline": sorted(v for v in s.scalars(
                    select(TestRow.guideline).distinct()) if v),
            }

    # ---- live updates ---------------------------------------------------------------------
    def changed_since(self, since: dt.datetime, limit: int = 500) -> list[TestRow]:
        """The tests changed at or after `since`, oldest change first (the updated_at
        index)."""
        with self.read() as s:
            return list(s.scalars(select(TestRow).where(TestRow.updated_at >= since)
                                  .order_by(TestRow.updated_at).limit(limit)))

    def state_reports(self, test_id: str, after_id: int = 0, limit: int = 500
                      ) -> list[ReportRow]:
        """A test's history without the progress-only reports (a worker's progress carries
        no report id; its state reports do), oldest first."""
        with self.read() as s:
            return list(s.scalars(select(ReportRow).where(
                ReportRow.test_id == test_id, ReportRow.id > after_id,
                or_(ReportRow.source != "worker", ReportRow.report_id.is_not(None),
                    ReportRow.progress_json.is_(None)))
                .order_by(ReportRow.id).limit(limit)))

    def report_count(self, test_id: str) -> int:
        with self.read() as s:
            return int(s.scalar(select(func.count()).select_from(ReportRow).where(
                ReportRow.test_id == test_id)) or 0)

    # ---- a run's neighbours -----------------------------------------------------------------
    def eta_s(self, t: TestRow, runs: int = 5) -> float | None:
        """The mean duration of the last `runs` runs of the same selection (version, cloud,
        tests, dry run or not) that ran to the end; None without any."""
        with self.read() as s:
            rows = s.execute(select(TestRow.started_at, TestRow.finished_at).where(
                TestRow.tempest_version == t.tempest_version, TestRow.id != t.id,
                TestRow.cpid == t.cpid if t.cpid else TestRow.cpid.is_(None),
                TestRow.tests_json == t.tests_json, TestRow.dry_run == t.dry_run,
                TestRow.state.in_(_ENDED_WITH_RESULTS), TestRow.started_at.is_not(None),
                TestRow.finished_at.is_not(None))
                .order_by(TestRow.created_at.desc()).limit(runs)).all()
        spans = [((as_utc(b) or utcnow()) - (as_utc(a) or utcnow())).total_seconds()
                 for a, b in rows]
        return sum(spans) / len(spans) if spans else None

    def previous_run(self, t: TestRow) -> str | None:
        """The run before this one of the same cloud and Tempest version that has results."""
        with self.read() as s:
            return s.scalar(select(TestRow.id).where(
                TestRow.tempest_version == t.tempest_version,
                TestRow.cpid == t.cpid if t.cpid else TestRow.cpid.is_(None),
                TestRow.created_at < t.created_at, TestRow.dry_run.is_(False),
                TestRow.state.in_(_ENDED_WITH_RESULTS),
                select(ResultFileRow.test_id).where(
                    ResultFileRow.test_id == TestRow.id).exists())
                .order_by(TestRow.created_at.desc()).limit(1))

    def reruns(self, test_id: str) -> list[TestRow]:
        """The runs made from this one (run again, run the failed tests again)."""
        with self.read() as s:
            return list(s.scalars(select(TestRow).where(TestRow.origin_id == test_id)
                                  .order_by(TestRow.created_at)))

    # ---- a test's history -------------------------------------------------------------------
    def test_history(self, name: str, cpid: str | None = None, version: str | None = None,
                     limit: int = 500) -> list[HistoryPoint]:
        """A test (by its Tempest name) in every run that has it, newest first (the
        results' name index, then the runs by primary key)."""
        query = (select(ResultRow.test_id, TestRow.created_at, TestRow.cpid,
                        TestRow.tempest_version, ResultRow.status, ResultRow.duration_s)
                 .join(TestRow, and_(TestRow.id == ResultRow.test_id))
                 .where(ResultRow.name == name))
        if cpid:
            query = query.where(TestRow.cpid == cpid)
        if version:
            query = query.where(TestRow.tempest_version == version)
        with self.read() as s:
            rows = s.execute(query.order_by(TestRow.created_at.desc()).limit(limit)).all()
        return [HistoryPoint(r[0], as_utc(r[1]) or utcnow(), r[2], r[3], r[4], r[5])
                for r in rows]

    def result_rows(self, test_id: str) -> list[dict[str, Any]]:
        """A run's per-test rows as plain dicts (the compare and the pages)."""
        with self.read() as s:
            rows = s.execute(select(ResultRow.name, ResultRow.status, ResultRow.duration_s,
                                    ResultRow.detail).where(ResultRow.test_id == test_id)
                             .order_by(ResultRow.id)).all()
        return [{"name": r[0], "status": r[1], "duration_s": r[2], "detail": r[3]}
                for r in rows]


def is_final(state: str) -> bool:
    return state in FINAL_STATE_VALUES
