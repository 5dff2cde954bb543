"""tempest.conf discovered with python-tempestconf in the job's environment, against the
real Keystone: the discovery's needs reported first (one line each), refused credentials
ending `error` at once, the discovered conf kept with the run with its secrets removed.
The needs of clouds with compute, network and image services are checked against a stand-in
of those APIs on 127.0.0.1 (no Nova, Neutron or Glance can run here), registered in a
token catalog the way Keystone returns it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.loopback import Loopback, QuietHandler
from farm_worker import cloud, discovery, locks
from farm_worker.building import SHIM
from farm_worker.environments import PrepareResult
from farm_worker.preflight import PreflightError
from farm_worker.redaction import REMOVED
from farm_worker.tempestconf_shim import SELF_CHECK
from harness.checks import leftovers
from harness.direct import direct_run
from harness.payloads import valid

from .test_accounts import SELECTION, without_admin
from .test_execute_cli import execute

TEMPESTCONF = {"33.0.0": "3.3.0", "40.0.0": "3.5.0", "47.0.0": "3.5.4"}


def credentials_only(keystone: Keystone) -> dict[str, dict[str, Any]]:
    """What an operator has of a cloud: its Keystone and an admin login."""
    return {"identity": {"uri_v3": f"{keystone.public_url}/v3"},
            "auth": {"admin_username": "admin", "admin_password": ADMIN_PASSWORD,
                     "admin_project_name": "admin", "admin_user_domain_name": "Default",
                     "admin_project_domain_name": "Default"}}


# ---- the locks and templates -------------------------------------------------------------
@pytest.mark.parametrize("version", sorted(TEMPESTCONF))
def test_each_lock_pins_the_python_tempestconf_of_its_day(version: str) -> None:
    lock = locks.find_lock(version, [locks.SHIPPED_LOCKS])
    assert lock is not None and lock.tempestconf == TEMPESTCONF[version]


@pytest.mark.tempest
def test_the_templates_carry_the_discovery(tempest47: PrepareResult, tempest40: PrepareResult,
                                           tempest33: PrepareResult, tmp_path: Path) -> None:
    for prepared in (tempest33, tempest40, tempest47):
        info = json.loads((Path(prepared.template) / "READY.json").read_text())
        assert info["tempestconf"] == TEMPESTCONF[prepared.version]
        proc = subprocess.run([f"{prepared.template}/bin/python", "-I", str(SHIM), SELF_CHECK],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]


HOOKS_CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
import tempestconf_shim as shim
from config_tempest import main as discover
from config_tempest.services.image import ImageService

def fake_main():
    assert sys.argv[1:] == ["--out", "x.conf"], sys.argv
    assert ImageService.create_tempest_images is shim._no_image
    try:
        ImageService._download_file(None, "https://download.cirros-cloud.net/x.img", "y")
    except RuntimeError as exc:
        print(exc)

discover.main = fake_main
sys.exit(shim.main(["--farm-no-image", "--out", "x.conf"]))
"""


@pytest.mark.tempest
def test_the_shim_turns_the_image_step_off_and_refuses_downloads(
        tempest47: PrepareResult, tempest40: PrepareResult, tempest33: PrepareResult,
        tmp_path: Path) -> None:
    (tmp_path / "tempestconf_shim.py").write_bytes(SHIM.read_bytes())  # away from tempest.py
    for prepared in (tempest33, tempest40, tempest47):
        proc = subprocess.run([f"{prepared.template}/bin/python", "-I", "-c", HOOKS_CHECK,
                               str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.splitlines()[-1] == (  # after Tempest's own log lines
            "refusing to download https://download.cirros-cloud.net/x.img: this worker is "
            "offline; set discovery_image in the worker's config (a local image file)"), \
            (prepared.version, proc.stdout)


def test_the_image_choice_reaches_python_tempestconf(tmp_path: Path) -> None:
    from farm_worker.tempest import Workspace

    ws = Workspace(tmp_path, tmp_path / "env")
    creds = discovery.Credentials(False, {}, "account 'u'")
    image = discovery.Needs(image=tmp_path / "cirros.img")
    argv = discovery.discover_argv(ws, tmp_path, creds, tmp_path / "accounts.yaml",
                                   {"network_id": "public", "flavor_min_mem": 128}, image)
    assert argv[1:3] == ["-I", str(SHIM)]
    assert argv[-9:] == ["--non-admin", "--test-accounts", str(tmp_path / "accounts.yaml"),
                         "--network-id", "public", "--flavor-min-mem", "128", "--image",
                         str(tmp_path / "cirros.img")]
    off = discovery.discover_argv(ws, tmp_path, creds, None, {},
                                  discovery.Needs(image_off=True))
    assert off[-2:] == ["--non-admin", "--farm-no-image"]


# ---- through the worker against the real Keystone ---------------------------------------
@pytest.mark.tempest
@pytest.mark.cloud
def test_credentials_only_discover_a_conf_that_runs(tmp_path: Path, worker_cache: Path,
                                                    keystone: Keystone,
                                                    tempest47: PrepareResult) -> None:
    proc = execute(tmp_path, worker_cache, valid(
        test_id="disc-admin", dry_run=False, conf=credentials_only(keystone), discover={},
        tests={"regex": SELECTION}))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["state"] == "passed" and doc["passed"] >= 5 and doc["failed"] == 0, doc
    conf = doc["conf"]
    # what the discovery found: the identity API's versions and extensions, no other service
    assert conf["identity-feature-enabled"]["api_v3"] == "True"
    assert "OS-TRUST" in conf["identity-feature-enabled"]["api_extensions"]
    assert conf["service_available"]["nova"] == "False"
    assert conf["auth"]["admin_password"] == REMOVED
    assert conf["auth"]["admin_project_id"]  # asked of the cloud
    assert "oslo-concurrency" not in conf  # the worker owns the paths
    lines = [line for line in proc.stderr.splitlines() if "discovery: " in line]
    assert any("credentials: admin 'admin'; Tempest creates the test users" in line
               for line in lines), proc.stderr[-3000:]
    assert any("compute: not in the catalog" in line for line in lines)
    assert ADMIN_PASSWORD not in proc.stdout + proc.stderr
    assert leftovers(tmp_path / "work") == []  # clouds.yaml and the deployer input went too


@pytest.mark.tempest
@pytest.mark.cloud
def test_accounts_instead_of_admin_discover_as_the_first_account(
        tmp_path: Path, worker_cache: Path, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    accounts = keystone.make_accounts("acct-disc", 3)
    conf = {"identity": {"uri_v3": f"{keystone.public_url}/v3"}}
    proc = execute(tmp_path, worker_cache, valid(
        test_id="disc-accts", dry_run=False, conf=conf, accounts=accounts, discover={},
        tests={"regex": SELECTION}))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["state"] == "passed" and doc["passed"] >= 5 and doc["failed"] == 0, doc
    assert doc["classes_skipped"] >= 1  # the admin class: no admin here
    kept = doc["conf"]["auth"]
    assert kept["use_dynamic_credentials"] == "false" and kept["test_accounts_file"]
    assert "admin_password" not in kept
    assert f"credentials: account {accounts[0]['username']!r}, non-admin; 3 " \
           "pre-provisioned accounts run the tests" in proc.stderr
    for account in accounts:
        assert account["password"] not in proc.stdout + proc.stderr
    assert leftovers(tmp_path / "work") == []
    # plain Tempest with the hand-written conf and the same accounts file counts the same
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(accounts))
    hand = without_admin(keystone)
    hand["auth"].update(test_accounts_file=str(path), use_dynamic_credentials=False)
    c = direct_run(Path(tempest47.template), hand, tmp_path / "direct",
                   ["--regex", SELECTION]).counts()
    assert (c.passed, c.failed, c.skipped, c.classes_skipped) == (
        doc["passed"], doc["failed"], doc["skipped"], doc["classes_skipped"])


@pytest.mark.tempest
@pytest.mark.cloud
def test_refused_credentials_end_error_before_the_discovery(
        tmp_path: Path, worker_cache: Path, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    wrong = "Wrong-disc-pw-5e1a"
    conf = credentials_only(keystone)
    # an unknown user: a wrong admin password would lock the session's admin out
    conf["auth"].update(admin_username="nobody-disc", admin_password=wrong)
    proc = execute(tmp_path, worker_cache, valid(test_id="disc-refused", dry_run=False,
                                                 conf=conf, discover={}))
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["state"] == "error" and doc["message"] == (
        f"preflight: [auth] admin_username, admin_password: Keystone at "
        f"{keystone.public_url}/v3 refused the credentials of user 'nobody-disc' of domain "
        "'Default' on project 'admin' (401)"), doc
    assert "discovering the conf" not in proc.stderr  # python-tempestconf never started
    assert wrong not in proc.stdout + proc.stderr


@pytest.mark.tempest
def test_a_dry_run_does_not_discover(tmp_path: Path, worker_cache: Path,
                                     tempest47: PrepareResult) -> None:
    conf = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"},  # nothing listens
            "auth": {"admin_username": "admin", "admin_password": "pw-dry-1"}}
    proc = execute(tmp_path, worker_cache, valid(test_id="disc-dry", conf=conf, discover={}))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dry run: the conf is not discovered" in proc.stderr
    assert json.loads(proc.stdout)["conf"]["auth"]["admin_password"] == REMOVED


# ---- the needs of a cloud with compute, network and image --------------------------------
class CloudAPIs(QuietHandler):
    """Stand-ins of the compute and network APIs: the flavors and external networks set
    on the class, and the token every request must carry."""

    flavors: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.headers.get("X-Auth-Token") != "tok-1":
            self.send(401, b"{}", "application/json")
        elif urlsplit(self.path).path == "/compute/v2.1/flavors":
            self.send(200, json.dumps({"flavors": self.flavors}).encode(), "application/json")
        elif self.path == "/network/v2.0/networks?router:external=True":
            self.send(200, json.dumps({"networks": self.networks}).encode(),
                      "application/json")
        else:
            self.send(404, b"{}", "application/json")


@pytest.fixture
def apis() -> Iterator[str]:
    CloudAPIs.flavors = [{"id": "f1", "name": "m1.nano"}, {"id": "f2", "name": "m1.micro"}]
    CloudAPIs.networks = [{"id": "net-1", "name": "public"}]
    CloudAPIs.seen = []
    server = Loopback(CloudAPIs)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def catalog(base: str, *kinds: str) -> list[dict[str, Any]]:
    paths = {"compute": "/compute/v2.1", "network": "/network", "image": "/image"}
    return [{"type": kind, "id": f"id-{kind}", "endpoints": [
        {"interface": "internal", "region": "RegionOne", "url": "http://127.0.0.1:9/no"},
        {"interface": "public", "region": "RegionOne", "url": base + paths[kind]}]}
        for kind in kinds]


def needs(base: str, kinds: tuple[str, ...], conf: dict[str, dict[str, str]] | None = None,
          image: Path | None = None, options: dict[str, Any] | None = None,
          accounts: list[dict[str, Any]] | None = None) -> discovery.Needs:
    text = "[identity]\nuri_v3 = http://127.0.0.1:5000/v3\nregion = RegionOne\n"
    if accounts is None:
        text += ("[auth]\nadmin_username = admin\nadmin_password = pw-needs\n"
                 "admin_project_name = a\n")
    for section, values in (conf or {}).items():
        text += f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    parsed = cloud.parse(text)
    creds = discovery.Credentials.choose(parsed, accounts)
    return discovery.check_needs(parsed, catalog(base, *kinds), "tok-1", creds, accounts,
                                 options or {}, image, True, 10.0)


def test_a_cloud_with_everything_is_reported_one_line_each(apis: str, tmp_path: Path) -> None:
    image = tmp_path / "cirros.img"
    image.write_bytes(b"\0" * 1024)
    found = needs(apis, ("compute", "network", "image"), image=image)
    assert found.lines == [
        "credentials: admin 'admin'; Tempest creates the test users",
        "compute: 2 flavors; the discovery picks the two smallest that fit",
        "network: 1 external network(s); the discovery picks one",
        "image: cirros.img from the worker's discovery_image, uploaded if the cloud has no "
        "image of that name"]
    assert found.image == image and not found.image_off
    assert "http://127.0.0.1:9/no" not in " ".join(CloudAPIs.seen)  # the public endpoints


def test_no_image_on_the_worker_turns_the_step_off(apis: str) -> None:
    found = needs(apis, ("image",))
    assert found.image_off and found.lines[-1] == (
        "image: step off (this worker has no discovery_image): [compute] image_ref stays "
        "unset")
    given = needs(apis, ("image",), conf={"compute": {"image_ref": "img-1"}})
    assert not given.image_off and given.lines[-1] == "image: [compute] image_ref of the conf"


def test_too_few_flavors_is_refused_before_the_discovery(apis: str) -> None:
    CloudAPIs.flavors = [{"id": "f1"}]
    with pytest.raises(PreflightError, match=r"^preflight: compute: http://127.0.0.1:\d+/"
                                             r"compute/v2.1 lists 1 flavor\(s\); the discovery "
                                             r"needs two \(or \[compute\] flavor_ref"):
        needs(apis, ("compute",))
    # the conf's own flavors must exist
    CloudAPIs.flavors = [{"id": "f1"}, {"id": "f2"}]
    assert needs(apis, ("compute",), conf={"compute": {"flavor_ref": "f1",
                                                      "flavor_ref_alt": "f2"}}
                 ).lines[1] == "compute: [compute] flavor_ref and flavor_ref_alt of the conf"
    with pytest.raises(PreflightError, match=r"^preflight: \[compute\] flavor_ref: flavor "
                                             r"'f9' is not among the 2"):
        needs(apis, ("compute",), conf={"compute": {"flavor_ref": "f1",
                                                   "flavor_ref_alt": "f9"}})


def test_the_external_network_where_compute_and_network_run(apis: str) -> None:
    CloudAPIs.networks = []
    assert needs(apis, ("compute", "network")).lines[-1] == (
        "network: no external network: [network] public_network_id stays unset (tests "
        "that need floating IPs skip)")
    assert needs(apis, ("network",)).lines[-1].startswith("compute: not in the catalog")
    assert needs(apis, ("network",), options={"network_id": "public"}).lines[-1] == (
        "network: discover.network_id is not used: the catalog has no compute service")
    CloudAPIs.networks = [{"id": "net-1", "name": "public"}]
    assert needs(apis, ("compute", "network"), options={"network_id": "public"}).lines[-1] == \
        "network: external network 'public', as the payload says"
    with pytest.raises(PreflightError, match=r"^preflight: discover.network_id: 'ext' is not "
                                             "an external network of"):
        needs(apis, ("compute", "network"), options={"network_id": "ext"})


def test_one_account_says_the_alt_user_tests_skip(apis: str) -> None:
    one = [{"username": "u1", "password": "pw-one-1", "project_name": "p1"}]
    assert needs(apis, (), accounts=one).lines[0] == (
        "credentials: account 'u1', non-admin; 1 pre-provisioned accounts run the tests "
        "(only one: the tests that need an alt user skip)")
    with pytest.raises(PreflightError, match=r"no accounts: the discovery needs admin"):
        needs(apis, (), accounts=[])


def test_the_discovery_reads_the_cloud_as_the_conf_says(tmp_path: Path) -> None:
    conf = cloud.parse("[identity]\nuri_v3 = https://k.example:5000/v3\nregion = R2\n"
                       "ca_certificates_file = /etc/ca.pem\n[auth]\nadmin_username = a\n"
                       "admin_password = pw-tls-1\nadmin_project_name = p\n")
    creds = discovery.Credentials.choose(conf, None)
    entry = yaml.safe_load(discovery.clouds_yaml(conf, creds))["clouds"][discovery.CLOUD_NAME]
    assert entry == {"auth": {"auth_url": "https://k.example:5000/v3", "username": "a",
                              "password": "pw-tls-1", "user_domain_name": "Default",
                              "project_name": "p", "project_domain_name": "Default"},
                     "identity_api_version": 3, "region_name": "R2", "cacert": "/etc/ca.pem"}
    path = tmp_path / "found.conf"
    path.write_text("[DEFAULT]\ndebug = true\nlog_file = tempest.log\n[oslo-concurrency]\n"
                    "lock_path = /tmp\n[identity]\nRBAC_x = 1\n")
    assert discovery.read_conf(path) == {"identity": {"RBAC_x": "1"}}
    for bad, option in (("[auth]\nadmin_username = a\nadmin_password = pw-x-1\n",
                         "[auth] admin_project_name"), ("", "accounts[0].project_name")):
        with pytest.raises(PreflightError, match=rf"^preflight: {re.escape(option)}: not set"):
            discovery.Credentials.choose(cloud.parse("[identity]\nuri_v3 = http://k/v3\n"
                                                     + bad),
                                         [{"username": "u", "password": "pw-y-1"}])
