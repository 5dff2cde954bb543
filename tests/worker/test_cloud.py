"""The cloud's cpid as the worker finds it, against the real Keystone."""

from __future__ import annotations

import hashlib

import pytest
import requests

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.loopback import free_port
from farm_worker.cloud import discover_cpid, parse, tls_verify
from farm_worker.tempest import conf_text as ini

pytestmark = [pytest.mark.cloud]


def test_the_cpid_is_the_identity_service_in_the_catalog(keystone: Keystone) -> None:
    r = requests.post(f"{keystone.url}/v3/auth/tokens", timeout=30, json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "password": ADMIN_PASSWORD, "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
    expected = next(s["id"] for s in r.json()["token"]["catalog"] if s["type"] == "identity")
    found = discover_cpid(ini(keystone.tempest_conf()))
    assert found is not None and (found.value, found.how) == (expected, "keystone catalog")


def test_what_cannot_be_asked_gives_no_cpid_or_the_hosts_md5(keystone: Keystone) -> None:
    conf = keystone.tempest_conf()
    stranger = {**conf, "auth": {**conf["auth"], "admin_username": "nobody-here"}}
    assert discover_cpid(ini(stranger)) is None  # 401 (an unknown user: nobody locked out)
    away = {**conf, "identity": {"uri_v3": f"http://127.0.0.1:{free_port()}/v3"}}
    assert discover_cpid(ini(away), timeout_s=5) is None
    anonymous = {"identity": {"uri_v3": "https://keystone.cloud.example:5000/v3"}}
    found = discover_cpid(ini(anonymous))
    md5 = hashlib.md5(b"keystone.cloud.example", usedforsecurity=False).hexdigest()
    assert found is not None and (found.value, found.how) == (
        md5, "md5 of keystone.cloud.example")
    assert discover_cpid(ini({"auth": {"admin_username": "a"}})) is None


@pytest.mark.parametrize(("identity", "verify"), [
    ({}, True),
    ({"ca_certificates_file": "/etc/ssl/cloud-ca.pem"}, "/etc/ssl/cloud-ca.pem"),
    ({"disable_ssl_certificate_validation": "True", "ca_certificates_file": "/x.pem"}, False),
    ({"disable_ssl_certificate_validation": "maybe"}, True),  # not a boolean: stays on
])
def test_tls_follows_the_identity_options(identity: dict[str, str], verify: bool | str) -> None:
    conf = parse(ini({"identity": {"uri_v3": "https://cloud.test:5000/v3", **identity}}))
    assert tls_verify(conf) == verify
