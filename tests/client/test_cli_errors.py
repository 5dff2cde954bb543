"""`farm`'s errors as a new user meets them: one line, the exit code of the table, JSON
under --json; against a real `farm-server serve` where the server's answer matters."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from farm_lab.gearmand import Gearmand
from farm_lab.loopback import free_port
from farm_lab.server import FarmServer
from harness.farmcli import farm

pytestmark = [pytest.mark.gearman]


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def test_no_command_lists_the_commands(tmp_path: Path) -> None:
    proc = farm(tmp_path)
    assert proc.returncode == 2
    line = one_line(proc)
    assert line.startswith("farm: command is required: config, submit, watch, cancel")
    assert "(see farm --help)" in line


def test_a_server_that_does_not_answer(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    proc = farm(tmp_path, "status", "t-1", "--server", url)
    assert proc.returncode == 2
    assert one_line(proc) == (f"farm status: the status server at {url} does not answer "
                              "(connection refused)\n")
    proc = farm(tmp_path, "status", "t-1", "--server", url, "--json")
    assert proc.returncode == 2 and proc.stderr == ""
    assert json.loads(proc.stdout) == {
        "error": f"the status server at {url} does not answer (connection refused)",
        "field": None}


def test_usage_errors_under_json_are_json(tmp_path: Path) -> None:
    proc = farm(tmp_path, "list", "--limit", "1000", "--json")
    assert proc.returncode == 2 and proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert doc["field"] == "--limit" and "from 1 to 500 (page on with --offset)" in doc["error"]
    proc = farm(tmp_path, "status", "--json")
    assert json.loads(proc.stdout) == {
        "error": "the following arguments are required: TEST_ID", "field": "test_id"}


def test_list_help_gives_the_bound_and_offset(tmp_path: Path) -> None:
    out = farm(tmp_path, "list", "--help").stdout
    assert "1 to 500" in out and "--offset N" in out


def test_unknown_test_is_1_through_the_server_as_without(tmp_path: Path, server: FarmServer,
                                                         gearmand: Gearmand) -> None:
    env = {"FARM_SERVER_URL": server.url, "FARM_TOKEN": server.user_token}
    proc = farm(tmp_path, "status", "never-made", env=env)
    assert proc.returncode == 1 and one_line(proc) == 'farm status: no test "never-made"\n'
    proc = farm(tmp_path, "status", "never-made", "--direct", "--gearman", gearmand.address,
                env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_a_wrong_token_is_not_accepted(tmp_path: Path, server: FarmServer) -> None:
    proc = farm(tmp_path, "list", env={"FARM_SERVER_URL": server.url,
                                       "FARM_TOKEN": "not-a-token-of-this-server"})
    assert proc.returncode == 2
    assert one_line(proc) == (f"farm list: the status server at {server.url} did not accept "
                              "the token (FARM_TOKEN or --token; farm-server add-user makes "
                              "one)\n")
    proc = farm(tmp_path, "list", env={"FARM_SERVER_URL": server.url})
    assert "needs a user token" in one_line(proc)


def test_list_pages_with_offset(tmp_path: Path, server: FarmServer) -> None:
    env = {"FARM_SERVER_URL": server.url, "FARM_TOKEN": server.user_token}
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}))
    # a version no worker of the session serves: these jobs stay queued in the session's
    # gearmand after this server is gone, and a worker taking one would wait on it
    for n in range(3):
        proc = farm(tmp_path, "submit", "--tempest", "46.0.0", "--conf", str(conf),
                    "--regex", "x", "--dry-run", "--queue-anyway", "--test-id", f"page-{n}",
                    env=env)
        assert proc.returncode == 0, proc.stderr
    first = json.loads(farm(tmp_path, "list", "--limit", "2", "--json", env=env).stdout)
    rest = json.loads(farm(tmp_path, "list", "--limit", "2", "--offset", "2", "--json",
                           env=env).stdout)
    assert [t["id"] for t in first["tests"]] == ["page-2", "page-1"]
    assert [t["id"] for t in rest["tests"]] == ["page-0"] and rest["offset"] == 2
    table = farm(tmp_path, "list", "--limit", "2", "--offset", "2", env=env).stdout
    assert "3-3 of 3 tests" in table


def test_discovery_and_conf_flags_go_together(tmp_path: Path) -> None:
    proc = farm(tmp_path, "submit", "--tempest", "47.0.0", "--discover-network", "public")
    assert proc.returncode == 2
    assert one_line(proc) == "farm submit: --discover-network: only with --discover\n"
    proc = farm(tmp_path, "results", "t-1", "--conf", "--format", "json")
    assert proc.returncode == 2
    assert one_line(proc) == "farm results: --conf: not with --upload or --format\n"
