"""HTTP to the callback server: status reports, the subunit upload, miniconf and testcases.

Reports go through one background thread per job so a slow or absent server never
stalls Tempest's output pipe. They are delivered in order; progress reports are
coalesced (only the newest waiting one is sent). Connection errors, 5xx, 408 and 429 are
retried with exponential backoff until `retry_s` has passed; other 4xx are logged and
dropped. A failed report never fails the job. The bearer token is never logged.

A job waits `report_flush_s` for its last reports; what is still undelivered then (the
server is down) keeps being retried in the background while the worker takes the next job,
and the worker waits for it before it exits (`wait_pending`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from farm_worker import defaults
from farm_worker.exceptions import ReportError
from farm_worker.logs import TestLog
from farm_worker.protocol import Counts, TestState, stop_reason

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_pending: set[Reporter] = set()  # closed, still delivering in the background
_pending_lock = threading.Lock()


class CallbackClient:
    """One callback server (the RefStack contract) and the token the worker presents."""

    def __init__(self, base_url: str, token: str | None, *,
                 timeout_s: float = defaults.REPORT_TIMEOUT_S,
                 session: requests.Session | None = None):
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        # the token is a secret: it is sent in a header and never logged or shown
        self.token = token
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"CallbackClient({self.base_url!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "refstack-farm-worker"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One attempt; raises requests exceptions for the caller's retry policy."""
        return self.session.request(method, self.base_url + path, headers=self._headers(),
                                    timeout=self.timeout_s, **kwargs)

    def call(self, method: str, path: str, *, retry_s: float,
             upload: tuple[str, Path] | None = None,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic,
             stop: threading.Event | None = None, **kwargs: Any) -> requests.Response:
        """Retry transient failures until `retry_s` passes; ReportError when it gives up.

        `upload` is (file name, path) of a file sent as multipart field `file`.
        """
        end = clock() + retry_s
        pause = defaults.REPORT_BACKOFF_S[0]
        where = f"{method} {path.split('?')[0]}"
        while True:
            try:
                resp = self._attempt(method, path, upload, **kwargs)
            except requests.RequestException as exc:
                reason = exc.__class__.__name__
            else:
                if resp.status_code < 400:
                    return resp
                reason = f"HTTP {resp.status_code} {resp.text[:200]}".replace("\n", " ")
                if resp.status_code not in RETRYABLE_STATUS:
                    raise ReportError(f"{where}: {reason}")
            if clock() + pause > end or (stop is not None and stop.is_set()):
                raise ReportError(f"{where}: gave up after {retry_s:.0f} s: {reason}")
            log.warning("%s: %s; retrying in %.1f s", where, reason, pause)
            sleep(pause)
            pause = min(pause * 2, defaults.REPORT_BACKOFF_S[1])

    def _attempt(self, method: str, path: str, upload: tuple[str, Path] | None,
                 **kwargs: Any) -> requests.Response:
        if upload is None:
            return self.request(method, path, **kwargs)
        with upload[1].open("rb") as fh:
            return self.request(method, path, files={
                "file": (upload[0], fh, "application/octet-stream")}, **kwargs)


@dataclass
class _Item:
    kind: str  # "status", "progress" (a status report a newer one may replace) or "upload"
    body: dict[str, Any]
    path: Path | None = None


class Reporter:
    """Ordered, retried, non-blocking delivery of one job's reports."""

    def __init__(self, client: CallbackClient | None, test_id: str, worker: str,
                 retry_s: float = defaults.REPORT_RETRY_S,
                 on_stop: Callable[[str], None] | None = None):
        self.client = client
        self.test_id = test_id
        self.log = TestLog(log, test_id)
        self.worker = worker
        self.retry_s = retry_s
        self.on_stop = on_stop  # called once when the server's answer says the job must stop
        self.stopped: str | None = None
        self.pending = False  # closed with reports left: they go on in the background
        self.failures: list[str] = []
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None

    def _put(self, item: _Item, coalesce: bool = False) -> None:
        if self.client is None:
            return
        with self._cond:
            if coalesce and self._queue and self._queue[-1].kind == "progress" \
                    and self._queue[-1].body.get("status") == item.body.get("status"):
                self._queue[-1] = item
            else:
                self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"reporter-{self.test_id}")
                self._thread.start()
            self._cond.notify()

    def state(self, state: TestState, message: str = "", counts: Counts | None = None,
              outcome: dict[str, Any] | None = None) -> None:
        """A state report; a final one may carry the run's `outcome` as its `payload` (a
        test list's selection report, a guideline's compliance report)."""
        body: dict[str, Any] = {"test_id": self.test_id, "status": state.value,
                                "message": message, "worker": self.worker}
        if counts is not None:
            body["progress"] = {"current": "", **counts.to_dict()}
        if outcome:
            body["payload"] = outcome
        self._put(_Item("status", body))

    def progress(self, state: TestState, current: str, counts: Counts) -> None:
        self._put(_Item("progress", {"test_id": self.test_id, "status": state.value,
                                     "message": f"{counts.done}/{counts.total}",
                                     "worker": self.worker,
                                     "progress": {"current": current, **counts.to_dict()}}),
                  coalesce=True)

    def upload(self, subunit_path: Path, cpid: str | None = None) -> None:
        self._put(_Item("upload", {"cpid": cpid} if cpid else {}, subunit_path))

    def _run(self) -> None:
        assert self.client is not None
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                item = self._queue[0]
            try:
                self._deliver(item)
            except ReportError as exc:
                self.log.error("report lost: %s", exc)
                self.failures.append(str(exc))
            with self._cond:
                self._queue.popleft()
                if not self._queue and self._closing:
                    with _pending_lock:
                        _pending.discard(self)
                    if self.pending:
                        self.log.info("the reports pending since the job ended are delivered")
                    self.pending = False
                    return

    def _deliver(self, item: _Item) -> None:
        assert self.client is not None
        if item.kind == "upload":
            assert item.path is not None
            cpid = item.body.get("cpid")
            query = urlencode({"test_id": self.test_id, "worker": self.worker,
                               **({"cpid": cpid} if cpid else {})})
            self.client.call("POST", f"post-result?{query}",
                             retry_s=self.retry_s, stop=self._abandon,
                             upload=(f"{self.test_id}.subunit", item.path))
            return
        resp = self.client.call("POST", "update-test-status/", json=item.body,
                                retry_s=self.retry_s, stop=self._abandon)
        try:
            answer = resp.json()
        except ValueError:  # a callback server that answers 202 with no body: fine
            return
        reason = stop_reason(self.test_id, answer)
        if reason and self.stopped is None:
            self.stopped = reason
            self.log.warning("%s", reason)
            if self.on_stop is not None:
                self.on_stop(reason)

    def close(self, timeout_s: float = defaults.FLUSH_TIMEOUT_S) -> bool:
        """Wait up to `timeout_s` for what is queued; True when all of it was delivered.
        What is left keeps being retried in the background (`pending`), each report up to
        `retry_s`, unless `abandon()` is called."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is None:
            return not self.failures
        with _pending_lock:
            _pending.add(self)
        thread.join(timeout_s)
        if thread.is_alive():
            with self._cond:
                left = len(self._queue)
                self.pending = left > 0  # the thread may have just finished
            if not left:
                return not self.failures
            self.log.warning("%d reports not delivered after %.0f s; retrying them in the "
                             "background", left, timeout_s)
            return False
        with _pending_lock:
            _pending.discard(self)
        return not self.failures

    def abandon(self) -> int:
        """Stop retrying; the number of reports lost."""
        with self._cond:
            lost = len(self._queue)
        self._abandon.set()
        thread = self._thread
        if thread is not None:
            thread.join(defaults.REPORT_TIMEOUT_S + 1)
        if lost:
            self.failures.append(f"{lost} reports abandoned")
            self.log.error("%d reports abandoned", lost)
        with _pending_lock:
            _pending.discard(self)
        return lost


def pending_reports() -> int:
    """Reports of ended jobs still being retried."""
    with _pending_lock:
        reporters = list(_pending)
    return sum(len(r._queue) for r in reporters if r.pending)


def wait_pending(timeout_s: float, stop: threading.Event | None = None) -> int:
    """Before the worker exits: wait up to `timeout_s` (or until `stop`) for the reports of
    ended jobs, then abandon what is left. The number of reports lost."""
    if pending_reports():
        log.info("waiting up to %.0f s for %d reports of ended jobs (signal again to give "
                 "up)", timeout_s, pending_reports())
    end = time.monotonic() + timeout_s
    while pending_reports() and time.monotonic() < end and not (stop and stop.is_set()):
        time.sleep(0.2)
    with _pending_lock:
        reporters = list(_pending)
    return sum(r.abandon() for r in reporters)
