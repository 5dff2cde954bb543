"""`farm compare A B`: run B against run A (the reference), as the status server computes
it (`GET /v1/compare`) and its dashboard shows it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from farm_client.commands.common import UsageError, dumps, farm_of, test_id_arg
from farm_client.commands.results import _write

if TYPE_CHECKING:
    from farm_client.farm import Farm

NAME = "compare"
HELP = "two runs side by side: regressed, fixed, new, missing, slower"
DESCRIPTION = (
    "Compare run B with run A, the reference (needs the status server): the tests that "
    "regressed (passed in A, failed in B), were fixed, are new or missing, still fail, "
    "and those slower or faster past a threshold. Without B: A against the run before it "
    "of the same cloud and Tempest version. As a table, JSON, or one self-contained HTML "
    "page (the dashboard's compare page).\n\n"
    "exit: 0 nothing regressed, 1 a test regressed, is missing or is new and failing, "
    "2 a run is unknown or has no results")


def _at_least(minimum: float, name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a number") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"{name}: {text} is below {minimum:g}")
        return value
    return parse


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", type=test_id_arg, metavar="A", help="the reference run's id")
    p.add_argument("b", type=test_id_arg, metavar="B", nargs="?",
                   help="the run compared with it (default: A against the run before it)")
    p.add_argument("--format", choices=("table", "json", "html"), default="table",
                   help="table (default), json or html")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--ratio", type=_at_least(1, "--ratio"), default=1.5, metavar="X",
                   help="a test is slower or faster from X times its duration ... "
                        "(default 1.5)")
    p.add_argument("--min-delta", type=_at_least(0, "--min-delta"), default=1.0,
                   metavar="S", help="... and S seconds (default 1)")


def take_action(args: argparse.Namespace) -> int:
    if args.output and args.format == "table":
        raise UsageError("--output goes with --format json or html")
    farm = farm_of(args)
    try:
        return run(farm, args.a, args.b, args.format, args.output, args.ratio, args.min_delta)
    finally:
        farm.close()


def run(farm: Farm, a: str, b: str | None = None, fmt: str = "table",
        output: str | None = None, ratio: float = 1.5, min_delta_s: float = 1.0) -> int:
    """Print or write the comparison; the exit code says whether anything regressed."""
    from farm_client.api import Refused
    from farm_client.compare import table
    from farm_client.reports import compare_html

    try:
        doc = farm.compare(a, b, ratio, min_delta_s)
    except Refused as exc:
        if exc.status == 404:
            print(f"farm compare: {str(exc).split(': ', 1)[-1]}", file=sys.stderr)
            return 2
        raise
    text = {"json": lambda: dumps(doc) + "\n", "html": lambda: compare_html(doc),
            "table": lambda: table(doc) + "\n"}[fmt]()
    _write(text.encode(), f"{doc['b']} against {doc['a']}", "comparison", output)
    counts = doc["counts"]
    failing_new = any(c.get("b") == "failed" for c in doc["new"])
    return 1 if counts["regressed"] or counts["missing"] or failing_new else 0
