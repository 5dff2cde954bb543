"""Live pages by Server-Sent Events, at a cost that does not grow with the pages open.

The serving model (docs/dashboard.md#live-updates-and-the-serving-model): gunicorn's
gthread workers, where an open stream holds a thread, not a process. In each process one
`Hub` thread asks the store every `live_interval_s` for the runs changed lately (one query
on the `updated_at` index, whatever the number of pages) and wakes the streams; a stream
only filters and writes. At most `live_streams` threads of a process hold streams: the
others always serve the workers' reports and the API. A stream lasts `STREAM_S` and the
browser reconnects with `Last-Event-ID`, so a stream never outlives a deploy for long.

Events: `test` (a run's view, id = its change's time in microseconds), `report` (a run's
new status report, on a run's stream), `end` (the run reached a final state; the stream
closes). A stream resumed with `Last-Event-ID` (or `since`) first sends what changed after
it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from farm_server.api.v1 import report_view
from farm_server.models import TestRow
from farm_server.store import Store, as_utc
from farm_server.store.pages import is_final

log = logging.getLogger(__name__)
STREAM_S = 60.0  # a stream ends after this; the browser reconnects at once
KEEPALIVE_S = 10.0
WINDOW_S = 5.0  # changes are looked for this far back (commits land out of order)
_KEEP = 2000  # changes a hub remembers for its streams
# set when the process is told to stop: every stream ends within a second (a deploy does
# not wait for open pages; they reconnect to the next process)
CLOSING = threading.Event()


def stamp(value: dt.datetime | None) -> int:
    """A change's event id: its time in microseconds since the epoch."""
    v = as_utc(value)
    return int(v.timestamp() * 1_000_000) if v else 0


def from_stamp(text: str | None) -> dt.datetime | None:
    """An event id back to its time; None for anything else (a stream then starts anew)."""
    try:
        value = int(text or "")
        return dt.datetime.fromtimestamp(value / 1_000_000, dt.UTC) if value > 0 else None
    except (ValueError, OverflowError, OSError):
        return None


@dataclass
class Change:
    seq: int
    test_id: str
    view: dict[str, Any]
    stamp: int
    final: bool
    reports: list[tuple[int, dict[str, Any]]]  # new state reports, for a watched run
    data: str = ""  # the view as an event's data, encoded once for every page

    def __post_init__(self) -> None:
        self.data = encode(self.view)


@dataclass
class Hub:
    """One per process: polls the store for changed runs while streams are open."""

    store: Store
    view: Callable[[TestRow], dict[str, Any]]
    interval_s: float = 0.25
    capacity: int = 56
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _changes: deque[Change] = field(default_factory=lambda: deque(maxlen=_KEEP))
    _seen: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # runs whose page is open here: how many, and the last report id fetched for them
    _watched: dict[str, int] = field(default_factory=dict)
    _reported: dict[str, int] = field(default_factory=dict)
    _seq: int = 0
    streams: int = 0
    _thread: threading.Thread | None = None

    def enter(self) -> bool:
        """A stream starts, if a thread may be held for it."""
        with self._cond:
            if self.streams >= self.capacity:
                return False
            self.streams += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="live-hub",
                                                daemon=True)
                self._thread.start()
            return True

    def leave(self, test_id: str | None = None) -> None:
        with self._cond:
            self.streams -= 1
            if test_id is not None:
                self._watched[test_id] -= 1
                if not self._watched[test_id]:
                    del self._watched[test_id]
                    self._reported.pop(test_id, None)

    def watch(self, test_id: str, after: int) -> None:
        """A run's page is open: its new status reports are fetched once per change for
        every page of it (from `after` on, the last the page has)."""
        with self._cond:
            self._watched[test_id] = self._watched.get(test_id, 0) + 1
            self._reported[test_id] = min(self._reported.get(test_id, after), after)

    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            with self._cond:
                if self.streams == 0:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 30:  # no page for a while: stop
                        self._thread = None
                        self._seen.clear()
                        return
                else:
                    idle_since = None
            try:
                self.poll()
            except Exception:  # the database away for a moment: the next poll tries again
                log.exception("live updates: polling the store failed")
            time.sleep(self.interval_s)

    def poll(self) -> None:
        """Look for the runs changed lately; wake the streams if any did."""
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=WINDOW_S)
        rows = self.store.changed_since(since)
        fresh = []
        for row in rows:
            key = (stamp(row.updated_at), row.state, row.progress_done, row.message,
                   row.passed, row.failed, row.skipped)
            if self._seen.get(row.id) != key:
                self._seen[row.id] = key
                fresh.append(row)
        horizon = stamp(since)
        for test_id in [t for t, k in self._seen.items() if k[0] < horizon]:
            del self._seen[test_id]
        if not fresh:
            return
        with self._cond:
            watched = {t: self._reported.get(t, 0) for t in self._watched}
        reports: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for row in fresh:
            if row.id in watched:  # one query per changed run with pages open, not per page
                reports[row.id] = [(r.id, report_view(r))
                                   for r in self.store.state_reports(row.id, watched[row.id])]
        with self._cond:
            for row in fresh:
                found = reports.get(row.id, [])
                if found and row.id in self._reported:
                    self._reported[row.id] = max(self._reported[row.id], found[-1][0])
                self._seq += 1
                self._changes.append(Change(self._seq, row.id, self.view(row),
                                            stamp(row.updated_at), is_final(row.state),
                                            found))
            self._cond.notify_all()

    def wait(self, after: int, timeout_s: float) -> list[Change]:
        """The changes after sequence number `after`, waiting up to `timeout_s` for one
        (newest last; read from the newest back, not through all that are kept)."""
        with self._cond:
            if self._seq <= after:
                self._cond.wait(timeout_s)
            out = []
            for c in reversed(self._changes):
                if c.seq <= after:
                    break
                out.append(c)
            out.reverse()
            return out


def encode(data: Any) -> str:
    """JSON on one line (so no field can end an event early), and no markup even in JSON:
    a page (or a proxy's error page) never sees a tag in it."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    """One Server-Sent Event; `data` is encoded unless it is already (a str)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data if isinstance(data, str) else encode(data)}\n\n"


def run_stream(hub: Hub, store: Store, test_id: str, since: dt.datetime | None,
               end_view: Callable[[TestRow], dict[str, Any]]) -> Iterator[str]:
    """A run's page: its view when it changes, its new status reports, the end."""
    watching = False
    try:
        yield "retry: 1000\n\n"
        seq = hub.seq
        test = store.get(test_id)
        if test is None:
            yield sse("gone", {"id": test_id})
            return
        after = 0
        for r in store.state_reports(test_id):
            if since is None or (as_utc(r.at) or since) > since:
                yield sse("report", report_view(r), stamp(test.updated_at))
            after = r.id
        hub.watch(test_id, after)
        watching = True
        sent = stamp(test.updated_at)
        yield sse("test", hub.view(test), sent)
        if is_final(test.state):
            yield sse("end", end_view(test), sent)
            return
        deadline = time.monotonic() + STREAM_S
        last_write = time.monotonic()
        while time.monotonic() < deadline and not CLOSING.is_set():
            changes = hub.wait(seq, 1.0)
            if changes:
                seq = changes[-1].seq
            mine = [c for c in changes if c.test_id == test_id]
            # every change's reports, even of a change whose view the page has: a poll
            # may read a report committed after the run's row it read (the next change
            # then carries no report)
            for c in mine:
                for report_id, report in c.reports:
                    if report_id > after:
                        yield sse("report", report, c.stamp)
                        after = report_id
            mine = [c for c in mine if c.stamp > sent]
            if mine:
                last = mine[-1]
                sent = last.stamp
                yield sse("test", last.data, last.stamp)
                last_write = time.monotonic()
                if last.final:
                    final = store.get(test_id)
                    yield sse("end", end_view(final) if final else last.data, last.stamp)
                    return
            elif time.monotonic() - last_write >= KEEPALIVE_S:
                yield ": keepalive\n\n"  # a dead client is found by this write failing
                last_write = time.monotonic()
    finally:
        hub.leave(test_id if watching else None)


def runs_stream(hub: Hub, store: Store, since: dt.datetime | None) -> Iterator[str]:
    """The runs page: every run's view when it changes (new runs included)."""
    try:
        yield "retry: 1000\n\n"
        seq = hub.seq
        sent: dict[str, int] = {}
        if since is not None:
            for row in store.changed_since(since + dt.timedelta(microseconds=1)):
                sent[row.id] = stamp(row.updated_at)
                yield sse("test", hub.view(row), sent[row.id])
        deadline = time.monotonic() + STREAM_S
        last_write = time.monotonic()
        while time.monotonic() < deadline and not CLOSING.is_set():
            changes = hub.wait(seq, 1.0)
            if changes:
                seq = changes[-1].seq
                latest: dict[str, Change] = {}
                for c in changes:
                    if c.stamp > sent.get(c.test_id, 0):
                        latest[c.test_id] = c
                for c in sorted(latest.values(), key=lambda c: c.seq):
                    sent[c.test_id] = c.stamp
                    yield sse("test", c.data, c.stamp)
                last_write = time.monotonic()
            elif time.monotonic() - last_write >= KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_write = time.monotonic()
    finally:
        hub.leave()

