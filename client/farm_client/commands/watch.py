"""`farm watch`: follow a run live until it ends."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from farm_client.commands.common import farm_of, test_id_arg

if TYPE_CHECKING:
    from farm_client.farm import Farm

NAME = "watch"
HELP = "follow a run live until it ends"
DESCRIPTION = (
    "Follow a test: a progress bar on a terminal (tests done/total, passed/failed/"
    "skipped so far, current test, elapsed, ETA), plain lines otherwise. Ctrl-C stops "
    "watching and leaves the run going, unless --cancel-on-interrupt.\n\n"
    "exit: 0 passed, 1 failed, 2 error/timed_out/rejected, 3 cancelled, 130 "
    "stopped watching")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("test_id", type=test_id_arg, metavar="TEST_ID",
                   help="the test's id (as submit printed it)")
    p.add_argument("--cancel-on-interrupt", action="store_true",
                   help="Ctrl-C cancels the run instead of leaving it running")
    p.add_argument("--json", action="store_true", help="print the final result as JSON")


def take_action(args: argparse.Namespace) -> int:
    farm = farm_of(args)
    try:
        return run(farm, args.test_id, cancel_on_interrupt=args.cancel_on_interrupt,
                   as_json=args.json, quiet=args.quiet)
    finally:
        farm.close()


def run(farm: Farm, test_id: str, *, cancel_on_interrupt: bool = False,
        as_json: bool = False, quiet: bool = False) -> int:
    from farm_client.commands.following import follow

    return follow(farm, test_id, farm.watch(test_id), as_json=as_json,
                  cancel_on_interrupt=cancel_on_interrupt, quiet=quiet)
