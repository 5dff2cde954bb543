"""Secrets out of logs and messages: a registry of strings and a logging filter.

A job registers its cloud passwords and tokens for as long as it runs; every log record
and every state message passes through `redact`, which replaces them with `***`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
REMOVED = "<removed>"  # a secret's value in a conf kept with its run
SECRET_KEY = re.compile(r"pass|secret|token|private|_key$", re.IGNORECASE)
_MIN_LEN = 4  # shorter values would mask ordinary words

_lock = threading.Lock()
_secrets: dict[int, frozenset[str]] = {}
_next = 0


def secrets_in_conf(conf: Mapping[str, Mapping[str, Any]] | None) -> set[str]:
    """Values of keys that look like secrets (admin_password, ...)."""
    found: set[str] = set()
    for values in (conf or {}).values():
        for key, value in values.items():
            if SECRET_KEY.search(key) and isinstance(value, str):
                found.add(value)
    return found


def scrub_conf(conf: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """A conf to keep and show with its run: each secret-looking key's value removed, and
    any registered secret in another value masked."""
    return {section: {key: REMOVED if SECRET_KEY.search(key) else redact(str(value))
                      for key, value in values.items()}
            for section, values in conf.items()}


def without_secrets(conf: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A conf as a request to run it again: each secret's value REMOVED (a text under a
    secret-looking key, as `secrets_in_conf` finds them), every other value as it was
    (numbers stay numbers: `user_minimum_password_age: 0` is no secret)."""
    return {section: {key: REMOVED if SECRET_KEY.search(key) and isinstance(value, str)
                      else value for key, value in values.items()}
            for section, values in conf.items()}


def secrets_in_accounts(accounts: Iterable[Mapping[str, Any]] | None) -> set[str]:
    """The passwords of pre-provisioned accounts."""
    return {str(a["password"]) for a in (accounts or []) if a.get("password")}


def register(values: Iterable[str | None]) -> int:
    global _next
    with _lock:
        _next += 1
        _secrets[_next] = frozenset(v for v in values if v and len(v) >= _MIN_LEN)
        return _next


def unregister(handle: int) -> None:
    with _lock:
        _secrets.pop(handle, None)


def redact(text: str) -> str:
    with _lock:
        values = sorted(set().union(*_secrets.values()), key=len, reverse=True) \
            if _secrets else []
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Installed on the CLI's handlers: no registered secret reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = redact(record.getMessage())
            record.msg, record.args = message, None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
        return True
