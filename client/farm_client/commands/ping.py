"""`farm ping`: every worker answers; round-trip times."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from farm_client.commands.common import dumps, farm_of

if TYPE_CHECKING:
    from farm_client.farm import Farm

NAME = "ping"
HELP = "ask every worker for its state; round-trip times"
DESCRIPTION = (
    "Every worker answers farm:ping:<id> with its versions, current job and outbox (what "
    "it still owes the status servers); prints the round-trip time of each.\n\nexit: 0 "
    "all answered, 2 none registered or one did not answer")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long to wait for the answers (default 5)")
    p.add_argument("--json", action="store_true",
                   help="print each worker's answer and round trip as JSON")


def take_action(args: argparse.Namespace) -> int:
    farm = farm_of(args)
    try:
        return run(farm, timeout_s=args.timeout, as_json=args.json)
    finally:
        farm.close()


def _outbox(depth: object) -> str:
    """What the worker owes its status servers: its outbox, when it holds anything."""
    if not isinstance(depth, dict) or not depth.get("entries"):
        return ""
    full = ("  OUTBOX FULL: taking no job until it drains" if depth.get("full") else "")
    return f"  outbox {depth['entries']} entries ({depth.get('bytes', 0)} bytes){full}"


def run(farm: Farm, *, timeout_s: float = 5.0, as_json: bool = False) -> int:
    answers = farm.ping(timeout_s)
    if as_json:
        print(dumps([a.__dict__ for a in answers]))
    elif not answers:
        print("no farm worker is registered on any reachable gearmand")
    for a in answers if not as_json else []:
        if a.error:
            print(f"{a.worker:<20} {'-':>9}  {a.error}")
            continue
        busy = a.answer.get("busy")
        print(f"{a.worker:<20} {a.rtt_ms:7.2f} ms  tempest "
              f"{','.join(a.answer.get('versions', [])) or '-'}  "
              f"{'busy with ' + busy if busy else 'idle'}"
              + ("  draining" if a.answer.get("draining") else "")
              + _outbox(a.answer.get("outbox")))
    return 0 if answers and all(a.error is None for a in answers) else 2
