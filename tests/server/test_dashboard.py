"""The dashboard over HTTP, on the real store and a real gearmand: sign-in, sessions and
CSRF, every page, escaping of what workers send, compare (API, page and `farm compare`),
a test's history, run again, and the live stream's events. The browser's side is in
tests/browser."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_client.gearman_client import Gearman, Server
from farm_lab.gearmand import Gearmand
from farm_lab.loopback import free_port
from farm_server.app import create_app
from farm_server.config import ServerConfig, ServerConfigError, load_server_config
from farm_server.dashboard import live, live_view
from farm_server.store import Store
from harness.subunit_streams import stream
from server.conftest import App, json_of

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
PAGES = ["/", "/runs/r1", "/queue", "/compare?a=r1", "/history?name=a.T.test_ok",
         "/events"]


def create(app: App, test_id: str, conf: dict[str, Any] | None = None, **more: Any) -> None:
    r = app.client.post("/v1/tests", headers=app.user(), json={
        "test_id": test_id, "tempest": {"version": "47.0.0"}, "queue_anyway": True,
        "conf": conf or {"identity": {"uri_v3": "http://127.0.0.1:9/v3",
                                      "user_minimum_password_age": 0},
                         "auth": {"admin_password": "pw-dash-7"}},
        "tests": {"regex": "tempest.api.identity"}, **more})
    assert r.status_code == 201, r.text


def finish(app: App, test_id: str, tests: list[tuple[str, str, str]], state: str,
           seconds: float = 1.0) -> None:
    """Drive a test as a worker would: installing, running, its results, the end."""
    for status in ("installing", "running"):
        r = app.client.post("/update-test-status/", headers=app.worker(), json={
            "test_id": test_id, "status": status, "worker": "w1"})
        assert r.status_code == 202, r.text
    r = app.client.post(f"/post-result?test_id={test_id}&worker=w1", headers=app.worker(),
                        data={"file": (io.BytesIO(stream(tests, seconds)), "r.subunit")})
    assert r.status_code == 201, r.text
    r = app.client.post("/update-test-status/", headers=app.worker(), json={
        "test_id": test_id, "status": state, "worker": "w1", "message": f"{state} <b>!</b>"})
    assert r.status_code == 202, r.text


def sign_in(app: App) -> str:
    """Sign in with the user token; the CSRF token of the session."""
    r = app.client.post("/signin", data={"token": app.user_token, "next": "/"})
    assert r.status_code == 303 and r.headers["Location"] == "/"
    return csrf_of(app.client.get("/").text)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


@pytest.mark.gearman
def test_every_page_needs_a_session_and_only_a_user_token_signs_in(farm_app: App) -> None:
    create(farm_app, "r1")
    for page in PAGES:
        r = farm_app.client.get(page)
        if page == "/events":
            assert r.status_code == 401
        else:
            assert r.status_code == 303 and r.headers["Location"].startswith("/signin?next=")
    # a bearer token is for the JSON API, not the pages; the API keeps it
    assert farm_app.client.get("/", headers=farm_app.user()).status_code == 303
    assert farm_app.client.get("/v1/tests/r1", headers=farm_app.user()).status_code == 200
    # a worker's token does not sign in, nor does a made-up one
    r = farm_app.client.post("/signin", data={"token": farm_app.worker_token})
    assert r.status_code == 401 and "workers report, people sign in" in r.text
    assert "Set-Cookie" not in r.headers
    r = farm_app.client.post("/signin", data={"token": "nope"})
    assert r.status_code == 401 and "not a user token" in r.text
    # the next page after sign-in stays on this server
    r = farm_app.client.post("/signin", data={"token": farm_app.user_token,
                                              "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    for page in PAGES[:-1]:
        assert farm_app.client.get(page).status_code in (200, 404), page


@pytest.mark.gearman
def test_the_cookie_is_secure_under_tls(farm_app: App) -> None:
    r = farm_app.client.post("/signin", data={"token": farm_app.user_token},
                             base_url="https://farm.example")
    assert "Secure" in r.headers["Set-Cookie"]


@pytest.mark.gearman
def test_sign_out_ends_the_session_and_posts_need_the_csrf_token(farm_app: App) -> None:
    create(farm_app, "r1")
    token = sign_in(farm_app)
    cookie = farm_app.client.get_cookie("farm_session")
    assert cookie is not None
    # no token, or another one: refused, nothing done
    for data in ({}, {"csrf": "forged"}):
        r = farm_app.client.post("/runs/r1/cancel", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    assert json_of(farm_app.client.get("/v1/tests/r1", headers=farm_app.user()))[
        "test"]["state"] == "queued"
    r = farm_app.client.post("/runs/r1/cancel", data={"csrf": token})
    assert r.status_code == 303
    assert json_of(farm_app.client.get("/v1/tests/r1", headers=farm_app.user()))[
        "test"]["state"] == "cancelled"
    assert farm_app.client.post("/signout", data={"csrf": token}).status_code == 303
    # the old cookie, sent again after sign-out, is no session
    farm_app.client.set_cookie("farm_session", cookie.value)
    assert farm_app.client.get("/").status_code == 303


@pytest.mark.gearman
def test_what_workers_send_is_escaped_everywhere(farm_app: App) -> None:
    create(farm_app, "r1")
    name = f"a.T{XSS}.test_x"
    finish(farm_app, "r1", [(name, "fail", f"Traceback\n{XSS}"),
                            ("a.T.test_skip", "skip", f"reason {XSS}")], "failed")
    farm_app.client.post("/update-test-status/", headers=farm_app.worker(), json={
        "test_id": "r1", "status": "failed", "worker": "w1", "message": XSS})
    sign_in(farm_app)
    for page in ("/", "/runs/r1", f"/history?name={name}", "/compare?a=r1&b=r1"):
        text = farm_app.client.get(page).text
        assert "<script>alert" not in text and "<img src=x" not in text, page
    html = farm_app.client.get("/v1/tests/r1/results?format=html", headers=farm_app.user())
    assert html.status_code == 200 and "<script>alert" not in html.text
    assert "&lt;script&gt;alert" in html.text
    assert "default-src 'none'" in html.headers["Content-Security-Policy"]
    run = farm_app.client.get("/runs/r1")
    assert "script-src 'self'" in run.headers["Content-Security-Policy"]
    events = farm_app.client.get("/events?test=r1").text
    assert "<script>" not in events  # JSON-escaped data; the page sets it as text


@pytest.mark.gearman
def test_the_run_page_and_the_report_show_every_test(farm_app: App) -> None:
    create(farm_app, "r1")
    tb = "Traceback (most recent call last):\nInvalidCredentials: bad"
    tests = [(f"tempest.api.identity.T{i}.test_{i}", "fail", tb) for i in range(35)]
    tests += [("tempest.api.identity.S.test_skipped", "skip", "no volume service"),
              ("tempest.api.identity.P.test_ok", "success", "")]
    finish(farm_app, "r1", tests, "failed")
    sign_in(farm_app)
    for text in (farm_app.client.get("/runs/r1").text,
                 farm_app.client.get("/v1/tests/r1/results?format=html",
                                     headers=farm_app.user()).text):
        assert text.count('<tr class="t"') == 37  # every test, not the 20 slowest
        assert "35 tests, the same error: InvalidCredentials: bad" in text  # one group
        assert "<details open" not in text  # failures folded
        assert "no volume service" in text  # the skip reason
        assert ">tempest.api.identity.S (1)</td>" in text  # grouping by class
    # the downloads work with the session (the page's links), not only a bearer token
    for fmt, start in (("subunit", b"\xb3"), ("junit", b"<?xml"), ("json", b"{"),
                       ("html", b"<!DOCTYPE html>")):
        r = farm_app.client.get(f"/runs/r1/results.{fmt}")
        assert r.status_code == 200 and r.data.startswith(start), fmt
        assert r.headers["Content-Disposition"].startswith("attachment; filename=\"r1.")
    assert 'href="/runs/r1/results.junit"' in farm_app.client.get("/runs/r1").text
    assert farm_app.client.get("/runs/r1/results.pdf").status_code == 404
    report = farm_app.client.get("/v1/tests/r1/results?format=html", headers=farm_app.user())
    assert "<link" not in report.text and 'src="' not in report.text  # one file
    assert "function setupTable" in report.text and "Status history" in report.text


@pytest.mark.gearman
def test_compare_through_the_api_and_the_page(farm_app: App) -> None:
    base = [("a.T.test_ok", "success", ""), ("a.T.test_flip", "success", ""),
            ("a.T.test_bad", "fail", "E1"), ("a.T.test_gone", "success", ""),
            ("a.T.test_fixed", "fail", "E2")]
    create(farm_app, "a1", cpid="cloud-1")
    finish(farm_app, "a1", base, "failed")
    create(farm_app, "b1", cpid="cloud-1")
    finish(farm_app, "b1", [("a.T.test_ok", "success", ""),
                            ("a.T.test_flip", "fail", "Boom: regressed"),
                            ("a.T.test_bad", "fail", "E1"), ("a.T.test_new", "success", ""),
                            ("a.T.test_fixed", "success", "")], "failed")
    doc = json_of(farm_app.client.get("/v1/compare?a=a1&b=b1", headers=farm_app.user()))
    assert doc["counts"] == {"regressed": 1, "fixed": 1, "new": 1, "missing": 1,
                             "still_failing": 1, "slower": 0, "faster": 0, "same": 1}
    assert doc["regressed"][0]["name"] == "a.T.test_flip"
    assert doc["regressed"][0]["detail"].strip() == "Boom: regressed"
    # against the previous run of the same cloud and version
    prev = json_of(farm_app.client.get("/v1/compare?a=b1", headers=farm_app.user()))
    assert (prev["a"], prev["b"]) == ("a1", "b1") and prev["counts"] == doc["counts"]
    for query, code in (("a=a1&b=nope", 404), ("a=a1&b=b1&ratio=0.5", 400),
                        ("b=b1", 400), ("a=a1", 404), ("a=a1&b=b1&ratio=x", 400)):
        r = farm_app.client.get(f"/v1/compare?{query}", headers=farm_app.user())
        assert r.status_code == code, (query, r.text)
    assert "/v1/compare" in json_of(farm_app.client.get("/v1/openapi.json"))["paths"]
    sign_in(farm_app)
    page = farm_app.client.get("/compare?a=a1&b=b1").text
    assert 'id="cmp-regressed"' in page and "a.T.test_flip" in page
    run = farm_app.client.get("/runs/b1").text
    assert 'href="/compare?a=a1&amp;b=b1"' in run  # against the previous run


@pytest.mark.gearman
def test_a_tests_history_failing_since_and_flaky_rate(farm_app: App) -> None:
    outcomes = ["success", "fail", "success", "fail", "fail"]  # oldest first
    for i, status in enumerate(outcomes):
        create(farm_app, f"h{i}", cpid="cloud-h")
        finish(farm_app, f"h{i}", [("a.T.test_h", status, "E" if status == "fail" else "")],
               "passed" if status == "success" else "failed")
    sign_in(farm_app)
    text = farm_app.client.get("/history?name=a.T.test_h").text
    assert "cloud cloud-h, Tempest 47.0.0" in text
    assert "2 passed, 3 failed, 0 skipped in 5 runs" in text
    assert "flaky rate <b>75%</b>" in text  # 3 flips in 4 pairs
    assert 'failing since <a href="/runs/h3">h3</a>' in text


@pytest.mark.gearman
def test_run_the_failed_tests_again_asks_for_the_secret(farm_app: App) -> None:
    create(farm_app, "f1")
    finish(farm_app, "f1", [("a.T.test_ok", "success", ""),
                            ("a.T.test_bad[id-1,smoke]", "fail", "E"),
                            ("a.T.test_worse", "fail", "E")], "failed")
    token = sign_in(farm_app)
    page = farm_app.client.get("/runs/f1").text
    assert re.findall(r'name="(secret:[^"]+)"', page) == ["secret:auth:admin_password"]
    assert "pw-dash-7" not in page  # a number under a password-looking key is no secret
    r = farm_app.client.post("/runs/f1/rerun", data={"csrf": token, "failed": "1"})
    assert r.status_code == 400 and "auth.admin_password" in r.text
    form = {"csrf": token, "failed": "1", "secret:auth:admin_password": "pw-dash-7"}
    r = farm_app.client.post("/runs/f1/rerun", data=form)
    assert r.status_code == 422 and "no worker serves tempest:run:47.0.0" in r.text
    r = farm_app.client.post("/runs/f1/rerun", data={**form, "queue_anyway": "1"})
    assert r.status_code == 303, r.text
    new_id = r.headers["Location"].rsplit("/", 1)[1]
    doc = json_of(farm_app.client.get(f"/v1/tests/{new_id}", headers=farm_app.user()))
    assert doc["test"]["tests"] == {"list": ["a.T.test_bad", "a.T.test_worse"]}
    assert doc["test"]["state"] == "queued"
    conf = farm_app.client.get(f"/get-miniconf?test_id={new_id}", headers=farm_app.worker())
    assert conf.json["auth"]["admin_password"] == "pw-dash-7"  # type: ignore[index]
    text = farm_app.client.get(f"/runs/{new_id}").text
    assert 'href="/runs/f1"' in text  # linked to its origin
    # run again: every test of the run, with its conf as it was
    r = farm_app.client.post("/runs/f1/rerun", data={**form, "failed": "0",
                                                     "queue_anyway": "1"})
    assert r.status_code == 303, r.text
    again = r.headers["Location"].rsplit("/", 1)[1]
    doc = json_of(farm_app.client.get(f"/v1/tests/{again}", headers=farm_app.user()))
    assert doc["test"]["tests"] == {"regex": "tempest.api.identity", "include": [],
                                    "exclude": []}
    conf = farm_app.client.get(f"/get-miniconf?test_id={again}", headers=farm_app.worker())
    assert conf.json == {"identity": {"uri_v3": "http://127.0.0.1:9/v3",
                                      "user_minimum_password_age": 0},
                         "auth": {"admin_password": "pw-dash-7"}}
    assert f'href="/runs/{new_id}"' in farm_app.client.get("/runs/f1").text


@pytest.mark.gearman
def test_the_runs_page_filters_and_pages(farm_app: App) -> None:
    for i in range(55):
        create(farm_app, f"p{i:02d}", cpid="cloud-a" if i % 2 else "cloud-b")
    sign_in(farm_app)
    first = farm_app.client.get("/").text
    assert first.count("<tr data-test=") == 50 and 'id="next"' in first
    assert first.index('data-test="p54"') < first.index('data-test="p53"')  # newest first
    second = farm_app.client.get("/?page=2").text
    assert second.count("<tr data-test=") == 5 and 'id="prev"' in second
    only_a = farm_app.client.get("/?cpid=cloud-a&q=p1").text
    assert set(re.findall(r'<tr data-test="(p\d+)"', only_a)) == {
        f"p{i}" for i in range(11, 20, 2)}
    assert 'data-prepend="0"' in only_a  # a filtered page gets no new rows pushed in


def events_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


@pytest.mark.gearman
def test_a_run_stream_ends_with_an_end_event_and_resumes(farm_app: App) -> None:
    create(farm_app, "e1")
    finish(farm_app, "e1", [("a.T.test_ok", "success", "")], "passed")
    sign_in(farm_app)
    events = events_of(farm_app.client.get("/events?test=e1").text)
    kinds = [kind for kind, _ in events]
    assert kinds[-2:] == ["test", "end"] and events[-1][1]["state"] == "passed"
    assert events[-1][1]["has_results"] is True
    assert [d["state"] for k, d in events if k == "report"][:3] == [
        "queued", "installing", "running"]
    # resumed after the last report: only the current view and the end again
    stamp = re.findall(r"^id: (\d+)$", farm_app.client.get("/events?test=e1").text, re.M)[-1]
    resumed = events_of(farm_app.client.get("/events?test=e1",
                                            headers={"Last-Event-ID": stamp}).text)
    assert [k for k, _ in resumed] == ["test", "end"]


@pytest.mark.gearman
def test_streams_beyond_the_cap_are_refused_not_queued(farm_app: App) -> None:
    sign_in(farm_app)
    farm_app.app.extensions["farm-live"] = live.Hub(farm_app.store, live_view, 0.25, 0)
    r = farm_app.client.get("/events")
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"


@pytest.mark.gearman
def test_a_live_run_stream_follows_reports_to_the_end(farm_app: App) -> None:
    """The hub's path: a run that is not over yet, its page open, the worker reporting."""
    create(farm_app, "l1")
    sign_in(farm_app)
    response = farm_app.client.get("/events?test=l1", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    got: list[tuple[str, dict[str, Any]]] = []
    chunks: Iterator[bytes | str] = iter(response.response)

    def read_until(kind: str, state: str) -> None:
        end = time.monotonic() + 60
        buf = ""
        while not any(k == kind and d.get("state") == state for k, d in got):
            assert time.monotonic() < end, f"no {kind} {state} event: {got}"
            chunk = next(chunks)
            buf += chunk.decode() if isinstance(chunk, bytes) else chunk
            if buf.endswith("\n\n"):
                got.extend(events_of(buf))
                buf = ""
    read_until("test", "queued")

    def report(status: str, done: int, **more: Any) -> None:
        r = farm_app.client.post("/update-test-status/", headers=farm_app.worker(), json={
            "test_id": "l1", "status": status, "worker": "w1",
            "progress": {"done": done, "total": 3}, **more})
        assert r.status_code == 202, r.text
    report("running", 1, report_id="w1:1")
    read_until("report", "running")
    read_until("test", "running")
    report("passed", 3, report_id="w1:2")
    read_until("end", "passed")
    assert [d["state"] for k, d in got if k == "report"] == ["queued", "running", "passed"]
    response.close()


def test_live_streams_must_leave_threads_for_the_reports(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("threads: 8\n")
    with pytest.raises(ServerConfigError, match=r"live_streams: 56 leaves fewer than 2 of "
                                                r"the 8 threads") as err:
        load_server_config(path, environ={})
    assert err.value.field == "live_streams"
    path.write_text("threads: 8\nlive_streams: 6\n")
    assert load_server_config(path, environ={}).live_streams == 6


@pytest.mark.gearman
def test_the_refstack_upload_is_shown_with_its_link(farm_app: App) -> None:
    create(farm_app, "u1")
    finish(farm_app, "u1", [("a.T.test_ok", "success", "")], "passed")
    r = farm_app.client.post("/v1/tests/u1/uploads", headers=farm_app.user(), json={
        "target": "https://refstack.example.org/api", "state": "uploaded",
        "result_id": "abc-123", "result_url": "https://refstack.example.org/#/results/abc-123"})
    assert r.status_code == 201, r.text
    sign_in(farm_app)
    page = farm_app.client.get("/runs/u1").text
    assert "RefStack uploads" in page and "uploaded" in page
    assert '<a href="https://refstack.example.org/#/results/abc-123" rel="noreferrer">abc-123' \
        in page


@pytest.mark.gearman
def test_the_queue_page_shows_an_unreachable_gearmand(tmp_path: Path,
                                                      own_gearmand: Gearmand) -> None:
    dead = Server("127.0.0.1", free_port())
    cfg = ServerConfig(database_url=f"sqlite:///{tmp_path / 's.db'}",
                       gearman_servers=(Server("127.0.0.1", own_gearmand.port), dead),
                       callback_url="http://127.0.0.1:9/")
    store = Store(cfg.database_url)
    store.migrate()
    gearman = Gearman(cfg.gearman_servers)
    app = create_app(cfg, store=store, gearman=gearman)
    try:
        client = app.test_client()
        token = store.add_user("bob")
        assert client.post("/signin", data={"token": token}).status_code == 303
        page = client.get("/queue").text
        assert page.count('<span class="state passed">up</span>') == 1
        assert f"gearmand <span class=\"mono\">{dead}</span>" in page
        assert '<span class="state error">unreachable</span>' in page
    finally:
        gearman.close()
        store.engine.dispose()


@pytest.mark.parametrize("value", ["", "x", "-5", "0", "99999999999999999999999999", "1e9"])
def test_a_bad_last_event_id_starts_the_stream_anew(value: str) -> None:
    assert live.from_stamp(value) is None


@pytest.mark.gearman
def test_a_run_with_accounts_is_not_run_again_from_the_page(farm_app: App) -> None:
    """Its accounts (passwords) are not kept after the run: the page says how to run it."""
    create(farm_app, "acc1", accounts=[{"username": "u1", "password": "pw-acc-77",
                                        "project_name": "p1", "domain_name": "Default"}])
    finish(farm_app, "acc1", [("a.T.test_bad", "fail", "E")], "failed")
    token = sign_in(farm_app)
    page = farm_app.client.get("/runs/acc1").text
    assert "farm submit --accounts" in page and 'id="rerun"' not in page
    assert "pw-acc-77" not in page
    r = farm_app.client.post("/runs/acc1/rerun", data={"csrf": token, "failed": "1"})
    assert r.status_code == 409 and "pre-provisioned accounts" in r.text
    assert json_of(farm_app.client.get("/v1/tests", headers=farm_app.user()))["total"] == 1


def test_more_runs_than_the_count_cap_show_as_capped(farm_app: App) -> None:
    """Past COUNT_CAP matching runs the list says "10,000+" runs and pages, and the next
    page is offered; under it, the exact figures."""
    from sqlalchemy import insert

    from farm_server.models import TestRow
    from farm_server.store.engine import COUNT_CAP

    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [{"id": f"cap-{n:05d}", "state": "passed", "tempest_version": "47.0.0",
             "tests_json": "{}", "dry_run": True, "created_at": at, "updated_at": at}
            for n in range(COUNT_CAP + 1)]
    with farm_app.store.engine.begin() as conn:
        conn.execute(insert(TestRow), rows)
    sign_in(farm_app)
    page = farm_app.client.get("/").text
    assert "Runs <span class=\"muted\">(10,000+)</span>" in page
    assert re.search(r"page 1 of [\d,]+\+", page) and 'id="next"' in page
    none = farm_app.client.get("/?state=failed").text  # under the cap: the exact count
    assert "Runs <span class=\"muted\">(0)</span>" in none and "page 1 of 1<" in none
