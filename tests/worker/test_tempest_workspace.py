"""A job's workspace is written without starting Tempest, and is what `tempest init` makes
in every supported version (less the sample conf, the conf the worker writes itself and
the workspace registry, which the worker never uses). The prepare step's smoke test
compares the two for each version it prepares, so a Tempest whose `tempest init` changes
is refused, not run wrong; a workspace written so runs Tempest (tests/worker/
test_selecting.py lists in one on each version, the end-to-end tests run in one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm_worker import building, tempest
from farm_worker.environments import EnvironmentCache, PrepareResult
from farm_worker.exceptions import EnvironmentBuildError, TempestError


@pytest.mark.tempest
@pytest.mark.parametrize("version", ["33.0.0", "40.0.0", "47.0.0"])
def test_the_workspace_is_what_tempest_init_makes(
        tmp_path: Path, worker_cache: Path, version: str, tempest47: PrepareResult,
        tempest40: PrepareResult, tempest33: PrepareResult) -> None:
    template = EnvironmentCache(worker_cache).template(version)
    assert template is not None
    theirs = tempest.tempest_init(tmp_path / "init", template.path)
    assert {"etc/tempest.conf.sample", ".stestr.conf", ".stestr/format"} <= {
        str(p.relative_to(theirs)) for p in theirs.rglob("*")}
    ws = tempest.init_workspace(tmp_path / "job", template.path)
    assert tempest.workspace_differences(ws.path, theirs) == []
    # nothing Tempest keeps for itself: no registry, nothing in HOME
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["home", "ws"]
    assert not any(ws.home.iterdir())


@pytest.mark.tempest
def test_a_tempest_whose_init_makes_another_workspace_is_refused(
        tmp_path: Path, worker_cache: Path, tempest47: PrepareResult,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As a future Tempest would be, if its `tempest init` wrote another .stestr.conf."""
    template = EnvironmentCache(worker_cache).template("47.0.0")
    assert template is not None
    ws = tempest.init_workspace(tmp_path / "job", template.path)
    theirs = tempest.tempest_init(tmp_path / "init", template.path)
    (theirs / ".stestr.conf").write_text("[DEFAULT]\ntest_path=elsewhere\n")
    (theirs / "new-dir").mkdir()
    (ws.path / "extra").write_text("")
    assert tempest.workspace_differences(ws.path, theirs) == [
        ".stestr.conf: differs", "extra: not made by tempest init", "new-dir: missing"]
    monkeypatch.setattr(tempest, "STESTR_CONF", "[DEFAULT]\ntest_path={discover}\n")
    with pytest.raises(EnvironmentBuildError, match=r"^tempest 47.0.0: `tempest init` makes "
                       r"a workspace the worker does not write \(\.stestr\.conf: differs\)"):
        building.smoke_test(template.path, "47.0.0")


def test_an_environment_without_tempest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TempestError, match=r"has 0 tempest packages, not one"):
        tempest.init_workspace(tmp_path / "job", tmp_path / "env")
