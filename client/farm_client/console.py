"""What `farm` shows people: live progress (rich on a terminal, plain lines otherwise) and
result tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from farm_client.failures import class_line, failure_groups
from farm_client.farm import Snapshot
from farm_worker.protocol import Counts


def _counts(c: Counts) -> str:
    return f"passed {c.passed} failed {c.failed} skipped {c.skipped}"


class PlainDisplay:
    """One line per state change, and a progress line at most every `every_s` seconds."""

    def __init__(self, out: TextIO | None = None, every_s: float = 5.0) -> None:
        self.out = out or sys.stdout
        self.every_s = every_s
        self._last: Snapshot | None = None
        self._last_line = 0.0

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} {text}", file=self.out, flush=True)
        self._last_line = time.monotonic()

    def update(self, snap: Snapshot) -> None:
        last, self._last = self._last, snap
        if last is None or last.state != snap.state:
            where = f" on {snap.worker}" if snap.worker else (
                f" at gearmand {snap.where}" if snap.where else "")
            message = f": {snap.message}" if snap.message else ""
            self._line(f"{snap.test_id} {snap.state}{where}{message}")
            return
        c = snap.counts
        if c != last.counts and time.monotonic() - self._last_line >= self.every_s:
            self._line(f"{snap.test_id} {snap.state} {c.done}/{c.total or '?'} {_counts(c)}")

    def close(self, snap: Snapshot | None) -> None:
        """The final state had its line; the counts follow in the result table."""


class LiveDisplay:
    """A rich progress bar: tests done/total, counts so far, current test, elapsed, ETA."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.fields[state]:<10}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("[green]✓ {task.fields[passed]}[/] [red]✗ {task.fields[failed]}[/] "
                       "[yellow]↷ {task.fields[skipped]}[/]"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[current]}"),
            console=self.console, transient=False, refresh_per_second=4)
        self.task: TaskID | None = None
        self._state: str | None = None

    def update(self, snap: Snapshot) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(snap.test_id, total=None, state=snap.state,
                                               passed=0, failed=0, skipped=0, current="")
        if snap.state != self._state:
            where = f" on {snap.worker}" if snap.worker else ""
            message = f": {snap.message}" if snap.message else ""
            self.progress.console.print(f"[bold]{escape(snap.test_id)}[/] {snap.state}"
                                        f"{escape(where + message)}")
            self._state = snap.state
        current = (snap.current or "").rsplit(".", 2)
        c = snap.counts
        self.progress.update(self.task, total=c.total or None, completed=c.done,
                             state=snap.state, passed=c.passed, failed=c.failed,
                             skipped=c.skipped,
                             current=escape(".".join(current[-2:]))[:60])

    def close(self, snap: Snapshot | None) -> None:
        if self.task is not None:
            self.progress.stop()


class QuietDisplay:
    """-q: no progress; the result follows."""

    def update(self, snap: Snapshot) -> None:
        pass

    def close(self, snap: Snapshot | None) -> None:
        pass


def display_for(out: TextIO | None = None, *,
                quiet: bool = False) -> PlainDisplay | LiveDisplay | QuietDisplay:
    if quiet:
        return QuietDisplay()
    stream = out or sys.stdout
    return LiveDisplay(Console(file=stream)) if stream.isatty() else PlainDisplay(stream)


def make_console(file: TextIO | None = None) -> Console:
    """A terminal gets its own width; a pipe or file gets lines long enough for test ids."""
    stream = file or sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200)


# ---- results ----------------------------------------------------------------------------------
def result_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-test rows: every test (the API's results), or without a server only the
    failures (a job's summary carries just those)."""
    if "results" in doc:
        return list(doc["results"])
    return [{"name": f["test"], "status": "fail", "duration_s": None, "detail": f["detail"]}
            for f in (doc.get("summary") or {}).get("failures", [])]


def outcome_of(*docs: dict[str, Any] | None) -> dict[str, Any]:
    """A run's `selection` and `compliance` from the first of `docs` (the server's test
    view, a job's summary) that has them."""
    out: dict[str, Any] = {}
    for doc in docs:
        for key in ("selection", "compliance"):
            if doc and doc.get(key) and key not in out:
                out[key] = doc[key]
    return out


def print_outcome(console: Console, outcome: dict[str, Any]) -> None:
    """What a test list matched, and a guideline run's compliance by capability."""
    from farm_worker.protocol import describe_selection

    selection = outcome.get("selection")
    if selection:
        console.print(f"test list: {escape(describe_selection(selection))}", highlight=False)
        for r in selection.get("renamed", []):
            console.print(f"  ran {escape(r['ran'])} for {escape(r['listed'])} (by {r['by']})",
                          highlight=False)
        for name in selection.get("not_found", []):
            console.print(f"  [yellow]NOT FOUND[/] {escape(name)}", highlight=False)
    report = outcome.get("compliance")
    if not report:
        return
    table = Table(title=f"guideline {escape(report['version'])} {escape(report['target'])} "
                        f"({', '.join(report['types'])})", title_justify="left")
    for column in ("capability", "status", "passed", "complete", "why not"):
        table.add_column(column, justify="right" if column == "passed" else "left")
    for cap in report["capabilities"]:
        missing = [t for t in cap["tests"] if t["result"] != "passed" and not t.get("flagged")]
        why = "; ".join(sorted({f"{t['result']}" + (f": {t['reason']}" if t.get("reason")
                                                      else "") for t in missing}))
        table.add_row(escape(cap["name"]), cap["status"], f"{cap['passed']}/{cap['total']}",
                      "[green]yes[/]" if cap["complete"] else "[red]no[/]",
                      escape(why[:120]))
    console.print(table)
    console.print(f"[bold]{escape(report['summary'])}[/]", highlight=False)


def print_results(console: Console, snap: Snapshot, rows: Sequence[dict[str, Any]],
                  tempest: str | None = None, outcome: dict[str, Any] | None = None) -> None:
    """Counts, then the failures, identical tracebacks once with the tests they share; a
    test list's matching and a guideline's compliance after them."""
    c = snap.counts
    table = Table(title=f"test {snap.test_id}: {snap.state}", title_justify="left")
    for column in ("passed", "failed", "skipped", "not run", "selected", "worker", "tempest"):
        table.add_column(column, justify="left" if column in ("worker", "tempest") else "right")
    table.add_row(str(c.passed), f"[red]{c.failed}[/]" if c.failed else "0", str(c.skipped),
                  f"[yellow]{c.not_run}[/]" if c.not_run else "0", str(c.total),
                  escape(snap.worker or "-"), escape(tempest or "-"))
    console.print(table)
    classes = class_line(c)
    if classes:
        console.print(classes, highlight=False)
    if snap.message:
        console.print(f"message: {escape(snap.message)}", highlight=False)
    for group in failure_groups(rows):
        if len(group.tests) == 1:
            console.print(f"\n[bold red]FAILED[/] {escape(group.tests[0])}", highlight=False)
        else:
            console.print(f"\n[bold red]FAILED[/] {len(group.tests)} tests, same error: "
                          f"{escape(group.error)}", highlight=False)
            for name in group.tests:
                console.print(f"  {escape(name)}", highlight=False)
        if group.detail:
            console.print(escape(group.detail), highlight=False)
    if outcome:
        console.print()
        print_outcome(console, outcome)
