"""The cloud's RefStack id (cpid), found the way refstack-client finds it.

The cpid is the id of the identity service in the Keystone v3 catalog, read from a token
made with the run's admin credentials (tempest.conf [auth] admin_*). When the catalog has
no identity service (or the conf has no admin credentials), it is the MD5 of the identity
endpoint's host name (refstack-client's fallback); a Keystone that is unreachable or refuses
the credentials gives none. The worker asks once per run, after Tempest, and sends the
answer with the results; a cloud it cannot ask gives no cpid (an upload then needs one
given), never a failed run. The password goes only to Keystone; nothing here logs it.
"""

from __future__ import annotations

import configparser
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests

log = logging.getLogger(__name__)
TRUE = {"true", "yes", "on", "1"}  # the booleans oslo.config reads
FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Cpid:
    value: str
    how: str  # "keystone catalog" or "md5 of <host>"


def parse(text: str) -> configparser.RawConfigParser:
    """A rendered tempest.conf, read as Tempest reads it (no interpolation)."""
    parser = configparser.RawConfigParser(interpolation=None, default_section="__none__")
    parser.read_string(text)
    return parser


def sections(text: str) -> dict[str, dict[str, str]]:
    """A rendered tempest.conf as {section: {key: value}}, keys as written."""
    conf = configparser.RawConfigParser(interpolation=None, default_section="__none__")
    conf.optionxform = str  # type: ignore[assignment,method-assign]
    conf.read_string(text)
    return {section: dict(conf.items(section)) for section in conf.sections()}


def get_option(conf: configparser.RawConfigParser, section: str, *keys: str) -> str | None:
    """The first of `keys` set (not blank) in `section`."""
    for key in keys:
        if conf.has_option(section, key) and conf.get(section, key).strip():
            return conf.get(section, key).strip()
    return None


def cpid_from(catalog: list[Any], uri: str) -> Cpid | None:
    """The cpid from a token's catalog, else from the identity endpoint's host name."""
    for service in catalog:
        if isinstance(service, dict) and service.get("type") == "identity" \
                and service.get("id"):
            return Cpid(str(service["id"]), "keystone catalog")
    host = urlparse(uri).hostname
    if not host:
        return None
    return Cpid(hashlib.md5(host.encode(), usedforsecurity=False).hexdigest(),
                f"md5 of {host}")


def tls_verify(conf: configparser.RawConfigParser) -> bool | str:
    """requests' `verify` for the identity service, as Tempest's [identity] options say (a
    value that is not a boolean leaves validation on)."""
    disabled = (get_option(conf, "identity", "disable_ssl_certificate_validation") or "")
    if disabled.lower() in TRUE:
        return False
    return get_option(conf, "identity", "ca_certificates_file") or True


def post_token(uri: str, body: dict[str, Any], verify: bool | str,
               timeout_s: float) -> requests.Response:
    """POST {uri}/auth/tokens; requests' exceptions pass through."""
    return requests.post(uri.rstrip("/") + "/auth/tokens", json=body, timeout=timeout_s,
                         verify=verify)


def catalog_of(resp: requests.Response) -> list[dict[str, Any]]:
    """The services of a token answer's catalog (none for an unscoped token)."""
    try:
        catalog = resp.json()["token"].get("catalog") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        return []
    return [s for s in catalog if isinstance(s, dict)] if isinstance(catalog, list) else []


def password_auth(user: str, password: str, domain: str | None, project: str | None,
                  project_domain: str | None, system: bool,
                  scope_domain: str | None = None) -> dict[str, Any]:
    """A Keystone v3 password-auth body, scoped to the project (or the domain, or the
    system) if any."""
    ident = {"methods": ["password"], "password": {"user": {
        "name": user, "password": password, "domain": {"name": domain or "Default"}}}}
    if project:
        scope: dict[str, Any] = {"project": {"name": project,
                                             "domain": {"name": project_domain or "Default"}}}
    elif scope_domain:
        scope = {"domain": {"name": scope_domain}}
    elif system:
        scope = {"system": {"all": True}}
    else:
        return {"auth": {"identity": ident}}
    return {"auth": {"identity": ident, "scope": scope}}


def token_request(conf: configparser.RawConfigParser) -> dict[str, Any] | None:
    """The v3 password-auth body for the admin credentials, or None when there are none."""
    user = get_option(conf, "auth", "admin_username")
    password = get_option(conf, "auth", "admin_password")
    if not user or not password:
        return None
    return password_auth(
        user, password, get_option(conf, "auth", "admin_user_domain_name", "admin_domain_name"),
        get_option(conf, "auth", "admin_project_name"),
        get_option(conf, "auth", "admin_project_domain_name", "admin_domain_name"),
        bool(get_option(conf, "auth", "admin_system")))


def account_token_request(account: Mapping[str, Any]) -> dict[str, Any]:
    """The v3 password-auth body for a pre-provisioned account (accounts.yaml's keys: a
    project, a domain (`domain_name`) or the system as its scope)."""
    return password_auth(str(account["username"]), str(account["password"]),
                         account.get("user_domain_name"),
                         account.get("project_name") or account.get("tenant_name"),
                         account.get("project_domain_name"), bool(account.get("system")),
                         account.get("domain_name"))


def discover_cpid(conf_text: str, timeout_s: float = 15.0) -> Cpid | None:
    """The cpid for the cloud tempest.conf points at; None when it cannot be found."""
    conf = parse(conf_text)
    uri = get_option(conf, "identity", "uri_v3")
    if not uri:
        log.info("no cpid: tempest.conf has no [identity] uri_v3")
        return None
    body = token_request(conf)
    catalog: list[dict[str, Any]] = []
    if body is not None:
        try:
            resp = post_token(uri, body, tls_verify(conf), timeout_s)
        except requests.RequestException as exc:
            log.warning("no cpid: %s unreachable (%s)", uri, type(exc).__name__)
            return None
        if resp.status_code != 201:
            log.warning("no cpid: %s answered %s to the admin credentials", uri,
                        resp.status_code)
            return None
        catalog = catalog_of(resp)
        if not any(s.get("type") == "identity" for s in catalog):
            log.info("no identity service in the catalog of %s", uri)
    return cpid_from(catalog, uri)
