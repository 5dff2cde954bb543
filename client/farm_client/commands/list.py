"""`farm list`: the runs the status server keeps, newest first."""

from __future__ import annotations

import argparse

from rich.table import Table

from farm_client.api import dumps
from farm_client.commands.common import STATES, farm_of, state_arg, version_arg
from farm_client.console import make_console
from farm_client.farm import Farm
from farm_worker.protocol import Counts

NAME = "list"
HELP = "list runs (status server)"
DESCRIPTION = "List tests, newest first (needs the status server)."


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", action="append", type=state_arg, metavar="STATE",
                   help="only these states (repeat, or comma-separated): " + ", ".join(STATES))
    p.add_argument("--version", type=version_arg, help="only this Tempest version")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true")


def take_action(args: argparse.Namespace) -> int:
    farm = farm_of(args)
    try:
        return run(farm, args.state or None, args.version, args.limit, as_json=args.json)
    finally:
        farm.close()


def run(farm: Farm, states: list[str] | None = None, version: str | None = None,
        limit: int = 50, *, as_json: bool = False) -> int:
    doc = farm.tests(states, version, limit)
    if as_json:
        print(dumps(doc))
        return 0
    table = Table(title=f"{len(doc['tests'])} of {doc['total']} tests", title_justify="left")
    for column in ("test id", "state", "tempest", "progress", "passed", "failed",
                   "skipped", "not run", "worker", "created"):
        table.add_column(column)
    for t in doc["tests"]:
        c = Counts.lenient(t["summary"])
        table.add_row(t["id"], t["state"], t["tempest_version"],
                      f"{c.done}/{c.total}" if c.total else "",
                      str(c.passed), str(c.failed), str(c.skipped), str(c.not_run),
                      t["worker"] or "", (t["created_at"] or "").replace("T", " ")[:19])
    make_console().print(table)
    return 0
