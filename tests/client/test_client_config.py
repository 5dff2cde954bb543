"""refstack.cfg: the seed's keys, precedence flag > FARM_* env > file > default, errors that
name the file, line and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farm_client.config import ConfigError, load_client_config
from farm_client.gearman_client import Server
from harness.farmcli import farm

CFG = """\
# the seed's names
[DEFAULT]
GEARMAN_SERVER = 'gm1.example.org, gm2.example.org:4731'
GEARMAN_PORT = 4740
TEST_METHOD = "gearman"
FARM_SERVER_URL = https://farm.example.org
FARM_TOKEN = file-token
"""


def test_file_values(tmp_path: Path) -> None:
    path = tmp_path / "refstack.cfg"
    path.write_text(CFG)
    c = load_client_config(path, environ={})
    assert c.gearman_servers == (Server("gm1.example.org", 4740), Server("gm2.example.org", 4731))
    assert c.server_url == "https://farm.example.org/" and c.token == "file-token"
    assert c.origins["GEARMAN_PORT"] == ("4740", f"{path}:4")


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    path = tmp_path / "refstack.cfg"
    path.write_text(CFG)
    env = {"FARM_GEARMAN_SERVER": "env-gm", "FARM_TOKEN": "env-token"}
    c = load_client_config(path, environ=env, flags={"GEARMAN_SERVER": "flag-gm:1234",
                                                     "FARM_TOKEN": None})
    assert c.gearman_servers == (Server("flag-gm", 1234),)
    assert c.token == "env-token"  # no flag: the environment wins over the file
    assert c.server_url == "https://farm.example.org/"  # only in the file
    rows = {k: (v, o) for k, v, o in c.describe()}
    assert rows["GEARMAN_SERVER"] == ("flag-gm:1234", "--gearman")
    assert rows["FARM_TOKEN"] == ("********", "$FARM_TOKEN")
    assert rows["GEARMAN_PORT"] == ("4740", f"{path}:4")
    d = load_client_config(tmp_path / "refstack.cfg", environ={"FARM_GEARMAN_PORT": "5000"})
    assert d.gearman_servers[0] == Server("gm1.example.org", 5000)


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = load_client_config(environ={})
    if c.file is None:  # /etc/refstack/refstack.cfg may exist on a farm host
        assert c.gearman_servers == (Server("127.0.0.1", 4730),)
        assert c.server_url is None and not c.uses_server
    (tmp_path / "refstack.cfg").write_text("GEARMAN_SERVER = here\n")
    assert load_client_config(environ={}).gearman_servers == (Server("here", 4730),)


@pytest.mark.parametrize(("text", "env", "message"), [
    ("TEST_METHOD = uuid\n", {}, "TEST_METHOD: 'uuid' is not supported"),
    ("GEARMAN_PORT = 99999\n", {}, "refstack.cfg:1: GEARMAN_PORT: '99999' is not a port"),
    ("", {"FARM_GEARMAN_PORT": "x"}, "$FARM_GEARMAN_PORT: GEARMAN_PORT: 'x' is not a port"),
    ("GEARMAN_SERVER = a:b:c\n", {}, "GEARMAN_SERVER: 'a:b:c' is not host"),
    ("GEARMAN_SERVER = ,\n", {}, "names no server"),
    ("FARM_SERVER_URL = ftp://x\n", {}, "FARM_SERVER_URL: 'ftp://x' is not an http(s) URL"),
    ("GEARMAN_SERVERS = x\n", {}, ":1: GEARMAN_SERVERS: unknown key"),
    ("just words\n", {}, ":1: 'just words' is not KEY = value"),
    ("", {"FARM_TEST_METHOD": "local"}, "$FARM_TEST_METHOD: TEST_METHOD: 'local'"),
    ("", {"FARM_TOKEN": "a b"}, "$FARM_TOKEN: FARM_TOKEN: contains whitespace"),
])
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str],
                             message: str) -> None:
    path = tmp_path / "refstack.cfg"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_client_config(path, environ=env)
    assert message in str(err.value)


def test_farm_config_command(tmp_path: Path) -> None:
    (tmp_path / "refstack.cfg").write_text(CFG)
    r = farm(tmp_path, "config", "--json", env={"FARM_GEARMAN_PORT": "4800"})
    doc = json.loads(r.stdout)
    assert doc["GEARMAN_PORT"] == {"value": "4800", "from": "$FARM_GEARMAN_PORT"}
    assert doc["FARM_TOKEN"]["value"] == "********"
    r = farm(tmp_path, "config", "--server", "http://127.0.0.1:1/")
    assert r.returncode == 0 and "file-token" not in r.stdout
    assert "through the status server http://127.0.0.1:1/" in r.stdout
    r = farm(tmp_path, "config", "-c", str(tmp_path / "missing.cfg"))
    assert r.returncode == 2 and "missing.cfg: no such config file" in r.stderr
    r = farm(tmp_path, "submit", "--tempest", "47", "--dry-run")
    assert r.returncode == 2 and "'47' is not an exact Tempest version" in r.stderr
    r = farm(tmp_path, "submit", "--dry-run")
    assert r.returncode == 2 and "tempest.version: required" in r.stderr
    r = farm(tmp_path, "list", "--direct")
    assert r.returncode == 2 and "needs the status server" in r.stderr


def test_the_search_path(tmp_path: Path) -> None:
    """$FARM_CONFIG, then ./refstack.cfg, then ~/.config/refstack-farm/refstack.cfg (then
    the host's); `farm config` says which file it read."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    (home / ".config" / "refstack-farm").mkdir(parents=True)
    cwd.mkdir()
    user = home / ".config" / "refstack-farm" / "refstack.cfg"
    user.write_text("GEARMAN_SERVER = from-home\n")
    r = farm(cwd, "config", "--json", env={"HOME": str(home)})
    doc = json.loads(r.stdout)
    assert doc["file"] == str(user) and doc["GEARMAN_SERVER"]["from"] == f"{user}:1"
    (cwd / "refstack.cfg").write_text("GEARMAN_SERVER = from-cwd\n")
    r = farm(cwd, "config", env={"HOME": str(home)})
    assert f"file: {cwd / 'refstack.cfg'}" in r.stdout
    chosen = tmp_path / "chosen.cfg"
    chosen.write_text("GEARMAN_SERVER = from-env\n")
    doc = json.loads(farm(cwd, "config", "--json", env={"HOME": str(home),
                                                        "FARM_CONFIG": str(chosen)}).stdout)
    assert doc["file"] == str(chosen) and doc["GEARMAN_SERVER"]["value"] == "from-env"
    r = farm(cwd, "config", env={"FARM_CONFIG": str(tmp_path / "gone.cfg")})
    assert r.returncode == 2 and "gone.cfg: no such config file ($FARM_CONFIG)" in r.stderr
