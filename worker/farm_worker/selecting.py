"""A selection applied to a template's kept test list, as `tempest run` would apply it.

`tempest run --list-tests` imports every Tempest test module: about two seconds of CPU
for each job. A pinned Tempest always lists the same tests, so the list is kept when the
version is prepared (building.TESTS) and a job selects from it here, with the rules of
`tempest run` and stestr (tests/worker/test_selecting.py holds the two against each other
on real Tempest versions):

- `--regex R` is split on whitespace; a test is selected when any part matches
  (`re.search`) its id;
- each line of an include list is one more such regex, ORed with the parts of R; text
  after a `#` is a comment; no regex at all selects every test;
- a test that any exclude-list regex matches is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from farm_worker.exceptions import TempestError
from farm_worker.protocol import Selection, show


def _compiled(where: str, patterns: Sequence[str]) -> list[re.Pattern[str]]:
    out = []
    for pattern in patterns:
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise TempestError(f"{where}: {show(pattern)} is not a valid regular expression "
                               f"for tempest run ({exc})") from None
    return out


def _list_lines(items: Sequence[str]) -> list[str]:
    """The regexes stestr reads from a list file written with one item per line."""
    lines = []
    for item in items:
        for line in item.splitlines() or [""]:
            regex = line.strip().split("#")[0].strip()
            if regex:
                lines.append(regex)
    return lines


def select(tests: Sequence[str], selection: Selection | None) -> list[str]:
    """The tests of `tests` (in their order) that `tempest run` runs for `selection`."""
    if selection is None:
        return list(tests)
    assert not selection.listed, "an explicit list is matched (matching.py), not selected"
    wanted = _compiled("tests.regex", selection.regex.split())
    wanted += _compiled("tests.include", _list_lines(selection.include))
    unwanted = _compiled("tests.exclude", _list_lines(selection.exclude))
    return [t for t in tests
            if (not wanted or any(rx.search(t) for rx in wanted))
            and not any(rx.search(t) for rx in unwanted)]
