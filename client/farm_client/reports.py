"""The HTML of refstack-farm: one set of Jinja templates (farm_client/templates) renders
the self-contained report (`farm results --format html`, `GET /v1/tests/ID/results?
format=html`), `farm compare --format html`, and the status server's dashboard pages.

A report is one file: its stylesheet and script are inlined and it loads nothing, so it
works opened from disk. Every value is escaped (autoescape); the script puts what it
receives into the page as text only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from farm_client.compare import outcome
from farm_client.failures import class_line, failure_groups, last_line
from farm_worker.protocol import SUBUNIT_FAILED, Counts, describe_selection

# what a browser may do with a report served by the status server: its own inline style
# and script, nothing loaded from anywhere
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
              "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _when(iso: str | None) -> str:
    """An API timestamp as the pages show it: 2026-12-07 10:31:02 UTC."""
    if not iso:
        return "-"
    return str(iso).replace("T", " ").replace("+00:00", " UTC")


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("farm_client", "templates"),
                      autoescape=select_autoescape(["html"], default_for_string=True),
                      trim_blocks=False)
    env.filters["when"] = _when
    return env


ENV = _environment()


def render(template: str, **context: Any) -> str:
    context.setdefault("base", "/")
    context.setdefault("standalone", False)
    return ENV.get_template(template).render(**context)


def class_of(name: str) -> str:
    """A Tempest test's class: `tempest.api.identity.v3.test_x.TestX.test_y[id-..]` ->
    `tempest.api.identity.v3.test_x.TestX`; a fixture (`setUpClass (tempest...TestX)`) ->
    its class."""
    name = name.split("[", 1)[0]
    if name.endswith(")") and "(" in name:  # setUpClass (module.Class)
        return name[name.index("(") + 1:-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def test_table(rows: Sequence[Mapping[str, Any]]
               ) -> list[tuple[str, list[dict[str, Any]], int]]:
    """Every test by class (sorted): its outcome, duration, the first line of its failure,
    its name quoted for a link; with each class, how many of its tests failed."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: str(r["name"])):
        detail = str(r.get("detail") or "").strip()
        o = outcome(str(r["status"]))
        duration = r.get("duration_s")
        item = {"name": r["name"], "o": o, "q": quote(str(r["name"]), safe=""),
                "s": "" if duration is None else f"{duration:.2f}", "detail": detail,
                "error": last_line(detail) if detail and o != "skipped" else ""}
        by_class.setdefault(class_of(str(r["name"])), []).append(item)
    return [(cls, items, sum(i["o"] == "failed" for i in items))
            for cls, items in sorted(by_class.items())]


def selection_text(tests: Mapping[str, Any] | None) -> str:
    """What a run was asked to run, in one line."""
    if not tests:
        return "-"
    if tests.get("list"):
        names = list(tests["list"])
        return f"a list of {len(names)}: " + ", ".join(names[:3]) + (
            ", ..." if len(names) > 3 else "")
    text = f"regex {tests.get('regex') or '(all)'}"
    if tests.get("include"):
        text += "; include " + ", ".join(tests["include"])
    if tests.get("exclude"):
        text += "; exclude " + ", ".join(tests["exclude"])
    return text


def run_context(test: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                history: Sequence[Mapping[str, Any]] | None = None,
                uploads: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """What `_run.html` shows of a run: `test` is the API's test view, `rows` its results,
    `history` its status reports, `uploads` its RefStack uploads."""
    counts = Counts.lenient(test.get("summary"))
    selection = test.get("selection")
    timed = [r["duration_s"] for r in rows if r.get("duration_s") is not None]
    return {
        "test": test, "rows": rows, "c": counts, "classes": class_line(counts),
        "groups": failure_groups(rows), "table": test_table(rows),
        "failed": sum(r["status"] in SUBUNIT_FAILED for r in rows),
        "total_s": sum(timed), "selection": selection, "compliance": test.get("compliance"),
        "selection_line": describe_selection(selection) if selection else "",
        "selection_text": selection_text(test.get("tests")),
        "history": history or [], "uploads": uploads or test.get("uploads") or [],
        "eta_s": None,
    }


def html_report(test: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                history: Sequence[Mapping[str, Any]] | None = None,
                uploads: Sequence[Mapping[str, Any]] | None = None) -> str:
    """One self-contained page: the run, its counts, its guideline compliance, failures
    (identical tracebacks grouped, folded), every test with its outcome, duration and skip
    reason (filter, search, group by class), and its status history."""
    return render("report.html", standalone=True, now=_now(),
                  **run_context(test, rows, history, uploads))


def compare_html(doc: Mapping[str, Any]) -> str:
    """`farm compare --format html`: the comparison as one self-contained page."""
    return render("compare.html", standalone=True, now=_now(), cmp=doc)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
