"""A worker's Prometheus metrics, served when worker.yaml sets `metrics_port` (on
`metrics_address`, loopback by default; a host's slot N serves on metrics_port + N - 1).

Where a job's time goes, phase by phase; the jobs by final state; what the worker has
prepared and holds (the cache, the outbox); whether it is busy. No test id in a label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PHASES = ("env", "conf", "list", "run", "upload", "cleanup")
PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200)


class _Outbox(Collector):
    """The outbox's depth, read at scrape time from the courier (memory, no disk)."""

    def __init__(self, depth: Callable[[], dict[str, Any] | None]):
        self.depth = depth

    def collect(self) -> Iterator[Metric]:
        d = self.depth() or {"entries": 0, "bytes": 0, "full": False}
        for name, key, text in (
                ("farm_worker_outbox_entries", "entries", "reports and uploads owed"),
                ("farm_worker_outbox_bytes", "bytes", "bytes owed, subunit files included"),
                ("farm_worker_outbox_full", "full", "1 when the outbox is at its size cap")):
            yield GaugeMetricFamily(name, f"The worker's outbox: {text}", value=float(d[key]))


class WorkerMetrics:
    def __init__(self, outbox_depth: Callable[[], dict[str, Any] | None]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.phase_seconds = Histogram("farm_worker_phase_seconds", "Time of a job's phases: "
                                       "env (the environment), conf (fetching and writing "
                                       "tempest.conf, discovery and preflight included), "
                                       "list (selecting the tests), run (Tempest), upload, "
                                       "cleanup", ["phase"], buckets=PHASE_BUCKETS,
                                       registry=r)
        self.jobs = Counter("farm_worker_jobs", "Jobs this worker process ended, by final "
                            "state", ["state"], registry=r)
        self.busy = Gauge("farm_worker_busy", "1 while the worker runs a job", registry=r)
        self.versions = Gauge("farm_worker_versions", "1 for each Tempest version the worker "
                              "serves", ["tempest_version"], registry=r)
        self.cache_bytes = Gauge("farm_worker_cache_bytes", "Bytes in the environment cache "
                                 "(templates and wheelhouses), measured after each job",
                                 registry=r)
        r.register(_Outbox(outbox_depth))

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", address, port)

    def phase(self, name: str, seconds: float) -> None:
        self.phase_seconds.labels(name).observe(max(0.0, seconds))

    def serving(self, versions: list[str]) -> None:
        for version in versions:
            self.versions.labels(version).set(1)
