"""Payloads for tests: a valid base and a table of invalid ones with the field each names."""

from __future__ import annotations

import copy
import json
from typing import Any

VALID: dict[str, Any] = {
    "schema": 1,
    "test_id": "t-1",
    "tempest": {"version": "47.0.0"},
    "conf": {"identity": {"uri_v3": "http://127.0.0.1:5000/v3", "admin_password": "pw-1234"}},
    "tests": {"regex": "tempest.api.identity", "include": [], "exclude": []},
    "timeout_s": 600,
    "dry_run": True,
}


def valid(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    doc.update(changes)
    return doc


def with_field(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `doc` with one nested key (a.b.c) set, or removed when value is `...`."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return doc


def _with(path: str, value: Any) -> bytes:
    return json.dumps(with_field(VALID, path, value)).encode()


# (id, raw payload bytes, field named in the error, a fragment of the message)
INVALID: list[tuple[str, bytes, str, str]] = [
    ("not-json", b"this is not json", "payload", "is not JSON"),
    ("bad-utf8", b'{"schema": 1, "test_id": "\xff\xfe"}', "payload", "is not UTF-8"),
    ("empty", b"", "payload", "is not JSON"),
    ("array", b"[1, 2]", "payload", "is not a JSON object"),
    ("oversize", json.dumps(valid(test_id="big", conf={"s": {"k": "x" * 4000}},
                                  tests={"include": ["a" * 1000] * 1100})).encode(),
     "payload", "larger than the limit"),
    ("no-schema", _with("schema", ...), "schema", "is required"),
    ("schema-2", _with("schema", 2), "schema", "not a supported schema version"),
    ("no-test-id", _with("test_id", ...), "test_id", "is required"),
    ("test-id-space", _with("test_id", "bad id!"), "test_id", "does not match"),
    ("test-id-long", _with("test_id", "x" * 65), "test_id", "does not match"),
    ("test-id-int", _with("test_id", 42), "test_id", "is not of type"),
    ("test-id-unicode", _with("test_id", "tést"), "test_id", "does not match"),
    ("no-tempest", _with("tempest", ...), "tempest", "is required"),
    ("version-47", _with("tempest.version", "47"), "tempest.version",
     '"47" is not an exact version'),
    ("version-range", _with("tempest.version", ">=47.0.0"), "tempest.version",
     "is not an exact version"),
    ("version-int", _with("tempest.version", 47), "tempest.version", "is not of type"),
    ("version-too-old", _with("tempest.version", "30.0.0"), "tempest.version",
     "older than the oldest supported"),
    ("tempest-extra", _with("tempest.pip", "tempest"), "tempest.pip", "unknown field"),
    ("top-extra", _with("priority", "high"), "priority", "unknown field"),
    ("conf-string", _with("conf", "identity"), "conf", "is not of type"),
    ("conf-section-list", _with("conf.identity", ["a"]), "conf.identity", "is not of type"),
    ("conf-newline", _with("conf.identity.uri_v3", "http://x\n[auth]\nadmin_password=x"),
     "conf.identity.uri_v3", "not a string, number, boolean"),
    ("conf-bad-section", _with("conf.ide]ntity", {"a": "b"}), "conf.ide]ntity",
     "is not a valid name"),
    ("conf-value-dict", _with("conf.identity.region", {"a": 1}), "conf.identity.region",
     "not a string, number, boolean"),
    ("regex-invalid", _with("tests.regex", "tempest.(api"), "tests.regex",
     "is not a valid regular expression"),
    ("include-not-list", _with("tests.include", "tempest.api"), "tests.include",
     "is not of type"),
    ("include-bad-regex", _with("tests.include", ["ok", "bad[("]), "tests.include[1]",
     "is not a valid regular expression"),
    ("tests-extra", _with("tests.smoke", True), "tests.smoke", "unknown field"),
    ("callback-ftp", _with("callback", {"url": "ftp://host/"}), "callback.url",
     "is not an http:// or https:// URL"),
    ("callback-bad-ipv6", _with("callback", {"url": "http://[::1/"}), "callback.url",
     "is not an http:// or https:// URL"),
    ("callback-bad-port", _with("callback", {"url": "http://host:http/"}), "callback.url",
     "is not an http:// or https:// URL"),
    ("callback-no-url", _with("callback", {"token": "abcd"}), "callback.url", "is required"),
    ("timeout-zero", _with("timeout_s", 0), "timeout_s", "out of range"),
    ("timeout-huge", _with("timeout_s", 10**9), "timeout_s", "out of range"),
    ("timeout-string", _with("timeout_s", "60"), "timeout_s", "is not of type"),
    ("dry-run-string", _with("dry_run", "yes"), "dry_run", "is not of type"),
    ("no-conf-no-callback", _with("conf", ...), "conf", "is required when there is no callback"),
    ("discover-true", _with("discover", True), "discover", "is not of type"),
    ("discover-extra", _with("discover", {"create": True}), "discover.create", "unknown field"),
    ("discover-mem-zero", _with("discover", {"flavor_min_mem": 0}), "discover.flavor_min_mem",
     "out of range"),
    ("discover-no-admin", _with("discover", {}), "conf.auth.admin_username",
     "discover needs admin credentials"),
    ("discover-no-uri", json.dumps(valid(conf={"auth": {"admin_username": "a",
                                                        "admin_password": "pw-1234"}},
                                         discover={})).encode(),
     "conf.identity.uri_v3", "is required to discover the conf"),
]
