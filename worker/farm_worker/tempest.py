"""Tempest in a per-job workspace: init, tempest.conf, test selection, listing, run argv.

Nothing is written under ~/.tempest: HOME points into the job directory, `tempest init`
gets an explicit --config-dir and --workspace-path (FIELD_NOTES: both traps).
"""

from __future__ import annotations

import configparser
import io
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm_worker import defaults
from farm_worker.exceptions import JobCancelled, JobTimedOut, TempestError
from farm_worker.processes import Outcome, ProcessGroup
from farm_worker.protocol import Conf, ConfValue, Selection, parse_version

log = logging.getLogger(__name__)

# Variables a Tempest run may inherit from the worker; everything else is dropped so the
# worker's own virtualenv, PYTHONPATH or pip settings cannot leak into the job.
_INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "http_proxy",
              "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
_TEST_ID = re.compile(r"^[A-Za-z_][\w.]*(\[[^\]]*\])?$")
# Paths the worker owns in tempest.conf; a payload cannot move them out of the workspace.
_FORCED = {("DEFAULT", "log_dir"), ("DEFAULT", "log_file"), ("oslo_concurrency", "lock_path")}


@dataclass(frozen=True)
class Workspace:
    """A Tempest workspace inside one job's directory."""

    job_dir: Path
    env: Path  # the job's Python environment (bin/tempest)

    @property
    def path(self) -> Path:
        return self.job_dir / "ws"

    @property
    def home(self) -> Path:
        return self.job_dir / "home"

    @property
    def conf_path(self) -> Path:
        return self.path / "etc" / "tempest.conf"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def tempest(self) -> str:
        return str(self.env / "bin" / "tempest")

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return tempest_environ(self.env, self.home, self.path if self.path.exists() else None,
                               extra)


def tempest_environ(env: Path, home: Path, workspace: Path | None = None,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k in _INHERITED}
    out["PATH"] = f"{env / 'bin'}:{out.get('PATH', '/usr/local/bin:/usr/bin:/bin')}"
    out["HOME"] = str(home)
    out["VIRTUAL_ENV"] = str(env)
    out["PYTHONDONTWRITEBYTECODE"] = "1"  # the environment may be a shared read-only template
    out["PYTHON"] = str(env / "bin" / "python")  # what .stestr.conf runs the tests with
    if workspace is not None:
        out["TEMPEST_CONFIG_DIR"] = str(workspace / "etc")
        out["TEMPEST_CONFIG"] = "tempest.conf"
    out.update(extra or {})
    return out


def run_short(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], what: str,
              timeout_s: float, cancel: threading.Event | None = None,
              deadline: float | None = None, log_file: Path | None = None) -> str:
    """Run a short Tempest command; its stdout, or TempestError with the end of stderr
    (kept in `log_file` too, if given)."""
    log.debug("running %s", what)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        group = ProcessGroup(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        limit = time.monotonic() + timeout_s
        outcome = group.wait(min(limit, deadline) if deadline else limit, cancel)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if log_file is not None:
        log_file.write_text(stderr, encoding="utf-8")
    if outcome is Outcome.CANCELLED:
        raise JobCancelled(f"cancelled during {what}")
    if outcome is Outcome.TIMED_OUT:
        if deadline is not None and time.monotonic() >= deadline:
            raise JobTimedOut(f"timed out during {what}")
        raise TempestError(f"{what} took longer than {timeout_s:.0f} s")
    if group.returncode != 0:
        tail = " | ".join(line for line in stderr.strip().splitlines()[-5:])
        raise TempestError(f"{what} failed (exit {group.returncode}): {tail[:600]}")
    return stdout


def tempest_version(env: Path, home: Path) -> str:
    """`tempest --version` -> "47.0.0"."""
    out = run_short([str(env / "bin" / "tempest"), "--version"], cwd=home,
                     env=tempest_environ(env, home), what="tempest --version",
                     timeout_s=defaults.LIST_TIMEOUT_S)
    m = re.search(r"(\d+\.\d+\.\d+)", out)
    if not m:
        raise TempestError(f"tempest --version printed {out.strip()[:80]!r}")
    return m.group(1)


# what `tempest init` writes into .stestr.conf (tempest/cmd/init.py; the prepare step's
# smoke test compares the whole workspace with what `tempest init` makes)
STESTR_CONF = "[DEFAULT]\ntest_path={discover}\ntop_dir={top}\ngroup_regex=([^\\.]*\\.)*\n"


def init_workspace(job_dir: Path, env: Path) -> Workspace:
    """A workspace in job_dir/ws as `tempest init` makes it, written without starting
    Tempest (that cost ~0.6 s of CPU per job): the lock and log directories, etc/ (the
    caller writes tempest.conf), .stestr.conf pointing at the environment's Tempest and an
    empty stestr repository. Nothing is registered anywhere: no `--workspace` is used."""
    ws = Workspace(job_dir, env)
    for path in (ws.home, ws.conf_path.parent, ws.logs, ws.path / "tempest_lock"):
        path.mkdir(parents=True, exist_ok=True)
    top = tempest_package(env)
    (ws.path / ".stestr.conf").write_text(
        STESTR_CONF.format(discover=top / "test_discover", top=top), encoding="utf-8")
    repo = ws.path / ".stestr"
    repo.mkdir(exist_ok=True)
    (repo / "format").write_text("1\n")
    (repo / "next-stream").write_text("0\n")
    return ws


# files of `tempest init` the worker does not use: it writes its own tempest.conf
INIT_ONLY = frozenset({"etc/tempest.conf", "etc/tempest.conf.sample"})


def tempest_init(job_dir: Path, env: Path) -> Path:
    """`tempest init` itself into job_dir/ws, registered inside job_dir; the workspace."""
    ws = Workspace(job_dir, env)
    ws.home.mkdir(parents=True, exist_ok=True)
    (job_dir / "global-etc").mkdir(exist_ok=True)  # must exist: FIELD_NOTES
    run_short([ws.tempest(), "init", "--config-dir", str(job_dir / "global-etc"),
               "--workspace-path", str(job_dir / "workspaces.yaml"), "--name", "smoke",
               str(ws.path)],
              cwd=job_dir, env=tempest_environ(env, ws.home), what="tempest init",
              timeout_s=defaults.LIST_TIMEOUT_S)
    return ws.path


def workspace_differences(ours: Path, theirs: Path) -> list[str]:
    """How a workspace `init_workspace` wrote differs from one of `tempest init` (paths
    and file contents, less INIT_ONLY); empty when the same."""
    def tree(root: Path) -> dict[str, str | None]:
        return {str(p.relative_to(root)): None if p.is_dir() else p.read_text("utf-8")
                for p in root.rglob("*")}
    a, b = tree(ours), tree(theirs)
    out = []
    for path in sorted((a.keys() | b.keys()) - INIT_ONLY):
        if path not in a:
            out.append(f"{path}: missing")
        elif path not in b:
            out.append(f"{path}: not made by tempest init")
        elif a[path] != b[path]:
            out.append(f"{path}: differs")
    return out


def tempest_package(env: Path) -> Path:
    """The `tempest` package directory of an environment."""
    found = sorted(p.parent for p in env.glob("lib/python3*/site-packages/tempest/__init__.py"))
    if len(found) != 1:
        raise TempestError(f"{env} has {len(found)} tempest packages, not one")
    return found[0]


def _render_value(value: ConfValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_render_value(v) for v in value)
    return str(value)


def render_conf(ws: Workspace, *layers: Conf | None) -> str:
    """tempest.conf text: the layers merged in order (later wins), worker paths forced."""
    forced: Conf = {"DEFAULT": {"log_dir": str(ws.logs), "log_file": "tempest.log"},
                    "oslo_concurrency": {"lock_path": str(ws.path / "tempest_lock")}}
    return conf_text(*layers, forced=forced)


def conf_text(*layers: Mapping[str, Mapping[str, ConfValue]] | None,
              forced: Conf | None = None) -> str:
    """The layers merged in order (later wins) as tempest.conf text; the options `forced`
    sets are the worker's, and a layer's value for them is ignored (and logged)."""
    parser = configparser.RawConfigParser(interpolation=None, default_section="__none__")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    for layer in (*layers, forced):
        for section, values in (layer or {}).items():
            if not parser.has_section(section):
                parser.add_section(section)
            for key, value in values.items():
                if (section, key) in _FORCED and layer is not forced:
                    log.info("tempest.conf [%s] %s is set by the worker; payload value ignored",
                             section, key)
                    continue
                parser.set(section, key, _render_value(value))
    buf = io.StringIO()
    parser.write(buf)
    return buf.getvalue()


def write_conf(ws: Workspace, text: str) -> Path:
    """Write tempest.conf with mode 0600 (it holds the cloud's passwords)."""
    ws.conf_path.parent.mkdir(parents=True, exist_ok=True)
    ws.conf_path.unlink(missing_ok=True)
    fd = os.open(ws.conf_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return ws.conf_path


def write_accounts(ws: Workspace, accounts: Sequence[Mapping[str, Any]]) -> Conf:
    """Tempest's accounts.yaml (mode 0600, in the job's workspace, removed with it) and the
    conf layer that makes Tempest use it instead of creating users with admin."""
    import yaml

    path = ws.conf_path.parent / "accounts.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump([dict(a) for a in accounts], fh, default_flow_style=False)
    return {"auth": {"test_accounts_file": str(path), "use_dynamic_credentials": False}}


def selection_args(version: str, selection: Selection | None, ws: Workspace) -> list[str]:
    """`tempest run` arguments for a selection, with the option names this version knows.

    Tempest < 26 called the lists --whitelist-file/--blacklist-file; 26 added
    --include-list/--exclude-list and later releases dropped the old names. An explicit
    list is matched first and run with `load_list_args`.
    """
    if selection is None or selection.listed:
        return []
    new_names = parse_version(version) >= (26, 0, 0)
    args: list[str] = []
    if selection.regex:
        args += ["--regex", selection.regex]
    for kind, items, old in (("include", selection.include, "--whitelist-file"),
                             ("exclude", selection.exclude, "--blacklist-file")):
        if items:
            path = ws.job_dir / f"{kind}-list.txt"
            path.write_text("".join(f"{item}\n" for item in items), encoding="utf-8")
            args += [f"--{kind}-list" if new_names else old, str(path)]
    return args


def load_list_args(ws: Workspace, tests: Sequence[str]) -> list[str]:
    """`tempest run` arguments that run exactly `tests` (Tempest test ids)."""
    path = ws.job_dir / "load-list.txt"
    path.write_text("".join(f"{test}\n" for test in tests), encoding="utf-8")
    return ["--load-list", str(path)]


def list_tests(ws: Workspace, args: Sequence[str], cancel: threading.Event | None = None,
               deadline: float | None = None) -> list[str]:
    """The test ids `tempest run --list-tests` selects with `args`."""
    out = run_short([ws.tempest(), "run", "--list-tests", *args], cwd=ws.path,
                     env=ws.environ(), what="tempest run --list-tests",
                     timeout_s=defaults.LIST_TIMEOUT_S, cancel=cancel, deadline=deadline)
    return [line.strip() for line in out.splitlines() if _TEST_ID.match(line.strip())]


def run_argv(ws: Workspace, args: Sequence[str], concurrency: int) -> list[str]:
    """`tempest run` printing a live subunit v2 stream on stdout."""
    return [ws.tempest(), "run", "--subunit", "--concurrency", str(concurrency), *args]

