"""farm_client.compare: what counts as regressed, fixed, new, missing, still failing,
slower and faster; and the table `farm compare` prints."""

from __future__ import annotations

import pytest

from farm_client.compare import compare, table


def row(name: str, status: str, seconds: float | None = 1.0,
        detail: str = "") -> dict[str, object]:
    return {"name": name, "status": status, "duration_s": seconds, "detail": detail}


def test_every_kind_of_change() -> None:
    a = [row("t.ok", "success"), row("t.reg", "success"), row("t.fix", "fail", detail="E1"),
         row("t.still", "fail", detail="E2"), row("t.gone", "success"),
         row("t.xfail", "xfail"), row("t.skip", "skip")]
    b = [row("t.ok", "success"), row("t.reg", "uxsuccess", detail="unexpected"),
         row("t.fix", "success"), row("t.still", "fail", detail="E3"),
         row("t.new", "fail", detail="E4"), row("t.xfail", "success"), row("t.skip", "skip")]
    c = compare("A", a, "B", b)
    names = {k: [x.name for x in getattr(c, k)] for k in (
        "regressed", "fixed", "new", "missing", "still_failing", "slower", "faster")}
    assert names == {"regressed": ["t.reg"], "fixed": ["t.fix"], "new": ["t.new"],
                     "missing": ["t.gone"], "still_failing": ["t.still"], "slower": [],
                     "faster": []}
    assert c.same == 3  # ok, xfail -> success (both pass), skip
    assert c.regressed[0].detail == "unexpected" and c.fixed[0].detail == "E1"
    assert c.still_failing[0].detail == "E3" and c.changed
    doc = c.to_dict()
    assert doc["counts"]["regressed"] == 1 and doc["counts"]["same"] == 3
    text = table(doc)
    assert text.startswith("B against A: 1 regressed, 1 fixed, 1 new, 1 missing")
    assert "  t.reg  passed -> failed" in text and "  t.gone  passed -> -" in text


@pytest.mark.parametrize(("a_s", "b_s", "kind"), [
    (1.0, 2.0, "slower"),  # 2x and +1 s
    (2.0, 1.0, "faster"),
    (1.0, 1.4, None),  # under the factor
    (0.1, 0.9, None),  # 9x, but under a second
    (10.0, 14.0, None),  # +4 s, but 1.4x
    (10.0, 16.0, "slower"),
    (None, 5.0, None),  # no duration: nothing to say
])
def test_duration_changes_need_the_factor_and_the_seconds(a_s: float | None,
                                                          b_s: float | None,
                                                          kind: str | None) -> None:
    c = compare("A", [row("t", "success", a_s)], "B", [row("t", "success", b_s)])
    got = "slower" if c.slower else "faster" if c.faster else None
    assert got == kind
    assert not c.changed


def test_a_ratio_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ratio: 0\.5 is below 1"):
        compare("A", [], "B", [], ratio=0.5)
