"""The RefStack contract through Flask's test client: every status code and its body,
and nothing stored from a rejected request."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from farm_lab.gearmand import Gearmand
from farm_server.models import TestRow
from farm_server.schemas import PAYLOAD_MAX
from harness.subunit_streams import stream
from server.conftest import App, json_of, make_app

URL = "/update-test-status/"


def seed(app: App, test_id: str = "t1") -> None:
    row = TestRow(id=test_id, state="queued", tempest_version="47.0.0", dry_run=False,
                  conf_json=json.dumps({"auth": {"admin_password": "pw-secret-9"}}),
                  tests_json=json.dumps({"regex": "", "include": ["a.b.test_x"],
                                         "exclude": []}),
                  message="queued")
    app.store.create_test(row, lambda: ("127.0.0.1:1", "H:1"), "alice")


def history(app: App, test_id: str = "t1") -> list[str]:
    return [h.state for h in app.store.history(test_id)]


def test_update_accepted_as_json_and_as_form(farm_app: App) -> None:
    seed(farm_app)
    r = farm_app.client.post(URL, json={"test_id": "t1", "status": "installing",
                                        "message": "tempest 47.0.0", "worker": "host-1-0"},
                             headers=farm_app.worker())
    assert r.status_code == 202
    assert r.json == {"test_id": "t1", "state": "installing", "report": "apply"}
    r = farm_app.client.post(URL, data={"test_id": "t1", "status": "running",
                                        "progress": json.dumps({"done": 1, "total": 3})},
                             headers=farm_app.worker())
    assert r.status_code == 202 and r.json is not None and json_of(r)["state"] == "running"
    test = farm_app.store.get("t1")
    assert test is not None and (test.progress_done, test.progress_total) == (1, 3)
    assert test.worker == "host-1"  # a form without `worker`: the token's host
    assert history(farm_app) == ["queued", "installing", "running"]


def test_repeated_and_late_reports(farm_app: App) -> None:
    seed(farm_app)
    body = {"test_id": "t1", "status": "cancelled", "message": "by user"}
    for expected in ("apply", "duplicate"):
        r = farm_app.client.post(URL, json=body, headers=farm_app.worker())
        assert r.status_code == 202 and r.json is not None and json_of(r)["report"] == expected
    r = farm_app.client.post(URL, json={"test_id": "t1", "status": "running"},
                             headers=farm_app.worker())
    assert r.status_code == 202 and r.json == {"test_id": "t1", "state": "cancelled",
                                               "report": "keep"}
    assert history(farm_app) == ["queued", "cancelled", "running"]


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"status": "running"}, "test_id", "is required"),
    ({"test_id": "bad id", "status": "running"}, "test_id", "does not match"),
    ({"test_id": "t1"}, "status", "is required"),
    ({"test_id": "t1", "status": "runing"}, "status", "is not a state"),
    ({"test_id": "t1", "status": "running", "message": 7}, "message", "is not a string"),
    ({"test_id": "t1", "status": "running", "message": "x" * 5000}, "message", "at most"),
    ({"test_id": "t1", "status": "running", "progress": [1]}, "progress", "not an object"),
    ({"test_id": "t1", "status": "running", "report_id": "a b"}, "report_id",
     "is not a report id"),
    ({"test_id": "t1", "status": "running", "progress": {"done": -1}}, "progress.done",
     "not a count"),
    ({"test_id": "t1", "status": "running", "progress": {"eta": 5}}, "progress.eta",
     "unknown field"),
    ({"test_id": "t1", "status": "running", "payload": {"x": "y" * (PAYLOAD_MAX + 1)}},
     "payload", "larger than"),
    ({"test_id": "t1", "status": "running", "worker": "a b"}, "worker", "not a worker id"),
    ({"test_id": "unknown-test", "status": "running"}, "test_id", "not a test of this server"),
])
def test_update_bad_request_names_the_field(farm_app: App, body: dict[str, Any], field: str,
                                            fragment: str) -> None:
    seed(farm_app)
    r = farm_app.client.post(URL, json=body, headers=farm_app.worker())
    assert r.status_code == 400
    assert r.json is not None and json_of(r)["field"] == field and fragment in json_of(r)["error"]
    assert history(farm_app) == ["queued"]  # nothing stored


def test_update_body_must_be_an_object(farm_app: App) -> None:
    r = farm_app.client.post(URL, data="[1]", content_type="application/json",
                             headers=farm_app.worker())
    assert r.status_code == 400 and r.json == {"error": "body: is not a JSON object",
                                               "field": "body"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"},
                                     {"Authorization": "Basic abc"}])
def test_unknown_hosts_get_405_and_nothing_is_stored(farm_app: App,
                                                     headers: dict[str, str]) -> None:
    seed(farm_app)
    for method, path, kwargs in (
            ("post", URL, {"json": {"test_id": "t1", "status": "running"}}),
            ("get", "/get-miniconf?test_id=t1", {}),
            ("get", "/get-testcases?test_id=t1", {}),
            ("post", "/post-result?test_id=t1",
             {"data": {"file": (io.BytesIO(stream([("a", "success", "")])), "r.subunit")}})):
        r = getattr(farm_app.client, method)(path, headers=headers, **kwargs)
        assert r.status_code == 405, path
        assert "not a known testing host" in json_of(r)["error"]
    assert history(farm_app) == ["queued"]
    assert farm_app.store.results("t1") == ([], None)


def test_a_worker_outside_its_networks_gets_405(farm_app: App) -> None:
    seed(farm_app)
    r = farm_app.client.post(URL, json={"test_id": "t1", "status": "running"},
                             headers=farm_app.worker(),
                             environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert r.status_code == 405 and "192.0.2.7 is not allowed for host-1" in json_of(r)["error"]
    assert history(farm_app) == ["queued"]


def test_miniconf_and_testcases(farm_app: App) -> None:
    seed(farm_app)
    r = farm_app.client.get("/get-miniconf?test_id=t1", headers=farm_app.worker())
    assert r.status_code == 200 and r.json == {"auth": {"admin_password": "pw-secret-9"}}
    r = farm_app.client.get("/get-testcases?test_id=t1", headers=farm_app.worker())
    assert r.status_code == 200 and r.json == {"testcases": ["a.b.test_x"]}
    for path in ("/get-miniconf?test_id=nope", "/get-testcases?test_id=nope"):
        r = farm_app.client.get(path, headers=farm_app.worker())
        assert r.status_code == 404 and json_of(r)["field"] == "test_id"
    r = farm_app.client.get("/get-miniconf", headers=farm_app.worker())
    assert r.status_code == 400 and json_of(r)["field"] == "test_id"
    # once the test ends its configuration (the cloud's passwords) is gone
    r = farm_app.client.post(URL, json={"test_id": "t1", "status": "error", "message": "x"},
                             headers=farm_app.worker())
    assert r.status_code == 202, r.text
    r = farm_app.client.get("/get-miniconf?test_id=t1", headers=farm_app.worker())
    assert r.status_code == 404 and "pw-secret-9" not in r.text
    assert "it ended (error): a test's configuration is dropped" in json_of(r)["error"]


def test_post_result_parses_subunit(farm_app: App) -> None:
    seed(farm_app)
    data = stream([("a.T.test_ok", "success", ""), ("a.T.test_bad", "fail", "Traceback: x"),
                   ("a.T.test_skip", "skip", "no service")])
    r = farm_app.client.post("/post-result?test_id=t1", headers=farm_app.worker(),
                             data={"file": (io.BytesIO(data), "t1.subunit")})
    assert r.status_code == 201
    assert r.json == {"test_id": "t1", "tests": 3, "passed": 1, "failed": 1, "skipped": 1,
                      "classes_failed": 0, "classes_skipped": 0}
    # delivered again (a worker's outbox delivers at least once): 200, said, stored once
    r = farm_app.client.post("/post-result?test_id=t1", headers=farm_app.worker(),
                             data={"file": (io.BytesIO(data), "t1.subunit")})
    assert r.status_code == 200 and json_of(r)["report"] == "duplicate"
    rows, raw = farm_app.store.results("t1")
    assert raw is not None and raw.data == data
    assert {r.name: r.status for r in rows} == {"a.T.test_ok": "success",
                                                "a.T.test_bad": "fail",
                                                "a.T.test_skip": "skip"}


@pytest.mark.parametrize(("data", "fragment"), [
    (b"", "empty"),
    (b"this is a plain text file, not subunit\n", "not a subunit v2 stream"),
    (stream([("a", "success", "")])[:-3], "damaged subunit stream"),
    (stream([("a", "success", "")])[:-1], "damaged subunit stream"),
    (stream([("a", "inprogress", "")]), "holds no test result"),
])
def test_post_result_refuses_what_is_not_subunit(farm_app: App, data: bytes,
                                                 fragment: str) -> None:
    seed(farm_app)
    r = farm_app.client.post("/post-result?test_id=t1", headers=farm_app.worker(),
                             data={"file": (io.BytesIO(data), "t1.subunit")})
    assert r.status_code == 400
    assert json_of(r)["field"] == "file" and fragment in json_of(r)["error"]
    assert farm_app.store.results("t1") == ([], None)


def test_a_superseded_worker_is_told_to_stop_and_its_results_refused(farm_app: App) -> None:
    seed(farm_app)
    for worker in ("host-1-0", "host-1-1"):  # the second claim wins
        r = farm_app.client.post(URL, json={"test_id": "t1", "status": "installing",
                                            "worker": worker}, headers=farm_app.worker())
        assert r.status_code == 202 and json_of(r)["report"] == "apply"
    r = farm_app.client.post(URL, json={"test_id": "t1", "status": "running",
                                        "message": "1/3", "worker": "host-1-0"},
                             headers=farm_app.worker())
    assert r.status_code == 202
    assert r.json == {"test_id": "t1", "state": "installing", "report": "superseded",
                      "worker": "host-1-1"}
    data = stream([("a.T.test_ok", "success", "")])
    r = farm_app.client.post("/post-result?test_id=t1&worker=host-1-0",
                             headers=farm_app.worker(),
                             data={"file": (io.BytesIO(data), "t1.subunit")})
    assert r.status_code == 409 and json_of(r)["field"] == "worker"
    assert "held by worker host-1-1" in json_of(r)["error"]
    assert farm_app.store.results("t1") == ([], None)
    r = farm_app.client.post("/post-result?test_id=t1&worker=host-1-1",
                             headers=farm_app.worker(),
                             data={"file": (io.BytesIO(data), "t1.subunit")})
    assert r.status_code == 201
    test = farm_app.store.get("t1")
    assert test is not None and test.worker == "host-1-1" and test.state == "installing"


def test_late_news_from_the_holder_is_taken_with_its_results(farm_app: App) -> None:
    """The monitor gave the test up ("worker lost") while its worker could not reach the
    server; the worker delivers its results and final state later."""
    from farm_server.lifecycle import WORKER_LOST, Report
    from farm_worker.protocol import TestState

    seed(farm_app)
    r = farm_app.client.post(URL, json={"test_id": "t1", "status": "running",
                                        "message": "1 tests", "worker": "host-1-0"},
                             headers=farm_app.worker())
    assert r.status_code == 202
    farm_app.store.apply("t1", Report(TestState.ERROR, f"{WORKER_LOST}no report for 600 s",
                                      None), source="monitor")
    data = stream([("a.T.test_ok", "success", "")])
    for worker, code in (("host-1-1", 409), ("host-1-0", 201)):  # only the holder's
        r = farm_app.client.post(f"/post-result?test_id=t1&worker={worker}",
                                 headers=farm_app.worker(),
                                 data={"file": (io.BytesIO(data), "t1.subunit")})
        assert r.status_code == code, worker
    final = {"test_id": "t1", "status": "passed", "message": "1 passed", "worker": "host-1-0",
             "report_id": "host-1-0:17"}
    for answer in ("apply", "duplicate"):  # delivered twice: taken once
        r = farm_app.client.post(URL, json=final, headers=farm_app.worker())
        assert r.status_code == 202 and json_of(r) == {"test_id": "t1", "state": "passed",
                                                       "report": answer}
    test = farm_app.store.get("t1")
    assert test is not None and test.state == "passed" and test.passed == 1
    assert test.message.startswith("1 passed (delivered late, after the monitor ended it: ")
    assert history(farm_app) == ["queued", "running", "error", "passed"]


def test_post_result_needs_the_file_and_a_known_test(farm_app: App) -> None:
    seed(farm_app)
    r = farm_app.client.post("/post-result?test_id=t1", headers=farm_app.worker(), data={})
    assert r.status_code == 400 and json_of(r)["field"] == "file"
    r = farm_app.client.post("/post-result?test_id=zz", headers=farm_app.worker(),
                             data={"file": (io.BytesIO(stream([("a", "success", "")])), "f")})
    assert r.status_code == 400 and json_of(r)["field"] == "test_id"


def test_oversize_bodies_get_413_and_nothing_is_stored(tmp_path: Path,
                                                       own_gearmand: Gearmand) -> None:
    small = make_app(f"sqlite:///{tmp_path / 's.db'}", own_gearmand, max_body_bytes=4096)
    try:
        seed(small)
        r = small.client.post(URL, json={"test_id": "t1", "status": "running",
                                         "message": "m" * 3000, "payload": "p" * 3000},
                              headers=small.worker())
        assert r.status_code == 413
        assert r.json == {"error": "request body larger than 4096 bytes"}
        data = stream([("a.T.t", "success", "x" * 10000)])
        r = small.client.post("/post-result?test_id=t1", headers=small.worker(),
                              data={"file": (io.BytesIO(data), "big.subunit")})
        assert r.status_code == 413
        assert history(small) == ["queued"] and small.store.results("t1") == ([], None)
    finally:
        small.app.extensions["farm"].gearman.close()
        small.store.engine.dispose()
