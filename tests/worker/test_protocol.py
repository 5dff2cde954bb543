"""Payload schema v1, semantic checks, names, states and events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from farm_worker import protocol
from farm_worker.exceptions import PayloadError
from farm_worker.protocol import (
    FINAL_STATES,
    Counts,
    Payload,
    Selection,
    Summary,
    TestState,
    parse_conf,
    parse_payload,
    salvage_test_id,
    selection_from_testcases,
)
from harness.payloads import INVALID, VALID, valid


@pytest.mark.parametrize(("raw", "field", "fragment"), [row[1:] for row in INVALID],
                         ids=[row[0] for row in INVALID])
def test_parse_payload_rejects_invalid_naming_field(raw: bytes, field: str,
                                                    fragment: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_payload(raw)
    assert err.value.field == field, str(err.value)
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"{field}: ")


def test_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 25
    assert len({row[0] for row in INVALID}) == len(INVALID)


def test_parse_payload_names_the_bad_version_and_suggests_one() -> None:
    with pytest.raises(PayloadError, match=r'^tempest.version: "47" is not an exact version; '
                                           r'use e.g. "47.0.0"$'):
        parse_payload(valid(tempest={"version": "47"}))


def test_parse_payload_accepts_valid_and_round_trips() -> None:
    payload = parse_payload(json.dumps(VALID).encode())
    assert payload.test_id == "t-1"
    assert payload.tempest_version == "47.0.0"
    assert payload.tests == Selection("tempest.api.identity", (), ())
    assert payload.dry_run is True
    assert parse_payload(payload.encode()) == payload


def test_parse_payload_defaults_timeout_and_dry_run() -> None:
    doc = valid()
    del doc["timeout_s"], doc["dry_run"]
    payload = parse_payload(doc)
    assert payload.timeout_s is None  # the worker's default_timeout_s applies
    assert payload.dry_run is False


def test_parse_payload_without_callback_needs_conf_and_tests() -> None:
    doc = valid()
    del doc["tests"]
    with pytest.raises(PayloadError, match=r"^tests: is required when there is no callback"):
        parse_payload(doc)


def test_parse_payload_with_callback_may_omit_conf_and_tests() -> None:
    doc = valid(callback={"url": "https://refstack.example/", "token": "tok-123"})
    del doc["conf"], doc["tests"]
    payload = parse_payload(doc)
    assert payload.conf is None and payload.tests is None
    assert payload.callback is not None and payload.callback.token == "tok-123"


def test_payload_repr_hides_conf_and_token() -> None:
    payload = parse_payload(valid(callback={"url": "http://x.example/", "token": "tok-secret"}))
    assert "pw-1234" not in repr(payload)
    assert "tok-secret" not in repr(payload)


def test_parse_payload_reports_several_errors() -> None:
    with pytest.raises(PayloadError) as err:
        parse_payload(valid(test_id="bad id", timeout_s=0))
    assert {e.field for e in err.value.errors} == {"test_id", "timeout_s"}


def test_salvage_test_id_only_when_valid() -> None:
    assert salvage_test_id(json.dumps(valid(schema=9)).encode()) == "t-1"
    assert salvage_test_id(b'{"test_id": "bad id"}') is None
    assert salvage_test_id(b"\xff") is None


def test_function_names() -> None:
    assert protocol.run_function("47.0.0") == "tempest:run:47.0.0"
    assert protocol.cancel_function("T1") == "tempest:cancel:T1"
    assert protocol.version_of_function("tempest:run:40.0.0") == "40.0.0"
    assert protocol.version_of_function(protocol.RUN_ANY) is None
    assert protocol.ping_function("w1") == "farm:ping:w1"


def test_states_final_and_string_values() -> None:
    assert [s.value for s in TestState] == ["queued", "installing", "running", "uploading",
                                            "passed", "failed", "error", "cancelled",
                                            "timed_out", "rejected"]
    assert {TestState.PASSED, TestState.FAILED, TestState.ERROR, TestState.CANCELLED,
            TestState.TIMED_OUT, TestState.REJECTED} == FINAL_STATES
    assert not TestState.RUNNING.is_final and TestState.CANCELLED.is_final
    assert TestState("timed_out") is TestState.TIMED_OUT


def test_parse_conf_names_the_field() -> None:
    assert parse_conf({"auth": {"x": 1}}) == {"auth": {"x": 1}}
    with pytest.raises(PayloadError, match=r"^miniconf.auth.x: "):
        parse_conf({"auth": {"x": "a\nb"}}, "miniconf")


def test_selection_from_testcases_is_a_test_list() -> None:
    sel = selection_from_testcases({"testcases": [
        " tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token[id-6f8e4436]"]})
    assert sel.listed == ("tempest.api.identity.v3.test_tokens.TokensV3Test."
                          "test_create_token[id-6f8e4436]",)
    with pytest.raises(PayloadError, match=r"^testcases: "):
        selection_from_testcases({"cases": []})
    with pytest.raises(PayloadError, match=r'^testcases\[1\]: "not a test" is not a test name'):
        selection_from_testcases({"testcases": ["a.b.C.test_x", "not a test"]})


LISTED = "tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token[id-6f8e4436]"


def test_a_payload_selects_an_explicit_list() -> None:
    payload = parse_payload(valid(tests={"list": [LISTED, "a.B.test_c"]}))
    assert payload.tests == Selection(listed=(LISTED, "a.B.test_c"))
    assert parse_payload(payload.to_dict()) == payload


@pytest.mark.parametrize(("tests", "field", "message"), [
    ({"list": [LISTED], "regex": "identity"}, "tests.list",
     "cannot be combined with tests.regex: a list names every test it runs"),
    ({"list": [LISTED, "test_create_token"]}, "tests.list[1]",
     '"test_create_token" is not a test name'),
    ({"list": ["a.B.test_c d"]}, "tests.list[0]", '"a.B.test_c d" is not a test name'),
    ({"list": ["a.B.test_c"] * (protocol.MAX_TESTS + 1)}, "tests.list",
     f"has size {protocol.MAX_TESTS + 1}; maxItems is {protocol.MAX_TESTS}"),
])
def test_a_bad_test_list_names_the_field(tests: dict[str, Any], field: str,
                                         message: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_payload(valid(tests=tests))
    (error,) = err.value.errors
    assert error.field == field and message in error.message


def test_summary_round_trips() -> None:
    s = Summary("t", TestState.FAILED, counts=Counts(total=9, done=5, passed=3, failed=1,
                                                      classes_failed=1),
                failures=[protocol.Failure("a.b", "Traceback")])
    doc = json.loads(json.dumps(s.to_dict()))
    assert Summary.from_dict(doc) == s
    # flat on the wire, with the tests that reported nothing
    assert (doc["total"], doc["passed"], doc["not_run"], doc["classes_failed"]) == (9, 3, 5, 1)


def test_counts_account_for_every_selected_test() -> None:
    c = Counts(total=138, done=138, passed=0, failed=0, skipped=1, classes_failed=35)
    assert (c.reported, c.not_run, c.any_failed) == (1, 137, True)
    assert c.describe() == ("0 passed, 0 failed, 1 skipped, 137 not run of 138 selected; "
                            "35 classes failed in setUpClass or tearDownClass")
    assert Counts(total=2, passed=2).describe() == (
        "2 passed, 0 failed, 0 skipped, 0 not run of 2 selected")
    assert Counts.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="classes_failed: -1 is not a count"):
        Counts.from_dict({"classes_failed": -1})
    assert Counts.lenient({"passed": "3", "failed": None, "total": 4}) == Counts(total=4)


def test_events_have_the_documented_shape() -> None:
    ev = protocol.state_event("t", TestState.RUNNING, "w1", "14 tests")
    assert {k: ev[k] for k in ("event", "test_id", "state", "worker")} == {
        "event": "state", "test_id": "t", "state": "running", "worker": "w1"}
    pr = protocol.progress_event("t", "a.b", Counts(total=5, done=2, passed=1, failed=1))
    assert pr == {"event": "progress", "test_id": "t", "done": 2, "total": 5, "current": "a.b",
                  "passed": 1, "failed": 1, "skipped": 0, "classes_failed": 0,
                  "classes_skipped": 0, "not_run": 3}


def test_events_parse_back_into_their_types() -> None:
    ev = protocol.state_event("t", TestState.RUNNING, "w1", "14 tests")
    parsed = protocol.parse_event(protocol.encode_event(ev))
    assert isinstance(parsed, protocol.StateEvent) and parsed.state is TestState.RUNNING
    assert (parsed.worker, parsed.message, parsed.time) == ("w1", "14 tests", ev["time"])
    counts = Counts(total=5, done=2, passed=1, failed=1)
    pr = protocol.parse_event(protocol.progress_event("t", "a.b", counts))
    assert pr == protocol.ProgressEvent("t", "a.b", counts)
    # not events: another kind, the summary, not JSON
    for other in (b'{"event": "later"}', b'{"test_id": "t", "state": "passed"}', b"\xff"):
        assert protocol.parse_event(other) is None
    for bad, fragment in (({"event": "state", "state": "runing"}, "is not a state"),
                          ({"event": "progress", "done": -1}, "done: -1 is not a count"),
                          ({"event": "progress", "total": True}, "total: true is not")):
        with pytest.raises(ValueError, match=fragment):
            protocol.parse_event(bad)


def test_payload_to_dict_is_valid_schema() -> None:
    p = Payload("x", "40.0.0", conf={"a": {"b": True}}, tests=Selection(include=("x",)))
    assert parse_payload(p.to_dict()) == p


GUIDELINE: dict[str, Any] = {"version": "2020.06", "target": "platform", "types": ["required"],
             "capabilities": [{"name": "identity-v3-tokens-create", "status": "required",
                               "tests": [LISTED.split("[")[0]], "flagged": []}]}


def test_a_guideline_names_tests_of_its_list() -> None:
    payload = parse_payload(valid(tests={"list": [LISTED]}, guideline=GUIDELINE))
    assert payload.guideline == GUIDELINE and parse_payload(payload.to_dict()) == payload
    with pytest.raises(PayloadError, match=r"^guideline: needs tests.list"):
        parse_payload(valid(guideline=GUIDELINE))
    other = {**GUIDELINE, "capabilities": [{**GUIDELINE["capabilities"][0],
                                            "tests": ["a.B.test_c"]}]}
    with pytest.raises(PayloadError, match=r'^guideline.capabilities\[0\].tests\[0\]: '
                                           r'"a.B.test_c" is not in tests.list'):
        parse_payload(valid(tests={"list": [LISTED]}, guideline=other))
    with pytest.raises(PayloadError, match=r"^guideline.types\[0\]: "):
        parse_payload(valid(tests={"list": [LISTED]}, guideline={**GUIDELINE,
                                                                 "types": ["mandatory"]}))


ACCOUNT = {"username": "u1", "password": "Acct-pw-1", "project_name": "p1",
           "roles": ["member"]}


@pytest.mark.parametrize(("accounts", "field", "message"), [
    ([{"username": "u"}], "accounts[0].password", "is required"),
    ([{**ACCOUNT, "colour": "x"}], "accounts[0].colour", "unknown field; allowed: "),
    ([{**ACCOUNT, "password": "line\nbreak"}], "accounts[0].password",
     "(a secret) contains a line break"),  # a password is never repeated in an error
    ("x", "accounts", '"x" is not "callback" or a list of accounts'),
    ([], "accounts", '[] is not a list of accounts (or "callback")'),
    ("callback", "accounts", '"callback" needs a callback to fetch them from'),
])
def test_bad_accounts_name_the_field(accounts: Any, field: str, message: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_payload(valid(accounts=accounts))
    (error,) = err.value.errors
    assert error.field == field and error.message.startswith(message), error
    assert "line\nbreak" not in str(err.value)


def test_accounts_round_trip_and_stay_out_of_repr() -> None:
    payload = parse_payload(valid(accounts=[ACCOUNT]))
    assert payload.accounts == [ACCOUNT] and parse_payload(payload.to_dict()) == payload
    assert "Acct-pw-1" not in repr(payload)
    with pytest.raises(PayloadError, match=r'^conf.auth.admin_password: \(a secret\) '):
        parse_payload(valid(conf={"auth": {"admin_password": "two\nlines"}}))
