"""The worker installs alone into a bare virtualenv and never needs the client."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from uv import find_uv_bin

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_worker_installs_alone(tmp_path: Path) -> None:
    uv = str(find_uv_bin())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL"))}
    venv = tmp_path / "venv"
    source = tmp_path / "worker"  # a copy: building must not leave build/ in the clone
    shutil.copytree(ROOT / "worker", source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True, env=env)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    "--index-url", "https://pypi.org/simple", str(source)],
                   check=True, env=env)
    out = subprocess.run([str(venv / "bin" / "farm-worker"), "--version"], check=True,
                         capture_output=True, text=True, env=env).stdout
    assert out.startswith("farm-worker ")
    probe = ("import importlib.util as u, farm_worker.gearman_worker, farm_worker.locks;"
             "print(u.find_spec('farm_client') is None)")
    assert subprocess.run([str(venv / "bin" / "python"), "-c", probe], check=True,
                          capture_output=True, text=True, env=env).stdout.strip() == "True"
    locks = list(venv.glob("lib/python*/site-packages/farm_worker/locks/tempest-*.txt"))
    assert len(locks) >= 3  # the shipped locks are package data
