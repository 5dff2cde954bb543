"""The status server's Prometheus metrics (docs/metrics.md has each with its labels).

Under `farm-server serve` every gunicorn process and the monitor write their counts into
one multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, set by `serve` before it forks;
the metrics are made on first use, `m()`, after it), so a scrape of any process adds them
all up. Without it
(tests, `create_app` in a process of its own) the counts are the process's own.

What the store knows is read from it at scrape time (`farm_runs_active`); the queue is
what the monitor saw on its last gearmand poll, not a poll per scrape. Labels are bounded:
Tempest versions, states, outcomes, gearmand addresses; never a test id or a worker id.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from farm_worker.protocol import FINAL_STATE_VALUES, STATE_VALUES

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ACTIVE_STATES = [s for s in STATE_VALUES if s not in FINAL_STATE_VALUES]
CONTENT_TYPE = CONTENT_TYPE_LATEST
# a run lasts from seconds (a dry run) to hours (a full Tempest run)
RUN_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
REPORT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

class Metrics:
    """The metrics this process counts: made on first use, after `serve` has set the
    multiprocess directory (prometheus_client picks its value store when a metric is
    made)."""

    def __init__(self) -> None:
        self.reports = Counter("farm_reports", "Status reports from the workers (POST "
                               "/update-test-status/), by what the server did with them",
                               ["outcome"])
        self.report_seconds = Histogram("farm_report_seconds", "Time to answer a status "
                                        "report", buckets=REPORT_BUCKETS)
        self.runs = Counter("farm_runs", "Runs that ended, by Tempest version and final "
                            "state", ["tempest_version", "state"])
        self.run_duration = Histogram("farm_run_duration_seconds", "A run's time from its "
                                      "first worker report to its final state",
                                      ["tempest_version"], buckets=RUN_BUCKETS)
        self.queue_wait = Histogram("farm_run_queue_wait_seconds", "A run's time from its "
                                    "submission to its first worker report",
                                    ["tempest_version"], buckets=RUN_BUCKETS)
        self.tests = Counter("farm_tests", "Per-test results stored from the workers' "
                             "subunit uploads (a class's setUpClass failing or skipping "
                             "counts as class_failed or class_skipped)", ["result"])
        self.uploads = Counter("farm_uploads", "Uploads of results to RefStack by the "
                               "uploader, by outcome", ["state"])
        self.monitor_actions = Counter("farm_monitor_actions", "What the monitor did to "
                                       "tests that gearmand and the store disagree on",
                                       ["action"])
        self.queue_jobs = Gauge("farm_queue_jobs", "Jobs on a gearmand per Tempest version, "
                                "queued or running, at the monitor's last poll",
                                ["gearmand", "tempest_version", "state"],
                                multiprocess_mode="mostrecent")
        self.queue_workers = Gauge("farm_queue_workers", "Workers registered for a Tempest "
                                   "version on a gearmand, at the monitor's last poll",
                                   ["gearmand", "tempest_version"],
                                   multiprocess_mode="mostrecent")
        self.gearmand_up = Gauge("farm_gearmand_up", "1 when the gearmand answered the "
                                 "monitor's last poll", ["gearmand"],
                                 multiprocess_mode="mostrecent")


_made: list[Metrics] = []
_making = threading.Lock()


def m() -> Metrics:
    """This process's metrics, made once: by the first request of one of its threads (two
    threads making them at once would register every metric twice)."""
    if not _made:
        with _making:
            if not _made:
                if os.environ.get(MULTIPROC_ENV):
                    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
                _made.append(Metrics())
    return _made[0]


class StoreCollector(Collector):
    """What the store holds now, read at scrape time: runs not yet ended, by state."""

    def __init__(self, active: Callable[[], Iterable[tuple[str, int]]]):
        self.active = active

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("farm_runs_active", "Runs not ended, by state",
                                   labels=["state"])
        counts = dict(self.active())
        for state in ACTIVE_STATES:  # each one, at 0 too: a sum is never empty
            family.add_metric([state], counts.get(state, 0))
        yield family


def exposition(active: Callable[[], Iterable[tuple[str, int]]]) -> bytes:
    """The text a scrape gets: every process's counts, and the store's gauges."""
    m()  # every family is shown, at 0 before its first count
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(StoreCollector(active))
    return generate_latest(registry)


class _ThisProcess(Collector):
    """This process's own metrics, where there is no multiprocess directory."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit: a dead process's live gauges go (its counts stay)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def run_ended(tempest_version: str, state: str, queue_wait_s: float | None,
              duration_s: float | None) -> None:
    m().runs.labels(tempest_version, state).inc()
    if queue_wait_s is not None:
        m().queue_wait.labels(tempest_version).observe(max(0.0, queue_wait_s))
    if duration_s is not None:
        m().run_duration.labels(tempest_version).observe(max(0.0, duration_s))


class QueueGauges:
    """The monitor's view of the queue: series it set before and does not see now are
    set to 0 (gearmand forgets a function nobody serves), so none stays at an old value."""

    def __init__(self) -> None:
        self._jobs: set[tuple[str, str, str]] = set()
        self._workers: set[tuple[str, str]] = set()

    def observe(self, gearmand: str, up: bool,
                functions: Iterable[tuple[str, int, int, int]]) -> None:
        """`functions`: (tempest version, queued, running, workers) on that gearmand."""
        gauges = m()
        gauges.gearmand_up.labels(gearmand).set(1 if up else 0)
        jobs: set[tuple[str, str, str]] = set()
        workers: set[tuple[str, str]] = set()
        for version, queued, running, registered in functions:
            for state, value in (("queued", queued), ("running", running)):
                gauges.queue_jobs.labels(gearmand, version, state).set(value)
                jobs.add((gearmand, version, state))
            gauges.queue_workers.labels(gearmand, version).set(registered)
            workers.add((gearmand, version))
        for key in {k for k in self._jobs if k[0] == gearmand} - jobs:
            gauges.queue_jobs.labels(*key).set(0)
        for wkey in {k for k in self._workers if k[0] == gearmand} - workers:
            gauges.queue_workers.labels(*wkey).set(0)
        self._jobs = {k for k in self._jobs if k[0] != gearmand} | jobs
        self._workers = {k for k in self._workers if k[0] != gearmand} | workers
