"""The environment cache: locks, prepare, atomic publish, verify, repair, eviction, errors.

Builds that would download use a package index on loopback serving the session's own
wheelhouses, so nothing here needs the network.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm_lab.workers import FARM_WORKER
from farm_worker import locks
from farm_worker.building import FILES, file_listing, key_for
from farm_worker.environments import EnvironmentCache, PrepareResult
from farm_worker.exceptions import EnvironmentBuildError
from harness.pypi import LocalIndex

pytestmark = pytest.mark.tempest

RELEASE_40 = dt.datetime(2024, 9, 9, 5, 22, 54, tzinfo=dt.UTC)
RELEASE_47 = dt.datetime(2026, 9, 9, 14, 24, 56, tzinfo=dt.UTC)


def seeded(root: Path, *prepared: PrepareResult) -> EnvironmentCache:
    """A private cache whose wheelhouses are copies of the session's (no download needed)."""
    cache = EnvironmentCache(root)
    for p in prepared:
        shutil.copytree(p.wheelhouse, root / "wheels" / Path(p.wheelhouse).name)
    return cache


@pytest.fixture
def index(tempest47: PrepareResult, tempest40: PrepareResult) -> Iterator[LocalIndex]:
    idx = LocalIndex()
    idx.add(Path(tempest40.wheelhouse), RELEASE_40 - dt.timedelta(days=1))
    idx.add(Path(tempest47.wheelhouse), RELEASE_47 - dt.timedelta(days=1))
    # the release wheels themselves carry the release time
    for name in list(idx.files):
        if name.startswith("tempest-40.0.0-"):
            idx.uploaded[name] = RELEASE_40
        if name.startswith("tempest-47.0.0-"):
            idx.uploaded[name] = RELEASE_47
    idx.start()
    try:
        yield idx
    finally:
        idx.stop()


def test_shipped_locks_cover_the_supported_versions() -> None:
    for version in ("33.0.0", "40.0.0", "47.0.0"):
        lock = locks.find_lock(version, [locks.SHIPPED_LOCKS])
        assert lock is not None, version
        assert f"tempest=={version}" in lock.pins
        assert len(lock.pins) > 40
        assert "dependencies as of" in lock.path.read_text().splitlines()[1]


def test_prepare_reuses_a_ready_template(worker_cache: Path, tempest47: PrepareResult) -> None:
    again = EnvironmentCache(worker_cache).prepare("47.0.0")
    assert not again.built
    assert again.template == tempest47.template
    assert again.tests_listed > 1000


def test_template_is_complete_and_read_only(worker_cache: Path,
                                            tempest47: PrepareResult) -> None:
    cache = EnvironmentCache(worker_cache)
    template = cache.template("47.0.0")
    assert template is not None
    assert cache.check(template.path, template.key, deep=False) == []
    for path in (template.path / "bin" / "tempest", template.path / "pyvenv.cfg"):
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not (template.path / "bin").stat().st_mode & stat.S_IWUSR
    assert template.key.name.startswith("tempest-47.0.0-")
    assert template.key.python == "cpython-311"


def test_release_time_and_unknown_version_from_the_index(index: LocalIndex) -> None:
    assert locks.release_time("47.0.0", index.url) == RELEASE_47
    with pytest.raises(EnvironmentBuildError,
                       match=r"^tempest 99.0.0: no such release on the index http://127"):
        locks.release_time("99.0.0", index.url)


def test_unknown_version_through_the_cli(tmp_path: Path, index: LocalIndex) -> None:
    proc = subprocess.run([FARM_WORKER, "prepare", "99.0.0", "--cache-dir", str(tmp_path),
                           "--index-url", index.url], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "tempest 99.0.0: no such release on the index" in proc.stderr
    assert list((tmp_path / "envs").iterdir()) == []


def test_lock_resolves_dependencies_as_of_the_release(tmp_path: Path,
                                                      index: LocalIndex) -> None:
    lock = locks.compile_lock("40.0.0", tmp_path / "40.txt", index_url=index.url)
    shipped = locks.find_lock("40.0.0", [locks.SHIPPED_LOCKS])
    assert shipped is not None
    assert set(lock.pins) == set(shipped.pins)  # not the newer packages of 47.0.0's day
    newest = locks.compile_lock("40.0.0", tmp_path / "40-now.txt", index_url=index.url,
                                exclude_newer=dt.datetime.now(dt.UTC))
    assert set(newest.pins) != set(shipped.pins)


def test_prepare_builds_from_an_index_and_publishes(tmp_path: Path, index: LocalIndex,
                                                    tempest47: PrepareResult) -> None:
    cache = EnvironmentCache(tmp_path, index_url=index.url)
    result = cache.prepare("47.0.0")
    assert result.built and result.tests_listed > 1000
    assert any(r.startswith("/files/tempest-47.0.0") for r in index.requests)
    link = tmp_path / "envs" / result.key
    assert link.is_symlink() and link.resolve() == Path(result.template)
    assert [p.name for p in (tmp_path / "builds").iterdir()] == [Path(result.template).name]
    assert not list(tmp_path.glob("*/.staging-*"))


def test_broken_template_is_detected_and_rebuilt(tmp_path: Path,
                                                 tempest47: PrepareResult) -> None:
    cache = seeded(tmp_path, tempest47)
    first = cache.prepare("47.0.0")
    victim = Path(first.template) / "bin" / "tempest"
    victim.parent.chmod(0o755)
    victim.unlink()
    template = cache.template("47.0.0")
    assert template is None  # not usable: no bin/tempest
    key = key_for(cache.lock("47.0.0"))
    assert "missing or changed: bin/tempest" in cache.check(Path(first.template), key, False)
    second = cache.prepare("47.0.0")
    assert second.built and second.template != first.template
    assert not Path(first.template).exists()  # the broken build is gone
    assert cache.check(Path(second.template), key, deep=True) == []


def test_failing_smoke_test_is_found_by_verify_and_repaired(tmp_path: Path,
                                                            tempest47: PrepareResult) -> None:
    cache = seeded(tmp_path, tempest47)
    built = Path(cache.prepare("47.0.0").template)
    main = next(built.glob("lib/python*/site-packages/tempest/cmd/main.py"))
    main.parent.chmod(0o755)
    main.chmod(0o644)
    main.write_text("raise SystemExit('broken')\n")
    for pyc in main.parent.glob("__pycache__/main.*"):
        pyc.unlink()
    listing = built / FILES  # make the quick file check pass: only a smoke test finds it
    listing.chmod(0o644)
    listing.write_text("\n".join(file_listing(built)) + "\n")
    args = [FARM_WORKER, "cache", "verify", "--cache-dir", str(tmp_path), "--json"]
    found = subprocess.run(args, capture_output=True, text=True)
    assert found.returncode == 1
    (problems,) = json.loads(found.stdout).values()
    assert "smoke test failed" in problems[0]
    repaired = subprocess.run([*args, "--repair"], capture_output=True, text=True)
    assert repaired.returncode == 0, repaired.stderr
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0 and json.loads(again.stdout) == {
        key_for(cache.lock("47.0.0")).name: []}


def test_concurrent_prepare_builds_once(tmp_path: Path, tempest47: PrepareResult) -> None:
    seeded(tmp_path, tempest47)
    argv = [FARM_WORKER, "prepare", "47.0.0", "--cache-dir", str(tmp_path), "--json"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0])[0] for p in procs]
    assert sorted(o["built"] for o in outs) == [False, True]
    assert outs[0]["template"] == outs[1]["template"]
    assert len(list((tmp_path / "builds").iterdir())) == 1


def test_interrupted_prepare_publishes_nothing(tmp_path: Path,
                                               tempest47: PrepareResult) -> None:
    cache = seeded(tmp_path, tempest47)
    log = tmp_path / "prepare.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([FARM_WORKER, "prepare", "47.0.0", "--cache-dir",
                                 str(tmp_path)], stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    try:
        end = time.monotonic() + 60
        while not list((tmp_path / "builds").glob(".staging-*/bin/python")):
            assert time.monotonic() < end and proc.poll() is None, log.read_text()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGSTOP)  # frozen mid-build: what is on disk stays
        left = sorted(p.name for p in (tmp_path / "builds").iterdir())
        assert proc.poll() is None, log.read_text()  # it did not end on its own
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert cache.template("47.0.0") is None
    assert list((tmp_path / "envs").iterdir()) == []
    # usually the staging directory; on a loaded machine the build may have got as far as
    # its rename, not its publication: prune reclaims either
    assert left and all(name.startswith((".staging-", "tempest-47.0.0-")) for name in left)
    removed = cache.prune()
    assert removed and all(Path(r).name in left for r in removed), (left, removed)
    assert list((tmp_path / "builds").iterdir()) == []
    assert cache.prepare("47.0.0").built


def test_full_disk_is_a_clear_error_and_publishes_nothing(tmp_path: Path,
                                                          tempest47: PrepareResult) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(root)], check=True)
    try:
        cache = seeded(root, tempest47)  # ~20 MB of wheels fit; a ~116 MB template does not
        with pytest.raises(EnvironmentBuildError, match="no space left on device"):
            cache.prepare("47.0.0")
        assert cache.template("47.0.0") is None
        assert list((root / "envs").iterdir()) == []
        assert list((root / "builds").iterdir()) == []
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_eviction_removes_least_recently_used_unpinned(
        tmp_path: Path, tempest47: PrepareResult, tempest40: PrepareResult,
        tempest33: PrepareResult) -> None:
    seeded(tmp_path, tempest47, tempest40, tempest33)
    cache = EnvironmentCache(tmp_path, pinned=("47.0.0",))
    now = time.time()
    for age, result in ((300, tempest33), (100, tempest40), (900, tempest47)):
        stamp = tmp_path / ".state" / "used" / result.key
        stamp.touch()
        os.utime(stamp, (now - age, now - age))
    sizes = {e.key: e.size_bytes for e in cache.entries()}
    cache.max_size = sizes[tempest47.key] + sizes[tempest40.key]
    assert cache.prune(dry_run=True) == [tempest33.key]
    assert cache.prune() == [tempest33.key]
    assert {e.key for e in cache.entries()} == {tempest47.key, tempest40.key}
    cache.max_size = 1  # the pinned version stays whatever the bound
    assert cache.prune() == [tempest40.key]
    assert [e.key for e in cache.entries()] == [tempest47.key]
    assert cache.entries()[0].pinned


def test_a_version_without_a_shipped_lock_is_locked_then_prepared(
        tmp_path: Path, index: LocalIndex) -> None:
    no_locks = tmp_path / "no-shipped-locks"
    no_locks.mkdir()
    cache = EnvironmentCache(tmp_path / "cache", index_url=index.url, shipped_locks=no_locks)
    result = cache.prepare("40.0.0")
    assert result.built and result.tests_listed > 1000
    auto = tmp_path / "cache" / "locks" / "auto" / locks.lock_name("40.0.0")
    assert Path(result.lock) == auto
    shipped = locks.find_lock("40.0.0", [locks.SHIPPED_LOCKS])
    assert shipped is not None and set(locks.read_lock(auto, "40.0.0").pins) == set(
        shipped.pins)


def test_a_lock_that_cannot_be_built_is_a_clear_error(tmp_path: Path,
                                                       index: LocalIndex) -> None:
    conflict = tmp_path / "constraints.txt"
    conflict.write_text("pbr<1\n")
    with pytest.raises(EnvironmentBuildError,
                       match=r"^tempest 47.0.0: cannot be locked against the constraints in"):
        locks.compile_lock("47.0.0", tmp_path / "x.txt", index_url=index.url,
                           constraints=conflict)
    assert not (tmp_path / "x.txt").exists()
    assert not list(tmp_path.glob(".x.txt.*"))


def test_cache_list_cli(worker_cache: Path, tempest47: PrepareResult) -> None:
    proc = subprocess.run([FARM_WORKER, "cache", "list", "--json", "--cache-dir",
                           str(worker_cache)], capture_output=True, text=True, check=True)
    entries = {e["key"]: e for e in json.loads(proc.stdout)}
    entry = entries[tempest47.key]
    assert entry["version"] == "47.0.0" and entry["template"] == tempest47.template
    assert entry["size_bytes"] > 50 * 2**20 and entry["last_used"] is not None
