"""Interop guidelines and test lists as `farm submit` reads them: the real guideline files
(tests/data/interop), the interop schema, RefStack's targets, and what is refused."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_client import guidelines as gl
from farm_lab.loopback import free_port
from farm_worker.protocol import MAX_TESTS, parse_payload, wanted_tests

INTEROP = Path(__file__).resolve().parents[1] / "data" / "interop"
G2020 = INTEROP / "guidelines" / "2020.06.json"
DNS = INTEROP / "add-ons" / "guidelines" / "dns.2020.06.json"
V3 = "tempest.api.identity.v3"


def load(path: Path) -> dict[str, Any]:
    return gl.parse_guideline(path.read_text(), str(path))


def test_platform_required_is_refstacks_list_with_names_first() -> None:
    doc = load(G2020)
    sel = gl.select(doc, "platform", ["required"], False, "2020.06.json")
    caps = {c["name"]: c for c in sel.guideline["capabilities"]}
    # the figures of the interop README: 2020.06 has 79 capabilities, 6 of identity v3
    assert len(doc["capabilities"]) == 79
    identity = sorted(c for c in caps if c.startswith("identity-v3-"))
    assert len(identity) == 6 and all(caps[c]["status"] == "required" for c in identity)
    # a flagged test is left out of the list (RefStack's flag=false) and kept as flagged
    flagged = caps["identity-v3-list-projects"]
    assert flagged["tests"] == [] and flagged["flagged"] == [
        f"{V3}.test_projects.IdentityV3ProjectsTest."
        "test_list_projects_returns_only_authorized_projects"]
    assert not any("test_list_projects_returns_only_authorized" in line for line in sel.lines)
    # each test's name comes before its aliases, all with its id: one wanted test each
    wanted = {w.name: w for w in wanted_tests(sel.lines)}
    discovery = wanted[f"{V3}.test_api_discovery.TestApiDiscovery.test_api_version_resources"]
    assert discovery.aliases == (f"{V3}.TestApiDiscovery.test_api_version_resources",)
    assert discovery.idempotent_id == "b9232f5e-d9e5-4d97-b96c-28d3db4de1bd"
    assert set(wanted) == {t for c in caps.values() for t in c["tests"]}
    # the payload takes it as it is
    payload = parse_payload({"schema": 1, "test_id": "g", "tempest": {"version": "47.0.0"},
                             "conf": {}, "tests": {"list": sel.lines},
                             "guideline": sel.guideline})
    assert payload.guideline is not None and payload.guideline["version"] == "2020.06"


def test_flagged_tests_when_asked_and_other_statuses() -> None:
    doc = load(G2020)
    sel = gl.select(doc, "platform", ["required"], True, "x")
    assert any("test_list_projects_returns_only_authorized" in line for line in sel.lines)
    with_advisory = gl.select(doc, "compute", ["required", "advisory"], False, "x")
    assert {c["status"] for c in with_advisory.guideline["capabilities"]} <= {"required",
                                                                              "advisory"}
    assert not any(c["name"].startswith("objectstore")
                   for c in with_advisory.guideline["capabilities"])


def test_an_add_on_by_its_target() -> None:
    sel = gl.select(load(DNS), "dns", ["required"], False, "dns")
    assert [c["name"] for c in sel.guideline["capabilities"]] and \
        all(line.startswith("designate_tempest_plugin.") for line in sel.lines)
    with pytest.raises(gl.GuidelineError, match=r"^--target: 'platform': dns has no "
                                                r"platform 'OpenStack Powered Platform' "
                                                r"\(an add-on guideline: use its target"):
        gl.select(load(DNS), "platform", ["required"], False, "dns")


@pytest.mark.parametrize(("target", "types", "message"), [
    ("cloud", ["required"], "--target: 'cloud' is not one of platform, compute, object, dns"),
    ("platform", ["must"], "--type: 'must' is not one of required, advisory, deprecated, "
                           "removed"),
    ("platform", [], "--type: names no status"),
    ("platform", ["removed"], "--guideline: x: no test for target 'platform' and type removed"),
])
def test_a_bad_target_or_type_is_named(target: str, types: list[str], message: str) -> None:
    with pytest.raises(gl.GuidelineError) as err:
        gl.select(load(G2020), target, types, False, "x")
    assert str(err.value).startswith(message)


def test_a_file_that_is_not_a_guideline(tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"schema": 1, "tempest": {"version": "47.0.0"}}))
    with pytest.raises(gl.GuidelineError, match=r"not an interop guideline of schema 2.0$"):
        gl.parse_guideline(payload.read_text(), str(payload))
    for odd in ('{"metadata": "2.0"}', '[1, 2]', '{"metadata": {"schema": "1.6"}}'):
        with pytest.raises(gl.GuidelineError, match=r"not an interop guideline of schema 2.0"):
            gl.parse_guideline(odd, "odd.json")
    broken = json.loads(G2020.read_text())
    del broken["capabilities"]
    with pytest.raises(gl.GuidelineError,
                       match=r"not a valid guideline: \(top level\): 'capabilities' is a "
                             r"required property"):
        gl.parse_guideline(json.dumps(broken), "broken.json")
    with pytest.raises(gl.GuidelineError, match=r"^--guideline-file: x: not JSON"):
        gl.parse_guideline("tempest.api.a.B.test_c\n", "x")


def test_a_test_list_file_is_checked_line_by_line(tmp_path: Path) -> None:
    good = f"# the identity tests\n\n{V3}.test_tokens.TokensV3Test.test_create_token[id-1]\n"
    assert gl.parse_test_list(good, "l") == [f"{V3}.test_tokens.TokensV3Test.test_create_token"
                                             "[id-1]"]
    with pytest.raises(gl.GuidelineError, match=r'^--test-list: l:4: "<html>" is not a test '
                                                r"name .*: not a test list$"):
        gl.parse_test_list(good + "<html>\n", "l")
    with pytest.raises(gl.GuidelineError, match=r"^--test-list: l: names no test$"):
        gl.parse_test_list("# nothing\n", "l")
    too_many = "".join(f"a.B.test_{i}\n" for i in range(MAX_TESTS + 1))
    with pytest.raises(gl.GuidelineError, match=rf"^--test-list: l: {MAX_TESTS + 1} tests; "
                                                rf"a list holds at most {MAX_TESTS}$"):
        gl.parse_test_list(too_many, "l")
    with pytest.raises(gl.GuidelineError, match=r"^--test-list: /nonexistent/list: cannot "
                                                r"read: "):
        gl.fetch("/nonexistent/list", "--test-list")


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving tmp_path."""
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,),
                   {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_list_or_guideline_by_url(tmp_path: Path, web: str) -> None:
    (tmp_path / "list.txt").write_text(f"{V3}.test_tokens.TokensV3Test.test_create_token\n")
    (tmp_path / "2020.06.json").write_text(G2020.read_text())
    assert gl.parse_test_list(gl.fetch(f"{web}/list.txt", "--test-list"), "u") == [
        f"{V3}.test_tokens.TokensV3Test.test_create_token"]
    assert gl.parse_guideline(gl.fetch(f"{web}/2020.06.json", "--guideline-file"), "u")
    with pytest.raises(gl.Answered, match=rf"^--test-list: {web}/missing.txt answered 404"):
        gl.fetch(f"{web}/missing.txt", "--test-list")
    closed = f"http://127.0.0.1:{free_port()}/list.txt"
    with pytest.raises(gl.GuidelineError, match=rf"^--test-list: {closed} does not answer "
                                                r"\(connection refused\)$"):
        gl.fetch(closed, "--test-list")
