"""Plain Tempest, as one would run it by hand (no farm): init, write tempest.conf, run; the
yardstick the farm's counts are compared with."""

from __future__ import annotations

import configparser
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from farm_client.subunit_results import parse
from farm_worker.defaults import TEMPEST_CONCURRENCY
from farm_worker.results import Collector


def direct_run(template: Path, conf: Mapping[str, Mapping[str, Any]], base: Path,
               args: Sequence[str] = (), load: Sequence[str] | None = None) -> Collector:
    """`tempest run --subunit <args>` in a fresh workspace under `base`, parsed; `load`:
    tests by name (no attributes) to run with --load-list, which wants Tempest's full ids,
    so they are looked up in `tempest run --list-tests` first."""
    tempest = str(template / "bin" / "tempest")
    env = {**os.environ, "HOME": str(base / "home")}
    (base / "home").mkdir(parents=True)
    (base / "etc").mkdir()
    ws = base / "ws"
    subprocess.run([tempest, "init", "--config-dir", str(base / "etc"), "--workspace-path",
                    str(base / "workspaces.yaml"), str(ws)], check=True, env=env, cwd=base,
                   capture_output=True)
    parser = configparser.RawConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    layers = {**conf, "oslo_concurrency": {"lock_path": str(ws / "tempest_lock")}}
    for section, values in layers.items():
        parser.add_section(section)
        for key, value in values.items():
            parser.set(section, key,
                       str(value).lower() if isinstance(value, bool) else str(value))
    with (ws / "etc" / "tempest.conf").open("w") as fh:
        parser.write(fh)
    if load is not None:
        listed = subprocess.run([tempest, "run", "--list-tests"], env=env, cwd=ws, check=True,
                                capture_output=True, text=True).stdout.split()
        full = {test.split("[", 1)[0]: test for test in listed}
        (base / "load-list.txt").write_text("".join(f"{full[name]}\n" for name in load))
        args = [*args, "--load-list", str(base / "load-list.txt")]
    out = subprocess.run([tempest, "run", "--subunit", "--concurrency",
                          str(TEMPEST_CONCURRENCY), *args], env=env, cwd=ws,
                         capture_output=True, check=False)
    return parse(out.stdout)
