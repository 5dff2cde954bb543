"""Failures as people read them: identical tracebacks grouped (35 classes failing in
setUpClass with the same InvalidCredentials are one group, not 1,500 lines), and the
class-level fixtures named as such."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from farm_worker.protocol import SUBUNIT_FAILED, Counts


@dataclass(frozen=True)
class FailureGroup:
    """Failed tests whose detail (traceback) is the same text."""

    detail: str
    tests: list[str]

    @property
    def error(self) -> str:
        """The traceback's last line, what was raised: `InvalidCredentials: ...`."""
        return last_line(self.detail)


def last_line(detail: str, width: int = 160) -> str:
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    if not lines:
        return "(no detail)"
    return lines[-1] if len(lines[-1]) <= width else lines[-1][: width - 1] + "…"


def failure_groups(rows: Iterable[Mapping[str, Any]]) -> list[FailureGroup]:
    """The failed rows (`name`, `status`, `detail`) grouped by identical detail, in the
    order their first test appears."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r["status"] in SUBUNIT_FAILED:
            groups.setdefault((r.get("detail") or "").rstrip(), []).append(r["name"])
    return [FailureGroup(detail, tests) for detail, tests in groups.items()]


def class_line(counts: Counts) -> str | None:
    """The class-level fixtures, named as such; None when there were none."""
    parts = []
    if counts.classes_failed:
        parts.append(f"{counts.classes_failed} failed in setUpClass or tearDownClass")
    if counts.classes_skipped:
        parts.append(f"{counts.classes_skipped} skipped whole")
    return "class level: " + ", ".join(parts) if parts else None
