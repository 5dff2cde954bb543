"""`ansible-test sanity` on library/gearman_job.py, staged into a throwaway collection:
every sanity test that applies passes, with no ignore file; a module whose documentation
disagrees with its argument spec is caught (the check can fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.ansible_sanity import sanity, stage

pytestmark = pytest.mark.slow
MODULE = Path(__file__).resolve().parents[2] / "library" / "gearman_job.py"


def test_the_module_passes_ansible_test_sanity(tmp_path: Path, farm_cache: Path) -> None:
    coll = stage(MODULE, tmp_path)
    r = sanity(coll, farm_cache)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    ran = [line for line in r.stdout.splitlines() if line.startswith("Running sanity test")]
    for name in ("validate-modules", "import", "pylint", "pep8", "compile", "ansible-doc"):
        assert any(f'"{name}"' in line for line in ran), ran
    assert not (coll / "tests" / "sanity").exists()  # no ignore file


def test_a_default_the_docs_do_not_state_is_caught(tmp_path: Path, farm_cache: Path) -> None:
    text = MODULE.read_text()
    assert 'wait_timeout=dict(type="int", default=3600)' in text
    broken = tmp_path / "src" / MODULE.name
    broken.parent.mkdir()
    broken.write_text(text.replace('wait_timeout=dict(type="int", default=3600)',
                                   'wait_timeout=dict(type="int", default=60)'))
    r = sanity(stage(broken, tmp_path / "coll"), farm_cache, "validate-modules")
    assert r.returncode != 0
    assert "doc-default-does-not-match-spec" in r.stdout + r.stderr, r.stdout + r.stderr
