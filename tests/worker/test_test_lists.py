"""An explicit test list through `farm-worker execute` on the real Tempest 47.0.0: matched by
name, alias and idempotent id, run with --load-list, counted once, not-found named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import subunit
import testtools

from farm_lab.keystone import Keystone
from farm_worker.environments import PrepareResult
from harness.checks import leftovers
from harness.payloads import valid

from .test_execute_cli import execute

pytestmark = pytest.mark.tempest
V3 = "tempest.api.identity.v3"
MEDIA = "id-657c1970-4722-4189-8831-7325f3bc4265"
TEST_LIST = [
    # by name (Tempest 47 lists it with the same id)
    f"{V3}.test_tokens.TokensV3Test.test_create_token[id-6f8e4436-fc96-4282-8122-e41df57197a9]",
    # a name Tempest dropped, then its alias (the guidelines' way: an extra line, same id)
    f"{V3}.TestApiDiscovery.test_api_media_types[{MEDIA}]",
    f"{V3}.test_api_discovery.TestApiDiscovery.test_api_media_types[{MEDIA}]",
    # moved to a module that does not exist: found by its idempotent id
    f"{V3}.test_moved.TokensV3Test.test_validate_token[id-a9512ac3-3909-48a4-b395-11f438e16260]",
    f"{V3}.test_gone.Gone.test_gone[id-00000000-0000-4000-8000-000000000000]",
]
RAN = {f"{V3}.test_tokens.TokensV3Test.test_create_token",
       f"{V3}.test_api_discovery.TestApiDiscovery.test_api_media_types",
       f"{V3}.test_tokens.TokensV3Test.test_validate_token"}


def test_a_dry_run_reports_what_the_list_matched(tmp_path: Path, worker_cache: Path,
                                                 tempest47: PrepareResult) -> None:
    proc = execute(tmp_path, worker_cache, valid(test_id="list-dry", tests={"list": TEST_LIST}))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["state"] == "passed" and doc["total"] == 3, doc
    assert doc["message"] == (f"dry run: 3 tests selected (of 4 listed: 1 by name, 1 by alias, "
                              f"1 by id, 1 not found ({V3}.test_gone.Gone.test_gone))")
    sel = doc["selection"]
    assert (sel["listed"], sel["matched"], sel["by_name"], sel["by_alias"], sel["by_id"]) == \
        (4, 3, 1, 1, 1)
    assert sel["not_found"] == [f"{V3}.test_gone.Gone.test_gone"]
    assert {(r["by"], r["ran"]) for r in sel["renamed"]} == {
        ("alias", f"{V3}.test_api_discovery.TestApiDiscovery.test_api_media_types"),
        ("id", f"{V3}.test_tokens.TokensV3Test.test_validate_token")}


def test_a_list_with_no_test_this_tempest_has_ends_error(tmp_path: Path, worker_cache: Path,
                                                         tempest47: PrepareResult) -> None:
    proc = execute(tmp_path, worker_cache, valid(test_id="list-none",
                                                 tests={"list": TEST_LIST[-1:]}))
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["state"] == "error" and doc["message"] == (
        "tests.list: none of the 1 listed tests is in tempest 47.0.0 (by name, alias or id): "
        f"{V3}.test_gone.Gone.test_gone"), doc
    assert leftovers(tmp_path / "work") == []


def _outcomes(path: Path) -> dict[str, str]:
    """Each test's final status, read from the subunit file with python-subunit."""
    seen: dict[str, str] = {}
    result = testtools.StreamToDict(lambda t: seen.__setitem__(t["id"], t["status"]))
    result.startTestRun()
    with path.open("rb") as fh:
        subunit.ByteStreamToStreamResult(fh, non_subunit_name="stdout").run(result)
    result.stopTestRun()
    return {name.split("[", 1)[0]: status for name, status in seen.items()}


@pytest.mark.cloud
def test_the_matched_tests_run_once_each(tmp_path: Path, worker_cache: Path, keystone: Keystone,
                                         tempest47: PrepareResult) -> None:
    proc = execute(tmp_path, worker_cache, valid(test_id="list-run", dry_run=False,
                                                 conf=keystone.tempest_conf(),
                                                 tests={"list": TEST_LIST}))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["state"], doc["total"], doc["passed"], doc["not_run"]) == ("passed", 3, 3, 0), doc
    assert doc["selection"]["not_found"] == [f"{V3}.test_gone.Gone.test_gone"]
    assert _outcomes(Path(doc["subunit"])) == dict.fromkeys(RAN, "success")
    assert leftovers(tmp_path / "work") == []
