"""One job's Python environment, made from a template so the job cannot change it.

Three ways, measured by bench/environments.py (figures in the README):
- overlay: an overlayfs with the read-only template as the lower layer (~5 ms); needs
  mount rights (root or CAP_SYS_ADMIN). Writes land in the job's upper layer.
- readonly: the job runs from the template itself (free). The template's files and
  directories are read-only, which stops a worker that does not run as root.
- copy: `cp -a` of the template into the job directory (~1 s; the fallback for root
  without mount rights, where file modes stop nothing).
`auto` picks overlay when a probe mount works, else readonly for a non-root worker, else copy.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from farm_worker.exceptions import ConfigError, EnvironmentBuildError
from farm_worker.fsutil import remove_tree

log = logging.getLogger(__name__)

MODES = ("overlay", "readonly", "copy")


def _mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    for p in (lower, upper, work):
        if "," in str(p) or ":" in str(p):
            raise EnvironmentBuildError(f"{p}: overlay paths cannot contain ',' or ':'")
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EnvironmentBuildError(f"overlay mount on {target} failed: "
                                    f"{proc.stderr.strip()[:300]}")


def unmount(target: Path) -> None:
    """Unmount `target`; lazily when something still holds it open."""
    proc = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log.warning("umount %s: %s; detaching lazily", target, proc.stderr.strip())
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def mounts_under(path: Path) -> list[Path]:
    """Mount points below `path` (deepest first), from /proc/self/mountinfo."""
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


@functools.cache
def can_overlay(scratch: Path) -> bool:
    """Whether this process can mount an overlay with its upper layer under `scratch`."""
    if os.geteuid() != 0:
        return False
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".overlay-probe-", dir=scratch) as tmp:
        base = Path(tmp)
        dirs = [base / d for d in ("lower", "upper", "work", "merged")]
        for d in dirs:
            d.mkdir()
        try:
            _mount_overlay(*dirs)
        except EnvironmentBuildError as exc:
            log.info("overlayfs not available under %s: %s", scratch, exc)
            return False
        unmount(dirs[3])
        return True


def resolve_mode(mode: str, scratch: Path) -> str:
    """The isolation a worker uses: `auto` resolved, an explicit mode checked."""
    if mode == "auto":
        if can_overlay(scratch):
            return "overlay"
        return "readonly" if os.geteuid() != 0 else "copy"
    if mode not in MODES:
        raise ConfigError(f"env_isolation: {mode!r} is not one of auto, {', '.join(MODES)}")
    if mode == "overlay" and not can_overlay(scratch):
        raise ConfigError(f"env_isolation: overlay, but this worker cannot mount an overlay "
                          f"under {scratch} (needs root or CAP_SYS_ADMIN); use auto")
    if mode == "readonly" and os.geteuid() == 0:
        log.warning("env_isolation: readonly as root does not stop a job from writing "
                    "into the template; prefer overlay or copy")
    return mode


@contextlib.contextmanager
def job_environment(template_path: Path, job_dir: Path, mode: str) -> Iterator[Path]:
    """The job's environment, removed (or unmounted) on exit, whatever happened."""
    if mode == "readonly":
        yield template_path
        return
    target = job_dir / "env"
    if mode == "overlay":
        upper, work = job_dir / "env.upper", job_dir / "env.work"
        for d in (upper, work, target):
            d.mkdir(parents=True)
        _mount_overlay(template_path, upper, work, target)
        try:
            yield target
        finally:
            unmount(target)
            remove_tree(upper)
            remove_tree(work)
            remove_tree(target)
        return
    proc = subprocess.run(["cp", "-a", "--reflink=auto", str(template_path), str(target)],
                          capture_output=True, text=True, check=False)
    try:
        if proc.returncode != 0:
            raise EnvironmentBuildError(f"copying the template to {target} failed: "
                                        f"{proc.stderr.strip()[:300]}")
        yield target
    finally:
        remove_tree(target)
