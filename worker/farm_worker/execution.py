"""The worker around its jobs: validate a payload, run it as a `Job`, clean what a killed
worker left, prune old results.

The gearman worker and `farm-worker execute` both call `JobRunner.execute`; they differ
only in the hooks they pass (where events go, how the cancel function is held).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm_worker.config import WorkerConfig
from farm_worker.courier import Courier
from farm_worker.environments import EnvironmentCache
from farm_worker.exceptions import FieldError, PayloadError
from farm_worker.fsutil import remove_tree
from farm_worker.isolation import mounts_under, unmount
from farm_worker.job import CancelEvent, Job, JobHooks
from farm_worker.logs import TestLog
from farm_worker.outbox import Outbox, OutboxBusy
from farm_worker.processes import kill_stale_group
from farm_worker.protocol import (
    Payload,
    Summary,
    TestState,
    parse_payload,
    salvage_test_id,
    show,
    state_event,
)

log = logging.getLogger(__name__)

__all__ = ["CancelEvent", "JobHooks", "JobRunner"]


@dataclass
class JobRunner:
    """Everything a job needs from the worker around it."""

    config: WorkerConfig
    cache: EnvironmentCache
    isolation: str
    clock: Callable[[], float] = time.monotonic
    courier: Courier | None = None  # delivers the outbox; started on first need
    # when another process holds this worker id's outbox (`farm-worker execute` beside a
    # running worker of the same id), use one of this process's own beside it
    share_outbox: bool = False
    # how long a job waits for its reports at its end (None: report_flush_s); a one-shot
    # `execute` waits once, at exit, for the whole outbox instead
    job_flush_s: float | None = None
    # where a job's phases (env, conf, list, run, upload, cleanup) report their seconds
    on_phase: Callable[[str, float], None] = lambda _phase, _seconds: None

    def start_courier(self, directory: Path | None = None) -> int:
        """Start delivering the outbox in `directory` (this worker id's by default); how
        many entries an earlier process left."""
        if self.courier is not None:
            return 0
        directory = directory or self.config.outbox
        courier = self._courier(directory)
        try:
            owed = courier.start()
        except OutboxBusy:
            if not self.share_outbox:
                raise
            courier = self._courier(directory.with_name(f"{directory.name}.{os.getpid()}"))
            owed = courier.start()
        self.courier = courier
        return owed

    def _courier(self, directory: Path) -> Courier:
        c = self.config
        return Courier(Outbox(directory), c.token_for, keep_s=c.outbox_keep_s,
                       max_bytes=c.outbox_max_size, backoff_max_s=c.report_backoff_max_s)

    def stop_courier(self, wait_s: float, stop: threading.Event | None = None) -> int:
        """Before the process exits: wait up to `wait_s` for what is owed, stop delivering;
        the number of entries left in the outbox (delivered by the next process)."""
        if self.courier is None:
            return 0
        courier, self.courier = self.courier, None
        left = courier.wait(wait_s, stop=stop)
        courier.stop()
        entries = int(courier.depth()["entries"])
        if entries:
            log.warning("%d entries left in the outbox %s: the next start of this worker "
                        "(or `farm-worker outbox flush`) delivers them", entries,
                        courier.outbox.root)
        elif left == 0 and courier.outbox.root.name.endswith(f".{os.getpid()}"):
            courier.outbox.remove_dir()
        return entries

    @property
    def worker_dir(self) -> Path:
        return self.config.work_dir / self.config.worker_id

    def partial_result(self, test_id: str) -> Path:
        """Where a running job writes its subunit stream; renamed when complete. Named by
        worker id: slots share results_dir, and each cleans only its own."""
        return self.config.results_dir / f".{self.config.worker_id}.{test_id}.subunit.part"

    def clean_stale(self) -> list[Path]:
        """Remove what a killed worker left: processes, mounts and files in its work
        directory, its partial results."""
        removed: list[Path] = []
        if self.config.results_dir.is_dir():
            for part in self.config.results_dir.glob(f".{self.config.worker_id}.*.subunit.part"):
                part.unlink(missing_ok=True)
                removed.append(part)
                log.warning("removed %s left by an earlier worker", part)
        if not self.worker_dir.exists():
            return removed
        for job_dir in sorted(p for p in self.worker_dir.iterdir() if p.is_dir()):
            kill_stale_group(job_dir / "pgid", job_dir)
            for point in mounts_under(job_dir):
                unmount(point)
            remove_tree(job_dir)
            removed.append(job_dir)
            log.warning("removed %s left by an earlier worker", job_dir)
        return removed

    def prune_results(self, keep_days: float) -> None:
        limit = time.time() - keep_days * 86400
        for path in self.config.results_dir.glob("*.subunit"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except OSError:
                pass

    def execute(self, raw: bytes | str | Mapping[str, Any], cancel: CancelEvent,
                hooks: JobHooks | None = None, function_version: str | None = None) -> Summary:
        """Run one job to a final state and return its summary.

        A payload that cannot run ends `rejected`; infrastructure and configuration
        problems end `error`; an unexpected exception is reported as `error` and raised.
        """
        started = self.clock()
        hooks = hooks or JobHooks()
        try:
            payload = self._validate(raw, function_version)
        except PayloadError as exc:
            test_id = salvage_test_id(raw)
            TestLog(log, test_id or "?").warning("rejected: %s", exc)
            hooks.emit(state_event(test_id, TestState.REJECTED, self.config.worker_id,
                                   str(exc)))
            return Summary(test_id, TestState.REJECTED, message=str(exc), field=exc.field,
                           worker=self.config.worker_id, duration_s=self.clock() - started)
        return Job(self, payload, cancel, hooks, started).run()

    def _validate(self, raw: bytes | str | Mapping[str, Any],
                  function_version: str | None) -> Payload:
        payload = parse_payload(raw)
        if function_version is not None and payload.tempest_version != function_version:
            raise PayloadError([FieldError(
                "tempest.version", f"{show(payload.tempest_version)} does not match the "
                                   f"function's version {function_version}")])
        if payload.callback is not None and self.config.callbacks \
                and self.config.callback_auth(payload.callback.url) is None:
            raise PayloadError([FieldError(
                "callback.url", f"{show(payload.callback.url)} is not a callback this worker "
                                "reports to (worker.yaml: callbacks)")])
        return payload
