"""Lock files: Tempest X and its whole dependency closure, pinned with hashes.

A Tempest release only works with the dependencies of its day (FIELD_NOTES: 40-46 break
with today's oslo.utils), so a lock is resolved as of the release's upload time, or
against a constraints file an operator gives. Locks for the supported versions ship as
package data, so a deployed worker needs no resolver; others are locked on demand and kept
in the cache.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from farm_worker import defaults
from farm_worker.exceptions import EnvironmentBuildError

log = logging.getLogger(__name__)

SHIPPED_LOCKS = Path(__file__).parent / "locks"
# Locked with every Tempest version: its conf discovery (discovery.py), resolved as of the
# same day, so each Tempest gets the python-tempestconf of its time; and setuptools, whose
# pkg_resources some of the older dependencies import at run time (munch 2.5, in 33.0.0's).
DISCOVERY_PACKAGE = "python-tempestconf"
ALSO_LOCKED = (DISCOVERY_PACKAGE, "setuptools")
_REQ_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def python_version() -> str:
    """The worker's Python as `3.11`: locks and caches are per Python version."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def lock_name(version: str, python: str | None = None) -> str:
    return f"tempest-{version}-py{python or python_version()}.txt"


@dataclass(frozen=True)
class Lock:
    version: str
    path: Path
    pins: tuple[str, ...]  # `name==version`, one per package of the closure
    digest: str  # sha256 over the pins and their hashes: part of every cache key

    @property
    def tempestconf(self) -> str | None:
        """The python-tempestconf version the lock pins, if any (an operator's lock may
        have none: its environments then cannot discover a conf)."""
        for pin in self.pins:
            name, _, version = pin.partition("==")
            if name.lower().replace("_", "-") == DISCOVERY_PACKAGE:
                return version
        return None

    @property
    def short_digest(self) -> str:
        return self.digest[:12]


def read_lock(path: Path, version: str) -> Lock:
    """Parse a hashed requirements file; it must pin `tempest==version`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvironmentBuildError(f"lock {path}: cannot read: {exc.strerror}") from None
    logical = re.sub(r"\\\n", " ", text)
    entries = []
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entries.append(" ".join(line.split()))
    pins = []
    for entry in entries:
        m = _REQ_LINE.match(entry)
        if not m:
            raise EnvironmentBuildError(f"lock {path}: {entry[:80]!r} is not an exact pin")
        if "--hash=" not in entry:
            raise EnvironmentBuildError(f"lock {path}: {m.group(1)} has no --hash")
        pins.append(f"{m.group(1)}=={m.group(2)}")
    if f"tempest=={version}" not in {p.lower() for p in pins}:
        raise EnvironmentBuildError(f"lock {path}: does not pin tempest=={version}")
    digest = hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()
    return Lock(version, path, tuple(pins), digest)


def find_lock(version: str, folders: list[Path]) -> Lock | None:
    """The first lock for this version and Python found in `folders`, in order."""
    name = lock_name(version)
    for folder in folders:
        if (folder / name).is_file():
            return read_lock(folder / name, version)
    return None


def release_time(version: str, index_url: str = defaults.INDEX_URL,
                 project: str = "tempest") -> dt.datetime:
    """Upload time of a release, from the index's JSON simple API (PEP 691/700)."""
    if not index_url.startswith(("http://", "https://")):
        raise EnvironmentBuildError(
            f"cannot read release dates from {index_url}; give --exclude-newer or --constraints")
    url = f"{index_url.rstrip('/')}/{project}/"
    try:
        resp = requests.get(url, timeout=30,
                            headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    except requests.RequestException as exc:
        raise EnvironmentBuildError(f"{project} {version}: cannot reach the index "
                                    f"{index_url}: {exc.__class__.__name__}") from None
    if resp.status_code == 404:
        raise EnvironmentBuildError(f"{project}: no such project on the index {index_url}")
    if resp.status_code != 200 or "json" not in resp.headers.get("Content-Type", ""):
        raise EnvironmentBuildError(
            f"{project} {version}: the index {index_url} answered HTTP {resp.status_code} "
            "without the JSON simple API; give --exclude-newer or --constraints")
    doc = resp.json()
    prefix = re.compile(rf"^{re.escape(project)}-{re.escape(version)}(-|\.tar\.gz$|\.zip$)")
    times = [f["upload-time"] for f in doc.get("files", [])
             if prefix.match(f.get("filename", "")) and f.get("upload-time")]
    if version not in doc.get("versions", []) and not times:
        raise EnvironmentBuildError(f"{project} {version}: no such release on the index "
                                    f"{index_url}")
    if not times:
        raise EnvironmentBuildError(f"{project} {version}: the index gives no upload time; "
                                    "give --exclude-newer or --constraints")
    return max(dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times)


def uv_binary() -> str:
    from uv import find_uv_bin  # the uv wheel is a dependency of the worker

    return str(find_uv_bin())


def tool_env() -> dict[str, str]:
    """Environment for pip and uv: the machine's own pip/uv settings must not leak in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "PYTHON", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["UV_NO_CONFIG"] = "1"
    return env


def compile_lock(version: str, out: Path, *, index_url: str = defaults.INDEX_URL,
                 exclude_newer: dt.datetime | None = None, constraints: Path | None = None,
                 extra: tuple[str, ...] = ()) -> Lock:
    """Resolve tempest==version with ALSO_LOCKED for this Python into `out`, written
    atomically.

    Without `constraints` or `exclude_newer`, dependencies are taken as of the release's
    upload time.
    """
    if constraints is None and exclude_newer is None:
        exclude_newer = release_time(version, index_url) + dt.timedelta(minutes=1)
    basis = (f"against the constraints in {constraints}" if constraints else
             f"with dependencies as of {exclude_newer:%Y-%m-%dT%H:%M:%SZ}")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [uv_binary(), "pip", "compile", "-", "--python", sys.executable,
           "--python-version", python_version(), "--generate-hashes", "--no-header",
           "--no-config", "--quiet", "--index-url", index_url]
    if exclude_newer is not None:
        cmd += ["--exclude-newer", exclude_newer.astimezone(dt.UTC)
                .strftime("%Y-%m-%dT%H:%M:%SZ")]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    request = "\n".join([f"tempest=={version}", *ALSO_LOCKED, *extra]) + "\n"
    log.info("locking tempest %s %s", version, basis)
    try:
        proc = subprocess.run(cmd, input=request, capture_output=True, text=True,
                              env=tool_env(), timeout=defaults.BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EnvironmentBuildError(f"tempest {version}: locking took longer than "
                                    f"{defaults.BUILD_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.strip().splitlines()[-6:])[:800]
        raise EnvironmentBuildError(f"tempest {version}: cannot be locked {basis}: {detail}")
    header = (f"# refstack-farm lock: tempest {version} for Python {python_version()},\n"
              f"# resolved {basis}.\n"
              f"# Regenerate with: farm-worker lock {version}\n")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(header + proc.stdout)
        lock = read_lock(Path(tmp), version)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Lock(version, out, lock.pins, lock.digest)
