"""`farm-server`: serve and the administration commands, and their errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.postgres import Postgres

FARM_SERVER = str(Path(sys.executable).parent / "farm-server")
# the newest schema revision (test_store.py names it; here it only has to be the newest)
HEAD = max(p.name.split("_", 1)[0] for p in (
    Path(__file__).resolve().parents[2] / "server/farm_server/migrations/versions"
).glob("[0-9]*_*.py"))


def farm_server(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [FARM_SERVER, *args] + (["-c", str(config)] if config else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(f"database_url: sqlite:///{tmp_path / 'farm.db'}\n"
                    "gearman_servers: [127.0.0.1:1]\n")
    return path


def test_init_db_creates_then_keeps(config: Path) -> None:
    first = farm_server("init-db", config=config)
    assert first.returncode == 0 and f"schema none -> {HEAD}" in first.stdout
    again = farm_server("init-db", config=config)
    assert again.returncode == 0 and "up to date" in again.stdout


def test_init_db_on_postgresql_masks_the_password(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database().replace("postgres@", "postgres:not-shown@")
    proc = subprocess.run([FARM_SERVER, "init-db", "--database-url", url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "not-shown" not in proc.stdout and "postgres:***@" in proc.stdout


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([FARM_SERVER, "init-db", "--database-url",
                           "postgresql+psycopg://farm@127.0.0.1:1/farm"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("farm-server init-db: ") and "Connection refused" in proc.stderr


def test_tokens_are_printed_once(config: Path) -> None:
    farm_server("init-db", config=config)
    added = farm_server("add-worker", "host-1", "--allow", "10.1.2.0/24",
                 "--allow", "192.0.2.7", config=config)
    assert added.returncode == 0
    token = added.stdout.strip()
    assert len(token) >= 40 and "\n" not in token
    assert "cannot be shown again" in added.stderr
    listed = farm_server("workers", "--json", config=config)
    assert json.loads(listed.stdout) == [{"name": "host-1",
                                          "allow": ["10.1.2.0/24", "192.0.2.7/32"],
                                          "last_seen_at": None}]
    assert token not in listed.stdout
    again = farm_server("add-worker", "host-1", config=config)
    assert again.returncode == 2 and "worker 'host-1' exists already" in again.stderr
    user = farm_server("add-user", "alice", config=config)
    assert user.returncode == 0 and len(user.stdout.strip()) >= 40


@pytest.mark.parametrize(("args", "fragment"), [
    (("add-worker", "bad name"), "is not a name"),
    (("add-worker", "h2", "--allow", "10.0.0.300/8"), "is not an address"),
])
def test_bad_arguments(config: Path, args: tuple[str, ...], fragment: str) -> None:
    proc = farm_server(*args, config=config)
    assert proc.returncode == 2 and fragment in proc.stderr


def test_serve_refuses_an_old_schema(config: Path) -> None:
    proc = farm_server("serve", "--no-monitor", config=config)
    assert proc.returncode == 2
    assert "run `farm-server init-db`" in proc.stderr


@pytest.mark.parametrize(("text", "fragment"), [
    ("databse_url: x\n", ": databse_url: unknown key; known keys:"),
    ("processes: none\n", ": processes: 'none' is not a number"),
    ("callback_url: ftp://x/\n", ": callback_url: 'ftp://x/' is not an http(s) URL"),
    ("gearman_servers: ['h:99999']\n", "gearman_servers: 'h:99999' is not host or host:port"),
    ("open_reads: maybe\n", ": open_reads: 'maybe' is not true or false"),
])
def test_bad_config_names_file_line_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("log_level: INFO\n" + text)
    proc = farm_server("init-db", config=path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"farm-server init-db: {path}:2: "), proc.stderr
    assert fragment in proc.stderr
    key = text.split(":")[0]
    proc = farm_server("workers", "--json", config=path)
    assert json.loads(proc.stdout)["field"] == key, proc.stdout


def test_help_lists_every_command() -> None:
    out = subprocess.run([FARM_SERVER, "--help"], capture_output=True, text=True).stdout
    for command in ("serve", "monitor", "init-db", "add-worker", "add-user", "workers"):
        assert command in out


@pytest.mark.parametrize(("url", "fragment"), [
    ("mysql://farm:secret@127.0.0.1/farm",
     "database_url: 'mysql' is not a supported database; use sqlite:///PATH, "
     "postgresql+psycopg://"),
    ("oracle+cx://farm:secret@db/farm", "'oracle+cx' is not a supported database"),
    ("postgresql+psycopg2://farm:secret@db/farm", "driver 'psycopg2' is not supported; "
                                                   "use postgresql+psycopg://"),
    ("farm.db", "'farm.db' is not a supported database"),
])
def test_an_unsupported_database_is_one_line(tmp_path: Path, url: str, fragment: str) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(f"database_url: {url}\n")
    proc = farm_server("init-db", config=path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr
    assert "secret" not in proc.stderr and "Traceback" not in proc.stderr


def test_plain_postgresql_means_psycopg(postgres: Postgres) -> None:
    url = postgres.new_database().replace("postgresql+psycopg://", "postgresql://")
    proc = subprocess.run([FARM_SERVER, "init-db", "--database-url", url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_default_database_directory_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.run([FARM_SERVER, "init-db"], capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"],
                                           "XDG_STATE_HOME": str(state),
                                           "FARM_SERVER_CONFIG": ""}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((state / "refstack-farm").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "refstack-farm" / "server.db").stat().st_mode) == 0o600


def test_serve_on_a_busy_port_is_one_line(config: Path) -> None:
    import socket

    farm_server("init-db", config=config)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = farm_server("serve", "--no-monitor", "--listen", f"127.0.0.1:{port}",
                           config=config)
    assert proc.returncode == 2
    assert proc.stderr == (f"farm-server serve: listen 127.0.0.1:{port}: the address is in "
                           "use (another farm-server, or another program)\n")


def test_no_command_lists_them() -> None:
    proc = farm_server()
    assert proc.returncode == 2
    assert proc.stderr.startswith("farm-server: command is required: serve, monitor, init-db")


def test_users_are_listed_revoked_and_rotated(config: Path) -> None:
    """Through the API of a live server: a revoked or replaced token, a user's or a
    worker's, is refused at once."""
    import requests

    from farm_lab.loopback import free_port

    farm_server("init-db", config=config)
    old = farm_server("add-user", "bob", config=config).stdout.strip()
    worker = farm_server("add-worker", "host-9", config=config).stdout.strip()
    listed = json.loads(farm_server("users", "--json", config=config).stdout)
    assert [u["name"] for u in listed] == ["bob"] and old not in str(listed)
    port = free_port()
    serve = subprocess.Popen([FARM_SERVER, "serve", "--no-monitor", "-c", str(config),
                              "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1/tests"

        def answer(token: str) -> int:
            return requests.get(url, headers={"Authorization": f"Bearer {token}"},
                                timeout=10).status_code

        import time

        end = time.monotonic() + 60
        while True:
            try:
                assert answer(old) == 200
                break
            except requests.ConnectionError:
                assert time.monotonic() < end and serve.poll() is None
                time.sleep(0.2)
        rotated = farm_server("rotate", "user", "bob", config=config)
        assert rotated.returncode == 0 and "old token is refused" in rotated.stderr
        new = rotated.stdout.strip()
        assert answer(old) == 401 and answer(new) == 200
        assert farm_server("revoke", "user", "bob", config=config).returncode == 0
        assert answer(new) == 401

        def report(token: str) -> int:  # 405: not a testing host; 400: the body is checked
            return requests.post(f"http://127.0.0.1:{port}/update-test-status/", json={},
                                 headers={"Authorization": f"Bearer {token}"},
                                 timeout=10).status_code

        assert report(worker) == 400
        rotated = farm_server("rotate", "worker", "host-9", config=config)
        assert rotated.returncode == 0 and "refused from now on" in rotated.stderr
        new_worker = rotated.stdout.strip()
        assert report(worker) == 405 and report(new_worker) == 400
        revoked = farm_server("revoke", "worker", "host-9", config=config)
        assert revoked.returncode == 0 and "refused at once" in revoked.stderr
        assert report(new_worker) == 405
    finally:
        serve.terminate()
        serve.wait(30)
    gone = farm_server("revoke", "user", "bob", config=config)
    assert gone.returncode == 2 and "no user 'bob'" in gone.stderr
    assert json.loads(farm_server("workers", "--json", config=config).stdout) == []
