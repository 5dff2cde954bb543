"""The farm's main job end to end, as `make demo` runs it: `farm-server serve` on SQLite, a worker
with Tempest 47.0.0, a real Keystone, `farm submit --wait` of the identity API tests
through the server. In the same test the same Tempest runs the same selection against the
same Keystone directly (`tempest run`, no farm): the counts must be equal. Both wall times
are printed; their ratio is a figure for the README, not an assertion."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from farm_client.subunit_results import parse
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerFactory
from farm_worker.defaults import TEMPEST_CONCURRENCY
from farm_worker.environments import PrepareResult
from harness.farmcli import farm

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
REGEX = r"^tempest\.api\.identity"


def direct_run(template: Path, keystone: Keystone, base: Path) -> tuple[int, int, int, float]:
    """Plain Tempest, as one would run it by hand: init, write tempest.conf, run."""
    started = time.monotonic()
    tempest = str(template / "bin" / "tempest")
    env = {**os.environ, "HOME": str(base / "home")}
    (base / "home").mkdir(parents=True)
    (base / "etc").mkdir()
    ws = base / "ws"
    subprocess.run([tempest, "init", "--config-dir", str(base / "etc"), "--workspace-path",
                    str(base / "workspaces.yaml"), str(ws)], check=True, env=env, cwd=base,
                   capture_output=True)
    conf = configparser.RawConfigParser(interpolation=None)
    conf.optionxform = str  # type: ignore[assignment,method-assign]
    layers = {**keystone.tempest_conf(),
              "oslo_concurrency": {"lock_path": str(ws / "tempest_lock")}}
    for section, values in layers.items():
        conf.add_section(section)
        for key, value in values.items():
            conf.set(section, key, str(value).lower() if isinstance(value, bool) else str(value))
    with (ws / "etc" / "tempest.conf").open("w") as fh:
        conf.write(fh)
    out = subprocess.run([tempest, "run", "--subunit", "--concurrency",
                          str(TEMPEST_CONCURRENCY), "--regex", REGEX], env=env, cwd=ws,
                         capture_output=True, check=False)
    parsed = parse(out.stdout)
    c = parsed.counts()
    return c.passed, c.failed, c.skipped, time.monotonic() - started


def test_the_farm_counts_what_tempest_counts(tmp_path: Path, server: FarmServer,
                                             workers: WorkerFactory, keystone: Keystone,
                                             tempest47: PrepareResult) -> None:
    workers.start("e2e", callbacks=[{"url": server.url, "token": server.worker_token}])
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps(keystone.tempest_conf()))
    env = {"FARM_SERVER_URL": server.url, "FARM_TOKEN": server.user_token}
    started = time.monotonic()
    r = farm(tmp_path, "submit", "--tempest", "47.0.0", "--conf", str(conf), "--regex", REGEX,
             "--test-id", "e2e-identity", "--wait", env=env, timeout_s=1800)
    farm_s = time.monotonic() - started
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    view = server.api("GET", "/v1/tests/e2e-identity").json()["test"]
    farm_counts = (view["summary"]["passed"], view["summary"]["failed"],
                   view["summary"]["skipped"])

    *direct_counts, direct_s = direct_run(Path(tempest47.template), keystone,
                                          tmp_path / "direct")
    print(f"\nfarm: {farm_counts} in {farm_s:.1f} s; direct tempest run: "
          f"{tuple(direct_counts)} in {direct_s:.1f} s; ratio {farm_s / direct_s:.2f}")
    assert farm_counts == tuple(direct_counts)
    assert farm_counts[0] >= 100 and farm_counts[1] == 0
    assert ADMIN_PASSWORD not in r.stdout + r.stderr + server.log.read_text()
