"""`farm list`: the runs the status server keeps, newest first."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from farm_client.commands.common import STATES, dumps, farm_of, state_arg, version_arg
from farm_worker.protocol import Counts

if TYPE_CHECKING:
    from farm_client.farm import Farm

NAME = "list"
HELP = "list runs (status server)"
DESCRIPTION = ("List tests, newest first (needs the status server), a page at a time: "
               "--limit of them (1 to 500) after skipping --offset; the title says which "
               "and how many there are.\n\nexit: 0 listed, 2 error")
MAX_LIMIT = 500  # the server's bound on one page


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", action="append", type=state_arg, metavar="STATE",
                   help="only these states (repeat, or comma-separated): " + ", ".join(STATES))
    p.add_argument("--version", type=version_arg, help="only this Tempest version")
    p.add_argument("--guideline", metavar="VERSION",
                   help="only runs of this interop guideline (e.g. 2020.06)")
    p.add_argument("--target", metavar="TARGET",
                   help="only guideline runs of this target (e.g. platform)")
    p.add_argument("--limit", type=_limit, default=50, metavar="N",
                   help=f"at most N tests, 1 to {MAX_LIMIT} (default 50)")
    p.add_argument("--offset", type=_offset, default=0, metavar="N",
                   help="skip the N newest first, to page on (default 0)")
    p.add_argument("--json", action="store_true",
                   help="print the page as JSON: tests, total, limit, offset")


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 1 to {MAX_LIMIT} "
                                         "(page on with --offset)")
    return int(value)


def _offset(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 0")
    return int(value)


def take_action(args: argparse.Namespace) -> int:
    farm = farm_of(args)
    try:
        return run(farm, args.state or None, args.version, args.limit, args.offset,
                   as_json=args.json, guideline=args.guideline, target=args.target)
    finally:
        farm.close()


def run(farm: Farm, states: list[str] | None = None, version: str | None = None,
        limit: int = 50, offset: int = 0, *, as_json: bool = False,
        guideline: str | None = None, target: str | None = None) -> int:
    from rich.table import Table

    from farm_client.console import make_console

    doc = farm.tests(states, version, limit, offset, guideline=guideline, target=target)
    if as_json:
        print(dumps(doc))
        return 0
    shown = len(doc["tests"])
    title = (f"{offset + 1}-{offset + shown} of {doc['total']} tests" if shown
             else f"none of {doc['total']} tests past {offset}")
    table = Table(title=title, title_justify="left")
    for column in ("test id", "state", "tempest", "guideline", "progress", "passed",
                   "failed", "skipped", "not run", "worker", "created"):
        table.add_column(column)
    for t in doc["tests"]:
        c = Counts.lenient(t["summary"])
        g = t.get("guideline")
        table.add_row(t["id"], t["state"], t["tempest_version"],
                      f"{g['version']} {g['target']}" if g else "",
                      f"{c.done}/{c.total}" if c.total else "",
                      str(c.passed), str(c.failed), str(c.skipped), str(c.not_run),
                      t["worker"] or "", (t["created_at"] or "").replace("T", " ")[:19])
    make_console().print(table)
    return 0
