"""The compliance report of a guideline run, read per capability as RefStack reads it.

A capability's tests are its guideline tests, each run as one Tempest test (matching); a
test counts as passed when that Tempest test passed. Flagged tests (the Interop WG's
"may be skipped" list) are not required: they run only when the run asked for them, are
reported as flagged, and are counted in neither `passed` nor `total`. A capability is
complete when every one of its unflagged tests passed; the run "passes N of M required
tests (P%); K of L required capabilities complete".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from farm_worker.matching import Matched
from farm_worker.protocol import SUBUNIT_SKIPPED, split_test
from farm_worker.results import TestOutcome, in_scope

REASON_CHARS = 200


def _result(outcome: TestOutcome | None) -> str:
    if outcome is None:
        return "not_run"
    if outcome.passed:
        return "passed"
    if outcome.failed:
        return "failed"
    return "skipped" if outcome.status in SUBUNIT_SKIPPED else "not_run"


def _reason(outcome: TestOutcome | None) -> str:
    """A skip's reason (or a failure's last line), short."""
    if outcome is None or not outcome.detail.strip():
        return ""
    lines = [line.strip() for line in outcome.detail.strip().splitlines() if line.strip()]
    return lines[-1][:REASON_CHARS] if lines else ""


def _outcomes(tests: Iterable[TestOutcome]) -> tuple[dict[str, TestOutcome], list[TestOutcome]]:
    """Outcomes by base name, and the class or module fixtures that did not pass."""
    by_name: dict[str, TestOutcome] = {}
    fixtures: list[TestOutcome] = []
    for o in tests:
        if o.scope is not None:
            if not o.passed:
                fixtures.append(o)
        else:
            by_name[split_test(o.test_id)[0]] = o
    return by_name, fixtures


def report(guideline: Mapping[str, Any], matched: Matched,
           tests: Iterable[TestOutcome]) -> dict[str, Any]:
    """The compliance of a run: per capability and in total, per capability status."""
    ran: dict[str, str] = {}  # a listed name or alias -> the Tempest test (base) it ran as
    for m in matched.matches:
        for name in (m.wanted.name, *m.wanted.aliases):
            ran.setdefault(name, split_test(m.test)[0])
    by_name, fixtures = _outcomes(tests)
    listed = {n for w in (*(m.wanted for m in matched.matches), *matched.not_found)
              for n in (w.name, *w.aliases)}

    def one(name: str) -> dict[str, Any]:
        base = split_test(name)[0]
        tempest = ran.get(base)
        entry: dict[str, Any] = {"name": base}
        if tempest is None:  # listed: this Tempest lacks it; else a flagged test left out
            entry["result"] = "not_found" if base in listed else "not_run"
            return entry
        if tempest != base:
            entry["ran"] = tempest
        outcome = by_name.get(tempest)
        if outcome is None:  # its class's fixture failed or skipped: that is its outcome
            outcome = next((f for f in fixtures if f.scope and in_scope(tempest, f.scope)),
                           None)
        entry["result"] = _result(outcome)
        if entry["result"] in ("skipped", "failed") and _reason(outcome):
            entry["reason"] = _reason(outcome)
        return entry

    capabilities = []
    totals: dict[str, dict[str, int]] = {}
    for cap in guideline["capabilities"]:
        tests_of = [one(n) for n in cap["tests"]]
        flagged = [{**one(n), "flagged": True} for n in cap.get("flagged", [])]
        passed = sum(t["result"] == "passed" for t in tests_of)
        complete = passed == len(tests_of)
        capabilities.append({"name": cap["name"], "status": cap["status"], "passed": passed,
                             "total": len(tests_of), "complete": complete,
                             "tests": tests_of + flagged})
        t = totals.setdefault(cap["status"], {"tests_passed": 0, "tests": 0,
                                              "capabilities_complete": 0, "capabilities": 0})
        t["tests_passed"] += passed
        t["tests"] += len(tests_of)
        t["capabilities_complete"] += complete
        t["capabilities"] += 1
    return {"version": guideline["version"], "target": guideline["target"],
            "types": list(guideline["types"]), "flagged": bool(guideline.get("flagged")),
            "capabilities": capabilities, "totals": totals, "summary": describe(totals)}


def describe(totals: Mapping[str, Mapping[str, int]]) -> str:
    """`passes 6 of 7 required tests (85.7%); 5 of 6 required capabilities complete`, one
    clause per status the run has."""
    parts = []
    for status, t in totals.items():
        share = 100.0 * t["tests_passed"] / t["tests"] if t["tests"] else 0.0
        parts.append(f"passes {t['tests_passed']} of {t['tests']} {status} tests "
                     f"({share:.1f}%); {t['capabilities_complete']} of {t['capabilities']} "
                     f"{status} capabilities complete")
    return "; ".join(parts)
