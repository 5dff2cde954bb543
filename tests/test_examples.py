"""The example files of docs/examples work as they are: each is read by the program it is
for, and the cloud conf passes the preflight against the real Keystone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from farm_client.config import load_client_config
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.workers import FARM_WORKER
from farm_server.config import load_server_config
from farm_worker.config import CONFIG_SCHEMA, load_config
from farm_worker.environments import PrepareResult
from farm_worker.preflight import check
from farm_worker.protocol import parse_conf, parse_payload
from farm_worker.tempest import conf_text

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def test_refstack_cfg() -> None:
    config = load_client_config(EXAMPLES / "refstack.cfg", environ={})
    assert [str(s) for s in config.gearman_servers] == ["127.0.0.1:4730"]
    assert config.test_method == "gearman" and config.server_url is None
    assert config.refstack_url == "https://refstack.openstack.org/api"


def test_worker_yaml_has_every_key_but_the_rare_ones() -> None:
    config = load_config(EXAMPLES / "worker.yaml", environ={})
    assert config.worker_id == "worker-1" and config.tempest_versions == ("47.0.0",)
    assert config.preflight is True and config.cache_max_size == 20 * 1024**3
    shown = set(yaml.safe_load((EXAMPLES / "worker.yaml").read_text()))
    rare = {"env_isolation", "index_url", "callbacks"}  # callbacks: commented, needs a token
    assert set(CONFIG_SCHEMA["properties"]) - shown == rare
    assert "# callbacks:" in (EXAMPLES / "worker.yaml").read_text()


def test_worker_yaml_through_the_cli() -> None:
    proc = subprocess.run([FARM_WORKER, "config", "-c", str(EXAMPLES / "worker.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "worker.yaml:" in proc.stdout  # the origins are the file's lines


def test_server_yaml() -> None:
    config = load_server_config(EXAMPLES / "server.yaml", environ={})
    assert config.database_url == "sqlite:////var/lib/refstack-farm/server.db"
    assert config.listen == "127.0.0.1:8080" and config.monitor is True


@pytest.mark.cloud
def test_cloud_yaml_passes_the_preflight_on_a_real_keystone(keystone: Keystone) -> None:
    conf = parse_conf(yaml.safe_load((EXAMPLES / "cloud.yaml").read_text()))
    conf["identity"]["uri_v3"] = f"{keystone.public_url}/v3"  # the two lines a user edits
    conf["auth"]["admin_password"] = ADMIN_PASSWORD
    checked = check(conf_text(conf), 15)
    assert checked.notes == [] and checked.cpid is not None


def test_payload_yaml_is_a_dry_run_the_worker_executes(tmp_path: Path, worker_cache: Path,
                                                       tempest47: PrepareResult) -> None:
    payload = parse_payload(yaml.safe_load((EXAMPLES / "payload.yaml").read_text()))
    assert payload.dry_run and payload.tempest_version == "47.0.0"
    proc = subprocess.run([FARM_WORKER, "execute", str(EXAMPLES / "payload.yaml"),
                           "--cache-dir", str(worker_cache), "--work-dir", str(tmp_path / "w"),
                           "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("test example-identity-1: passed (dry run: ")


def test_accounts_yaml_is_what_a_payload_takes() -> None:
    from farm_worker.protocol import parse_accounts

    accounts = parse_accounts({"accounts": yaml.safe_load(
        (EXAMPLES / "accounts.yaml").read_text())})
    assert [a["roles"] for a in accounts] == [["member"], ["member"]]


def test_clouds_yaml_is_what_os_cloud_reads() -> None:
    from farm_client.clouds import cloud_layers

    env = {"OS_CLIENT_CONFIG_FILE": str(EXAMPLES / "clouds.yaml"),
           "OS_CLIENT_SECURE_FILE": "/nonexistent/secure.yaml"}
    conf, accounts = cloud_layers("mycloud", environ=env)
    assert conf["identity"]["uri_v3"] == "https://keystone.example.org:5000/v3"
    assert conf["auth"]["admin_password"] == "CHANGE-ME" and accounts is None


@pytest.mark.cloud
@pytest.mark.tempest
def test_discover_yaml_discovers_a_conf_that_runs(tmp_path: Path, worker_cache: Path,
                                                  keystone: Keystone,
                                                  tempest47: PrepareResult) -> None:
    conf = parse_conf(yaml.safe_load((EXAMPLES / "discover.yaml").read_text()))
    conf["identity"]["uri_v3"] = f"{keystone.public_url}/v3"  # the two lines a user edits
    conf["auth"]["admin_password"] = ADMIN_PASSWORD
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({
        "schema": 1, "test_id": "example-discover", "tempest": {"version": "47.0.0"},
        "conf": conf, "discover": {}, "tests": {"regex": r"^tempest\.api\.identity\.v3\."
                                                         r"test_tokens"}}))
    proc = subprocess.run([FARM_WORKER, "execute", str(payload), "--json", "--cache-dir",
                           str(worker_cache), "--work-dir", str(tmp_path / "w"),
                           "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["state"] == "passed" and doc["passed"] >= 1 and doc["failed"] == 0, doc
