"""The OpenAPI 3.1 document served at /v1/openapi.json (the RefStack endpoints included)."""

from __future__ import annotations

import copy
from typing import Any

from farm_client.refstack_upload import CPID_PATTERN
from farm_server import __version__
from farm_worker.protocol import PAYLOAD_SCHEMA, TEST_ID_PATTERN, VERSION_PATTERN, TestState

STATES = [s.value for s in TestState]


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


def _test_id_param(where: str) -> dict[str, Any]:
    return {"name": "test_id", "in": where, "required": True,
            "schema": {"type": "string", "pattern": TEST_ID_PATTERN}}


def _create_schema() -> dict[str, Any]:
    """POST /v1/tests: the payload schema without callback; schema and test_id optional."""
    schema = copy.deepcopy(PAYLOAD_SCHEMA)
    for key in ("$schema", "$id", "title"):
        schema.pop(key, None)
    schema["properties"].pop("callback")
    schema["required"] = ["tempest"]
    schema["properties"]["queue_anyway"] = {"type": "boolean"}
    schema["properties"]["upload_url"] = {
        "type": "string", "pattern": "^https?://",
        "description": "upload the results to this RefStack API when the run ends passed "
                       "or failed (default: the server's refstack_upload_url)"}
    schema["properties"]["cpid"] = {
        "type": "string", "pattern": f"^{CPID_PATTERN.pattern}$",
        "description": "the cloud's RefStack id (default: the worker's discovery)"}
    return schema


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
                                         "field": {"type": "string"}}},
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
                             "upload_to": {"type": ["string", "null"]}}},
                "Upload": {
                    "type": "object", "required": ["target", "state"],
                    "properties": {
                        "target": {"type": "string", "pattern": "^https?://"},
                        "state": {"enum": ["uploaded", "failed"]},
                        "attempts": {"type": "integer", "minimum": 1, "maximum": 100},
                        "signed_by": {"type": ["string", "null"], "maxLength": 200},
                        "result_id": {"type": ["string", "null"], "maxLength": 64},
                        "result_url": {"type": ["string", "null"], "maxLength": 2000},
                        "message": {"type": ["string", "null"], "maxLength": 2000}},
                    "additionalProperties": False},
                "StatusUpdate": {
                    "type": "object", "required": ["test_id", "status"],
                    "properties": {
                        "test_id": {"type": "string", "pattern": TEST_ID_PATTERN},
                        "status": {"enum": STATES},
                        "message": {"type": "string", "maxLength": 4096},
                        "worker": {"type": "string"},
                        "payload": {},
                        "progress": {"type": "object", "properties": {
                            "done": {"type": "integer", "minimum": 0},
                            "total": {"type": "integer", "minimum": 0},
                            "current": {"type": "string"},
                            "passed": {"type": "integer", "minimum": 0},
                            "failed": {"type": "integer", "minimum": 0},
                            "skipped": {"type": "integer", "minimum": 0}},
                            "additionalProperties": False}}},
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
                "security": worker, "parameters": [
                    _test_id_param("query"),
                    {"name": "worker", "in": "query", "required": False,
                     "description": "the uploading worker: refused (409) if another holds "
                                    "the test", "schema": {"type": "string",
                                                           "pattern": TEST_ID_PATTERN}}],
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
                "security": worker, "parameters": [_test_id_param("query")],
                "responses": {"200": _ok("the conf", {"type": "object"}),
                              "400": _error("bad test_id"), "404": _error("no such test"),
                              "405": _error("not a known testing host")}}},
            "/get-testcases": {"get": {
                "summary": "The test's list of test cases",
                "security": worker, "parameters": [_test_id_param("query")],
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
                             "schema": _create_schema()}}},
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
                "get": {"summary": "List tests", "security": user, "parameters": [
                    {"name": "state", "in": "query", "schema": {"enum": STATES}},
                    {"name": "version", "in": "query",
                     "schema": {"type": "string", "pattern": VERSION_PATTERN}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    {"name": "offset", "in": "query",
                     "schema": {"type": "integer", "minimum": 0}}],
                        "responses": {"200": _ok("a page of tests", {
                            "type": "object", "properties": {
                                "tests": {"type": "array", "items": ref},
                                "total": {"type": "integer"}}}),
                                      "400": _error("bad filter"),
                                      "401": _error("user token required")}}},
            "/v1/tests/{test_id}": {"get": {
                "summary": "A test with its history", "security": user,
                "operationId": "getTest",
                "parameters": [{"name": "test_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _ok("the test"), "401": _error("user token required"),
                              "404": _error("no such test")}}},
            "/v1/tests/{test_id}/cancel": {"post": {
                "summary": "Cancel a queued or running test", "security": user,
                "operationId": "cancelTest",
                "parameters": [{"name": "test_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _ok("removed from the queue"),
                              "202": _ok("cancel requested from the worker"),
                              "401": _error("user token required"),
                              "404": _error("no such test"),
                              "409": _error("already final"),
                              "503": _error("gearman unreachable")}}},
            "/v1/tests/{test_id}/results": {"get": {
                "summary": "Results: JSON, the subunit stream, or JUnit XML", "security": user,
                "operationId": "getResults",
                "parameters": [{"name": "test_id", "in": "path", "required": True,
                                "schema": {"type": "string"}},
                               {"name": "format", "in": "query",
                                "schema": {"enum": ["json", "subunit", "junit"]}}],
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
                "parameters": [{"name": "test_id", "in": "path", "required": True,
                                "schema": {"type": "string"}},
                               {"name": "cpid", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": _ok("cpid, duration_seconds, results", {
                                  "type": "object"}),
                              "400": _error("bad cpid"),
                              "401": _error("user token required"),
                              "404": _error("no such test or no results yet"),
                              "409": _error("no cpid known, or no passed test")}}},
            "/v1/tests/{test_id}/uploads": {"post": {
                "summary": "Record an upload to RefStack made by a client",
                "security": user, "operationId": "recordUpload",
                "parameters": [{"name": "test_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Upload"}}}},
                "responses": {"201": _ok("recorded"), "400": _error("a bad field"),
                              "401": _error("user token required"),
                              "404": _error("no such test")}}},
            "/v1/queue": {"get": {
                "summary": "gearmand: functions, queued, running, workers, per server",
                "security": user,
                "responses": {"200": _ok("the queue", {"type": "object"}),
                              "401": _error("user token required")}}},
        },
    }
