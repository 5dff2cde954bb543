"""Interop guidelines and test lists for `farm submit`: read from a file, a URL or a
RefStack server's guideline API, checked, and turned into a payload's `tests.list` and its
`guideline` (the capabilities the compliance report is read by).

A guideline (schema 2.0, `guideline-schema-2.0.json` from openstack/interop) maps a target
to components, a component's capabilities by status (required, advisory, deprecated,
removed) to tests, each test to its idempotent id, its older names (aliases) and, when the
Interop WG flagged it, why. The test list is what RefStack's
`GET /v1/guidelines/<version>/tests?target=..&type=..&alias=true&flag=..` gives: a test a
line with its id, its aliases as extra lines with the same id; flagged tests only with
`include_flagged`. Here each test's name comes before its aliases, so the worker tries the
name first (RefStack sorts the lines).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from farm_client.exceptions import FarmClientError
from farm_worker.protocol import CAPABILITY_STATUSES as STATUSES
from farm_worker.protocol import MAX_TESTS, TEST_NAME_PATTERN, read_lines, show

# RefStack's targets (refstack.api.guidelines): a platform, or an add-on's component
PLATFORMS = {"platform": "OpenStack Powered Platform", "compute": "OpenStack Powered Compute",
             "object": "OpenStack Powered Storage"}
ADD_ONS = ("dns", "orchestration", "shared_file_system", "load_balancer", "key_manager")
TARGETS = (*PLATFORMS, *ADD_ONS)
FETCH_TIMEOUT_S = 30.0
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class GuidelineError(FarmClientError):
    """A guideline or a test list that cannot be used; `field` is the flag it came from."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Answered(GuidelineError):
    """The URL answered, with an HTTP status other than 200."""

    def __init__(self, message: str, field: str | None, status: int) -> None:
        super().__init__(message, field)
        self.status = status


@dataclass(frozen=True)
class Selected:
    """A guideline's tests for a target and statuses: the payload's `tests.list` and its
    `guideline` block."""

    lines: list[str]
    guideline: dict[str, Any]


def fetch(source: str, what: str) -> str:
    """The text of a file or an http(s) URL; errors name `what` (the flag) and the source."""
    if source.startswith(("http://", "https://")):
        import requests

        try:
            resp = requests.get(source, timeout=FETCH_TIMEOUT_S)
        except requests.RequestException as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else \
                exc.__class__.__name__
            raise GuidelineError(f"{what}: {source} does not answer ({reason})",
                                 what) from None
        if resp.status_code != 200:
            raise Answered(f"{what}: {source} answered {resp.status_code}"
                           + (f": {resp.text.strip()[:120]}" if resp.text.strip() else ""),
                           what, resp.status_code)
        if len(resp.content) > MAX_DOCUMENT_BYTES:
            raise GuidelineError(f"{what}: {source}: larger than {MAX_DOCUMENT_BYTES} bytes", what)
        return resp.text
    try:
        path = Path(source)
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise GuidelineError(f"{what}: {source}: larger than {MAX_DOCUMENT_BYTES} bytes",
                                 what)
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GuidelineError(f"{what}: {source}: cannot read: {exc}", what) from None


def parse_test_list(text: str, source: str, what: str = "--test-list") -> list[str]:
    """refstack-client's list format: a test a line, `#` comments; every line checked."""
    import re

    name = re.compile(TEST_NAME_PATTERN)
    lines = read_lines(text)
    if not lines:
        raise GuidelineError(f"{what}: {source}: names no test", what)
    if len(lines) > MAX_TESTS:
        raise GuidelineError(f"{what}: {source}: {len(lines)} tests; a list holds at most "
                             f"{MAX_TESTS}", what)
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not name.match(stripped):
            raise GuidelineError(f"{what}: {source}:{number}: {show(stripped)} is not a test "
                                 "name (module.Class.test_method, optionally with "
                                 "[attributes]): not a test list", what)
    return lines


def _schema() -> dict[str, Any]:
    text = resources.files("farm_client").joinpath("guideline-schema-2.0.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def parse_guideline(text: str, source: str, what: str = "--guideline-file") -> dict[str, Any]:
    """A guideline document, validated against the interop schema 2.0."""
    import jsonschema

    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise GuidelineError(f"{what}: {source}: not JSON ({exc}): not a guideline",
                             what) from None
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    found = metadata.get("schema") if isinstance(metadata, dict) else None
    if found != "2.0":
        raise GuidelineError(f"{what}: {source}: not an interop guideline of schema 2.0"
                             + (f" (metadata.schema is {show(found)})" if found else ""), what)
    error = jsonschema.exceptions.best_match(jsonschema.Draft6Validator(_schema()).iter_errors(doc))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise GuidelineError(f"{what}: {source}: not a valid guideline: {where}: "
                             f"{error.message[:200]}", what)
    guideline: dict[str, Any] = doc  # an object: it has metadata
    return guideline


def guideline_url(refstack: str, version: str) -> str:
    """RefStack's `GET /v1/guidelines/<version>` (the guideline's JSON)."""
    return f"{refstack.rstrip('/')}/v1/guidelines/{quote(version, safe='.')}"


def tests_url(refstack: str, version: str, target: str, types: list[str],
              include_flagged: bool) -> str:
    """RefStack's test list of a guideline, as refstack-client asks for it."""
    query = urlencode({"target": target, "type": ",".join(types), "alias": "true",
                       "flag": str(include_flagged).lower()})
    return f"{guideline_url(refstack, version)}/tests?{query}"


def _components(doc: dict[str, Any], target: str, source: str) -> list[str]:
    if target in ADD_ONS:
        name = f"os_powered_{target}"
        if name not in doc["components"]:
            raise GuidelineError(f"--target: {target!r}: {source} has no component {name!r} "
                                 f"(it has: {', '.join(sorted(doc['components']))})", "--target")
        return [name]
    platform = doc.get("platforms", {}).get(PLATFORMS[target])
    if platform is None:
        raise GuidelineError(f"--target: {target!r}: {source} has no platform "
                             f"{PLATFORMS[target]!r}"
                             + (" (an add-on guideline: use its target, e.g. --target dns)"
                                if "add-ons" in doc else ""), "--target")
    return [c["name"] for c in platform["components"]]


def check_choice(target: str, types: list[str]) -> None:
    if target not in TARGETS:
        raise GuidelineError(f"--target: {target!r} is not one of {', '.join(TARGETS)}",
                             "--target")
    if not types:
        raise GuidelineError(f"--type: names no status; use {', '.join(STATUSES)}", "--type")
    for kind in types:
        if kind not in STATUSES:
            raise GuidelineError(f"--type: {kind!r} is not one of {', '.join(STATUSES)}",
                                 "--type")


def select(doc: dict[str, Any], target: str, types: list[str], include_flagged: bool,
           source: str) -> Selected:
    """The tests of `doc` for `target` and the capability statuses `types`."""
    check_choice(target, types)
    status_of: dict[str, str] = {}
    for component in _components(doc, target, source):
        by_status = doc["components"][component].get("capabilities", {})
        for status in types:
            for cap in by_status.get(status, []):
                status_of.setdefault(cap, status)
    lines: list[str] = []
    capabilities = []
    for cap in sorted(status_of):
        detail = doc["capabilities"].get(cap)
        if detail is None:
            raise GuidelineError(f"--guideline: {source}: capability {cap!r} is listed by a "
                                 "component but not defined under capabilities", "--guideline")
        tests, flagged = [], []
        for name, test in sorted(detail["tests"].items()):
            if test.get("flagged"):
                flagged.append(name)
                if not include_flagged:
                    continue
            else:
                tests.append(name)
            uid = test.get("idempotent_id", "")
            lines.extend(f"{n}[{uid}]" if uid else n for n in [name, *test.get("aliases", [])])
        capabilities.append({"name": cap, "status": status_of[cap], "tests": tests,
                             "flagged": flagged})
    if not lines:
        raise GuidelineError(f"--guideline: {source}: no test for target {target!r} and type "
                             f"{','.join(types)}", "--type")
    version = str(doc["metadata"].get("id", ""))
    return Selected(lines, {"version": version, "target": target, "types": list(types),
                            "flagged": include_flagged, "source": source,
                            "capabilities": capabilities})


def names_first(lines: list[str], selected: Selected) -> list[str]:
    """RefStack's list (sorted) with each test's name before its aliases."""
    names = {n for cap in selected.guideline["capabilities"]
             for n in (*cap["tests"], *cap["flagged"])}
    return sorted(lines, key=lambda line: line.split("[", 1)[0] not in names)


def _known_versions(refstack: str) -> str:
    """The guideline versions RefStack lists (GET /v1/guidelines), for an error message."""
    try:
        listing = json.loads(fetch(f"{refstack.rstrip('/')}/v1/guidelines", "--guideline"))
        names = [str(g.get("file") or g["name"]).removesuffix(".json")
                 for group in listing.values() for g in group]
    except (GuidelineError, ValueError, AttributeError, KeyError, TypeError):
        return ""
    return f"; it has: {', '.join(sorted(names))}" if names else ""


def from_refstack(refstack: str, version: str, target: str, types: list[str],
                  include_flagged: bool) -> tuple[Selected, list[str]]:
    """A guideline from RefStack's API: its JSON (for the capabilities) and its test list,
    asked for exactly as refstack-client asks, names put before their aliases."""
    check_choice(target, types)
    url = guideline_url(refstack, version)
    try:
        text = fetch(url, "--guideline")
    except Answered as exc:
        raise GuidelineError(f"--guideline: {version!r}: RefStack at {refstack} has no such "
                             f"guideline (GET {url} answered {exc.status})"
                             + _known_versions(refstack), "--guideline") from None
    selected = select(parse_guideline(text, url, "--guideline"), target, types,
                      include_flagged, url)
    list_url = tests_url(refstack, version, target, types, include_flagged)
    text = fetch(list_url, "--guideline")
    if text.startswith(("Error getting JSON content", "Invalid target")):
        raise GuidelineError(f"--guideline: {list_url}: RefStack says: {text.strip()[:120]}",
                             "--guideline")
    lines = parse_test_list(text, list_url, "--guideline")
    ours = {line.split("[", 1)[0] for line in selected.lines}
    theirs = {line.split("[", 1)[0] for line in lines}
    if ours != theirs:
        diff = sorted(ours ^ theirs)
        raise GuidelineError(f"--guideline: {list_url}: RefStack's test list and its guideline "
                             f"{url} differ in {len(diff)} tests (e.g. {diff[0]})", "--guideline")
    return selected, names_first(lines, selected)
