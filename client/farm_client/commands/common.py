"""What every `farm` command shares: where the farm is (flags over refstack.cfg), argument
types, and the watch loop of `submit --wait` and `watch`."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace

from farm_client.api import dumps
from farm_client.config import ClientConfig, load_client_config
from farm_client.console import display_for, make_console, print_results, result_rows
from farm_client.exceptions import FarmClientError
from farm_client.farm import GONE, Farm, Run, Snapshot, open_farm, snapshot_of
from farm_worker.protocol import (
    EXIT_ERROR,
    STATE_VALUES,
    TEST_ID_PATTERN,
    VERSION_PATTERN,
    TestState,
    exit_code,
)

EXIT_INTERRUPTED = 130
STATES = STATE_VALUES


class UsageError(FarmClientError):
    """A flag or a file given on the command line is invalid."""


def add_location_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("where the farm is (flag > FARM_* environment > "
                                  "refstack.cfg > default)")
    g.add_argument("-c", "--config", metavar="FILE",
                   help="refstack.cfg (default: $FARM_CONFIG, else the first of "
                        "./refstack.cfg, ~/.config/refstack-farm/refstack.cfg, "
                        "/etc/refstack-farm/refstack.cfg, /etc/refstack/refstack.cfg)")
    g.add_argument("--gearman", action="append", metavar="HOST[:PORT]",
                   help="gearmand (repeat for several; GEARMAN_SERVER)")
    g.add_argument("--server", metavar="URL", help="the status server (FARM_SERVER_URL)")
    g.add_argument("--token", help="API token for the status server (FARM_TOKEN; prefer "
                                   "the environment or the file: flags show in ps)")
    g.add_argument("--direct", action="store_true",
                   help="talk to gearmand even when a status server is configured")


def client_config(args: argparse.Namespace) -> ClientConfig:
    flags = {"GEARMAN_SERVER": ",".join(args.gearman) if args.gearman else None,
             "FARM_SERVER_URL": "" if args.direct else args.server,
             "FARM_TOKEN": args.token}
    return load_client_config(args.config, flags=flags)


def farm_of(args: argparse.Namespace) -> Farm:
    return open_farm(client_config(args))


# ---- argument types ---------------------------------------------------------------------------
def test_id_arg(value: str) -> str:
    if not re.match(TEST_ID_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a test id ({TEST_ID_PATTERN})")
    return value


def version_arg(value: str) -> str:
    if not re.match(VERSION_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an exact Tempest version "
                                         "(e.g. 47.0.0)")
    return value


def seconds_arg(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return int(value)


def state_arg(value: str) -> str:
    for v in value.split(","):
        if v not in STATES:
            raise argparse.ArgumentTypeError(f"{v!r} is not a state ({', '.join(STATES)})")
    return value


# ---- following a run --------------------------------------------------------------------------
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
        print(dumps(snap.summary or snap.to_dict()))
        return
    doc = farm.final_results(snap)
    if doc.get("test"):  # the server's view, newer than the last poll
        snap = replace(snapshot_of(doc["test"]), summary=snap.summary)
    tempest = (doc.get("test") or snap.summary or {}).get("tempest_version")
    print_results(make_console(), snap, result_rows(doc) if doc else [], tempest)
