"""JSON API v1 for people and tools: tests (create, list, show, cancel, results), queue."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from farm_client.gearman_client import GearmanError, Server
from farm_client.refstack_upload import CPID_PATTERN, UploadError, results_endpoint
from farm_server.api.auth import require_user
from farm_server.api.openapi import openapi_document
from farm_server.junit import junit_xml
from farm_server.lifecycle import Report, can_cancel
from farm_server.models import BY_CLIENT, FAILED, UPLOADED, ReportRow, TestRow, UploadRow
from farm_server.state import farm
from farm_server.store import StoreError, as_utc
from farm_server.uploader import NotUploadable, payload_of, upload_view
from farm_worker.exceptions import PayloadError
from farm_worker.protocol import (
    VERSION_PATTERN,
    Callback,
    Payload,
    Selection,
    TestState,
    cancel_function,
    parse_payload,
    run_function,
    show,
)

log = logging.getLogger(__name__)
bp = Blueprint("v1", __name__)

MAX_LIMIT = 500


def _error(code: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), code


def _iso(value: Any) -> str | None:
    value = as_utc(value)
    return value.isoformat(timespec="seconds") if value else None


def test_view(t: TestRow) -> dict[str, Any]:
    """A test as the API shows it; the tempest conf (cloud passwords) never appears."""
    return {
        "id": t.id, "state": t.state, "tempest_version": t.tempest_version,
        "dry_run": t.dry_run, "timeout_s": t.timeout_s,
        "tests": json.loads(t.tests_json) if t.tests_json else None,
        "worker": t.worker, "message": t.message, "submitted_by": t.submitted_by,
        "progress": {"done": t.progress_done, "total": t.progress_total,
                     "current": t.progress_current},
        "summary": {"passed": t.passed, "failed": t.failed, "skipped": t.skipped,
                    "total": t.total},
        "created_at": _iso(t.created_at), "updated_at": _iso(t.updated_at),
        "started_at": _iso(t.started_at), "finished_at": _iso(t.finished_at),
        "last_report_at": _iso(t.last_report_at),
        "cpid": t.cpid, "upload_to": t.upload_to,
    }


def report_view(r: ReportRow) -> dict[str, Any]:
    return {"at": _iso(r.at), "source": r.source, "worker": r.worker, "state": r.state,
            "message": r.message,
            "progress": json.loads(r.progress_json) if r.progress_json else None,
            "applied": r.applied}


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@bp.post("/tests")
def create_test() -> tuple[Response, int]:
    user = require_user(write=True)
    doc = request.get_json(silent=True)
    if not isinstance(doc, dict):
        return _error(400, "body: is not a JSON object", field="body")
    queue_anyway = doc.pop("queue_anyway", False)
    if not isinstance(queue_anyway, bool):
        return _error(400, f"queue_anyway: {show(queue_anyway)} is not a boolean",
                      field="queue_anyway")
    state = farm()
    doc.setdefault("schema", 1)
    doc.setdefault("test_id", f"t-{uuid.uuid4().hex[:16]}")
    if "callback" in doc:
        return _error(400, "callback: unknown field; the server reports to itself",
                      field="callback")
    upload_to, cpid = doc.pop("upload_url", None), doc.pop("cpid", None)
    if upload_to is not None:
        try:
            results_endpoint(upload_to if isinstance(upload_to, str) else "")
        except UploadError:
            return _error(400, f"upload_url: {show(upload_to)} is not an http(s) URL of a "
                          "RefStack API", field="upload_url")
    if cpid is not None and not (isinstance(cpid, str) and CPID_PATTERN.fullmatch(cpid)):
        return _error(400, f"cpid: {show(cpid)} is not a cloud id (letters, digits, . _ -; "
                      "up to 64)", field="cpid")
    try:
        # the job's callback is this server, so the worker fetches conf and tests from it
        payload = parse_payload({**doc, "callback": {"url": state.config.callback_url}})
    except PayloadError as exc:
        return _error(400, str(exc), field=exc.field, errors=[str(e) for e in exc.errors])
    if state.store.get(payload.test_id) is not None:
        existing = state.store.get(payload.test_id)
        assert existing is not None
        return _error(409, f"test_id: {show(payload.test_id)} exists already",
                      field="test_id", test=test_view(existing))
    function = run_function(payload.tempest_version)
    if not queue_anyway:
        try:
            registered = state.gearman.registered_versions()
        except GearmanError as exc:
            return _error(503, f"gearman: {exc}")
        if payload.tempest_version not in registered:
            return _error(422, f"no worker serves {function}; registered versions: "
                          + (", ".join(sorted(registered)) or "none")
                          + " (queue_anyway: true queues it regardless)",
                          field="tempest.version", registered=sorted(registered))
    tests = payload.tests or Selection()
    job = Payload(payload.test_id, payload.tempest_version, conf=None, tests=tests,
                  callback=Callback(state.config.callback_url), timeout_s=payload.timeout_s,
                  dry_run=payload.dry_run)
    row = TestRow(id=payload.test_id, state=TestState.QUEUED.value,
                  tempest_version=payload.tempest_version,
                  conf_json=json.dumps(payload.conf) if payload.conf is not None else None,
                  tests_json=json.dumps(tests.to_dict()), dry_run=payload.dry_run,
                  timeout_s=payload.timeout_s, message=f"queued on {function}",
                  cpid=cpid, upload_to=upload_to or state.config.refstack_upload_url)

    def submit() -> tuple[str, str]:
        server, handle = state.gearman.submit(function, job.encode(), unique=payload.test_id)
        return str(server), handle

    try:
        created = state.store.create_test(row, submit, user)
    except StoreError as exc:
        return _error(409, str(exc), field="test_id")
    except GearmanError as exc:
        return _error(503, f"gearman: {exc}; nothing was stored")
    log.info("test %s queued on %s (%s)", created.id, function, created.gearman_server)
    response = jsonify({"test": test_view(created)})
    response.headers["Location"] = f"/v1/tests/{created.id}"
    return response, 201


def _states(values: list[str]) -> list[str]:
    out = []
    for value in (v for item in values for v in item.split(",") if v):
        try:
            out.append(TestState(value).value)
        except ValueError:
            raise ValueError(f"state: {show(value)} is not a state") from None
    return out


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{name}: {show(raw)} is not a number from {low} to {high}")
    return int(raw)


@bp.get("/tests")
def list_tests() -> tuple[Response, int]:
    require_user()
    try:
        states = _states(request.args.getlist("state"))
        version = request.args.get("version")
        if version is not None and not re.match(VERSION_PATTERN, version):
            raise ValueError(f"version: {show(version)} is not an exact version")
        limit = _int_arg("limit", 50, 1, MAX_LIMIT)
        offset = _int_arg("offset", 0, 0, 10**9)
    except ValueError as exc:
        return _error(400, str(exc), field=str(exc).split(":")[0])
    rows, total = farm().store.find(states=states, version=version, limit=limit,
                                    offset=offset)
    return jsonify({"tests": [test_view(t) for t in rows], "total": total, "limit": limit,
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
    cpid = request.args.get("cpid")
    if cpid is not None and not CPID_PATTERN.fullmatch(cpid):
        return _error(400, f"cpid: {show(cpid)} is not a cloud id", field="cpid")
    try:
        return jsonify(payload_of(farm().store, test_id, cpid)), 200
    except NotUploadable as exc:
        return _error(exc.status, str(exc), field="cpid" if exc.status == 409 else None)


def _upload_fields(doc: Any) -> dict[str, Any]:
    """The upload a client reports (POST /tests/<id>/uploads), checked field by field."""
    if not isinstance(doc, dict):
        raise ValueError("body: is not a JSON object")
    known = {"target", "state", "attempts", "signed_by", "result_id", "result_url", "message"}
    for key in doc:
        if key not in known:
            raise ValueError(f"{key}: unknown field; known: {', '.join(sorted(known))}")
    target = doc.get("target")
    try:
        results_endpoint(target if isinstance(target, str) else "")
    except UploadError:
        raise ValueError(f"target: {show(target)} is not an http(s) URL") from None
    if doc.get("state") not in (UPLOADED, FAILED):
        raise ValueError(f"state: {show(doc.get('state'))} is not uploaded or failed")
    attempts = doc.get("attempts", 1)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 100:
        raise ValueError(f"attempts: {show(attempts)} is not a number from 1 to 100")
    fields: dict[str, Any] = {"target": target, "state": doc["state"], "attempts": attempts}
    for key, limit in (("signed_by", 200), ("result_id", 64), ("result_url", 2000),
                       ("message", 2000)):
        value = doc.get(key)
        if value is not None and not (isinstance(value, str) and len(value) <= limit):
            raise ValueError(f"{key}: {show(value)} is not a string of up to {limit}")
        fields[key] = value
    if doc["state"] == UPLOADED and not fields["result_id"]:
        raise ValueError("result_id: is required for an upload that succeeded")
    fields["message"] = fields["message"] or ""
    return fields


@bp.post("/tests/<test_id>/uploads")
def record_upload(test_id: str) -> tuple[Response, int]:
    """`farm results --upload` tells the server what became of an upload it made."""
    require_user(write=True)
    try:
        fields = _upload_fields(request.get_json(silent=True))
    except ValueError as exc:
        return _error(400, str(exc), field=str(exc).split(":")[0])
    row = farm().store.add_upload(UploadRow(test_id=test_id, source=BY_CLIENT, **fields))
    if row is None:
        return _error(404, f"no test {show(test_id)}")
    return jsonify({"upload": upload_view(row)}), 201


@bp.post("/tests/<test_id>/cancel")
def cancel_test(test_id: str) -> tuple[Response, int]:
    user = require_user(write=True)
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
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "subunit", "junit"):
        return _error(400, f"format: {show(fmt)} is not json, subunit or junit", field="format")
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
    return jsonify({"test": test_view(test), "results": [
        {"name": r.name, "status": r.status, "duration_s": r.duration_s, "detail": r.detail}
        for r in rows]}), 200


@bp.get("/queue")
def queue() -> tuple[Response, int]:
    require_user()
    gm = farm().gearman
    servers = []
    for server in gm.servers:
        try:
            functions = [f.__dict__ for f in gm.status(server)]
            workers = gm.workers(server)
            servers.append({"server": str(server), "reachable": True,
                            "functions": functions, "workers": workers})
        except GearmanError as exc:
            servers.append({"server": str(server), "reachable": False, "error": str(exc),
                            "functions": [], "workers": []})
    return jsonify({"servers": servers}), 200
