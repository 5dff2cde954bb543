"""`farm cancel`: withdraw a queued run, or stop a running one."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from farm_client.commands.common import farm_of, test_id_arg
from farm_worker.protocol import TestState

if TYPE_CHECKING:
    from farm_client.farm import Farm

NAME = "cancel"
HELP = "cancel a queued or running run"
DESCRIPTION = (
    "Cancel a test. Queued: it never starts. Running: its worker kills the whole "
    "Tempest process tree, cleans up and reports cancelled. Finished or unknown: "
    "says so and queues nothing.\n\nexit: 0 cancelled or requested, 1 nothing to "
    "cancel, 2 error")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("test_id", type=test_id_arg, metavar="TEST_ID",
                   help="the test's id (as submit printed it)")
    p.add_argument("--wait", action="store_true", help="wait until it has stopped")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="with --wait (default 60)")


def take_action(args: argparse.Namespace) -> int:
    farm = farm_of(args)
    try:
        return run(farm, args.test_id, wait=args.wait, timeout_s=args.timeout)
    finally:
        farm.close()


def run(farm: Farm, test_id: str, *, wait: bool = False, timeout_s: float = 60.0) -> int:
    from farm_client.farm import GONE

    outcome = farm.cancel(test_id)
    print(f"{test_id}: {outcome.message}")
    if outcome.outcome == "nothing":
        return 1
    if not wait:
        return 0
    final = farm.wait(test_id, timeout_s)
    if final is None:
        print(f"{test_id}: not ended after {timeout_s:g} s", file=sys.stderr)
        return 2
    if final.state == GONE:
        print(f"{test_id}: gone from the queue")
        return 0
    print(f"{test_id}: {final.state}")
    return 0 if final.state == TestState.CANCELLED.value else 2
