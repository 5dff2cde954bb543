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

from farm_client.farm import Snapshot
from farm_worker.protocol import SUBUNIT_FAILED, SUBUNIT_PASSED, SUBUNIT_SKIPPED


def _counts(snap: Snapshot) -> str:
    return f"passed {snap.passed} failed {snap.failed} skipped {snap.skipped}"


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
        progressed = (snap.done, snap.passed, snap.failed) != (last.done, last.passed,
                                                                last.failed)
        if progressed and time.monotonic() - self._last_line >= self.every_s:
            self._line(f"{snap.test_id} {snap.state} {snap.done or 0}/{snap.total or '?'} "
                       f"{_counts(snap)}")

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
        self.progress.update(self.task, total=snap.total or None, completed=snap.done or 0,
                             state=snap.state, passed=snap.passed, failed=snap.failed,
                             skipped=snap.skipped,
                             current=escape(".".join(current[-2:]))[:60])

    def close(self, snap: Snapshot | None) -> None:
        if self.task is not None:
            self.progress.stop()


def display_for(out: TextIO | None = None) -> PlainDisplay | LiveDisplay:
    stream = out or sys.stdout
    return LiveDisplay(Console(file=stream)) if stream.isatty() else PlainDisplay(stream)


def make_console(file: TextIO | None = None) -> Console:
    """A terminal gets its own width; a pipe or file gets lines long enough for test ids."""
    stream = file or sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200)


# ---- results ----------------------------------------------------------------------------------
def result_rows(doc: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Per-test rows, and whether they are every test (the API's results) or only the
    failures (without a server, a job's summary carries just those)."""
    if "results" in doc:
        return list(doc["results"]), True
    return [{"name": f["test"], "status": "fail", "duration_s": None, "detail": f["detail"]}
            for f in (doc.get("summary") or {}).get("failures", [])], False


def print_results(console: Console, snap: Snapshot, rows: Sequence[dict[str, Any]],
                  complete: bool, tempest: str | None = None) -> None:
    """Counts, then every failure with its traceback."""
    if complete:
        passed = sum(r["status"] in SUBUNIT_PASSED for r in rows)
        failed = sum(r["status"] in SUBUNIT_FAILED for r in rows)
        skipped = sum(r["status"] in SUBUNIT_SKIPPED for r in rows)
    else:
        passed, failed, skipped = snap.passed, snap.failed, snap.skipped
    table = Table(title=f"test {snap.test_id}: {snap.state}", title_justify="left")
    for column in ("passed", "failed", "skipped", "total", "worker", "tempest"):
        table.add_column(column, justify="left" if column == "worker" else "right")
    table.add_row(str(passed), f"[red]{failed}[/]" if failed else "0", str(skipped),
                  str(passed + failed + skipped), escape(snap.worker or "-"),
                  escape(tempest or "-"))
    console.print(table)
    if snap.message:
        console.print(f"message: {escape(snap.message)}", highlight=False)
    for r in rows:
        if r["status"] in SUBUNIT_FAILED:
            console.print(f"\n[bold red]FAILED[/] {escape(r['name'])}", highlight=False)
            detail = (r.get("detail") or "").rstrip()
            if detail:
                console.print(escape(detail), highlight=False)
