"""`farm queue`: gearmand's queue per server: versions, queued, running, workers."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from farm_client.commands.common import dumps, farm_of

if TYPE_CHECKING:
    from farm_client.farm import Farm

NAME = "queue"
HELP = "gearmand's queue per server: versions, queued, running"
DESCRIPTION = (
    "For each gearmand: one row per function (a Tempest version), jobs queued and "
    "running, workers that serve it, and cancelled jobs gearmand still holds "
    "(withdrawn: not counted as queued); and the workers connected. Through the status "
    "server when one is set; straight to gearmand, cancelled jobs cannot be put to a "
    "function and are counted in a line below the table.\n\nexit: 0, or 2 when no gearmand answers")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print each gearmand's functions and workers as JSON")


def take_action(args: argparse.Namespace) -> int:
    farm = farm_of(args)
    try:
        return run(farm, as_json=args.json)
    finally:
        farm.close()


def run(farm: Farm, *, as_json: bool = False) -> int:
    from rich.table import Table

    from farm_client.console import make_console

    servers = farm.queue()
    if as_json:
        print(dumps({"servers": servers}))
        return 0
    console = make_console()
    for s in servers:
        if not s["reachable"]:
            console.print(f"[bold]gearmand {s['server']}[/]: [red]unreachable[/] "
                          f"({s.get('error', '')})", highlight=False)
            continue
        table = Table(title=f"gearmand {s['server']}", title_justify="left")
        for column in ("function", "queued", "running", "workers", "withdrawn"):
            table.add_column(column, justify="left" if column == "function" else "right")
        for f in sorted(s["functions"], key=lambda f: f["name"]):
            if f["name"].startswith(("farm:ping", "tempest:cancel:")):
                continue
            table.add_row(f["name"], str(f["queued"] - f["running"]), str(f["running"]),
                          str(f["workers"]), str(f.get("withdrawn", 0)))
        console.print(table)
        unknown = s.get("withdrawn_unknown", 0)
        if unknown:
            console.print(f"{unknown} cancelled job(s) still counted as queued above: gearmand "
                          "drops them when a worker takes them"
                          + ("" if farm.via == "server" else
                             " (through a status server they are shown apart)"),
                          highlight=False)
        names = sorted({w["client_id"] for w in s["workers"]
                        if not w["client_id"].endswith(".control")})
        console.print(f"workers: {', '.join(names) or 'none'}", highlight=False)
    return 0 if any(s["reachable"] for s in servers) else 2
