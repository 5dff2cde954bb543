"""HTTP to the callback server: the job's fetches (miniconf, testcases, accounts) and its
reports.

A job's fetches are retried (connection errors, 5xx, 408, 429) with exponential backoff
until `report_retry_s` has passed; the job cannot go on without them. Its status reports
and its result upload go through the worker's durable outbox (`Reporter` -> `Courier` ->
`Outbox`) and are never dropped for a server that is away. The bearer token is never
logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from farm_worker import defaults
from farm_worker.courier import RETRYABLE_STATUS, Courier
from farm_worker.exceptions import ReportError
from farm_worker.logs import TestLog
from farm_worker.protocol import Counts, TestState, stop_reason

log = logging.getLogger(__name__)


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
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic,
             stop: threading.Event | None = None, **kwargs: Any) -> requests.Response:
        """Retry transient failures until `retry_s` passes; ReportError when it gives up."""
        end = clock() + retry_s
        pause = defaults.REPORT_BACKOFF_S[0]
        where = f"{method} {path.split('?')[0]}"
        while True:
            try:
                resp = self.request(method, path, **kwargs)
            except requests.RequestException as exc:
                reason = exc.__class__.__name__
            else:
                if resp.status_code < 400:
                    return resp
                reason = f"HTTP {resp.status_code} {resp.text[:200]}".replace("\n", " ")
                if resp.status_code not in RETRYABLE_STATUS:
                    raise ReportError(f"{where}: {reason}", answer=_json_or_none(resp))
            if clock() + pause > end or (stop is not None and stop.is_set()):
                raise ReportError(f"{where}: gave up after {retry_s:.0f} s: {reason}")
            log.warning("%s: %s; retrying in %.1f s", where, reason, pause)
            sleep(pause)
            pause = min(pause * 2, defaults.REPORT_BACKOFF_S[1])


class Reporter:
    """One job's reports and result upload, through the worker's outbox (`Courier`): a
    state report or an upload is on disk before the job goes on, and delivered beside
    the jobs, in order, however long the server is away. The server's answers reach the
    job while it runs (`on_stop`: another worker holds the test, or it ended there)."""

    def __init__(self, courier: Courier | None, url: str | None, test_id: str, worker: str,
                 on_stop: Callable[[str], None] | None = None):
        self.courier = courier if url else None
        self.url = url or ""
        self.test_id = test_id
        self.log = TestLog(log, test_id)
        self.worker = worker
        self.on_stop = on_stop  # called once when the server's answer says the job must stop
        self.stopped: str | None = None
        self.pending = False  # closed with reports left: they stay in the outbox
        self._lost: list[str] = []
        self._closed = False
        if self.courier is not None:
            self.courier.listen(test_id, self._answered)

    @property
    def failures(self) -> list[str]:
        """Reports the server refused or the outbox could not keep (set aside later, once
        the job has closed, they are only logged)."""
        live = self.courier is not None and not self._closed
        return [*self._lost, *(self.courier.problems(self.test_id)  # type: ignore[union-attr]
                               if live else [])]

    def _keep(self, what: str, add: Callable[[], None]) -> None:
        try:
            add()
        except OSError as exc:  # the outbox cannot be written (a full disk): said, not fatal
            self._lost.append(f"{what}: {exc}")
            self.log.error("outbox: cannot keep the %s report: %s", what, exc)

    def state(self, state: TestState, message: str = "", counts: Counts | None = None,
              outcome: dict[str, Any] | None = None) -> None:
        """A state report; a final one may carry the run's `outcome` as its `payload` (a
        test list's selection report, a guideline's compliance report)."""
        if self.courier is None:
            return
        body: dict[str, Any] = {"test_id": self.test_id, "status": state.value,
                                "message": message, "worker": self.worker}
        if counts is not None:
            body["progress"] = {"current": "", **counts.to_dict()}
        if outcome:
            body["payload"] = outcome
        courier = self.courier
        self._keep(state.value, lambda: courier.add_status(self.test_id, self.url, body))

    def progress(self, state: TestState, current: str, counts: Counts) -> None:
        if self.courier is None:
            return
        self.courier.add_progress(self.test_id, self.url, {
            "status": state.value, "message": f"{counts.done}/{counts.total}",
            "worker": self.worker, "progress": {"current": current, **counts.to_dict()}})

    def upload(self, subunit_path: Path, cpid: str | None = None) -> None:
        if self.courier is None:
            return
        courier = self.courier
        self._keep("upload", lambda: courier.add_upload(self.test_id, self.url, subunit_path,
                                                        self.worker, cpid))

    def _answered(self, answer: Any) -> None:
        reason = stop_reason(self.test_id, answer)
        if reason:
            self.stop(reason)

    def stop(self, reason: str) -> None:
        """The server will not take this job's result (`reason`): said once."""
        if self.stopped is None:
            self.stopped = reason
            self.log.warning("%s", reason)
            if self.on_stop is not None:
                self.on_stop(reason)

    def close(self, timeout_s: float = defaults.FLUSH_TIMEOUT_S) -> bool:
        """Wait up to `timeout_s` for this job's reports (and the server's answers to
        them), but not for a server that does not answer; True when all of them were
        delivered. What is left stays in the outbox and is delivered beside the next jobs
        (and by the next process, if this one stops). gearmand has been told the job's
        outcome before this wait (`JobHooks.complete`): a worker killed while it waits never
        has a run that has ended handed to another."""
        if self.courier is None:
            return not self._lost
        left = self.courier.wait(timeout_s, self.test_id, while_answered=True)
        self._lost.extend(self.courier.problems(self.test_id))
        self._closed = True
        self.courier.listen(self.test_id, None)
        if left:
            self.pending = True
            self.log.warning("%d reports not delivered: they stay in the outbox %s and go "
                             "when the server answers", left, self.courier.outbox.root)
            return False
        return not self.failures


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
