"""The status server's tables (SQLAlchemy 2 ORM). Migrations in farm_client/migrations
create and upgrade them; a test checks that both agree."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class TestRow(Base):
    """One test run: its request, its current state and progress, its summary."""

    __tablename__ = "tests"
    __test__ = False  # not a pytest test class

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    tempest_version: Mapped[str] = mapped_column(String(32), index=True)
    conf_json: Mapped[str | None] = mapped_column(Text)  # cloud passwords: never listed
    tests_json: Mapped[str | None] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout_s: Mapped[int | None] = mapped_column(Integer)
    submitted_by: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    progress_done: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    progress_current: Mapped[str | None] = mapped_column(Text)
    passed: Mapped[int | None] = mapped_column(Integer)
    failed: Mapped[int | None] = mapped_column(Integer)
    skipped: Mapped[int | None] = mapped_column(Integer)
    total: Mapped[int | None] = mapped_column(Integer)
    gearman_server: Mapped[str | None] = mapped_column(String(128))
    gearman_handle: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                    index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                    index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_report_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # added by migration 0002
    cancel_server: Mapped[str | None] = mapped_column(String(128))
    cancel_handle: Mapped[str | None] = mapped_column(String(128))
    # added by migration 0003: the cloud's RefStack id (given at submit, else the worker's
    # discovery) and the RefStack API the results go to when the run ends passed or failed
    cpid: Mapped[str | None] = mapped_column(String(64), index=True)
    upload_to: Mapped[str | None] = mapped_column(Text)
    # added by migration 0004: class and module fixtures that failed or skipped
    classes_failed: Mapped[int | None] = mapped_column(Integer)
    classes_skipped: Mapped[int | None] = mapped_column(Integer)
    # added by migration 0005: an interop guideline run (version, target, statuses as
    # "required,advisory"), its guideline block, and the worker's final selection report
    # (what the test list matched) and compliance report
    guideline: Mapped[str | None] = mapped_column(String(64), index=True)
    guideline_target: Mapped[str | None] = mapped_column(String(64))
    guideline_types: Mapped[str | None] = mapped_column(String(128))
    guideline_json: Mapped[str | None] = mapped_column(Text)
    selection_json: Mapped[str | None] = mapped_column(Text)
    compliance_json: Mapped[str | None] = mapped_column(Text)
    # added by migration 0006: pre-provisioned accounts (passwords): dropped with the conf
    accounts_json: Mapped[str | None] = mapped_column(Text)
    # added by migration 0007: the conf discovery's options (a discovery run), and the
    # tempest.conf the run used, without its secrets
    discover_json: Mapped[str | None] = mapped_column(Text)
    tempest_conf_json: Mapped[str | None] = mapped_column(Text)
    # added by migration 0009: the run this one runs again (all or its failed tests), and
    # its request without secrets (the conf's secret values removed, no accounts): what
    # "run again" repeats once the run has ended and its secrets are gone
    origin_id: Mapped[str | None] = mapped_column(String(64))
    rerun_json: Mapped[str | None] = mapped_column(Text)


class ReportRow(Base):
    """Every status report, kept as history, whether or not it changed the state."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    test_id: Mapped[str] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"),
                                         index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    source: Mapped[str] = mapped_column(String(16))  # worker, api, monitor
    worker: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    progress_json: Mapped[str | None] = mapped_column(Text)
    payload_json: Mapped[str | None] = mapped_column(Text)
    applied: Mapped[bool] = mapped_column(Boolean, default=True)
    # added by migration 0008: the worker's id of the report, unique per test (a report
    # delivered again is recorded once)
    report_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_reports_report_id", "test_id", "report_id", unique=True),)


class WorkerRow(Base):
    """A known testing host: its token (hashed) and the networks it may report from."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    allow_json: Mapped[str] = mapped_column(Text, default="[]")  # CIDRs; empty: anywhere
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class UserRow(Base):
    """A person or tool using the JSON API."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SessionRow(Base):
    """A dashboard sign-in (migration 0009): the cookie's value hashed, its CSRF token."""

    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class ResultRow(Base):
    """One test of an uploaded subunit stream (migration 0002)."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    test_id: Mapped[str] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"),
                                         index=True)
    name: Mapped[str] = mapped_column(Text, index=True)
    status: Mapped[str] = mapped_column(String(16))
    duration_s: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(Text, default="")


class ResultFileRow(Base):
    """The uploaded subunit stream itself (migration 0002)."""

    __tablename__ = "result_files"

    test_id: Mapped[str] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"),
                                         primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    uploaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # added by migration 0008: an upload of the same bytes again is answered as such
    sha256: Mapped[str | None] = mapped_column(String(64))


# UploadRow.state and UploadRow.source values
UPLOADED, PENDING, FAILED = "uploaded", "pending", "failed"
BY_SERVER, BY_CLIENT = "server", "client"


class UploadRow(Base):
    """One upload of a test's results to a RefStack server (migration 0003): automatic
    (source `server`) or recorded by `farm results --upload` (source `client`)."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    test_id: Mapped[str] = mapped_column(ForeignKey("tests.id", ondelete="CASCADE"),
                                         index=True)
    target: Mapped[str] = mapped_column(Text)  # the RefStack API address
    source: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending, uploaded, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    signed_by: Mapped[str | None] = mapped_column(Text)  # the public key's SHA256 fingerprint
    result_id: Mapped[str | None] = mapped_column(String(64))
    result_url: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text, default="")
    next_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
