"""`farm status`: a run's state and progress; with a status server, its uploads and the
history of its reports."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from farm_client.commands.common import dumps, farm_of, test_id_arg
from farm_client.exceptions import NoSuchTest
from farm_worker import clikit

if TYPE_CHECKING:
    from farm_client.farm import Farm

NAME = "status"
HELP = "a run's state, progress and history"
DESCRIPTION = (
    "Show a test: state, progress and the history of its status reports (from the "
    "status server), or where it stands in gearmand's queue (without one).\n\n"
    "exit: 0 known, 1 unknown")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("test_id", type=test_id_arg, metavar="TEST_ID",
                   help="the test's id (as submit printed it)")
    p.add_argument("--json", action="store_true",
                   help="print the test, its uploads and history as JSON")


def take_action(args: argparse.Namespace) -> int:
    farm = farm_of(args)
    try:
        return run(farm, args.test_id, as_json=args.json)
    finally:
        farm.close()


def run(farm: Farm, test_id: str, *, as_json: bool = False) -> int:
    from farm_client.farm import GONE

    try:
        report = farm.report(test_id)
    except NoSuchTest as exc:  # the answer is no, not a failure to ask
        return clikit.fail(f"farm {NAME}", exc, as_json=as_json, code=clikit.EXIT_NO)
    if as_json:
        print(dumps(report.to_json()))
    elif report.stored is not None:
        _print_stored(report.stored)
    else:  # only what gearmand knows while it has the test
        snap = report.snapshot
        where = f" on gearmand {snap.where}" if snap.where else ""
        c = snap.counts
        progress = f" {c.done}/{c.total}" if c.total else ""
        print(f"{snap.test_id}: {snap.state}{progress}{where}"
              + (f"; {snap.message}" if snap.message else ""))
    return clikit.EXIT_NO if report.snapshot.state == GONE else clikit.EXIT_OK


def _print_stored(doc: dict[str, Any]) -> None:
    """A test the status server keeps: its state, progress, uploads and history."""
    from farm_client.console import make_console, outcome_of, print_outcome
    from farm_client.farm import snapshot_of

    t = doc["test"]
    snap = snapshot_of(t)
    c = snap.counts
    print(f"{t['id']}: {t['state']}  tempest {t['tempest_version']}  "
          f"worker {t['worker'] or '-'}")
    if c.total:
        print(f"counts: {c.describe()}")
        if not snap.final:
            print(f"progress {c.done}/{c.total}  current {snap.current or '-'}")
    if t["message"]:
        print(f"message: {t['message']}")
    if t.get("cpid"):
        print(f"cpid: {t['cpid']}")
    for u in doc.get("uploads", []):
        where = u["result_url"] or u["message"]
        print(f"refstack upload ({u['source']}) to {u['target']}: {u['state']}, "
              f"{u['attempts']} attempt(s){': ' + where if where else ''}")
    for h in doc["history"]:
        print(f"  {h['at']}  {h['state']:<11} {h['source']:<8} {h['worker'] or '':<12} "
              f"{h['message'] or ''}")
    if t.get("guideline"):
        g = t["guideline"]
        print(f"guideline: {g['version']} target {g['target']} ({', '.join(g['types'])})")
    outcome = outcome_of(t)
    if outcome:
        print_outcome(make_console(), outcome)
