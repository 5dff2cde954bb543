"""The host harness cleans up after a run that was killed before its teardown (a CI
timeout, SIGKILL) and leaves a run that is still going alone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.nspawn import reap_stale

pytestmark = [pytest.mark.deployment]


def _overlay(state: Path, base: Path, owner: int) -> Path:
    roots = state / "roots" / "h1"
    for sub in ("upper", "work", "merged"):
        (roots / sub).mkdir(parents=True)
    (state / "owner").write_text(f"{owner}\n")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base},upperdir={roots / 'upper'},workdir={roots / 'work'}",
                    str(roots / "merged")], check=True)
    return roots / "merged"


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_what_a_dead_run_left_is_reaped_and_a_live_run_is_kept(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, overlay mounts)")
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, live = f"rsf{gone.pid}-probe", f"rsf{os.getpid()}-probe"
    base = tmp_path / "base"
    (base / "etc").mkdir(parents=True)
    mounts: list[Path] = []
    try:
        for ns in (dead, live):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        mounts = [_overlay(tmp_path / "dead", base, gone.pid),
                  _overlay(tmp_path / "live", base, os.getpid())]
        reaped = reap_stale(base)
        assert f"netns {dead}" in reaped
        assert f"mount {mounts[0]}" in reaped
        assert dead not in _netns() and live in _netns()
        assert not os.path.ismount(mounts[0]) and os.path.ismount(mounts[1])
        assert reap_stale(base) == []
    finally:
        for ns in (dead, live):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        for m in mounts:
            if os.path.ismount(m):
                subprocess.run(["umount", "-l", str(m)], check=False)
