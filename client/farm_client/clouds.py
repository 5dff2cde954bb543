"""A cloud from clouds.yaml (or the OS_* variables) as a tempest.conf layer, for
`farm submit --os-cloud NAME`.

Found the way openstacksdk finds it: the first that exists of $OS_CLIENT_CONFIG_FILE,
./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml, with the
matching secure.yaml ($OS_CLIENT_SECURE_FILE, ./secure.yaml, ...) merged over it (where
passwords are kept apart). The cloud `envvars` is the one the OS_* variables describe
(OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, ...), as openstacksdk names it.

The cloud's user becomes Tempest's admin credentials (`[auth] admin_*`, so Tempest makes
its own test users), or with `as_account` a pre-provisioned account with the member role
(for a cloud where the user is not an admin). The auth URL becomes `[identity] uri_v3`,
the region and interface `[identity] region` and `v3_endpoint_type`, `verify: false`
disables TLS verification.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from farm_client.exceptions import FarmClientError

ENV_CLOUD = "envvars"
_DIRS = (Path("."), Path("~/.config/openstack"), Path("/etc/openstack"))
# OS_* variable -> the key of a cloud's `auth` (or of the cloud itself)
_AUTH_VARS = {"OS_AUTH_URL": "auth_url", "OS_USERNAME": "username", "OS_PASSWORD": "password",
              "OS_PROJECT_NAME": "project_name", "OS_TENANT_NAME": "project_name",
              "OS_USER_DOMAIN_NAME": "user_domain_name",
              "OS_PROJECT_DOMAIN_NAME": "project_domain_name",
              "OS_DOMAIN_NAME": "domain_name", "OS_SYSTEM_SCOPE": "system_scope"}
_CLOUD_VARS = {"OS_REGION_NAME": "region_name", "OS_INTERFACE": "interface",
               "OS_INSECURE": "insecure"}
REQUIRED = ("auth_url", "username", "password")


class CloudError(FarmClientError):
    """A cloud that cannot be used: not found, or a key missing; `field` is the flag."""

    field = "--os-cloud"


def _first(env_var: str, name: str, environ: Mapping[str, str]) -> Path | None:
    if environ.get(env_var):
        return Path(environ[env_var]).expanduser()
    return next((p for p in ((d / name).expanduser() for d in _DIRS) if p.is_file()), None)


def _read(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise CloudError(f"--os-cloud: {path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise CloudError(f"--os-cloud: {path}: not valid YAML: "
                         f"{str(exc).splitlines()[0]}") from None
    clouds = doc.get("clouds") if isinstance(doc, dict) else None
    if not isinstance(clouds, dict):
        raise CloudError(f"--os-cloud: {path}: has no `clouds:` mapping")
    return clouds


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and \
            isinstance(out.get(key), Mapping) else value
    return out


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    auth = {key: environ[var] for var, key in _AUTH_VARS.items() if environ.get(var)}
    cloud: dict[str, Any] = {key: environ[var] for var, key in _CLOUD_VARS.items()
                             if environ.get(var)}
    if not auth:
        raise CloudError(f"--os-cloud: {ENV_CLOUD}: no OS_* variable is set (OS_AUTH_URL, "
                         "OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, ...)")
    return {**cloud, "auth": auth}


def find_cloud(name: str, environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any],
                                                                              str]:
    """The cloud `name` with secure.yaml merged, and where it came from."""
    env = os.environ if environ is None else environ
    if name == ENV_CLOUD:
        return _from_environ(env), "the OS_* variables"
    path = _first("OS_CLIENT_CONFIG_FILE", "clouds.yaml", env)
    if path is None or not path.is_file():
        searched = ", ".join(["$OS_CLIENT_CONFIG_FILE", *(str(d / "clouds.yaml")
                                                         for d in _DIRS)])
        raise CloudError(f"--os-cloud: {name!r}: no clouds.yaml"
                         + (f" at {path} ($OS_CLIENT_CONFIG_FILE)" if path else "")
                         + f" (searched {searched}); or use --os-cloud {ENV_CLOUD} with the "
                           "OS_* variables")
    clouds = _read(path)
    if name not in clouds:
        raise CloudError(f"--os-cloud: {name!r} is not a cloud of {path} (it has: "
                         + (", ".join(sorted(map(str, clouds))) or "none") + ")")
    cloud = clouds[name] if isinstance(clouds[name], dict) else {}
    where = str(path)
    secure = _first("OS_CLIENT_SECURE_FILE", "secure.yaml", env)
    if secure is not None and secure.is_file():
        extra = _read(secure).get(name)
        if isinstance(extra, dict):
            cloud = _merge(cloud, extra)
            where += f" + {secure}"
    return cloud, where


def _truth(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def add_cloud(doc: dict[str, Any], name: str, *, as_account: bool = False,
              environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The payload document `doc` with the cloud under its conf (the conf's own values
    win) and, with `as_account`, the cloud's user as its accounts."""
    layer, accounts = cloud_layers(name, as_account=as_account, environ=environ)
    given = doc.get("conf")
    conf: dict[str, Any] = given if isinstance(given, dict) else {}
    merged = {section: dict(values) for section, values in layer.items()}
    for section, values in conf.items():
        merged[section] = {**merged.get(section, {}), **(values or {})}
    out = {**doc, "conf": merged}
    if accounts:
        out["accounts"] = accounts
    return out


def cloud_layers(name: str, *, as_account: bool = False,
                 environ: Mapping[str, str] | None = None
                 ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]] | None]:
    """The cloud as a tempest.conf layer, and (with `as_account`) as the one
    pre-provisioned account; errors name the cloud and the missing key."""
    cloud, where = find_cloud(name, environ)
    found = cloud.get("auth")
    auth: dict[str, Any] = found if isinstance(found, dict) else {}
    missing = [f"auth.{k}" for k in REQUIRED if not auth.get(k)]
    if missing:
        raise CloudError(f"--os-cloud: {name!r} ({where}): {', '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not set"
                         + (" (nor in secure.yaml)" if "auth.password" in missing else ""))
    url = str(auth["auth_url"]).rstrip("/")
    uri_v3 = url if url.endswith("/v3") else f"{url}/v3"
    identity: dict[str, Any] = {"uri_v3": uri_v3, "auth_version": "v3"}
    if cloud.get("region_name"):
        identity["region"] = str(cloud["region_name"])
    if cloud.get("interface"):
        identity["v3_endpoint_type"] = str(cloud["interface"])
    if cloud.get("verify") is False or _truth(cloud.get("insecure", "")):
        identity["disable_ssl_certificate_validation"] = True
    user_domain = auth.get("user_domain_name") or auth.get("domain_name") or "Default"
    project_domain = auth.get("project_domain_name") or auth.get("domain_name") or "Default"
    conf: dict[str, dict[str, Any]] = {"identity": identity}
    if as_account:
        # the member role: what Tempest asks of its primary (and alt) credentials
        account: dict[str, Any] = {"username": str(auth["username"]),
                                   "password": str(auth["password"]),
                                   "user_domain_name": str(user_domain), "roles": ["member"]}
        if auth.get("project_name"):
            account.update(project_name=str(auth["project_name"]),
                           project_domain_name=str(project_domain))
        return conf, [account]
    admin = {"admin_username": str(auth["username"]), "admin_password": str(auth["password"]),
             "admin_user_domain_name": str(user_domain), "admin_domain_name": str(user_domain)}
    if auth.get("project_name"):
        admin.update(admin_project_name=str(auth["project_name"]),
                     admin_project_domain_name=str(project_domain))
    elif auth.get("system_scope"):
        admin["admin_system"] = str(auth["system_scope"])
    conf["auth"] = {"use_dynamic_credentials": True, **admin}
    return conf, None
