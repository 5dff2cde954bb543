"""Explicit test lists: refstack-client's format and the tests it names.

A list is one test a line, `name` or `name[attr,...]`; Tempest's attributes carry the
test's idempotent id as `id-<uuid>`. RefStack's guideline API writes a test's older names
(aliases) as extra lines with the same id, so lines that share an id name one test: the
first is its name, the others its aliases, tried in their order when this Tempest lacks the
name. A line without an id is a test of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# A dotted Python name, then Tempest's attributes in brackets.
TEST_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+(\[[^\]\s]*\])?$"
# Lines in one list: all of Tempest 47 is ~1,700 tests, the 2020.06 platform list 365 lines
# with its aliases; 5,000 such lines stay well inside a payload's 1 MiB.
MAX_TESTS = 5000
_UUID = re.compile(r"^id-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$",
                   re.IGNORECASE)


@dataclass(frozen=True)
class Wanted:
    """One test a list asks for: its name, its idempotent id and its older names."""

    name: str
    idempotent_id: str | None = None
    aliases: tuple[str, ...] = ()


def split_test(test: str) -> tuple[str, tuple[str, ...]]:
    """`a.B.test_x[id-..., smoke]` -> ("a.B.test_x", ("id-...", "smoke"))."""
    base, _, rest = test.strip().partition("[")
    attrs = tuple(a.strip() for a in rest.rstrip("]").split(",") if a.strip())
    return base, attrs


def idempotent_id(attrs: Iterable[str]) -> str | None:
    """The uuid of the first `id-<uuid>` attribute, lower case."""
    for attr in attrs:
        m = _UUID.match(attr)
        if m:
            return m.group(1).lower()
    return None


def read_lines(text: str) -> list[str]:
    """The test lines of a list file: blank lines and `#` comments dropped."""
    return [s for s in (line.strip() for line in text.splitlines())
            if s and not s.startswith("#")]


def wanted_tests(lines: Iterable[str]) -> list[Wanted]:
    """The tests a list names, in its order; lines sharing an id are one test's names."""
    order: list[str | tuple[str, None]] = []
    by_id: dict[str, tuple[str, list[str]]] = {}
    seen: set[str] = set()
    for line in lines:
        base, attrs = split_test(line)
        if base in seen:
            continue
        seen.add(base)
        uid = idempotent_id(attrs)
        if uid is None:
            order.append((base, None))
        elif uid in by_id:
            by_id[uid][1].append(base)
        else:
            by_id[uid] = (base, [])
            order.append(uid)
    out = []
    for key in order:
        if isinstance(key, tuple):
            out.append(Wanted(key[0]))
        else:
            name, aliases = by_id[key]
            out.append(Wanted(name, key, tuple(aliases)))
    return out


MATCHED_BY = ("name", "alias", "id")


def describe_selection(report: dict[str, Any]) -> str:
    """A selection report (what a list matched, in the summary and the server's view) in a
    line: `of 13 listed: 10 by name, 1 by alias, 1 by id, 1 not found (a.B.test_x)`."""
    text = (f"of {report.get('listed', 0)} listed: "
            + ", ".join(f"{report.get('by_' + how, 0)} by {how}" for how in MATCHED_BY))
    missing = list(report.get("not_found") or [])
    if missing:
        text += f", {len(missing)} not found ({first_names(missing)})"
    return text


def first_names(names: list[str], shown: int = 3) -> str:
    """`a.B.test_x, a.B.test_y and 4 more`."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
