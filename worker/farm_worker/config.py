"""worker.yaml: one file, validated at start; every error names the file and the key.

Precedence for each key: command-line flag > `FARM_WORKER_<KEY>` environment > file > default.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from farm_worker import defaults
from farm_worker.exceptions import ConfigError
from farm_worker.protocol import (
    CONF_NAME_PATTERN,
    CONF_STRING_PATTERN,
    VERSION_PATTERN,
    Conf,
    parse_address,
    show,
    validator,
)

DEFAULT_CONFIG_PATH = Path("/etc/refstack-farm/worker.yaml")
ENV_PREFIX = "FARM_WORKER_"
ISOLATION_MODES = ("auto", "overlay", "copy", "readonly")

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "worker_id": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,64}$"},
        "gearman_servers": {"type": "array", "minItems": 1,
                            "items": {"type": "string", "minLength": 1}},
        "tempest_versions": {"type": "array",
                             "items": {"type": "string", "pattern": VERSION_PATTERN}},
        "install_on_demand": {"type": "boolean"},
        "cache_dir": {"type": "string", "minLength": 1},
        "work_dir": {"type": "string", "minLength": 1},
        "results_dir": {"type": "string", "minLength": 1},
        "env_isolation": {"enum": list(ISOLATION_MODES)},
        "index_url": {"type": "string", "pattern": r"^(https?|file)://"},
        "cache_max_size": {"type": ["integer", "string"]},
        "concurrency": {"type": "integer", "minimum": 1, "maximum": 64},
        "default_timeout_s": {"type": "integer", "minimum": 1,
                              "maximum": defaults.MAX_TIMEOUT_S},
        "report_retry_s": {"type": "number", "minimum": 0},
        "report_flush_s": {"type": "number", "minimum": 0},
        "report_backoff_max_s": {"type": "number", "exclusiveMinimum": 0},
        "outbox_dir": {"type": "string", "minLength": 1},
        "outbox_keep_s": {"type": "number", "exclusiveMinimum": 0},
        "outbox_max_size": {"type": ["integer", "string"]},
        "results_keep_days": {"type": "number", "minimum": 0},
        "preflight": {"type": "boolean"},
        "preflight_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
        "discovery_image": {"type": ["string", "null"], "minLength": 1},
        "discovery_timeout_s": {"type": "number", "exclusiveMinimum": 0,
                                "maximum": defaults.MAX_TIMEOUT_S},
        "callbacks": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["url"],
            "properties": {"url": {"type": "string", "pattern": r"^https?://[^/]+"},
                           "token": {"type": "string", "minLength": 1},
                           "token_file": {"type": "string", "minLength": 1}}}},
        "tempest_defaults": {
            "type": "object",
            "propertyNames": {"pattern": CONF_NAME_PATTERN},
            "additionalProperties": {
                "type": "object", "propertyNames": {"pattern": CONF_NAME_PATTERN},
                "additionalProperties": {"oneOf": [
                    {"type": "string", "pattern": CONF_STRING_PATTERN},
                    {"type": ["boolean", "number"]},
                    {"type": "array", "items": {"type": ["string", "boolean", "number"]}}]}}},
        "log_level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
        "metrics_port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
        "metrics_address": {"type": "string", "minLength": 1},
    },
}
_VALIDATOR = validator(CONFIG_SCHEMA)


@dataclass(frozen=True)
class GearmanServer:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class CallbackAuth:
    """A callback server this worker reports to, and the token it presents there."""

    url: str
    token: str | None = field(default=None, repr=False)


def _default_dirs() -> dict[str, str]:
    if os.geteuid() == 0:
        return {"cache_dir": "/var/cache/refstack-farm-worker",
                "work_dir": "/var/lib/refstack-farm-worker/work",
                "results_dir": "/var/lib/refstack-farm-worker/results",
                "outbox_dir": "/var/lib/refstack-farm-worker/outbox"}
    home = Path.home()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    state = Path(os.environ.get("XDG_STATE_HOME") or home / ".local" / "state")
    return {"cache_dir": str(cache / "refstack-farm-worker"),
            "work_dir": str(state / "refstack-farm-worker" / "work"),
            "results_dir": str(state / "refstack-farm-worker" / "results"),
            "outbox_dir": str(state / "refstack-farm-worker" / "outbox")}


@dataclass(frozen=True)
class WorkerConfig:
    """The validated worker configuration (see the README's table for every key)."""

    worker_id: str = field(default_factory=lambda: socket.gethostname().split(".")[0][:64])
    gearman_servers: tuple[GearmanServer, ...] = (GearmanServer("127.0.0.1",
                                                                defaults.GEARMAN_PORT),)
    tempest_versions: tuple[str, ...] = ()
    install_on_demand: bool = False
    cache_dir: Path = field(default_factory=lambda: Path(_default_dirs()["cache_dir"]))
    work_dir: Path = field(default_factory=lambda: Path(_default_dirs()["work_dir"]))
    results_dir: Path = field(default_factory=lambda: Path(_default_dirs()["results_dir"]))
    env_isolation: str = "auto"
    index_url: str = defaults.INDEX_URL
    cache_max_size: int = defaults.CACHE_MAX_BYTES
    concurrency: int = defaults.TEMPEST_CONCURRENCY
    default_timeout_s: int = defaults.DEFAULT_TIMEOUT_S
    report_retry_s: float = defaults.REPORT_RETRY_S
    report_flush_s: float = defaults.FLUSH_TIMEOUT_S
    report_backoff_max_s: float = defaults.REPORT_BACKOFF_S[1]
    # what the worker owes the status servers, one directory per worker id under it
    outbox_dir: Path = field(default_factory=lambda: Path(_default_dirs()["outbox_dir"]))
    outbox_keep_s: float = defaults.OUTBOX_KEEP_S
    outbox_max_size: int = defaults.OUTBOX_MAX_BYTES
    results_keep_days: float = defaults.RESULTS_KEEP_DAYS
    preflight: bool = True
    preflight_timeout_s: float = defaults.PREFLIGHT_TIMEOUT_S
    # a local image file the conf discovery uploads to a cloud without one (None: the
    # discovery's image step is off); never downloaded
    discovery_image: Path | None = None
    discovery_timeout_s: float = defaults.DISCOVERY_TIMEOUT_S
    callbacks: tuple[CallbackAuth, ...] = ()
    tempest_defaults: Conf = field(default_factory=dict, repr=False)
    log_level: str = "INFO"
    # Prometheus metrics (farm_worker/metrics.py): off unless a port is given
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    source: str = "<defaults>"
    # key -> where its value came from: file:line, $FARM_WORKER_KEY or --flag (else default)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def for_slot(self, slot: int | None) -> WorkerConfig:
        """The config of one worker process among several on a host."""
        if slot is None:
            return self
        port = self.metrics_port + slot - 1 if self.metrics_port else None
        return replace(self, worker_id=f"{self.worker_id}-{slot}", metrics_port=port)

    @property
    def outbox(self) -> Path:
        """This worker id's outbox directory."""
        return self.outbox_dir / self.worker_id

    def token_for(self, url: str) -> str | None:
        """The configured token for a callback URL, if any."""
        auth = self.callback_auth(url)
        return auth.token if auth else None

    def callback_auth(self, url: str) -> CallbackAuth | None:
        """The configured callback whose URL prefixes `url`, if any."""
        for cb in self.callbacks:
            if url.rstrip("/").startswith(cb.url.rstrip("/")):
                return cb
        return None


def parse_size(value: int | str, where: str) -> int:
    """`20G`, `512M`, `1048576` -> bytes."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", value)
    if not m:
        raise ConfigError(f"{where}: {show(value)} is not a size; use e.g. 20G or 512M")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_server(text: str, where: str) -> GearmanServer:
    """`host`, `host:port` or `[v6addr]:port` -> GearmanServer."""
    try:
        host, port = parse_address(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return GearmanServer(host, port or defaults.GEARMAN_PORT)


def _schema_message(origins: Mapping[str, str], source: str,
                    err: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.absolute_path:
        source = origins.get(str(err.absolute_path[0]), source)
    kind: Any = err.validator  # the stubs' unions with Unset do not apply to JSON data
    instance: Any = err.instance
    schema: Any = err.schema
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(instance) - set(allowed))
        where = ".".join([*(str(p) for p in err.absolute_path), extra[0] if extra else "?"])
        if not err.absolute_path and extra:
            source = origins.get(extra[0], source)
        return f"{source}: {where}: unknown key; known keys: {', '.join(allowed)}"
    if kind == "required":
        return f"{source}: {key}: {err.message}"
    return f"{source}: {key}: {show(instance)} is invalid ({err.message[:160]})"


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """`FARM_WORKER_<KEY>` values, typed like the file's (lists comma-separated)."""
    out: dict[str, Any] = {}
    for key, spec in CONFIG_SCHEMA["properties"].items():
        raw = environ.get(ENV_PREFIX + key.upper())
        if raw is None or key in ("callbacks", "tempest_defaults"):
            continue
        kind = spec.get("type")
        if kind == "array":
            out[key] = [part.strip() for part in raw.split(",") if part.strip()]
        elif kind == "boolean":
            word = raw.strip().lower()
            out[key] = (True if word in ("1", "true", "yes", "on") else
                        False if word in ("0", "false", "no", "off") else raw)  # else refused
        elif kind == "integer":
            out[key] = int(raw) if raw.strip().lstrip("-").isdigit() else raw
        elif kind == "number":
            try:
                out[key] = float(raw)
            except ValueError:
                out[key] = raw
        else:
            out[key] = raw
    return out


def _read_token_file(path: str, where: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"{where}: {path} is empty")
    return token


def key_lines(text: str) -> dict[str, int]:
    """The line of each top-level key of a YAML mapping (for errors that name it)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value
            if isinstance(k, yaml.ScalarNode)}


def build_config(doc: Mapping[str, Any], source: str,
                 environ: Mapping[str, str] | None = None,
                 overrides: Mapping[str, Any] | None = None,
                 lines: Mapping[str, int] | None = None) -> WorkerConfig:
    """Validate file data, environment and flags (in rising precedence) into a config;
    each key's origin is kept, and named by its errors."""
    merged: dict[str, Any] = dict(doc)
    origins = {k: f"{source}:{lines[k]}" if lines and k in lines else source for k in doc}
    from_env = _from_env(os.environ if environ is None else environ)
    merged.update(from_env)
    origins.update({k: f"${ENV_PREFIX}{k.upper()}" for k in from_env})
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged.update(flags)
    origins.update({k: f"--{k.replace('_', '-')}" for k in flags})
    for err in sorted(_VALIDATOR.iter_errors(merged), key=lambda e: list(e.absolute_path)):
        raise ConfigError(_schema_message(origins, source, err))
    kwargs: dict[str, Any] = {"source": source, "origins": origins}
    for key in ("worker_id", "install_on_demand", "env_isolation", "index_url", "concurrency",
                "default_timeout_s", "report_retry_s", "report_flush_s", "results_keep_days",
                "report_backoff_max_s", "outbox_keep_s", "metrics_port", "metrics_address",
                "preflight", "preflight_timeout_s", "log_level", "tempest_defaults",
                "discovery_timeout_s"):
        if key in merged:
            kwargs[key] = merged[key]
    if merged.get("discovery_image"):
        image = Path(merged["discovery_image"]).expanduser()
        if not image.is_file():
            raise ConfigError(f"{origins['discovery_image']}: discovery_image: {image} is not "
                              "a file (a local image for the conf discovery to upload)")
        kwargs["discovery_image"] = image
    for key in ("cache_dir", "work_dir", "results_dir", "outbox_dir"):
        if key in merged:
            kwargs[key] = Path(merged[key]).expanduser()
    if "gearman_servers" in merged:
        kwargs["gearman_servers"] = tuple(
            parse_server(s, f"{origins['gearman_servers']}: gearman_servers[{i}]")
            for i, s in enumerate(merged["gearman_servers"]))
    if "tempest_versions" in merged:
        kwargs["tempest_versions"] = tuple(dict.fromkeys(merged["tempest_versions"]))
    for key in ("cache_max_size", "outbox_max_size"):
        if key in merged:
            kwargs[key] = parse_size(merged[key], f"{origins[key]}: {key}")
    callbacks = []
    for i, cb in enumerate(merged.get("callbacks", [])):
        where = f"{origins['callbacks']}: callbacks[{i}]"
        if "token" in cb and "token_file" in cb:
            raise ConfigError(f"{where}: give token or token_file, not both")
        token = cb.get("token") or (_read_token_file(cb["token_file"], f"{where}.token_file")
                                    if "token_file" in cb else None)
        callbacks.append(CallbackAuth(cb["url"], token))
    kwargs["callbacks"] = tuple(callbacks)
    return WorkerConfig(**kwargs)


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> WorkerConfig:
    """Read worker.yaml (`path`, else $FARM_WORKER_CONFIG, else /etc/..., else defaults)."""
    env = os.environ if environ is None else environ
    explicit = path or env.get("FARM_WORKER_CONFIG")
    candidate = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    if not candidate.exists():
        if explicit:
            raise ConfigError(f"{candidate}: no such config file")
        return build_config({}, "<defaults>", env, overrides)
    try:
        text = candidate.read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{candidate}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{candidate}: not valid YAML: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{candidate}: the top level must be a mapping of keys, "
                          f"not {type(doc).__name__}")
    return build_config(doc, str(candidate), env, overrides, key_lines(text))
