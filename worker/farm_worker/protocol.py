"""The wire protocol of the farm: function names, payload schema v1, states and events.

Everything that crosses gearmand or the status server's HTTP contract is named here and
nowhere else; the client, the server and the Ansible module import these names.
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from farm_worker import defaults
from farm_worker.exceptions import FieldError, PayloadError

SCHEMA_VERSION = 1

# --- gearman function names ---------------------------------------------------------------
RUN_PREFIX = "tempest:run:"
RUN_ANY = "tempest:run"  # any version; registered by workers that may install on demand
CANCEL_PREFIX = "tempest:cancel:"
PING = "farm:ping"  # any worker answers: a health check of the pool
PING_PREFIX = "farm:ping:"  # one named worker answers


def run_function(version: str) -> str:
    """The function a job for this exact Tempest version is submitted to."""
    return RUN_PREFIX + version


def cancel_function(test_id: str) -> str:
    """Registered by the worker holding test_id for as long as it holds it."""
    return CANCEL_PREFIX + test_id


def ping_function(worker_id: str) -> str:
    return PING_PREFIX + worker_id


def version_of_function(name: str) -> str | None:
    """`tempest:run:47.0.0` -> `47.0.0`; any other name -> None."""
    if name.startswith(RUN_PREFIX):
        return name[len(RUN_PREFIX):]
    return None


# --- states ---------------------------------------------------------------------------------
class TestState(str, enum.Enum):
    """The life of one test run; the last six are final."""

    __test__ = False  # not a pytest test class

    QUEUED = "queued"
    INSTALLING = "installing"
    RUNNING = "running"
    UPLOADING = "uploading"
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    def __str__(self) -> str:
        return str(self.value)


# How subunit test statuses count in a summary (the worker and the server agree on this).
# setUpClass/tearDownClass errors arrive as pseudo-tests with status fail: failures.
SUBUNIT_PASSED = frozenset({"success", "xfail"})
SUBUNIT_FAILED = frozenset({"fail", "uxsuccess"})
SUBUNIT_SKIPPED = frozenset({"skip"})
SUBUNIT_FINAL = SUBUNIT_PASSED | SUBUNIT_FAILED | SUBUNIT_SKIPPED

FINAL_STATES = frozenset(
    {TestState.PASSED, TestState.FAILED, TestState.ERROR, TestState.CANCELLED,
     TestState.TIMED_OUT, TestState.REJECTED}
)
FINAL_STATE_VALUES = frozenset(state.value for state in FINAL_STATES)  # as stored and sent
STATE_VALUES = tuple(state.value for state in TestState)  # every state, in lifecycle order

# The exit code of a command that ends with a run (`farm-worker execute`, `farm watch`,
# `farm submit --wait`, the module's rc): 0 passed, 1 failed, 3 cancelled; 2 for error,
# timed_out and rejected, as for a usage error or any refusal.
EXIT_CODES = {TestState.PASSED: 0, TestState.FAILED: 1, TestState.CANCELLED: 3}
EXIT_ERROR = 2


def exit_code(state: TestState | str | None) -> int:
    """The exit code for a run that ended in `state` (None or not final: 2)."""
    try:
        return EXIT_CODES.get(TestState(state), EXIT_ERROR) if state is not None else EXIT_ERROR
    except ValueError:
        return EXIT_ERROR

# --- the callback server's answer to a status report ---------------------------------------
SUPERSEDED = "superseded"  # the report's verdict when another worker holds the test
KEEP = "keep"  # recorded, not applied; with a final state: the test has ended


def stop_reason(test_id: str, answer: Any) -> str | None:
    """Why the job must stop, from the server's answer to a status report
    ({"state", "report", "worker"}), or None to go on. It stops when another worker has
    claimed the test since (gearmand delivered the job twice) or the test has ended there
    (finished by another copy, or cancelled)."""
    if not isinstance(answer, Mapping):
        return None
    verdict, state = answer.get("report"), answer.get("state")
    if verdict == SUPERSEDED:
        holder = answer.get("worker")
        return (f"superseded: the server gave test {test_id} to "
                f"{'worker ' + show(holder) if holder else 'another worker'}")
    if verdict == KEEP and state in FINAL_STATE_VALUES:
        return f"stopped: test {test_id} has ended on the server ({state})"
    return None


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

PAYLOAD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://refstack-farm.invalid/schemas/payload-v1.json",
    "title": "refstack-farm job payload, schema 1",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema", "test_id", "tempest"],
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "test_id": {"type": "string", "pattern": TEST_ID_PATTERN},
        "tempest": {
            "type": "object", "additionalProperties": False, "required": ["version"],
            "properties": {"version": {"type": "string", "pattern": VERSION_PATTERN}},
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
            },
        },
        "callback": {
            "type": "object", "additionalProperties": False, "required": ["url"],
            "properties": {
                "url": {"type": "string", "minLength": 1, "maxLength": 2048},
                "token": {"type": "string", "minLength": 1, "maxLength": 4096,
                          "pattern": CONF_STRING_PATTERN},
            },
        },
        "timeout_s": {"type": "integer", "minimum": 1, "maximum": defaults.MAX_TIMEOUT_S},
        "dry_run": {"type": "boolean"},
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(PAYLOAD_SCHEMA)
_CONF_VALIDATOR = jsonschema.Draft202012Validator(PAYLOAD_SCHEMA["properties"]["conf"])

ConfValue = str | bool | int | float | list[str | bool | int | float]
Conf = dict[str, dict[str, ConfValue]]


@dataclass(frozen=True)
class Selection:
    """Which tests to run: a regex and include/exclude lists of regexes."""

    regex: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"regex": self.regex, "include": list(self.include),
                "exclude": list(self.exclude)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Selection:
        return cls(doc.get("regex", ""), tuple(doc.get("include", ())),
                   tuple(doc.get("exclude", ())))


@dataclass(frozen=True)
class Callback:
    url: str
    token: str | None = dc_field(default=None, repr=False)


@dataclass(frozen=True)
class Payload:
    """A validated job. `conf` and the callback token are secrets: kept out of repr."""

    test_id: str
    tempest_version: str
    conf: Conf | None = dc_field(default=None, repr=False)
    tests: Selection | None = None
    callback: Callback | None = None
    timeout_s: int | None = None  # None: the worker's default_timeout_s
    dry_run: bool = False

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
        if self.callback is not None:
            out["callback"] = {"url": self.callback.url}
            if self.callback.token:
                out["callback"]["token"] = self.callback.token
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()


_ADDRESS = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\s\[\]]+)(?::(\d+))?")


def parse_address(text: str) -> tuple[str, int | None]:
    """`host`, `host:port` or `[v6addr]:port` -> (host, port; None where none is given).
    ValueError, saying which, for another form or a port outside 1-65535."""
    m = _ADDRESS.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{show(text)} is not host or host:port")
    port_text = m.group(2) or m.group(4)
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{show(text)} has port {port} outside 1-65535")
    return m.group(1) or m.group(3), port


def show(value: Any, limit: int = 60) -> str:
    """A value as it appears in an error message: JSON, cut to `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_errors(validator: jsonschema.Draft202012Validator, doc: Any,
                  limit: int = 10) -> list[FieldError]:
    """What is wrong with `doc` by `validator`'s schema: each names its field and the bad
    value, in field order; empty when `doc` is valid. A schema may word a value's problem
    itself in `x-error` ("is not a cloud id"); the value is put before it."""
    errors = sorted(validator.iter_errors(doc),
                    key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator)))
    return [schema_error(e) for e in errors[:limit]]


def schema_error(err: jsonschema.ValidationError) -> FieldError:
    """One jsonschema error as a FieldError: the field's dotted path and what is wrong."""
    where = _path(err.absolute_path)
    # jsonschema's stubs type these as unions with Unset; they are plain JSON data here
    kind: Any = err.validator
    expected: Any = err.validator_value
    instance: Any = err.instance
    schema: Any = err.schema
    if kind == "required":
        missing = next((k for k in expected if k not in instance), "?")
        return FieldError(_path([*err.absolute_path, missing]), "is required")
    if kind == "additionalProperties" and expected is False:
        allowed = set(schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        return FieldError(_path([*err.absolute_path, extra[0] if extra else "?"]),
                          f"unknown field; allowed: {', '.join(sorted(allowed))}")
    if "propertyNames" in err.absolute_schema_path:  # instance is the offending name
        return FieldError(_path([*err.absolute_path, instance]),
                          f"{show(instance)} is not a valid name ({CONF_NAME_PATTERN})")
    value = show(instance)
    if isinstance(schema, Mapping) and "x-error" in schema:
        return FieldError(where, f"{value} {schema['x-error']}")
    if kind == "enum":
        return FieldError(where, f"{value} is not one of {', '.join(map(str, expected))}")
    if where == "tempest.version" and kind == "pattern":
        return FieldError(where, f'{value} is not an exact version; use e.g. "47.0.0"')
    if where == "test_id" and kind == "pattern":
        return FieldError(where, f"{value} does not match {TEST_ID_PATTERN}")
    if where == "schema":
        return FieldError(where, f"{value} is not a supported schema version; "
                                 f"this worker speaks schema {SCHEMA_VERSION}")
    if kind == "pattern":
        return FieldError(where, f"{value} contains a line break or control character")
    if kind == "type":
        return FieldError(where, f"{value} is not of type {expected}")
    if kind == "oneOf":
        return FieldError(where, f"{value} is not a string, number, boolean or list of them "
                                 "(one line, at most 4096 characters)")
    if kind in ("maxLength", "minLength", "maxItems", "maxProperties"):
        size = len(instance)
        return FieldError(where, f"{show(instance, 40)} has size {size}; "
                                 f"{kind} is {expected}")
    if kind in ("minimum", "maximum"):
        return FieldError(where, f"{value} is out of range; {kind} is {expected}")
    return FieldError(where, f"{value}: {err.message}"[:300])


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
    callback = doc.get("callback")
    if callback is None:
        for key, source in (("conf", "GET /get-miniconf"), ("tests", "GET /get-testcases")):
            if key not in doc:
                errors.append(FieldError(key, f"is required when there is no callback to "
                                              f"fetch it from ({source})"))
    else:
        parts = urlsplit(callback["url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(FieldError("callback.url", f"{show(callback['url'])} is not an "
                                                     "http:// or https:// URL with a host"))
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
    )


def parse_conf(doc: Any, where: str = "conf") -> Conf:
    """Validate a tempest conf mapping (e.g. from GET /get-miniconf) like payload.conf."""
    errors = schema_errors(_CONF_VALIDATOR, doc)
    if errors:
        raise PayloadError([FieldError(f"{where}.{e.field}" if e.field else where, e.message)
                            for e in errors])
    return dict(doc)


def selection_from_testcases(doc: Any) -> Selection:
    """`{"testcases": [test ids]}` (GET /get-testcases) -> an include list.

    Test ids may carry attributes (`[id-...,smoke]`) that differ between Tempest
    versions: each entry matches its base name with any attributes.
    """
    cases = doc.get("testcases") if isinstance(doc, Mapping) else None
    if not isinstance(cases, list) or not all(isinstance(c, str) and c for c in cases):
        raise PayloadError([FieldError("testcases", f"{show(doc)} is not "
                                                    '{"testcases": [test ids]}')])
    include = []
    for case in cases:
        base = case.split("[", 1)[0].strip()
        include.append(f"^{re.escape(base)}(\\[.*\\])?$")
    return Selection(include=tuple(include))


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


# --- events (WORK_DATA) and the summary (WORK_COMPLETE) ------------------------------------
@dataclass(frozen=True)
class StateEvent:
    """The job's state changed (WORK_DATA `{"event": "state", ...}`)."""

    test_id: str | None
    state: TestState
    worker: str
    message: str = ""
    time: float | None = None  # epoch seconds at the worker

    def to_dict(self) -> dict[str, Any]:
        return {"event": "state", "test_id": self.test_id, "state": self.state.value,
                "worker": self.worker, "message": self.message, "time": self.time}


@dataclass(frozen=True)
class ProgressEvent:
    """A test ended in the live subunit stream (WORK_DATA `{"event": "progress", ...}`)."""

    test_id: str
    done: int
    total: int
    current: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"event": "progress", "test_id": self.test_id, "done": self.done,
                "total": self.total, "current": self.current, "passed": self.passed,
                "failed": self.failed, "skipped": self.skipped}


Event = StateEvent | ProgressEvent


def state_event(test_id: str | None, state: TestState, worker: str,
                message: str = "") -> dict[str, Any]:
    return StateEvent(test_id, state, worker, message, round(time.time(), 3)).to_dict()


def progress_event(test_id: str, done: int, total: int, current: str,
                   passed: int, failed: int, skipped: int) -> dict[str, Any]:
    return ProgressEvent(test_id, done, total, current, passed, failed, skipped).to_dict()


def _count(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key}: {show(value)} is not a count")
    return value


def parse_event(data: bytes | str | Mapping[str, Any]) -> Event | None:
    """A WORK_DATA chunk as the event it is; None for anything else (not JSON, another
    kind, the WORK_COMPLETE summary). ValueError for an event whose fields are wrong."""
    try:
        doc = data if isinstance(data, Mapping) else json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, Mapping):
        return None
    kind = doc.get("event")
    if kind == "state":
        try:
            state = TestState(doc.get("state"))
        except ValueError:
            raise ValueError(f"state: {show(doc.get('state'))} is not a state") from None
        at = doc.get("time")
        return StateEvent(doc.get("test_id"), state, str(doc.get("worker") or ""),
                          str(doc.get("message") or ""),
                          float(at) if isinstance(at, int | float) else None)
    if kind == "progress":
        return ProgressEvent(str(doc.get("test_id") or ""), _count(doc, "done"),
                             _count(doc, "total"), str(doc.get("current") or ""),
                             _count(doc, "passed"), _count(doc, "failed"),
                             _count(doc, "skipped"))
    return None


@dataclass
class Failure:
    test: str
    detail: str = ""


@dataclass
class Summary:
    """The result of one job, as sent in WORK_COMPLETE and printed by `execute --json`."""

    test_id: str | None
    state: TestState
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0
    duration_s: float = 0.0
    subunit: str | None = None
    message: str = ""
    field: str | None = None
    worker: str | None = None
    tempest_version: str | None = None
    failures: list[Failure] = dc_field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id, "state": self.state.value, "passed": self.passed,
            "failed": self.failed, "skipped": self.skipped, "total": self.total,
            "duration_s": round(self.duration_s, 3), "subunit": self.subunit,
            "message": self.message, "field": self.field, "worker": self.worker,
            "tempest_version": self.tempest_version,
            "failures": [{"test": f.test, "detail": f.detail} for f in self.failures],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Summary:
        return cls(
            test_id=doc.get("test_id"), state=TestState(doc["state"]),
            passed=doc.get("passed", 0), failed=doc.get("failed", 0),
            skipped=doc.get("skipped", 0), total=doc.get("total", 0),
            duration_s=doc.get("duration_s", 0.0), subunit=doc.get("subunit"),
            message=doc.get("message", ""), field=doc.get("field"), worker=doc.get("worker"),
            tempest_version=doc.get("tempest_version"),
            failures=[Failure(f["test"], f.get("detail", "")) for f in doc.get("failures", [])],
        )


def encode_event(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()
