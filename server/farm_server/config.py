"""server.yaml: the status server's settings, validated at start (errors name file and key).

Precedence for each key: flag > `FARM_SERVER_<KEY>` environment > file > default. The
file is -c, else $FARM_SERVER_CONFIG, else /etc/refstack-farm/server.yaml.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from farm_client.gearman_client import Server
from farm_server.exceptions import FarmServerError
from farm_worker.config import key_lines

DEFAULT_PATH = Path("/etc/refstack-farm/server.yaml")
ENV_PREFIX = "FARM_SERVER_"


class ServerConfigError(FarmServerError):
    """server.yaml (or the environment, or a flag) holds an invalid value; the message
    names where (file:line, $FARM_SERVER_KEY, --flag) and the key, `field` the key."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def invalid(where: str, key: str, problem: str) -> ServerConfigError:
    """`where: key: problem`, with `key` as the error's field."""
    return ServerConfigError(f"{where}: {key}: {problem}", field=key)


def _default_dir(env: Mapping[str, str]) -> Path:
    """$XDG_STATE_HOME/refstack-farm, else /var/lib/refstack-farm for root, else
    ~/.local/state/refstack-farm."""
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "refstack-farm"
    if os.geteuid() == 0:
        return Path("/var/lib/refstack-farm")
    return Path.home() / ".local" / "state" / "refstack-farm"


def _default_database() -> str:
    return f"sqlite:///{_default_dir(os.environ) / 'server.db'}"


@dataclass(frozen=True)
class ServerConfig:
    database_url: str = field(default_factory=_default_database)
    gearman_servers: tuple[Server, ...] = (Server("127.0.0.1"),)
    callback_url: str = "http://127.0.0.1:8080/"  # how workers reach this server
    listen: str = "127.0.0.1:8080"
    processes: int | None = None  # gunicorn processes; None: 3 on SQLite, 2 per CPU + 1 else
    open_reads: bool = False  # GET /v1/... without a user token
    max_body_bytes: int = 32 * 1024 * 1024  # larger requests get 413
    stale_after_s: float = 900.0  # a running test silent this long may be lost
    monitor: bool = True  # reconcile with gearmand from inside `farm-server serve`
    monitor_interval_s: float = 30.0
    log_level: str = "INFO"
    # uploads to RefStack (farm_server/uploader.py): where runs go when they end passed or
    # failed (a test's own upload_url wins), the key that signs them, how hard to retry
    refstack_upload_url: str | None = None
    refstack_key_file: str | None = None
    refstack_upload_attempts: int = 5
    refstack_retry_s: float = 30.0
    # who may read /metrics without a user token (e.g. the Prometheus hosts): networks
    metrics_allow: tuple[str, ...] = ()
    # the dashboard (docs/dashboard.md): a sign-in lasts this long; the cookie is Secure
    # under TLS (seen by the request, or forced by cookie_secure behind a TLS proxy)
    session_ttl_s: int = 12 * 3600
    cookie_secure: bool = False
    # gunicorn gthread workers: threads per process, of which at most live_streams may be
    # held by open live pages (the rest always serve reports and the API)
    threads: int = 64
    live_streams: int = 56
    live_interval_s: float = 0.25  # how often a process looks for changed runs
    source: str = "<defaults>"

    def serve_processes(self) -> int:
        """SQLite has one writer at a time (the store queues them on a flock): a few
        processes keep it busy; a database server takes the usual 2 per CPU + 1."""
        if self.processes:
            return self.processes
        return 3 if self.database_url.startswith("sqlite") else 2 * (os.cpu_count() or 1) + 1


# key -> its type; every key of ServerConfig but `source`
_KINDS: dict[str, type] = {
    "database_url": str, "gearman_servers": list, "callback_url": str, "listen": str,
    "processes": int, "open_reads": bool, "max_body_bytes": int, "stale_after_s": float,
    "monitor": bool, "monitor_interval_s": float, "log_level": str,
    "refstack_upload_url": str, "refstack_key_file": str, "refstack_upload_attempts": int,
    "refstack_retry_s": float, "metrics_allow": tuple, "session_ttl_s": int,
    "cookie_secure": bool, "threads": int, "live_streams": int, "live_interval_s": float,
}


def _coerce(key: str, value: Any, where: str) -> Any:
    kind = _KINDS[key]
    if kind is tuple:  # networks
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise invalid(where, key, f"{value!r} is not a list of networks (e.g. 10.0.0.0/8)")
        try:
            return tuple(str(ipaddress.ip_network(str(i).strip(), strict=False))
                         for i in items if str(i).strip())
        except ValueError as exc:
            raise invalid(where, key, f"{exc}") from None
    if kind is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise invalid(where, key, f"{value!r} is not a list of host:port")
        try:
            return tuple(Server.parse(str(i)) for i in items if str(i).strip())
        except ValueError as exc:
            raise invalid(where, key, str(exc)) from None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0",
                                                        "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise invalid(where, key, f"{value!r} is not true or false")
    if kind in (int, float):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise invalid(where, key, f"{value!r} is not a number") from None
        if number <= 0:
            raise invalid(where, key, f"{value!r} must be positive")
        return number
    if not isinstance(value, str) or not value:
        raise invalid(where, key, f"{value!r} is not a non-empty string")
    if key == "database_url":
        return database_url(value, where)
    if key in ("callback_url", "refstack_upload_url") \
            and not value.startswith(("http://", "https://")):
        raise invalid(where, key, f"{value!r} is not an http(s) URL")
    if key == "refstack_key_file":
        from farm_client.refstack_upload import KeyProblem, SigningKey

        try:
            SigningKey.load(value)
        except KeyProblem as exc:
            raise invalid(where, key, str(exc).removeprefix("--key ")) from None
    if key == "log_level" and value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise invalid(where, key, f"{value!r} is not DEBUG, INFO, WARNING or ERROR")
    return value


# dialect -> (the driver SQLAlchemy is told to use, the module it imports, the extra)
DATABASES: dict[str, tuple[str, str, str | None]] = {
    "sqlite": ("sqlite", "sqlite3", None),
    "postgresql": ("postgresql+psycopg", "psycopg", "postgresql"),
}


def database_url(value: str, where: str) -> str:
    """A URL of a database the store is tested on, with its driver installed; plain
    `postgresql://` means psycopg 3 (SQLAlchemy would look for psycopg2). The message
    names the scheme, never the URL (it may hold a password)."""
    scheme, sep, rest = value.partition("://")
    dialect, _, driver = scheme.partition("+")
    supported = "sqlite:///PATH, postgresql+psycopg://USER:PASSWORD@HOST[:PORT]/NAME"
    if not sep or dialect not in DATABASES:
        raise invalid(where, "database_url", f"{(scheme if sep else value)[:40]!r} is not "
                      f"a supported database; use {supported}")
    name, module, extra = DATABASES[dialect]
    if driver and f"{dialect}+{driver}" != name:
        raise invalid(where, "database_url", f"driver {driver!r} is not supported; use "
                      f"{name}://")
    if dialect == "sqlite" and not rest.startswith("/"):
        raise invalid(where, "database_url", f"{value!r} names no file; use "
                      "sqlite:///relative/path or sqlite:////absolute/path")
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise invalid(where, "database_url", f"{dialect} needs {module}, which is not "
                      f"installed: pip install 'refstack-farm-server[{extra}]'")
    return f"{name}://{rest}" if dialect != "sqlite" else value


def load_server_config(path: str | Path | None = None, *,
                       environ: Mapping[str, str] | None = None,
                       overrides: Mapping[str, Any] | None = None) -> ServerConfig:
    env = os.environ if environ is None else environ
    explicit = path or env.get("FARM_SERVER_CONFIG")
    candidate = Path(explicit) if explicit else DEFAULT_PATH
    doc: dict[str, Any] = {}
    lines: dict[str, int] = {}
    source = "<defaults>"
    if candidate.exists():
        source = str(candidate)
        try:
            text = candidate.read_text(encoding="utf-8")
            loaded = yaml.safe_load(text) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ServerConfigError(f"{candidate}: cannot read: {exc}") from None
        if not isinstance(loaded, dict):
            raise ServerConfigError(f"{candidate}: the top level must be a mapping of keys")
        doc = loaded
        lines = key_lines(text)
    elif explicit:
        raise ServerConfigError(f"{candidate}: no such config file")
    values: dict[str, Any] = {}
    for key, value in doc.items():
        where = f"{source}:{lines[key]}" if key in lines else source
        if key not in _KINDS:
            raise invalid(where, key, "unknown key; known keys: " + ", ".join(sorted(_KINDS)))
        values[key] = _coerce(key, value, where)
    for key in _KINDS:
        if ENV_PREFIX + key.upper() in env:
            values[key] = _coerce(key, env[ENV_PREFIX + key.upper()],
                                  f"${ENV_PREFIX}{key.upper()}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    threads = values.get("threads", ServerConfig.threads)
    streams = values.get("live_streams", ServerConfig.live_streams)
    if streams > threads - 2:
        raise invalid(source, "live_streams", f"{streams} leaves fewer than 2 of the "
                      f"{threads} threads (threads) for reports and the API")
    if "database_url" not in values:  # the default's directory is ours to make, 0700
        base = _default_dir(env)
        try:
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise invalid("database_url (default)", "database_url",
                          f"cannot create {base}: {exc.strerror}") from None
        values["database_url"] = f"sqlite:///{base / 'server.db'}"
    return ServerConfig(**values, source=source)
