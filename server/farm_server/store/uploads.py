"""Uploads to RefStack: recorded, queued once, claimed by one uploader at a time."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    select,
    update,
)

from farm_server.models import (
    BY_SERVER,
    PENDING,
    ResultFileRow,
    TestRow,
    UploadRow,
    utcnow,
)
from farm_server.store.engine import StoreBase


class Uploads(StoreBase):
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
