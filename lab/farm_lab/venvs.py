"""Virtualenvs of the services the demo and the tests run for real (Keystone, RefStack), each
built once from a pinned requirements file into the cache and reused while the file is
unchanged."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from farm_worker.locks import uv_binary


def cache_root() -> Path:
    """$FARM_TEST_CACHE, else $FARM_CACHE (as `make` sets both), else ~/.cache/refstack-farm."""
    return Path(os.environ.get("FARM_TEST_CACHE") or os.environ.get("FARM_CACHE")
                or Path.home() / ".cache" / "refstack-farm")


def cached_venv(requirements: Path, name: str, root: Path | None = None) -> Path:
    """`<cache>/<name>-venv-<digest of requirements>`, built from PyPI when missing (into a
    staging directory renamed at the end: a killed build leaves nothing half-made)."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    venv = (root or cache_root()) / f"{name}-venv-{digest}"
    if (venv / ".complete").exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f".{name}-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; test processes in parallel wait
        if not (venv / ".complete").exists():
            _build(requirements, venv)
    return venv


def _build(requirements: Path, venv: Path) -> None:
    staging = venv.with_name(venv.name + f".{os.getpid()}.tmp")
    subprocess.run(["rm", "-rf", str(staging)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    uv = uv_binary()
    subprocess.run([uv, "venv", "--quiet", "--relocatable", "--python", sys.executable,
                    str(staging)], check=True, env=env)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(staging / "bin/python"),
                    "--index-url", "https://pypi.org/simple", "-r", str(requirements)],
                   check=True, env=env)
    (staging / ".complete").touch()
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    os.rename(staging, venv)
