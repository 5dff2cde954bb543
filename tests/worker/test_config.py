"""worker.yaml: defaults, precedence (flag > env > file > default), errors naming file+key."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm_worker.config import GearmanServer, load_config, parse_server, parse_size
from farm_worker.exceptions import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.yaml"
    path.write_text(text)
    return path


def test_load_config_reads_every_key(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file\n")
    path = write(tmp_path, f"""
worker_id: w-7
gearman_servers: ["10.0.0.1", "10.0.0.2:4731", "[::1]:4732"]
tempest_versions: ["47.0.0", "40.0.0", "47.0.0"]
install_on_demand: true
cache_dir: {tmp_path}/cache
work_dir: {tmp_path}/work
results_dir: {tmp_path}/results
env_isolation: copy
index_url: https://mirror.example/simple
cache_max_size: 5G
concurrency: 4
default_timeout_s: 7200
report_retry_s: 60
results_keep_days: 2
callbacks:
  - url: https://refstack.example/
    token: tok-inline
  - url: https://other.example/api/
    token_file: {token_file}
tempest_defaults:
  compute: {{image_ref: abc}}
log_level: DEBUG
""")
    c = load_config(path, environ={})
    assert c.worker_id == "w-7"
    assert c.gearman_servers == (GearmanServer("10.0.0.1", 4730),
                                 GearmanServer("10.0.0.2", 4731), GearmanServer("::1", 4732))
    assert c.tempest_versions == ("47.0.0", "40.0.0")
    assert c.install_on_demand and c.env_isolation == "copy"
    assert c.cache_dir == tmp_path / "cache"
    assert c.cache_max_size == 5 * 1024**3
    assert c.concurrency == 4 and c.default_timeout_s == 7200 and c.results_keep_days == 2
    assert c.callback_auth("https://refstack.example/v1") is not None
    other = c.callback_auth("https://other.example/api/")
    assert other is not None and other.token == "tok-from-file"
    assert c.callback_auth("https://evil.example/") is None
    assert c.tempest_defaults == {"compute": {"image_ref": "abc"}}
    assert "tok-inline" not in repr(c)


def test_load_config_without_file_uses_defaults(tmp_path: Path) -> None:
    c = load_config(None, environ={"FARM_WORKER_CONFIG": ""})
    assert c.gearman_servers == (GearmanServer("127.0.0.1", 4730),)
    assert c.env_isolation == "auto" and not c.install_on_demand


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "concurrency: 3\nworker_id: from-file\ntempest_versions: [47.0.0]\n")
    env = {"FARM_WORKER_CONCURRENCY": "5", "FARM_WORKER_TEMPEST_VERSIONS": "40.0.0, 33.0.0"}
    c = load_config(path, environ=env, overrides={"concurrency": 7, "worker_id": None})
    assert c.concurrency == 7
    assert c.worker_id == "from-file"
    assert c.tempest_versions == ("40.0.0", "33.0.0")
    assert load_config(path, environ=env).concurrency == 5


@pytest.mark.parametrize(("text", "message"), [
    ("concurency: 3\n", "concurency: unknown key; known keys:"),
    ("gearman_servers: [':::']\n", "gearman_servers[0]: \":::\" is not host or host:port"),
    ("gearman_servers: ['h:99999']\n", "gearman_servers[0]: \"h:99999\" has port 99999"),
    ("tempest_versions: ['47']\n", "tempest_versions.0: \"47\" is invalid"),
    ("cache_max_size: lots\n", "cache_max_size: \"lots\" is not a size"),
    ("env_isolation: chroot\n", "env_isolation: \"chroot\" is invalid"),
    ("concurrency: 0\n", "concurrency: 0 is invalid"),
    ("callbacks: [{url: 'https://x/', token: a, token_file: b}]\n",
     "callbacks[0]: give token or token_file, not both"),
    ("callbacks: [{url: 'https://x/', token_file: /nonexistent/tok}]\n",
     "callbacks[0].token_file: cannot read /nonexistent/tok"),
    ("- a list\n", "the top level must be a mapping"),
    ("key: [unclosed\n", "not valid YAML"),
])
def test_invalid_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_for_slot_gives_each_process_its_own_id() -> None:
    c = load_config(None, environ={"FARM_WORKER_WORKER_ID": "h1"})
    assert c.for_slot(2).worker_id == "h1-2"
    assert c.for_slot(None).worker_id == "h1"


def test_parse_helpers() -> None:
    assert parse_size("512M", "k") == 512 * 2**20
    assert parse_size("1.5GiB", "k") == int(1.5 * 2**30)
    assert parse_server("[fe80::1]", "k") == GearmanServer("fe80::1", 4730)


def test_config_command_masks_secrets(tmp_path: Path) -> None:
    import json
    import subprocess

    from farm_lab.workers import FARM_WORKER

    path = write(tmp_path, "callbacks: [{url: 'https://x.example/', token: tok-secret-1}]\n"
                           "tempest_defaults: {auth: {admin_password: pw-secret-2, "
                           "admin_username: admin}}\n")
    out = subprocess.run([FARM_WORKER, "config", "--json", "-c", str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert "tok-secret-1" not in out and "pw-secret-2" not in out
    table = subprocess.run([FARM_WORKER, "config", "-c", str(path)], capture_output=True,
                           text=True, check=True).stdout
    assert "tok-secret-1" not in table and "pw-secret-2" not in table
    assert f"file: {path}" in table
    doc = json.loads(out)
    assert doc["tempest_defaults"]["auth"] == {"admin_password": "***", "admin_username": "admin"}
    assert doc["source"] == str(path)


@pytest.mark.parametrize(("text", "env", "flags", "message"), [
    ("worker_id: w\nconcurrency: x\n", {}, {}, "worker.yaml:2: concurrency: \"x\" is invalid"),
    ("worker_id: w\n\nconcurency: 3\n", {}, {}, "worker.yaml:3: concurency: unknown key"),
    ("concurrency: 2\n", {"FARM_WORKER_CONCURRENCY": "x"}, {},
     "$FARM_WORKER_CONCURRENCY: concurrency: \"x\" is invalid"),
    ("", {"FARM_WORKER_GEARMAN_SERVERS": "h:99999"}, {},
     "$FARM_WORKER_GEARMAN_SERVERS: gearman_servers[0]: \"h:99999\" has port 99999"),
    ("", {}, {"work_dir": ""}, "--work-dir: work_dir: \"\" is invalid"),
    ("", {"FARM_WORKER_PREFLIGHT": "perhaps"}, {},
     "$FARM_WORKER_PREFLIGHT: preflight: \"perhaps\" is invalid ('perhaps' is not of type "
     "'boolean')"),
    ("preflight_timeout_s: 0\n", {}, {}, "worker.yaml:1: preflight_timeout_s: 0 is invalid"),
])
def test_errors_name_their_real_source(tmp_path: Path, text: str, env: dict[str, str],
                                       flags: dict[str, str], message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=env, overrides=flags)
    assert message in str(err.value)
    assert str(err.value).startswith(str(path)) == message.startswith("worker.yaml")


def test_origins_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "worker_id: w\nconcurrency: 3\n")
    c = load_config(path, environ={"FARM_WORKER_LOG_LEVEL": "DEBUG"},
                    overrides={"work_dir": str(tmp_path)})
    assert c.origins == {"worker_id": f"{path}:1", "concurrency": f"{path}:2",
                         "log_level": "$FARM_WORKER_LOG_LEVEL", "work_dir": "--work-dir"}
