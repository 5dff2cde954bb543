"""The RefStack contract, worker-facing: status updates, results, miniconf, testcases.

Every endpoint needs a known testing host (405 otherwise); a bad request gets 400 with
the offending field named (bodies and queries by the schemas of farm_server.schemas);
nothing is stored from a rejected request.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from farm_client.subunit_results import NotSubunit, parse
from farm_server import metrics
from farm_server.api.auth import require_worker
from farm_server.holders import holder_keeps
from farm_server.lifecycle import Report, Verdict
from farm_server.models import TestRow
from farm_server.schemas import (
    PAYLOAD_MAX,
    RESULT_UPLOAD_QUERY,
    STATUS_UPDATE,
    TEST_QUERY,
    FieldError,
    checked,
    checked_query,
    form_body,
)
from farm_server.state import farm
from farm_server.store.results import Stored
from farm_server.store.tests import claims_held
from farm_worker.protocol import DUPLICATE, FINAL_STATES, SUPERSEDED, TestState, show

bp = Blueprint("refstack", __name__)



def _body() -> dict[str, Any]:
    """The status update, from a JSON object or a form, valid by STATUS_UPDATE."""
    doc = request.get_json(silent=True) if request.is_json else form_body(request.form)
    body = checked(STATUS_UPDATE, doc)
    if body.get("payload") is not None and len(json.dumps(body["payload"])) > PAYLOAD_MAX:
        raise FieldError.of("payload", f"is larger than {PAYLOAD_MAX} bytes")
    return body


def _unknown(test_id: str) -> FieldError:
    return FieldError.of("test_id", f"{show(test_id)} is not a test of this server")


@bp.post("/update-test-status/", strict_slashes=False)
def update_test_status() -> tuple[Response, int]:
    started = time.perf_counter()
    outcome = "rejected"  # a 400 or a 405 (raised)
    try:
        answer, verdict = _update_test_status()
        outcome = "superseded" if verdict is Verdict.SUPERSEDED else "accepted"
        return answer, 202
    finally:
        metrics.m().reports.labels(outcome).inc()
        metrics.m().report_seconds.observe(time.perf_counter() - started)


def _update_test_status() -> tuple[Response, Verdict]:
    host = require_worker()
    body = _body()
    test_id, worker = body["test_id"], body.get("worker")
    progress = body.get("progress") or None
    p = progress or {}
    report = Report(TestState(body["status"]), body.get("message") or "", worker or host.name,
                    (p.get("done"), p.get("total"), p.get("current")))
    kept_by = None
    if worker is not None and report.state is TestState.INSTALLING:
        held = farm().store.holder(test_id)
        if held is not None and held[1] and claims_held(held[0], held[1], report) \
                and holder_keeps(farm().gearman, held[1], test_id):
            kept_by = held[1]
    applied = farm().store.apply(test_id, report, source="worker", progress=progress,
                                 payload=body.get("payload"), worker_name=host.name,
                                 fence=worker is not None, report_id=body.get("report_id"),
                                 kept_by=kept_by)
    if applied is None:
        raise _unknown(test_id)
    answer = {"test_id": test_id, "state": applied.state.value,
              "report": applied.verdict.value}
    if applied.verdict is Verdict.SUPERSEDED:
        answer["worker"] = applied.worker
    return jsonify(answer), applied.verdict


@bp.post("/post-result", strict_slashes=False)
def post_result() -> tuple[Response, int]:
    require_worker()
    query = checked_query(RESULT_UPLOAD_QUERY, request.args)
    test_id, uploader, cpid = query["test_id"], query.get("worker"), query.get("cpid")
    upload = request.files.get("file")
    if upload is None:
        raise FieldError.of("file", "is required (multipart/form-data field `file`)")
    data = upload.read()
    try:
        parsed = parse(data)
    except NotSubunit as exc:
        raise FieldError.of("file", str(exc)) from None
    test = farm().store.get(test_id)
    if test is not None and uploader and test.worker and test.worker != uploader:
        return jsonify({"error": f"worker: test {test_id} is held by worker {test.worker}, "
                                 f"not {uploader}: results refused", "field": "worker",
                        "report": SUPERSEDED, "worker": test.worker}), 409
    stored = farm().store.store_results(test_id, parsed, data, cpid)
    if stored is Stored.NO_TEST:
        raise _unknown(test_id)
    c = parsed.counts()
    answer = {"test_id": test_id, "tests": len(parsed.tests), "passed": c.passed,
              "failed": c.failed, "skipped": c.skipped, "classes_failed": c.classes_failed,
              "classes_skipped": c.classes_skipped}
    if stored is Stored.DUPLICATE:  # delivered again: the server has these results
        return jsonify({**answer, "report": DUPLICATE}), 200
    for result, count in (("passed", c.passed), ("failed", c.failed), ("skipped", c.skipped),
                          ("class_failed", c.classes_failed),
                          ("class_skipped", c.classes_skipped)):
        if count:
            metrics.m().tests.labels(result).inc(count)
    return jsonify(answer), 201


def _requested_test() -> TestRow | tuple[Response, int]:
    """The test named by `?test_id=` for a known testing host, or the error answer."""
    require_worker()
    test_id = checked_query(TEST_QUERY, request.args)["test_id"]
    test = farm().store.get(test_id)
    if test is None:
        return jsonify({"error": f"test_id: {show(test_id)} is not a test of this server",
                        "field": "test_id"}), 404
    return test


@bp.get("/get-miniconf", strict_slashes=False)
def get_miniconf() -> tuple[Response, int]:
    test = _requested_test()
    if not isinstance(test, TestRow):
        return test
    if test.conf_json is None:
        return _dropped(test, "tempest configuration", "configuration is", "none was given")
    return jsonify(json.loads(test.conf_json)), 200


@bp.get("/get-accounts", strict_slashes=False)
def get_accounts() -> tuple[Response, int]:
    """The test's pre-provisioned accounts, for the worker that runs it (as its conf)."""
    test = _requested_test()
    if not isinstance(test, TestRow):
        return test
    if test.accounts_json is None:
        return _dropped(test, "accounts", "accounts are", "none were given")
    return jsonify({"accounts": json.loads(test.accounts_json)}), 200


def _dropped(test: TestRow, what: str, dropped: str, never: str) -> tuple[Response, int]:
    """404 for a test's secret that is not there: why (it ended, or it never had one)."""
    ended = TestState(test.state) in FINAL_STATES
    why = f"it ended ({test.state}): a test's {dropped} dropped when it ends" if ended \
        else never
    answer = {"error": f"test {test.id} has no {what}: {why}"}
    if ended:  # a second copy of the job stops on this (farm_worker.protocol.ended_reason)
        answer.update(test_id=test.id, state=test.state)
    return jsonify(answer), 404


@bp.get("/get-testcases", strict_slashes=False)
def get_testcases() -> tuple[Response, int]:
    test = _requested_test()
    if not isinstance(test, TestRow):
        return test
    tests = json.loads(test.tests_json) if test.tests_json else {}
    return jsonify({"testcases": list(tests.get("list") or tests.get("include", []))}), 200
