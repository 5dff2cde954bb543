"""Cloud passwords (a conf's, and pre-provisioned accounts') after runs that pass, fail,
time out and are cancelled, or whose conf python-tempestconf discovered (as admin, and as
the first account), straight through gearmand and through the status server: 0
occurrences in worker and server logs, the status history, WORK_DATA events and results,
gearmand's queue database and log, and anything left under the workers' directories (their
outboxes included) and the status server's database files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from farm_lab.gearmand import Gearmand
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import TEMPEST, WorkerFactory
from farm_worker.environments import PrepareResult
from farm_worker.protocol import cancel_function, run_function
from harness.checks import wait_for_state
from harness.gearclient import TestClient, summary, wait
from harness.payloads import valid

from .conftest import submit

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
WRONG = "Wrong-pw-7731x"  # a failing run's password is as secret as a passing one's
SMOKE = r"tempest\.api\.identity\..*smoke"
SLOW = "tempest.api.identity"
FINAL = {"passed", "failed", "error", "cancelled", "timed_out", "rejected"}


def conf(keystone: Keystone) -> dict[str, Any]:
    return keystone.tempest_conf()


def failing_conf() -> dict[str, Any]:
    """Fails at once (nothing listens), with a password of its own. Not a wrong password
    for the session's Keystone: that would lock its admin out for the other tests."""
    return {"identity": {"uri_v3": "http://127.0.0.1:9/v3"},
            "auth": {"use_dynamic_credentials": True, "admin_username": "admin",
                     "admin_password": WRONG, "admin_project_name": "admin",
                     "admin_domain_name": "Default"}}


def accounts_conf(keystone: Keystone) -> dict[str, Any]:
    """A conf without admin: Tempest runs with the job's pre-provisioned accounts."""
    out = keystone.tempest_conf()
    out["auth"] = {k: v for k, v in out["auth"].items() if not k.startswith("admin_")}
    return out


def discover_conf(keystone: Keystone) -> dict[str, Any]:
    """Credentials only: python-tempestconf discovers the rest (and writes its own files)."""
    return {"identity": {"uri_v3": f"{keystone.public_url}/v3"},
            "auth": {k: v for k, v in keystone.tempest_conf()["auth"].items()
                     if k != "admin_system"}}


def files_containing(root: Path, secrets: tuple[str, ...]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {s}" for s in secrets if s.encode() in data]
    return found


def test_no_password_anywhere_after_every_kind_of_end(
        tmp_path: Path, gearmand: Gearmand, client: TestClient, workers: WorkerFactory,
        server: FarmServer, keystone: Keystone, tempest47: PrepareResult) -> None:
    # no preflight: the failing conf must reach Tempest, whose logs and subunit tracebacks
    # are searched for its password (the preflight's own message: test_preflight.py)
    pool = [server_worker(workers, server, name, preflight=False) for name in ("sec-1", "sec-2")]
    run = run_function(TEMPEST)
    accounts = {way: keystone.make_accounts(f"acct-sec-{way}", 3) for way in "dsx"}

    # straight through gearmand: the conf rides the payload, the events come back to us
    direct = {
        "d-pass": client.submit(run, valid(test_id="d-pass", conf=conf(keystone),
                                           tests={"regex": SMOKE}, dry_run=False)),
        "d-fail": client.submit(run, valid(test_id="d-fail", conf=failing_conf(),
                                           tests={"regex": SMOKE}, dry_run=False)),
        "d-timeout": client.submit(run, valid(test_id="d-timeout", conf=conf(keystone),
                                              tests={"regex": SLOW}, dry_run=False,
                                              timeout_s=10)),
        "d-cancel": client.submit(run, valid(test_id="d-cancel", conf=conf(keystone),
                                             tests={"regex": SLOW}, dry_run=False)),
        "d-accounts": client.submit(run, valid(test_id="d-accounts",
                                               conf=accounts_conf(keystone),
                                               accounts=accounts["d"], tests={"regex": SMOKE},
                                               dry_run=False)),
        "d-discover": client.submit(run, valid(test_id="d-discover", conf=discover_conf(keystone),
                                               discover={}, tests={"regex": SMOKE},
                                               dry_run=False)),
    }
    # through the server: the conf and the accounts stay there until a worker fetches them
    submit(server, "s-pass", conf(keystone), SMOKE)
    submit(server, "s-fail", failing_conf(), SMOKE)
    submit(server, "s-timeout", conf(keystone), SLOW, timeout_s=10)
    submit(server, "s-cancel", conf(keystone), SLOW)
    submit(server, "s-accounts", accounts_conf(keystone), SMOKE, accounts=accounts["s"])
    submit(server, "s-discover", {"identity": {"uri_v3": f"{keystone.public_url}/v3"}}, SMOKE,
           accounts=accounts["x"], discover={})

    wait_for_state(direct["d-cancel"], "running", 600)
    wait(client.submit(cancel_function("d-cancel"), b""), 30)
    server.wait_state("s-cancel", {"running"}, 600)
    assert server.api("POST", "/v1/tests/s-cancel/cancel").status_code == 202

    ends = {tid: summary(wait(job, 600))["state"] for tid, job in direct.items()}
    served = ("s-pass", "s-fail", "s-timeout", "s-cancel", "s-accounts", "s-discover")
    for tid in served:
        ends[tid] = server.wait_state(tid, FINAL, 600)["test"]["state"]
    assert ends == {"d-pass": "passed", "d-fail": "failed", "d-timeout": "timed_out",
                    "d-cancel": "cancelled", "d-accounts": "passed", "d-discover": "passed",
                    "s-pass": "passed", "s-fail": "failed", "s-timeout": "timed_out",
                    "s-cancel": "cancelled", "s-accounts": "passed",
                    "s-discover": "passed"}, ends
    # the discovered confs are kept without their secrets (and said so)
    for kept in (summary(wait(direct["d-discover"], 1))["conf"],
                 server.api("GET", "/v1/tests/s-discover").json()["test"]["tempest_conf"]):
        assert kept["identity-feature-enabled"]["api_v3"] == "True", kept

    secrets = (ADMIN_PASSWORD, WRONG, *(a["password"] for way in accounts.values()
                                        for a in way))
    texts = {"server log": server.log.read_text(errors="replace"),
             "test list": server.api("GET", "/v1/tests").text}
    for w in pool:
        texts[f"{w.worker_id} log"] = w.output()
    for tid, job in direct.items():  # every WORK_DATA event and the WORK_COMPLETE summary
        texts[f"{tid} events"] = b"\n".join(bytes(chunk) for chunk in job.data).decode()
    for tid in served:
        texts[f"{tid} status+history"] = server.api("GET", f"/v1/tests/{tid}").text
        texts[f"{tid} results"] = server.api("GET", f"/v1/tests/{tid}/results").text
    leaks = [f"{where}: {s}" for where, text in texts.items() for s in secrets if s in text]
    # gearmand's queue db and log; each worker's directories: work, results and its outbox
    roots = [gearmand.state, *(w.work_dir.parent for w in pool)]
    assert all((w.work_dir.parent / "outbox" / w.worker_id).is_dir() for w in pool)
    for root in roots:
        leaks += files_containing(root, secrets)
    assert leaks == [], leaks
    # the server held the s-* confs until those runs ended; its monitor (every second) then
    # checkpoints and truncates the WAL: no copy stays in its database files either
    end = time.monotonic() + 30
    while stored := files_containing(server.base, secrets):
        assert time.monotonic() < end, stored
        time.sleep(0.5)
    roots.append(server.base)
    files = sum(1 for root in roots for p in root.rglob("*") if p.is_file())
    print(f"secrets: {len(ends)} runs ({', '.join(sorted(set(ends.values())))}), {len(texts)} "
          f"texts and {files} files searched for {len(secrets)} passwords: 0 found")
