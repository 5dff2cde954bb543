"""The RefStack contract, worker-facing: status updates, results, miniconf, testcases.

Every endpoint needs a known testing host (405 otherwise); a bad request gets 400 with
the offending field named; nothing is stored from a rejected request.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from farm_client.refstack_upload import CPID_PATTERN
from farm_client.subunit_results import NotSubunit, parse
from farm_server.api.auth import require_worker
from farm_server.lifecycle import Report, Verdict
from farm_server.models import TestRow
from farm_server.state import farm
from farm_worker.protocol import FINAL_STATES, SUPERSEDED, TEST_ID_PATTERN, TestState, show

bp = Blueprint("refstack", __name__)

MAX_MESSAGE = 4096
MAX_PAYLOAD = 64 * 1024
_PROGRESS_INTS = ("done", "total", "passed", "failed", "skipped")


class BadField(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def bad_request(exc: BadField) -> tuple[Response, int]:
    return jsonify({"error": str(exc), "field": exc.field}), 400


def _body() -> dict[str, Any]:
    """The request's fields, from a JSON object or a form."""
    if request.is_json:
        doc = request.get_json(silent=True)
        if not isinstance(doc, dict):
            raise BadField("body", "is not a JSON object")
        return doc
    return {k: v for k, v in request.form.items()}


def test_id_of(value: Any) -> str:
    if value is None or value == "":
        raise BadField("test_id", "is required")
    if not isinstance(value, str) or not re.match(TEST_ID_PATTERN, value):
        raise BadField("test_id", f"{show(value)} does not match {TEST_ID_PATTERN}")
    return value


def _state(value: Any) -> TestState:
    if value is None or value == "":
        raise BadField("status", "is required")
    try:
        return TestState(value)
    except ValueError:
        raise BadField("status", f"{show(value)} is not a state; use one of "
                                 + ", ".join(s.value for s in TestState)) from None


def _message(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_MESSAGE:
        raise BadField("message", f"{show(value)} is not a string of at most {MAX_MESSAGE} "
                                  "characters")
    return value


def _progress(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):  # a form field carries it as JSON
        try:
            value = json.loads(value)
        except ValueError:
            raise BadField("progress", f"{show(value)} is not JSON") from None
    if not isinstance(value, dict):
        raise BadField("progress", f"{show(value)} is not an object")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _PROGRESS_INTS:
            if not isinstance(item, int) or isinstance(item, bool) or item < 0:
                raise BadField(f"progress.{key}", f"{show(item)} is not a count")
            out[key] = item
        elif key == "current":
            if not isinstance(item, str) or len(item) > 1024:
                raise BadField("progress.current", f"{show(item)} is not a test id")
            out[key] = item
        else:
            raise BadField(f"progress.{key}", "unknown field; allowed: current, "
                                              + ", ".join(_PROGRESS_INTS))
    return out


def _payload(value: Any) -> Any:
    if value is not None and len(json.dumps(value)) > MAX_PAYLOAD:
        raise BadField("payload", f"is larger than {MAX_PAYLOAD} bytes")
    return value


@bp.post("/update-test-status/", strict_slashes=False)
def update_test_status() -> tuple[Response, int]:
    host = require_worker()
    try:
        body = _body()
        test_id = test_id_of(body.get("test_id"))
        state = _state(body.get("status"))
        message = _message(body.get("message"))
        progress = _progress(body.get("progress"))
        payload = _payload(body.get("payload"))
        worker = body.get("worker")
        if worker is not None and not (isinstance(worker, str)
                                       and re.match(TEST_ID_PATTERN, worker)):
            raise BadField("worker", f"{show(worker)} is not a worker id")
    except BadField as exc:
        return bad_request(exc)
    p = progress or {}
    report = Report(state, message, worker or host.name,
                    (p.get("done"), p.get("total"), p.get("current")))
    applied = farm().store.apply(test_id, report, source="worker", progress=progress,
                                 payload=payload, worker_name=host.name,
                                 fence=worker is not None)
    if applied is None:
        return bad_request(BadField("test_id", f"{show(test_id)} is not a test of this "
                                               "server"))
    answer = {"test_id": test_id, "state": applied.state.value,
              "report": applied.verdict.value}
    if applied.verdict is Verdict.SUPERSEDED:
        answer["worker"] = applied.worker
    return jsonify(answer), 202


@bp.post("/post-result", strict_slashes=False)
def post_result() -> tuple[Response, int]:
    require_worker()
    try:
        test_id = test_id_of(request.args.get("test_id"))
        uploader = request.args.get("worker")
        if uploader is not None and not re.match(TEST_ID_PATTERN, uploader):
            raise BadField("worker", f"{show(uploader)} is not a worker id")
        cpid = request.args.get("cpid")
        if cpid is not None and not CPID_PATTERN.fullmatch(cpid):
            raise BadField("cpid", f"{show(cpid)} is not a cloud id")
        upload = request.files.get("file")
        if upload is None:
            raise BadField("file", "is required (multipart/form-data field `file`)")
        data = upload.read()
        try:
            parsed = parse(data)
        except NotSubunit as exc:
            raise BadField("file", str(exc)) from None
    except BadField as exc:
        return bad_request(exc)
    test = farm().store.get(test_id)
    if test is not None and uploader and test.worker and test.worker != uploader:
        return jsonify({"error": f"worker: test {test_id} is held by worker {test.worker}, "
                                 f"not {uploader}: results refused", "field": "worker",
                        "report": SUPERSEDED, "worker": test.worker}), 409
    if not farm().store.store_results(test_id, parsed, data, cpid):
        return bad_request(BadField("test_id", f"{show(test_id)} is not a test of this "
                                               "server"))
    return jsonify({"test_id": test_id, "tests": len(parsed.tests), "passed": parsed.passed,
                    "failed": parsed.failed, "skipped": parsed.skipped}), 201


def _requested_test() -> TestRow | tuple[Response, int]:
    """The test named by `?test_id=` for a known testing host, or the error answer."""
    require_worker()
    try:
        test_id = test_id_of(request.args.get("test_id"))
    except BadField as exc:
        return bad_request(exc)
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
        why = (f"it ended ({test.state}): a test's configuration is dropped when it ends"
               if TestState(test.state) in FINAL_STATES else "none was given")
        return jsonify({"error": f"test {test.id} has no tempest configuration: {why}"}), 404
    return jsonify(json.loads(test.conf_json)), 200


@bp.get("/get-testcases", strict_slashes=False)
def get_testcases() -> tuple[Response, int]:
    test = _requested_test()
    if not isinstance(test, TestRow):
        return test
    tests = json.loads(test.tests_json) if test.tests_json else {}
    return jsonify({"testcases": list(tests.get("include", []))}), 200
