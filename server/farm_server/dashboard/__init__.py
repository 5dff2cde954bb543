"""The dashboard: pages for people at `/`, signed in with a user token.

Runs (`/`), a run (`/runs/ID`), queue and workers (`/queue`), compare (`/compare`), a
test's history (`/history?name=`), sign-in and sign-out; live updates at `/events`; the
stylesheet and script at `/static/`. Pages are rendered from farm_client's templates (the
same ones as the HTML report). Every page needs a session (an HttpOnly, SameSite=Strict
cookie; Secure under TLS); every POST carries the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
import json
import logging
import re
from collections.abc import Callable
from functools import wraps
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, request, stream_with_context
from flask import redirect as _redirect

from farm_client.compare import DEFAULT_MIN_DELTA_S, DEFAULT_RATIO
from farm_client.gearman_client import GearmanError
from farm_client.reports import render, run_context
from farm_server.api import v1
from farm_server.dashboard import live
from farm_server.lifecycle import can_cancel
from farm_server.models import TestRow
from farm_server.queue import functions as queue_functions
from farm_server.schemas import CREATE_TEST, FieldError, checked
from farm_server.state import farm
from farm_server.store import RunsFilter, as_utc
from farm_server.store.pages import is_final
from farm_server.uploader import upload_view
from farm_worker.protocol import SUBUNIT_FAILED, TestState, version_of_function
from farm_worker.protocol.payload import TEST_ID_PATTERN
from farm_worker.redaction import REMOVED

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__)
COOKIE = "farm_session"
PAGE_SIZE = 50
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
STATES = [s.value for s in TestState]
F = TypeVar("F", bound=Callable[..., Any])


# ---- sessions ----------------------------------------------------------------------------
def signed_in(view: F) -> F:
    """A page for people: without a valid session, to sign-in (then back here)."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value = request.cookies.get(COOKIE)
        session = farm().store.session_for(value) if value else None
        if session is None:
            if request.path == "/events":
                return _plain(401, "sign in first")
            target = request.full_path if request.query_string else request.path
            return redirect("/signin?" + urlencode({"next": target}), 303)
        g.user, g.csrf = session.user, session.csrf
        if request.method == "POST":
            sent = request.form.get("csrf", "")
            if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                return _page("error.html", 403, problem="This form is out of date or did not "
                             "come from this dashboard (no valid CSRF token): reload the "
                             "page and try again.")
        return view(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def _safe_next(target: str | None) -> str:
    """Only a path on this server (never //host or a scheme): no open redirect."""
    if target and target.startswith("/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return "/"


@bp.get("/signin")
def signin_form() -> Response:
    return _page("signin.html", 200, next=_safe_next(request.args.get("next")))


@bp.post("/signin")
def signin() -> Response:
    """A user token signs in (a worker's does not); the session's cookie is HttpOnly and
    SameSite=Strict, and Secure under TLS."""
    token = request.form.get("token", "").strip()
    target = _safe_next(request.form.get("next"))
    user = farm().store.user_for(token) if token else None
    if user is None:
        worker = farm().store.worker_for(token) if token else None
        problem = ("That is a worker's token: workers report, people sign in with a user "
                   "token (farm-server add-user NAME)." if worker is not None else
                   "That token is not a user token of this server (farm-server add-user "
                   "NAME makes one).")
        log.info("dashboard: a sign-in was refused (%s)", "worker token" if worker else
                 "unknown token")
        return _page("signin.html", 401, next=target, problem=problem)
    ttl = farm().config.session_ttl_s
    value, _csrf = farm().store.create_session(user.name, ttl)
    response = redirect(target, 303)
    response.set_cookie(COOKIE, value, max_age=ttl, httponly=True, samesite="Strict",
                        secure=request.is_secure or farm().config.cookie_secure, path="/")
    log.info("dashboard: %s signed in", user.name)
    return response


@bp.post("/signout")
@signed_in
def signout() -> Response:
    value = request.cookies.get(COOKIE, "")
    farm().store.end_session(value)
    response = redirect("/signin", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict",
                           secure=request.is_secure or farm().config.cookie_secure)
    return response


# ---- the pages ---------------------------------------------------------------------------
@bp.get("/")
@signed_in
def runs_page() -> Response:
    args = request.args
    states = [s for s in args.getlist("state") if s in STATES]
    f = RunsFilter(states=states, version=args.get("version") or None,
                   cpid=args.get("cpid") or None, guideline=args.get("guideline") or None,
                   text=(args.get("q") or "").strip()[:200] or None)
    page = _int(args.get("page"), 1)
    rows, total, capped = farm().store.runs(f, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    filtered = bool(states or f.version or f.cpid or f.guideline or f.text)
    query = {k: v for k, v in args.to_dict(flat=False).items() if k != "page"}
    pages = max(1, -(-total // PAGE_SIZE))
    more = page < pages or (capped and len(rows) == PAGE_SIZE)
    return _page("runs.html", 200, nav="runs", runs=[live_view(t) for t in rows],
                 total=f"{total:,}+" if capped else total, page=page,
                 pages=f"{pages:,}+" if capped else pages, f=f, states=STATES,
                 facets=farm().store.facets(), prepend=page == 1 and not filtered,
                 since=_now_stamp(),
                 prev_url=_with(query, page=page - 1) if page > 1 else None,
                 next_url=_with(query, page=page + 1) if more else None)


@bp.get("/runs/<test_id>")
@signed_in
def run_page(test_id: str) -> Response:
    store = farm().store
    test = store.get(test_id)
    if test is None:
        return _page("error.html", 404, problem=f"No run {test_id!r} here.")
    view = v1.test_view(test)
    rows = store.result_rows(test_id)
    history = [v1.report_view(r) for r in store.state_reports(test_id)]
    uploads = [upload_view(u) for u in store.uploads(test_id)]
    context = run_context(view, rows, history, uploads)
    rerun = _rerun_doc(test)
    context.update(
        live=True, since=live.stamp(test.updated_at), eta_s=store.eta_s(test),
        origin=test.origin_id, reruns=[r.id for r in store.reruns(test_id)],
        previous=store.previous_run(test) if rows else None,
        can_cancel=can_cancel(TestState(test.state)), final=is_final(test.state),
        rerun_secrets=_secret_fields(rerun), rerun_problem=_rerun_problem(rerun),
        failed_names=sum(bad for _cls, _items, bad in context["table"]))
    return _page("run.html", 200, nav="runs", **context)


@bp.get("/queue")
@signed_in
def queue_page() -> Response:
    state = farm()
    servers = []
    active = state.store.active()
    running = {t.worker: t.id for t in active if t.worker and t.state != "queued"}
    for server in state.gearman.servers:
        try:
            found = queue_functions(state.gearman, state.store, server)
            workers = _workers(state.gearman.workers(server), running)
            servers.append({"server": str(server), "reachable": True, "workers": workers,
                            "functions": [dict(f, version=version_of_function(f["name"]))
                                          for f in found.functions
                                          if version_of_function(f["name"])],
                            "withdrawn": found.withdrawn})
        except GearmanError as exc:
            servers.append({"server": str(server), "reachable": False, "error": str(exc)})
    hosts = [{"name": w.name, "last_seen": v1.iso(w.last_seen_at)}
             for w in state.store.workers()]
    return _page("queue.html", 200, nav="queue", servers=servers, hosts=hosts,
                 queued=sum(t.state == "queued" for t in active), active=len(active))


def _workers(connections: list[dict[str, Any]], running: dict[str, str]
             ) -> list[dict[str, Any]]:
    """gearmand's worker connections as people count workers: a worker's control
    connection (`ID.control`: ping, cancel) is folded into the worker."""
    by_id: dict[str, dict[str, Any]] = {}
    for w in connections:
        worker_id = w["client_id"].removesuffix(".control")
        found = by_id.setdefault(worker_id, {"client_id": worker_id, "address": w["address"],
                                             "versions": set(), "run": running.get(worker_id)})
        found["versions"] |= {v for v in map(version_of_function, w["functions"]) if v}
    return [{**w, "versions": sorted(w["versions"])} for w in by_id.values()]


@bp.get("/compare")
@signed_in
def compare_page() -> Response:
    a, b = (request.args.get("a") or "").strip(), (request.args.get("b") or "").strip()
    if not a:
        return _page("compare.html", 200, nav="compare", cmp=None, a=a, b=b)
    problem = None
    found: Any = None
    try:
        ratio = float(request.args.get("ratio") or DEFAULT_RATIO)
        delta = float(request.args.get("min_delta_s") or DEFAULT_MIN_DELTA_S)
        if not (1 <= ratio <= 1000 and 0 <= delta <= 86400):
            raise ValueError
    except ValueError:
        problem = "ratio: a number from 1 to 1000; seconds: from 0 to 86400"
    else:
        for name, value in (("run A", a), ("run B", b)):
            if value and not re.fullmatch(TEST_ID_PATTERN, value):
                problem = f"{name}: {value!r} is not a test id"
        if problem is None:
            found = v1.comparison(a, b or None, ratio, delta)
            if isinstance(found, str):
                problem, found = found, None
    return _page("compare.html", 404 if problem and found is None and a else 200,
                 nav="compare", cmp=found.to_dict() if found else None, a=a, b=b,
                 problem=problem)


@bp.get("/history")
@signed_in
def history_page() -> Response:
    name = (request.args.get("name") or "").strip()
    cpid, version = request.args.get("cpid") or None, request.args.get("version") or None
    points = farm().store.test_history(name, cpid, version) if name else []
    groups: dict[tuple[str, str], list[Any]] = {}
    for p in points:
        groups.setdefault((p.cpid or "-", p.tempest_version), []).append(p)
    summaries = [history_summary(key, items) for key, items in sorted(groups.items())]
    return _page("history.html", 200, nav="runs", name=name, cpid=cpid, version=version,
                 summaries=summaries, runs=len(points))


def history_summary(key: tuple[str, str], points: list[Any]) -> dict[str, Any]:
    """One cloud and Tempest version: outcomes newest first, failing since, flaky rate
    (the share of consecutive runs whose outcome flipped between passed and failed)."""
    from farm_client.compare import outcome

    outcomes = [outcome(p.status) for p in points]
    decided = [o for o in outcomes if o in ("passed", "failed")]
    flips = sum(1 for x, y in itertools.pairwise(decided) if x != y)
    failing_since = None
    for p, o in zip(points, outcomes, strict=True):
        if o != "failed":
            break
        failing_since = p
    return {"cpid": key[0], "version": key[1], "points": [
                {"test_id": p.test_id, "at": p.created_at.isoformat(timespec="seconds"),
                 "o": o, "duration_s": p.duration_s} for p, o in zip(points, outcomes,
                                                                       strict=True)],
            "runs": len(points), "passed": outcomes.count("passed"),
            "failed": outcomes.count("failed"), "skipped": outcomes.count("skipped"),
            "flaky": flips / (len(decided) - 1) if len(decided) > 1 else 0.0,
            "failing_since": failing_since.test_id if failing_since else None}


# ---- actions -----------------------------------------------------------------------------
@bp.get("/runs/<test_id>/results.<fmt>")
@signed_in
def download(test_id: str, fmt: str) -> Response:
    """The run's results for a person signed in: subunit, junit, json or html."""
    if fmt not in ("subunit", "junit", "json", "html"):
        return _page("error.html", 404, problem=f"No results as {fmt!r}: subunit, junit, "
                     "json or html.")
    response, code = v1.results_response(test_id, fmt)
    if code != 200:
        return _page("error.html", code, problem=response.get_json()["error"])
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{test_id}.{ {"junit": "xml"}.get(fmt, fmt) }"')
    return response


@bp.post("/runs/<test_id>/cancel")
@signed_in
def cancel_run(test_id: str) -> Response:
    response, code = v1.cancel(test_id, g.user)
    if code >= 400:
        return _page("error.html", code, problem=response.get_json()["error"])
    return redirect(f"/runs/{test_id}", 303)


@bp.post("/runs/<test_id>/rerun")
@signed_in
def rerun(test_id: str) -> Response:
    """Run again (all its tests, or with `failed=1` exactly the tests that failed), as a
    new test whose origin is this one; the secrets the run's conf had are asked again."""
    store = farm().store
    test = store.get(test_id)
    if test is None:
        return _page("error.html", 404, problem=f"No run {test_id!r} here.")
    doc = _rerun_doc(test)
    problem = _rerun_problem(doc)
    if problem or doc is None:
        return _page("error.html", 409, problem=problem)
    doc.pop("had_accounts", None)
    for section, key in _secret_fields(doc):
        value = request.form.get(f"secret:{section}:{key}", "")
        if not value:
            return _page("error.html", 400, problem=f"conf: {section}.{key}: the run's "
                         "secret is not kept after a run: give it again to run again")
        doc["conf"][section][key] = value
    if request.form.get("failed") == "1":
        failed = [r["name"] for r in store.result_rows(test_id)
                  if r["status"] in SUBUNIT_FAILED]
        names = [n for n in failed if not n.split("[", 1)[0].endswith(")")]
        if not names:
            return _page("error.html", 409, problem=f"{test_id} has no failed test to run "
                         "again (a class fixture's failure reruns with its class: use run "
                         "again)")
        doc["tests"] = {"list": [n.split("[", 1)[0] for n in names]}
        doc.pop("guideline", None)
    if request.form.get("queue_anyway") == "1":
        doc["queue_anyway"] = True
    try:
        checked_doc = checked(CREATE_TEST, doc)
    except FieldError as exc:
        return _page("error.html", 400, problem="; ".join(exc.answer().get("errors", [])))
    response, code = v1.create(checked_doc, g.user, origin_id=test_id)
    if code != 201:
        return _page("error.html", code, problem=response.get_json()["error"])
    return redirect(f"/runs/{response.get_json()['test']['id']}", 303)


def _rerun_doc(test: TestRow) -> dict[str, Any] | None:
    return json.loads(test.rerun_json) if test.rerun_json else None


def _secret_fields(doc: dict[str, Any] | None) -> list[tuple[str, str]]:
    conf = (doc or {}).get("conf") or {}
    return [(section, key) for section, values in conf.items()
            for key, value in values.items() if value == REMOVED]


def _rerun_problem(doc: dict[str, Any] | None) -> str | None:
    """Why a run cannot be run again from the page, or None."""
    if doc is None:
        return "This run was made before the dashboard kept what it takes to run it again."
    if doc.get("had_accounts"):
        return ("This run used pre-provisioned accounts, which are not kept after a run: "
                "submit it again with `farm submit --accounts FILE`.")
    return None


# ---- live --------------------------------------------------------------------------------
def hub() -> live.Hub:
    app = current_app
    found: live.Hub | None = app.extensions.get("farm-live")
    if found is None:
        cfg = farm().config
        found = live.Hub(farm().store, live_view, cfg.live_interval_s, cfg.live_streams)
        app.extensions["farm-live"] = found
    return found


@bp.get("/events")
@signed_in
def events() -> Response:
    """Server-Sent Events for the runs page, or with `test=ID` for a run's page."""
    since = live.from_stamp(request.headers.get("Last-Event-ID") or request.args.get("since"))
    test_id = request.args.get("test")
    h = hub()
    if not h.enter():
        response = _plain(503, "too many live pages on this process: retrying")
        response.headers["Retry-After"] = "2"
        return response
    store = farm().store
    stream = (live.run_stream(h, store, test_id, since, end_view) if test_id
              else live.runs_stream(h, store, since))
    response = Response(stream_with_context(stream), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
    return response


def live_view(t: TestRow) -> dict[str, Any]:
    """What a live page shows of a run (the runs page's row, the run page's header)."""
    c = v1.counts_of(t)
    return {"id": t.id, "state": t.state, "message": t.message, "worker": t.worker,
            "tempest_version": t.tempest_version, "cpid": t.cpid, "dry_run": t.dry_run,
            "guideline": None if t.guideline is None else {
                "version": t.guideline, "target": t.guideline_target},
            "progress": {"done": c.done, "total": c.total, "current": t.progress_current},
            "summary": c.to_dict(), "created_at": v1.iso(t.created_at),
            "started_at": v1.iso(t.started_at), "finished_at": v1.iso(t.finished_at),
            "duration_s": _duration(t)}


def end_view(t: TestRow) -> dict[str, Any]:
    return {**live_view(t), "has_results": bool(farm().store.result_rows(t.id))
            if t.state in ("passed", "failed") else False}


# ---- the stylesheet and the script -------------------------------------------------------
@bp.get("/static/<name>")
def static(name: str) -> Response:
    kinds = {"farm.css": "text/css", "farm.js": "text/javascript"}
    if name not in kinds:
        return _plain(404, "not found")
    text = (resources.files("farm_client") / "templates" / name).read_text(encoding="utf-8")
    response = Response(text, mimetype=kinds[name])
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# ---- helpers -----------------------------------------------------------------------------
def _page(template: str, code: int, **context: Any) -> Response:
    context.setdefault("user", g.get("user"))
    context.setdefault("csrf", g.get("csrf"))
    response = Response(render(template, **context), status=code, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str, code: int) -> Response:
    response: Response = _redirect(location, code)  # type: ignore[assignment]
    return response


def _plain(code: int, text: str) -> Response:
    return Response(text + "\n", status=code, mimetype="text/plain")


def _int(text: str | None, default: int) -> int:
    try:
        return max(1, min(int(text or default), 10**6))
    except ValueError:
        return default


def _with(query: dict[str, Any], **more: Any) -> str:
    return "/?" + urlencode({**query, **more}, doseq=True)


def _duration(t: TestRow) -> float | None:
    start, end = as_utc(t.started_at), as_utc(t.finished_at)
    return (end - start).total_seconds() if start and end else None


def _now_stamp() -> int:
    return live.stamp(dt.datetime.now(dt.UTC))
