"""The OpenAPI 3.1 document served at /v1/openapi.json (the RefStack endpoints included).
Request bodies and query parameters come from farm_server.schemas, which the handlers
validate with: the document cannot say something the server does not check."""

from __future__ import annotations

from typing import Any

from farm_server import __version__
from farm_server.schemas import (
    COMPARE_QUERY,
    CREATE_TEST,
    LIST_QUERY,
    REFSTACK_QUERY,
    RESULT_UPLOAD_QUERY,
    RESULTS_QUERY,
    STATES,
    STATUS_UPDATE,
    TEST_QUERY,
    UPLOAD_RECORD,
    openapi_schema,
    query_parameters,
)


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


# a path's test id is looked up, not validated: an unknown one is 404
_PATH_TEST_ID = {"name": "test_id", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Test"}
    user: list[dict[str, list[str]]] = [{"userToken": []}]
    worker: list[dict[str, list[str]]] = [{"workerToken": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "refstack-farm status server", "version": __version__,
                 "description": "The RefStack contract (worker-facing) and JSON API v1."},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "userToken": {"type": "http", "scheme": "bearer"},
                "workerToken": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"},
                                         "field": {"type": "string"},
                                         "errors": {"type": "array",
                                                    "items": {"type": "string"}}}},
                "Test": {"type": "object", "required": ["id", "state", "tempest_version"],
                         "properties": {
                             "id": {"type": "string"},
                             "state": {"enum": STATES},
                             "tempest_version": {"type": "string"},
                             "dry_run": {"type": "boolean"},
                             "timeout_s": {"type": ["integer", "null"]},
                             "tests": {"type": ["object", "null"]},
                             "worker": {"type": ["string", "null"]},
                             "message": {"type": "string"},
                             "submitted_by": {"type": ["string", "null"]},
                             "progress": {"type": "object"},
                             "summary": {"type": "object"},
                             "created_at": {"type": ["string", "null"]},
                             "updated_at": {"type": ["string", "null"]},
                             "started_at": {"type": ["string", "null"]},
                             "finished_at": {"type": ["string", "null"]},
                             "last_report_at": {"type": ["string", "null"]},
                             "cpid": {"type": ["string", "null"]},
                             "upload_to": {"type": ["string", "null"]},
                             "guideline": {
                                 "type": ["object", "null"],
                                 "description": "an interop guideline run: version, target, "
                                                "types (capability statuses)"},
                             "selection": {
                                 "type": ["object", "null"],
                                 "description": "a test list's matching: listed, matched, "
                                                "by_name, by_alias, by_id, renamed, not_found"},
                             "compliance": {
                                 "type": ["object", "null"],
                                 "description": "a guideline run's compliance report: "
                                                "capabilities, totals, summary"},
                             "discover": {
                                 "type": ["object", "null"],
                                 "description": "a run whose conf python-tempestconf "
                                                "discovered: the discovery's options"},
                             "tempest_conf": {
                                 "type": ["object", "null"],
                                 "additionalProperties": {
                                     "type": "object",
                                     "additionalProperties": {"type": "string"}},
                                 "description": "the tempest.conf the run used (discovered "
                                                "or given), {section: {key: value}}, each "
                                                "secret's value <removed>; not in a list "
                                                "of tests"}}},
                "Upload": openapi_schema(UPLOAD_RECORD),
                "StatusUpdate": openapi_schema(STATUS_UPDATE),
                "CreateTest": openapi_schema(CREATE_TEST),
            },
        },
        "paths": {
            "/update-test-status/": {"post": {
                "summary": "A worker reports a test's state and progress",
                "security": worker,
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/StatusUpdate"}},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}},
                "responses": {"202": _ok(
                    "accepted; `report` is apply, keep, duplicate or superseded (another "
                    "worker holds the test: stop; `worker` names it) - keep with a final "
                    "`state` also means stop"), "400": _error("a field is missing or "
                                                                     "invalid (named)"),
                              "405": _error("not a known testing host"),
                              "413": _error("body too large")}}},
            "/post-result": {"post": {
                "summary": "A worker uploads the subunit v2 stream of a test",
                "security": worker, "parameters": query_parameters(RESULT_UPLOAD_QUERY),
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": {"type": "object", "required": ["file"], "properties": {
                        "file": {"type": "string", "format": "binary"}}}}}},
                "responses": {"201": _ok("stored and parsed"),
                              "400": _error("not subunit, or a bad test_id"),
                              "409": _error("another worker holds the test"),
                              "405": _error("not a known testing host"),
                              "413": _error("body too large")}}},
            "/get-miniconf": {"get": {
                "summary": "The test's tempest configuration (secrets: workers only)",
                "security": worker, "parameters": query_parameters(TEST_QUERY),
                "responses": {"200": _ok("the conf", {"type": "object"}),
                              "400": _error("bad test_id"), "404": _error("no such test"),
                              "405": _error("not a known testing host")}}},
            "/get-accounts": {"get": {
                "summary": "The test's pre-provisioned accounts (secrets: workers only)",
                "security": worker, "parameters": query_parameters(TEST_QUERY),
                "responses": {"200": _ok("the accounts", {"type": "object", "properties": {
                    "accounts": {"type": "array", "items": {"type": "object"}}}}),
                              "400": _error("bad test_id"),
                              "404": _error("no such test, or it has none (any more)"),
                              "405": _error("not a known testing host")}}},
            "/get-testcases": {"get": {
                "summary": "The test's list of test cases",
                "security": worker, "parameters": query_parameters(TEST_QUERY),
                "responses": {"200": _ok("the list", {"type": "object", "properties": {
                    "testcases": {"type": "array", "items": {"type": "string"}}}}),
                              "400": _error("bad test_id"), "404": _error("no such test"),
                              "405": _error("not a known testing host")}}},
            "/v1/openapi.json": {"get": {"summary": "This document",
                                         "responses": {"200": _ok("OpenAPI 3.1")}}},
            "/v1/tests": {
                "post": {"summary": "Create a test and queue its job", "security": user,
                         "operationId": "createTest",
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/CreateTest"}}}},
                         "responses": {"201": {**_ok("created and queued", {
                             "type": "object", "properties": {"test": ref}}), "links": {
                                 name: {"operationId": op, "parameters": {
                                     "test_id": "$response.body#/test/id"}}
                                 for name, op in (("GetTest", "getTest"),
                                                  ("CancelTest", "cancelTest"),
                                                  ("GetResults", "getResults"))}},
                                       "400": _error("invalid payload (field named)"),
                                       "401": _error("user token required"),
                                       "409": _error("test id exists already"),
                                       "413": _error("body too large"),
                                       "422": _error("no worker serves that version"),
                                       "503": _error("gearman unreachable; nothing stored")}},
                "get": {"summary": "List tests", "security": user,
                        "parameters": query_parameters(LIST_QUERY),
                        "responses": {"200": _ok("a page of tests", {
                            "type": "object", "properties": {
                                "tests": {"type": "array", "items": ref},
                                "total": {"type": "integer", "description":
                                          "how many match, counted up to 10,000"},
                                "total_capped": {"type": "boolean", "description":
                                                 "true: more than `total` match"}}}),
                                      "400": _error("bad filter"),
                                      "401": _error("user token required")}}},
            "/v1/tests/{test_id}": {"get": {
                "summary": "A test with its history", "security": user,
                "operationId": "getTest",
                "parameters": [_PATH_TEST_ID],
                "responses": {"200": _ok("the test"), "401": _error("user token required"),
                              "404": _error("no such test")}}},
            "/v1/tests/{test_id}/cancel": {"post": {
                "summary": "Cancel a queued or running test", "security": user,
                "operationId": "cancelTest",
                "parameters": [_PATH_TEST_ID],
                "responses": {"200": _ok("removed from the queue"),
                              "202": _ok("cancel requested from the worker"),
                              "401": _error("user token required"),
                              "404": _error("no such test"),
                              "409": _error("already final"),
                              "503": _error("gearman unreachable")}}},
            "/v1/tests/{test_id}/results": {"get": {
                "summary": "Results: JSON, the subunit stream, or JUnit XML", "security": user,
                "operationId": "getResults",
                "parameters": [_PATH_TEST_ID, *query_parameters(RESULTS_QUERY)],
                "responses": {"200": {"description": "the results", "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/octet-stream": {"schema": {"type": "string",
                                                            "format": "binary"}},
                    "application/xml": {"schema": {"type": "string"}}}},
                              "400": _error("bad format"),
                              "401": _error("user token required"),
                              "404": _error("no such test or no results yet")}}},
            "/v1/tests/{test_id}/refstack": {"get": {
                "summary": "The document RefStack's POST /v1/results gets for this run",
                "security": user, "operationId": "getRefstackDocument",
                "parameters": [_PATH_TEST_ID, *query_parameters(REFSTACK_QUERY)],
                "responses": {"200": _ok("cpid, duration_seconds, results", {
                                  "type": "object"}),
                              "400": _error("bad cpid"),
                              "401": _error("user token required"),
                              "404": _error("no such test or no results yet"),
                              "409": _error("no cpid known, or no passed test")}}},
            "/v1/tests/{test_id}/uploads": {"post": {
                "summary": "Record an upload to RefStack made by a client",
                "security": user, "operationId": "recordUpload",
                "parameters": [_PATH_TEST_ID],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Upload"}}}},
                "responses": {"201": _ok("recorded"), "400": _error("a bad field"),
                              "401": _error("user token required"),
                              "404": _error("no such test")}}},
            "/v1/compare": {"get": {
                "summary": "Run B against run A: regressed, fixed, new, missing, still "
                           "failing, slower and faster tests (without B: A against the "
                           "run before it of its cloud and Tempest version)",
                "security": user, "operationId": "compareRuns",
                "parameters": query_parameters(COMPARE_QUERY),
                "responses": {"200": _ok("the comparison", {"type": "object"}),
                              "400": _error("bad parameter"),
                              "401": _error("user token required"),
                              "404": _error("no such run, or one without results")}}},
            "/v1/queue": {"get": {
                "summary": "gearmand: functions, queued, running, workers, per server",
                "security": user,
                "responses": {"200": _ok("the queue", {"type": "object"}),
                              "401": _error("user token required")}}},
        },
    }
