"""The three distributions install on their own, each depending only downwards: a host that
submits jobs (worker + client) gets no web stack; adding the server gives the whole farm.
Installed for real (not editable) from copies of the three directories into a bare venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from farm_worker.locks import uv_binary

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
# the newest migration of the source tree: what the installed server creates
SCHEMA_HEAD = max(p.name.split("_", 1)[0]
                  for p in (REPO / "server/farm_server/migrations/versions").glob("[0-9]*_*.py"))
WEB_STACK = {"flask", "werkzeug", "sqlalchemy", "alembic", "gunicorn"}
LOADED = """
import json, sys
import farm_client.cli, farm_client.commands, farm_client.farm
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _copy(name: str, into: Path) -> Path:
    """The distribution's directory as a fresh clone has it (no build/, no egg-info)."""
    return Path(shutil.copytree(REPO / name, into / name, ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "build")))


def _run(*argv: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                          env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (argv, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stdout


def _installed(python: Path) -> set[str]:
    out = _run(uv_binary(), "pip", "list", "--python", python, "--format", "json")
    return {d["name"].lower().replace("_", "-") for d in json.loads(out)}


def test_client_without_the_server_then_the_whole_farm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run(uv_binary(), "venv", "--quiet", "--python", sys.executable, venv, env=env)
    install: list[str | Path] = [uv_binary(), "pip", "install", "--quiet", "--python",
                                 python, "--index-url", "https://pypi.org/simple"]
    worker, client, server = (_copy(n, tmp_path / "src") for n in ("worker", "client", "server"))

    _run(*install, worker, client, env=env)
    installed = _installed(python)
    assert {"refstack-farm-worker", "refstack-farm-client"} <= installed
    assert not installed & (WEB_STACK | {"refstack-farm-server"}), installed & WEB_STACK
    loaded = set(json.loads(_run(python, "-c", LOADED)))
    assert "farm_client" in loaded and not loaded & (WEB_STACK | {"farm_server"}), loaded
    assert "submit" in _run(venv / "bin" / "farm", "--help")
    # the templates (the HTML report's, the dashboard's) are in the client's wheel
    page = _run(python, "-c", "from farm_client.reports import compare_html; print(compare_html("
                "{'a': 'A', 'b': 'B', 'counts': {}, 'ratio': 1.5, 'min_delta_s': 1}))")
    assert "function setupTable" in page and "main{padding" in page
    assert not (venv / "bin" / "farm-server").exists()

    _run(*install, server, env=env)
    installed = _installed(python)
    assert {"refstack-farm-server", "flask", "sqlalchemy", "alembic", "gunicorn"} <= installed
    help_text = _run(venv / "bin" / "farm-server", "--help")
    for command in ("serve", "monitor", "init-db", "add-worker", "add-user", "workers"):
        assert command in help_text
    # the migrations are in the wheel: a new database gets the whole schema
    config = tmp_path / "server.yaml"
    config.write_text(f"database_url: sqlite:///{tmp_path / 'farm.db'}\n")
    created = _run(venv / "bin" / "farm-server", "init-db", "-c", config, env=env)
    assert f"schema none -> {SCHEMA_HEAD}" in created, created
