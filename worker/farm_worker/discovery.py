"""tempest.conf discovered with python-tempestconf, in the job's own environment.

The payload's conf gives the cloud ([identity] uri_v3) and the credentials to look at it
with (the admin's, else the first pre-provisioned account); python-tempestconf, locked with
the job's Tempest version, asks the cloud what it runs (services, API versions and
extensions, flavors, networks, images) and writes a tempest.conf. The payload's conf is the
discovery's deployer input (python-tempestconf keeps those values over what it finds) and is
merged over the result again by the job, so what the payload says always wins.

Nothing comes from the internet: python-tempestconf's default image URL is refused; a
cloud with an image service gets the worker's `discovery_image` (a local file), or the image
step is turned off and the run says so. Everything is written in the job's private
directory with mode 0600 and removed with it. Before the discovery, `check_needs` reports
what it needs in one line each and refuses a cloud it cannot work against.
"""

from __future__ import annotations

import configparser
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from farm_worker import cloud, tempest
from farm_worker.building import SHIM
from farm_worker.exceptions import TempestError
from farm_worker.preflight import PreflightError
from farm_worker.protocol import Conf

log = logging.getLogger(__name__)

CLOUD_NAME = "refstack-farm-job"
# not taken over from what python-tempestconf writes: the paths and the logging, which are
# the worker's (its debug = true would log every request of the run)
_DROPPED = ("DEFAULT", "oslo-concurrency", "oslo_concurrency")


@dataclass
class Needs:
    """What the discovery will work with, one line each, and the choices made."""

    lines: list[str] = field(default_factory=list)
    image: Path | None = None  # the image to upload, if the cloud has an image service
    image_off: bool = False


@dataclass(frozen=True)
class Credentials:
    """Whom the discovery looks at the cloud as."""

    admin: bool
    auth: dict[str, str]  # clouds.yaml `auth` (openstacksdk's names)
    who: str

    @classmethod
    def choose(cls, conf: configparser.RawConfigParser,
               accounts: list[dict[str, Any]] | None) -> Credentials:
        uri = cloud.get_option(conf, "identity", "uri_v3")
        if not uri:
            raise PreflightError("[identity] uri_v3",
                                 "is not set: the discovery needs the cloud's Keystone")
        user = cloud.get_option(conf, "auth", "admin_username")
        password = cloud.get_option(conf, "auth", "admin_password")
        if user and password:
            domain = cloud.get_option(conf, "auth", "admin_user_domain_name",
                                      "admin_domain_name") or "Default"
            auth = {"auth_url": uri, "username": user, "password": password,
                    "user_domain_name": domain}
            project = cloud.get_option(conf, "auth", "admin_project_name")
            if not project:
                raise PreflightError("[auth] admin_project_name",
                                     "not set: the discovery logs in to the admin's project")
            auth["project_name"] = project
            auth["project_domain_name"] = cloud.get_option(
                conf, "auth", "admin_project_domain_name", "admin_domain_name") or "Default"
            return cls(True, auth, f"admin {user!r}")
        if not accounts:
            raise PreflightError("[auth] admin_username, admin_password",
                                 "not set, and no accounts: the discovery needs admin "
                                 "credentials or pre-provisioned accounts")
        first = accounts[0]
        auth = {"auth_url": uri, "username": str(first["username"]),
                "password": str(first["password"]),
                "user_domain_name": str(first.get("user_domain_name") or "Default")}
        project = first.get("project_name") or first.get("tenant_name")
        if not project:
            raise PreflightError("accounts[0].project_name",
                                 "not set: the discovery logs in to the account's project")
        auth["project_name"] = str(project)
        auth["project_domain_name"] = str(first.get("project_domain_name") or "Default")
        return cls(False, auth, f"account {first['username']!r}")


def _endpoint(catalog: list[dict[str, Any]], kind: str, region: str | None) -> str | None:
    """The public URL of a service type in a token's catalog."""
    for service in catalog:
        if service.get("type") != kind:
            continue
        for ep in service.get("endpoints") or []:
            if isinstance(ep, dict) and ep.get("interface") == "public" and ep.get("url") \
                    and (not region or ep.get("region") in (None, region)):
                return str(ep["url"]).rstrip("/")
    return None


def _get(url: str, token: str, verify: bool | str, timeout_s: float, what: str) -> Any:
    try:
        resp = requests.get(url, headers={"X-Auth-Token": token, "Accept": "application/json"},
                            timeout=timeout_s, verify=verify)
    except requests.RequestException as exc:
        raise PreflightError(what, f"{url} does not answer ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise PreflightError(what, f"{url} answered {resp.status_code}")
    try:
        return resp.json()
    except ValueError:
        raise PreflightError(what, f"{url} answered without JSON") from None


def check_needs(conf: configparser.RawConfigParser, catalog: list[dict[str, Any]], token: str,
                creds: Credentials, accounts: list[dict[str, Any]] | None,
                options: Mapping[str, Any], image: Path | None, verify: bool | str,
                timeout_s: float) -> Needs:
    """The discovery's needs, checked against the cloud's catalog (one line each): whom it
    looks as and the test users, two flavors where compute runs, an external network where
    compute and network do, the image where there is an image service."""
    needs = Needs()
    if creds.admin:
        extra = f"; {len(accounts)} pre-provisioned accounts run the tests" if accounts else \
            "; Tempest creates the test users"
        needs.lines.append(f"credentials: {creds.who}{extra}")
    else:
        assert accounts
        alt = "" if len(accounts) > 1 else \
            " (only one: the tests that need an alt user skip)"
        needs.lines.append(f"credentials: {creds.who}, non-admin; {len(accounts)} "
                           f"pre-provisioned accounts run the tests{alt}")
    region = cloud.get_option(conf, "identity", "region")
    types = {str(s.get("type")) for s in catalog}
    compute = _endpoint(catalog, "compute", region)
    if compute:
        needs.lines.append(_flavors(conf, compute, token, verify, timeout_s))
    else:
        needs.lines.append("compute: not in the catalog; no flavors needed")
    network = _endpoint(catalog, "network", region)
    if network and compute:
        needs.lines.append(_external_network(network, token, verify, timeout_s,
                                             options.get("network_id")))
    elif options.get("network_id"):
        needs.lines.append("network: discover.network_id is not used: the catalog has no "
                           + ("network" if compute else "compute") + " service")
    if "image" in types:
        if cloud.get_option(conf, "compute", "image_ref"):
            needs.lines.append("image: [compute] image_ref of the conf")
        elif image is not None:
            needs.image = image
            needs.lines.append(f"image: {image.name} from the worker's discovery_image, "
                               "uploaded if the cloud has no image of that name")
        else:
            needs.image_off = True
            needs.lines.append("image: step off (this worker has no discovery_image): "
                               "[compute] image_ref stays unset")
    return needs


def _flavors(conf: configparser.RawConfigParser, url: str, token: str, verify: bool | str,
             timeout_s: float) -> str:
    given = [cloud.get_option(conf, "compute", key) for key in ("flavor_ref", "flavor_ref_alt")]
    found = _get(f"{url}/flavors", token, verify, timeout_s, "compute").get("flavors") or []
    ids = {str(f.get("id")) for f in found if isinstance(f, dict)}
    if all(given):
        missing = [g for g in given if g not in ids]
        if missing:
            raise PreflightError("[compute] flavor_ref", f"flavor {missing[0]!r} is not "
                                                         f"among the {len(ids)} of {url}")
        return "compute: [compute] flavor_ref and flavor_ref_alt of the conf"
    if len(ids) < 2:
        raise PreflightError("compute", f"{url} lists {len(ids)} flavor(s); the discovery "
                                        "needs two (or [compute] flavor_ref and "
                                        "flavor_ref_alt in the conf)")
    return f"compute: {len(ids)} flavors; the discovery picks the two smallest that fit"


def _external_network(url: str, token: str, verify: bool | str, timeout_s: float,
                      wanted: str | None) -> str:
    nets = _get(f"{url}/v2.0/networks?router:external=True", token, verify, timeout_s,
                "network").get("networks") or []
    names = {str(n.get(k)) for n in nets if isinstance(n, dict) for k in ("id", "name")}
    if wanted:
        if wanted not in names:
            raise PreflightError("discover.network_id", f"{wanted!r} is not an external "
                                                        f"network of {url}")
        return f"network: external network {wanted!r}, as the payload says"
    if not nets:
        return ("network: no external network: [network] public_network_id stays unset "
                "(tests that need floating IPs skip)")
    return f"network: {len(nets)} external network(s); the discovery picks one"


def _write_private(path: Path, text: str) -> Path:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def clouds_yaml(conf: configparser.RawConfigParser, creds: Credentials) -> str:
    """The one cloud the discovery reads (openstacksdk's clouds.yaml), TLS as the conf's
    [identity] options say."""
    entry: dict[str, Any] = {"auth": creds.auth, "identity_api_version": 3}
    region = cloud.get_option(conf, "identity", "region")
    if region:
        entry["region_name"] = region
    verify = cloud.tls_verify(conf)
    if verify is False:
        entry["verify"] = False
    elif isinstance(verify, str):
        entry["cacert"] = verify
    return yaml.safe_dump({"clouds": {CLOUD_NAME: entry}}, default_flow_style=False)


def discover_argv(ws: tempest.Workspace, work: Path, creds: Credentials,
                  accounts_file: Path | None, options: Mapping[str, Any],
                  needs: Needs) -> list[str]:
    argv = [str(ws.env / "bin" / "python"), "-I", str(SHIM), "--os-cloud", CLOUD_NAME,
            "--out", str(work / "tempest.conf"), "--deployer-input",
            str(work / "deployer-input.conf"), "--no-default-deployer"]
    if not creds.admin:
        argv.append("--non-admin")
    if accounts_file is not None:
        argv += ["--test-accounts", str(accounts_file)]
    if options.get("network_id"):
        argv += ["--network-id", str(options["network_id"])]
    for key in ("flavor_min_mem", "flavor_min_disk"):
        if key in options:
            argv += [f"--{key.replace('_', '-')}", str(options[key])]
    if needs.image is not None:
        argv += ["--image", str(needs.image)]
    elif needs.image_off:
        argv.append("--farm-no-image")
    return argv


def read_conf(path: Path) -> Conf:
    """The discovered tempest.conf as a conf layer, without what the worker owns."""
    parser = configparser.RawConfigParser(interpolation=None, default_section="__none__")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, configparser.Error) as exc:
        raise TempestError(f"discovery: cannot read the conf it wrote: {exc}") from None
    return {section: dict(parser.items(section)) for section in parser.sections()
            if section not in _DROPPED and parser.items(section)}


def discover(ws: tempest.Workspace, conf_text: str, creds: Credentials,
             accounts_file: Path | None, options: Mapping[str, Any], needs: Needs,
             timeout_s: float, cancel: threading.Event | None = None,
             deadline: float | None = None) -> Conf:
    """Run python-tempestconf in the job's environment; the conf layer it found."""
    work = ws.job_dir / "discovery"
    work.mkdir(mode=0o700, exist_ok=True)
    conf = cloud.parse(conf_text)
    _write_private(work / "clouds.yaml", clouds_yaml(conf, creds))
    _write_private(work / "deployer-input.conf", conf_text)
    env = ws.environ({"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml"),
                      "TEMPEST_CONFIG_DIR": str(work), "TEMPEST_CONFIG": "none.conf"})
    argv = discover_argv(ws, work, creds, accounts_file, options, needs)
    log.info("discovering tempest.conf: %s", " ".join(argv[3:]))
    tempest.run_short(argv, cwd=work, env=env, what="the conf discovery", timeout_s=timeout_s,
                      cancel=cancel, deadline=deadline, log_file=ws.logs / "discovery.log")
    return read_conf(work / "tempest.conf")
