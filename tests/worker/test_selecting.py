"""A selection applied to a template's kept test list (farm_worker.selecting) selects
exactly what `tempest run --list-tests` selects, on the real Tempest versions; a dry run
selecting from the kept list starts no Tempest process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from farm_lab.workers import FARM_WORKER
from farm_worker import selecting, tempest
from farm_worker.building import CacheKey
from farm_worker.environments import EnvironmentCache, PrepareResult, Template, read_tests
from farm_worker.exceptions import TempestError
from farm_worker.protocol import Selection
from harness.payloads import valid

IDS = ["tempest.api.identity.admin.v3.test_users.UsersV3TestJSON.test_create[id-1,smoke]",
       "tempest.api.identity.v3.test_tokens.TokensV3Test.test_token[id-2]",
       "tempest.api.compute.servers.test_list.ListServers.test_list[id-3,smoke]",
       "tempest.scenario.test_minimum_basic.TestMinimumBasic.test_basic[id-4,network]"]


def names(sel: Selection) -> list[int]:
    return [IDS.index(t) for t in selecting.select(IDS, sel)]


def test_no_selection_or_an_empty_one_is_every_test() -> None:
    assert selecting.select(IDS, None) == IDS
    assert names(Selection()) == [0, 1, 2, 3]


def test_the_regex_is_split_on_whitespace_and_its_parts_ored() -> None:
    assert names(Selection(regex="identity")) == [0, 1]
    assert names(Selection(regex="smoke  scenario")) == [0, 2, 3]  # as tempest run splits


def test_include_lines_add_to_the_regex_and_comments_are_dropped() -> None:
    assert names(Selection(include=("compute  # the servers",))) == [2]
    assert names(Selection(regex="v3.test_tokens", include=("compute",))) == [1, 2]
    assert names(Selection(include=("# only a comment", "  "))) == [0, 1, 2, 3]


def test_exclude_lines_drop_what_they_match_whatever_selected_it() -> None:
    assert names(Selection(regex="tempest", exclude=("smoke # flaky", "id-4"))) == [1]
    assert names(Selection(exclude=("identity",))) == [2, 3]


def test_a_part_that_is_not_a_regex_names_its_field() -> None:
    with pytest.raises(TempestError, match=r"^tests\.regex: \"\[a\" is not a valid"):
        selecting.select(IDS, Selection(regex="[a b]"))
    with pytest.raises(TempestError, match=r"^tests\.exclude: \"\(\" is not a valid"):
        selecting.select(IDS, Selection(exclude=("(",)))


# what RefStack and operators send: a guideline-like regex, lists with comments, both
CASES = [Selection(regex="tempest.api.identity"),
         Selection(regex="smoke identity.v3"),
         Selection(regex="^tempest\\.api\\.identity\\.v3\\.",
                   exclude=("test_tokens # not today", "id-b4ff5a37")),
         Selection(include=("tempest.api.compute.servers.test_create_server",
                            "tempest.api.image  # images")),
         Selection(regex="identity.admin", include=("tempest.api.volume.test_versions",)),
         Selection(exclude=("tempest.api", "tempest.scenario"))]


def listed_by_tempest(tmp_path: Path, version: str, sel: Selection, env: Path) -> list[str]:
    job = tmp_path / f"job-{version}-{abs(hash(sel))}"
    ws = tempest.init_workspace(job, env)
    return tempest.list_tests(ws, tempest.selection_args(version, sel, ws))


@pytest.mark.tempest
@pytest.mark.parametrize("version, cases", [("47.0.0", CASES), ("40.0.0", CASES[:2]),
                                            ("33.0.0", CASES[2:4])])
def test_the_kept_list_selects_what_tempest_run_lists(
        tmp_path: Path, worker_cache: Path, version: str, cases: list[Selection],
        tempest47: PrepareResult, tempest40: PrepareResult,
        tempest33: PrepareResult) -> None:
    template = EnvironmentCache(worker_cache).template(version)
    assert template is not None and template.tests is not None
    ws = tempest.init_workspace(tmp_path / "all", template.path)
    assert list(template.tests) == sorted(tempest.list_tests(ws, []))
    for sel in cases:
        ours = selecting.select(template.tests, sel)
        assert ours, sel
        assert sorted(ours) == sorted(listed_by_tempest(tmp_path, version, sel,
                                                        template.path)), sel


@pytest.mark.tempest
def test_a_dry_run_selects_from_the_kept_list_without_starting_tempest(
        tmp_path: Path, worker_cache: Path, tempest47: PrepareResult) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(valid(test_id="kept", tests={
        "regex": "tempest.api.identity", "include": [], "exclude": ["v2"]})))
    proc = subprocess.run([FARM_WORKER, "execute", str(payload), "--json", "--debug",
                           "--cache-dir", str(worker_cache), "--work-dir",
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    template = EnvironmentCache(worker_cache).template("47.0.0")
    assert template is not None and template.tests is not None
    expected = selecting.select(template.tests, Selection("tempest.api.identity", (), ("v2",)))
    assert json.loads(proc.stdout)["total"] == len(expected) > 100
    started = "/bin/tempest (process group"  # every Tempest process starts so
    assert started not in proc.stderr  # no init, no --list-tests
    assert started in execute_running(tmp_path, worker_cache)


def execute_running(tmp_path: Path, worker_cache: Path) -> str:
    """The same selection's log in a run that is not dry (the control: the log line the
    test above looks for is there when Tempest starts). Its cloud does not answer: the
    run fails at once."""
    payload = tmp_path / "real.json"
    payload.write_text(json.dumps(valid(
        test_id="running", dry_run=False, tests={"regex": "v3.test_tokens"},
        conf={"identity": {"uri_v3": "http://127.0.0.1:9/v3"}})))
    proc = subprocess.run([FARM_WORKER, "execute", str(payload), "--json", "--debug",
                           "--no-preflight", "--cache-dir", str(worker_cache), "--work-dir",
                           str(tmp_path / "work2")], capture_output=True, text=True,
                          timeout=600)
    assert json.loads(proc.stdout)["state"] == "failed", proc.stdout + proc.stderr[-3000:]
    return proc.stderr


def test_a_kept_list_gone_or_empty_is_not_used(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Tempest lists instead (the control above), and the log says why: a list removed by
    hand is no internal error, and an empty one does not make every selection empty."""
    template = Template(CacheKey("47.0.0", "0" * 64, "cpython-311", "linux_x86_64"),
                        tmp_path, {"tests_file": "TESTS.txt"})
    assert template.tests is None
    assert f"{tmp_path / 'TESTS.txt'} cannot be read (FileNotFoundError" in caplog.text
    assert "`farm-worker prepare 47.0.0` again" in caplog.text
    (tmp_path / "TESTS.txt").write_text("\n")
    read_tests.cache_clear()
    assert template.tests is None and "TESTS.txt is empty" in caplog.text
    (tmp_path / "TESTS.txt").write_text(f"{IDS[0]}\n")
    read_tests.cache_clear()
    assert template.tests == (IDS[0],)
