"""The conf checked against its cloud before Tempest starts: the real Keystone, a port
nobody listens on, a server that is not Keystone, one that never answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.loopback import Loopback, QuietHandler, Silent, free_port
from farm_worker.preflight import PreflightError, check
from farm_worker.tempest import conf_text

pytestmark = [pytest.mark.cloud]
WRONG = "Wrong-pw-preflight-5521"


def with_(conf: dict[str, dict[str, Any]], **sections: dict[str, Any]) -> str:
    """`conf` with some options changed (None: removed), as tempest.conf text."""
    out = {name: dict(values) for name, values in conf.items()}
    for name, values in sections.items():
        section = out.setdefault(name, {})
        for key, value in values.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
    return conf_text(out)


def refused(text: str, timeout_s: float = 15) -> str:
    with pytest.raises(PreflightError) as err:
        check(text, timeout_s)
    message = str(err.value)
    assert "\n" not in message and WRONG not in message and ADMIN_PASSWORD not in message
    return message


def test_a_working_conf_passes_and_gives_the_cpid(keystone: Keystone) -> None:
    checked = check(conf_text(keystone.tempest_conf()), 15)
    assert checked.identity == f"{keystone.public_url}/v3"
    assert checked.cpid is not None and checked.cpid.how == "keystone catalog"
    assert checked.notes == []


def test_services_on_by_tempests_default_are_noted(keystone: Keystone) -> None:
    conf = keystone.tempest_conf()
    del conf["service_available"]
    checked = check(conf_text(conf), 15)
    assert checked.notes == ["not in the catalog, enabled by Tempest's default only: "
                             "nova (compute), cinder (volumev3), glance (image), "
                             "swift (object-store), neutron (network)"]


def test_a_service_the_conf_enables_must_be_in_the_catalog(keystone: Keystone) -> None:
    conf = keystone.tempest_conf()
    message = refused(with_(conf, service_available={"nova": True}))
    assert message == (
        f"preflight: [service_available] nova: is true but the catalog of "
        f"{keystone.public_url}/v3 has no 'compute' service (it has: identity); set it to "
        "false or [compute] catalog_type")
    # the conf's own catalog type is what is looked for
    check(with_(conf, service_available={"nova": True}, compute={"catalog_type": "identity"}),
          15)


def test_refused_credentials_end_it_without_the_password(keystone: Keystone) -> None:
    conf = keystone.tempest_conf(password=WRONG)
    # an unknown user: a wrong admin password would count towards Keystone's lockout
    message = refused(with_(conf, auth={"admin_username": "nobody-preflight"}))
    assert message == (
        "preflight: [auth] admin_username, admin_password: Keystone at "
        f"{keystone.public_url}/v3 refused the credentials of user 'nobody-preflight' of "
        "domain 'Default' on project 'admin' (401)")


def test_missing_credentials_are_named(keystone: Keystone) -> None:
    conf = keystone.tempest_conf()
    assert refused(with_(conf, auth={"admin_password": None})) == (
        "preflight: [auth] admin_password: not set: use_dynamic_credentials (Tempest's "
        "default) needs admin credentials to create the test users")
    assert refused(with_(conf, auth={"use_dynamic_credentials": False})) == (
        "preflight: [auth] test_accounts_file: not set: with use_dynamic_credentials = "
        "false Tempest needs pre-provisioned accounts")
    assert refused(with_(conf, auth={"use_dynamic_credentials": "perhaps"})) == (
        "preflight: [auth] use_dynamic_credentials: 'perhaps' is not a boolean")
    accounts = {"use_dynamic_credentials": False,
                "test_accounts_file": "/etc/tempest/accounts.yaml"}
    assert check(with_(conf, auth=accounts), 15).notes == []  # the admin's still checked
    alone = check(with_(conf, auth={**accounts, "admin_username": None,
                                    "admin_password": None}), 15)
    assert alone.notes == ["credentials not checked: pre-provisioned accounts"]


def test_the_identity_url_must_be_set_and_answer(keystone: Keystone) -> None:
    conf = keystone.tempest_conf()
    assert refused(with_(conf, identity={"uri_v3": None})) == (
        "preflight: [identity] uri_v3: is not set: Tempest has no cloud to talk to")
    assert refused(with_(conf, identity={"uri_v3": "keystone:5000/v3"})) == (
        "preflight: [identity] uri_v3: 'keystone:5000/v3' is not an http(s) URL")
    away = f"http://127.0.0.1:{free_port()}/v3"
    assert refused(with_(conf, identity={"uri_v3": away})) == (
        f"preflight: [identity] uri_v3: {away} does not answer (connection refused)")


class NotKeystone(QuietHandler):
    def do_GET(self) -> None:
        self.send(404, b"<html>no such page</html>", "text/html")


@pytest.fixture
def not_keystone() -> Iterator[Loopback]:
    server = Loopback(NotKeystone)
    try:
        yield server
    finally:
        server.stop()


def test_an_endpoint_that_is_not_keystone(keystone: Keystone, not_keystone: Loopback) -> None:
    url = f"http://127.0.0.1:{not_keystone.port}/v3"
    assert refused(with_(keystone.tempest_conf(), identity={"uri_v3": url})) == (
        f"preflight: [identity] uri_v3: {url} answered 404 without a Keystone v3 version "
        "document: not an identity v3 endpoint")


def test_a_cloud_that_never_answers_ends_at_the_deadline(keystone: Keystone) -> None:
    hung = Silent()
    try:
        url = f"http://127.0.0.1:{hung.port}/v3"
        # the listener never answers: the deadline ends it, however fast the machine
        assert refused(with_(keystone.tempest_conf(), identity={"uri_v3": url}), 0.5) == (
            f"preflight: [identity] uri_v3: {url} does not answer (no answer within 0.5 s)")
    finally:
        hung.stop()
