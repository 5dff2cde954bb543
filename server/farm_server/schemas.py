"""Every request body and query string the server takes, as JSON Schemas (draft 2020-12):
the handlers validate with them (`checked`, `checked_query`) and the served OpenAPI
document is built from them (api/openapi.py), so the two cannot disagree. A value's problem
is worded in `x-error`; `FieldError` is the one exception a bad request raises, and the app
turns it into a 400 naming the field and the bad value."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from werkzeug.datastructures import MultiDict

from farm_client.refstack_upload import CPID_PATTERN
from farm_server.exceptions import FarmServerError
from farm_server.models import FAILED, UPLOADED
from farm_worker.exceptions import FieldError as Problem
from farm_worker.protocol import (
    COUNT_KEYS,
    GUIDELINE_NAME_PATTERN,
    HTTP_URL,
    PAYLOAD_SCHEMA,
    REPORT_ID_PATTERN,
    STATE_VALUES,
    TEST_ID_PATTERN,
    VERSION_PATTERN,
    Validator,
    schema_errors,
    show,
    validator,
)

STATES = list(STATE_VALUES)  # JSON Schema enums are arrays
MESSAGE_MAX = 4096
PAYLOAD_MAX = 2 * 1024 * 1024  # a report's `payload`, as JSON: a final one carries a guideline
# run's compliance report (a test list of 5,000 tests with their skip reasons fits)
MAX_LIMIT = 500
RESULT_FORMATS = ["json", "subunit", "junit", "html"]


class FieldError(FarmServerError):
    """A request the server refuses (400): what is wrong, field by field."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(str(problems[0]))

    @classmethod
    def of(cls, field: str, message: str) -> FieldError:
        return cls([Problem(field, message)])

    @property
    def field(self) -> str:
        return self.problems[0].field

    def answer(self) -> dict[str, Any]:
        """The 400's body: `error` and `field` from the first problem, every one in `errors`
        when there are several."""
        doc: dict[str, Any] = {"error": str(self), "field": self.field}
        if len(self.problems) > 1:
            doc["errors"] = [str(p) for p in self.problems]
        return doc


def _id(what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": TEST_ID_PATTERN, "x-error": what}


TEST_ID = _id(f"does not match {TEST_ID_PATTERN}")
WORKER_ID = _id("is not a worker id")
CPID = {"type": "string", "pattern": f"^{CPID_PATTERN.pattern}$",
        "x-error": "is not a cloud id (letters, digits, . _ -; up to 64)",
        "description": "the cloud's RefStack id"}
URL = {"type": "string", "format": HTTP_URL, "maxLength": 2000,
       "x-error": "is not an http(s) URL"}
_COUNT = {"type": "integer", "minimum": 0, "x-error": "is not a count"}

STATUS_UPDATE: dict[str, Any] = {
    "title": "StatusUpdate",
    "description": "POST /update-test-status/ (JSON, or a form whose `progress` is JSON)",
    "type": "object", "required": ["test_id", "status"],
    "properties": {
        "test_id": TEST_ID,
        "status": {"enum": STATES, "x-error": "is not a state; use one of "
                                              + ", ".join(STATES)},
        "message": {"type": ["string", "null"], "maxLength": MESSAGE_MAX,
                    "x-error": f"is not a string of at most {MESSAGE_MAX} characters"},
        "worker": WORKER_ID,
        "report_id": {"type": ["string", "null"], "pattern": REPORT_ID_PATTERN,
                      "x-error": "is not a report id (letters, digits, . _ : -; up to 128)",
                      "description": "unique per test: a report whose id the test's history "
                                     "holds is answered `duplicate` and not recorded again"},
        "payload": {"description": f"anything, up to {PAYLOAD_MAX} bytes as JSON"},
        "progress": {
            "type": ["object", "null"], "x-error": "is not an object",
            "additionalProperties": False,
            "properties": {
                **{key: _COUNT for key in (*COUNT_KEYS, "not_run")},
                "current": {"type": "string", "maxLength": 1024, "x-error": "is not a test id"},
            }},
    },
}

UPLOAD_RECORD: dict[str, Any] = {
    "title": "Upload",
    "description": "POST /v1/tests/{test_id}/uploads: an upload a client made to RefStack",
    "type": "object", "required": ["target", "state"], "additionalProperties": False,
    "properties": {
        "target": URL,
        "state": {"enum": [UPLOADED, FAILED], "x-error": f"is not {UPLOADED} or {FAILED}"},
        "attempts": {"type": "integer", "minimum": 1, "maximum": 100,
                     "x-error": "is not a number from 1 to 100"},
        **{key: {"type": ["string", "null"], "maxLength": limit,
                 "x-error": f"is not a string of up to {limit}"}
           for key, limit in (("signed_by", 200), ("result_id", 64), ("result_url", 2000),
                              ("message", 2000))},
    },
    # a success names what RefStack made of it
    "if": {"properties": {"state": {"const": UPLOADED}}},
    "then": {"properties": {"result_id": {"type": "string", "minLength": 1,
                                          "x-error": "is required for an upload that "
                                                     "succeeded"}},
             "required": ["result_id"]},
}


def _create_test() -> dict[str, Any]:
    """The job payload's schema without `callback` (the server reports to itself) and with
    `schema` and `test_id` optional, plus what only the server reads."""
    schema = copy.deepcopy(PAYLOAD_SCHEMA)
    for key in ("$schema", "$id"):
        schema.pop(key)
    schema["title"] = "CreateTest"
    schema["description"] = "POST /v1/tests: a job payload the server completes and queues"
    schema["required"] = ["tempest"]
    props = schema["properties"]
    props["callback"] = {"not": {}, "x-error": "is not allowed: the server reports to itself"}
    props["accounts"] = props["accounts"]["else"]  # the accounts themselves, kept here
    props["queue_anyway"] = {"type": "boolean", "x-error": "is not a boolean",
                             "description": "queue even if no worker serves the version"}
    props["upload_url"] = {**URL, "x-error": "is not an http(s) URL of a RefStack API",
                           "description": "upload the results to this RefStack API when the "
                                          "run ends passed or failed (default: the "
                                          "server's refstack_upload_url)"}
    props["cpid"] = {**CPID, "description": "the cloud's RefStack id (default: the "
                                            "worker's discovery)"}
    return schema


CREATE_TEST = _create_test()

# query strings: every value is a string; integers are converted before validation
LIST_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "state": {"type": "array", "items": {"enum": STATES, "x-error": "is not a state"},
                  "description": "repeat, or separate with commas"},
        "version": {"type": "string", "pattern": VERSION_PATTERN,
                    "x-error": "is not an exact version"},
        "guideline": {"type": "string", "maxLength": 64, "pattern": GUIDELINE_NAME_PATTERN,
                      "x-error": "is not a guideline version",
                      "description": "guideline runs of this version (e.g. 2020.06)"},
        "target": {"type": "string", "maxLength": 64, "pattern": GUIDELINE_NAME_PATTERN,
                   "x-error": "is not a guideline target",
                   "description": "guideline runs of this target (e.g. platform)"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50,
                  "x-error": f"is not a number from 1 to {MAX_LIMIT}"},
        "offset": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0,
                   "x-error": "is not a number from 0 to 1000000000"},
    },
}
RESULTS_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {"format": {"enum": RESULT_FORMATS, "default": "json",
                              "x-error": "is not json, subunit, junit or html"}},
}
REFSTACK_QUERY: dict[str, Any] = {"type": "object", "properties": {"cpid": CPID}}
COMPARE_QUERY: dict[str, Any] = {
    "type": "object", "required": ["a"],
    "properties": {
        "a": {**TEST_ID, "description": "the reference run (the older)"},
        "b": {**TEST_ID, "description": "the run compared with it; without it, A is "
                                        "compared with the run before it of the same "
                                        "cloud and Tempest version"},
        "ratio": {"type": "number", "minimum": 1, "maximum": 1000, "default": 1.5,
                  "x-error": "is not a number from 1 to 1000",
                  "description": "a duration change counts from this factor ..."},
        "min_delta_s": {"type": "number", "minimum": 0, "maximum": 86400, "default": 1.0,
                        "x-error": "is not a number of seconds from 0 to 86400",
                        "description": "... and this many seconds"},
    },
}
TEST_QUERY: dict[str, Any] = {"type": "object", "required": ["test_id"],
                              "properties": {"test_id": TEST_ID}}
RESULT_UPLOAD_QUERY: dict[str, Any] = {
    "type": "object", "required": ["test_id"],
    "properties": {"test_id": TEST_ID,
                   "worker": {**WORKER_ID, "description": "the uploading worker: refused "
                                                          "(409) if another holds the test"},
                   "cpid": CPID},
}

_VALIDATORS: dict[int, Validator] = {}
_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only, and no 5000-digit int()


def _validator(schema: Mapping[str, Any]) -> Validator:
    found = _VALIDATORS.get(id(schema))
    if found is None:
        found = _VALIDATORS[id(schema)] = validator(schema)
    return found


def checked(schema: Mapping[str, Any], doc: Any) -> dict[str, Any]:
    """`doc` (a request body) if it is an object valid by `schema`; else FieldError."""
    if not isinstance(doc, dict):
        raise FieldError.of("body", "is not a JSON object")
    problems = schema_errors(_validator(schema), doc)
    if problems:
        raise FieldError(problems)
    return doc


def form_body(form: MultiDict[str, str]) -> dict[str, Any]:
    """A form's fields as a body: empty ones left out, a `progress` field decoded."""
    doc: dict[str, Any] = {k: v for k, v in form.items() if v != ""}
    if isinstance(doc.get("progress"), str):
        try:
            doc["progress"] = json.loads(doc["progress"])
        except ValueError:
            raise FieldError.of("progress", f"{show(doc['progress'])} is not JSON") from None
    return doc


def checked_query(schema: Mapping[str, Any], args: MultiDict[str, str]) -> dict[str, Any]:
    """A query string by `schema`: the parameters it names (others are ignored), arrays
    from repeated or comma-separated values, integers converted, defaults filled in."""
    doc: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        values = args.getlist(name)
        if not values:
            if "default" in prop:
                doc[name] = prop["default"]
            continue
        if prop.get("type") == "array":
            doc[name] = [v for value in values for v in value.split(",") if v]
        elif prop.get("type") == "integer":
            doc[name] = int(values[0]) if _INTEGER.fullmatch(values[0]) else values[0]
        elif prop.get("type") == "number":
            doc[name] = _number(values[0])
        else:
            doc[name] = values[0]
    problems = schema_errors(_validator(schema), doc)
    if problems:  # the parameter is the field, not the item of a repeated one
        raise FieldError([Problem(p.field.split("[")[0], p.message) for p in problems])
    return doc


def _number(text: str) -> float | str:
    """A finite number, or the text (the schema then names it as not a number)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def openapi_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A schema as the OpenAPI document shows it (OpenAPI 3.1 is JSON Schema 2020-12)."""
    return copy.deepcopy(dict(schema))


def query_parameters(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OpenAPI `parameters` (in: query) from a query schema."""
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema["properties"].items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": openapi_schema(prop)}
        if prop.get("type") == "array":
            param["explode"] = True
        if "description" in prop:
            param["description"] = prop["description"]
        out.append(param)
    return out
