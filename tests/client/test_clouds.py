"""`farm submit --os-cloud NAME`: clouds.yaml found the way openstacksdk finds it (secure.yaml
merged, the OS_* variables as the cloud `envvars`), errors naming the cloud and the key;
and real runs against the real Keystone with the cloud's user as admin and as an account."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from farm_client.clouds import CloudError, cloud_layers
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.farmcli import farm

CLOUD: dict[str, Any] = {"auth": {"auth_url": "http://127.0.0.1:5000", "username": "admin",
                  "project_name": "admin", "user_domain_name": "Default",
                  "project_domain_name": "Default"},
         "region_name": "RegionOne", "interface": "public"}


def write(path: Path, clouds: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    return path


def test_clouds_yaml_with_secure_yaml_merged(tmp_path: Path) -> None:
    env = {"OS_CLIENT_CONFIG_FILE": str(write(tmp_path / "c.yaml", {"lab": CLOUD})),
           "OS_CLIENT_SECURE_FILE": str(write(tmp_path / "s.yaml",
                                              {"lab": {"auth": {"password": "pw-s3cure"}}}))}
    conf, accounts = cloud_layers("lab", environ=env)
    assert accounts is None
    assert conf["identity"] == {"uri_v3": "http://127.0.0.1:5000/v3", "auth_version": "v3",
                                "region": "RegionOne", "v3_endpoint_type": "public"}
    assert conf["auth"] == {"use_dynamic_credentials": True, "admin_username": "admin",
                            "admin_password": "pw-s3cure", "admin_user_domain_name": "Default",
                            "admin_domain_name": "Default", "admin_project_name": "admin",
                            "admin_project_domain_name": "Default"}
    conf, accounts = cloud_layers("lab", environ=env, as_account=True)
    assert "auth" not in conf and accounts == [{
        "username": "admin", "password": "pw-s3cure", "user_domain_name": "Default",
        "roles": ["member"], "project_name": "admin", "project_domain_name": "Default"}]


def test_the_search_path_and_the_os_variables(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    write(home / ".config" / "openstack" / "clouds.yaml",
          {"home": {**CLOUD, "auth": {**CLOUD["auth"], "password": "x"}}})
    assert cloud_layers("home", environ={})[0]["identity"]["region"] == "RegionOne"
    write(work / "clouds.yaml", {"here": {**CLOUD, "auth": {**CLOUD["auth"], "password": "y"}}})
    with pytest.raises(CloudError, match=r"^--os-cloud: 'home' is not a cloud of clouds.yaml "
                                         r"\(it has: here\)$"):
        cloud_layers("home", environ={})  # ./clouds.yaml comes first
    conf, _ = cloud_layers("envvars", environ={
        "OS_AUTH_URL": "https://keystone.example.org/v3/", "OS_USERNAME": "u",
        "OS_PASSWORD": "p", "OS_PROJECT_NAME": "proj", "OS_INSECURE": "true"})
    assert conf["identity"]["uri_v3"] == "https://keystone.example.org/v3"
    assert conf["identity"]["disable_ssl_certificate_validation"] is True
    assert conf["auth"]["admin_project_name"] == "proj"


@pytest.mark.parametrize(("clouds", "env", "message"), [
    ({"lab": CLOUD}, {}, r"^--os-cloud: 'lab' \(.*c.yaml\): auth.password is not set \(nor in "
                         r"secure.yaml\)$"),
    ({"lab": {"region_name": "r"}}, {}, r"^--os-cloud: 'lab' \(.*\): auth.auth_url, "
                                        r"auth.username, auth.password are not set"),
    ({"other": CLOUD}, {}, r"^--os-cloud: 'lab' is not a cloud of .*c.yaml \(it has: other\)$"),
    (None, {"OS_CLIENT_CONFIG_FILE": "/nonexistent/clouds.yaml"},
     r"^--os-cloud: 'lab': no clouds.yaml at /nonexistent/clouds.yaml "
     r"\(\$OS_CLIENT_CONFIG_FILE\)"),
])
def test_errors_name_the_cloud_and_the_key(tmp_path: Path, clouds: dict[str, Any] | None,
                                           env: dict[str, str], message: str) -> None:
    if clouds is not None:
        env = {**env, "OS_CLIENT_CONFIG_FILE": str(write(tmp_path / "c.yaml", clouds)),
               "OS_CLIENT_SECURE_FILE": str(tmp_path / "none.yaml")}
    with pytest.raises(CloudError, match=message):
        cloud_layers("lab", environ=env)


@pytest.mark.gearman
@pytest.mark.tempest
@pytest.mark.cloud
@pytest.mark.parametrize("as_account", [False, True])
def test_a_real_run_from_clouds_yaml(tmp_path: Path, server: FarmServer, workers: WorkerFactory,
                                     keystone: Keystone, tempest47: PrepareResult,
                                     as_account: bool) -> None:
    """The cloud's user as Tempest's admin, or (a cloud where one is no admin) as its one
    pre-provisioned account; the conf file only says what the cloud has."""
    server_worker(workers, server, f"clouds-{as_account}")
    if as_account:
        (account,) = keystone.make_accounts("acct-cloud", 1)
        auth = {"auth_url": keystone.public_url, "username": account["username"],
                "password": account["password"], "project_name": account["project_name"],
                "user_domain_name": "Default", "project_domain_name": "Default"}
    else:
        auth = {"auth_url": keystone.public_url, "username": "admin",
                "password": ADMIN_PASSWORD, "project_name": "admin",
                "user_domain_name": "Default", "project_domain_name": "Default"}
    clouds = write(tmp_path / "clouds.yaml", {"farm-ks": {"auth": auth,
                                                          "region_name": "RegionOne"}})
    rest = {k: v for k, v in keystone.tempest_conf().items() if k != "auth"}
    rest["identity"] = {k: v for k, v in rest["identity"].items() if k != "uri_v3"}
    conf = tmp_path / "cloud-features.json"
    conf.write_text(json.dumps(rest))
    r = farm(tmp_path, "submit", "--tempest", "47.0.0", "--os-cloud", "farm-ks",
             *(["--os-cloud-account"] if as_account else []), "--conf", str(conf),
             "--regex", r"tempest\.api\.identity\.v3\.test_tokens\.TokensV3Test",
             "--test-id", f"clouds-{as_account}", "--wait",
             env={"FARM_SERVER_URL": server.url, "FARM_TOKEN": server.user_token,
                  "OS_CLIENT_CONFIG_FILE": str(clouds)}, timeout_s=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    view = server.api("GET", f"/v1/tests/clouds-{as_account}").json()["test"]
    assert view["summary"]["passed"] >= 3 and view["summary"]["failed"] == 0, view
    assert auth["password"] not in r.stdout + r.stderr + server.log.read_text()
