"""tempest.conf rendering and test selection arguments per Tempest version."""

from __future__ import annotations

import configparser
import stat
from pathlib import Path

from farm_worker.protocol import Selection
from farm_worker.tempest import Workspace, render_conf, selection_args, write_conf


def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "job", tmp_path / "env")


def parse(text: str) -> configparser.RawConfigParser:
    p = configparser.RawConfigParser(interpolation=None, default_section="__none__")
    p.optionxform = str  # type: ignore[assignment,method-assign]
    p.read_string(text)
    return p


def test_render_conf_merges_layers_later_wins(tmp_path: Path) -> None:
    w = ws(tmp_path)
    text = render_conf(w, {"identity": {"region": "A", "ca": "x"}, "compute": {"flavor": "1"}},
                       {"identity": {"region": "B"}, "auth": {"use_dynamic_credentials": True,
                                                            "tempest_roles": ["a", "b"]}})
    p = parse(text)
    assert p.get("identity", "region") == "B"
    assert p.get("identity", "ca") == "x"
    assert p.get("compute", "flavor") == "1"
    assert p.get("auth", "use_dynamic_credentials") == "true"
    assert p.get("auth", "tempest_roles") == "a,b"


def test_render_conf_keeps_percent_and_case(tmp_path: Path) -> None:
    p = parse(render_conf(ws(tmp_path), {"auth": {"admin_password": "p%w(x)s", "CamelKey": 1}}))
    assert p.get("auth", "admin_password") == "p%w(x)s"
    assert p.get("auth", "CamelKey") == "1"


def test_render_conf_forces_worker_paths(tmp_path: Path) -> None:
    w = ws(tmp_path)
    p = parse(render_conf(w, {"DEFAULT": {"log_dir": "/etc", "debug": True},
                              "oslo_concurrency": {"lock_path": "/"}}))
    assert p.get("DEFAULT", "log_dir") == str(w.logs)
    assert p.get("DEFAULT", "debug") == "true"
    assert p.get("oslo_concurrency", "lock_path") == str(w.path / "tempest_lock")


def test_write_conf_is_private(tmp_path: Path) -> None:
    w = ws(tmp_path)
    path = write_conf(w, "[auth]\nadmin_password = s3cret\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_conf(w, "[auth]\n")  # rewriting replaces it, still private
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_selection_args_new_option_names(tmp_path: Path) -> None:
    w = ws(tmp_path)
    w.job_dir.mkdir()
    args = selection_args("47.0.0", Selection("identity", ("a", "b"), ("c",)), w)
    assert args == ["--regex", "identity", "--include-list", str(w.job_dir / "include-list.txt"),
                    "--exclude-list", str(w.job_dir / "exclude-list.txt")]
    assert (w.job_dir / "include-list.txt").read_text() == "a\nb\n"
    assert (w.job_dir / "exclude-list.txt").read_text() == "c\n"


def test_selection_args_old_option_names(tmp_path: Path) -> None:
    w = ws(tmp_path)
    w.job_dir.mkdir()
    args = selection_args("25.0.0", Selection("", ("a",), ("c",)), w)
    assert args == ["--whitelist-file", str(w.job_dir / "include-list.txt"),
                    "--blacklist-file", str(w.job_dir / "exclude-list.txt")]


def test_selection_args_empty(tmp_path: Path) -> None:
    assert selection_args("47.0.0", None, ws(tmp_path)) == []
    assert selection_args("47.0.0", Selection(), ws(tmp_path)) == []
