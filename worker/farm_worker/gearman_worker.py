"""The gearman side of the worker: the only module that imports gear.

Two gear.Worker connections per process (FIELD_NOTES: a second connection in its own
thread receives cancels while the main thread runs a job):
- `jobs`: `tempest:run:<version>` for each prepared version (and `tempest:run` when
  installs on demand are on); the main thread takes one job at a time.
- `control`: `farm:ping`, `farm:ping:<worker id>` and, while a test is held,
  `tempest:cancel:<test id>`; a thread answers those at once, even mid-job.
gear never sets TCP_NODELAY; without it every round trip costs ~40 ms (FIELD_NOTES).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import gear

from farm_worker import defaults
from farm_worker.execution import CancelEvent, JobHooks, JobRunner
from farm_worker.logs import TestLog
from farm_worker.protocol import (
    CANCEL_PREFIX,
    PING,
    RUN_ANY,
    Summary,
    cancel_function,
    encode_event,
    ping_function,
    run_function,
    version_of_function,
)

if TYPE_CHECKING:
    from farm_worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class _NoDelayConnection(gear.Connection):  # type: ignore[misc]
    def connect(self) -> None:
        super().connect()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _GearWorker(gear.Worker):  # type: ignore[misc]
    """gear.Worker with TCP_NODELAY, without gear's crash on a stray ERROR packet, and
    with (un)registration safe while another thread waits in getJob()."""

    def registerFunction(self, name: str, timeout: Any = None) -> None:
        # gear's registerFunction wakes a sleeping connection (SLEEP -> IDLE, GRAB_JOB,
        # GRAB_WAIT) without its job_lock. On loopback with TCP_NODELAY gearmand's NO_JOB
        # can be handled by the poll thread before GRAB_WAIT is set: gear then ignores it,
        # never sends PRE_SLEEP, and gearmand never wakes this connection again, so a
        # cancel job for the test just registered waits forever. The poll thread handles
        # NO_JOB and NOOP under job_lock: holding it here closes the race.
        with self.job_lock:
            super().registerFunction(name, timeout)

    def unRegisterFunction(self, name: str) -> None:
        with self.job_lock:
            super().unRegisterFunction(name)

    def addServer(self, host: str, port: int = defaults.GEARMAN_PORT, *args: Any,
                  **kwargs: Any) -> None:
        with self.connections_condition:
            for conn in self.active_connections + self.inactive_connections:
                if conn.host == host and conn.port == port:
                    raise gear.ConfigurationError("Host/port already specified")
            self.inactive_connections.append(
                _NoDelayConnection(host, port, client_id=self.client_id, keepalive=True,
                                   tcp_keepidle=60, tcp_keepintvl=15, tcp_keepcnt=4))
            self.connections_condition.notify_all()

    def handleError(self, packet: gear.Packet) -> None:
        # e.g. ERROR JOB_NOT_FOUND for a late WORK_COMPLETE after a gearmand restart:
        # gear pops a pending task that does not exist and drops the connection.
        code, text = packet.getArgument(0), packet.getArgument(1)
        if packet.connection.pending_tasks:
            super().handleError(packet)
        else:
            log.warning("gearmand %s: ERROR %s %s", packet.connection.host,
                        code.decode(errors="replace"), text.decode(errors="replace"))


def _send(what: str, fn: Any, *args: Any) -> None:
    """A packet to gearmand; a lost connection must not fail the job."""
    try:
        fn(*args)
    except Exception as exc:  # gear raises several kinds on a dead socket
        log.warning("could not send %s to gearmand: %s", what, exc)


class FarmWorker:
    """`farm-worker run`: serve jobs until drained by SIGTERM."""

    def __init__(self, runner: JobRunner, versions: list[str]):
        self.runner = runner
        self.config = runner.config
        self.versions = list(versions)
        self.worker_id = self.config.worker_id
        self.jobs = _GearWorker(client_id=self.worker_id)
        self.control = _GearWorker(client_id=f"{self.worker_id}.control")
        self.draining = threading.Event()
        self._give_up = threading.Event()  # a second signal: stop waiting for reports too
        self._signals = 0
        self._current: tuple[str | None, CancelEvent] | None = None
        # re-entrant: the signal handler runs in the main thread, maybe while it holds this
        self._lock = threading.RLock()
        self._started = time.time()
        self._jobs_done = 0
        self.metrics: WorkerMetrics | None = None
        if self.config.metrics_port:
            from farm_worker.metrics import WorkerMetrics

            def depth() -> dict[str, Any] | None:
                return runner.courier.depth() if runner.courier else None

            self.metrics = WorkerMetrics(depth)
            runner.on_phase = self.metrics.phase

    # ---- set-up -----------------------------------------------------------------------------
    def _run_functions(self) -> list[str]:
        return [*map(run_function, self.versions),
                *([RUN_ANY] if self.config.install_on_demand else [])]

    def connect(self) -> None:
        for name in self._run_functions():
            self.jobs.registerFunction(name)
        self.control.registerFunction(PING)
        self.control.registerFunction(ping_function(self.worker_id))
        for server in self.config.gearman_servers:
            self.jobs.addServer(server.host, server.port)
            self.control.addServer(server.host, server.port)
        try:
            self.jobs.waitForServer(timeout=defaults.GEARMAN_CONNECT_TIMEOUT_S)
        except gear.TimeoutError:
            log.warning("no gearmand answers yet (%s); still trying",
                        ", ".join(map(str, self.config.gearman_servers)))
        threading.Thread(target=self._control_loop, name="control", daemon=True).start()
        if self.metrics is not None and self.config.metrics_port:
            self.metrics.serve(self.config.metrics_address, self.config.metrics_port)
            self.metrics.serving(self.versions)
            self._measure_cache()
        log.info("worker %s serving tempest %s on %s", self.worker_id,
                 ", ".join(self.versions) or "(none)",
                 ", ".join(map(str, self.config.gearman_servers)))

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("signal %s: draining (finishing the current job, taking no new one); "
                     "send it again to cancel the current job", signum)
            self.draining.set()
            threading.Thread(target=self.jobs.stopWaitingForJobs, daemon=True).start()
        else:
            self._give_up.set()
            with self._lock:
                current = self._current
            if current is not None:
                log.info("signal %s again: cancelling test %s", signum, current[0])
                current[1].cancel(f"worker {self.worker_id} stopping (signal {signum} twice)")

    # ---- the job loop -------------------------------------------------------------------------
    def serve(self) -> int:
        try:
            while not self.draining.is_set():
                self._pause_while_the_outbox_is_full()
                if self.draining.is_set():
                    break
                try:
                    job = self.jobs.getJob()
                except gear.InterruptedError:
                    break
                if self.draining.is_set():
                    log.info("drained with job %s assigned: leaving it to gearmand to "
                             "hand to another worker", job.handle)
                    break
                self._handle(job)
            left = self.runner.stop_courier(self.config.report_flush_s, self._give_up)
            log.info("worker %s stopped after %d jobs; %d entries left in its outbox",
                     self.worker_id, self._jobs_done, left)
            return 0
        finally:
            self.shutdown()

    def _pause_while_the_outbox_is_full(self) -> None:
        """An outbox at its size cap takes no new job (it refuses, rather than drop what is
        owed): the run functions are withdrawn until it drains below the cap."""
        courier = self.runner.courier
        if courier is None or not courier.full:
            return
        depth = courier.depth()
        log.error("outbox %s is full (%d entries, %d of %d bytes): taking no new job until "
                  "the status server takes them", depth["dir"], depth["entries"],
                  depth["bytes"], depth["max_bytes"])
        for name in self._run_functions():
            with contextlib.suppress(KeyError):
                self.jobs.unRegisterFunction(name)
        courier.wait_not_full(self.draining)
        for name in self._run_functions():
            self.jobs.registerFunction(name)
        if not self.draining.is_set():
            log.info("outbox below its cap again: taking jobs")

    def shutdown(self) -> None:
        for w in (self.jobs, self.control):
            try:
                w.shutdown()
            except Exception:
                log.debug("gear shutdown", exc_info=True)

    def _hooks(self, job: gear.WorkerJob, completed: list[Summary]) -> JobHooks:
        def emit(event: dict[str, Any]) -> None:
            _send("WORK_DATA", job.sendWorkData, encode_event(event))

        def work_status(done: int, total: int) -> None:
            _send("WORK_STATUS", job.sendWorkStatus, done, total)

        def hold(test_id: str) -> None:
            with self._lock:
                if self._current is not None:
                    self._current = (test_id, self._current[1])
            self.control.registerFunction(cancel_function(test_id))

        def release(test_id: str) -> None:
            with contextlib.suppress(KeyError):
                self.control.unRegisterFunction(cancel_function(test_id))

        def complete(summary: Summary) -> None:
            completed.append(summary)
            self._register_new_versions()  # a client told "done" finds the version served
            _send("WORK_COMPLETE", job.sendWorkComplete, json.dumps(summary.to_dict()).encode())

        return JobHooks(emit=emit, work_status=work_status, hold=hold, release=release,
                        complete=complete)

    def _handle(self, job: gear.WorkerJob) -> None:
        cancel = CancelEvent()
        with self._lock:
            self._current = (None, cancel)
        version = version_of_function(job.name)
        conn = job.connection
        log.info("job %s on %s from %s:%s (%d bytes)", job.handle.decode(errors="replace"),
                 job.name, conn.host, conn.port, len(job.arguments))
        if self.metrics is not None:
            self.metrics.busy.set(1)
        completed: list[Summary] = []  # told to gearmand once the final report is on disk
        try:
            summary = self.runner.execute(bytes(job.arguments), cancel,
                                          self._hooks(job, completed), function_version=version)
            if self.metrics is not None:
                self.metrics.jobs.labels(summary.state.value).inc()
            if not completed:  # a payload rejected before any job began
                _send("WORK_COMPLETE", job.sendWorkComplete,
                      json.dumps(summary.to_dict()).encode())
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.handle)
            if not completed:
                _send("WORK_EXCEPTION", job.sendWorkException,
                      f"{exc.__class__.__name__}: {exc}".encode()[:4000])
        finally:
            with self._lock:
                self._current = None
            self._jobs_done += 1
            if self.metrics is not None:
                self.metrics.busy.set(0)
                self._measure_cache()

    def _measure_cache(self) -> None:
        assert self.metrics is not None
        try:
            self.metrics.cache_bytes.set(sum(e.size_bytes for e in self.runner.cache.entries()))
        except OSError as exc:  # a cache being pruned meanwhile: measured next time
            log.debug("cache size: %s", exc)

    def _register_new_versions(self) -> None:
        """After an install on demand, route that version's jobs here too."""
        if not self.config.install_on_demand:
            return
        for entry in self.runner.cache.entries():
            if entry.template and entry.version not in self.versions:
                self.versions.append(entry.version)
                self.jobs.registerFunction(run_function(entry.version))
                log.info("now serving tempest %s", entry.version)
                if self.metrics is not None:
                    self.metrics.serving([entry.version])

    # ---- control: ping and cancel -------------------------------------------------------------
    def _control_loop(self) -> None:
        while True:
            try:
                job = self.control.getJob()
            except gear.InterruptedError:
                return
            try:
                answer = self._control(job.name)
                _send("WORK_COMPLETE", job.sendWorkComplete, json.dumps(answer).encode())
            except Exception as exc:
                log.exception("control job %s failed", job.name)
                _send("WORK_EXCEPTION", job.sendWorkException, str(exc).encode())

    def _control(self, name: str) -> dict[str, Any]:
        with self._lock:
            current = self._current
        if name.startswith(CANCEL_PREFIX):
            test_id = name[len(CANCEL_PREFIX):]
            if current is not None and current[0] == test_id:
                current[1].cancel(f"cancelled by request (via {name})")
                TestLog(log, test_id).info("cancel requested")
                return {"test_id": test_id, "cancelled": True, "worker": self.worker_id}
            TestLog(log, test_id).info("cancel request, but %s holds %s: nothing to cancel",
                                       self.worker_id, current[0] if current else "no test")
            return {"test_id": test_id, "cancelled": False, "worker": self.worker_id,
                    "message": f"nothing to cancel: {test_id} is not running on "
                               f"{self.worker_id}"}
        load1, load5, load15 = os.getloadavg()
        return {"worker": self.worker_id, "versions": self.versions,
                "install_on_demand": self.config.install_on_demand,
                "busy": current[0] if current else None, "draining": self.draining.is_set(),
                "load": [load1, load5, load15], "pid": os.getpid(),
                "isolation": self.runner.isolation, "jobs_done": self._jobs_done,
                "outbox": self.runner.courier.depth() if self.runner.courier else None,
                "owes": self.runner.courier.owed_tests() if self.runner.courier else [],
                "uptime_s": round(time.time() - self._started, 1)}

