"""The whole server on a real PostgreSQL: create, report, upload, list, cancel."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from farm_lab.gearmand import Gearmand
from harness.postgres import Postgres
from harness.subunit_streams import stream
from server.conftest import App, json_of, make_app


@pytest.fixture
def pg_app(postgres: Postgres, own_gearmand: Gearmand) -> Iterator[App]:
    a = make_app(postgres.new_database(), own_gearmand)
    try:
        yield a
    finally:
        a.app.extensions["farm"].gearman.close()
        a.store.engine.dispose()


def test_a_test_from_creation_to_results_on_postgresql(pg_app: App) -> None:
    c, user, worker = pg_app.client, pg_app.user(), pg_app.worker()
    r = c.post("/v1/tests", headers=user, json={
        "test_id": "pg-1", "tempest": {"version": "47.0.0"}, "queue_anyway": True,
        "conf": {"auth": {"admin_password": "pg-secret-1"}}, "tests": {"regex": "x"}})
    assert r.status_code == 201, r.json
    for status in ("installing", "running", "uploading"):
        assert c.post("/update-test-status/", headers=worker,
                      json={"test_id": "pg-1", "status": status}).status_code == 202
    data = stream([("a.T.test_1", "success", ""), ("a.T.test_2", "skip", "no")])
    assert c.post("/post-result?test_id=pg-1", headers=worker,
                  data={"file": (io.BytesIO(data), "f")}).status_code == 201
    assert json_of(c.post("/update-test-status/", headers=worker, json={
        "test_id": "pg-1", "status": "passed"}))["state"] == "passed"
    assert json_of(c.post("/update-test-status/", headers=worker, json={
        "test_id": "pg-1", "status": "running"}))["report"] == "keep"
    doc = json_of(c.get("/v1/tests/pg-1", headers=user))
    assert doc["test"]["summary"] == {"passed": 1, "failed": 0, "skipped": 1, "total": 2,
                                      "done": 2, "not_run": 0, "classes_failed": 0,
                                      "classes_skipped": 0}
    assert [h["state"] for h in doc["history"]] == [
        "queued", "installing", "running", "uploading", "passed", "running"]
    assert c.get("/v1/tests/pg-1/results?format=subunit", headers=user).data == data
    listed = c.get("/v1/tests?state=passed", headers=user)
    assert [t["id"] for t in json_of(listed)["tests"]] == ["pg-1"]
    assert b"pg-secret-1" not in listed.data
    assert c.post("/v1/tests/pg-1/cancel", headers=user).status_code == 409
