"""Uploads to RefStack on the status server: the RefStack document of a stored run, and the
automatic uploads of runs that end `passed` or `failed` with an upload target (a test's
`upload_url`, else the server's `refstack_upload_url`).

The uploader runs in `farm-server monitor` (which `farm-server serve` starts). Each upload
is a row: it is tried at once, an unreachable or failing RefStack is retried with doubling
delays
(`refstack_retry_s`, `refstack_upload_attempts`), a refusal (401, 400) is final. A failed
upload changes nothing about the run; `farm results ID --upload URL` retries it by hand.
Servers sharing a database each run an uploader: a run's upload is queued once
(`Store.add_automatic_upload`) and each attempt is claimed by one of them
(`Store.claim_upload`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from farm_client.refstack_upload import SigningKey, UploadError, encode, refstack_payload, upload
from farm_client.subunit_results import parse
from farm_server import metrics
from farm_server.exceptions import FarmServerError
from farm_server.models import FAILED, UPLOADED, UploadRow, utcnow
from farm_server.periodic import Periodic
from farm_server.store import Store
from farm_worker.protocol import TestState

log = logging.getLogger(__name__)

UPLOAD_INTERVAL_S = 3.0  # how often `farm-server monitor` looks for uploads to make
UPLOADED_RUNS = [TestState.PASSED.value, TestState.FAILED.value]


class NotUploadable(FarmServerError):
    """The run has nothing RefStack can take yet. `status`: the HTTP answer for it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def payload_of(store: Store, test_id: str, cpid: str | None = None) -> dict[str, Any]:
    """The RefStack document for a stored run; `cpid` overrides the one stored."""
    test = store.get(test_id)
    if test is None:
        raise NotUploadable(f"test {test_id} is not known to this server", 404)
    _rows, raw = store.results(test_id)
    if raw is None:
        raise NotUploadable(f"no results uploaded for {test_id} (state {test.state})", 404)
    cpid = cpid or test.cpid
    if not cpid:
        raise NotUploadable(f"the cloud's cpid for {test_id} is not known (the worker could "
                            "not ask its Keystone): give one (--cpid)", 409)
    doc = refstack_payload(parse(raw.data), cpid)
    if not doc["results"]:
        raise NotUploadable(f"{test_id} has no passed test: RefStack refuses such results",
                            409)
    return doc


def upload_view(u: UploadRow) -> dict[str, Any]:
    def iso(value: dt.datetime | None) -> str | None:
        if value is None:
            return None
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return value.isoformat(timespec="seconds")

    return {"target": u.target, "source": u.source, "state": u.state, "attempts": u.attempts,
            "signed_by": u.signed_by, "result_id": u.result_id, "result_url": u.result_url,
            "message": u.message, "next_at": iso(u.next_at), "created_at": iso(u.created_at),
            "updated_at": iso(u.updated_at)}


class Uploader(Periodic):
    name = "uploader"

    def __init__(self, store: Store, key: SigningKey | None, *, attempts: int = 5,
                 retry_s: float = 30.0, timeout_s: float = 30.0,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        super().__init__()
        self.store = store
        self.key = key
        self.attempts = attempts
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.clock = clock
        # how long an attempt holds its upload: a POST may take a connect and a read
        # timeout; after that, an uploader that died mid-attempt is presumed gone
        self.lease_s = 4 * timeout_s + 60

    def run_once(self) -> list[str]:
        """Queue the runs that just became uploadable, try the uploads that are due; what
        happened, as sentences."""
        signed_by = self.key.fingerprint if self.key else None
        for test in self.store.upload_candidates(UPLOADED_RUNS):
            assert test.upload_to is not None
            self.store.add_automatic_upload(test.id, test.upload_to, signed_by)
        done = [line for row in self.store.due_uploads(self.clock())
                if (line := self._attempt(row)) is not None]
        for line in done:
            log.info("uploader: %s", line)
        return done

    def _attempt(self, row: UploadRow) -> str | None:
        """One attempt at a due upload; None when another uploader (a second server on
        the same database) took it first."""
        now = self.clock()
        if not self.store.claim_upload(row, now, now + dt.timedelta(seconds=self.lease_s)):
            return None
        attempts = row.attempts + 1
        try:
            body = encode(payload_of(self.store, row.test_id))
            up = upload(row.target, body, self.key, attempts=1, timeout_s=self.timeout_s)
        except NotUploadable as exc:
            self.store.update_upload(row.id, state=FAILED, attempts=attempts,
                                     message=str(exc), next_at=None)
            metrics.m().uploads.labels(FAILED).inc()
            return f"{row.test_id}: not uploaded: {exc}"
        except UploadError as exc:
            if exc.retryable and attempts < self.attempts:
                delay = self.retry_s * 2 ** (attempts - 1)
                self.store.update_upload(row.id, attempts=attempts, message=exc.problem,
                                         next_at=self.clock() + dt.timedelta(seconds=delay))
                metrics.m().uploads.labels("retrying").inc()
                return (f"{row.test_id}: attempt {attempts} failed, again in {delay:g} s: "
                        f"{exc.problem}")
            message = exc.problem if not exc.retryable else (
                f"{exc.problem}; {attempts} attempts, the last at {self.clock():%H:%M:%S} "
                f"UTC; `farm results {row.test_id} --upload {row.target}` uploads it by hand")
            self.store.update_upload(row.id, state=FAILED, attempts=attempts, message=message,
                                     next_at=None)
            metrics.m().uploads.labels(FAILED).inc()
            return f"{row.test_id}: upload failed: {message}"
        self.store.update_upload(row.id, state=UPLOADED, attempts=attempts, message="",
                                 result_id=up.result_id, result_url=up.url, next_at=None)
        metrics.m().uploads.labels(UPLOADED).inc()
        return f"{row.test_id}: uploaded to {row.target}: {up.url}"
