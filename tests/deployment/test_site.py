"""site.yml on real systemd hosts: converge, a second run changes nothing, the services
and files are as the roles say, a job goes through the module, and the pool scales out
and in (with a drain). The tests share one deployment and run in this order."""

from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import testinfra

from deployment.conftest import REFSTACK_PORT
from farm_client.refstack_upload import SigningKey, split_name
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.loopback import Silent
from harness.deployment import DeployedFarm, changed_counts
from harness.refstack import RefStack

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
SMOKE = r"tempest\.api\.identity\..*smoke"
HANG_PORT = 5050  # the hanging cloud, on the bridge address


def host(deployed: DeployedFarm, name: str) -> Any:
    port = deployed.hosts.forward_ssh(name)
    return testinfra.get_host(
        f"ssh://root@127.0.0.1:{port}", ssh_identity_file=str(deployed.hosts.key),
        ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                       "-o LogLevel=ERROR")


def test_a_second_run_changes_nothing(deployed: DeployedFarm) -> None:
    out = deployed.playbook("site.yml").stdout
    assert changed_counts(out) == {"h1": 0, "h2": 0, "h3": 0}, out[-4000:]


def test_services_ports_and_files(deployed: DeployedFarm) -> None:
    h1 = host(deployed, "h1")
    assert h1.service("gearman-job-server").is_running
    assert h1.service("gearman-job-server").is_enabled
    assert h1.service("farm-server").is_running and h1.service("farm-server").is_enabled
    assert h1.socket(f"tcp://{deployed.hosts.ip('h1')}:4730").is_listening
    assert h1.socket("tcp://0.0.0.0:8080").is_listening
    assert "--queue-type=libsqlite3" in h1.file("/etc/default/gearman-job-server").content_string
    cfg = h1.file("/etc/refstack-farm/server.yaml")
    assert (cfg.user, cfg.group, cfg.mode) == ("farm-server", "farm-server", 0o600)
    key = h1.file("/etc/refstack-farm/refstack_rsa")  # signs the server's RefStack uploads
    assert (key.user, key.mode) == ("farm-server", 0o600)
    assert 'refstack_key_file: "/etc/refstack-farm/refstack_rsa"' in cfg.content_string
    for name in ("h2", "h3"):
        token = h1.file(f"/var/lib/refstack-farm-server/tokens/workers/{name}")
        assert token.user == "root" and token.mode == 0o600
        w = host(deployed, name)
        unit = w.service("farm-worker@1")
        assert unit.is_running and unit.is_enabled
        conf = w.file("/etc/refstack-farm/worker.yaml")
        assert (conf.user, conf.mode) == ("farm-worker", 0o600)
        assert token.content_string.strip() in conf.content_string
        assert "preflight: false\n" in conf.content_string  # the role's variable
        assert w.process.get(user="farm-worker", comm="farm-worker")
        assert w.file("/var/cache/refstack-farm-worker/envs").is_directory
        box = w.file(f"/var/lib/refstack-farm-worker/outbox/{name}-1")  # held by slot 1
        assert (box.user, box.mode, box.is_directory) == ("farm-worker", 0o700, True)
        assert 'outbox_dir: "/var/lib/refstack-farm-worker/outbox"' in conf.content_string
    pong = json.loads(deployed.farm("ping", "--json"))
    assert sorted(p["worker"] for p in pong) == ["h2-1", "h3-1"]
    assert all(p["answer"]["versions"] == ["47.0.0"] for p in pong)
    assert all(p["answer"]["outbox"]["full"] is False for p in pong)


def test_a_dry_run_through_the_module(deployed: DeployedFarm) -> None:
    r = deployed.playbook("run_test.yml", "-e", "test_id=ans-dry-1", "-e",
                          "tempest_version=47.0.0", "-e", "regex=tempest.api.identity",
                          "-e", "dry_run=true", "-e",
                          json.dumps({"conf": {"identity": {"uri_v3": "http://x/v3"}}}))
    assert "ans-dry-1: passed" in r.stdout, r.stdout[-3000:]
    assert "138 tests selected" in r.stdout
    # again: the module sees the test id and submits nothing
    r = deployed.playbook("run_test.yml", "-e", "test_id=ans-dry-1", "-e",
                          "tempest_version=47.0.0", "-e", "dry_run=true")
    assert changed_counts(r.stdout)["h1"] == 0, r.stdout[-3000:]
    view = json.loads(deployed.farm("status", "ans-dry-1", "--json"))
    assert [h["state"] for h in view["history"]] == ["queued", "installing", "passed"]
    r = deployed.playbook("cancel_test.yml", "-e", "test_id=ans-dry-1")
    assert "nothing to cancel" in r.stdout and changed_counts(r.stdout)["h1"] == 0


def test_the_server_is_ready_and_scraped(deployed: DeployedFarm) -> None:
    """/health/ready and /metrics as a probe and a Prometheus on an allowed address
    read them (after the dry run above)."""
    get = ("python3 -c 'import sys, urllib.request; "
           "print(urllib.request.urlopen(sys.argv[1]).read().decode())' "
           "http://127.0.0.1:8080/")
    ready = json.loads(deployed.on("h1", get + "health/ready"))
    assert ready["ok"] and ready["checked"]["database"] == "ok", ready
    text = deployed.on("h1", get + "metrics")
    passed = re.search(r'^farm_runs_total\{state="passed",tempest_version="47.0.0"\} '
                       r"(\d+)", text, re.M) or re.search(
        r'^farm_runs_total\{tempest_version="47.0.0",state="passed"\} (\d+)', text, re.M)
    assert passed and float(passed.group(1)) >= 1, text[-3000:]
    assert 'farm_runs_active{state="running"}' in text
    pages = [deployed.on(h, get.replace("8080/", "9731/") + "metrics")  # slot 1
             for h in ("h2", "h3")]
    assert all('farm_worker_versions{tempest_version="47.0.0"} 1.0' in p for p in pages)
    assert any('farm_worker_jobs_total{state="passed"} 1.0' in p for p in pages)  # the dry run
    # the dashboard is served (gthread, the role's thread settings) and asks for a sign-in
    assert "Sign in to refstack-farm" in deployed.on("h1", get + "signin")
    cfg = host(deployed, "h1").file("/etc/refstack-farm/server.yaml").content_string
    assert "threads: 64\n" in cfg and "live_streams: 56\n" in cfg


def test_an_identity_smoke_run_through_the_module(deployed: DeployedFarm, cloud: Keystone,
                                                 refstack: RefStack, tmp_path: Path) -> None:
    """A real Tempest run on a worker host against a Keystone it reaches through the
    hosts' network, uploaded by run_test.yml to the real RefStack, signed with a key on
    the server host; the cloud password shows nowhere on the way."""
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f",
                    str(tmp_path / "operator_rsa")], check=True)
    key = SigningKey.load(tmp_path / "operator_rsa")
    refstack.register_key(key.public_line, key.self_signature())
    deployed.on("h1", "install -m 600 /dev/null /root/operator_rsa && cat > /root/operator_rsa"
                " <<'EOF'\n" + (tmp_path / "operator_rsa").read_text() + "EOF")
    extra = tmp_path / "cloud.json"
    extra.write_text(json.dumps({"conf": cloud.tempest_conf()}))
    r = deployed.playbook("run_test.yml", "-e", "test_id=ans-smoke-1", "-e",
                          "tempest_version=47.0.0", "-e", f"regex={SMOKE}",
                          "-e", f"@{extra}", "-e",
                          f"upload_url=http://{deployed.hosts.bridge_ip}:{REFSTACK_PORT}",
                          "-e", "upload_key=/root/operator_rsa")
    assert "ans-smoke-1: passed" in r.stdout, r.stdout[-3000:]
    view = json.loads(deployed.farm("status", "ans-smoke-1", "--json"))
    summary = view["test"]
    assert summary["state"] == "passed", summary
    doc = json.loads(deployed.farm("results", "ans-smoke-1", "--format", "json"))
    passed = [x for x in doc["results"] if x["status"] == "success"]
    assert len(passed) == doc["test"]["summary"]["passed"] >= 10, doc["test"]
    [upload] = view["uploads"]
    assert (upload["state"], upload["signed_by"]) == ("uploaded", key.fingerprint), upload
    assert upload["result_url"] in r.stdout
    stored = refstack.stored(upload["result_id"])
    assert sorted(n for n, _ in stored["results"]) == sorted(
        split_name(x["name"])[0] for x in passed)
    assert stored["meta"].get("user") and stored["cpid"] == summary["cpid"]
    assert not [x for x in doc["results"] if x["status"] == "fail"]
    assert ADMIN_PASSWORD not in r.stdout + r.stderr
    # the worker host: nowhere (journal, config, workspaces, results, environments); the
    # server host: its journal, logs and gearmand's queue (the conf reaches workers from
    # the server's store, never through gearmand)
    worker = summary["worker"].rsplit("-", 1)[0]
    for name, paths in ((worker, "/etc /var /opt /tmp /root /home"),
                        ("h1", "/etc /var/log /var/lib/gearman /tmp")):
        found = deployed.hosts.ssh(name, f"journalctl --no-pager | grep -cF '{ADMIN_PASSWORD}';"
                                   f" grep -rlF '{ADMIN_PASSWORD}' {paths} 2>/dev/null; true")
        assert found.stdout.split() == ["0"], (name, found.stdout)


def test_scale_out_then_drain_a_busy_worker(deployed: DeployedFarm) -> None:
    deployed.hosts.add_host("h4")
    deployed.set_groups(workers=["h2", "h3", "h4"])
    deployed.playbook("workers.yml")
    pong = json.loads(deployed.farm("ping", "--json"))
    assert sorted(p["worker"] for p in pong) == ["h2-1", "h3-1", "h4-1"]
    queue = json.loads(deployed.farm("queue", "--json"))
    assert any(f["name"] == "tempest:run:47.0.0" and f["workers"] == 3
               for f in queue["servers"][0]["functions"]), queue

    # a run that lasts until released: every test class waits on a cloud that never
    # answers (bridged into the hosts' network); drain the host that runs it, and release
    # the run only once that worker is draining: the run then finishes (fails, its cloud
    # gone), and only then does its unit stop
    cloud = Silent()
    pool = ThreadPoolExecutor(1)
    try:
        deployed.hosts.bridge("hang", HANG_PORT, f"127.0.0.1:{cloud.port}")
        conf = cloud.tempest_conf(f"http://{deployed.hosts.bridge_ip}:{HANG_PORT}")
        deployed.on("h1", "cat > /tmp/hang.json <<'EOF'\n" + json.dumps(conf) + "\nEOF")
        deployed.farm("submit", "--tempest", "47.0.0", "--conf", "/tmp/hang.json",
                      "--regex", "tempest.api.identity.v3", "--test-id", "ans-drain-1")
        end = time.monotonic() + 180
        while True:
            view = json.loads(deployed.farm("status", "ans-drain-1", "--json"))["test"]
            if view["state"] == "running":
                break
            assert time.monotonic() < end and view["state"] in ("queued", "installing"), view
            time.sleep(1)
        cloud.wait_connected()  # Tempest waits on the cloud
        busy = view["worker"].rsplit("-", 1)[0]
        journal = "journalctl -u farm-worker@1 --no-pager -o cat | grep -c draining; true"
        drains = int(deployed.on(busy, journal))  # restarts at converge drained it before
        drain = pool.submit(deployed.playbook, "workers.yml", "--limit", busy,
                            "-e", "farm_worker_state=absent")
        end = time.monotonic() + 600
        while int(deployed.on(busy, journal)) == drains:
            assert time.monotonic() < end, "the worker did not start draining in 600 s"
            assert not drain.done(), f"the drain ended first: {drain.result().stdout[-3000:]}"
            time.sleep(1)
        view = json.loads(deployed.farm("status", "ans-drain-1", "--json"))["test"]
        assert view["state"] == "running" and not drain.done(), view  # the drain waits
        cloud.stop()  # release the run
        drain.result(timeout=600)
    finally:
        cloud.stop()  # (a drain still waiting on the run then ends too)
        pool.shutdown()
    view = json.loads(deployed.farm("status", "ans-drain-1", "--json"))["test"]
    assert view["state"] == "failed", view  # finished, not cancelled or lost
    w = host(deployed, busy)
    assert not w.service("farm-worker@1").is_running
    assert not w.service("farm-worker@1").is_enabled
    # the drained worker owes nothing: its outbox was flushed before the play ended
    owed = deployed.on(busy, "find /var/lib/refstack-farm-worker/outbox -name '*.json' | wc -l")
    assert int(owed) == 0
    pong = json.loads(deployed.farm("ping", "--json"))
    assert f"{busy}-1" not in [p["worker"] for p in pong]
