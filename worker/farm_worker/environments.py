"""The environment cache: per Tempest version, a wheelhouse and a ready template venv.

Layout under the cache root (see the README, "Environments"):

    locks/<lock>          operator locks (`farm-worker lock`), used before shipped ones
    locks/auto/<lock>     locks made on demand for versions that ship none
    wheels/<key>/         the wheelhouse of one key, with MANIFEST.json (sha256 per wheel)
    builds/<key>.<stamp>/ a template venv (relocatable, bytecode compiled, read-only)
    envs/<key> -> ../builds/<key>.<stamp>   the published template: a symlink swapped
                          atomically, so a half-built entry is never visible
    .state/               flock files (one builder per key; jobs hold builds shared),
                          last-use stamps for LRU eviction

A key is (Tempest version, lock digest, Python, platform): any change is a new key and a
new build, never a mixed environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm_worker import defaults, locks
from farm_worker.building import (
    FILES,
    READY,
    TESTS,
    CacheKey,
    build_template,
    build_wheelhouse,
    file_listing,
    key_for,
    smoke_test,
)
from farm_worker.exceptions import EnvironmentBuildError
from farm_worker.fsutil import remove_tree, tree_size
from farm_worker.locks import Lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Template:
    """A published, read-only template environment of one key."""

    key: CacheKey
    path: Path  # the build directory itself (the symlink resolved once)
    info: dict[str, Any]

    @property
    def tests(self) -> tuple[str, ...] | None:
        """Every test this Tempest lists, kept when it was prepared (None: not kept, or
        the kept list is gone or empty: the job lists with Tempest, and says why)."""
        name = self.info.get("tests_file")
        if not name:
            return None
        try:
            tests = read_tests(self.path / name)
        except (OSError, UnicodeDecodeError) as exc:
            problem = f"cannot be read ({exc.__class__.__name__}: {exc})"
        else:
            if tests:
                return tests
            problem = "is empty"
        log.warning("template %s: its test list %s %s; Tempest lists the tests instead "
                    "(`farm-worker prepare %s` again makes a new one)", self.key.name,
                    self.path / name, problem, self.key.version)
        return None


@functools.lru_cache(maxsize=16)
def read_tests(path: Path) -> tuple[str, ...]:
    """A template's test list (a build never changes once published: cached by path)."""
    return tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line)


@dataclass
class PrepareResult:
    version: str
    key: str
    template: str
    wheelhouse: str
    lock: str
    built: bool
    seconds: float
    tests_listed: int


@dataclass
class Entry:
    """One key in the cache, as `farm-worker cache list` shows it."""

    key: str
    version: str
    template: str | None
    wheelhouse: str | None
    size_bytes: int
    last_used: float | None
    pinned: bool


class EnvironmentCache:
    """Locks, wheelhouses and templates of Tempest versions under one root directory."""

    def __init__(self, root: Path, *, index_url: str = defaults.INDEX_URL,
                 pinned: tuple[str, ...] = (), max_size: int = defaults.CACHE_MAX_BYTES,
                 shipped_locks: Path = locks.SHIPPED_LOCKS):
        self.root = root
        self.shipped_locks = shipped_locks
        self.index_url = index_url
        self.pinned = pinned
        self.max_size = max_size
        for sub in ("locks/auto", "wheels", "builds", "envs", ".state/used", ".state/flock"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # ---- locks and keys -------------------------------------------------------------------
    def lock_folders(self) -> list[Path]:
        return [self.root / "locks", self.shipped_locks, self.root / "locks" / "auto"]

    def lock(self, version: str, *, allow_compile: bool = True) -> Lock:
        """The lock of `version`: operator's, shipped, or made now as of its release date."""
        found = locks.find_lock(version, self.lock_folders())
        if found is not None:
            return found
        if not allow_compile:
            raise EnvironmentBuildError(f"tempest {version}: no lock file for Python "
                                        f"{locks.python_version()}")
        return locks.compile_lock(version, self.root / "locks" / "auto" /
                                  locks.lock_name(version), index_url=self.index_url)

    @contextlib.contextmanager
    def _flock(self, name: str, mode: int, wait_s: float | None) -> Iterator[bool]:
        """Hold a flock on .state/flock/<name>; yields False if non-blocking and busy."""
        path = self.root / ".state" / "flock" / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = None if wait_s is None else time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    acquired = True
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        acquired = False
                        break
                    time.sleep(0.2)
            yield acquired
        finally:
            os.close(fd)

    def in_use(self, template: Template) -> contextlib.AbstractContextManager[bool]:
        """Held (shared) by a job for as long as it uses the template's files."""
        return self._flock(f"use-{template.path.name}", fcntl.LOCK_SH, None)

    # ---- lookup ---------------------------------------------------------------------------
    def _published(self, keyname: str) -> Path | None:
        link = self.root / "envs" / keyname
        if not link.is_symlink():
            return None
        target = link.resolve()
        return target if (target / READY).is_file() else None

    def template(self, version: str) -> Template | None:
        """The published template of `version` for the current lock, if there is one."""
        lock = locks.find_lock(version, self.lock_folders())
        if lock is None:
            return None
        key = key_for(lock)
        path = self._published(key.name)
        if path is None or not (path / "bin" / "tempest").exists():
            return None
        info = json.loads((path / READY).read_text())
        return Template(key, path, info)

    def mark_used(self, template: Template) -> None:
        (self.root / ".state" / "used" / template.key.name).touch()

    # ---- prepare --------------------------------------------------------------------------
    def prepare(self, version: str, *, force: bool = False, smoke: bool = True) -> PrepareResult:
        """Make `version` ready: wheelhouse, template, smoke test, atomic publish.

        Two processes preparing the same key build it once: the second waits for the
        first and then finds the entry ready. A broken entry is rebuilt.
        """
        started = time.monotonic()
        lock = self.lock(version)
        key = key_for(lock)
        with self._flock(f"key-{key.name}", fcntl.LOCK_EX, defaults.LOCK_WAIT_S) as got:
            if not got:
                raise EnvironmentBuildError(f"tempest {version}: another process has been "
                                            f"preparing {key.name} for too long")
            current = self._published(key.name)
            if current is not None and not force:
                problems = self.check(current, key, deep=False)
                if not problems:
                    info = json.loads((current / READY).read_text())
                    self.mark_used(Template(key, current, info))
                    return PrepareResult(version, key.name, str(current),
                                         str(self.root / "wheels" / key.name), str(lock.path),
                                         False, time.monotonic() - started,
                                         info.get("tests_listed", 0))
                log.warning("tempest %s: template %s is broken (%s); rebuilding", version,
                            current, "; ".join(problems[:3]))
            wheelhouse = build_wheelhouse(self.root / "wheels" / key.name, key, lock,
                                          self.index_url, self.root / ".state" / "pip-cache")
            build, listed = build_template(self.root / "builds", key, lock, wheelhouse, smoke)
            self._publish(key, build)
        self.mark_used(Template(key, build, {}))
        self._remove_unused_builds(key.name)
        return PrepareResult(version, key.name, str(build), str(wheelhouse), str(lock.path),
                             True, time.monotonic() - started, listed)

    def _publish(self, key: CacheKey, build: Path) -> None:
        link = self.root / "envs" / key.name
        tmp = link.with_name(f".{key.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(build, link.parent), tmp)
        os.replace(tmp, link)
        log.info("tempest %s: published %s", key.version, build)

    # ---- checks ---------------------------------------------------------------------------
    def check(self, path: Path, key: CacheKey, deep: bool) -> list[str]:
        """Problems of a template: wrong key, files missing or changed; deep: smoke test."""
        try:
            info = json.loads((path / READY).read_text())
        except (OSError, ValueError):
            return [f"{READY} missing or unreadable"]
        if info.get("key") != key.name:
            return [f"built for {info.get('key')}, not {key.name}"]
        if "tests_file" not in info:
            return ["built by an older farm-worker: it keeps no test list"]
        try:
            expected = (path / FILES).read_text().splitlines()
        except OSError:
            return [f"{FILES} missing"]
        actual = set(file_listing(path))
        problems = [f"missing or changed: {line.split(chr(9))[0]}"
                    for line in expected if line and line not in actual]
        problems += [f"unexpected: {line.split(chr(9))[0]}"
                     for line in sorted(actual - set(expected))]
        if deep and not problems:
            try:
                listed = smoke_test(path, key.version)
            except EnvironmentBuildError as exc:
                problems.append(str(exc))
            else:
                kept = read_tests.__wrapped__(path / TESTS) if info["tests_file"] else None
                if kept is not None and tuple(sorted(listed)) != kept:
                    problems.append(f"{TESTS} is not the list this Tempest gives")
        return problems

    def verify(self, deep: bool = True) -> dict[str, list[str]]:
        """Problems per published key (an empty list means sound)."""
        out: dict[str, list[str]] = {}
        for link in sorted((self.root / "envs").iterdir()):
            if link.name.startswith("."):
                continue
            target = link.resolve()
            m = re.match(r"tempest-(\d+\.\d+\.\d+)-", link.name)
            info = {}
            with contextlib.suppress(OSError, ValueError):
                info = json.loads((target / READY).read_text())
            if not m or not info:
                out[link.name] = [f"{target} is not a finished template"]
                continue
            key = CacheKey(info["version"], info["lock_digest"], info["python"],
                           info["platform"])
            out[link.name] = self.check(target, key, deep)
        return out

    # ---- listing, eviction ------------------------------------------------------------------
    def _pinned_keys(self) -> set[str]:
        keys = set()
        for version in self.pinned:
            lock = locks.find_lock(version, self.lock_folders())
            if lock is not None:
                keys.add(key_for(lock).name)
        return keys

    def entries(self) -> list[Entry]:
        names = {p.name for p in (self.root / "envs").iterdir() if not p.name.startswith(".")}
        names |= {p.name for p in (self.root / "wheels").iterdir()
                  if p.is_dir() and not p.name.startswith(".")}
        pinned = self._pinned_keys()
        out = []
        for name in sorted(names):
            template = self._published(name)
            wheels = self.root / "wheels" / name
            used = self.root / ".state" / "used" / name
            size = sum(tree_size(b) for b in (self.root / "builds").glob(f"{name}.*"))
            size += tree_size(wheels) if wheels.is_dir() else 0
            m = re.match(r"tempest-(\d+\.\d+\.\d+)-", name)
            out.append(Entry(name, m.group(1) if m else "?",
                             str(template) if template else None,
                             str(wheels) if wheels.is_dir() else None, size,
                             used.stat().st_mtime if used.exists() else None, name in pinned))
        return out

    def _remove_key(self, name: str) -> bool:
        with self._flock(f"key-{name}", fcntl.LOCK_EX, 0) as got:
            if not got:
                return False
            builds = sorted((self.root / "builds").glob(f"{name}.*"))
            for build in builds:
                with self._flock(f"use-{build.name}", fcntl.LOCK_EX, 0) as free:
                    if not free:
                        log.info("%s is in use by a job; kept", build)
                        return False
            (self.root / "envs" / name).unlink(missing_ok=True)
            for build in builds:
                remove_tree(build)
            remove_tree(self.root / "wheels" / name)
            (self.root / ".state" / "used" / name).unlink(missing_ok=True)
        return True

    def _remove_unused_builds(self, name: str) -> list[str]:
        """Builds of `name` that the symlink no longer points to and no job uses."""
        current = self._published(name)
        removed = []
        for build in (self.root / "builds").glob(f"{name}.*"):
            if current is not None and build.resolve() == current:
                continue
            with self._flock(f"use-{build.name}", fcntl.LOCK_EX, 0) as free:
                if free:
                    remove_tree(build)
                    removed.append(str(build))
        return removed

    def prune(self, dry_run: bool = False) -> list[str]:
        """Remove leftovers of interrupted builds, superseded builds, then evict (LRU)
        keys not pinned until the cache fits `max_size`."""
        removed: list[str] = []
        for parent in (self.root / "builds", self.root / "wheels"):
            for staging in parent.glob(".staging-*"):
                name = re.sub(r"^\.staging-(.+)-[^-]+$", r"\1", staging.name)
                with self._flock(f"key-{name}", fcntl.LOCK_EX, 0) as idle:
                    if idle:
                        removed.append(str(staging))
                        if not dry_run:
                            remove_tree(staging)
        for entry in self.entries():
            if not dry_run:
                removed += self._remove_unused_builds(entry.key)
        entries = self.entries()
        total = sum(e.size_bytes for e in entries)
        for entry in sorted((e for e in entries if not e.pinned),
                            key=lambda e: e.last_used or 0.0):
            if total <= self.max_size:
                break
            if dry_run or self._remove_key(entry.key):
                log.info("evicted %s (%d MB)", entry.key, entry.size_bytes // 2**20)
                removed.append(entry.key)
                total -= entry.size_bytes
        return removed
