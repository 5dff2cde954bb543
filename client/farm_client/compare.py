"""Two runs' results side by side: what regressed, what was fixed, what is new or missing,
what still fails, and which tests got slower or faster past a threshold.

One implementation for `farm compare`, `GET /v1/compare` and the dashboard's compare page:
the server computes it from its store, the client prints or renders the server's answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from farm_worker.protocol import SUBUNIT_FAILED, SUBUNIT_PASSED, SUBUNIT_SKIPPED

# a duration change counts when it is this many times the old one, and this many seconds
DEFAULT_RATIO = 1.5
DEFAULT_MIN_DELTA_S = 1.0
KINDS = ("regressed", "fixed", "new", "missing", "still_failing")


def outcome(status: str) -> str:
    """A subunit status as people compare them: passed, failed, skipped (or the status)."""
    if status in SUBUNIT_PASSED:
        return "passed"
    if status in SUBUNIT_FAILED:
        return "failed"
    if status in SUBUNIT_SKIPPED:
        return "skipped"
    return status


@dataclass(frozen=True)
class Change:
    name: str
    a: str | None  # the outcome in run A (None: not in A)
    b: str | None
    a_s: float | None = None
    b_s: float | None = None
    detail: str = ""  # B's failure detail (or A's, for a fixed test)


@dataclass
class Comparison:
    a: str
    b: str
    ratio: float
    min_delta_s: float
    regressed: list[Change] = field(default_factory=list)  # passed in A, failed in B
    fixed: list[Change] = field(default_factory=list)  # failed in A, passed in B
    new: list[Change] = field(default_factory=list)  # only in B
    missing: list[Change] = field(default_factory=list)  # only in A
    still_failing: list[Change] = field(default_factory=list)
    slower: list[Change] = field(default_factory=list)
    faster: list[Change] = field(default_factory=list)
    same: int = 0  # tests with the same outcome and no duration change past the threshold

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["counts"] = {k: len(getattr(self, k)) for k in (*KINDS, "slower", "faster")}
        doc["counts"]["same"] = self.same
        return doc

    @property
    def changed(self) -> bool:
        """Anything worth a look: a regression, a new failure, a missing test."""
        return bool(self.regressed or self.missing or
                    any(c.b == "failed" for c in self.new))


def compare(a_id: str, a_rows: Iterable[Mapping[str, Any]], b_id: str,
            b_rows: Iterable[Mapping[str, Any]], *, ratio: float = DEFAULT_RATIO,
            min_delta_s: float = DEFAULT_MIN_DELTA_S) -> Comparison:
    """Compare two runs' result rows (`name`, `status`, `duration_s`, `detail`), B against A
    (A is the older, the reference). A duration change is reported when the new duration is
    at least `ratio` times the old one (or the old `ratio` times the new) and differs by at
    least `min_delta_s` seconds."""
    if ratio < 1:
        raise ValueError(f"ratio: {ratio} is below 1")
    a = {r["name"]: r for r in a_rows}
    b = {r["name"]: r for r in b_rows}
    out = Comparison(a_id, b_id, ratio, min_delta_s)
    for name in sorted(a.keys() | b.keys()):
        ra, rb = a.get(name), b.get(name)
        oa = outcome(ra["status"]) if ra else None
        ob = outcome(rb["status"]) if rb else None
        a_s = ra.get("duration_s") if ra else None
        b_s = rb.get("duration_s") if rb else None
        detail = str((rb or {}).get("detail") or "") if ob == "failed" else (
            str((ra or {}).get("detail") or "") if oa == "failed" else "")
        change = Change(name, oa, ob, a_s, b_s, detail)
        if ra is None:
            out.new.append(change)
        elif rb is None:
            out.missing.append(change)
        elif oa == "passed" and ob == "failed":
            out.regressed.append(change)
        elif oa == "failed" and ob == "passed":
            out.fixed.append(change)
        elif oa == "failed" and ob == "failed":
            out.still_failing.append(change)
        elif oa == ob and a_s is not None and b_s is not None and \
                abs(b_s - a_s) >= min_delta_s and max(a_s, b_s) >= ratio * min(a_s, b_s):
            (out.slower if b_s > a_s else out.faster).append(change)
        else:
            out.same += 1
    return out


def table(doc: Mapping[str, Any]) -> str:
    """The comparison (as `to_dict` gives it, or the API's answer) for a terminal."""
    counts = doc["counts"]
    lines = [f"{doc['b']} against {doc['a']}: " + ", ".join(
        f"{counts[k]} {k.replace('_', ' ')}" for k in (*KINDS, "slower", "faster", "same"))]
    for kind in (*KINDS, "slower", "faster"):
        changes = doc[kind]
        if not changes:
            continue
        lines.append(f"\n{kind.replace('_', ' ')} ({len(changes)}):")
        for c in changes:
            if kind in ("slower", "faster"):
                lines.append(f"  {c['name']}  {c['a_s']:.2f} s -> {c['b_s']:.2f} s")
            else:
                lines.append(f"  {c['name']}  {c['a'] or '-'} -> {c['b'] or '-'}")
    return "\n".join(lines)
