"""The status server's store: every SQL statement of the farm is in this module.

SQLite (one file, WAL, write transactions BEGIN IMMEDIATE so concurrent writers queue
instead of failing) by default, PostgreSQL by URL (the test row is locked FOR UPDATE
while a report is applied).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, delete, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from farm_client.exceptions import FarmClientError
from farm_client.lifecycle import Report, Verdict, decide
from farm_client.models import (
    ReportRow,
    ResultFileRow,
    ResultRow,
    TestRow,
    UserRow,
    WorkerRow,
    utcnow,
)
from farm_client.subunit_results import ParsedResults
from farm_worker.protocol import FINAL_STATES, TestState


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings: a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def _same(stored: str, wanted: str) -> bool:
    """The lookup is by hash; compare again in constant time before trusting the row."""
    return hmac.compare_digest(stored, wanted)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Applied:
    verdict: Verdict
    state: TestState


class StoreError(FarmClientError):
    """The store refused a change (a name or test id that exists already)."""


class Store:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(self.engine.execution_options(sqlite_immediate=True),
                                    expire_on_commit=False)

    # ---- schema -------------------------------------------------------------------------------
    def _alembic(self) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location",
                            str(resources.files("farm_client") / "migrations"))
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Create or upgrade the schema; data is kept (Alembic migrations)."""
        cfg = self._alembic()
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def head(self) -> str:
        """The newest revision the migrations know."""
        from alembic.script import ScriptDirectory

        return str(ScriptDirectory.from_config(self._alembic()).get_current_head())

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
            return str(rev) if rev else None

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        with self._writes() as session, session.begin():
            yield session

    # ---- workers and users --------------------------------------------------------------------
    def add_worker(self, name: str, allow: list[str]) -> str:
        token = new_token()
        with self.write() as s:
            if s.scalar(select(WorkerRow).where(WorkerRow.name == name)) is not None:
                raise StoreError(f"worker {name!r} exists already")
            s.add(WorkerRow(name=name, token_hash=hash_token(token),
                            allow_json=json.dumps(allow)))
        return token

    def add_user(self, name: str) -> str:
        token = new_token()
        with self.write() as s:
            if s.scalar(select(UserRow).where(UserRow.name == name)) is not None:
                raise StoreError(f"user {name!r} exists already")
            s.add(UserRow(name=name, token_hash=hash_token(token)))
        return token

    def worker_for(self, token: str) -> WorkerRow | None:
        wanted = hash_token(token)
        with self.read() as s:
            row = s.scalar(select(WorkerRow).where(WorkerRow.token_hash == wanted))
        return row if row is not None and _same(row.token_hash, wanted) else None

    def user_for(self, token: str) -> UserRow | None:
        wanted = hash_token(token)
        with self.read() as s:
            row = s.scalar(select(UserRow).where(UserRow.token_hash == wanted))
        return row if row is not None and _same(row.token_hash, wanted) else None

    def workers(self) -> list[WorkerRow]:
        with self.read() as s:
            return list(s.scalars(select(WorkerRow).order_by(WorkerRow.name)))

    # ---- tests --------------------------------------------------------------------------------
    def create_test(self, row: TestRow, submit: Callable[[], tuple[str, str]],
                    user: str | None) -> TestRow:
        """Insert the test and queue its job in one transaction: if queueing fails,
        nothing is stored. StoreError if the test id exists."""
        with self.write() as s:
            if s.get(TestRow, row.id) is not None:
                raise StoreError(f"test {row.id!r} exists already")
            now = utcnow()
            row.created_at = row.updated_at = now
            row.submitted_by = user
            s.add(row)
            s.flush()  # the row first: no ORM relationship orders the two inserts
            s.add(ReportRow(test_id=row.id, at=now, source="api", worker=None,
                            state=row.state, message=row.message, applied=True))
            s.flush()
            row.gearman_server, row.gearman_handle = submit()
        return row

    def get(self, test_id: str) -> TestRow | None:
        with self.read() as s:
            return s.get(TestRow, test_id)

    def find(self, *, states: list[str] | None = None, version: str | None = None,
             limit: int = 50, offset: int = 0) -> tuple[list[TestRow], int]:
        query = select(TestRow)
        if states:
            query = query.where(TestRow.state.in_(states))
        if version:
            query = query.where(TestRow.tempest_version == version)
        with self.read() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(s.scalars(query.order_by(TestRow.created_at.desc(), TestRow.id)
                                  .limit(limit).offset(offset)))
        return rows, int(total)

    def history(self, test_id: str) -> list[ReportRow]:
        with self.read() as s:
            return list(s.scalars(select(ReportRow).where(ReportRow.test_id == test_id)
                                  .order_by(ReportRow.id)))

    def count_reports(self, test_id: str, source: str, message_prefix: str) -> int:
        with self.read() as s:
            return int(s.scalar(select(func.count()).select_from(ReportRow).where(
                ReportRow.test_id == test_id, ReportRow.source == source,
                ReportRow.message.startswith(message_prefix))) or 0)

    def active(self) -> list[TestRow]:
        """Tests not in a final state (for the monitor)."""
        with self.read() as s:
            return list(s.scalars(select(TestRow).where(
                TestRow.state.not_in([f.value for f in FINAL_STATES]))))

    def apply(self, test_id: str, report: Report, *, source: str,
              progress: dict[str, Any] | None = None, payload: Any = None,
              worker_name: str | None = None) -> Applied | None:
        """Record a report and move the test as the state machine says; None if no test."""
        with self.write() as s:
            test = s.scalar(select(TestRow).where(TestRow.id == test_id).with_for_update())
            if test is None:
                return None
            last_row = s.scalar(select(ReportRow).where(ReportRow.test_id == test_id)
                                .order_by(ReportRow.id.desc()).limit(1))
            last = None
            if last_row is not None:
                p = json.loads(last_row.progress_json) if last_row.progress_json else {}
                last = Report(TestState(last_row.state), last_row.message, last_row.worker,
                              (p.get("done"), p.get("total"), p.get("current")))
            verdict = decide(TestState(test.state), last, report, source)
            if verdict is Verdict.DUPLICATE:
                return Applied(verdict, TestState(test.state))
            now = utcnow()
            s.add(ReportRow(test_id=test_id, at=now, source=source, worker=report.worker,
                            state=report.state.value, message=report.message,
                            progress_json=json.dumps(progress) if progress else None,
                            payload_json=json.dumps(payload) if payload is not None else None,
                            applied=verdict is Verdict.APPLY))
            if source == "worker":
                test.last_report_at = now
            if verdict is Verdict.APPLY:
                self._move(test, report, progress, now)
            if worker_name:
                s.execute(update(WorkerRow).where(WorkerRow.name == worker_name)
                          .values(last_seen_at=now))
            return Applied(verdict, TestState(test.state))

    @staticmethod
    def _move(test: TestRow, report: Report, progress: dict[str, Any] | None,
              now: dt.datetime) -> None:
        state = report.state
        if state is TestState.INSTALLING or (state is TestState.RUNNING and not test.started_at):
            test.started_at = now
        test.state = state.value
        test.message = report.message
        test.updated_at = now
        if report.worker:
            test.worker = report.worker
        if progress:
            test.progress_done = progress.get("done")
            test.progress_total = progress.get("total")
            test.progress_current = progress.get("current")
            for key in ("passed", "failed", "skipped"):
                if isinstance(progress.get(key), int):
                    setattr(test, key, progress[key])
        if state in FINAL_STATES:
            test.finished_at = now

    def leftover_cancel_jobs(self, final_states: list[str]) -> list[TestRow]:
        """Final tests whose cancel job may still wait in gearmand."""
        with self.read() as s:
            return list(s.scalars(select(TestRow).where(TestRow.state.in_(final_states),
                                                        TestRow.cancel_handle.is_not(None))))

    def set_job(self, test_id: str, server: str, handle: str) -> None:
        with self.write() as s:
            test = s.get(TestRow, test_id)
            if test is not None:
                test.gearman_server, test.gearman_handle = server, handle

    def set_cancel_job(self, test_id: str, server: str | None, handle: str | None) -> None:
        with self.write() as s:
            test = s.get(TestRow, test_id)
            if test is not None:
                test.cancel_server, test.cancel_handle = server, handle

    def conf(self, test_id: str) -> Any:
        test = self.get(test_id)
        return None if test is None or test.conf_json is None else json.loads(test.conf_json)

    # ---- results ------------------------------------------------------------------------------
    def store_results(self, test_id: str, parsed: ParsedResults, data: bytes) -> bool:
        """Replace the test's results (an upload retried is stored once); False if no test."""
        with self.write() as s:
            test = s.scalar(select(TestRow).where(TestRow.id == test_id).with_for_update())
            if test is None:
                return False
            s.execute(delete(ResultRow).where(ResultRow.test_id == test_id))
            s.execute(delete(ResultFileRow).where(ResultFileRow.test_id == test_id))
            s.add_all(ResultRow(test_id=test_id, name=t.name, status=t.status,
                                duration_s=t.duration_s, detail=t.detail)
                      for t in parsed.tests)
            s.add(ResultFileRow(test_id=test_id, data=data, size=len(data)))
            test.passed, test.failed, test.skipped = parsed.passed, parsed.failed, parsed.skipped
            test.total = max(test.total or 0, len(parsed.tests))
            test.updated_at = utcnow()
        return True

    def results(self, test_id: str) -> tuple[list[ResultRow], ResultFileRow | None]:
        with self.read() as s:
            rows = list(s.scalars(select(ResultRow).where(ResultRow.test_id == test_id)
                                  .order_by(ResultRow.id)))
            return rows, s.get(ResultFileRow, test_id)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by pysqlite
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, no fsync/commit
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
