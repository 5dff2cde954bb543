"""Building one cache key: its wheelhouse, its template venv, and the smoke test.

Every step works in a staging directory and is moved into place only when complete;
`EnvironmentCache` decides what to build and publishes it.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from farm_worker import defaults, locks, tempest
from farm_worker.exceptions import EnvironmentBuildError, TempestError
from farm_worker.fsutil import make_read_only, remove_tree
from farm_worker.locks import Lock
from farm_worker.tempestconf_shim import SELF_CHECK

SHIM = Path(__file__).with_name("tempestconf_shim.py")

log = logging.getLogger(__name__)

READY = "READY.json"  # in a template: its key and build facts; written last
FILES = "FILES.txt"  # in a template: every file and its size, to find changes
MANIFEST = "MANIFEST.json"  # in a wheelhouse: every wheel and its sha256
TESTS = "TESTS.txt"  # in a template: every test id it lists, one per line (selecting.py)



@dataclass(frozen=True)
class CacheKey:
    version: str
    lock_digest: str
    python: str  # sys.implementation.cache_tag, e.g. cpython-311
    platform: str  # e.g. linux_x86_64

    @property
    def name(self) -> str:
        return f"tempest-{self.version}-{self.lock_digest[:12]}-{self.python}-{self.platform}"



def key_for(lock: Lock) -> CacheKey:
    return CacheKey(lock.version, lock.digest, sys.implementation.cache_tag,
                    sysconfig.get_platform().replace("-", "_").replace(".", "_"))



def file_listing(path: Path) -> list[str]:
    """`relative path<TAB>size` (or `-> target` for links) for every file, sorted."""
    out = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            if rel in (READY, FILES):
                continue
            st = os.lstat(full)
            out.append(f"{rel}\t-> {os.readlink(full)}" if stat.S_ISLNK(st.st_mode)
                       else f"{rel}\t{st.st_size}")
    return out



def build_failure(what: str, version: str, detail: str) -> EnvironmentBuildError:
    if "No space left on device" in detail:
        return EnvironmentBuildError(f"tempest {version}: no space left on device while "
                                     f"{what}; free space or lower cache_max_size")
    return EnvironmentBuildError(f"tempest {version}: {what} failed: {detail[-800:]}")



def run_tool(cmd: list[str], what: str, version: str, timeout_s: float) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=locks.tool_env(),
                              timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EnvironmentBuildError(f"tempest {version}: {what} took longer than "
                                    f"{timeout_s:.0f} s") from None
    if proc.returncode != 0:
        detail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise build_failure(what, version, detail)
    return proc.stdout



def os_failure(what: str, version: str, exc: OSError) -> EnvironmentBuildError:
    if exc.errno == errno.ENOSPC:
        return build_failure(what, version, "No space left on device")
    return EnvironmentBuildError(f"tempest {version}: {what} failed: {exc}")


def staging_dir(parent: Path, key: CacheKey) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".staging-{key.name}-", dir=parent))


def pip_index_args(index_url: str) -> list[str]:
    """pip's options for an index. pip refuses a plain-http index on another host unless it
    is trusted; an operator's http mirror is safe to trust here because every wheel is
    checked against the lock's hashes (--require-hashes)."""
    args = ["--index-url", index_url]
    parts = urlsplit(index_url)
    if parts.scheme == "http" and parts.hostname:
        args += ["--trusted-host", parts.hostname]
    return args


def build_wheelhouse(final: Path, key: CacheKey, lock: Lock, index_url: str,
                     pip_cache: Path) -> Path:
    """The wheelhouse of `lock` at `final`: reused when complete, else downloaded and built."""
    if final.is_dir() and not check_wheelhouse(final, lock):
        return final
    remove_tree(final)
    staging = staging_dir(final.parent, key)
    try:
        log.info("tempest %s: downloading and building %d wheels into %s", key.version,
                 len(lock.pins), final)
        run_tool([sys.executable, "-m", "pip", "wheel", "--isolated", "--no-deps",
                  "--require-hashes", "--progress-bar", "off", "--quiet",
                  *pip_index_args(index_url),
                  "--cache-dir", str(pip_cache),
                  "--wheel-dir", str(staging), "-r", str(lock.path)],
                 "building the wheelhouse", key.version, defaults.BUILD_TIMEOUT_S)
        manifest = {}
        for whl in sorted(staging.glob("*.whl")):
            name, ver, _, _ = parse_wheel_filename(whl.name)
            manifest[str(canonicalize_name(name))] = {
                "version": str(ver), "file": whl.name,
                "sha256": hashlib.sha256(whl.read_bytes()).hexdigest()}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        problems = check_wheelhouse(staging, lock)
        if problems:
            raise EnvironmentBuildError(f"tempest {key.version}: wheelhouse incomplete: "
                                        + "; ".join(problems[:5]))
        os.rename(staging, final)
    except OSError as exc:
        raise os_failure("building the wheelhouse", key.version, exc) from None
    finally:
        remove_tree(staging)
    return final


def check_wheelhouse(path: Path, lock: Lock) -> list[str]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return [f"{path / MANIFEST} missing or unreadable"]
    problems = []
    for pin in lock.pins:
        name, _, ver = pin.partition("==")
        entry = manifest.get(str(canonicalize_name(name)))
        if entry is None or Version(entry["version"]) != Version(ver):
            problems.append(f"no wheel for {pin}")
        elif not (path / entry["file"]).is_file():
            problems.append(f"{entry['file']} missing")
    return problems


def build_template(builds: Path, key: CacheKey, lock: Lock, wheelhouse: Path,
                   smoke: bool) -> tuple[Path, int]:
    """A read-only template venv in `builds`, smoke-tested; its path and the tests listed."""
    staging = staging_dir(builds, key)
    pins = staging.parent / f"{staging.name}.pins"
    try:
        uv = locks.uv_binary()
        log.info("tempest %s: building template %s", key.version, key.name)
        run_tool([uv, "venv", "--relocatable", "--python", sys.executable, "--no-config",
                  "--quiet", "--allow-existing", str(staging)],
                 "creating the template venv", key.version, 300)
        pins.write_text("\n".join(lock.pins) + "\n")
        run_tool([uv, "pip", "install", "--python", str(staging / "bin" / "python"),
                  "--offline", "--no-index", "--find-links", str(wheelhouse),
                  "--link-mode", "copy", "--compile-bytecode", "--no-deps",
                  "--no-config", "--no-cache", "--quiet", "-r", str(pins)],
                 "installing the template", key.version, defaults.BUILD_TIMEOUT_S)
        run_tool([uv, "pip", "check", "--python", str(staging / "bin" / "python"),
                  "--no-config", "--quiet"],
                 "checking the template's dependencies", key.version, 300)
        tests = smoke_test(staging, key.version, lock.tempestconf is not None) if smoke else []
        if tests:
            # sorted: stestr lists in set order, which changes from one listing to the next
            (staging / TESTS).write_text("".join(f"{test}\n" for test in sorted(tests)))
        listed = len(tests)
        (staging / FILES).write_text("\n".join(file_listing(staging)) + "\n")
        info = {**asdict(key), "key": key.name, "lock": str(lock.path),
                "tempestconf": lock.tempestconf,
                "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "tests_listed": listed, "tests_file": TESTS if tests else None,
                "python_executable": sys.executable}
        (staging / READY).write_text(json.dumps(info, indent=1) + "\n")
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        build = builds / f"{key.name}.{stamp}"
        os.rename(staging, build)
        make_read_only(build)
        return build, listed
    except OSError as exc:
        raise os_failure("building the template", key.version, exc) from None
    finally:
        remove_tree(staging)
        pins.unlink(missing_ok=True)


def smoke_test(env: Path, version: str, discovery: bool = False) -> list[str]:
    """`tempest --version` is `version`, the workspace a job writes is what `tempest init`
    makes, `run --list-tests` lists > 1,000 tests in it (returned:
    the template keeps them, so that no job lists them again), and (with `discovery`)
    python-tempestconf imports and has the hooks the worker uses."""
    with tempfile.TemporaryDirectory(prefix="farm-smoke-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        try:
            got = tempest.tempest_version(env, home)
            if got != version:
                raise EnvironmentBuildError(f"tempest {version}: the template reports "
                                            f"version {got}")
            # jobs write their workspace themselves: it must be what `tempest init` makes
            ws = tempest.init_workspace(Path(tmp) / "job", env)
            differences = tempest.workspace_differences(
                ws.path, tempest.tempest_init(Path(tmp) / "init", env))
            if differences:
                raise EnvironmentBuildError(
                    f"tempest {version}: `tempest init` makes a workspace the worker does "
                    f"not write ({'; '.join(differences)}): this farm-worker cannot run it")
            tests = tempest.list_tests(ws, [])
            if discovery:
                tempest.run_short([str(env / "bin" / "python"), "-I", str(SHIM), SELF_CHECK],
                                  cwd=home, env=tempest.tempest_environ(env, home),
                                  what="python-tempestconf's self-check",
                                  timeout_s=defaults.LIST_TIMEOUT_S)
        except TempestError as exc:
            raise EnvironmentBuildError(f"tempest {version}: smoke test failed: {exc}") \
                from None
    if len(tests) <= defaults.SMOKE_MIN_TESTS:
        raise EnvironmentBuildError(f"tempest {version}: smoke test listed only "
                                    f"{len(tests)} tests (expected > "
                                    f"{defaults.SMOKE_MIN_TESTS})")
    return tests
