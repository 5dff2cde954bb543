"""The monitor: the store is the truth about tests, gearmand the truth about jobs; this
reconciles the two, so no test stays `queued` or `running` forever.

- A `queued` test whose job no gearmand knows (restarted without persistence, job lost)
  is resubmitted with the same unique (gearmand merges it with a job that still exists);
  after three resubmissions it ends `error`: workers take the job but cannot report.
  Only a test whose job was queued before gearmand was asked is judged: the store is read
  once before that question and once after, and a test created, or queued again, in
  between waits for the next pass. A test stored but never queued (the server stopped
  between the two) is queued once it is `stale_after_s` old.
- A test in `installing`/`running`/`uploading` that has not reported for `stale_after_s`:
  if gearmand queues its job again (the worker died, gearmand re-queued it), it goes back
  to `queued`; if no gearmand knows the job any more, it ends `error` ("worker lost").
- A cancel job left in the queue after its test ended is removed.
Everything it does is written into the test's history (source `monitor`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from farm_client.gearman_client import Gearman, GearmanError, Server
from farm_server import metrics
from farm_server.holders import holder_keeps, keepers
from farm_server.jobs import job_of
from farm_server.lifecycle import RUNNING_STATES, WORKER_LOST, Report
from farm_server.models import TestRow, utcnow
from farm_server.periodic import Periodic
from farm_server.queue import functions as queue_functions
from farm_server.store import Store, as_utc
from farm_worker.protocol import (
    TestState,
    run_function,
    version_of_function,
)

log = logging.getLogger(__name__)

RESUBMITTED = "resubmitted"
MAX_RESUBMITS = 3  # a job that keeps vanishing is consumed by workers that cannot report


# an action sentence's first word -> the metrics' `action` label (a bounded set)
_ACTIONS = {"resubmitted": "resubmitted", "resubmitting": "resubmit_failed",
            "error": "error", "queued": "queued", "not": "not_checked"}


def action_label(sentence: str) -> str:
    return _ACTIONS.get(sentence.split(" ", 1)[0], "other")


class Monitor(Periodic):
    name = "monitor"

    def __init__(self, store: Store, gearman: Gearman, stale_after_s: float, callback_url: str,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        super().__init__()
        self.store = store
        self.gearman = gearman
        self.stale_after_s = stale_after_s
        self.callback_url = callback_url
        self.clock = clock
        self.max_resubmits = MAX_RESUBMITS
        self.queue = metrics.QueueGauges()
        self._kept: set[str] = set()  # queued tests a worker said it had (logged once)
        self._keepers: dict[str, str] | None = None  # this pass's answers of the workers

    def run_once(self) -> list[str]:
        """One pass over the tests that are not final; what it did, as sentences."""
        self.store.forget_ended_secrets()
        # read before gearmand is asked: a queued test's job was submitted before this
        before = {test.id: test for test in self.store.active()}
        self._kept &= set(before)
        self._keepers = None
        uniques: set[str] = set()
        for server in self.gearman.servers:
            try:
                uniques |= self.gearman.unique_jobs(server)
            except GearmanError as exc:
                self.queue.observe(str(server), False, [])
                log.warning("monitor: %s; not deciding anything this round", exc)
                return []
            self._observe_queue(server)
        actions = []
        for test in self.store.active():  # read after: what ended since is not judged
            try:
                action = self._check(test, before.get(test.id), uniques)
            except GearmanError as exc:
                action = f"not checked: {exc}"
            if action:
                actions.append(f"{test.id}: {action}")
                metrics.m().monitor_actions.labels(action_label(action)).inc()
        actions += self._clean_cancel_jobs()
        for line in actions:
            log.info("monitor: %s", line)
        return actions

    def _observe_queue(self, server: Server) -> None:
        """The queue per Tempest version on one gearmand, for the metrics."""
        try:
            found = queue_functions(self.gearman, self.store, server)
        except GearmanError:
            self.queue.observe(str(server), False, [])
            return
        rows = []
        for f in found.functions:
            version = version_of_function(f["name"])
            if version is not None:
                rows.append((version, max(0, f["queued"] - f["running"]), f["running"],
                             f["workers"]))
        self.queue.observe(str(server), True, rows)

    def _silent_for(self, test: TestRow) -> float:
        last = as_utc(test.last_report_at or test.updated_at or test.created_at)
        return (self.clock() - last).total_seconds() if last else 0.0

    def _check(self, test: TestRow, before: TestRow | None, uniques: set[str]) -> str | None:
        state = TestState(test.state)
        known = test.id in uniques
        if state is TestState.QUEUED:
            if known or before is None or before.state != test.state or \
                    (before.gearman_server, before.gearman_handle) != \
                    (test.gearman_server, test.gearman_handle):
                return None  # known, or its job may have been queued after gearmand was asked
            if test.gearman_handle is None:
                if self._silent_for(test) < self.stale_after_s:
                    return None  # the server is queueing it now
                return self._resubmit(test, "stored but never queued")
            tries = self.store.count_reports(test.id, "monitor", RESUBMITTED)
            if tries >= self.max_resubmits:
                message = (f"the job vanished from gearmand {tries + 1} times without a "
                           "report from a worker: can the workers reach "
                           f"{self.callback_url}?")
                self.store.apply(test.id, Report(TestState.ERROR, message, None),
                                 source="monitor")
                return f"error ({message})"
            if self._keepers is None:  # asked once a pass, only when a job vanished
                self._keepers = keepers(self.gearman)
            held_by = self._keepers.get(test.id)
            if held_by is not None:  # it ran while this server was away: its reports come
                if test.id not in self._kept:
                    self._kept.add(test.id)
                    log.info("test %s: gearmand no longer has its job, and worker %s runs "
                             "it or owes its reports: not queued again", test.id, held_by)
                return None
            return self._resubmit(test, "gearmand no longer had the job")
        if state not in RUNNING_STATES or self._silent_for(test) < self.stale_after_s:
            return None
        silent = f"no report for {self._silent_for(test):.0f} s"
        if not known:
            if test.worker and holder_keeps(self.gearman, test.worker, test.id):
                return None  # its worker has it, or owes its reports: not lost, only late
            message = f"{WORKER_LOST}{silent} and no gearmand has the job any more"
            self.store.apply(test.id, Report(TestState.ERROR, message, None), source="monitor")
            return f"error ({message})"
        # asked by test id (GET_STATUS_UNIQUE), not by handle: handles change when gearmand
        # restarts, and learning the new one by submitting the job again would start a
        # second run if the job ended since the snapshot above
        found = self.gearman.locate(test.id)
        if found is None:
            return None  # it ended since this pass began: the next pass sees its report
        if not found.running:  # the worker died and gearmand queued the job again
            message = f"queued again by gearmand: the worker was lost ({silent})"
            self.store.apply(test.id, Report(TestState.QUEUED, message, None),
                             source="monitor")
            return f"queued ({message})"
        return None

    def _resubmit(self, test: TestRow, why: str) -> str:
        job = job_of(test, self.callback_url)
        try:
            server, handle = self.gearman.submit(run_function(test.tempest_version),
                                                 job.encode(), unique=test.id)
        except GearmanError as exc:
            return f"resubmitting failed: {exc}"
        self.store.set_job(test.id, str(server), handle)
        tries = self.store.count_reports(test.id, "monitor", RESUBMITTED) + 1
        self.store.apply(test.id, Report(TestState.QUEUED,
                                         f"{RESUBMITTED} (#{tries}) to {server}: {why}", None),
                         source="monitor")
        return f"resubmitted ({why})"

    def _clean_cancel_jobs(self) -> list[str]:
        done = []
        for test in self.store.leftover_cancel_jobs():
            assert test.cancel_server and test.cancel_handle
            self.gearman.cancel_queued(Server.parse(test.cancel_server), test.cancel_handle)
            self.store.set_cancel_job(test.id, None, None)
            done.append(f"{test.id}: removed the cancel job left after {test.state}")
            metrics.m().monitor_actions.labels("cancel_job_removed").inc()
        return done

