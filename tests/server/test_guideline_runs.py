"""An official RefStack run on real parts: the real RefStack server serves the interop
guidelines (tests/data/interop, from 127.0.0.1); `farm submit --guideline 2020.06 --refstack
URL` takes its list from RefStack's API as refstack-client does; a worker runs it with
Tempest 47.0.0 against the real Keystone through `farm-server serve`. The compliance report
is checked against a count made here from the subunit stream and the guideline file alone,
against a direct `tempest run --load-list` of the same tests, and against what RefStack
stored of the upload. Tempest 40.0.0 shows what an older release matches by name, alias and
id."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from farm_client.subunit_results import parse
from farm_lab.gearmand import Gearmand
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from farm_worker.protocol import idempotent_id, split_test
from harness.direct import direct_run
from harness.farmcli import farm
from harness.guidelines import INTEROP
from harness.refstack import RefStack

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
GUIDELINE = json.loads((INTEROP / "guidelines" / "2020.06.json").read_text())
TEST_ID = "official-2020.06"
SERVICES = re.compile(r"nova|neutron|cinder|glance|swift|compute|network|volume|image|object",
                      re.IGNORECASE)


@pytest.fixture(scope="module")
def farm_server(tmp_path_factory: pytest.TempPathFactory, gearmand: Gearmand,
                worker_cache: Path, tempest47: PrepareResult) -> Iterator[FarmServer]:
    base = tmp_path_factory.mktemp("guideline-farm")
    server = FarmServer(base / "server", [gearmand.address])
    workers = WorkerFactory(base / "workers", gearmand, worker_cache)
    server.start()
    try:
        workers.start("gl-worker", callbacks=[{"url": server.url,
                                                "token": server.worker_token}])
        yield server
    finally:
        workers.stop_all()
        server.stop()


def cli(server: FarmServer, tmp: Path, *args: str, timeout_s: float = 300) -> Any:
    return farm(tmp, *args, env={"FARM_SERVER_URL": server.url,
                                 "FARM_TOKEN": server.user_token}, timeout_s=timeout_s)


def required_platform_tests() -> dict[str, dict[str, Any]]:
    """Capability -> its unflagged tests (name -> details), read from the file alone."""
    components = [c["name"] for c in
                  GUIDELINE["platforms"]["OpenStack Powered Platform"]["components"]]
    caps = {cap for comp in components
            for cap in GUIDELINE["components"][comp]["capabilities"]["required"]}
    return {cap: {n: t for n, t in GUIDELINE["capabilities"][cap]["tests"].items()
                  if not t.get("flagged")} for cap in caps}


def passed_in(stream: bytes) -> tuple[set[str], set[str]]:
    """The passed tests of a subunit stream: their names and their idempotent ids."""
    parsed = parse(stream)
    names, ids = set(), set()
    for o in parsed.tests:
        if o.passed and o.scope is None:
            base, attrs = split_test(o.test_id)
            names.add(base)
            ids.add(idempotent_id(attrs) or "")
    return names, ids


@pytest.fixture(scope="module")
def official(farm_server: FarmServer, refstack: RefStack, keystone: Keystone,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("official")
    conf = tmp / "conf.json"
    conf.write_text(json.dumps(keystone.tempest_conf()))
    done = cli(farm_server, tmp, "submit", "--tempest", "47.0.0", "--conf", str(conf),
               "--guideline", "2020.06", "--refstack", refstack.url, "--test-id", TEST_ID,
               "--wait", timeout_s=1800)
    view = farm_server.api("GET", f"/v1/tests/{TEST_ID}").json()["test"]
    return {"done": done, "view": view, "tmp": tmp}


def test_refstack_serves_the_guidelines_from_here(refstack: RefStack) -> None:
    listing = requests.get(f"{refstack.url}/v1/guidelines", timeout=60).json()
    assert {"2019.11.json", "2020.06.json", "next.json"} <= {g["name"]
                                                             for g in listing["powered"]}
    assert {g["name"] for g in listing["dns"]} == {"2020.06.json"}
    assert refstack.guidelines is not None
    assert refstack.guidelines.requests["/contents/guidelines"] >= 1


def test_the_official_run_reads_per_capability(official: dict[str, Any],
                                               refstack: RefStack) -> None:
    done, view = official["done"], official["view"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert view["state"] == "passed" and view["guideline"] == {
        "version": "2020.06", "target": "platform", "types": ["required"]}
    report = view["compliance"]
    caps = {c["name"]: c for c in report["capabilities"]}
    expected = required_platform_tests()
    assert set(caps) == set(expected)
    # the list came from RefStack's API, as refstack-client asks for it
    assert refstack.guidelines is not None
    assert refstack.guidelines.requests["/raw/guidelines/2020.06.json"] >= 1
    listed = requests.get(f"{refstack.url}/v1/guidelines/2020.06/tests", timeout=60, params={
        "target": "platform", "type": "required", "alias": "true", "flag": "false"}).text
    assert sorted(view["tests"]["list"]) == sorted(listed.splitlines())
    # identity passes in full; the services this cloud lacks are skipped by Tempest
    identity = [c for c in caps.values() if c["name"].startswith("identity-v3-")]
    assert len(identity) == 6 and all(c["complete"] for c in identity), identity
    reasons: set[str] = set()
    for cap in caps.values():
        if cap["name"].startswith("identity-v3-") or cap["total"] == 0:  # 0: all flagged
            continue
        results = {t["result"] for t in cap["tests"] if not t.get("flagged")}
        assert not cap["complete"] and results <= {"skipped", "not_found"}, cap
        # a flagged test is left out of the list (flag=false) and shown as such
        assert all(t["result"] == "not_run" for t in cap["tests"] if t.get("flagged")), cap
        skipped = [t for t in cap["tests"] if t["result"] == "skipped"]
        # why: Tempest's own reason, naming the service the conf says this cloud lacks
        assert all(SERVICES.search(t.get("reason", "")) for t in skipped), skipped[:3]
        reasons.update(t["reason"] for t in skipped)
    print(f"\n{report['summary']}; skipped because: {sorted(reasons)}")
    t = report["totals"]["required"]
    assert report["summary"].startswith(
        f"passes {t['tests_passed']} of {t['tests']} required tests (")
    assert f"{t['capabilities_complete']} of {len(caps)} required capabilities complete" in \
        report["summary"]
    assert "guideline 2020.06 platform (required)" in done.stdout
    assert report["summary"] in done.stdout
    assert ADMIN_PASSWORD not in done.stdout + done.stderr


def test_the_figures_equal_a_count_from_the_subunit_stream(official: dict[str, Any],
                                                           farm_server: FarmServer) -> None:
    report = official["view"]["compliance"]
    stream = farm_server.api("GET", f"/v1/tests/{TEST_ID}/results?format=subunit").content
    names, ids = passed_in(stream)
    for cap, tests in required_platform_tests().items():
        passed = sum(1 for name, t in tests.items()
                     if name in names or set(t.get("aliases", [])) & names
                     or t["idempotent_id"].removeprefix("id-") in ids)
        mine = next(c for c in report["capabilities"] if c["name"] == cap)
        assert (mine["passed"], mine["total"]) == (passed, len(tests)), cap


def test_a_direct_tempest_run_of_the_same_tests_counts_the_same(
        official: dict[str, Any], keystone: Keystone, tempest47: PrepareResult) -> None:
    view = official["view"]
    renamed = {r["listed"]: r["ran"] for r in view["selection"]["renamed"]}
    seen: set[str] = set()
    tests = []
    for line in view["tests"]["list"]:  # the worker's normalised list, rebuilt
        base, attrs = split_test(line)
        uid = idempotent_id(attrs)
        if base in view["selection"]["not_found"] or (uid or base) in seen:
            continue
        seen.add(uid or base)
        tests.append(renamed.get(base, base))
    c = direct_run(Path(tempest47.template), keystone.tempest_conf(), official["tmp"] / "direct",
                   load=tests).counts()
    s = view["summary"]
    assert (c.passed, c.failed, c.skipped) == (s["passed"], s["failed"], s["skipped"])


def test_refstack_stored_what_the_report_counts(official: dict[str, Any],
                                                farm_server: FarmServer,
                                                refstack: RefStack) -> None:
    done = cli(farm_server, official["tmp"], "results", TEST_ID, "--upload", refstack.url)
    assert done.returncode == 0, done.stderr
    rid = done.stdout.split(" as ")[1].split(",")[0]
    stored = {name for name, _ in refstack.stored(rid)["results"]}
    stream = farm_server.api("GET", f"/v1/tests/{TEST_ID}/results?format=subunit").content
    assert stored == passed_in(stream)[0]
    # RefStack's view: the guideline's tests (names and aliases) it has as passed
    report = official["view"]["compliance"]
    passed_by_refstack = sum(
        1 for tests in required_platform_tests().values() for name, t in tests.items()
        if {name, *t.get("aliases", [])} & stored)
    assert passed_by_refstack == report["totals"]["required"]["tests_passed"]


def test_an_older_tempest_matches_by_name_alias_and_id(
        refstack: RefStack, tmp_path: Path, tempest40: PrepareResult,
        worker_cache: Path) -> None:
    """Tempest 40.0.0 through `farm-worker execute` (no worker serves it here): a dry run
    of the same list reports how each guideline test was found."""
    from worker.test_execute_cli import execute

    payload = {"schema": 1, "test_id": "older", "tempest": {"version": "40.0.0"},
               "conf": {}, "dry_run": True, "tests": {"list": official_list(refstack)}}
    proc = execute(tmp_path, worker_cache, payload)
    assert proc.returncode == 0, proc.stderr
    sel = json.loads(proc.stdout)["selection"]
    assert sel["listed"] == len(required_tests_with_ids())
    assert sel["by_name"] + sel["by_alias"] + sel["by_id"] == sel["matched"]
    assert sel["matched"] + len(sel["not_found"]) == sel["listed"]
    print(f"\ntempest 40.0.0 and 2020.06 platform required: {sel['by_name']} by name, "
          f"{sel['by_alias']} by alias, {sel['by_id']} by id, {len(sel['not_found'])} not "
          f"found: {sel['not_found']}")


def official_list(refstack: RefStack) -> list[str]:
    return requests.get(f"{refstack.url}/v1/guidelines/2020.06/tests", timeout=60, params={
        "target": "platform", "type": "required", "alias": "true",
        "flag": "false"}).text.splitlines()


def required_tests_with_ids() -> set[str]:
    return {t["idempotent_id"] for tests in required_platform_tests().values()
            for t in tests.values()}


def test_status_results_html_and_list_show_the_guideline(
        official: dict[str, Any], farm_server: FarmServer, tmp_path: Path) -> None:
    summary = official["view"]["compliance"]["summary"]
    status = cli(farm_server, tmp_path, "status", TEST_ID).stdout
    assert "guideline: 2020.06 target platform (required)" in status
    assert summary in status and "identity-v3-catalog" in status
    table = cli(farm_server, tmp_path, "results", TEST_ID).stdout
    assert summary in table and "test list: of 273 listed: " in table
    doc = json.loads(cli(farm_server, tmp_path, "results", TEST_ID, "--format", "json").stdout)
    assert doc["test"]["compliance"]["summary"] == summary
    html = tmp_path / "report.html"
    assert cli(farm_server, tmp_path, "results", TEST_ID, "--format", "html", "-o",
               str(html)).returncode == 0
    page = html.read_text()
    assert "Guideline 2020.06 platform" in page and summary in page
    assert "Cinder is not available" in page  # why a capability is not complete
    listed = json.loads(cli(farm_server, tmp_path, "list", "--guideline", "2020.06",
                            "--target", "platform", "--json").stdout)
    assert [t["id"] for t in listed["tests"]] == [TEST_ID]
    brief = listed["tests"][0]  # a page shows the figures, not the per-test lists
    assert brief["compliance"]["summary"] == summary and "capabilities" not in \
        brief["compliance"] and "not_found" not in brief["selection"]
    other = json.loads(cli(farm_server, tmp_path, "list", "--guideline", "2019.11",
                           "--json").stdout)
    assert other["total"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--guideline", "2099.01", "--refstack", "{rs}"],
     "--guideline: '2099.01': RefStack at {rs} has no such guideline (GET "
     "{rs}/v1/guidelines/2099.01 answered 500); it has: 2019.11, 2020.06, dns.2020.06, next, "
     "orchestration.2020.06"),
    (["--guideline", "2020.06"], "--guideline: needs the RefStack API to read it from: "
                                 "--refstack URL, REFSTACK_URL in refstack.cfg"),
    (["--guideline", "2020.06", "--refstack", "{rs}", "--target", "cloud"],
     "--target: 'cloud' is not one of "),
    (["--guideline", "2020.06", "--refstack", "{rs}", "--type", "mandatory"],
     "--type: 'mandatory' is not one of "),
    (["--guideline-file", "{payload}"], "--guideline-file: {payload}: not an interop "
                                        "guideline of schema 2.0"),
    (["--test-list", "http://127.0.0.1:9/list.txt"], "--test-list: http://127.0.0.1:9/list.txt "
                                                     "does not answer (connection refused)"),
    (["--test-list", "{rs}/v1/guidelines"], "--test-list: {rs}/v1/guidelines:1: "),
    (["--test-list", "{big}"], "--test-list: {big}: 5001 tests; a list holds at most 5000"),
    (["--test-list", "{good}", "--regex", "x"], "--test-list/--guideline: cannot be combined "
                                                "with --regex"),
    (["--test-list", "{good}", "--target", "dns"], "--target: only with --guideline or "
                                                   "--guideline-file"),
    (["--guideline-file", "{payload}", "--refstack", "{rs}"], "--refstack: only with "
                                                              "--guideline"),
])
def test_bad_lists_and_guidelines_are_refused_before_anything_is_queued(
        farm_server: FarmServer, refstack: RefStack, tmp_path: Path, args: list[str],
        message: str) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"schema": 1, "tempest": {"version": "47.0.0"}}))
    big = tmp_path / "big.txt"
    big.write_text("".join(f"a.B.test_{i}\n" for i in range(5001)))
    good = tmp_path / "good.txt"
    good.write_text("tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token\n")
    names = {"rs": refstack.url, "payload": str(payload), "big": str(big), "good": str(good)}
    args = [a.format(**names) for a in args]
    done = cli(farm_server, tmp_path, "submit", "--tempest", "47.0.0", "--conf", str(payload),
               *args, "--test-id", "refused-list")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("farm submit: " + message.format(**names)), line
    assert farm_server.api("GET", "/v1/tests/refused-list").status_code == 404


def test_a_list_this_tempest_lacks_ends_error_before_tempest_runs(
        farm_server: FarmServer, tmp_path: Path) -> None:
    """Only the worker knows its Tempest's tests: the run is queued, and ends `error` at
    the listing, before Tempest runs anything; `--wait` exits 2."""
    gone = tmp_path / "gone.txt"
    gone.write_text("tempest.api.gone.Gone.test_gone[id-00000000-0000-4000-8000-000000000000]\n")
    conf = tmp_path / "conf.json"
    conf.write_text("{}")
    done = cli(farm_server, tmp_path, "submit", "--tempest", "47.0.0", "--test-list", str(gone),
               "--conf", str(conf), "--dry-run", "--test-id", "gone-list", "--wait")
    assert done.returncode == 2, done.stdout + done.stderr
    view = farm_server.api("GET", "/v1/tests/gone-list").json()["test"]
    assert view["state"] == "error" and view["message"] == (
        "tests.list: none of the 1 listed tests is in tempest 47.0.0 (by name, alias or id): "
        "tempest.api.gone.Gone.test_gone")
