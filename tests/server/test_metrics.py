"""Metrics and health for the operators' monitoring: the endpoints, the alert rules
(promtool), and a real Prometheus scraping a real `farm-server serve` (gunicorn, several
processes adding up) while real workers run real jobs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from farm_lab.gearmand import Gearmand
from farm_lab.loopback import descendants, free_port
from farm_lab.server import FARM_SERVER, FarmServer, server_worker
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.checks import procs, running, wait_gone
from harness.prometheus import PROMTOOL, Prometheus

from .conftest import App, json_of, make_app

RULES = Path(__file__).resolve().parents[2] / "monitoring"
# fails at once, whatever the machine's speed: setUpClass asks for a token where nothing
# listens (port 9 is never served here)
REFUSED = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"},
           "auth": {"use_dynamic_credentials": True, "admin_username": "admin",
                    "admin_password": "Refused-pw-8127", "admin_project_name": "admin",
                    "admin_domain_name": "Default"}}


def test_the_alert_rules_check_and_pass_their_unit_tests() -> None:
    for argv in ([PROMTOOL, "check", "rules", "farm-rules.yml"],
                 [PROMTOOL, "test", "rules", "farm-rules.test.yml"]):
        out = subprocess.run(argv, cwd=RULES, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "SUCCESS" in out.stdout


def test_health_says_what_it_checked(farm_app: App, tmp_path: Path) -> None:
    c = farm_app.client
    assert json_of(c.get("/health/live")) == {"ok": True, "checked": {"process": "ok"}}
    r = c.get("/health/ready")
    assert r.status_code == 200, r.data
    doc = json_of(r)
    assert doc["ok"] and doc["checked"]["database"] == "ok"
    assert list(doc["checked"]["gearmand"].values()) == ["ok"]
    # no gearmand answers: not ready, and it says which
    lonely = make_app(f"sqlite:///{tmp_path / 'lonely.db'}",
                      Gearmand(tmp_path / "none", port=free_port()))
    try:
        r = lonely.client.get("/health/ready")
        assert r.status_code == 503
        doc = json_of(r)
        assert not doc["ok"] and doc["checked"]["database"] == "ok"
        assert "ConnectionRefusedError" in next(iter(doc["checked"]["gearmand"].values()))
    finally:
        lonely.app.extensions["farm"].gearman.close()
        lonely.store.engine.dispose()


def test_metrics_need_a_user_or_an_allowed_network(farm_app: App, tmp_path: Path,
                                                   own_gearmand: Gearmand) -> None:
    c = farm_app.client
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers=farm_app.worker()).status_code == 401
    r = c.get("/metrics", headers=farm_app.user())
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    text = r.data.decode()
    for family in ("farm_reports_total", "farm_runs_total", "farm_runs_active",
                   "farm_run_duration_seconds", "farm_report_seconds"):
        assert f"# TYPE {family.removesuffix('_total')}" in text, family
    opened = make_app(f"sqlite:///{tmp_path / 'open.db'}", own_gearmand,
                      metrics_allow=("127.0.0.0/8",))
    try:
        assert opened.client.get("/metrics", environ_base={
            "REMOTE_ADDR": "127.0.0.1"}).status_code == 200
        assert opened.client.get("/metrics", environ_base={
            "REMOTE_ADDR": "10.1.2.3"}).status_code == 401
    finally:
        opened.app.extensions["farm"].gearman.close()
        opened.store.engine.dispose()


def submit(server: FarmServer, test_id: str, version: str, **fields: Any) -> None:
    r = server.api("POST", "/v1/tests", json={
        "test_id": test_id, "tempest": {"version": version}, "queue_anyway": True,
        "conf": fields.pop("conf", {"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}),
        "tests": {"regex": fields.pop("regex", "tempest.api.identity.v3")}, **fields})
    assert r.status_code == 201, r.text


def cancel(server: FarmServer, test_id: str) -> None:
    assert server.api("POST", f"/v1/tests/{test_id}/cancel").status_code == 200


@pytest.mark.gearman
@pytest.mark.tempest
def test_a_real_prometheus_scrapes_a_real_farm(tmp_path: Path, own_gearmand: Gearmand,
                                               workers: WorkerFactory,
                                               tempest47: PrepareResult) -> None:
    # a gearmand of its own: the queue it counts is this test's alone
    server = FarmServer(tmp_path / "server", [own_gearmand.address], extra={
        "metrics_allow": ["127.0.0.1/32"], "monitor_interval_s": 1}).start()
    prom = Prometheus(tmp_path / "prometheus")
    worker_port = free_port()
    try:
        prom.start([{"job_name": "refstack-farm-server", "metrics_path": "/metrics",
                     "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]},
                    {"job_name": "refstack-farm-worker",
                     "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}],
                   rules=[RULES / "farm-rules.yml"])
        prom.wait_value('up{job="refstack-farm-server"}', 1)
        prom.wait_value("max(farm_gearmand_up)", 1)
        # jobs wait for a version no worker serves: the queue says so
        for i in range(3):
            submit(server, f"m-wait-{i}", "40.0.0")
        prom.wait_value('sum(farm_queue_jobs{tempest_version="40.0.0",state="queued"})', 3)
        assert prom.value('sum(farm_queue_workers{tempest_version="40.0.0"})') == 0
        prom.wait_value('sum(farm_runs_active{state="queued"})', 3)
        for i in range(3):
            cancel(server, f"m-wait-{i}")
        prom.wait_value('sum(farm_queue_jobs{tempest_version="40.0.0",state="queued"})', 0)
        # a pass and a fail on a real worker
        server_worker(workers, server, "mw", preflight=False, metrics_port=worker_port,
                      gearman=[own_gearmand.address])
        submit(server, "m-pass", "47.0.0", dry_run=True)
        submit(server, "m-fail", "47.0.0", conf=REFUSED,
               regex=r"tempest\.api\.identity\.v3\.test_tokens")
        for tid, state in (("m-pass", "passed"), ("m-fail", "failed")):
            assert server.wait_state(tid, {state, "error", "cancelled"})["test"]["state"] \
                == state
        prom.wait_value('sum(farm_runs_total{state="passed"})', 1)
        prom.wait_value('sum(farm_runs_total{state="failed"})', 1)
        prom.wait_value('sum(farm_runs_total{state="cancelled"})', 3)
        prom.wait_value('sum(farm_run_duration_seconds_count{tempest_version="47.0.0"})', 2)
        prom.wait_value('sum(farm_run_queue_wait_seconds_count{tempest_version="47.0.0"})', 2)
        assert (prom.value('sum(farm_run_duration_seconds_sum{tempest_version="47.0.0"})')
                or 0) > 0
        assert (prom.value('sum(farm_reports_total{outcome="accepted"})') or 0) >= 6
        # its class fails in setUpClass (no token): counted as a class, as everywhere
        assert (prom.value('sum(farm_tests_total{result="class_failed"})') or 0) >= 1
        assert (prom.value("histogram_quantile(0.5, sum by (le) "
                           "(rate(farm_report_seconds_bucket[1m])))") or 0) > 0
        prom.wait_value("sum(farm_runs_active)", 0)
        prom.wait_value('sum(farm_queue_workers{tempest_version="47.0.0"})', 1)
        # the worker's own: its jobs, where their time went, what it serves and holds
        prom.wait_value('farm_worker_jobs_total{state="passed"}', 1)
        prom.wait_value('farm_worker_jobs_total{state="failed"}', 1)
        for phase, jobs in (("env", 2), ("conf", 2), ("list", 2), ("run", 1),
                            ("upload", 1), ("cleanup", 2)):
            prom.wait_value(f'farm_worker_phase_seconds_count{{phase="{phase}"}}', jobs)
        assert prom.value('farm_worker_versions{tempest_version="47.0.0"}') == 1
        assert (prom.value("farm_worker_cache_bytes") or 0) > 10**6
        prom.wait_value("farm_worker_busy", 0)
        prom.wait_value("farm_worker_outbox_entries", 0)

        # labels stay bounded: 100 more runs add no series beyond their state and version
        series = prom.value('count({__name__=~"farm_.+"})')
        for i in range(100):
            submit(server, f"m-many-{i}", "40.0.0")
            cancel(server, f"m-many-{i}")
        prom.wait_value('sum(farm_runs_total{state="cancelled"})', 103)
        assert prom.value('count({__name__=~"farm_.+"})') == series
        assert prom.targets_up() == {"refstack-farm-server": "up",
                                     "refstack-farm-worker": "up"}
    finally:
        prom.stop()
        server.stop()


@pytest.mark.gearman
def test_farm_server_health_asks_the_running_server(tmp_path: Path, gearmand: Gearmand) -> None:
    """What the systemd unit runs after a start: live, ready, and not (exit 1, why)."""
    server = FarmServer(tmp_path / "server", [gearmand.address],
                        extra={"monitor": False}).start()
    try:
        assert json.loads(server.admin("health", "--wait", "30")) == {
            "ok": True, "checked": {"process": "ok"}}
        ready = json.loads(server.admin("health", "--ready"))
        assert ready["ok"] and ready["checked"]["database"] == "ok"
    finally:
        server.stop()
    down = subprocess.run([FARM_SERVER, "health", "-c", str(server.config), "--wait", "1"],
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "ConnectionError" in down.stdout


def test_a_killed_servers_metrics_directory_goes_at_the_next_start(
        tmp_path: Path, gearmand: Gearmand) -> None:
    """Every process of `farm-server serve` counts into one directory; a stop removes it,
    a kill -9 cannot: the next start removes the directories of servers that are gone."""
    server = FarmServer(tmp_path / "server", [gearmand.address],
                        extra={"monitor": False}).start()
    try:
        assert server.proc is not None
        first = list(Path(tempfile.gettempdir()).glob(f"farm-metrics-{server.proc.pid}-*"))
        assert len(first) == 1 and first[0].is_dir()
        server.kill()  # as a crash of its host: nothing of the server runs to remove it
        server.serve()
        assert server.proc is not None
        assert not first[0].exists()
        assert len(list(Path(tempfile.gettempdir()).glob(
            f"farm-metrics-{server.proc.pid}-*"))) == 1
    finally:
        server.stop()
    assert not first[0].exists()


def test_no_process_of_a_killed_server_runs_on(tmp_path: Path, gearmand: Gearmand) -> None:
    """kill -9 of `farm-server serve` alone: its gunicorn workers and its monitor stop on
    their own (the monitor used to run on, orphaned, beside the next start's)."""
    server = FarmServer(tmp_path / "server", [gearmand.address]).start()
    assert server.proc is not None
    master, under = server.proc.pid, procs(descendants(server.proc.pid))
    try:
        assert any(b"monitor" in Path(f"/proc/{p.pid}/cmdline").read_bytes() for p in under)
        assert len(under) >= 2, under
        os.kill(master, signal.SIGKILL)
        server.proc.wait()
        server.proc = None
        wait_gone(under)
    finally:
        server.kill()
        for p in under:
            if running(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
