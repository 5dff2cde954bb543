"""library/gearman_job.py: main() driven as Ansible drives it, against a real gearmand, a
real `farm-server serve` and a real worker (dry runs)."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from farm_client.gearman_client import Gearman, Server
from farm_lab.gearmand import Gearmand
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult

pytestmark = [pytest.mark.gearman, pytest.mark.tempest]
LIBRARY = Path(__file__).resolve().parents[2] / "library" / "gearman_job.py"
# "tests" and "2" as values: Ansible's no_log on `conf` would mask them in every message
CONF = {"identity": {"uri_v3": "http://127.0.0.1:9/v3", "admin_password": "S3cret-pw",
                     "region": "tests", "user_lockout_failure_attempts": 2}}


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gearman_job", LIBRARY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(capsys: pytest.CaptureFixture[str], **args: Any) -> tuple[int, dict[str, Any]]:
    """main() with these module arguments: (exit code, the JSON it printed)."""
    module = load_module()
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        module.main()
    out = capsys.readouterr().out
    return int(exit_.value.code or 0), json.loads(out)


def through(server: FarmServer) -> dict[str, Any]:
    return {"server_url": server.url, "token": server.user_token}


def test_check_mode_submit_wait_and_idempotence(capsys: pytest.CaptureFixture[str],
                                                server: FarmServer, workers: WorkerFactory,
                                                tempest47: PrepareResult) -> None:
    workers.start("mod-w", callbacks=[{"url": server.url, "token": server.worker_token}])
    job = {"test_id": "mod-1", "tempest_version": "47.0.0", "conf": CONF,
           "regex": "tempest.api.identity", "dry_run": True, **through(server)}
    code, out = run(capsys, **job, _ansible_check_mode=True)
    assert code == 0 and out["changed"] is True and "check mode" in out["message"]
    assert server.api("GET", "/v1/tests").json()["total"] == 0  # nothing submitted
    code, out = run(capsys, **job, wait=True, wait_timeout=300, poll_interval=0.3)
    assert code == 0, out
    assert out["changed"] is True and out["state"] == "passed" and not out["timed_out"]
    assert "138 tests selected" in out["summary"]["message"]  # only secrets are masked
    text = json.dumps(out)
    assert "S3cret-pw" not in text, text[max(0, text.find("S3cret-pw") - 300):][:600]
    code, out = run(capsys, **job, wait=True)
    assert code == 0 and out["changed"] is False and out["state"] == "passed", out
    assert server.api("GET", "/v1/tests").json()["total"] == 1


def test_wait_timeout_then_cancel(capsys: pytest.CaptureFixture[str], server: FarmServer,
                                  gearmand: Gearmand) -> None:
    """No worker serves 40.0.0: the job waits, the wait times out, the cancel removes it."""
    job = {"test_id": "mod-q", "tempest_version": "40.0.0", "regex": "tempest.api",
           "dry_run": True, **through(server)}
    code, out = run(capsys, **job)
    assert code == 1 and "no worker serves tempest:run:40.0.0" in out["msg"]
    code, out = run(capsys, **job, queue_anyway=True, wait=True, wait_timeout=1,
                    poll_interval=0.2)
    assert code == 1 and out["timed_out"] is True and out["state"] == "queued", out
    code, out = run(capsys, test_id="mod-q", state="absent", _ansible_check_mode=True,
                    **through(server))
    assert code == 0 and out["changed"] is True and out["state"] == "queued"
    code, out = run(capsys, test_id="mod-q", state="absent", wait=True, wait_timeout=30,
                    **through(server))
    assert code == 0 and out["changed"] is True and out["state"] == "cancelled", out
    code, out = run(capsys, test_id="mod-q", state="absent", **through(server))
    assert code == 0 and out["changed"] is False and "nothing to cancel" in out["message"]
    # gearmand's `cancel job` marks a queued job ignored: dropped when a worker asks for it.
    # Other tests share this gearmand: only this test's job (its handle in the store) counts.
    with closing(sqlite3.connect(server.base / "server.db")) as db:
        (handle,) = db.execute("SELECT gearman_handle FROM tests WHERE id = ?",
                               ("mod-q",)).fetchone()
    jobs = Gearman([Server("127.0.0.1", gearmand.port)]).jobs(Server("127.0.0.1", gearmand.port))
    assert handle in jobs and jobs[handle][1] is True, (handle, jobs)


def test_straight_to_gearmand(capsys: pytest.CaptureFixture[str], gearmand: Gearmand,
                              workers: WorkerFactory, tempest47: PrepareResult) -> None:
    workers.start("mod-d")
    job = {"test_id": "mod-d-1", "tempest_version": "47.0.0", "conf": CONF,
           "regex": "tempest.api.identity.v3", "dry_run": True,
           "gearman_servers": [gearmand.address]}
    code, out = run(capsys, **job, wait=True, wait_timeout=300)
    assert code == 0 and out["changed"] is True and out["state"] == "passed", out
    assert out["handle"] and out["summary"]["worker"] == "mod-d"
    code, out = run(capsys, **{**job, "tempest_version": "47"}, wait=True)
    assert code == 1 and "tempest.version" in out["msg"] and out["changed"] is False
    code, out = run(capsys, test_id="mod-d-1", state="absent",
                    gearman_servers=[gearmand.address])
    assert code == 0 and out["changed"] is False, out


INTEROP = Path(__file__).resolve().parents[1] / "data" / "interop"


def test_a_guideline_or_a_test_list(capsys: pytest.CaptureFixture[str], server: FarmServer,
                                    workers: WorkerFactory, tempest47: PrepareResult) -> None:
    workers.start("mod-gl", callbacks=[{"url": server.url, "token": server.worker_token}])
    base = {"tempest_version": "47.0.0", "conf": CONF, "dry_run": True, "wait": True,
            "wait_timeout": 600, "poll_interval": 0.3, **through(server)}
    code, out = run(capsys, test_id="mod-gl-1", **base, guideline={
        "version": "2020.06", "file": str(INTEROP / "guidelines" / "2020.06.json")})
    assert code == 0 and out["state"] == "passed", out
    sel, report = out["selection"], out["compliance"]
    assert sel["matched"] + len(sel["not_found"]) == sel["listed"] > 200
    assert report["version"] == "2020.06" and report["target"] == "platform"
    assert len(report["capabilities"]) == 78  # a dry run runs none of them
    assert report["summary"].startswith("passes 0 of ") and report["summary"] in out["message"]
    code, out = run(capsys, test_id="mod-gl-2", **base, test_list=[
        "tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token"])
    assert code == 0 and out["selection"]["by_name"] == 1 and out["compliance"] is None, out
    code, out = run(capsys, test_id="mod-gl-3", **base, regex="identity", test_list=["a.B.c"])
    assert code == 1 and out["msg"].startswith("test_list: not with regex"), out
    code, out = run(capsys, test_id="mod-gl-4", **base, guideline={"version": "2020.06"})
    assert code == 1 and "needs refstack_url" in out["msg"], out


def test_the_cloud_from_clouds_yaml(capsys: pytest.CaptureFixture[str], server: FarmServer,
                                    workers: WorkerFactory, tempest47: PrepareResult,
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workers.start("mod-cloud", callbacks=[{"url": server.url, "token": server.worker_token}])
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(json.dumps({"clouds": {"lab": {"auth": {
        "auth_url": "http://127.0.0.1:9", "username": "u", "password": "Cloud-mod-pw-4",
        "project_name": "p"}, "region_name": "tests"}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    base = {"tempest_version": "47.0.0", "dry_run": True, "wait": True, "wait_timeout": 600,
            "poll_interval": 0.3, "regex": "tempest.api.identity.v3.test_tokens",
            **through(server)}
    code, out = run(capsys, test_id="mod-cloud-1", os_cloud="lab", **base)
    assert code == 0 and out["state"] == "passed", out
    assert "Cloud-mod-pw-4" not in json.dumps(out)
    # a discovery run: its options reach the worker (a dry run does not discover)
    code, out = run(capsys, test_id="mod-cloud-3", os_cloud="lab",
                    discover={"network_id": "public"}, **base)
    assert code == 0 and out["state"] == "passed", out
    record = server.api("GET", "/v1/tests/mod-cloud-3").json()
    assert record["test"]["discover"] == {"network_id": "public"}
    assert "dry run: the conf is not discovered" in [h["message"] for h in record["history"]]
    code, out = run(capsys, test_id="mod-cloud-2", os_cloud="nowhere", **base)
    assert code == 1 and out["msg"].startswith("--os-cloud: 'nowhere' is not a cloud of"), out
