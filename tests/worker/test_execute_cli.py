"""`farm-worker execute`: one payload, no gearman; the summary, the exit code, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.loopback import free_port
from farm_lab.workers import FARM_WORKER
from farm_worker.environments import PrepareResult
from harness.checks import leftovers, processes_under
from harness.payloads import INVALID, valid
from harness.recorder import Recorder

pytestmark = pytest.mark.tempest
SUMMARY_KEYS = {"test_id", "state", "passed", "failed", "skipped", "total", "done", "not_run",
                "classes_failed", "classes_skipped", "duration_s", "subunit"}


def execute(tmp_path: Path, worker_cache: Path, payload: dict[str, Any] | bytes,
            *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "payload.json"
    path.write_bytes(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    return subprocess.run([FARM_WORKER, "execute", str(path), "--json", "--cache-dir",
                           str(worker_cache), "--work-dir", str(tmp_path / "work"),
                           "--results-dir", str(tmp_path / "results"), *extra],
                          capture_output=True, text=True, timeout=900)


def test_dry_run_prints_one_json_summary(tmp_path: Path, worker_cache: Path,
                                         tempest47: PrepareResult) -> None:
    proc = execute(tmp_path, worker_cache, valid(test_id="dry"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) >= SUMMARY_KEYS
    assert doc["state"] == "passed" and doc["total"] > 100 and doc["subunit"] is None
    assert leftovers(tmp_path / "work") == []


def test_invalid_payload_is_rejected_with_exit_2(tmp_path: Path, worker_cache: Path) -> None:
    _name, raw, field, fragment = next(row for row in INVALID if row[0] == "version-47")
    proc = execute(tmp_path, worker_cache, raw)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["state"] == "rejected" and doc["field"] == field and fragment in doc["message"]


def test_a_rejection_is_said_once(tmp_path: Path, worker_cache: Path) -> None:
    """Not three times (the log, the state line, the summary), and with no `test None`."""
    for raw, first in ((b"this is: not: json", "payload rejected: payload: "),
                       (json.dumps(valid(test_id="rej", tempest={"version": "47"})).encode(),
                        "test rej rejected: tempest.version: ")):
        path = tmp_path / "payload"
        path.write_bytes(raw)
        proc = subprocess.run([FARM_WORKER, "execute", str(path), "--cache-dir",
                               str(worker_cache), "--work-dir", str(tmp_path / "work")],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert proc.stdout.startswith(first) and proc.stdout.count("\n") == 1, proc.stdout
        assert proc.stderr == "" and "None" not in proc.stdout, proc.stderr


def test_a_yaml_payload_runs_as_farm_submit_sends_it(tmp_path: Path, worker_cache: Path,
                                                     tempest47: PrepareResult) -> None:
    import yaml

    path = tmp_path / "payload.yaml"
    path.write_text(yaml.safe_dump(valid(test_id="yaml-1")))
    proc = subprocess.run([FARM_WORKER, "execute", str(path), "--json", "--cache-dir",
                           str(worker_cache), "--work-dir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["test_id"] == "yaml-1" and doc["state"] == "passed"


def test_payload_from_stdin(tmp_path: Path, worker_cache: Path,
                            tempest47: PrepareResult) -> None:
    proc = subprocess.run([FARM_WORKER, "execute", "-", "--cache-dir", str(worker_cache),
                           "--work-dir", str(tmp_path / "work")], capture_output=True,
                          text=True, input=json.dumps(valid(test_id="stdin")), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("test stdin: passed (dry run:")


def stranger(keystone: Keystone, password: str) -> dict[str, Any]:
    """Credentials Keystone refuses: an unknown user (a wrong password for the admin would
    count towards Keystone's lockout, and lock the other tests out)."""
    conf = keystone.tempest_conf(password=password)
    conf["auth"]["admin_username"] = "nobody-execute"
    return conf


@pytest.mark.cloud
def test_refused_credentials_end_error_before_tempest_runs(
        tmp_path: Path, worker_cache: Path, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    wrong = "Wrong-password-77c2"
    proc = execute(tmp_path, worker_cache, valid(
        test_id="refused", dry_run=False, conf=stranger(keystone, wrong),
        tests={"regex": r"tempest\.api\.identity\.v3\.test_domains"}))
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["state"] == "error" and doc["total"] == 0 and doc["subunit"] is None, doc
    assert doc["message"] == (
        "preflight: [auth] admin_username, admin_password: Keystone at "
        f"{keystone.public_url}/v3 refused the credentials of user 'nobody-execute' of "
        "domain 'Default' on project 'admin' (401)")
    assert wrong not in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("results/*")) and leftovers(tmp_path / "work") == []


@pytest.mark.cloud
def test_failing_run_exits_1_with_failures_and_no_secret(tmp_path: Path, worker_cache: Path,
                                                         keystone: Keystone,
                                                         tempest47: PrepareResult) -> None:
    """Without the preflight, Tempest meets the refused credentials itself."""
    wrong = "Wrong-password-93f1"
    proc = execute(tmp_path, worker_cache, valid(
        test_id="wrongpw", dry_run=False, conf=stranger(keystone, wrong),
        tests={"regex": r"tempest\.api\.identity\.v3\.test_domains"}), "--no-preflight")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    # a wrong password fails each class in setUpClass: classes, not tests, and the tests
    # of those classes are accounted as not run
    assert doc["state"] == "failed" and doc["classes_failed"] >= 1, doc
    assert doc["not_run"] == doc["total"] - doc["passed"] - doc["failed"] - doc["skipped"]
    assert doc["failures"] and all(f["detail"] for f in doc["failures"])
    assert Path(doc["subunit"]).parent == tmp_path / "results"
    for text in (proc.stdout, proc.stderr, Path(doc["subunit"]).read_text(errors="replace")):
        assert wrong not in text
    assert ADMIN_PASSWORD not in proc.stderr
    assert leftovers(tmp_path / "work") == []


@pytest.mark.cloud
def test_sigint_cancels_and_exits_3(tmp_path: Path, worker_cache: Path, keystone: Keystone,
                                    tempest47: PrepareResult) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(valid(test_id="intr", dry_run=False,
                                     conf=keystone.tempest_conf(),
                                     tests={"regex": "tempest.api.identity"})))
    with subprocess.Popen([FARM_WORKER, "execute", str(path), "--json", "--cache-dir",
                           str(worker_cache), "--work-dir", str(tmp_path / "work"),
                           "--results-dir", str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "] running:" in line:
                    break
            end = time.monotonic() + 60  # Tempest has started: the suite lasts minutes
            while not processes_under(tmp_path / "work"):
                assert time.monotonic() < end and proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 3
    assert json.loads(out)["state"] == "cancelled"
    assert leftovers(tmp_path / "work") == []


def _execute_late(tmp_path: Path, worker_cache: Path, port: int, flush_s: float) \
        -> tuple[subprocess.Popen[str], Path, dict[str, str]]:
    """`farm-worker execute` of a dry run whose callback server is down."""
    env = {**os.environ, "FARM_WORKER_REPORT_FLUSH_S": str(flush_s),
           "FARM_WORKER_OUTBOX_DIR": str(tmp_path / "outbox")}
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(valid(test_id="late", callback={
        "url": f"http://127.0.0.1:{port}/"})))
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err_file:
        proc = subprocess.Popen(
            [FARM_WORKER, "execute", str(path), "--json", "--cache-dir", str(worker_cache),
             "--work-dir", str(tmp_path / "work"), "--results-dir", str(tmp_path / "results")],
            stdout=subprocess.PIPE, stderr=err_file, text=True, env=env)
    return proc, errors, env


def test_reports_pending_at_the_end_are_delivered_before_exit(
        tmp_path: Path, worker_cache: Path, tempest47: PrepareResult) -> None:
    """The callback server is down when the job ends: execute waits for it up to
    report_flush_s (its reports are in the outbox) and exits once they are delivered."""
    port = free_port()
    proc, errors, _ = _execute_late(tmp_path, worker_cache, port, 300)
    try:
        end = time.monotonic() + 300  # the job has ended and its reports wait
        while "waiting up to" not in (err := errors.read_text()):
            assert time.monotonic() < end and proc.poll() is None, err
            time.sleep(0.1)
        assert "[late] the callback server does not answer: waiting up to 300 s for" in err
        assert proc.poll() is None, err  # it must not exit with the reports undelivered
        rec = Recorder().start(port)
        try:
            out, _ = proc.communicate(timeout=120)
            err = errors.read_text()
            assert proc.returncode == 0, err
            assert rec.states("late") == ["installing", "passed"]
            assert json.loads(out)["state"] == "passed"
            assert "stay in the outbox" not in err
        finally:
            rec.stop()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_reports_left_at_exit_stay_in_the_outbox_for_flush(
        tmp_path: Path, worker_cache: Path, tempest47: PrepareResult) -> None:
    """The server stays away past report_flush_s: execute exits with its result and says
    the reports stay in the outbox; `farm-worker outbox flush` delivers them later."""
    port = free_port()
    proc, errors, env = _execute_late(tmp_path, worker_cache, port, 0.5)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = errors.read_text()
    assert proc.returncode == 0 and json.loads(out)["state"] == "passed", err
    assert "[late] 2 reports stay in the outbox " in err and "outbox flush" in err
    rec = Recorder().start(port)
    try:
        flushed = subprocess.run([FARM_WORKER, "outbox", "flush", "--json"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert flushed.returncode == 0, flushed.stderr
        assert [r["left"] for r in json.loads(flushed.stdout).values()] == [0]
        assert rec.states("late") == ["installing", "passed"]
    finally:
        rec.stop()

