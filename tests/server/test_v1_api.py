"""JSON API v1 through Flask's test client, against a real gearmand of the test's own."""

from __future__ import annotations

import io
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import gear

from farm_lab.gearmand import Gearmand, admin, status
from farm_server import state as farm_state
from farm_server.lifecycle import Report
from farm_worker.protocol import (
    TestState,
    cancel_function,
    format_checker,
    parse_payload,
    run_function,
)
from harness.gearclient import take_job
from harness.subunit_streams import stream
from server.conftest import App, json_of, make_app

SECRET = "Cloud-pw-7781"


def create(app: App, **doc: Any) -> Any:
    base: dict[str, Any] = {"tempest": {"version": "47.0.0"},
                            "conf": {"auth": {"admin_password": SECRET}},
                            "tests": {"regex": "tempest.api.identity"}, "queue_anyway": True}
    base.update(doc)
    return app.client.post("/v1/tests", json=base, headers=app.user())


def test_create_queues_a_background_job_without_the_password(farm_app: App,
                                                             own_gearmand: Gearmand) -> None:
    r = create(farm_app, test_id="c1", dry_run=True, timeout_s=600)
    assert r.status_code == 201, r.json
    test = json_of(r)["test"]
    assert test["id"] == "c1" and test["state"] == "queued"
    assert r.headers["Location"] == "/v1/tests/c1"
    assert status(own_gearmand.port)[run_function("47.0.0")] == (1, 0, 0)
    assert admin(own_gearmand.port, "show unique jobs") == ["c1"]
    # what a worker receives: the callback is the server, no conf, the selection kept
    raw, unique = take_job(own_gearmand.port, run_function("47.0.0"))
    assert SECRET.encode() not in raw
    payload = parse_payload(raw)
    assert payload.conf is None and payload.callback is not None
    assert payload.callback.url == farm_app.config.callback_url
    assert payload.tests is not None and payload.tests.regex == "tempest.api.identity"
    assert payload.dry_run and payload.timeout_s == 600 and unique == b"c1"


def test_a_discovery_run_is_queued_with_its_options(farm_app: App,
                                                   own_gearmand: Gearmand) -> None:
    conf = {"identity": {"uri_v3": "http://127.0.0.1:5000/v3"},
            "auth": {"admin_username": "admin", "admin_password": SECRET}}
    r = create(farm_app, test_id="disc1", conf=conf, discover={"network_id": "public"})
    assert r.status_code == 201, r.json
    assert json_of(r)["test"]["discover"] == {"network_id": "public"}
    raw, _unique = take_job(own_gearmand.port, run_function("47.0.0"))
    assert SECRET.encode() not in raw
    payload = parse_payload(raw)
    assert payload.discover == {"network_id": "public"} and payload.conf is None
    # what it starts from is checked at once: no Keystone, or no one to log in as
    r = create(farm_app, test_id="disc2", conf={"auth": conf["auth"]}, discover={})
    assert r.status_code == 400 and json_of(r)["field"] == "conf.identity.uri_v3"
    r = create(farm_app, test_id="disc3", conf={"identity": conf["identity"]}, discover={})
    assert r.status_code == 400 and json_of(r)["field"] == "conf.auth.admin_username"
    # the conf a run used is in its record, not in a page of tests
    farm_app.store.apply("disc1", Report(TestState.RUNNING, "1 test", "w1"), source="worker",
                         payload={"conf": {"identity": {"uri_v3": "http://x/v3"}}})
    shown = json_of(farm_app.client.get("/v1/tests/disc1", headers=farm_app.user()))
    assert shown["test"]["tempest_conf"] == {"identity": {"uri_v3": "http://x/v3"}}
    page = json_of(farm_app.client.get("/v1/tests", headers=farm_app.user()))
    assert "tempest_conf" not in page["tests"][0]


def test_create_validates_with_the_protocol_schema(farm_app: App) -> None:
    r = create(farm_app, tempest={"version": "47"})
    assert r.status_code == 400
    assert json_of(r)["field"] == "tempest.version"
    assert json_of(r)["error"].startswith('tempest.version: "47" is not an exact version')
    for doc, field in (({"callback": {"url": "http://x/"}}, "callback"),
                       ({"queue_anyway": "yes"}, "queue_anyway"),
                       ({"priority": 1}, "priority"), ({"test_id": "a b"}, "test_id")):
        r = create(farm_app, **doc)
        assert r.status_code == 400 and json_of(r)["field"] == field, doc
    r = farm_app.client.post("/v1/tests", data="x", headers=farm_app.user())
    assert r.status_code == 400 and json_of(r)["field"] == "body"
    assert farm_app.store.find()[1] == 0


def test_create_needs_a_user_token(farm_app: App) -> None:
    r = farm_app.client.post("/v1/tests", json={"tempest": {"version": "47.0.0"}})
    assert r.status_code == 401 and "user token" in json_of(r)["error"]
    r = farm_app.client.post("/v1/tests", json={"tempest": {"version": "47.0.0"}},
                             headers=farm_app.worker())
    assert r.status_code == 401


def test_duplicate_test_id_is_409_and_queues_nothing_twice(farm_app: App,
                                                           own_gearmand: Gearmand) -> None:
    assert create(farm_app, test_id="dup").status_code == 201
    r = create(farm_app, test_id="dup")
    assert r.status_code == 409 and json_of(r)["test"]["id"] == "dup"
    assert status(own_gearmand.port)[run_function("47.0.0")][0] == 1


def test_no_worker_for_the_version_is_422_with_the_registered_ones(
        farm_app: App, own_gearmand: Gearmand) -> None:
    w = gear.Worker(client_id="v40")
    w.addServer("127.0.0.1", own_gearmand.port)
    w.registerFunction(run_function("40.0.0"))
    w.waitForServer(timeout=5)
    try:
        for _ in range(50):
            if status(own_gearmand.port).get(run_function("40.0.0"), (0, 0, 0))[2]:
                break
            time.sleep(0.05)
        r = create(farm_app, test_id="nw", queue_anyway=False)
        assert r.status_code == 422
        assert json_of(r)["registered"] == ["40.0.0"]
        assert "no worker serves tempest:run:47.0.0" in json_of(r)["error"]
        assert farm_app.store.get("nw") is None
        r = create(farm_app, test_id="nw40", queue_anyway=False, tempest={"version": "40.0.0"})
        assert r.status_code == 201
    finally:
        w.shutdown()


def test_a_served_version_is_reused_briefly_an_unserved_one_asked_again(
        farm_app: App, own_gearmand: Gearmand, monkeypatch: Any) -> None:
    """The submit's "does a worker serve it" check: a campaign's submits do not each ask
    every gearmand, yet a worker that just registered is seen at once. The clock is the
    one thing faked: the check's answers come from the real gearmand."""
    state = farm_app.app.extensions["farm"]
    clock = [1000.0]
    monkeypatch.setattr(state, "clock", lambda: clock[0])
    w = gear.Worker(client_id="v40")
    w.addServer("127.0.0.1", own_gearmand.port)
    w.registerFunction(run_function("40.0.0"))
    w.waitForServer(timeout=5)
    try:
        deadline = time.monotonic() + 30
        while not status(own_gearmand.port).get(run_function("40.0.0"), (0, 0, 0))[2]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert state.registered_versions("40.0.0") == {"40.0.0": 1}
    finally:
        w.shutdown()
    deadline = time.monotonic() + 30
    while status(own_gearmand.port).get(run_function("40.0.0"), (0, 0, 0))[2]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    clock[0] += farm_state.SERVED_FOR_S / 2
    assert state.registered_versions("40.0.0") == {"40.0.0": 1}  # reused
    assert state.registered_versions("47.0.0") == {}  # not in it: asked again
    assert state.registered_versions("40.0.0") == {}  # that answer replaced the old one
    r = create(farm_app, test_id="gone40", queue_anyway=False, tempest={"version": "40.0.0"})
    assert r.status_code == 422


def test_gearmand_down_is_503_and_nothing_is_stored(tmp_path: Path,
                                                     own_gearmand: Gearmand) -> None:
    a = make_app(f"sqlite:///{tmp_path / 'd.db'}", own_gearmand)
    own_gearmand.stop()
    try:
        for queue_anyway in (False, True):
            r = create(a, test_id="down", queue_anyway=queue_anyway)
            assert r.status_code == 503, r.json
            assert "gearman" in json_of(r)["error"]
        assert a.store.get("down") is None and a.store.history("down") == []
    finally:
        a.app.extensions["farm"].gearman.close()
        a.store.engine.dispose()


def test_list_filters_pages_and_hides_the_conf(farm_app: App) -> None:
    for i in range(5):
        assert create(farm_app, test_id=f"l{i}").status_code == 201
    assert create(farm_app, test_id="v40", tempest={"version": "40.0.0"}).status_code == 201
    farm_app.client.post("/update-test-status/", json={"test_id": "l2", "status": "error"},
                         headers=farm_app.worker())
    r = farm_app.client.get("/v1/tests?limit=2&offset=1", headers=farm_app.user())
    assert r.status_code == 200
    doc = json_of(r)
    assert doc["total"] == 6 and len(doc["tests"]) == 2 and doc["offset"] == 1
    assert SECRET not in r.get_data(as_text=True)
    r = farm_app.client.get("/v1/tests?state=error", headers=farm_app.user())
    assert [t["id"] for t in json_of(r)["tests"]] == ["l2"]
    r = farm_app.client.get("/v1/tests?state=queued,error&version=40.0.0",
                            headers=farm_app.user())
    assert [t["id"] for t in json_of(r)["tests"]] == ["v40"]
    for query, field in (("state=runing", "state"), ("version=40", "version"),
                         ("limit=0", "limit"), ("limit=501", "limit"), ("offset=-1", "offset")):
        r = farm_app.client.get(f"/v1/tests?{query}", headers=farm_app.user())
        assert r.status_code == 400 and json_of(r)["field"] == field, query
    assert farm_app.client.get("/v1/tests").status_code == 401


def test_reads_can_be_open(tmp_path: Path, own_gearmand: Gearmand) -> None:
    a = make_app(f"sqlite:///{tmp_path / 'o.db'}", own_gearmand, open_reads=True)
    try:
        assert a.client.get("/v1/tests").status_code == 200
        assert a.client.get("/v1/queue").status_code == 200
        assert a.client.post("/v1/tests", json={}).status_code == 401  # writes never
    finally:
        a.app.extensions["farm"].gearman.close()
        a.store.engine.dispose()


def test_show_has_state_progress_and_history(farm_app: App) -> None:
    create(farm_app, test_id="s1")
    for body in ({"status": "installing", "worker": "h1-0"},
                 {"status": "running", "progress": {"done": 1, "total": 4, "current": "a"}}):
        farm_app.client.post("/update-test-status/", json={"test_id": "s1", **body},
                             headers=farm_app.worker())
    r = farm_app.client.get("/v1/tests/s1", headers=farm_app.user())
    assert r.status_code == 200
    doc = json_of(r)
    assert doc["test"]["state"] == "running" and doc["test"]["worker"] == "host-1"
    assert doc["test"]["progress"] == {"done": 1, "total": 4, "current": "a"}
    assert doc["test"]["started_at"] and doc["test"]["submitted_by"] == "alice"
    assert [h["state"] for h in doc["history"]] == ["queued", "installing", "running"]
    assert SECRET not in r.get_data(as_text=True)
    assert farm_app.client.get("/v1/tests/nope", headers=farm_app.user()).status_code == 404


def test_cancel_a_queued_test_removes_its_job(farm_app: App, own_gearmand: Gearmand) -> None:
    create(farm_app, test_id="cq")
    r = farm_app.client.post("/v1/tests/cq/cancel", headers=farm_app.user())
    assert r.status_code == 200, r.json
    assert json_of(r)["cancel"] == "removed from the queue"
    assert json_of(r)["test"]["state"] == "cancelled"
    jobs = admin(own_gearmand.port, "show jobs")
    assert [line.split("\t")[2] for line in jobs] == ["1"]  # marked ignored by gearmand
    r = farm_app.client.post("/v1/tests/cq/cancel", headers=farm_app.user())
    assert r.status_code == 409 and "already cancelled" in json_of(r)["error"]
    assert farm_app.client.post("/v1/tests/zz/cancel", headers=farm_app.user()).status_code \
        == 404
    assert farm_app.client.post("/v1/tests/cq/cancel").status_code == 401


def test_cancel_a_running_test_sends_the_cancel_job(farm_app: App,
                                                    own_gearmand: Gearmand) -> None:
    create(farm_app, test_id="cr")
    farm_app.client.post("/update-test-status/", json={"test_id": "cr", "status": "running"},
                         headers=farm_app.worker())
    r = farm_app.client.post("/v1/tests/cr/cancel", headers=farm_app.user())
    assert r.status_code == 202 and json_of(r)["cancel"] == "requested"
    assert json_of(r)["test"]["state"] == "running"
    assert status(own_gearmand.port)[cancel_function("cr")] == (1, 0, 0)
    history = json_of(farm_app.client.get("/v1/tests/cr", headers=farm_app.user()))["history"]
    assert "cancel requested (cancelled by alice)" in history[-1]["message"]


def test_counts_keep_the_selected_total_and_name_the_classes(farm_app: App) -> None:
    """The worker's reports give the total selected and the final counts; the results
    file alone would know only the tests that reported."""
    create(farm_app, test_id="k1")
    worker = farm_app.worker()

    def report(status: str, **progress: int) -> None:
        r = farm_app.client.post("/update-test-status/", headers=worker, json={
            "test_id": "k1", "status": status, "progress": {"current": "", **progress}})
        assert r.status_code == 202, r.data

    report("running", total=10, done=0)
    report("running", total=10, done=4, passed=1)  # a progress report...
    data = stream([("tempest.a.T.test_ok[id-1]", "success", ""),
                   ("setUpClass (tempest.b.U)", "fail", "Traceback\nInvalidCredentials")])
    assert farm_app.client.post("/post-result?test_id=k1", headers=worker, data={
        "file": (io.BytesIO(data), "k1.subunit")}).status_code == 201
    report("failed", total=10, done=7, passed=1, classes_failed=1)  # ...then the last word
    t = json_of(farm_app.client.get("/v1/tests/k1", headers=farm_app.user()))["test"]
    assert t["summary"] == {"total": 10, "done": 7, "passed": 1, "failed": 0, "skipped": 0,
                            "not_run": 9, "classes_failed": 1, "classes_skipped": 0}
    assert (t["progress"]["done"], t["progress"]["total"]) == (7, 10)


def test_results_in_three_formats(farm_app: App) -> None:
    create(farm_app, test_id="r1")
    r = farm_app.client.get("/v1/tests/r1/results", headers=farm_app.user())
    assert r.status_code == 404 and "no results uploaded" in json_of(r)["error"]
    data = stream([("tempest.a.T.test_ok[id-1]", "success", ""),
                   ("tempest.a.T.test_bad[id-2]", "fail", "Traceback\nAssertionError: no"),
                   ("tempest.a.T.test_skip", "skip", "no nova")], seconds=2.5)
    farm_app.client.post("/post-result?test_id=r1", headers=farm_app.worker(),
                         data={"file": (io.BytesIO(data), "r1.subunit")})
    doc = json_of(farm_app.client.get("/v1/tests/r1/results", headers=farm_app.user()))
    assert doc["test"]["summary"] == {"passed": 1, "failed": 1, "skipped": 1, "total": 3,
                                      "done": 3, "not_run": 0, "classes_failed": 0,
                                      "classes_skipped": 0}
    assert [(t["name"], t["status"], t["duration_s"]) for t in doc["results"]] == [
        ("tempest.a.T.test_ok[id-1]", "success", 2.5),
        ("tempest.a.T.test_bad[id-2]", "fail", 2.5), ("tempest.a.T.test_skip", "skip", 2.5)]
    r = farm_app.client.get("/v1/tests/r1/results?format=subunit", headers=farm_app.user())
    assert r.status_code == 200 and r.data == data
    r = farm_app.client.get("/v1/tests/r1/results?format=junit", headers=farm_app.user())
    suite = ET.fromstring(r.data)
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = suite.find("testcase[@name='test_bad']/failure")
    assert failure is not None and "AssertionError: no" in (failure.text or "")
    r = farm_app.client.get("/v1/tests/r1/results?format=html", headers=farm_app.user())
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert "tempest.a.T.test_bad[id-2]" in r.text and "AssertionError: no" in r.text
    r = farm_app.client.get("/v1/tests/r1/results?format=pdf", headers=farm_app.user())
    assert r.status_code == 400 and json_of(r)["field"] == "format"


def test_queue_shows_each_server(farm_app: App, own_gearmand: Gearmand, tmp_path: Path) -> None:
    create(farm_app, test_id="q1")
    r = farm_app.client.get("/v1/queue", headers=farm_app.user())
    (server,) = json_of(r)["servers"]
    assert server["reachable"] and server["server"] == own_gearmand.address
    assert server["functions"] == [{"name": run_function("47.0.0"), "queued": 1,
                                    "running": 0, "workers": 0, "withdrawn": 0}]
    create(farm_app, test_id="q2")
    assert farm_app.client.post("/v1/tests/q2/cancel", headers=farm_app.user()).status_code \
        == 200
    (server,) = json_of(farm_app.client.get("/v1/queue", headers=farm_app.user()))["servers"]
    # gearmand still counts q2 (2 queued); the server takes it off and says so
    assert status(own_gearmand.port)[run_function("47.0.0")][0] == 2
    assert server["functions"] == [{"name": run_function("47.0.0"), "queued": 1,
                                    "running": 0, "workers": 0, "withdrawn": 1}]
    assert server["withdrawn"] == 1 and server["withdrawn_unknown"] == 0
    own_gearmand.stop()
    (server,) = json_of(farm_app.client.get("/v1/queue", headers=farm_app.user()))["servers"]
    assert not server["reachable"] and server["error"]


def test_openapi_document_is_served_and_valid(farm_app: App) -> None:
    from openapi_spec_validator import validate

    r = farm_app.client.get("/v1/openapi.json")
    assert r.status_code == 200
    doc = json_of(r)
    validate(doc)
    paths = set(doc["paths"])
    assert {"/update-test-status/", "/post-result", "/get-miniconf", "/get-testcases",
            "/v1/tests", "/v1/tests/{test_id}", "/v1/tests/{test_id}/cancel",
            "/v1/tests/{test_id}/results", "/v1/queue", "/v1/openapi.json"} <= paths
    assert json.dumps(doc)


def test_the_served_document_says_what_the_server_checks(farm_app: App) -> None:
    """One source of truth: a body the served schema refuses gets 400 naming the field,
    one it accepts gets past validation (the schemas are the handlers' own)."""
    from jsonschema import Draft202012Validator

    from server.test_refstack_api import seed

    doc = json_of(farm_app.client.get("/v1/openapi.json"))
    schemas = doc["components"]["schemas"]
    seed(farm_app, "d1")
    cases: list[tuple[str, str, dict[str, Any], str | None]] = [
        ("StatusUpdate", "/update-test-status/", {"test_id": "d1", "status": "running"}, None),
        ("StatusUpdate", "/update-test-status/", {"test_id": "d1", "status": "runing"},
         "status"),
        ("StatusUpdate", "/update-test-status/",
         {"test_id": "d1", "status": "running", "progress": {"done": "3"}}, "progress.done"),
        ("Upload", "/v1/tests/d1/uploads",
         {"target": "https://refstack.example/api", "state": "failed"}, None),
        ("Upload", "/v1/tests/d1/uploads",
         {"target": "https://refstack.example/api", "state": "uploaded"}, "result_id"),
        ("Upload", "/v1/tests/d1/uploads",
         {"target": "ftp://x", "state": "failed", "attempts": 0}, "attempts"),
        ("Upload", "/v1/tests/d1/uploads", {"target": "http://[", "state": "failed"}, "target"),
        ("CreateTest", "/v1/tests", {"tempest": {"version": "47.0.0"}, "queue_anyway": True,
                                     "dry_run": True}, None),
        ("CreateTest", "/v1/tests", {"tempest": {"version": "47.0.0"}, "cpid": "-x"}, "cpid"),
        ("CreateTest", "/v1/tests", {"tempest": {"version": "47.0.0"},
                                     "callback": {"url": "http://x/"}}, "callback"),
        ("CreateTest", "/v1/tests", {"tempest": {"version": "47.0.0"},
                                     "upload_url": "https://x:99999/"}, "upload_url"),
    ]
    for name, url, body, field in cases:
        valid = Draft202012Validator(schemas[name], format_checker=format_checker()).is_valid(body)
        assert valid == (field is None), (name, body)
        headers = farm_app.worker() if url.startswith("/update") else farm_app.user()
        r = farm_app.client.post(url, json=body, headers=headers)
        if field is None:
            assert r.status_code in (201, 202), (body, r.json)
        else:
            assert r.status_code == 400 and json_of(r)["field"] == field, (body, r.json)
            assert json_of(r)["error"].startswith(f"{field}: ")
    params = {p["name"]: p["schema"] for p in doc["paths"]["/v1/tests"]["get"]["parameters"]}
    assert params["limit"]["maximum"] == 500
    r = farm_app.client.get("/v1/tests?limit=501", headers=farm_app.user())
    assert r.status_code == 400 and json_of(r) == {
        "error": "limit: 501 is not a number from 1 to 500", "field": "limit"}


def test_query_integers_are_plain_digits(farm_app: App) -> None:
    for value in ("9" * 5000, "²", "+5", "5.0", " 5"):
        r = farm_app.client.get("/v1/tests", query_string={"limit": value},
                                headers=farm_app.user())
        assert r.status_code == 400 and json_of(r)["field"] == "limit", (value, r.json)


ACCOUNT_PW = "Acct-pw-5521"


def test_accounts_stay_on_the_server_until_the_test_ends(farm_app: App,
                                                         own_gearmand: Gearmand) -> None:
    accounts = [{"username": "u1", "password": ACCOUNT_PW, "project_name": "p1",
                 "roles": ["member"]}]
    r = create(farm_app, test_id="acc1", accounts=accounts, dry_run=True)
    assert r.status_code == 201, r.json
    assert ACCOUNT_PW not in r.text and "accounts" not in json_of(r)["test"]
    raw, _ = take_job(own_gearmand.port, run_function("47.0.0"))
    assert ACCOUNT_PW.encode() not in raw and parse_payload(raw).accounts == "callback"
    r = farm_app.client.get("/get-accounts?test_id=acc1", headers=farm_app.worker())
    assert r.status_code == 200 and json_of(r) == {"accounts": accounts}
    assert farm_app.client.get("/get-accounts?test_id=acc1",
                               headers=farm_app.user()).status_code == 405
    r = farm_app.client.post("/update-test-status/", json={
        "test_id": "acc1", "status": "passed", "message": "done"}, headers=farm_app.worker())
    assert r.status_code == 202, r.text
    r = farm_app.client.get("/get-accounts?test_id=acc1", headers=farm_app.worker())
    assert r.status_code == 404 and ACCOUNT_PW not in r.text
    assert "it ended (passed): a test's accounts are dropped when it ends" in \
        json_of(r)["error"]
    assert json_of(r)["state"] == "passed"  # a second copy of the job stops on it
    r = farm_app.client.get("/get-miniconf?test_id=acc1", headers=farm_app.worker())
    assert r.status_code == 404 and json_of(r)["state"] == "passed"
    # "callback" is the worker's word, not a client's
    r = create(farm_app, test_id="acc2", accounts="callback")
    assert r.status_code == 400 and json_of(r)["field"] == "accounts", r.json
