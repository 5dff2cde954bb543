"""The farm as a library: submit, watch, cancel and look at test runs.

`open_farm(config)` gives the farm through the status server when one is configured
(FARM_SERVER_URL; farm_client.via_server): the server keeps every test, its history and
results, and workers fetch the cloud config from it, so passwords never ride the queue.
Without a server it is gearmand itself (farm_client.via_gearmand), with self-contained
payloads; then gearmand is all there is to ask, so `tests` and `results` raise
NeedsServer, and `watch` sees only gearman's progress. Both answer the same `Farm`
interface; which one is chosen once, here.

    farm = open_farm(load_client_config())
    sub = farm.submit(payload_doc)                # queued: sub.test_id, sub.handle
    for snap in farm.watch(sub.test_id):          # live: state, done/total, counts
        ...
    farm.cancel(sub.test_id)
    final = farm.wait(sub.test_id, timeout_s=600)  # the final Snapshot, or None
"""

from __future__ import annotations

import abc
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from farm_client.config import ClientConfig
from farm_client.exceptions import NeedsServer, NotRegistered
from farm_client.gearman_client import ForegroundJob, Gearman, GearmanError
from farm_worker.exceptions import FieldError, PayloadError
from farm_worker.protocol import (
    EXIT_ERROR,
    FINAL_STATE_VALUES,
    PING,
    Counts,
    exit_code,
    parse_payload,
    parse_version,
    ping_function,
)

GONE = "unknown"  # the state of a test no gearmand has any more (without a server)


@dataclass(frozen=True)
class Submitted:
    test_id: str
    function: str
    via: str  # "server" | "gearman"
    handle: str | None = None
    server: str | None = None  # the gearmand that took it


@dataclass(frozen=True)
class Snapshot:
    """A test as last seen; `final` when its state will not change any more."""

    test_id: str
    state: str
    counts: Counts = field(default_factory=Counts)
    current: str | None = None
    worker: str | None = None
    message: str = ""
    started: float | None = None  # epoch seconds, when known
    summary: dict[str, Any] | None = None
    where: str | None = None  # the gearmand holding it (without a server)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATE_VALUES

    @property
    def exit_code(self) -> int:
        return exit_code(self.state) if self.final else EXIT_ERROR

    def to_dict(self) -> dict[str, Any]:
        return {"test_id": self.test_id, "state": self.state, **self.counts.to_dict(),
                "current": self.current, "worker": self.worker, "message": self.message,
                "started": self.started, "where": self.where}


@dataclass(frozen=True)
class CancelOutcome:
    test_id: str
    outcome: str  # "removed" (from the queue) | "requested" | "nothing"
    message: str
    state: str | None = None


@dataclass(frozen=True)
class PingAnswer:
    worker: str
    rtt_ms: float | None
    answer: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    from datetime import datetime
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def snapshot_of(view: dict[str, Any]) -> Snapshot:
    """A Snapshot from the API's test view."""
    p = view.get("progress") or {}
    return Snapshot(view["id"], view["state"], Counts.lenient(view.get("summary")),
                    p.get("current"), view.get("worker"), view.get("message") or "",
                    _epoch(view.get("started_at")))


@dataclass
class Run:
    """A submitted test being followed (`Farm.start`): its snapshots until the end."""

    submitted: Submitted
    snapshots: Iterator[Snapshot]
    job: ForegroundJob | None = None  # straight to gearmand: the foreground job

    @property
    def withdrawn_if_left(self) -> bool:
        """gearmand withdraws a waiting foreground job when its client leaves: a run left
        while still queued will not start."""
        return self.job is not None


@dataclass(frozen=True)
class StatusReport:
    """What `farm status` shows: the snapshot; with a server, the stored test as the API
    shows it (`test`, `history`, `uploads`)."""

    snapshot: Snapshot
    stored: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.stored if self.stored is not None else self.snapshot.to_dict()


SERVER_FIELDS = ("upload_url", "cpid")  # for the status server, not in the worker's job


def read_payload(doc: dict[str, Any], *, server_mode: bool) -> dict[str, Any]:
    """Fill defaults into a payload document and validate it as the worker will."""
    doc = dict(doc)
    doc.setdefault("schema", 1)
    doc.setdefault("test_id", f"t-{uuid.uuid4().hex[:16]}")
    if server_mode and "callback" in doc:
        raise PayloadError([FieldError("callback", "the status server reports to itself; "
                                               "leave callback out when a server is set")])
    if not server_mode and "conf" not in doc and "callback" not in doc:
        raise PayloadError([FieldError("conf", "required without a status server (the "
                                               "worker has nowhere to fetch it from); give "
                                               "--conf FILE")])
    server_only = {k: doc[k] for k in SERVER_FIELDS if k in doc}
    if server_only and not server_mode:
        field = next(iter(server_only))
        raise PayloadError([FieldError(field, "uploads to RefStack are made by the status "
                                              "server: set FARM_SERVER_URL, or upload "
                                              "later with farm results --upload")])
    job = {k: v for k, v in doc.items() if k not in SERVER_FIELDS}
    # raises PayloadError naming the field; with a server, the job's callback is the server
    parse_payload({**job, "callback": {"url": "http://status.server/"}} if server_mode else job)
    return doc


class Farm(abc.ABC):
    """The client side of the farm; `open_farm` picks the backend."""

    via: str  # "server" | "gearman"
    keeps_payload_fields = False  # upload_url, cpid: only a status server acts on them

    def __init__(self, config: ClientConfig, gearman: Gearman | None = None) -> None:
        self.config = config
        # both backends ping workers through gearmand; without a server it is the farm
        self.gearman = gearman or Gearman(config.gearman_servers)

    def close(self) -> None:
        self.gearman.close()

    def read_payload(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` with defaults filled in, valid as this backend's workers will get it."""
        return read_payload(doc, server_mode=self.keeps_payload_fields)

    # ---- submit -------------------------------------------------------------------------------
    @abc.abstractmethod
    def registered_versions(self) -> set[str]:
        """Tempest versions some worker serves."""

    def check_registered(self, version: str) -> None:
        registered = self.registered_versions()
        if version not in registered:
            raise NotRegistered(version, sorted(registered, key=parse_version))

    @abc.abstractmethod
    def submit(self, doc: dict[str, Any], queue_anyway: bool = False) -> Submitted:
        """Queue a background job. Raises NotRegistered, Duplicate or PayloadError."""

    @abc.abstractmethod
    def start(self, doc: dict[str, Any], queue_anyway: bool = False) -> Run:
        """Submit and follow (`--wait`): the run's snapshots until its end."""

    # ---- follow -------------------------------------------------------------------------------
    @abc.abstractmethod
    def status(self, test_id: str) -> Snapshot:
        """The test now (state GONE: no gearmand has it, without a server)."""

    def report(self, test_id: str) -> StatusReport:
        return StatusReport(self.status(test_id))

    def watch(self, test_id: str, interval_s: float = 0.5) -> Iterator[Snapshot]:
        """A snapshot every `interval_s` while the test runs, ending with a final one
        (server), or when it leaves gearmand's queue (no server: its final state is not
        known here)."""
        while True:
            snap = self.status(test_id)
            yield snap
            if snap.final or snap.state == GONE:
                return
            time.sleep(interval_s)

    @abc.abstractmethod
    def wait(self, test_id: str, timeout_s: float, run: Run | None = None,
             poll_s: float = 0.3) -> Snapshot | None:
        """Until the test ends: its final Snapshot (without a server and without the `run`
        that follows it, one in state GONE once no gearmand has it), or None at the
        deadline. `poll_s`: how often the server or gearmand is asked."""

    def _poll(self, test_id: str, timeout_s: float, poll_s: float,
              ended: Callable[[Snapshot], bool]) -> Snapshot | None:
        """`status` every `poll_s` until `ended` says so (that snapshot), or None at the
        deadline."""
        end = time.monotonic() + timeout_s
        while True:
            snap = self.status(test_id)
            if ended(snap):
                return snap
            if time.monotonic() >= end:
                return None
            time.sleep(poll_s)

    def final_results(self, snap: Snapshot) -> dict[str, Any]:
        """The ended run's results as `GET /v1/tests/<id>/results` gives them, as far as
        this backend knows them (without a server: the worker's summary)."""
        return {"summary": snap.summary} if snap.summary else {}

    def results(self, test_id: str) -> dict[str, Any]:
        raise self._needs_server("results")

    def results_raw(self, test_id: str, fmt: str) -> bytes:
        raise self._needs_server("results")

    def compare(self, a: str, b: str | None, ratio: float, min_delta_s: float
                ) -> dict[str, Any]:
        raise self._needs_server("compare")

    def refstack_document(self, test_id: str, cpid: str | None = None) -> dict[str, Any]:
        raise self._needs_server("uploading to RefStack")

    def record_upload(self, test_id: str, record: dict[str, Any]) -> dict[str, Any]:
        raise self._needs_server("uploading to RefStack")

    def history(self, test_id: str) -> dict[str, Any]:
        raise self._needs_server("history")

    def test(self, test_id: str) -> dict[str, Any]:
        """The test as the server shows it (GET /v1/tests/<id>: its tempest.conf too)."""
        raise self._needs_server("a test's record")

    def tests(self, states: list[str] | None = None, version: str | None = None,
              limit: int = 50, offset: int = 0, *, guideline: str | None = None,
              target: str | None = None) -> dict[str, Any]:
        """A page of the tests the server keeps, newest first; `guideline` and `target`
        keep the runs of that interop guideline and target."""
        raise self._needs_server("listing tests")

    @staticmethod
    def _needs_server(what: str) -> NeedsServer:
        return NeedsServer(f"{what} needs the status server, which keeps every test: "
                           "set FARM_SERVER_URL (refstack.cfg, environment or --server)")

    # ---- cancel -------------------------------------------------------------------------------
    @abc.abstractmethod
    def cancel(self, test_id: str) -> CancelOutcome:
        """Withdraw a queued test or stop a running one."""

    # ---- the pool -----------------------------------------------------------------------------
    @abc.abstractmethod
    def queue(self) -> list[dict[str, Any]]:
        """Per gearmand: reachable, functions (queued, running, workers), workers."""

    def ping(self, timeout_s: float = 5.0) -> list[PingAnswer]:
        """Every worker answers its own `farm:ping:<id>`; round trips in milliseconds."""
        ids = self.gearman.worker_ids()
        started: list[tuple[str, float, ForegroundJob | None, str | None]] = []
        for worker in sorted(ids):
            t0 = time.perf_counter()
            try:
                started.append((worker, t0, self.gearman.start(ping_function(worker), b""),
                                None))
            except GearmanError as exc:
                started.append((worker, t0, None, str(exc)))
        answers = []
        end = time.monotonic() + timeout_s
        for worker, t0, job, error in started:
            if job is None:
                answers.append(PingAnswer(worker, None, error=error))
                continue
            final = job.wait(max(0.0, end - time.monotonic()))
            rtt = ((job.finished_at or time.perf_counter()) - t0) * 1000
            if final is None or final.kind != "complete":
                answers.append(PingAnswer(worker, None, error="no answer within "
                                          f"{timeout_s:g} s" if final is None else final.kind))
                continue
            try:
                answers.append(PingAnswer(worker, rtt, json.loads(final.data)))
            except ValueError:
                answers.append(PingAnswer(worker, rtt, error="unreadable answer"))
        return answers

    def ping_any(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """`farm:ping`: whichever worker is free first answers."""
        return json.loads(self.gearman.call(PING, b"", timeout_s=timeout_s))  # type: ignore[no-any-return]



def open_farm(config: ClientConfig, gearman: Gearman | None = None) -> Farm:
    """The farm as `config` names it: through the status server when FARM_SERVER_URL is
    set, else straight to gearmand."""
    if config.server_url:  # each imported when used: requests costs a CLI 0.1-0.2 s
        from farm_client.via_server import ViaServer

        return ViaServer(config, gearman=gearman)
    from farm_client.via_gearmand import ViaGearmand

    return ViaGearmand(config, gearman)
