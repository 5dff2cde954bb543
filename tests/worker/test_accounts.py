"""Tempest's pre-provisioned accounts: a payload's `accounts` are written to a 0600 file in
the job's workspace, Tempest runs with them instead of admin (use_dynamic_credentials =
false), against the real Keystone with non-admin accounts the harness creates; the counts
equal a plain `tempest run` with the same accounts file, and no password is left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_worker.environments import PrepareResult
from harness.checks import leftovers
from harness.direct import direct_run
from harness.payloads import valid

from .test_execute_cli import execute

pytestmark = [pytest.mark.tempest, pytest.mark.cloud]
# non-admin identity tests, and an admin class that Tempest skips without an admin account
SELECTION = (r"^tempest\.api\.identity\.(v3\.(test_tokens|test_api_discovery|test_catalog)"
             r"|admin\.v3\.test_domains)")


def without_admin(keystone: Keystone) -> dict[str, dict[str, Any]]:
    """The e2e conf with no admin credentials at all."""
    conf = keystone.tempest_conf()
    conf["auth"] = {k: v for k, v in conf["auth"].items() if not k.startswith("admin_")}
    return conf


def test_accounts_instead_of_admin(tmp_path: Path, worker_cache: Path, keystone: Keystone,
                                   tempest47: PrepareResult) -> None:
    accounts = keystone.make_accounts("acct-exec", 4)
    conf = without_admin(keystone)
    proc = execute(tmp_path, worker_cache, valid(test_id="accts", dry_run=False, conf=conf,
                                                 accounts=accounts,
                                                 tests={"regex": SELECTION}))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["passed"] >= 5 and doc["failed"] == 0 and doc["classes_skipped"] >= 1, doc
    subunit = Path(doc["subunit"]).read_bytes().decode(errors="replace")
    for account in accounts:
        assert account["password"] not in proc.stdout + proc.stderr + subunit
    assert ADMIN_PASSWORD not in proc.stdout + proc.stderr
    assert leftovers(tmp_path / "work") == []  # the accounts file went with the job
    # plain Tempest with the same accounts file counts the same
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(accounts))
    direct = {**conf, "auth": {**conf["auth"], "test_accounts_file": str(path),
                               "use_dynamic_credentials": False}}
    c = direct_run(Path(tempest47.template), direct, tmp_path / "direct",
                   ["--regex", SELECTION]).counts()
    assert (c.passed, c.failed, c.skipped, c.classes_skipped) == (
        doc["passed"], doc["failed"], doc["skipped"], doc["classes_skipped"])


def test_a_refused_account_ends_error_before_tempest_runs(
        tmp_path: Path, worker_cache: Path, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    wrong = "Wrong-account-pw-31c8"
    proc = execute(tmp_path, worker_cache, valid(
        test_id="acct-refused", dry_run=False, conf=without_admin(keystone),
        accounts=[{"username": "nobody-acct", "password": wrong, "project_name": "p"}],
        tests={"regex": SELECTION}))
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["state"] == "error" and doc["message"] == (
        f"preflight: accounts[0]: Keystone at {keystone.public_url}/v3 refused the "
        "credentials of user 'nobody-acct' of domain 'Default' on project 'p' (401)"), doc
    assert wrong not in proc.stdout + proc.stderr
