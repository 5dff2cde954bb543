"""The job payload, schema v1: the JSON Schema, its typed form and its validation."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from farm_worker import defaults
from farm_worker.exceptions import FieldError, PayloadError
from farm_worker.protocol.fields import HTTP_URL, schema_errors, show, validator
from farm_worker.protocol.testlist import MAX_TESTS, TEST_NAME_PATTERN, split_test

SCHEMA_VERSION = 1

# --- payload schema v1 ----------------------------------------------------------------------
TEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
VERSION_PATTERN = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$"
CONF_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
# One line, no control characters: a value must never be able to start a new config line.
CONF_STRING_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"

_SCALAR = {"oneOf": [
    {"type": "string", "maxLength": 4096, "pattern": CONF_STRING_PATTERN},
    {"type": "boolean"},
    {"type": "number"},
]}
_REGEX_LIST = {"type": "array", "maxItems": 20000,
               "items": {"type": "string", "minLength": 1, "maxLength": 1024,
                         "pattern": CONF_STRING_PATTERN}}

_TEST_NAME = {"type": "string", "maxLength": 1024, "allOf": [{
    "pattern": TEST_NAME_PATTERN,
    "x-error": "is not a test name (module.Class.test_method, optionally with [attributes])"}]}
# a guideline's version, target and capability names (2020.06, dns.2020.06, platform)
GUIDELINE_NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
_NAMES = {"type": "string", "maxLength": 128, "pattern": GUIDELINE_NAME_PATTERN}
# The statuses a guideline gives its capabilities (interop schema 2.0)
CAPABILITY_STATUSES = ("required", "advisory", "deprecated", "removed")
GUIDELINE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["version", "target", "types", "capabilities"],
    "properties": {
        "version": _NAMES, "target": _NAMES,
        "types": {"type": "array", "minItems": 1, "uniqueItems": True,
                  "items": {"enum": list(CAPABILITY_STATUSES)}},
        "flagged": {"type": "boolean"},
        "source": {"type": "string", "maxLength": 2048, "pattern": CONF_STRING_PATTERN},
        "capabilities": {"type": "array", "maxItems": 2000, "items": {
            "type": "object", "additionalProperties": False,
            "required": ["name", "status", "tests"],
            "properties": {
                "name": _NAMES, "status": {"enum": list(CAPABILITY_STATUSES)},
                "tests": {"type": "array", "maxItems": MAX_TESTS, "items": _TEST_NAME},
                "flagged": {"type": "array", "maxItems": MAX_TESTS, "items": _TEST_NAME},
            }}},
    },
}

# Tempest's pre-provisioned accounts (accounts.yaml): one account per item
MAX_ACCOUNTS = 100
_ACCOUNT_TEXT = {"type": "string", "minLength": 1, "maxLength": 255,
                 "pattern": CONF_STRING_PATTERN}
ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["username", "password"],
    "properties": {
        **{key: _ACCOUNT_TEXT for key in (
            "username", "password", "project_name", "tenant_name", "domain_name",
            "user_domain_name", "project_domain_name", "system")},
        "roles": {"type": "array", "maxItems": 50, "items": _ACCOUNT_TEXT},
        "types": {"type": "array", "maxItems": 10, "items": _ACCOUNT_TEXT},
        "resources": {"type": "object", "maxProperties": 20,
                      "additionalProperties": _ACCOUNT_TEXT},
    },
}
# "callback": the worker fetches them (GET /get-accounts), as the status server queues it
ACCOUNT_LIST_SCHEMA: dict[str, Any] = {
    "type": "array", "minItems": 1, "maxItems": MAX_ACCOUNTS, "items": ACCOUNT_SCHEMA,
    "x-error": 'is not a list of accounts (or "callback")'}
ACCOUNTS_SCHEMA: dict[str, Any] = {
    "if": {"type": "string"},
    "then": {"const": "callback", "x-error": 'is not "callback" or a list of accounts'},
    "else": ACCOUNT_LIST_SCHEMA}

# tempest.conf discovered by the worker with python-tempestconf: the conf's [identity] uri_v3
# and its admin credentials (or the accounts) are what it starts from, the rest of the conf
# overrides what it finds; these are the discovery's own options
DISCOVER_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "network_id": {**_ACCOUNT_TEXT, "description": "the external network (id or name) "
                                                       "instead of the one found"},
        "flavor_min_mem": {"type": "integer", "minimum": 1, "maximum": 1024 * 1024,
                           "description": "the smallest RAM (MB) of the flavors picked"},
        "flavor_min_disk": {"type": "integer", "minimum": 0, "maximum": 100000,
                            "description": "the smallest disk (GB) of the flavors picked"},
    },
}

PAYLOAD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://refstack-farm.invalid/schemas/payload-v1.json",
    "title": "refstack-farm job payload, schema 1",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema", "test_id", "tempest"],
    "properties": {
        "schema": {"const": SCHEMA_VERSION,
                   "x-error": f"is not a supported schema version; this worker speaks "
                              f"schema {SCHEMA_VERSION}"},
        "test_id": {"type": "string", "allOf": [{
            "pattern": TEST_ID_PATTERN, "x-error": f"does not match {TEST_ID_PATTERN}"}]},
        "tempest": {
            "type": "object", "additionalProperties": False, "required": ["version"],
            "properties": {"version": {"type": "string", "allOf": [{
                "pattern": VERSION_PATTERN,
                "x-error": 'is not an exact version; use e.g. "47.0.0"'}]}},
        },
        "conf": {
            "type": "object", "maxProperties": 200,
            "propertyNames": {"pattern": CONF_NAME_PATTERN},
            "additionalProperties": {
                "type": "object", "maxProperties": 500,
                "propertyNames": {"pattern": CONF_NAME_PATTERN},
                "additionalProperties": {"oneOf": [
                    _SCALAR, {"type": "array", "maxItems": 1000, "items": _SCALAR}]},
            },
        },
        "tests": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "regex": {"type": "string", "maxLength": 4096, "pattern": CONF_STRING_PATTERN},
                "include": _REGEX_LIST,
                "exclude": _REGEX_LIST,
                "list": {"type": "array", "maxItems": MAX_TESTS, "items": _TEST_NAME},
            },
        },
        "guideline": GUIDELINE_SCHEMA,
        "accounts": ACCOUNTS_SCHEMA,
        "discover": DISCOVER_SCHEMA,
        "callback": {
            "type": "object", "additionalProperties": False, "required": ["url"],
            "properties": {
                "url": {"type": "string", "maxLength": 2048, "format": HTTP_URL,
                        "x-error": "is not an http:// or https:// URL with a host"},
                "token": {"type": "string", "minLength": 1, "maxLength": 4096,
                          "pattern": CONF_STRING_PATTERN},
            },
        },
        "timeout_s": {"type": "integer", "minimum": 1, "maximum": defaults.MAX_TIMEOUT_S},
        "dry_run": {"type": "boolean"},
    },
}

_VALIDATOR = validator(PAYLOAD_SCHEMA)
_CONF_VALIDATOR = validator(PAYLOAD_SCHEMA["properties"]["conf"])
_ACCOUNTS_VALIDATOR = validator(ACCOUNT_LIST_SCHEMA)
_LIST_VALIDATOR = validator(PAYLOAD_SCHEMA["properties"]["tests"]["properties"]["list"])

ConfValue = str | bool | int | float | list[str | bool | int | float]
Conf = dict[str, dict[str, ConfValue]]
Accounts = list[dict[str, Any]]


@dataclass(frozen=True)
class Selection:
    """Which tests to run: a regex and include/exclude lists of regexes, or an explicit
    list of tests (`listed`, refstack-client's format, matched by the worker)."""

    regex: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    listed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.listed:
            return {"list": list(self.listed)}
        return {"regex": self.regex, "include": list(self.include),
                "exclude": list(self.exclude)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Selection:
        return cls(doc.get("regex", ""), tuple(doc.get("include", ())),
                   tuple(doc.get("exclude", ())), tuple(doc.get("list", ())))


@dataclass(frozen=True)
class Callback:
    url: str
    token: str | None = dc_field(default=None, repr=False)


@dataclass(frozen=True)
class Payload:
    """A validated job. `conf`, `accounts` and the callback token are secrets: kept out of
    repr."""

    test_id: str
    tempest_version: str
    conf: Conf | None = dc_field(default=None, repr=False)
    tests: Selection | None = None
    callback: Callback | None = None
    timeout_s: int | None = None  # None: the worker's default_timeout_s
    dry_run: bool = False
    # an interop guideline run: version, target, types and its capabilities' tests
    guideline: Mapping[str, Any] | None = None
    # Tempest's pre-provisioned accounts, or "callback" (fetch them from the callback)
    accounts: Accounts | str | None = dc_field(default=None, repr=False)
    # discover the conf with python-tempestconf (its options; {} for the defaults)
    discover: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The payload as JSON-ready data; `parse_payload(to_dict())` gives it back."""
        out: dict[str, Any] = {"schema": SCHEMA_VERSION, "test_id": self.test_id,
                               "tempest": {"version": self.tempest_version},
                               "dry_run": self.dry_run}
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.conf is not None:
            out["conf"] = self.conf
        if self.tests is not None:
            out["tests"] = self.tests.to_dict()
        if self.guideline is not None:
            out["guideline"] = dict(self.guideline)
        if self.accounts is not None:
            out["accounts"] = self.accounts
        if self.discover is not None:
            out["discover"] = dict(self.discover)
        if self.callback is not None:
            out["callback"] = {"url": self.callback.url}
            if self.callback.token:
                out["callback"]["token"] = self.callback.token
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()


def parse_version(version: str) -> tuple[int, int, int]:
    major, minor, micro = (int(p) for p in version.split("."))
    return major, minor, micro


def decode_payload(data: bytes | str) -> Any:
    """Bytes from the queue -> JSON value; errors name the field `payload`."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > defaults.PAYLOAD_MAX_BYTES:
        raise PayloadError([FieldError(
            "payload", f"{size} bytes is larger than the limit of "
                       f"{defaults.PAYLOAD_MAX_BYTES} bytes")])
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError([FieldError(
                "payload", f"is not UTF-8 (byte {exc.start}: {data[exc.start:exc.start + 1]!r})")]
            ) from None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise PayloadError([FieldError("payload", f"is not JSON ({exc})"[:200])]) from None



def _semantic_errors(doc: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    version = doc["tempest"]["version"]
    if parse_version(version) < defaults.OLDEST_TEMPEST:
        oldest = ".".join(map(str, defaults.OLDEST_TEMPEST))
        errors.append(FieldError("tempest.version",
                                 f"{show(version)} is older than the oldest supported "
                                 f"release {oldest}"))
    tests = doc.get("tests") or {}
    for key in ("include", "exclude"):
        for i, rx in enumerate(tests.get(key, [])):
            errors.extend(_regex_error(f"tests.{key}[{i}]", rx))
    if tests.get("regex"):
        errors.extend(_regex_error("tests.regex", tests["regex"]))
    if tests.get("list"):
        mixed = [f"tests.{k}" for k in ("regex", "include", "exclude") if tests.get(k)]
        if mixed:
            errors.append(FieldError("tests.list", f"cannot be combined with {', '.join(mixed)}"
                                                   ": a list names every test it runs"))
    errors.extend(_guideline_errors(doc.get("guideline"), tests.get("list")))
    if "discover" in doc and isinstance(doc.get("conf"), Mapping):
        errors.extend(discover_errors(doc["conf"], doc.get("accounts")))
    callback = doc.get("callback")
    if callback is None and doc.get("accounts") == "callback":
        errors.append(FieldError("accounts", '"callback" needs a callback to fetch them from '
                                             "(GET /get-accounts)"))
    if callback is None:
        for key, source in (("conf", "GET /get-miniconf"), ("tests", "GET /get-testcases")):
            if key not in doc:
                errors.append(FieldError(key, f"is required when there is no callback to "
                                              f"fetch it from ({source})"))
    return errors


def _guideline_errors(guideline: Mapping[str, Any] | None,
                      listed: list[str] | None) -> list[FieldError]:
    """A guideline's capabilities name tests of the run's own list."""
    if guideline is None:
        return []
    if not listed:
        return [FieldError("guideline", "needs tests.list: the tests the guideline names")]
    names = {split_test(line)[0] for line in listed}
    for i, cap in enumerate(guideline["capabilities"]):
        for j, test in enumerate(cap["tests"]):  # flagged ones run only when listed
            if split_test(test)[0] not in names:
                return [FieldError(f"guideline.capabilities[{i}].tests[{j}]",
                                   f"{show(test)} is not in tests.list")]
    return []


def discover_errors(conf: Mapping[str, Any], accounts: Any) -> list[FieldError]:
    """What a conf discovery starts from: the identity endpoint, and admin credentials or
    pre-provisioned accounts to look at the cloud with."""
    identity, auth = conf.get("identity") or {}, conf.get("auth") or {}
    errors = []
    if not identity.get("uri_v3"):
        errors.append(FieldError("conf.identity.uri_v3", "is required to discover the conf: "
                                                         "the cloud's Keystone v3 endpoint"))
    admin = auth.get("admin_username") and auth.get("admin_password")
    if not admin and not accounts:
        errors.append(FieldError("conf.auth.admin_username",
                                 "discover needs admin credentials ([auth] admin_username and "
                                 "admin_password) or accounts to look at the cloud with"))
    return errors


def _regex_error(where: str, rx: str) -> list[FieldError]:
    try:
        re.compile(rx)
    except re.error as exc:
        return [FieldError(where, f"{show(rx)} is not a valid regular expression ({exc})")]
    return []


def parse_payload(raw: bytes | str | Mapping[str, Any]) -> Payload:
    """Validate a payload (bytes from the queue, or data) and return it typed.

    Raises PayloadError naming every offending field and its value.
    """
    doc = raw if isinstance(raw, Mapping) else decode_payload(raw)
    if not isinstance(doc, Mapping):
        raise PayloadError([FieldError("payload", f"{show(doc)} is not a JSON object")])
    errors = schema_errors(_VALIDATOR, doc)
    if errors:
        raise PayloadError(errors)
    semantic = _semantic_errors(doc)
    if semantic:
        raise PayloadError(semantic)
    tests = doc.get("tests")
    callback = doc.get("callback")
    return Payload(
        test_id=doc["test_id"],
        tempest_version=doc["tempest"]["version"],
        conf=doc.get("conf"),
        tests=None if tests is None else Selection.from_dict(tests),
        callback=None if callback is None else Callback(callback["url"], callback.get("token")),
        timeout_s=doc.get("timeout_s"),
        dry_run=doc.get("dry_run", False),
        guideline=doc.get("guideline"),
        accounts=doc.get("accounts"),
        discover=doc.get("discover"),
    )


def parse_conf(doc: Any, where: str = "conf") -> Conf:
    """Validate a tempest conf mapping (e.g. from GET /get-miniconf) like payload.conf."""
    errors = schema_errors(_CONF_VALIDATOR, doc)
    if errors:
        raise PayloadError([FieldError(f"{where}.{e.field}" if e.field else where, e.message)
                            for e in errors])
    return dict(doc)


def parse_accounts(doc: Any, where: str = "accounts") -> Accounts:
    """Validate pre-provisioned accounts (e.g. from GET /get-accounts) like
    payload.accounts."""
    accounts = doc.get("accounts") if isinstance(doc, Mapping) else None
    errors = schema_errors(_ACCOUNTS_VALIDATOR, accounts)
    if errors:
        raise PayloadError([FieldError(f"{where}{e.field}" if e.field.startswith("[")
                                       else where, e.message) for e in errors])
    return list(accounts) if isinstance(accounts, list) else []


def selection_from_testcases(doc: Any) -> Selection:
    """`{"testcases": [test ids]}` (GET /get-testcases) -> a test list.

    Test ids may carry attributes (`[id-...,smoke]`) that differ between Tempest
    versions: the worker matches them by name, alias and idempotent id as any list.
    """
    cases = doc.get("testcases") if isinstance(doc, Mapping) else None
    if not isinstance(cases, list) or not all(isinstance(c, str) and c for c in cases):
        raise PayloadError([FieldError("testcases", f"{show(doc)} is not "
                                                    '{"testcases": [test ids]}')])
    errors = schema_errors(_LIST_VALIDATOR, [c.strip() for c in cases])
    if errors:
        raise PayloadError([FieldError(f"testcases{e.field}", e.message) for e in errors])
    return Selection(listed=tuple(c.strip() for c in cases))


def salvage_test_id(raw: bytes | str | Mapping[str, Any]) -> str | None:
    """The test_id of a payload that failed validation, when that field itself is valid."""
    try:
        doc = raw if isinstance(raw, Mapping) else decode_payload(raw)
    except PayloadError:
        return None
    test_id = doc.get("test_id") if isinstance(doc, Mapping) else None
    if isinstance(test_id, str) and re.match(TEST_ID_PATTERN, test_id):
        return test_id
    return None
