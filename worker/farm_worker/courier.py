"""Delivery of a worker's outbox to the callback servers: one thread per worker process,
beside the jobs, so that a server away for hours never holds a job up.

- **In order per test, at least once.** A test's entries go one at a time, oldest first;
  one that fails is tried again (with a pause that doubles up to `backoff_max_s`) before
  the next of that test. Tests do not wait for each other. An entry is removed only once
  the server has answered it; a worker killed in between sends it again, and the server
  knows it (a status report by its `report_id`, a result by its bytes): `duplicate`.
- **Progress is not durable.** Progress reports (one a second while Tempest runs) are
  kept in memory only, the newest one per test, and dropped once a state report of the
  test is owed: the state reports carry the counts.
- **Retried for as long as the entry's age allows** (`keep_s`, 7 days by default); then,
  or when the server refuses it (a 4xx other than 408 and 429), the entry is set aside
  (kept on disk in `set-aside/`, logged) and delivery goes on.
- **Tokens at send time**: the token a job's payload gave for its server is kept in
  memory while this process lives; else the worker's `callbacks` entry for that URL.
  A worker started again delivers what its last process owed with the tokens of its
  configuration.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from farm_worker import defaults
from farm_worker.logs import TestLog
from farm_worker.outbox import STATUS, UPLOAD, Entry, Outbox

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class Progress:
    """A progress report: memory only, replaced by a newer one."""

    url: str
    body: dict[str, Any]


Item = Entry | Progress


class Result(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"
    DROPPED = "dropped"  # removed from the outbox by hand meanwhile (`outbox drop`)


@dataclass
class _Test:
    """What one test still owes, and when to try its first item again."""

    items: collections.deque[Item] = field(default_factory=collections.deque)
    due: float = 0.0
    pause: float = 0.0
    attempts: int = 0
    problems: list[str] = field(default_factory=list)  # entries set aside
    listener: Callable[[Any], None] | None = None  # a live job's: the server's answers


class Courier:
    """Delivers one outbox (see the module docstring)."""

    def __init__(self, outbox: Outbox, token_for: Callable[[str], str | None], *,
                 keep_s: float = defaults.OUTBOX_KEEP_S,
                 max_bytes: int = defaults.OUTBOX_MAX_BYTES,
                 backoff_max_s: float = defaults.REPORT_BACKOFF_S[1],
                 timeout_s: float = defaults.REPORT_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic):
        self.outbox = outbox
        self.token_for = token_for
        self.keep_s = keep_s
        self.max_bytes = max_bytes
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._tests: dict[str, _Test] = {}
        self._cond = threading.Condition()
        self._bytes = 0
        self._tokens: dict[str, str] = {}  # from payloads: memory only
        self._sessions: dict[str, requests.Session] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Courier({self.outbox!r})"

    # ---- life ----------------------------------------------------------------------------
    def start(self) -> int:
        """Claim the outbox, take up what an earlier process owed, start delivering; how
        many entries were owed."""
        self.outbox.claim()
        for path in self.outbox.recover():
            log.warning("outbox: removed %s, left by a process killed while writing", path)
        owed = 0
        for found in self.outbox.entries():
            if isinstance(found, Entry):
                self._enqueue(found)
                owed += 1
            else:
                self.outbox.set_aside(*found)
        if owed:
            log.info("outbox %s: %d entries (%d bytes) owed by an earlier process; "
                     "delivering them beside new jobs", self.outbox.root, owed, self._bytes)
        self._thread = threading.Thread(target=self._run, name="courier", daemon=True)
        self._thread.start()
        return owed

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)
        self.outbox.release()

    # ---- adding (from the jobs) ------------------------------------------------------------
    def _enqueue(self, item: Item) -> None:
        with self._cond:
            test = self._tests.setdefault(item_test(item), _Test())
            if isinstance(item, Entry):
                # a state report carries the counts: progress waiting before it is stale
                while test.items and isinstance(test.items[-1], Progress):
                    test.items.pop()
                self._bytes += item.size
            elif test.items and isinstance(test.items[-1], Progress):
                test.items[-1] = item
                return
            test.items.append(item)
            self._cond.notify_all()

    def add_status(self, test_id: str, url: str, body: dict[str, Any]) -> None:
        self._enqueue(self.outbox.add_status(test_id, url, body))

    def add_upload(self, test_id: str, url: str, subunit: Any, worker: str,
                   cpid: str | None) -> None:
        self._enqueue(self.outbox.add_upload(test_id, url, subunit, worker, cpid))

    def add_progress(self, test_id: str, url: str, body: dict[str, Any]) -> None:
        self._enqueue(Progress(url, {**body, "test_id": test_id}))

    def remember_token(self, url: str, token: str) -> None:
        """A token a job's payload gave for its server: used while this process lives."""
        with self._cond:
            self._tokens[url] = token

    def listen(self, test_id: str, listener: Callable[[Any], None] | None) -> None:
        """The server's answers to a test's status reports go to `listener` (None: stop)."""
        with self._cond:
            test = self._tests.setdefault(test_id, _Test())
            test.listener = listener
            if listener is None and not test.items:
                del self._tests[test_id]

    # ---- what is owed --------------------------------------------------------------------
    def owed(self, test_id: str | None = None) -> int:
        """Entries (and progress reports) not yet delivered, of one test or of all."""
        with self._cond:
            return self._owed_locked(test_id)

    def problems(self, test_id: str) -> list[str]:
        with self._cond:
            test = self._tests.get(test_id)
            return list(test.problems) if test else []

    def depth(self) -> dict[str, Any]:
        """For `farm ping` and the logs: entries and bytes owed, and whether it is full."""
        with self._cond:
            entries = sum(isinstance(i, Entry) for t in self._tests.values() for i in t.items)
            return {"entries": entries, "bytes": self._bytes, "max_bytes": self.max_bytes,
                    "full": self._bytes >= self.max_bytes, "dir": str(self.outbox.root)}

    def owed_tests(self) -> list[str]:
        """The tests this worker still owes reports or results to a server (their final
        state among them, maybe): a server asks before it gives such a test to another."""
        with self._cond:
            return sorted(tid for tid, t in self._tests.items() if t.items)

    @property
    def full(self) -> bool:
        with self._cond:
            return self._bytes >= self.max_bytes

    def wait(self, timeout_s: float, test_id: str | None = None,
             stop: threading.Event | None = None, while_answered: bool = False) -> int:
        """Wait up to `timeout_s` (or until `stop`) until nothing (of `test_id`) is owed;
        what is still owed. `while_answered`: stop waiting as soon as an attempt for the
        test fails (its server is away: what it owes is safe on disk)."""
        end = self.clock() + timeout_s
        with self._cond:
            while self._owed_locked(test_id) and self.clock() < end \
                    and not (stop is not None and stop.is_set()) \
                    and not (while_answered and self._failing(test_id)):
                self._cond.wait(min(0.2, max(0.0, end - self.clock())))
            return self._owed_locked(test_id)

    def _failing(self, test_id: str | None) -> bool:
        test = self._tests.get(test_id) if test_id else None
        return test is not None and test.attempts > 0

    def _owed_locked(self, test_id: str | None) -> int:
        """(An item being sent counts until it is settled: it is still in its test's.)"""
        tests = [self._tests.get(test_id)] if test_id else list(self._tests.values())
        return sum(len(t.items) for t in tests if t is not None)

    def wait_not_full(self, stop: threading.Event) -> None:
        with self._cond:
            while self._bytes >= self.max_bytes and not stop.is_set():
                self._cond.wait(1.0)

    # ---- delivery ------------------------------------------------------------------------
    def _next_due(self) -> tuple[str, Item] | float | None:
        """The item to send now, else how long until one is due (None: nothing owed)."""
        now = self.clock()
        best: tuple[str, Item] | None = None
        soonest: float | None = None
        for test_id, test in self._tests.items():
            if not test.items:
                continue
            if test.due > now:
                soonest = test.due if soonest is None else min(soonest, test.due)
                continue
            head = test.items[0]
            if best is None or _order(head) < _order(best[1]):
                best = (test_id, head)
        if best is not None:
            return best
        return None if soonest is None else soonest - now

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                due = self._next_due()
                if not isinstance(due, tuple):
                    self._cond.wait(due)
                    continue
                test_id, item = due
            try:
                result, answer = self._deliver(item)
            except Exception as exc:  # a bug must not stop delivery for good
                log.exception("outbox: delivering %s", describe(item))
                result, answer = Result.RETRY, f"{exc.__class__.__name__}: {exc}"
            self._settle(test_id, item, result, answer)

    def _settle(self, test_id: str, item: Item, result: Result, answer: Any) -> None:
        """Book an attempt: try again later, or done with the item (on disk first, so
        that whoever sees nothing owed finds the outbox as it says)."""
        tlog = TestLog(log, test_id)
        if result is Result.RETRY and isinstance(item, Entry) and item.age_s() > self.keep_s:
            result, answer = Result.REFUSED, (f"undelivered for {item.age_s():.0f} s "
                                              f"(outbox_keep_s {self.keep_s:.0f}): {answer}")
        if result is Result.RETRY:
            with self._cond:
                test = self._tests.setdefault(test_id, _Test())
                test.attempts += 1
                test.pause = min(max(test.pause * 2, defaults.REPORT_BACKOFF_S[0]),
                                 self.backoff_max_s)
                test.due = self.clock() + test.pause
                self._cond.notify_all()
            if test.attempts == 1:
                tlog.warning("%s: %s; kept in the outbox, retrying", describe(item), answer)
            return
        if result is Result.DROPPED:
            tlog.warning("%s: removed from the outbox by hand, not sent", describe(item))
        elif isinstance(item, Entry):
            if result is Result.REFUSED:
                self.outbox.set_aside(item.path, f"{describe(item)}: {answer}")
            else:
                self.outbox.remove(item)
        elif result is Result.REFUSED:
            tlog.warning("%s refused: %s", describe(item), answer)
        if result is Result.DELIVERED and (isinstance(item, Progress) or item.kind == STATUS):
            with self._cond:
                held = self._tests.get(test_id)
                listener = held.listener if held else None
            if listener is not None:  # before the item counts as delivered: a job that
                try:  # waited for its reports has had their answers
                    listener(answer)
                except Exception:
                    tlog.exception("the job's answer handler failed")
        with self._cond:
            test = self._tests.setdefault(test_id, _Test())
            if test.items and test.items[0] is item:
                test.items.popleft()
            if isinstance(item, Entry):
                self._bytes -= item.size
            if test.attempts and result is Result.DELIVERED:
                tlog.info("%s delivered after %d failed attempts", describe(item),
                          test.attempts)
            test.attempts, test.pause, test.due = 0, 0.0, 0.0
            if result is Result.REFUSED:
                test.problems.append(f"{describe(item)}: {answer}")
            if not test.items and test.listener is None:
                del self._tests[test_id]
            self._cond.notify_all()

    def _session(self, url: str) -> requests.Session:
        if url not in self._sessions:
            self._sessions[url] = requests.Session()
        return self._sessions[url]

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"User-Agent": "refstack-farm-worker"}
        with self._cond:
            token = self._tokens.get(url)
        token = token or self.token_for(url)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _deliver(self, item: Item) -> tuple[Result, Any]:
        """One attempt: the result and the server's answer (or why it failed)."""
        url = item.url if item.url.endswith("/") else item.url + "/"
        if isinstance(item, Entry) and not item.path.exists():
            return Result.DROPPED, "removed from the outbox"
        try:
            if isinstance(item, Entry) and item.kind == UPLOAD:
                query = urlencode({"test_id": item.test_id, "worker": item.body["worker"],
                                   **({"cpid": item.body["cpid"]} if item.body.get("cpid")
                                      else {})})
                with item.data.open("rb") as fh:
                    resp = self._session(url).post(
                        f"{url}post-result?{query}", headers=self._headers(item.url),
                        timeout=self.timeout_s,
                        files={"file": (f"{item.test_id}.subunit", fh,
                                        "application/octet-stream")})
            else:
                resp = self._session(url).post(f"{url}update-test-status/",
                                               headers=self._headers(item.url),
                                               timeout=self.timeout_s, json=item.body)
        except requests.RequestException as exc:
            return Result.RETRY, exc.__class__.__name__
        except OSError as exc:  # the subunit file went away under us
            return Result.REFUSED, f"cannot read {exc.filename}: {exc.strerror}"
        if resp.status_code < 400:
            try:
                return Result.DELIVERED, resp.json()
            except ValueError:  # a callback server that answers 202 with no body: fine
                return Result.DELIVERED, None
        reason = f"HTTP {resp.status_code} {resp.text[:200]}".replace("\n", " ")
        return (Result.RETRY if resp.status_code in RETRYABLE_STATUS else Result.REFUSED,
                reason)


def item_test(item: Item) -> str:
    return item.test_id if isinstance(item, Entry) else str(item.body["test_id"])


def _order(item: Item) -> float:
    """Oldest first across tests (progress, never on disk, goes after the entries)."""
    return item.seq if isinstance(item, Entry) else float("inf")


def describe(item: Item) -> str:
    if isinstance(item, Entry):
        return item.describe()
    return f"progress of test {item.body['test_id']} to {item.url}"
