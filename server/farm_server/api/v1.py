"""JSON API v1 for people and tools: tests (create, list, show, cancel, results), queue."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from farm_client.compare import DEFAULT_MIN_DELTA_S, DEFAULT_RATIO, Comparison, compare
from farm_client.gearman_client import GearmanError, Server
from farm_client.reports import REPORT_CSP, html_report
from farm_server.api.auth import require_user
from farm_server.api.openapi import openapi_document
from farm_server.jobs import job_of
from farm_server.junit import junit_xml
from farm_server.lifecycle import Report, can_cancel
from farm_server.models import BY_CLIENT, ReportRow, TestRow, UploadRow
from farm_server.queue import functions as queue_functions
from farm_server.schemas import (
    COMPARE_QUERY,
    CREATE_TEST,
    LIST_QUERY,
    REFSTACK_QUERY,
    RESULTS_QUERY,
    UPLOAD_RECORD,
    FieldError,
    checked,
    checked_query,
)
from farm_server.state import farm
from farm_server.store import StoreError, as_utc
from farm_server.uploader import NotUploadable, payload_of, upload_view
from farm_worker.exceptions import PayloadError
from farm_worker.protocol import (
    Counts,
    Selection,
    TestState,
    cancel_function,
    parse_payload,
    run_function,
    show,
)
from farm_worker.redaction import without_secrets

log = logging.getLogger(__name__)
bp = Blueprint("v1", __name__)


def _error(code: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), code


def iso(value: Any) -> str | None:
    """A stored time as the API shows it (UTC, seconds)."""
    value = as_utc(value)
    return value.isoformat(timespec="seconds") if value else None


def counts_of(t: TestRow) -> Counts:
    """The test's counts: the results' once uploaded, else the last report's."""
    passed, failed, skipped = t.passed or 0, t.failed or 0, t.skipped or 0
    total = t.total or t.progress_total or 0
    return Counts(total=total, done=min(max(t.progress_done or 0, passed + failed + skipped),
                                        total) if total else 0,
                  passed=passed, failed=failed, skipped=skipped,
                  classes_failed=t.classes_failed or 0, classes_skipped=t.classes_skipped or 0)


# what a page of tests shows of a test list's matching and a guideline's compliance: the
# figures, not the per-test lists (a 2020.06 report is ~60 KB; a page holds 500 tests)
_BRIEF = {"selection": ("listed", "matched", "by_name", "by_alias", "by_id"),
          "compliance": ("version", "target", "types", "flagged", "totals", "summary")}


def test_view(t: TestRow, brief: bool = False) -> dict[str, Any]:
    """A test as the API shows it; the tempest conf (cloud passwords) never appears.
    `brief` (a page of tests): the selection and compliance figures only."""
    return {
        "id": t.id, "state": t.state, "tempest_version": t.tempest_version,
        "dry_run": t.dry_run, "timeout_s": t.timeout_s,
        "tests": json.loads(t.tests_json) if t.tests_json else None,
        "worker": t.worker, "message": t.message, "submitted_by": t.submitted_by,
        "progress": {"done": t.progress_done, "total": t.progress_total,
                     "current": t.progress_current},
        "summary": counts_of(t).to_dict(),
        "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
        "started_at": iso(t.started_at), "finished_at": iso(t.finished_at),
        "last_report_at": iso(t.last_report_at),
        "cpid": t.cpid, "upload_to": t.upload_to,
        "guideline": None if t.guideline is None else {
            "version": t.guideline, "target": t.guideline_target,
            "types": (t.guideline_types or "").split(",")},
        **{key: _loads(text, _BRIEF[key] if brief else None) for key, text in
           (("selection", t.selection_json), ("compliance", t.compliance_json))},
        "discover": _loads(t.discover_json),
        # the tempest.conf the run used, its secrets removed (not in a page of tests)
        **({} if brief else {"tempest_conf": _loads(t.tempest_conf_json)}),
    }


def _loads(text: str | None, keep: tuple[str, ...] | None = None) -> Any:
    doc = json.loads(text) if text else None
    if doc is not None and keep is not None:
        doc = {k: v for k, v in doc.items() if k in keep}
    return doc


def report_view(r: ReportRow) -> dict[str, Any]:
    return {"at": iso(r.at), "source": r.source, "worker": r.worker, "state": r.state,
            "message": r.message,
            "progress": json.loads(r.progress_json) if r.progress_json else None,
            "applied": r.applied}


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@bp.post("/tests")
def create_test() -> tuple[Response, int]:
    user = require_user(write=True)
    return create(checked(CREATE_TEST, request.get_json(silent=True)), user)


def rerun_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """What "run again" repeats once the run has ended: the request without its test id,
    its accounts and its conf's secret values (REMOVED marks them; the dashboard asks for
    them again)."""
    out = {k: v for k, v in doc.items() if k not in ("test_id", "queue_anyway", "accounts")}
    if isinstance(out.get("conf"), dict):
        out["conf"] = without_secrets(out["conf"])
    if doc.get("accounts"):
        out["had_accounts"] = True
    return out


def create(doc: dict[str, Any], user: str | None,
           origin_id: str | None = None) -> tuple[Response, int]:
    """Store and queue a test from a request checked by CREATE_TEST (the API's POST
    /v1/tests and the dashboard's "run again")."""
    rerun = json.dumps(rerun_doc(doc))
    queue_anyway = doc.pop("queue_anyway", False)
    upload_to, cpid = doc.pop("upload_url", None), doc.pop("cpid", None)
    doc.setdefault("schema", 1)
    doc.setdefault("test_id", f"t-{uuid.uuid4().hex[:16]}")
    state = farm()
    try:
        # the job's callback is this server, so the worker fetches conf and tests from it
        payload = parse_payload({**doc, "callback": {"url": state.config.callback_url}})
    except PayloadError as exc:  # what the schema cannot say (e.g. too old a version)
        raise FieldError(exc.errors) from None
    if state.store.exists(payload.test_id):
        return _exists(payload.test_id)
    function = run_function(payload.tempest_version)
    if not queue_anyway:
        try:
            registered = state.registered_versions(payload.tempest_version)
        except GearmanError as exc:
            return _error(503, f"gearman: {exc}")
        if payload.tempest_version not in registered:
            return _error(422, f"no worker serves {function}; registered versions: "
                          + (", ".join(sorted(registered)) or "none")
                          + " (queue_anyway: true queues it regardless)",
                          field="tempest.version", registered=sorted(registered))
    tests = payload.tests or Selection()
    g = payload.guideline or {}
    row = TestRow(id=payload.test_id, state=TestState.QUEUED.value,
                  tempest_version=payload.tempest_version,
                  conf_json=json.dumps(payload.conf) if payload.conf is not None else None,
                  accounts_json=json.dumps(payload.accounts) if payload.accounts else None,
                  tests_json=json.dumps(tests.to_dict()), dry_run=payload.dry_run,
                  timeout_s=payload.timeout_s, message=f"queued on {function}",
                  cpid=cpid, upload_to=upload_to or state.config.refstack_upload_url,
                  guideline=g.get("version"), guideline_target=g.get("target"),
                  guideline_types=",".join(g.get("types", [])) or None,
                  guideline_json=json.dumps(g) if g else None,
                  discover_json=None if payload.discover is None
                  else json.dumps(payload.discover),
                  origin_id=origin_id, rerun_json=rerun)

    # no password rides the queue: the worker fetches the conf and the accounts from here
    job = job_of(row, state.config.callback_url)

    def submit() -> tuple[str, str]:
        server, handle = state.gearman.submit(function, job.encode(), unique=payload.test_id)
        return str(server), handle

    try:
        created = state.store.create_test(row, submit, user)
    except StoreError:  # made in the meantime, through another request
        return _exists(payload.test_id)
    except GearmanError as exc:
        return _error(503, f"gearman: {exc}; nothing was stored")
    log.info("test %s queued on %s (%s)", created.id, function, created.gearman_server)
    response = jsonify({"test": test_view(created)})
    response.headers["Location"] = f"/v1/tests/{created.id}"
    return response, 201


def _exists(test_id: str) -> tuple[Response, int]:
    existing = farm().store.get(test_id)
    return _error(409, f"test_id: {show(test_id)} exists already", field="test_id",
                  **({"test": test_view(existing)} if existing is not None else {}))


@bp.get("/tests")
def list_tests() -> tuple[Response, int]:
    require_user()
    query = checked_query(LIST_QUERY, request.args)
    limit, offset = query["limit"], query["offset"]
    rows, total, capped = farm().store.find(states=query.get("state"), version=query.get("version"),
                                    guideline=query.get("guideline"),
                                    target=query.get("target"), limit=limit, offset=offset)
    return jsonify({"tests": [test_view(t, brief=True) for t in rows], "total": total,
                    "total_capped": capped, "limit": limit,
                    "offset": offset}), 200


def _test_or_404(test_id: str) -> TestRow | tuple[Response, int]:
    test = farm().store.get(test_id)
    if test is None:
        return _error(404, f"no test {show(test_id)}")
    return test


@bp.get("/tests/<test_id>")
def show_test(test_id: str) -> tuple[Response, int]:
    require_user()
    test = _test_or_404(test_id)
    if not isinstance(test, TestRow):
        return test
    history = [report_view(r) for r in farm().store.history(test_id)]
    uploads = [upload_view(u) for u in farm().store.uploads(test_id)]
    return jsonify({"test": test_view(test), "history": history, "uploads": uploads}), 200


@bp.get("/tests/<test_id>/refstack")
def refstack_document(test_id: str) -> tuple[Response, int]:
    """What RefStack's POST /v1/results gets for this run (the client signs and sends it)."""
    require_user()
    cpid = checked_query(REFSTACK_QUERY, request.args).get("cpid")
    try:
        return jsonify(payload_of(farm().store, test_id, cpid)), 200
    except NotUploadable as exc:
        return _error(exc.status, str(exc), field="cpid" if exc.status == 409 else None)


@bp.post("/tests/<test_id>/uploads")
def record_upload(test_id: str) -> tuple[Response, int]:
    """`farm results --upload` tells the server what became of an upload it made."""
    require_user(write=True)
    doc = checked(UPLOAD_RECORD, request.get_json(silent=True))
    fields = {key: doc.get(key) for key in UPLOAD_RECORD["properties"]}
    fields["attempts"] = doc.get("attempts", 1)
    fields["message"] = fields["message"] or ""
    row = farm().store.add_upload(UploadRow(test_id=test_id, source=BY_CLIENT, **fields))
    if row is None:
        return _error(404, f"no test {show(test_id)}")
    return jsonify({"upload": upload_view(row)}), 201


@bp.post("/tests/<test_id>/cancel")
def cancel_test(test_id: str) -> tuple[Response, int]:
    return cancel(test_id, require_user(write=True))


def cancel(test_id: str, user: str | None) -> tuple[Response, int]:
    """Cancel a queued test (removed from gearmand) or a running one (its worker is told):
    200 removed, 202 requested, 404, 409 already final, 503 gearman unreachable."""
    state = farm()
    test = _test_or_404(test_id)
    if not isinstance(test, TestRow):
        return test
    if not can_cancel(TestState(test.state)):
        return _error(409, f"test {test_id} is already {test.state}: nothing to cancel",
                      test=test_view(test))
    who = f"cancelled by {user or 'an API user'}"
    if test.state == TestState.QUEUED.value and test.gearman_server and test.gearman_handle:
        server = Server.parse(test.gearman_server)
        if state.gearman.cancel_queued(server, test.gearman_handle):
            state.store.apply(test_id, Report(TestState.CANCELLED, f"{who} while queued", None),
                              source="api")
            updated = state.store.get(test_id)
            assert updated is not None
            return jsonify({"test": test_view(updated), "cancel": "removed from the queue"}), 200
    try:
        server, handle = state.gearman.submit(cancel_function(test_id), b"",
                                              unique=f"cancel-{test_id}")
    except GearmanError as exc:
        return _error(503, f"gearman: {exc}")
    state.store.set_cancel_job(test_id, str(server), handle)
    state.store.apply(test_id, Report(TestState(test.state), f"cancel requested ({who})",
                                      None), source="api")
    updated = state.store.get(test_id)
    assert updated is not None
    return jsonify({"test": test_view(updated), "cancel": "requested"}), 202


@bp.get("/tests/<test_id>/results")
def results(test_id: str) -> tuple[Response, int]:
    require_user()
    return results_response(test_id, checked_query(RESULTS_QUERY, request.args)["format"])


def results_response(test_id: str, fmt: str) -> tuple[Response, int]:
    """A run's results in a format of RESULT_FORMATS (the API, and the dashboard's
    downloads)."""
    test = _test_or_404(test_id)
    if not isinstance(test, TestRow):
        return test
    rows, raw = farm().store.results(test_id)
    if raw is None:
        return _error(404, f"no results uploaded for {test_id} yet (state {test.state})")
    if fmt == "subunit":
        return Response(raw.data, mimetype="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{test_id}.subunit"'}), 200
    if fmt == "junit":
        return Response(junit_xml(test_id, rows), mimetype="application/xml"), 200
    if fmt == "html":  # the self-contained report `farm results --format html` writes
        view = test_view(test)
        history = [report_view(r) for r in farm().store.state_reports(test_id)]
        page = html_report(view, [_result_dict(r) for r in rows], history=history)
        return Response(page, mimetype="text/html", headers={
            "Content-Security-Policy": REPORT_CSP}), 200
    return jsonify({"test": test_view(test), "results": [_result_dict(r) for r in rows]}), 200


def _result_dict(r: Any) -> dict[str, Any]:
    return {"name": r.name, "status": r.status, "duration_s": r.duration_s, "detail": r.detail}


@bp.get("/compare")
def compare_runs() -> tuple[Response, int]:
    """Run B against run A (the reference): regressed, fixed, new, missing, still failing,
    slower and faster tests. Without B: A against the run before it."""
    require_user()
    query = checked_query(COMPARE_QUERY, request.args)
    found = comparison(query["a"], query.get("b"), query["ratio"], query["min_delta_s"])
    if isinstance(found, str):
        return _error(404, found)
    return jsonify(found.to_dict()), 200


def comparison(a: str, b: str | None, ratio: float = DEFAULT_RATIO,
               min_delta_s: float = DEFAULT_MIN_DELTA_S) -> Comparison | str:
    """The comparison, or why there is none (an unknown run, one without results)."""
    store = farm().store
    if b is None:
        test = store.get(a)
        if test is None:
            return f"no test {show(a)}"
        previous = store.previous_run(test)
        if previous is None:
            return (f"no earlier run of {show(a)}'s cloud ({test.cpid or 'none given'}) and "
                    f"Tempest {test.tempest_version} has results")
        a, b = previous, a
    rows = {}
    for run in (a, b):
        test = store.get(run)
        if test is None:
            return f"no test {show(run)}"
        rows[run] = store.result_rows(run)
        if not rows[run]:
            return f"no results uploaded for {run} yet (state {test.state})"
    return compare(a, rows[a], b, rows[b], ratio=ratio, min_delta_s=min_delta_s)


@bp.get("/queue")
def queue() -> tuple[Response, int]:
    require_user()
    gm = farm().gearman
    servers = []
    for server in gm.servers:
        try:
            found = queue_functions(gm, farm().store, server)
            servers.append({"server": str(server), "reachable": True,
                            "functions": found.functions, "workers": gm.workers(server),
                            "withdrawn": found.withdrawn,
                            "withdrawn_unknown": found.withdrawn_unknown})
        except GearmanError as exc:
            servers.append({"server": str(server), "reachable": False, "error": str(exc),
                            "functions": [], "workers": []})
    return jsonify({"servers": servers}), 200
