"""The farm's main job end to end, as `make demo` runs it: `farm-server serve` on SQLite, a worker
with Tempest 47.0.0, a real Keystone, `farm submit --wait` of the identity API tests
through the server. In the same test the same Tempest runs the same selection against the
same Keystone directly (`tempest run`, no farm): the counts must be equal. Both wall times
are printed; their ratio is a figure for the README, not an assertion."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.direct import direct_run
from harness.farmcli import farm

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
REGEX = r"^tempest\.api\.identity"


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

    started = time.monotonic()
    c = direct_run(Path(tempest47.template), keystone.tempest_conf(), tmp_path / "direct",
                   ["--regex", REGEX]).counts()
    direct_counts, direct_s = (c.passed, c.failed, c.skipped), time.monotonic() - started
    print(f"\nfarm: {farm_counts} in {farm_s:.1f} s; direct tempest run: "
          f"{tuple(direct_counts)} in {direct_s:.1f} s; ratio {farm_s / direct_s:.2f}")
    assert farm_counts == direct_counts
    assert farm_counts[0] >= 100 and farm_counts[1] == 0
    assert ADMIN_PASSWORD not in r.stdout + r.stderr + server.log.read_text()
