"""The farm as a library: submit, watch, cancel and look at test runs.

`Farm` talks to the status server when one is configured (FARM_SERVER_URL): the server
keeps every test, its history and results, and workers fetch the cloud config from it, so
passwords never ride the queue. Without a server it talks to gearmand directly with
self-contained payloads; then gearmand is all there is to ask, so `list` and `results` need
a server, and `watch` sees only gearman's progress.

    farm = Farm(load_client_config())
    sub = farm.submit(payload_doc)                # queued: sub.test_id, sub.handle
    for snap in farm.watch(sub.test_id):          # live: state, done/total, counts
        ...
    farm.cancel(sub.test_id)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from farm_client.api import APIError, FarmAPI
from farm_client.config import ClientConfig
from farm_client.exceptions import FarmClientError, NoSuchTest
from farm_client.gearman_client import (
    ForegroundJob,
    Gearman,
    GearmanError,
    Update,
    served_versions,
)
from farm_worker.exceptions import FieldError, PayloadError
from farm_worker.protocol import (
    EXIT_ERROR,
    FINAL_STATE_VALUES,
    PING,
    Summary,
    TestState,
    cancel_function,
    exit_code,
    parse_payload,
    parse_version,
    ping_function,
    run_function,
    show,
)


class NotRegistered(FarmClientError):
    """No worker serves the requested Tempest version."""

    def __init__(self, version: str, registered: list[str]) -> None:
        super().__init__(f"no worker serves {run_function(version)}; registered versions: "
                         + (", ".join(registered) or "none")
                         + " (--queue-anyway queues it regardless)")
        self.version, self.registered = version, registered


class Duplicate(FarmClientError):
    """The test id is taken: the farm runs a test id once."""


class NeedsServer(FarmClientError):
    """Only the status server knows this (set FARM_SERVER_URL)."""


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
    done: int | None = None
    total: int | None = None
    current: str | None = None
    passed: int = 0
    failed: int = 0
    skipped: int = 0
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
    p, s = view.get("progress") or {}, view.get("summary") or {}
    return Snapshot(view["id"], view["state"], p.get("done"), p.get("total"), p.get("current"),
                    s.get("passed") or 0, s.get("failed") or 0, s.get("skipped") or 0,
                    view.get("worker"), view.get("message") or "",
                    _epoch(view.get("started_at")))


def apply_update(snap: Snapshot, update: Update) -> Snapshot:
    """A foreground job's update (WORK_DATA event, WORK_STATUS, the end) on a Snapshot."""
    if update.kind == "status":
        return replace(snap, done=update.done, total=update.total)
    if update.kind == "data":
        try:
            event = json.loads(update.data)
        except ValueError:
            return snap
        if not isinstance(event, dict):
            return snap
        if event.get("event") == "state":
            started = snap.started
            if event.get("state") == TestState.RUNNING.value and started is None:
                started = float(event.get("time") or time.time())
            return replace(snap, state=str(event.get("state")), worker=event.get("worker"),
                           message=str(event.get("message") or ""), started=started)
        if event.get("event") == "progress":
            return replace(snap, done=event.get("done"), total=event.get("total"),
                           current=event.get("current"), passed=event.get("passed", 0),
                           failed=event.get("failed", 0), skipped=event.get("skipped", 0))
        return snap
    if update.kind == "complete":
        try:
            summary = Summary.from_dict(json.loads(update.data))
        except (ValueError, KeyError, TypeError) as exc:
            return replace(snap, state=TestState.ERROR.value,
                           message=f"unreadable summary from the worker: {exc}")
        return replace(snap, state=summary.state.value, passed=summary.passed,
                       failed=summary.failed, skipped=summary.skipped,
                       done=summary.total or snap.done, total=summary.total or snap.total,
                       worker=summary.worker or snap.worker, message=summary.message,
                       summary=summary.to_dict())
    if update.kind == "exception":
        return replace(snap, state=TestState.ERROR.value,
                       message=f"worker exception: {update.data.decode(errors='replace')}")
    if update.kind == "fail":
        return replace(snap, state=TestState.ERROR.value,
                       message="gearmand failed the job (withdrawn, or its workers died "
                               "too often)")
    return replace(snap, state=TestState.ERROR.value,
                   message="lost the connection to gearmand while waiting; the run may "
                           "go on: farm status " + snap.test_id)


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


class Farm:
    """The client side of the farm, with or without a status server."""

    def __init__(self, config: ClientConfig, api: FarmAPI | None = None,
                 gearman: Gearman | None = None) -> None:
        self.config = config
        self.api = api or (FarmAPI(config.server_url, config.token)
                           if config.server_url else None)
        self.gearman = gearman or Gearman(config.gearman_servers)

    def close(self) -> None:
        self.gearman.close()

    def _need_api(self, what: str) -> FarmAPI:
        if self.api is None:
            raise NeedsServer(f"{what} needs the status server, which keeps every test: "
                              "set FARM_SERVER_URL (refstack.cfg, environment or --server)")
        return self.api

    # ---- submit -------------------------------------------------------------------------------
    def registered_versions(self) -> set[str]:
        """Tempest versions some worker serves (through the server, when there is one)."""
        if self.api is None:
            return set(self.gearman.registered_versions())
        return set(served_versions((f["name"], f["workers"])
                                   for server in self.queue() for f in server["functions"]))

    def check_registered(self, version: str) -> None:
        registered = self.registered_versions()
        if version not in registered:
            raise NotRegistered(version, sorted(registered, key=parse_version))

    def submit(self, doc: dict[str, Any], queue_anyway: bool = False) -> Submitted:
        """Queue a background job. Raises NotRegistered, Duplicate or PayloadError."""
        doc = read_payload(doc, server_mode=self.api is not None)
        test_id, version = doc["test_id"], doc["tempest"]["version"]
        function = run_function(version)
        if self.api is not None:
            try:
                view = self.api.create_test(doc, queue_anyway)
            except APIError as exc:
                if exc.status == 422:
                    raise NotRegistered(version, exc.body.get("registered", [])) from None
                if exc.status == 409:
                    raise Duplicate(str(exc)) from None
                raise
            return Submitted(view["id"], function, "server", server=None)
        if not queue_anyway:
            self.check_registered(version)
        self._refuse_duplicate(test_id)
        payload = parse_payload(doc).encode()
        server, handle = self.gearman.submit(function, payload, unique=test_id)
        return Submitted(test_id, function, "gearman", handle, str(server))

    def _refuse_duplicate(self, test_id: str) -> None:
        found, _ = self.gearman.locate(test_id)
        if found is not None:
            state = "running" if found.running else "queued"
            raise Duplicate(f"test_id: {show(test_id)} is already {state} on gearmand "
                            f"{found.server}; the farm runs a test id once")

    def run(self, doc: dict[str, Any], queue_anyway: bool = False) -> tuple[Submitted,
                                                                            ForegroundJob]:
        """Without a server: a foreground job whose updates stream back (`--wait`)."""
        doc = read_payload(doc, server_mode=False)
        test_id, version = doc["test_id"], doc["tempest"]["version"]
        if not queue_anyway:
            self.check_registered(version)
        self._refuse_duplicate(test_id)
        function = run_function(version)
        job = self.gearman.start(function, parse_payload(doc).encode(), unique=test_id)
        return Submitted(test_id, function, "gearman", job.handle, str(job.server)), job

    # ---- follow -------------------------------------------------------------------------------
    def status(self, test_id: str) -> Snapshot:
        if self.api is not None:
            try:
                return snapshot_of(self.api.test(test_id)["test"])
            except APIError as exc:
                if exc.status == 404:
                    raise NoSuchTest(test_id) from None
                raise
        found, _ = self.gearman.locate(test_id)
        if found is None:
            return Snapshot(test_id, "unknown", message="not queued or running on any "
                            "gearmand: finished, or never submitted (the status server "
                            "keeps finished tests)")
        return Snapshot(test_id, "running" if found.running else "queued",
                        done=found.done or None, total=found.total or None,
                        where=str(found.server))

    def watch(self, test_id: str, interval_s: float = 0.5) -> Iterator[Snapshot]:
        """A snapshot every `interval_s` while the test runs, ending with a final one
        (server), or when it leaves gearmand's queue (no server: its final state is not
        known here)."""
        while True:
            snap = self.status(test_id)
            yield snap
            if snap.final or snap.state == "unknown":
                return
            time.sleep(interval_s)

    def follow(self, job: ForegroundJob, test_id: str) -> Iterator[Snapshot]:
        """Snapshots of a foreground job (`run`) until its end; yields the last one again
        every quarter second so a display can tick."""
        snap = Snapshot(test_id, TestState.QUEUED.value, where=str(job.server))
        for update in job.updates():
            if update is not None:
                snap = apply_update(snap, update)
            yield snap

    def results(self, test_id: str) -> dict[str, Any]:
        return self._need_api("results").results(test_id)

    def refstack_document(self, test_id: str, cpid: str | None = None) -> dict[str, Any]:
        return self._need_api("uploading to RefStack").refstack_document(test_id, cpid)

    def record_upload(self, test_id: str, record: dict[str, Any]) -> dict[str, Any]:
        return self._need_api("uploading to RefStack").record_upload(test_id, record)

    def results_raw(self, test_id: str, fmt: str) -> bytes:
        return self._need_api("results").results_raw(test_id, fmt)

    def history(self, test_id: str) -> dict[str, Any]:
        return self._need_api("history").test(test_id)

    def tests(self, states: list[str] | None = None, version: str | None = None,
             limit: int = 50) -> dict[str, Any]:
        return self._need_api("farm list").tests(states, version, limit)

    # ---- cancel -------------------------------------------------------------------------------
    def cancel(self, test_id: str) -> CancelOutcome:
        if self.api is not None:
            try:
                doc = self.api.cancel(test_id)
            except APIError as exc:
                if exc.status in (404, 409):
                    return CancelOutcome(test_id, "nothing", str(exc).split(": ", 1)[-1],
                                         (exc.body.get("test") or {}).get("state"))
                raise
            removed = doc.get("cancel") == "removed from the queue"
            return CancelOutcome(test_id, "removed" if removed else "requested",
                                 "removed from the queue: it will never start" if removed
                                 else "cancel requested: the worker stops it (a queued test "
                                      "is stopped before Tempest starts)",
                                 doc["test"]["state"])
        found, _ = self.gearman.locate(test_id)
        if found is None:
            return CancelOutcome(test_id, "nothing", f"nothing to cancel: {test_id} is not "
                                 "queued or running on any gearmand (finished or unknown)")
        server, handle = self.gearman.submit(cancel_function(test_id), b"",
                                             unique=f"cancel-{test_id}")
        # it may have ended meanwhile: then no worker takes the cancel job; withdraw it
        again, _ = self.gearman.locate(test_id)
        if again is None:
            self.gearman.cancel_queued(server, handle)
            return CancelOutcome(test_id, "nothing", f"nothing to cancel: {test_id} ended "
                                 "meanwhile")
        return CancelOutcome(test_id, "requested",
                             f"cancel sent to the worker running {test_id}" if again.running
                             else f"cancel queued: {test_id} stops before Tempest starts, the "
                                  "moment a worker takes it",
                             "running" if again.running else "queued")

    def wait_gone(self, test_id: str, timeout_s: float) -> bool:
        """Without a server: until the test has left gearmand's queue."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.gearman.locate(test_id)[0] is None:
                return True
            time.sleep(0.2)
        return False

    # ---- the pool -----------------------------------------------------------------------------
    def queue(self) -> list[dict[str, Any]]:
        """Per gearmand: reachable, functions (queued, running, workers), workers."""
        if self.api is not None:
            return list(self.api.queue()["servers"])
        out: list[dict[str, Any]] = []
        for server in self.gearman.servers:
            try:
                out.append({"server": str(server), "reachable": True,
                            "functions": [f.__dict__ for f in self.gearman.status(server)],
                            "workers": self.gearman.workers(server)})
            except GearmanError as exc:
                out.append({"server": str(server), "reachable": False, "error": str(exc),
                            "functions": [], "workers": []})
        return out

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

