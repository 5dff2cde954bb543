"""Before Tempest lists a single test: is the cloud the conf points at there, does it take
the conf's credentials, does its catalog have the services the conf enables?

A conf that fails here would fail every test, minutes later and hundreds of times over (a
wrong password fails each class in setUpClass); checked first, the run ends `error` in a
second with one line that names the option to fix. What is checked, in order, with one
deadline per request (`preflight_timeout_s`):

1. `[identity] uri_v3` is set, an http(s) URL, and answers with Keystone's v3 version
   document (TLS as the conf says: `disable_ssl_certificate_validation`,
   `ca_certificates_file`).
2. The credentials Tempest will need are there: with `use_dynamic_credentials` (Tempest's
   default) the admin user and password; without it, a `test_accounts_file`.
3. One token request with the admin credentials (the same request refstack-client makes
   for the cloud's id), or without them with the job's first pre-provisioned account:
   refused credentials end the run here. A single attempt, so a
   wrong password costs one failed login, not one per test class (Keystone's lockout).
4. The token's catalog has a service for each core service `[service_available]`
   enables: one the conf sets to true and the catalog lacks ends the run; one that is on
   only by Tempest's default is named in the run's history (an identity-only selection
   runs fine on a cloud without compute).

The catalog's identity service gives the cloud's RefStack id (cpid) with no second token
request. No password or token is logged or put into a message.
"""

from __future__ import annotations

import configparser
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from farm_worker import cloud
from farm_worker.exceptions import TempestError

log = logging.getLogger(__name__)

TRUE, FALSE = cloud.TRUE, cloud.FALSE

# [service_available] option -> the section whose catalog_type names it, Tempest's default
# catalog type, and other types a catalog may list it under. Tempest enables all five by
# default; plugins' services are not in the worker's environments.
CORE_SERVICES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "nova": ("compute", "compute", ()),
    "cinder": ("volume", "volumev3", ("block-storage", "volume")),
    "glance": ("image", "image", ()),
    "swift": ("object-storage", "object-store", ()),
    "neutron": ("network", "network", ()),
}


class PreflightError(TempestError):
    """The conf cannot work against its cloud; `option` names what to fix."""

    def __init__(self, option: str, message: str):
        self.option = option
        super().__init__(f"preflight: {option}: {message}")


@dataclass
class Checked:
    """What the preflight found: the cloud's id, and what is worth a line in the history."""

    identity: str
    cpid: cloud.Cpid | None = None
    notes: list[str] = field(default_factory=list)


def _flag(conf: configparser.RawConfigParser, section: str, key: str, default: bool) -> bool:
    value = cloud.get_option(conf, section, key)
    if value is None:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise PreflightError(f"[{section}] {key}", f"{value!r} is not a boolean")


def _verify(conf: configparser.RawConfigParser) -> bool | str:
    _flag(conf, "identity", "disable_ssl_certificate_validation", False)  # a bad value fails
    return cloud.tls_verify(conf)


def _unreachable(exc: requests.RequestException, timeout_s: float) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (set [identity] ca_certificates_file, or " \
               "disable_ssl_certificate_validation)"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        for known in ("Connection refused", "Name or service not known", "No route to host",
                      "Network is unreachable", "Temporary failure in name resolution"):
            if known in text:
                return known[0].lower() + known[1:]
        return "cannot connect"
    return type(exc).__name__


def _identity_url(conf: configparser.RawConfigParser) -> str:
    option = "[identity] uri_v3"
    uri = cloud.get_option(conf, "identity", "uri_v3")
    if not uri:
        raise PreflightError(option, "is not set: Tempest has no cloud to talk to")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PreflightError(option, f"{uri!r} is not an http(s) URL")
    return uri.rstrip("/")


def _version_document(uri: str, verify: bool | str, timeout_s: float) -> None:
    option = "[identity] uri_v3"
    try:
        resp = requests.get(uri, timeout=timeout_s, verify=verify,
                            headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise PreflightError(option, f"{uri} does not answer "
                                     f"({_unreachable(exc, timeout_s)})") from None
    try:
        version = resp.json().get("version", {}).get("id", "")
    except (ValueError, AttributeError):
        version = ""
    if resp.status_code >= 400 or not str(version).startswith("v3"):
        raise PreflightError(option, f"{uri} answered {resp.status_code} without a Keystone "
                                     "v3 version document: not an identity v3 endpoint")


def _credentials(conf: configparser.RawConfigParser) -> dict[str, Any] | None:
    """The token request to make, or None when the conf uses pre-provisioned accounts."""
    body = cloud.token_request(conf)
    dynamic = _flag(conf, "auth", "use_dynamic_credentials", True)
    if dynamic and body is None:
        missing = [k for k in ("admin_username", "admin_password")
                   if not cloud.get_option(conf, "auth", k)]
        raise PreflightError(f"[auth] {' and '.join(missing)}",
                             "not set: use_dynamic_credentials (Tempest's default) needs "
                             "admin credentials to create the test users")
    if not dynamic and not cloud.get_option(conf, "auth", "test_accounts_file"):
        raise PreflightError("[auth] test_accounts_file",
                             "not set: with use_dynamic_credentials = false Tempest needs "
                             "pre-provisioned accounts")
    return body


def _who(body: dict[str, Any]) -> str:
    """`user 'admin' of domain 'Default' on project 'admin'`, from a token request."""
    user = body["auth"]["identity"]["password"]["user"]
    project = body["auth"].get("scope", {}).get("project", {}).get("name")
    return (f"user {user['name']!r} of domain {user['domain']['name']!r}"
            + (f" on project {project!r}" if project else ""))


def _token(uri: str, body: dict[str, Any], option: str, verify: bool | str,
           timeout_s: float) -> tuple[str, list[dict[str, Any]]]:
    """The token and its catalog (empty for an unscoped token); `option` is what to fix
    when the credentials are refused."""
    try:
        resp = cloud.post_token(uri, body, verify, timeout_s)
    except requests.RequestException as exc:
        raise PreflightError("[identity] uri_v3", f"{uri}/auth/tokens does not answer "
                                                  f"({_unreachable(exc, timeout_s)})") from None
    if resp.status_code == 401:
        raise PreflightError(option, f"Keystone at {uri} refused the credentials of "
                                     f"{_who(body)} (401)")
    if resp.status_code != 201:
        try:
            detail = str(resp.json()["error"]["message"])[:200]
        except (ValueError, KeyError, TypeError):
            detail = resp.reason or ""
        raise PreflightError(option.split(" ", 1)[0], f"Keystone at {uri} refused the token "
                                                      f"request for {_who(body)} "
                                                      f"({resp.status_code}: {detail})")
    return resp.headers.get("X-Subject-Token", ""), cloud.catalog_of(resp)


@dataclass
class Login:
    """A token of the cloud the conf points at, for the checks that need one."""

    uri: str
    verify: bool | str
    token: str
    catalog: list[dict[str, Any]]


def login(conf: configparser.RawConfigParser, body: dict[str, Any], option: str,
          timeout_s: float) -> Login:
    """The identity endpoint checked, and one token request with `body` (refused
    credentials name `option`)."""
    uri = _identity_url(conf)
    verify = _verify(conf)
    _version_document(uri, verify, timeout_s)
    token, catalog = _token(uri, body, option, verify, timeout_s)
    return Login(uri, verify, token, catalog)


def _services(conf: configparser.RawConfigParser, catalog: list[Any], uri: str) -> list[str]:
    """The notes for default-enabled services the catalog lacks; an error for one the conf
    enables."""
    types = {str(s.get("type")) for s in catalog}
    notes = []
    for option, (section, default_type, aliases) in CORE_SERVICES.items():
        explicit = cloud.get_option(conf, "service_available", option)
        if not _flag(conf, "service_available", option, True):
            continue
        wanted = cloud.get_option(conf, section, "catalog_type") or default_type
        if wanted in types or (wanted == default_type and types & set(aliases)):
            continue
        if explicit is not None:
            raise PreflightError(f"[service_available] {option}",
                                 f"is true but the catalog of {uri} has no {wanted!r} "
                                 f"service (it has: {', '.join(sorted(types)) or 'none'}); "
                                 f"set it to false or [{section}] catalog_type")
        notes.append(f"{option} ({wanted})")
    return notes


def check(conf_text: str, timeout_s: float,
          accounts: list[dict[str, Any]] | None = None) -> Checked:
    """Check the rendered tempest.conf (and the job's pre-provisioned accounts) against its
    cloud; PreflightError when it cannot work."""
    conf = cloud.parse(conf_text)
    uri = _identity_url(conf)
    verify = _verify(conf)
    _version_document(uri, verify, timeout_s)
    checked = Checked(identity=uri)
    body, option = _credentials(conf), "[auth] admin_username, admin_password"
    if body is None and accounts:  # the first account stands for them all
        body, option = cloud.account_token_request(accounts[0]), "accounts[0]"
    if body is None:
        checked.notes.append("credentials not checked: pre-provisioned accounts")
        return checked
    _token_id, catalog = _token(uri, body, option, verify, timeout_s)
    if not catalog:
        checked.notes.append("services not checked: the admin token has no catalog "
                             "(unscoped: set admin_project_name or admin_system)")
    else:
        missing = _services(conf, catalog, uri)
        if missing:
            checked.notes.append("not in the catalog, enabled by Tempest's default only: "
                                 + ", ".join(missing))
    checked.cpid = cloud.cpid_from(catalog, uri)
    return checked
