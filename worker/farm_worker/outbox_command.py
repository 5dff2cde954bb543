"""`farm-worker outbox list|flush|drop`: what this host's workers owe the status servers.

`list` reads every worker id's outbox under `outbox_dir` (a host's slots, and the outboxes
of `farm-worker execute`). `flush` delivers the outboxes no running worker holds (a running
worker delivers its own, beside its jobs) and waits up to `--timeout` for them. `drop`
removes a test's entries, also from a running worker's outbox (it skips what is gone).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from farm_worker.config import WorkerConfig
from farm_worker.courier import Courier
from farm_worker.outbox import Entry, OutboxBusy, outboxes

EXIT_LEFT = 1


def add_parser(p: argparse.ArgumentParser, common: argparse.ArgumentParser,
               load: Callable[[argparse.Namespace], WorkerConfig]) -> None:
    actions = p.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")

    def action(name: str, help_: str, exits: str = "0, 2 error") -> argparse.ArgumentParser:
        a = actions.add_parser(name, parents=[common], help=help_,
                               description=f"{help_}.\n\nexit: {exits}",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        a.add_argument("--json", action="store_true", help="print the outcome as JSON")
        return a

    action("list", "each entry owed: worker id, test, kind, state, age, size")
    a = action("flush", "deliver the outboxes no running worker holds, now",
               "0 all delivered, 1 entries left, 2 error")
    a.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="stop waiting for a server after S seconds (default 60)")
    a = action("drop", "remove a test's entries (they are not owed any more)")
    a.add_argument("test_id", metavar="TEST_ID", help="the test whose entries go")
    p.set_defaults(func=lambda args: run(args, load(args)))


def run(args: argparse.Namespace, config: WorkerConfig) -> int:
    if args.outbox_command == "list":
        return _list(config, args.json)
    if args.outbox_command == "flush":
        return _flush(config, args.timeout, args.json)
    dropped = {box.root.name: n for box in outboxes(config.outbox_dir)
               if (n := box.drop(args.test_id))}
    _print({"test_id": args.test_id, "dropped": dropped}, args.json,
           f"dropped {sum(dropped.values())} entries of test {args.test_id}"
           + "".join(f"\n  {w}: {n}" for w, n in dropped.items()))
    return 0


def _print(doc: Any, as_json: bool, text: str) -> None:
    print(json.dumps(doc, indent=1, sort_keys=True) if as_json else text)


def _list(config: WorkerConfig, as_json: bool) -> int:
    rows: list[dict[str, Any]] = []
    for box in outboxes(config.outbox_dir):
        for found in box.entries():
            row = (found.to_dict() if isinstance(found, Entry)
                   else {"file": str(found[0]), "problem": found[1]})
            rows.append({"worker": box.root.name, **row})
    lines = [f"{r['worker']:<20} {r['test_id']:<24} {r['kind']:<6} {r['state'] or '':<10} "
             f"{_age(r['age_s']):>8} {r['bytes']:>10} B  {r['url']}"
             if "problem" not in r else f"{r['worker']:<20} {r['file']}: {r['problem']}"
             for r in rows]
    total = sum(r.get("bytes", 0) for r in rows)
    _print({"outbox_dir": str(config.outbox_dir), "entries": rows}, as_json,
           "\n".join([*lines, f"{len(rows)} entries, {total} bytes in {config.outbox_dir}"]))
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _flush(config: WorkerConfig, timeout_s: float, as_json: bool) -> int:
    report: dict[str, Any] = {}
    end = time.monotonic() + timeout_s
    for box in outboxes(config.outbox_dir):
        before = box.size()[0]
        courier = Courier(box, config.token_for, keep_s=config.outbox_keep_s,
                          backoff_max_s=config.report_backoff_max_s)
        try:
            courier.start()
        except OutboxBusy as exc:
            report[box.root.name] = {"owed": before, "busy": str(exc)}
            continue
        try:
            courier.wait(max(0.0, end - time.monotonic()))
        finally:
            courier.stop()
        left = box.size()[0]
        aside = box.root / "set-aside"
        report[box.root.name] = {"owed": before, "left": left,
                                 "set_aside": len(list(aside.glob("*.json")))
                                 if aside.is_dir() else 0}
    lines = [f"{w}: {r['busy']}" if "busy" in r else
             f"{w}: {r['owed'] - r['left']} of {r['owed']} delivered, {r['left']} left, "
             f"{r['set_aside']} in set-aside/" for w, r in report.items()]
    _print(report, as_json, "\n".join(lines) or f"no outbox in {config.outbox_dir}")
    return EXIT_LEFT if any(r.get("left") for r in report.values()) else 0
