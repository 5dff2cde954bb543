"""The store's engine: SQLite (one file, WAL, write transactions BEGIN IMMEDIATE so
concurrent writers queue instead of failing) by default, PostgreSQL by URL; the schema
(Alembic migrations) and the read and write transactions every concept uses."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from farm_server.exceptions import FarmServerError


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)



COUNT_CAP = 10_000  # how far a page's "how many match" counts (capped_count)


def capped_count(session: Session, query: Select[Any], cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows `query` (select one narrow column) matches, counted up to `cap`: (the
    count, False) below it, (`cap`, True) beyond. An exact count reads every matching row;
    on PostgreSQL that is a scan of the table, whose time grows with the store
    (bench/growth.py: a page of 50 runs took 1.8x as long with 100,000 runs stored); this
    reads at most `cap` + 1 (1.3 ms for 10,001 ids; 3.9 ms for whole rows)."""
    counted = session.scalar(select(func.count()).select_from(
        query.limit(cap + 1).subquery())) or 0
    return min(int(counted), cap), counted > cap


class StoreError(FarmServerError):
    """The store refused a change (a name or test id that exists already)."""



class StoreBase:
    """The engine, the schema and the transactions; the concepts add their queries."""

    def __init__(self, url: str):
        self.url = url
        path = sqlite_path(url)
        if path is not None:
            prepare_sqlite_file(path)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(sqlite_immediate=True)
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            _WriterQueue(Path(f"{path}.writers"))
            if path is not None else contextlib.nullcontext())
        self._seen: dict[str, float] = {}
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


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or SQLite in memory."""
    if not url.startswith("sqlite:///"):
        return None
    name = url[len("sqlite:///"):].split("?", 1)[0]
    return None if name in ("", ":memory:") else Path(name)


def prepare_sqlite_file(path: Path) -> None:
    """The database holds cloud passwords while their tests run: the file is created
    0600 before SQLite opens it (SQLite gives its -wal and -shm files the database
    file's mode), one that others can read is tightened, and a directory that does not
    exist is refused rather than made with whatever mode the umask gives."""
    if not path.parent.is_dir():
        raise StoreError(f"database_url: the directory {path.parent} does not exist; "
                         "create it (mode 0700, owned by the server's user) or choose "
                         "another path")
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o600) if name == path \
                else os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            continue  # no -wal or -shm yet: SQLite makes them with the file's mode
        except OSError as exc:
            raise StoreError(f"database_url: {name}: {exc.strerror}") from None
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except OSError as exc:
            raise StoreError(f"database_url: {name} can be read by others and cannot be "
                             f"made 0600: {exc.strerror}") from None
        finally:
            os.close(fd)


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
