"""The farm straight to gearmand (no status server): self-contained payloads, and gearmand
is all there is to ask (while a test is queued or running)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from farm_client.exceptions import Duplicate
from farm_client.farm import GONE, CancelOutcome, Farm, Run, Snapshot, Submitted
from farm_client.gearman_client import ForegroundJob, GearmanError, Server, Update
from farm_worker.protocol import (
    Counts,
    ProgressEvent,
    StateEvent,
    Summary,
    TestState,
    cancel_function,
    parse_event,
    parse_payload,
    run_function,
    show,
)


def apply_update(snap: Snapshot, update: Update) -> Snapshot:
    """A foreground job's update (WORK_DATA event, WORK_STATUS, the end) on a Snapshot."""
    if update.kind == "status":
        return replace(snap, counts=replace(snap.counts, done=update.done, total=update.total))
    if update.kind == "data":
        try:
            event = parse_event(update.data)
        except ValueError:
            return snap  # a damaged event changes nothing; the summary will tell
        if isinstance(event, StateEvent):
            started = snap.started
            if event.state is TestState.RUNNING and started is None:
                started = event.time or time.time()
            return replace(snap, state=event.state.value, worker=event.worker or None,
                           message=event.message, started=started)
        if isinstance(event, ProgressEvent):
            return replace(snap, counts=event.counts, current=event.current)
        return snap
    if update.kind == "complete":
        try:
            summary = Summary.from_dict(json.loads(update.data))
        except (ValueError, KeyError, TypeError) as exc:
            return replace(snap, state=TestState.ERROR.value,
                           message=f"unreadable summary from the worker: {exc}")
        return replace(snap, state=summary.state.value, counts=summary.counts,
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


class ViaGearmand(Farm):
    via = "gearman"

    def registered_versions(self) -> set[str]:
        return set(self.gearman.registered_versions())

    def _admitted(self, doc: dict[str, Any], queue_anyway: bool) -> dict[str, Any]:
        doc = self.read_payload(doc)
        if not queue_anyway:
            self.check_registered(doc["tempest"]["version"])
        found = self.gearman.locate(doc["test_id"])
        if found is not None:
            state = "running" if found.running else "queued"
            raise Duplicate(f"test_id: {show(doc['test_id'])} is already {state} on gearmand "
                            f"{found.server}; the farm runs a test id once")
        return doc

    def submit(self, doc: dict[str, Any], queue_anyway: bool = False) -> Submitted:
        doc = self._admitted(doc, queue_anyway)
        test_id, function = doc["test_id"], run_function(doc["tempest"]["version"])
        server, handle = self.gearman.submit(function, parse_payload(doc).encode(),
                                             unique=test_id)
        return Submitted(test_id, function, self.via, handle, str(server))

    def start(self, doc: dict[str, Any], queue_anyway: bool = False) -> Run:
        """A foreground job whose updates stream back from the worker."""
        doc = self._admitted(doc, queue_anyway)
        test_id, function = doc["test_id"], run_function(doc["tempest"]["version"])
        job = self.gearman.start(function, parse_payload(doc).encode(), unique=test_id)
        return Run(Submitted(test_id, function, self.via, job.handle, str(job.server)),
                   self._follow(job, test_id), job=job)

    def _follow(self, job: ForegroundJob, test_id: str) -> Iterator[Snapshot]:
        """Snapshots of a foreground job until its end; the last one again every quarter
        second so a display can tick."""
        snap = Snapshot(test_id, TestState.QUEUED.value, where=str(job.server))
        for update in job.updates():
            if update is not None:
                snap = apply_update(snap, update)
            yield snap

    def status(self, test_id: str) -> Snapshot:
        found = self.gearman.locate(test_id)
        if found is None:
            return Snapshot(test_id, GONE, message="not queued or running on any "
                            "gearmand: finished, or never submitted (the status server "
                            "keeps finished tests)")
        return Snapshot(test_id, "running" if found.running else "queued",
                        counts=Counts(total=found.total, done=found.done),
                        where=str(found.server))

    def wait(self, test_id: str, timeout_s: float, run: Run | None = None,
             poll_s: float = 0.2) -> Snapshot | None:
        if run is None or run.job is None:
            return self._poll(test_id, timeout_s, poll_s, lambda snap: snap.state == GONE)
        # the worker's own word: until WORK_COMPLETE, whose summary comes after the final
        # state event (the worker cleans up in between)
        end = time.monotonic() + timeout_s
        last: Snapshot | None = None
        for snap in run.snapshots:
            last = snap
            if run.job.final is not None or time.monotonic() >= end:
                break
        return last if last is not None and last.final else None

    def cancel(self, test_id: str) -> CancelOutcome:
        found = self.gearman.locate(test_id)
        if found is None:
            return CancelOutcome(test_id, "nothing", f"nothing to cancel: {test_id} is not "
                                 "queued or running on any gearmand (finished or unknown)")
        server, handle = self.gearman.submit(cancel_function(test_id), b"",
                                             unique=f"cancel-{test_id}")
        # it may have ended meanwhile: then no worker takes the cancel job; withdraw it
        again = self.gearman.locate(test_id)
        if again is None:
            self.gearman.cancel_queued(server, handle)
            return CancelOutcome(test_id, "nothing", f"nothing to cancel: {test_id} ended "
                                 "meanwhile")
        return CancelOutcome(test_id, "requested",
                             f"cancel sent to the worker running {test_id}" if again.running
                             else f"cancel queued: {test_id} stops before Tempest starts, the "
                                  "moment a worker takes it",
                             "running" if again.running else "queued")

    def queue(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for server in self.gearman.servers:
            try:
                ignored = self._withdrawn(server)
                out.append({"server": str(server), "reachable": True,
                            "functions": [dict(f.__dict__, withdrawn=0)
                                          for f in self.gearman.status(server)],
                            "workers": self.gearman.workers(server),
                            "withdrawn": ignored, "withdrawn_unknown": ignored})
            except GearmanError as exc:
                out.append({"server": str(server), "reachable": False, "error": str(exc),
                            "functions": [], "workers": []})
        return out

    def _withdrawn(self, server: Server) -> int:
        """Jobs withdrawn with `cancel job`, which gearmand counts (ignored) until a worker
        takes them; which function each belongs to only a status server knows. 0 from a
        job server without the `show jobs` command (the embedded one)."""
        try:
            return len(self.gearman.withdrawn(server))
        except GearmanError:
            return 0
