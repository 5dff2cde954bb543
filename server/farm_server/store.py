"""The status server's store: every SQL statement of the farm is in this module.

SQLite (one file, WAL, write transactions BEGIN IMMEDIATE so concurrent writers queue
instead of failing) by default, PostgreSQL by URL (the test row is locked FOR UPDATE
while a report is applied).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from farm_client.subunit_results import ParsedResults
from farm_server.exceptions import FarmServerError
from farm_server.lifecycle import Report, Verdict, decide
from farm_server.models import (
    BY_SERVER,
    PENDING,
    ReportRow,
    ResultFileRow,
    ResultRow,
    TestRow,
    UploadRow,
    UserRow,
    WorkerRow,
    utcnow,
)
from farm_worker.protocol import FINAL_STATE_VALUES, FINAL_STATES, TestState

TESTS: Table = TestRow.__table__  # type: ignore[assignment]
REPORTS: Table = ReportRow.__table__  # type: ignore[assignment]
WORKERS: Table = WorkerRow.__table__  # type: ignore[assignment]
# The statements of the hot path, built once (building them costs more than running them).
_MOVING = ("state", "message", "worker", "progress_done", "progress_total",
           "progress_current", "passed", "failed", "skipped", "updated_at", "started_at",
           "finished_at", "last_report_at")
_SELECT_TEST = (select(*(TESTS.c[name] for name in _MOVING))
                .where(TESTS.c.id == bindparam("tid")).with_for_update())
_INSERT_REPORT = insert(REPORTS)
_UPDATE_TEST = (update(TESTS).where(TESTS.c.id == bindparam("tid"))
                .values({name: bindparam(name) for name in _MOVING}))
_FORGET_CONF = update(TESTS).where(TESTS.c.id == bindparam("tid")).values(conf_json=None)
_FINAL = sorted(FINAL_STATE_VALUES)
TOKEN_CACHE_S = 30.0  # a new or removed worker token takes effect within this time


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
    worker: str | None = None  # who holds the test (told to a superseded worker)


class StoreError(FarmServerError):
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
        self._write_engine = self.engine.execution_options(sqlite_immediate=True)
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            _WriterQueue(Path(url[len("sqlite:///"):] + ".writers"))
            if url.startswith("sqlite:///") else contextlib.nullcontext())
        self._seen: dict[str, float] = {}
        self._tokens: dict[str, tuple[float, WorkerRow | None]] = {}
        self._scrubbed_up_to: dt.datetime | None = None  # forget_ended_secrets

    # ---- schema -------------------------------------------------------------------------------
    def _alembic(self) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location",
                            str(resources.files("farm_server") / "migrations"))
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
        with self._write_lock, self._writes() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def write_sql(self) -> Iterator[Connection]:
        """A write transaction without the ORM, for the hot path."""
        with self._write_lock, self._write_engine.begin() as conn:
            yield conn

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
        """The worker of a token; answers are kept for TOKEN_CACHE_S in this process (a
        worker reports several times a second)."""
        wanted = hash_token(token)
        cached = self._tokens.get(wanted)
        if cached is not None and time.monotonic() - cached[0] < TOKEN_CACHE_S:
            return cached[1]
        with self.read() as s:
            row = s.scalar(select(WorkerRow).where(WorkerRow.token_hash == wanted))
        row = row if row is not None and _same(row.token_hash, wanted) else None
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[wanted] = (time.monotonic(), row)
        return row

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
        """Insert the test, then queue its job: a worker may take the job at once and
        ask for the test's conf, so the test is committed before the job exists. If
        queueing fails, the test is removed again: nothing is stored. StoreError if the
        test id exists."""
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
            return list(s.scalars(select(TestRow).where(TestRow.state.not_in(_FINAL))))

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
              worker_name: str | None = None, fence: bool = True) -> Applied | None:
        """Record a report and move the test as the state machine says; None if no test.

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
            verdict = decide(current, shown, report, source, fence)
            if verdict is Verdict.DUPLICATE:
                return Applied(verdict, current, row.worker)
            now = utcnow()
            conn.execute(_INSERT_REPORT, {
                "test_id": test_id, "at": now, "source": source, "worker": report.worker,
                "state": report.state.value, "message": report.message,
                "progress_json": json.dumps(progress) if progress else None,
                "payload_json": json.dumps(payload) if payload is not None else None,
                "applied": verdict is Verdict.APPLY})
            values = dict(row._mapping)
            if source == "worker" and verdict is not Verdict.SUPERSEDED:
                values["last_report_at"] = now
            if verdict is Verdict.APPLY:
                values.update(_moved(report, progress, now, row.started_at is None))
                current = report.state
            conn.execute(_UPDATE_TEST, {"tid": test_id, **values})
            if verdict is Verdict.APPLY and current in FINAL_STATES:
                conn.execute(_FORGET_CONF, {"tid": test_id})  # its cloud's passwords
            if worker_name and self._seen_long_ago(worker_name):
                conn.execute(update(WORKERS).where(WORKERS.c.name == worker_name)
                             .values(last_seen_at=now))
            return Applied(verdict, current, values.get("worker"))

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
        with self.write() as s:
            test = s.get(TestRow, test_id)
            if test is not None:
                test.gearman_server, test.gearman_handle = server, handle

    def set_cancel_job(self, test_id: str, server: str | None, handle: str | None) -> None:
        with self.write() as s:
            test = s.get(TestRow, test_id)
            if test is not None:
                test.cancel_server, test.cancel_handle = server, handle

    # ---- results ------------------------------------------------------------------------------
    def store_results(self, test_id: str, parsed: ParsedResults, data: bytes,
                      cpid: str | None = None) -> bool:
        """Replace the test's results (an upload retried is stored once); False if no test.
        The worker's `cpid` is kept unless one was given at submit."""
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
            if cpid and not test.cpid:
                test.cpid = cpid
            test.total = max(test.total or 0, len(parsed.tests))
            test.updated_at = utcnow()
        return True

    def results(self, test_id: str) -> tuple[list[ResultRow], ResultFileRow | None]:
        with self.read() as s:
            rows = list(s.scalars(select(ResultRow).where(ResultRow.test_id == test_id)
                                  .order_by(ResultRow.id)))
            return rows, s.get(ResultFileRow, test_id)


    # ---- uploads to RefStack -------------------------------------------------------------------
    def uploads(self, test_id: str) -> list[UploadRow]:
        with self.read() as s:
            return list(s.scalars(select(UploadRow).where(UploadRow.test_id == test_id)
                                  .order_by(UploadRow.id)))

    def add_upload(self, row: UploadRow) -> UploadRow | None:
        """Record an upload; None when the test does not exist."""
        with self.write() as s:
            if s.get(TestRow, row.test_id) is None:
                return None
            s.add(row)
            s.flush()
            s.expunge(row)
        return row

    def add_automatic_upload(self, test_id: str, target: str,
                             signed_by: str | None) -> UploadRow | None:
        """Queue the server's own upload of a test to `target`, once ever: None when it is
        queued already or the test is gone. The test's row is locked first, so uploaders of
        two servers sharing one PostgreSQL cannot both queue it (SQLite writers queue on
        their lock anyway)."""
        with self.write() as s:
            if s.scalar(select(TestRow.id).where(TestRow.id == test_id)
                        .with_for_update()) is None:
                return None
            if s.scalar(select(UploadRow.id).where(
                    UploadRow.test_id == test_id, UploadRow.target == target,
                    UploadRow.source == BY_SERVER)) is not None:
                return None
            row = UploadRow(test_id=test_id, target=target, source=BY_SERVER, state=PENDING,
                            attempts=0, signed_by=signed_by, message="")
            s.add(row)
            s.flush()
            s.expunge(row)
        return row

    def claim_upload(self, row: UploadRow, now: dt.datetime, until: dt.datetime) -> bool:
        """Take a due upload for one attempt. Of uploaders that read the same row, exactly
        one gets True: its update finds the row still pending, due and at the attempt it
        read, and moves it out of reach until `until`, when it is due again should that
        uploader die before recording the outcome."""
        with self.write() as s:
            done = s.execute(
                update(UploadRow).where(
                    UploadRow.id == row.id, UploadRow.state == PENDING,
                    UploadRow.attempts == row.attempts,
                    UploadRow.next_at.is_(None) | (UploadRow.next_at <= now))
                .values(next_at=until, updated_at=utcnow())
                .execution_options(synchronize_session=False))
            return cast(CursorResult[Any], done).rowcount == 1

    def update_upload(self, upload_id: int, **values: Any) -> None:
        with self.write() as s:
            s.execute(update(UploadRow).where(UploadRow.id == upload_id)
                      .values(updated_at=utcnow(), **values))

    def upload_candidates(self, states: list[str]) -> list[TestRow]:
        """Tests to upload automatically: a target, ended in `states`, results stored, and
        no automatic upload to that target yet."""
        done = select(UploadRow.id).where(UploadRow.test_id == TestRow.id,
                                          UploadRow.target == TestRow.upload_to,
                                          UploadRow.source == BY_SERVER)
        with self.read() as s:
            return list(s.scalars(select(TestRow).join(
                ResultFileRow, ResultFileRow.test_id == TestRow.id).where(
                TestRow.upload_to.is_not(None), TestRow.state.in_(states),
                ~done.exists())))

    def due_uploads(self, now: dt.datetime) -> list[UploadRow]:
        with self.read() as s:
            return list(s.scalars(select(UploadRow).where(
                UploadRow.state == PENDING,
                (UploadRow.next_at.is_(None)) | (UploadRow.next_at <= now))
                .order_by(UploadRow.id)))


class _WriterQueue:
    """SQLite has one writer at a time. Its busy handler makes the others retry with sleeps
    of up to 100 ms, which is what a p99 latency then shows. Writers of every process
    queue on a flock instead (the kernel wakes the next one at once); threads of one
    process first queue on a lock, as they share the file description the flock is on."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._threads = threading.Lock()

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


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
    if progress:
        values.update(progress_done=progress.get("done"), progress_total=progress.get("total"),
                      progress_current=progress.get("current"))
        values.update({k: progress[k] for k in ("passed", "failed", "skipped")
                       if isinstance(progress.get(k), int)})
    if state in FINAL_STATES:
        values["finished_at"] = now
    return values


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by pysqlite
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, no fsync/commit
        cur.execute("PRAGMA foreign_keys=ON")
        # freed space is zeroed: a test's dropped configuration leaves no password behind
        cur.execute("PRAGMA secure_delete=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        # checkpoint every ~40 MB of WAL, not every 4 MB: the hot pages (a running test's
        # row) are rewritten by every report and are copied back once per checkpoint
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
