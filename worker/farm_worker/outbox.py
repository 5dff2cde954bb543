"""The worker's outbox: what it owes the status server, on disk, so that nothing is lost
when the server is away for hours or the worker process is restarted or killed.

One directory per worker id (0700), one file per entry (0600): `<seq>.<test_id>.json`,
and for a result upload the subunit stream beside it (`<seq>.<test_id>.subunit`, a hard
link to the result file where the file system allows, else a copy). `seq` grows with
time (microseconds, never repeating), so the names sort in the order the entries were
made, and a test's entries are delivered in that order. An entry is written to a
temporary name, fsynced, renamed and its directory fsynced before anyone counts it as
owed; delivered, it is removed. An entry never holds a token or a cloud password: the
token is the worker's at send time (reporting.Courier).

A file that cannot be read back as an entry (power lost while it was written by an older
version, a truncated copy, a missing subunit file) is moved to `set-aside/` with a note
saying why, and delivery goes on; so is an entry the server refuses (400) or one older
than `outbox_keep_s`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm_worker.exceptions import FarmError

log = logging.getLogger(__name__)

FORMAT = 1
SET_ASIDE = "set-aside"
LOCK = ".lock"
_NAME = re.compile(r"^(\d{20})\.([A-Za-z0-9._-]{1,64})\.json$")
STATUS, UPLOAD = "status", "upload"


class OutboxBusy(FarmError):
    """Another process delivers this outbox (a worker running with the same worker id)."""


@dataclass(frozen=True)
class Entry:
    """One report or upload owed to a callback server."""

    seq: int
    test_id: str
    kind: str  # STATUS or UPLOAD
    url: str  # the callback server's base URL
    created: float  # epoch seconds
    body: dict[str, Any]  # STATUS: the report as sent; UPLOAD: {"worker", "cpid"}
    path: Path
    size: int  # bytes on disk, the subunit file included

    @property
    def data(self) -> Path:
        """An upload's subunit stream."""
        return self.path.with_suffix(".subunit")

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.created

    def describe(self) -> str:
        what = self.body.get("status", "?") if self.kind == STATUS else "results"
        return f"{self.kind} {what} of test {self.test_id} to {self.url}"

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "test_id": self.test_id, "kind": self.kind,
                "state": self.body.get("status") if self.kind == STATUS else None,
                "url": self.url, "created": self.created, "age_s": round(self.age_s(), 1),
                "bytes": self.size, "file": str(self.path)}


class BadEntry(Exception):
    """A file in the outbox that is not a readable entry."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """`data` at `path`, whole or not at all: a temporary file, fsynced, renamed."""
    tmp = path.with_name(f".tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_entry(path: Path) -> Entry:
    """The entry in `path`; BadEntry says why it is not one."""
    m = _NAME.match(path.name)
    if not m:
        raise BadEntry("not an entry's name")
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BadEntry(f"unreadable ({exc.__class__.__name__}: {exc})") from None
    try:
        if doc["format"] != FORMAT or doc["kind"] not in (STATUS, UPLOAD):
            raise BadEntry(f"format {doc['format']!r} kind {doc['kind']!r} not known")
        entry = Entry(int(m.group(1)), m.group(2), doc["kind"], str(doc["url"]),
                      float(doc["created"]), dict(doc["body"]), path, path.stat().st_size)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadEntry(f"incomplete: {exc.__class__.__name__} {exc}") from None
    if entry.kind == UPLOAD:
        try:
            extra = entry.data.stat().st_size
        except OSError:
            raise BadEntry(f"its subunit file {entry.data.name} is missing") from None
        entry = dataclasses.replace(entry, size=entry.size + extra)
    return entry


class Outbox:
    """One worker id's outbox directory."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)
        self._lock = threading.Lock()
        names = [_NAME.match(p.name) for p in root.iterdir()]
        self._seq = max((int(m.group(1)) for m in names if m), default=0)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"Outbox({str(self.root)!r})"

    # ---- ownership ---------------------------------------------------------------------
    def claim(self) -> None:
        """Hold the outbox for this process (released when it exits): one deliverer."""
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutboxBusy(f"outbox {self.root} is delivered by another process "
                             f"(pid {holder}): one worker id, one process") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover(self) -> list[Path]:
        """At start, before any entry is added: remove what a process killed while writing
        left (temporary files, a subunit file whose entry was never written or was
        delivered); the files removed."""
        entries = {p.stem for p in self.root.glob("*.json")}
        removed = []
        for path in self.root.iterdir():
            if path.name.startswith(".tmp-") or (path.suffix == ".subunit"
                                                  and path.stem not in entries):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    # ---- adding ------------------------------------------------------------------------
    def _next(self) -> int:
        with self._lock:
            self._seq = max(self._seq + 1, time.time_ns() // 1000)
            return self._seq

    def add_status(self, test_id: str, url: str, body: dict[str, Any]) -> Entry:
        """A status report, durably; its body gains `report_id` (<worker>:<seq>)."""
        seq = self._next()
        body = {**body, "report_id": f"{body.get('worker') or 'worker'}:{seq}"}
        return self._add(seq, test_id, STATUS, url, body)

    def add_upload(self, test_id: str, url: str, subunit: Path, worker: str,
                   cpid: str | None) -> Entry:
        """A result upload, durably: the subunit stream is linked (or copied) beside it."""
        seq = self._next()
        data = self.root / f"{seq:020d}.{test_id}.subunit"
        try:
            os.link(subunit, data)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(subunit, data)
            with data.open("rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(data, 0o600)
        return self._add(seq, test_id, UPLOAD, url, {"worker": worker, "cpid": cpid})

    def _add(self, seq: int, test_id: str, kind: str, url: str,
             body: dict[str, Any]) -> Entry:
        path = self.root / f"{seq:020d}.{test_id}.json"
        doc = {"format": FORMAT, "kind": kind, "url": url, "created": time.time(),
               "body": body}
        _write_durably(path, json.dumps(doc).encode())
        _fsync_dir(self.root)
        return read_entry(path)

    # ---- reading and removing ----------------------------------------------------------
    def paths(self) -> list[Path]:
        return sorted(self.root.glob("*.json"))

    def entries(self) -> Iterator[Entry | tuple[Path, str]]:
        """Each entry in order; a file that is not one as (path, why)."""
        for path in self.paths():
            try:
                yield read_entry(path)
            except BadEntry as exc:
                yield path, str(exc)

    def remove(self, entry: Entry) -> None:
        """Delivered: the entry first (it is no longer owed), then its subunit file."""
        entry.path.unlink(missing_ok=True)
        if entry.kind == UPLOAD:
            entry.data.unlink(missing_ok=True)

    def set_aside(self, path: Path, why: str) -> Path:
        """Out of the way of delivery, kept for a person to look at, with why."""
        aside = self.root / SET_ASIDE
        aside.mkdir(mode=0o700, exist_ok=True)
        for part in (path, path.with_suffix(".subunit")):
            with contextlib.suppress(FileNotFoundError):
                os.replace(part, aside / part.name)
        (aside / f"{path.stem}.why").write_text(why + "\n", encoding="utf-8")
        log.error("outbox: %s set aside in %s: %s", path.name, aside, why)
        return aside / path.name

    def drop(self, test_id: str) -> int:
        """Remove every entry of a test (a person decided it is not owed); how many."""
        dropped = 0
        for path in self.paths():
            m = _NAME.match(path.name)
            if m and m.group(2) == test_id:
                path.unlink(missing_ok=True)
                path.with_suffix(".subunit").unlink(missing_ok=True)
                dropped += 1
        return dropped

    def remove_dir(self) -> None:
        """The outbox of one process (`execute` beside a worker) that owes nothing: gone."""
        if self.size()[0] == 0 and not (self.root / SET_ASIDE).exists():
            self.release()
            shutil.rmtree(self.root, ignore_errors=True)

    def size(self) -> tuple[int, int]:
        """(entries, bytes) owed, set-aside files not counted."""
        count = total = 0
        for path in self.root.iterdir():
            if path.suffix in (".json", ".subunit") and not path.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    total += path.stat().st_size
                count += path.suffix == ".json"
        return count, total


def outboxes(parent: Path) -> list[Outbox]:
    """The outbox of every worker id under `parent` (a host's slots)."""
    if not parent.is_dir():
        return []
    return [Outbox(p) for p in sorted(parent.iterdir()) if p.is_dir() and p.name != SET_ASIDE]
