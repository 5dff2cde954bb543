"""Secrets registered by a job never reach a log line or a message."""

from __future__ import annotations

import io
import logging

from farm_worker import redaction


def test_secrets_in_conf_picks_secret_looking_keys() -> None:
    conf = {"auth": {"admin_password": "pw-1", "admin_username": "admin"},
            "identity": {"alt_password": "pw-2", "uri_v3": "http://x"},
            "object-storage": {"operator_token": "tk", "private_key": "pk-long"}}
    assert redaction.secrets_in_conf(conf) == {"pw-1", "pw-2", "tk", "pk-long"}


def test_filter_masks_registered_secrets_until_unregistered() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redaction.RedactingFilter())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        handle = redaction.register(["s3cret-value", None, "ab"])  # too short: ignored
        logger.warning("conf has %s and ab", "s3cret-value")
        try:
            raise ValueError("failed with s3cret-value")
        except ValueError:
            logger.exception("boom")
        redaction.unregister(handle)
        logger.warning("now %s", "s3cret-value")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue()
    assert "conf has *** and ab" in lines
    assert "failed with ***" in lines
    assert lines.count("s3cret-value") == 1 and "now s3cret-value" in lines


def test_redact_prefers_longest_match() -> None:
    h = redaction.register(["abcd", "abcdefgh"])
    try:
        assert redaction.redact("x abcdefgh y abcd") == "x *** y ***"
    finally:
        redaction.unregister(h)


def test_without_secrets_keeps_what_is_no_secret() -> None:
    conf = {"auth": {"admin_password": "pw-1234", "use_dynamic_credentials": True},
            "identity": {"user_minimum_password_age": 0, "uri_v3": "http://k/v3",
                         "token_expiry": "1h"}}
    assert redaction.without_secrets(conf) == {
        "auth": {"admin_password": redaction.REMOVED, "use_dynamic_credentials": True},
        "identity": {"user_minimum_password_age": 0, "uri_v3": "http://k/v3",
                     "token_expiry": redaction.REMOVED}}
