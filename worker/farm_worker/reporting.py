"""HTTP to the callback server: status reports, the subunit upload, miniconf and testcases.

Reports go through one background thread per job so a slow or absent server never
stalls Tempest's output pipe. They are delivered in order; progress reports are
coalesced (only the newest waiting one is sent). Connection errors, 5xx, 408 and 429 are
retried with exponential backoff until `retry_s` has passed; other 4xx are logged and
dropped. A failed report never fails the job. The bearer token is never logged.
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

import requests

from farm_worker import defaults
from farm_worker.exceptions import ReportError
from farm_worker.protocol import TestState

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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
    kind: str  # "status" or "upload"
    body: dict[str, Any]
    path: Path | None = None


class Reporter:
    """Ordered, retried, non-blocking delivery of one job's reports."""

    def __init__(self, client: CallbackClient | None, test_id: str, worker: str,
                 retry_s: float = defaults.REPORT_RETRY_S):
        self.client = client
        self.test_id = test_id
        self.worker = worker
        self.retry_s = retry_s
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
            if coalesce and self._queue and self._queue[-1].body.get("progress") is not None \
                    and self._queue[-1].kind == "status" \
                    and self._queue[-1].body.get("status") == item.body.get("status"):
                self._queue[-1] = item
            else:
                self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"reporter-{self.test_id}")
                self._thread.start()
            self._cond.notify()

    def state(self, state: TestState, message: str = "") -> None:
        self._put(_Item("status", {"test_id": self.test_id, "status": state.value,
                                   "message": message, "worker": self.worker}))

    def progress(self, state: TestState, done: int, total: int, current: str,
                 counts: dict[str, int]) -> None:
        self._put(_Item("status", {"test_id": self.test_id, "status": state.value,
                                   "message": f"{done}/{total}", "worker": self.worker,
                                   "progress": {"done": done, "total": total,
                                                "current": current, **counts}}),
                  coalesce=True)

    def upload(self, subunit_path: Path) -> None:
        self._put(_Item("upload", {}, subunit_path))

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
                log.error("[test %s] report lost: %s", self.test_id, exc)
                self.failures.append(str(exc))
            with self._cond:
                self._queue.popleft()

    def _deliver(self, item: _Item) -> None:
        assert self.client is not None
        if item.kind == "upload":
            assert item.path is not None
            self.client.call("POST", f"post-result?test_id={self.test_id}",
                             retry_s=self.retry_s, stop=self._abandon,
                             upload=(f"{self.test_id}.subunit", item.path))
        else:
            self.client.call("POST", "update-test-status/", json=item.body,
                             retry_s=self.retry_s, stop=self._abandon)

    def close(self, timeout_s: float = defaults.FLUSH_TIMEOUT_S) -> bool:
        """Deliver what is queued (up to `timeout_s`); True when nothing was lost."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                self._abandon.set()
                thread.join(defaults.REPORT_TIMEOUT_S + 1)
                with self._cond:
                    lost = len(self._queue)
                self.failures.append(f"{lost} reports still queued after {timeout_s:.0f} s")
                log.error("[test %s] %d reports not delivered after %.0f s", self.test_id,
                          lost, timeout_s)
        return not self.failures
