"""Following a run live: the watch loop of `farm submit --wait` and `farm watch`."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace

from farm_client.commands.common import dumps
from farm_client.console import (
    display_for,
    make_console,
    outcome_of,
    print_results,
    result_rows,
)
from farm_client.farm import GONE, Farm, Run, Snapshot, snapshot_of
from farm_worker.clikit import EXIT_INTERRUPTED
from farm_worker.protocol import EXIT_ERROR, TestState, exit_code


def follow(farm: Farm, test_id: str, snapshots: Iterator[Snapshot], *, as_json: bool = False,
           cancel_on_interrupt: bool = False, run: Run | None = None,
           quiet: bool = False) -> int:
    """Show `snapshots` live until the end, then the result; the exit code of the run
    (EXIT_INTERRUPTED when Ctrl-C only stopped the watching)."""
    # with --json, stdout carries the result alone; progress goes to stderr
    display = display_for(sys.stderr if as_json else sys.stdout, quiet=quiet)
    snap: Snapshot | None = None
    # Ctrl-C sets a flag the loop checks at each snapshot (they come at least every half
    # second): a KeyboardInterrupt raised at an arbitrary point could land inside gear or
    # rich and leave them stuck
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: interrupted.set())
    try:
        for snap in snapshots:
            display.update(snap)
            if interrupted.is_set():
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    display.close(snap)
    if interrupted.is_set():
        return _interrupted(farm, test_id, snap, cancel_on_interrupt, run)
    if snap is None:
        return 2
    if snap.state == GONE:
        print(f"{test_id}: left gearmand's queue; without a status server its final state "
              "is not known here", file=sys.stderr)
        return 2
    _final_report(farm, snap, as_json)
    return snap.exit_code


def _interrupted(farm: Farm, test_id: str, snap: Snapshot | None, cancel: bool,
                 run: Run | None) -> int:
    if cancel:
        outcome = farm.cancel(test_id)
        print(f"\n{test_id}: {outcome.message}", file=sys.stderr)
        final = farm.wait(test_id, 60, run)
        if final is None:
            return EXIT_ERROR
        if final.state == GONE:  # out of gearmand's queue after the cancel
            return exit_code(TestState.CANCELLED)
        print(f"{test_id}: {final.state}", file=sys.stderr)
        return final.exit_code
    if run is not None and run.withdrawn_if_left and (
            snap is None or snap.state == TestState.QUEUED.value):
        print(f"\n{test_id}: stopped watching while it was still queued; gearmand withdraws "
              "a waiting foreground job when its client leaves, so it will not run "
              "(submit without --wait, or through a status server, to keep it queued)",
              file=sys.stderr)
    else:
        print(f"\n{test_id}: stopped watching; the run goes on (farm status {test_id}, "
              f"farm cancel {test_id})", file=sys.stderr)
    return EXIT_INTERRUPTED


def _final_report(farm: Farm, snap: Snapshot, as_json: bool) -> None:
    if as_json:
        if snap.summary:  # the worker's own summary (straight to gearmand)
            print(dumps(snap.summary))
        else:  # the server's view: a test list's matching and compliance are kept there
            test = farm.final_results(snap).get("test")
            print(dumps({**snap.to_dict(), **outcome_of(test)}))
        return
    doc = farm.final_results(snap)
    if doc.get("test"):  # the server's view, newer than the last poll
        snap = replace(snapshot_of(doc["test"]), summary=snap.summary)
    tempest = (doc.get("test") or snap.summary or {}).get("tempest_version")
    print_results(make_console(), snap, result_rows(doc) if doc else [], tempest,
                  outcome_of(doc.get("test"), snap.summary))
