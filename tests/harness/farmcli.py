"""The `farm` command as a user runs it: a child process with a clean FARM_* environment,
in a directory of its own (so no ./refstack.cfg is picked up by accident)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from farm_lab.server import FARM


def farm_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(extra or {})
    return env


def farm(cwd: Path, *args: str, env: dict[str, str] | None = None,
         timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FARM, *args], cwd=cwd, env=farm_env(env), capture_output=True,
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)


def start_farm(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`farm` in the background (to interrupt it); the caller waits for it."""
    return subprocess.Popen([FARM, *args], cwd=cwd, env=farm_env(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
