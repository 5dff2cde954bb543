"""Per-job environments: a job cannot change the template, and nothing stays behind."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from farm_worker.building import file_listing
from farm_worker.environments import EnvironmentCache, PrepareResult
from farm_worker.isolation import can_overlay, job_environment, mounts_under, resolve_mode
from farm_worker.tempest import tempest_version

pytestmark = pytest.mark.tempest


def template_path(worker_cache: Path) -> Path:
    template = EnvironmentCache(worker_cache).template("47.0.0")
    assert template is not None
    return template.path


def tamper(env: Path) -> None:
    """What a misbehaving job might do to its environment."""
    site = next(env.glob("lib/python*/site-packages"))
    (site / "injected.py").write_text("x = 1\n")
    victim = site / "tempest" / "version.py"
    victim.chmod(0o644)
    victim.write_text("# changed\n")
    shutil.rmtree(site / "tempest" / "api" / "compute")


@pytest.mark.parametrize("mode", ["overlay", "copy"])
def test_job_cannot_change_the_template(mode: str, tmp_path: Path, worker_cache: Path,
                                        tempest47: PrepareResult) -> None:
    if mode == "overlay" and not can_overlay(tmp_path):
        pytest.skip("this machine cannot mount an overlay")
    template = template_path(worker_cache)
    before = file_listing(template)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    with job_environment(template, job_dir, mode) as env:
        assert env != template
        assert tempest_version(env, tmp_path) == "47.0.0"
        tamper(env)
        assert (next(env.glob("lib/python*/site-packages")) / "injected.py").exists()
    assert file_listing(template) == before
    assert list(job_dir.iterdir()) == []
    assert mounts_under(tmp_path) == []


def test_readonly_template_refuses_a_non_root_job(tmp_path: Path, worker_cache: Path,
                                                  tempest47: PrepareResult) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to run a step as another user")
    template = template_path(worker_cache)
    site = next(template.glob("lib/python*/site-packages"))
    with job_environment(template, tmp_path, "readonly") as env:
        assert env == template
        for target in (site / "injected.py", site / "tempest" / "version.py"):
            proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                                   "--clear-groups", "sh", "-c", f"echo x >> '{target}'"],
                                  capture_output=True, text=True)
            assert proc.returncode != 0 and "Permission denied" in proc.stderr
    assert not (site / "injected.py").exists()


def test_resolve_mode(tmp_path: Path) -> None:
    auto = resolve_mode("auto", tmp_path)
    if os.geteuid() == 0:
        assert auto == ("overlay" if can_overlay(tmp_path) else "copy")
    else:
        assert auto == "readonly"
    assert resolve_mode("copy", tmp_path) == "copy"
    from farm_worker.exceptions import ConfigError

    with pytest.raises(ConfigError, match="env_isolation"):
        resolve_mode("chroot", tmp_path)
