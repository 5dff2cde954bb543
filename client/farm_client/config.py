"""refstack.cfg: how the client finds gearmand and the status server.

The file keeps the seed's names. One `KEY = value` per line, `#` comments, values may be
quoted (old RefStack loaded it with Flask's `from_pyfile`, so `GEARMAN_SERVER = 'host'`
still reads); an optional `[DEFAULT]` header is allowed:

    GEARMAN_SERVER = gm1.example.org, gm2.example.org:4731
    GEARMAN_PORT = 4730
    TEST_METHOD = gearman
    FARM_SERVER_URL = https://farm.example.org/
    FARM_TOKEN = ...
    REFSTACK_URL = https://refstack.openstack.org/api

Precedence for each key: flag > `FARM_<KEY>` in the environment (FARM_GEARMAN_SERVER,
FARM_GEARMAN_PORT, FARM_TEST_METHOD, FARM_SERVER_URL, FARM_TOKEN, FARM_REFSTACK_URL) > the
file > the default. REFSTACK_URL is the RefStack API `farm submit --guideline` reads the
interop guidelines from.
The file is -c, else $FARM_CONFIG, else the first of SEARCH_PATH that exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from farm_client.exceptions import FarmClientError
from farm_client.gearman_client import DEFAULT_PORT, Server

# ./refstack.cfg, the user's, the host's, and RefStack's own (where older set-ups keep it)
SEARCH_PATH = (Path("refstack.cfg"), Path("~/.config/refstack-farm/refstack.cfg"),
               Path("/etc/refstack-farm/refstack.cfg"), Path("/etc/refstack/refstack.cfg"))
SEARCH_TEXT = "-c, else $FARM_CONFIG, else " + ", else ".join(str(p) for p in SEARCH_PATH)
KEYS = ("GEARMAN_SERVER", "GEARMAN_PORT", "TEST_METHOD", "FARM_SERVER_URL", "FARM_TOKEN",
        "REFSTACK_URL")
SECRET_KEYS = frozenset({"FARM_TOKEN"})
DEFAULTS = {"GEARMAN_SERVER": "127.0.0.1", "GEARMAN_PORT": str(DEFAULT_PORT),
            "TEST_METHOD": "gearman", "FARM_SERVER_URL": "", "FARM_TOKEN": "",
            "REFSTACK_URL": ""}
_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*(.*?)\s*$")


class ConfigError(FarmClientError):
    """refstack.cfg, the environment or a flag holds an invalid value."""


def env_name(key: str) -> str:
    return key if key.startswith("FARM_") else "FARM_" + key


@dataclass(frozen=True)
class ClientConfig:
    gearman_servers: tuple[Server, ...]
    test_method: str = "gearman"
    server_url: str | None = None
    token: str | None = field(default=None, repr=False)
    refstack_url: str | None = None
    # key -> (its effective text, where it came from)
    origins: Mapping[str, tuple[str, str]] = field(default_factory=dict, compare=False)
    file: Path | None = None

    @property
    def uses_server(self) -> bool:
        return bool(self.server_url)

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, origin) for `farm config`; secrets masked."""
        out = []
        for key in KEYS:
            value, origin = self.origins.get(key, (DEFAULTS[key], "default"))
            if key in SECRET_KEYS and value:
                value = "*" * 8
            out.append((key, value or "(unset)", origin))
        return out


def read_cfg(path: Path) -> dict[str, tuple[str, int]]:
    """KEY -> (value, line number). Unknown keys and malformed lines are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    out: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or line.upper() == "[DEFAULT]":
            continue
        m = _LINE.match(line)
        if m is None:
            raise ConfigError(f"{path}:{number}: {raw.strip()[:80]!r} is not KEY = value")
        key, value = m.group(1).upper(), m.group(2)
        if key not in KEYS:
            raise ConfigError(f"{path}:{number}: {m.group(1)}: unknown key; known keys: "
                              + ", ".join(KEYS))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = (value, number)
    return out


FLAGS = {"GEARMAN_SERVER": "--gearman", "FARM_SERVER_URL": "--server", "FARM_TOKEN": "--token",
         "REFSTACK_URL": "--refstack"}


def _servers(text: str, port_text: str, where: str, port_where: str) -> tuple[Server, ...]:
    try:
        default_port = int(port_text)
    except ValueError:
        default_port = 0
    if not 0 < default_port < 65536:
        raise ConfigError(f"{port_where}: GEARMAN_PORT: {port_text!r} is not a port (1-65535)")
    servers = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        try:
            servers.append(Server.parse(item, default_port))
        except ValueError:
            raise ConfigError(f"{where}: GEARMAN_SERVER: {item!r} is not host, host:port "
                              "or [v6 address]:port") from None
    if not servers:
        raise ConfigError(f"{where}: GEARMAN_SERVER: {text!r} names no server")
    return tuple(servers)


def load_client_config(path: str | Path | None = None, *,
                       environ: Mapping[str, str] | None = None,
                       flags: Mapping[str, str | None] | None = None) -> ClientConfig:
    """The effective configuration; `flags` maps KEYS to command-line values (None: unset)."""
    env = os.environ if environ is None else environ
    if path is None and env.get("FARM_CONFIG"):
        path = env["FARM_CONFIG"]
    if path is not None:
        file: Path | None = Path(path).expanduser()
        if not Path(path).expanduser().exists():
            raise ConfigError(f"{path}: no such config file"
                              + (" ($FARM_CONFIG)" if path == env.get("FARM_CONFIG") else ""))
    else:
        file = next((p.expanduser().absolute() for p in SEARCH_PATH
                     if p.expanduser().is_file()), None)
    values: dict[str, tuple[str, str]] = {k: (v, "default") for k, v in DEFAULTS.items()}
    if file is not None:
        for key, (value, number) in read_cfg(file).items():
            values[key] = (value, f"{file}:{number}")
    for key in KEYS:
        if env_name(key) in env:
            values[key] = (env[env_name(key)], f"${env_name(key)}")
    for key, flag in (flags or {}).items():
        if flag is not None:
            values[key] = (flag, FLAGS.get(key, "flag"))

    method, where = values["TEST_METHOD"]
    if method.strip().lower() != "gearman":
        raise ConfigError(f"{where}: TEST_METHOD: {method!r} is not supported; the farm "
                          "runs tests through gearman (TEST_METHOD = gearman)")
    servers = _servers(values["GEARMAN_SERVER"][0], values["GEARMAN_PORT"][0],
                       values["GEARMAN_SERVER"][1], values["GEARMAN_PORT"][1])
    url = _url(values, "FARM_SERVER_URL")
    url = url.rstrip("/") + "/" if url else ""
    token = values["FARM_TOKEN"][0].strip() or None
    if token is not None and any(c.isspace() for c in token):
        raise ConfigError(f"{values['FARM_TOKEN'][1]}: FARM_TOKEN: contains whitespace")
    return ClientConfig(gearman_servers=servers, test_method="gearman",
                        server_url=url or None, token=token,
                        refstack_url=_url(values, "REFSTACK_URL").rstrip("/") or None,
                        origins=values, file=file)


def _url(values: Mapping[str, tuple[str, str]], key: str) -> str:
    url, where = values[key]
    url = url.strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{where}: {key}: {url!r} is not an http(s) URL")
    return url
