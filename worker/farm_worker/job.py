"""One job's lifecycle, with no transport: install -> configure -> preflight -> list
-> run -> upload -> cleanup -> final state. Cleanup runs in `finally` whatever happened,
and the final state is announced only after it: when a test shows `passed` (or any final
state), its Tempest processes are gone and its workspace, with the tempest.conf that held
the cloud's passwords, is removed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farm_worker import (
    cloud,
    compliance,
    defaults,
    discovery,
    matching,
    preflight,
    redaction,
    selecting,
    tempest,
)
from farm_worker.environments import Template
from farm_worker.exceptions import (
    EnvironmentBuildError,
    JobCancelled,
    JobTimedOut,
    PayloadError,
    ReportError,
    TempestError,
)
from farm_worker.fsutil import remove_tree
from farm_worker.isolation import job_environment, mounts_under, unmount
from farm_worker.logs import TestLog
from farm_worker.processes import Outcome, ProcessGroup, kill_group, kill_stale_group
from farm_worker.protocol import (
    Conf,
    Counts,
    Failure,
    Payload,
    Selection,
    Summary,
    TestState,
    ended_reason,
    parse_accounts,
    parse_conf,
    progress_event,
    selection_from_testcases,
    show,
    state_event,
    wanted_tests,
)
from farm_worker.reporting import CallbackClient, Reporter
from farm_worker.results import Collector, TestOutcome, consume

log = logging.getLogger(__name__)

MAX_FAILURES_IN_SUMMARY = 50


if TYPE_CHECKING:
    from farm_worker.execution import JobRunner


class CancelEvent(threading.Event):
    """A cancel request and its reason (a user's cancel, or the worker shutting down)."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
        self.set()


@dataclass
class JobHooks:
    """What the transport does with a job's events; every hook must not raise."""

    emit: Callable[[dict[str, Any]], None] = lambda event: None
    work_status: Callable[[int, int], None] = lambda done, total: None
    hold: Callable[[str], None] = lambda test_id: None  # the cancel function is registered
    release: Callable[[str], None] = lambda test_id: None
    # the job's outcome, once its final report is in the outbox and before the server's
    # answers are waited for: gearmand may forget the job (WORK_COMPLETE), so that a worker
    # killed while it waits never has an ended run handed to another; not called when the
    # job ends by an internal error (the transport's exception)
    complete: Callable[[Summary], None] = lambda summary: None




class Job:
    """The state of one running job (made by JobRunner.execute)."""

    def __init__(self, runner: JobRunner, payload: Payload, cancel: CancelEvent,
                 hooks: JobHooks, started: float):
        self.runner = runner
        self.hooks = hooks
        self.config = runner.config
        self.payload = payload
        self.cancel = cancel
        self.started = started
        self.test_id = payload.test_id
        self.log = TestLog(log, payload.test_id)
        self.timeout_s = payload.timeout_s or self.config.default_timeout_s
        self.worker = self.config.worker_id
        self.job_dir = runner.worker_dir / f"{payload.test_id}-{uuid.uuid4().hex[:8]}"
        self.results: Collector | None = None  # from the listing on
        self.matched: matching.Matched | None = None  # an explicit list, once matched
        self.accounts: list[dict[str, Any]] | None = None  # pre-provisioned, once known
        self.kept_conf: dict[str, dict[str, str]] | None = None  # tempest.conf, scrubbed
        self._last_progress = 0.0
        self._lap = started  # when the phase now timed began
        self.secrets: list[int] = []
        self.final: tuple[TestState, str] | None = None  # announced after the cleanup
        client = None
        url = payload.callback.url if payload.callback is not None else None
        if url is not None:
            token = payload.callback.token if payload.callback else None
            client = CallbackClient(url, token or self.config.token_for(url))
            runner.start_courier()
            assert runner.courier is not None
            if token:
                runner.courier.remember_token(url, token)
        self.client = client
        self.reporter = Reporter(runner.courier, url, payload.test_id, self.worker,
                                 on_stop=cancel.cancel)

    def lap(self, phase: str) -> None:
        """The phase that began at the last lap ends now: its seconds to the metrics."""
        now = self.runner.clock()
        self.runner.on_phase(phase, now - self._lap)
        self._lap = now

    def counts(self) -> Counts:
        return self.results.counts() if self.results is not None else Counts()

    def set_state(self, state: TestState, message: str = "",
                  outcome: dict[str, Any] | None = None) -> None:
        """Announce a state; from the listing on, the status server gets the counts with
        it, so a run that ended shows its final counts, not its last progress. The report
        is in the outbox, on disk, before the state is logged or sent to gearmand."""
        message = redaction.redact(message)
        self.reporter.state(state, message,
                            self.counts() if self.results is not None else None, outcome)
        self.log.info("%s%s", state.value, f": {message}" if message else "")
        self.hooks.emit(state_event(self.test_id, state, self.worker, message))

    def run(self) -> Summary:
        p = self.payload
        self.secrets.append(redaction.register([
            *redaction.secrets_in_conf(p.conf), p.callback.token if p.callback else None,
            self.client.token if self.client else None,
            *redaction.secrets_in_accounts(p.accounts if isinstance(p.accounts, list)
                                           else None)]))
        self.hooks.hold(self.test_id)
        summary: Summary | None = None
        try:
            summary = self._run()
        except JobCancelled as exc:
            summary = self._end(TestState.CANCELLED, self.cancel.reason or str(exc))
        except JobTimedOut:
            summary = self._end(TestState.TIMED_OUT, f"killed after timeout_s={self.timeout_s}")
        except (EnvironmentBuildError, TempestError, ReportError) as exc:
            summary = self._error(str(exc))
        except PayloadError as exc:
            summary = self._error(f"from the callback server: {exc}")
        except Exception as exc:
            self.log.error("internal error", exc_info=True)
            self._end(TestState.ERROR, f"internal error: {exc.__class__.__name__}: {exc}")
            raise
        finally:
            self._lap = self.runner.clock()
            self._cleanup(summary)
            self.lap("cleanup")
            self.hooks.release(self.test_id)
            for handle in self.secrets:
                redaction.unregister(handle)
        assert summary is not None  # every other way out raised
        stopped = self.reporter.stopped
        if stopped and summary.state is not TestState.CANCELLED:
            # the server's answer came after the job had ended: it did not take this result
            # (gearmand was told the job's outcome before: the server's word is the last)
            self.log.warning("not taken by the server: %s", stopped)
            summary = dataclasses.replace(summary, state=TestState.CANCELLED, message=stopped)
        return summary

    def _error(self, message: str) -> Summary:
        """An error ends the job `error`; unless the server had stopped it (it gave the test
        to another copy, or the test ended there): what failed then failed because of
        that (e.g. its conf is gone), and the job ends `cancelled`, saying why."""
        stopped = self.reporter.stopped
        return self._end(TestState.CANCELLED, stopped) if stopped else \
            self._end(TestState.ERROR, message)

    def _end(self, state: TestState, message: str, subunit: Path | None = None) -> Summary:
        """The job's outcome: its summary now, its state once the cleanup is done."""
        self.final = (state, message)
        return self._summary(state, message, subunit)

    def _summary(self, state: TestState, message: str = "", subunit: Path | None = None) \
            -> Summary:
        r = self.results
        failures = [Failure(o.test_id, redaction.redact(o.detail))
                    for o in (r.failures() if r else [])][:MAX_FAILURES_IN_SUMMARY]
        return Summary(self.test_id, state, counts=self.counts(),
                       duration_s=self.runner.clock() - self.started,
                       subunit=str(subunit) if subunit else None,
                       message=redaction.redact(message), worker=self.worker,
                       tempest_version=self.payload.tempest_version, failures=failures,
                       selection=self.matched.to_dict() if self.matched else None,
                       compliance=self.compliance(), conf=self.kept_conf)

    def compliance(self) -> dict[str, Any] | None:
        """A guideline run's compliance report, once its list is matched."""
        if self.payload.guideline is None or self.matched is None:
            return None
        return compliance.report(self.payload.guideline, self.matched,
                                 self.results.tests if self.results else [])

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled(self.cancel.reason or "cancelled")

    def _run(self) -> Summary:
        p = self.payload
        self.job_dir.mkdir(parents=True, mode=0o700)
        self.set_state(TestState.INSTALLING, f"tempest {p.tempest_version}")
        template = self._template()
        self._check_cancel()
        with self.runner.cache.in_use(template), \
                job_environment(template.path, self.job_dir, self.runner.isolation) as env:
            self.lap("env")
            conf = p.conf if p.conf is not None else self._fetch_conf()
            selection = p.tests if p.tests is not None else self._fetch_tests()
            accounts = self._fetch_accounts() if p.accounts == "callback" else \
                p.accounts if isinstance(p.accounts, list) else None
            self._check_cancel()
            kept = template.tests
            ws = tempest.init_workspace(self.job_dir, env)
            uses = tempest.write_accounts(ws, accounts) if accounts else None
            self.accounts = accounts
            found = self._discover(ws, template, conf, uses) if p.discover is not None \
                else None
            conf_text = tempest.render_conf(ws, self.config.tempest_defaults, found, conf, uses)
            tempest.write_conf(ws, conf_text)
            self.kept_conf = redaction.scrub_conf(cloud.sections(conf_text))
            checked = self._preflight(conf_text)
            self.lap("conf")
            deadline = self.runner.clock() + self.timeout_s
            if selection is not None and selection.listed:
                tests = self._match(ws, selection, deadline, kept)
                args = tempest.load_list_args(ws, tests)
            elif kept is not None:
                tests = selecting.select(kept, selection)
                args = tempest.load_list_args(ws, tests)
            else:
                args = tempest.selection_args(p.tempest_version, selection, ws)
                tests = tempest.list_tests(ws, args, self.cancel, deadline)
            if not tests:
                raise TempestError(f"the selection {show(selection.to_dict() if selection else {})}"
                                   " matches no test")
            self.results = Collector(on_test=self._on_test, selected=tests)
            self.lap("list")
            listed = f" ({self.matched.describe()})" if self.matched else ""
            if p.dry_run:
                return self._end(TestState.PASSED,
                                 f"dry run: {len(tests)} tests selected{listed}")
            notes = "; ".join(checked.notes) if checked else ""
            self.set_state(TestState.RUNNING, f"{len(tests)} tests{listed}"
                           + (f" (preflight: {notes})" if notes else ""),
                           outcome={"conf": self.kept_conf})
            self._progress("")  # the total, before the first test ends
            subunit = self._run_tempest(ws, args, deadline)
            self.lap("run")
            cpid = self._cpid(conf_text, checked)
        return self._finish(subunit, cpid)

    def _match(self, ws: tempest.Workspace, selection: Selection, deadline: float,
               kept: Sequence[str] | None) -> list[str]:
        """The Tempest tests an explicit list names, matched against this Tempest's own
        list (kept by the template, else listed now); none found is an error that says so."""
        available = list(kept) if kept is not None else \
            tempest.list_tests(ws, [], self.cancel, deadline)
        self.matched = matching.match(wanted_tests(selection.listed), available)
        self.log.info("test list %s", self.matched.describe())
        if not self.matched.matches:
            raise TempestError(f"tests.list: none of the {len(self.matched.not_found)} listed "
                               f"tests is in tempest {self.payload.tempest_version} "
                               f"(by name, alias or id): {self.matched.missing()}")
        return self.matched.tests

    def _discover(self, ws: tempest.Workspace, template: Template, conf: Conf | None,
                  uses: Conf | None) -> Conf | None:
        """The conf python-tempestconf finds, the discovery's needs reported first (one
        line each); none for a dry run, which never talks to the cloud."""
        p = self.payload
        assert p.discover is not None
        if p.dry_run:
            self.set_state(TestState.INSTALLING, "dry run: the conf is not discovered")
            return None
        version = template.info.get("tempestconf")
        if not version:
            raise EnvironmentBuildError(
                f"tempest {p.tempest_version}: its lock has no python-tempestconf, so this "
                f"worker cannot discover a conf (farm-worker lock {p.tempest_version} "
                "makes one that has)")
        self._check_cancel()
        given = tempest.conf_text(conf, uses)
        parsed = cloud.parse(given)
        creds = discovery.Credentials.choose(parsed, self.accounts)
        body, option = ((cloud.token_request(parsed), "[auth] admin_username, admin_password")
                        if creds.admin else
                        (cloud.account_token_request((self.accounts or [{}])[0]), "accounts[0]"))
        assert body is not None
        timeout_s = self.config.preflight_timeout_s
        login = preflight.login(parsed, body, option, timeout_s)
        needs = discovery.check_needs(parsed, login.catalog, login.token, creds, self.accounts,
                                      p.discover, self.config.discovery_image, login.verify,
                                      timeout_s)
        for line in needs.lines:
            self.set_state(TestState.INSTALLING, f"discovery: {line}")
        self._check_cancel()
        self.set_state(TestState.INSTALLING, f"discovering the conf with python-tempestconf "
                                             f"{version}")
        accounts_file = Path(str(uses["auth"]["test_accounts_file"])) if uses else None
        found = discovery.discover(ws, given, creds, accounts_file, p.discover, needs,
                                   self.config.discovery_timeout_s, self.cancel)
        self.secrets.append(redaction.register(redaction.secrets_in_conf(found)))
        options = sum(len(v) for v in found.values())
        self.log.info("discovered %d options in %d sections", options, len(found))
        return found

    def _preflight(self, conf_text: str) -> preflight.Checked | None:
        """The conf checked against its cloud before Tempest starts (not for a dry run,
        which never talks to the cloud, nor on a worker with `preflight: false`)."""
        if self.payload.dry_run or not self.config.preflight:
            return None
        self._check_cancel()
        checked = preflight.check(conf_text, self.config.preflight_timeout_s, self.accounts)
        self.log.info("preflight: %s answers%s", checked.identity,
                      "".join(f"; {n}" for n in checked.notes))
        return checked

    def _template(self) -> Template:
        cache, version = self.runner.cache, self.payload.tempest_version
        template = cache.template(version)
        if template is None:
            if not self.config.install_on_demand and version not in self.config.tempest_versions:
                raise EnvironmentBuildError(f"tempest {version} is not prepared on worker "
                                            f"{self.worker} and installs on demand are off")
            self.log.info("preparing tempest %s", version)
            cache.prepare(version)
            template = cache.template(version)
            if template is None:
                raise EnvironmentBuildError(f"tempest {version}: prepared but not found")
        cache.mark_used(template)
        return template

    def _fetch(self, endpoint: str) -> Any:
        """GET /<endpoint>?test_id= from the callback server, as JSON."""
        assert self.client is not None  # the payload schema requires a callback for it
        try:
            resp = self.client.call("GET", f"{endpoint}?test_id={self.test_id}",
                                    retry_s=self.config.report_retry_s, stop=self.cancel)
        except ReportError as exc:  # the test ended there: this copy stops (cancelled)
            reason = ended_reason(self.test_id, exc.answer)
            if reason:
                self.reporter.stop(reason)
            raise
        try:
            return resp.json()
        except ValueError:
            raise ReportError(f"GET /{endpoint}: the answer is not JSON") from None

    def _fetch_conf(self) -> Any:
        conf = parse_conf(self._fetch("get-miniconf"), "miniconf")
        self.secrets.append(redaction.register(redaction.secrets_in_conf(conf)))
        return conf

    def _fetch_accounts(self) -> list[dict[str, Any]]:
        accounts = parse_accounts(self._fetch("get-accounts"), "get-accounts")
        self.secrets.append(redaction.register(redaction.secrets_in_accounts(accounts)))
        return accounts

    def _fetch_tests(self) -> Any:
        return selection_from_testcases(self._fetch("get-testcases"))

    def _on_test(self, outcome: TestOutcome) -> None:
        now = self.runner.clock()
        if now - self._last_progress >= defaults.PROGRESS_INTERVAL_S:
            self._last_progress = now
            self._progress(outcome.test_id)

    def _progress(self, current: str) -> None:
        if self.results is None:
            return
        counts = self.results.counts()
        self.hooks.emit(progress_event(self.test_id, current, counts))
        self.hooks.work_status(counts.done, counts.total)
        self.reporter.progress(TestState.RUNNING, current, counts)

    def _run_tempest(self, ws: tempest.Workspace, args: list[str], deadline: float) -> Path:
        results_dir = self.config.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        final = results_dir / f"{self.test_id}.subunit"
        partial = self.runner.partial_result(self.test_id)
        assert self.results is not None
        argv = tempest.run_argv(ws, args, self.config.concurrency)
        with partial.open("wb") as raw, (ws.logs / "tempest-stderr.log").open("wb") as err:
            group = ProcessGroup(argv, cwd=ws.path, env=ws.environ(), stdout=subprocess.PIPE,
                                 stderr=err, pgid_file=self.job_dir / "pgid")
            assert group.proc.stdout is not None
            reader = threading.Thread(target=consume, args=(group.proc.stdout, self.results,
                                                            raw), daemon=True)
            reader.start()
            try:
                outcome = group.wait(deadline, self.cancel, self.runner.clock)
            finally:
                kill_group(group.pgid, grace_s=1.0)  # stragglers of a normal exit, too
                reader.join(30)
                group.proc.stdout.close()
        self._progress(self.results.current)
        os.replace(partial, final)
        os.chmod(final, 0o600)
        if outcome is Outcome.CANCELLED:
            raise JobCancelled(self.cancel.reason or "cancelled")
        if outcome is Outcome.TIMED_OUT:
            raise JobTimedOut()
        return final

    def _cpid(self, conf_text: str, checked: preflight.Checked | None) -> str | None:
        """The cloud's RefStack id, sent with the results (only to a status server): from
        the preflight's token when there was one, else asked after Tempest."""
        if self.client is None:
            return None
        found = checked.cpid if checked and checked.cpid else cloud.discover_cpid(conf_text)
        if found is not None:
            self.log.info("cloud cpid %s (%s)", found.value, found.how)
        return found.value if found else None

    def _finish(self, subunit: Path, cpid: str | None = None) -> Summary:
        self._check_cancel()  # e.g. the server gave the test to another worker meanwhile
        if self.client is not None:
            self.set_state(TestState.UPLOADING, f"{subunit.stat().st_size} bytes of subunit")
            self.reporter.upload(subunit, cpid)
            self.lap("upload")
        counts = self.counts()
        message = counts.describe()
        report = self.compliance()
        if report is not None:
            message += f"; guideline {report['version']} {report['target']}: {report['summary']}"
        if counts.any_failed:
            state = TestState.FAILED
        elif counts.reported + counts.classes_skipped == 0:
            state = TestState.ERROR
            message = f"no test reported a result ({counts.total} selected); see the worker log"
        else:
            state = TestState.PASSED
        return self._end(state, message, subunit)

    def _cleanup(self, summary: Summary | None) -> None:
        """Each step guarded on its own: one failing must not skip the others, and none may
        turn the job's outcome into an exception. The final state goes out after the
        processes and files are gone; the transport learns the outcome (`complete`) once
        that report is on disk, before the reports are flushed."""
        def complete() -> None:
            if summary is not None:
                self.hooks.complete(summary)
        for what, step in (("killing the process group", self._kill_leftovers),
                           ("removing the job directory", self._remove_job_dir),
                           ("removing the partial subunit file", self._remove_partial),
                           ("announcing the final state", self._announce_final),
                           ("completing the job", complete),
                           ("flushing reports", self._flush_reports)):
            try:
                step()
            except Exception:
                self.log.error("cleanup: %s failed", what, exc_info=True)

    def _kill_leftovers(self) -> None:
        pgid_file = self.job_dir / "pgid"
        if pgid_file.exists():
            kill_stale_group(pgid_file, self.job_dir)

    def _remove_job_dir(self) -> None:
        for point in mounts_under(self.job_dir) if self.job_dir.exists() else []:
            unmount(point)
        remove_tree(self.job_dir)

    def _remove_partial(self) -> None:
        self.runner.partial_result(self.test_id).unlink(missing_ok=True)

    def _announce_final(self) -> None:
        if self.final is not None:
            outcome = {"selection": self.matched.to_dict() if self.matched else None,
                       "compliance": self.compliance(), "conf": self.kept_conf}
            self.set_state(*self.final, outcome={k: v for k, v in outcome.items() if v})

    def _flush_reports(self) -> None:
        flush_s = self.runner.job_flush_s
        if not self.reporter.close(self.config.report_flush_s if flush_s is None else flush_s) \
                and not self.reporter.pending:
            self.log.error("some reports did not reach %s: %s", self.client,
                           "; ".join(self.reporter.failures))

