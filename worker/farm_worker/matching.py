"""An explicit test list matched against the tests this Tempest has.

Each test the list asks for runs as exactly one Tempest test: its name when this Tempest
has it, else its first alias that it has, else the test that carries its idempotent id
(a test renamed or moved since the list was written). Subclasses inherit their parent's
test methods and so its ids: when several tests carry the id, the one closest to the
listed name is taken (same class and method, then same method, then the longest common
module path, then the first by name), so an inherited id never runs, or counts, a test
twice. A listed test that nothing matches is `not found`, by name, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from farm_worker.protocol import Wanted, describe_selection, idempotent_id, split_test
from farm_worker.protocol.testlist import MATCHED_BY as HOW
from farm_worker.protocol.testlist import first_names


@dataclass(frozen=True)
class Match:
    wanted: Wanted
    test: str  # the Tempest test id, with its attributes, as `--list-tests` prints it
    how: str  # one of HOW


@dataclass
class Matched:
    """What a list matched: one Tempest test per wanted test, and what was not found."""

    matches: list[Match] = field(default_factory=list)
    not_found: list[Wanted] = field(default_factory=list)

    @property
    def tests(self) -> list[str]:
        """The Tempest tests to run (a `--load-list`), each once, in the list's order."""
        return list(dict.fromkeys(m.test for m in self.matches))

    def count(self, how: str) -> int:
        return sum(1 for m in self.matches if m.how == how)

    def to_dict(self) -> dict[str, Any]:
        """The selection report: in the summary, the status reports and `--json`."""
        return {"listed": len(self.matches) + len(self.not_found),
                "matched": len(self.matches),
                **{f"by_{how}": self.count(how) for how in HOW},
                "renamed": [{"listed": m.wanted.name, "ran": split_test(m.test)[0],
                             "by": m.how} for m in self.matches if m.how != "name"],
                "not_found": [w.name for w in self.not_found]}

    def describe(self) -> str:
        """`of 13 listed: 10 by name, 1 by alias, 1 by id, 1 not found (a.b.C.test_x)`."""
        return describe_selection(self.to_dict())

    def missing(self) -> str:
        """The first names not found: `a.B.test_x, a.B.test_y and 4 more`."""
        return first_names([w.name for w in self.not_found])


class Index:
    """Tempest's own list, by base name and by idempotent id."""

    def __init__(self, available: Iterable[str]):
        self.by_name: dict[str, str] = {}
        self.by_id: dict[str, list[str]] = {}
        for test in available:
            base, attrs = split_test(test)
            self.by_name.setdefault(base, test)
            uid = idempotent_id(attrs)
            if uid is not None:
                self.by_id.setdefault(uid, []).append(test)

    def find(self, wanted: Wanted) -> Match | None:
        if wanted.name in self.by_name:
            return Match(wanted, self.by_name[wanted.name], "name")
        for alias in wanted.aliases:
            if alias in self.by_name:
                return Match(wanted, self.by_name[alias], "alias")
        carriers = self.by_id.get((wanted.idempotent_id or "").lower(), [])
        if carriers:
            return Match(wanted, min(carriers, key=lambda t: _distance(wanted.name, t)), "id")
        return None


def _distance(listed: str, test: str) -> tuple[int, int, int, str]:
    """Sort key: tests closer to the listed name first."""
    want = listed.split(".")
    have = split_test(test)[0].split(".")
    common = 0
    for a, b in zip(want, have, strict=False):
        if a != b:
            break
        common += 1
    return (want[-2:] != have[-2:], want[-1] != have[-1], -common, test)


def match(wanted: Sequence[Wanted], available: Iterable[str]) -> Matched:
    index = Index(available)
    out = Matched()
    for w in wanted:
        found = index.find(w)
        if found is None:
            out.not_found.append(w)
        else:
            out.matches.append(found)
    return out
