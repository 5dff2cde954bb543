"""Testing hosts and API users, and their tokens (stored as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from sqlalchemy import (
    Table,
    select,
)

from farm_server.models import (
    UserRow,
    WorkerRow,
)
from farm_server.store.engine import StoreBase, StoreError

WORKERS: Table = WorkerRow.__table__  # type: ignore[assignment]
USERS: Table = UserRow.__table__  # type: ignore[assignment]


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings: a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def _same(stored: str, wanted: str) -> bool:
    """The lookup is by hash; compare again in constant time before trusting the row."""
    return hmac.compare_digest(stored, wanted)


def new_token() -> str:
    return secrets.token_urlsafe(32)



class Tokens(StoreBase):
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

    def _holder_of(self, table: Table, token: str) -> dict[str, Any] | None:
        """The row of `table` holding a token: one indexed Core query, read on every call
        (a revoked or rotated token is refused at once, by every server process)."""
        wanted = hash_token(token)
        with self.engine.connect() as conn:
            found = conn.execute(select(table).where(table.c.token_hash == wanted)).first()
        if found is None or not _same(found.token_hash, wanted):
            return None
        return dict(found._mapping)

    def worker_for(self, token: str) -> WorkerRow | None:
        """The worker of a token (a worker reports several times a second: no ORM)."""
        found = self._holder_of(WORKERS, token)
        return None if found is None else WorkerRow(**found)

    def user_for(self, token: str) -> UserRow | None:
        found = self._holder_of(USERS, token)
        return None if found is None else UserRow(**found)

    def workers(self) -> list[WorkerRow]:
        with self.read() as s:
            return list(s.scalars(select(WorkerRow).order_by(WorkerRow.name)))

    def users(self) -> list[UserRow]:
        with self.read() as s:
            return list(s.scalars(select(UserRow).order_by(UserRow.name)))

    def _holder(self, kind: str) -> type[UserRow] | type[WorkerRow]:
        if kind not in ("user", "worker"):
            raise StoreError(f"{kind!r} is not user or worker")
        return UserRow if kind == "user" else WorkerRow

    def revoke(self, kind: str, name: str) -> None:
        """Remove a user or a worker: its token is refused at once; its tests keep their
        history."""
        row_type = self._holder(kind)
        with self.write() as s:
            row = s.scalar(select(row_type).where(row_type.name == name))
            if row is None:
                raise StoreError(f"no {kind} {name!r}")
            s.delete(row)

    def rotate(self, kind: str, name: str) -> str:
        """A new token for a user or a worker; the old one is refused from now on."""
        row_type = self._holder(kind)
        token = new_token()
        with self.write() as s:
            row = s.scalar(select(row_type).where(row_type.name == name))
            if row is None:
                raise StoreError(f"no {kind} {name!r}")
            row.token_hash = hash_token(token)  # type: ignore[attr-defined]
        return token
