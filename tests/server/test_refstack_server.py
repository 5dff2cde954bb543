"""Results to the real RefStack server (refstack 2.1.0 from PyPI, on MariaDB, 127.0.0.1):
a real identity smoke run through `farm-server serve` and a real worker against the real
Keystone, uploaded unsigned and signed with `farm results --upload`, read back through
RefStack's API; an unregistered key (401), a tampered body (400), RefStack down (retried,
marked failed, uploaded by the same command later), and the server's automatic upload."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from farm_client.refstack_upload import SigningKey, UploadError, encode, split_name, upload
from farm_client.subunit_results import parse
from farm_lab.gearmand import Gearmand
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.loopback import free_port
from farm_lab.server import FarmServer
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.farmcli import farm
from harness.refstack import RefStack

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.cloud, pytest.mark.slow]
SMOKE = r"tempest\.api\.identity\..*smoke"
ONE = r"tempest\.api\.identity\.v3\.test_tokens\.TokensV3Test\.test_create_token"


def run_module(capsys: pytest.CaptureFixture[str], **args: Any) -> tuple[int, dict[str, Any]]:
    from client.test_gearman_job_module import run as module_main

    return module_main(capsys, **args)


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(path)],
                   check=True)
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("keys")
    return {name: keygen(base / name) for name in ("operator", "stranger", "server")}


@pytest.fixture(scope="module")
def farm_server(tmp_path_factory: pytest.TempPathFactory, gearmand: Gearmand,
                worker_cache: Path, keys: dict[str, Path],
                tempest47: PrepareResult) -> Iterator[FarmServer]:
    """`farm-server serve` whose uploader signs with the server key and retries every second."""
    base = tmp_path_factory.mktemp("rs-farm")
    server = FarmServer(base / "server", [gearmand.address], extra={
        "refstack_key_file": str(keys["server"]), "refstack_retry_s": 1,
        "refstack_upload_attempts": 3, "monitor_interval_s": 1, "stale_after_s": 60})
    workers = WorkerFactory(base / "workers", gearmand, worker_cache)
    server.start()
    try:
        workers.start("rs-worker", callbacks=[{"url": server.url,
                                                "token": server.worker_token}])
        yield server
    finally:
        workers.stop_all()
        server.stop()


def run(server: FarmServer, keystone: Keystone, test_id: str, regex: str,
        **extra: Any) -> dict[str, Any]:
    r = server.api("POST", "/v1/tests", json={
        "test_id": test_id, "tempest": {"version": "47.0.0"}, "conf": keystone.tempest_conf(),
        "tests": {"regex": regex}, **extra})
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = server.wait_state(test_id, {"passed", "failed", "error"})
    assert doc["test"]["state"] == "passed", doc
    return doc


@pytest.fixture(scope="module")
def server_key(refstack: RefStack, keys: dict[str, Path]) -> SigningKey:
    """The key of farm_server's uploader, registered in RefStack to a user of its own."""
    key = SigningKey.load(keys["server"])
    refstack.register_key(key.public_line, key.self_signature(),
                          openid="https://openstackid.org/farm-server")
    return key


@pytest.fixture(scope="module")
def smoke(farm_server: FarmServer, keystone: Keystone, refstack: RefStack,
          server_key: SigningKey) -> dict[str, Any]:
    """One real identity smoke run, which the server also uploads when it ends: the test,
    and its passed tests (name -> uuid)."""
    doc = run(farm_server, keystone, "rs-smoke-1", SMOKE, upload_url=refstack.url)
    wait_upload(farm_server, "rs-smoke-1", "uploaded")  # the server's, before any other
    results = farm_server.api("GET", "/v1/tests/rs-smoke-1/results").json()["results"]
    passed = dict(split_name(r["name"]) for r in results if r["status"] == "success")
    assert len(passed) >= 10
    return {"test": doc["test"], "passed": passed}


def identity_service_id(keystone: Keystone) -> str:
    r = requests.post(f"{keystone.url}/v3/auth/tokens", timeout=30, json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "password": ADMIN_PASSWORD, "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
    r.raise_for_status()
    return str(next(s["id"] for s in r.json()["token"]["catalog"] if s["type"] == "identity"))


def cli(server: FarmServer, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return farm(tmp, *args, env={"FARM_SERVER_URL": server.url,
                                 "FARM_TOKEN": server.user_token})


def uploads(server: FarmServer, test_id: str) -> list[dict[str, Any]]:
    return server.api("GET", f"/v1/tests/{test_id}").json()["uploads"]  # type: ignore[no-any-return]


def result_id(out: str) -> str:
    return out.split(" as ")[1].split(",")[0]


def test_an_unsigned_upload_reads_back_as_the_runs_passed_tests(
        farm_server: FarmServer, refstack: RefStack, keystone: Keystone,
        smoke: dict[str, Any], tmp_path: Path) -> None:
    assert smoke["test"]["cpid"] == identity_service_id(keystone)  # found by the worker
    done = cli(farm_server, tmp_path, "results", "rs-smoke-1", "--upload", refstack.url)
    assert done.returncode == 0, done.stderr
    assert ", unsigned: " in done.stdout
    rid = result_id(done.stdout)
    back = requests.get(f"{refstack.url}/v1/results/{rid}", timeout=30).json()
    assert sorted(back["results"]) == sorted(smoke["passed"])
    stored = refstack.stored(rid)  # what RefStack keeps (its anonymous view hides the cpid)
    assert stored["cpid"] == smoke["test"]["cpid"]
    assert stored["results"] == sorted([n, u] for n, u in smoke["passed"].items())
    assert all(u for _, u in stored["results"])  # every tempest test has its idempotent id
    raw = farm_server.api("GET", "/v1/tests/rs-smoke-1/results?format=subunit").content
    assert stored["duration_seconds"] == round(parse(raw).wall_s) > 0
    status = cli(farm_server, tmp_path, "status", "rs-smoke-1").stdout
    assert f"{refstack.url}/#/results/{rid}" in status and "uploaded" in status
    assert f"cpid: {smoke['test']['cpid']}" in status


@pytest.fixture(scope="module")
def operator_key(refstack: RefStack, keys: dict[str, Path], tmp_path_factory:
                 pytest.TempPathFactory, farm_server: FarmServer) -> dict[str, str]:
    """The operator's key, registered as its owner would: `farm refstack-key` prints the
    public key and self-signature, RefStack's own validator checks them."""
    shown = cli(farm_server, tmp_path_factory.mktemp("key"), "refstack-key",
                str(keys["operator"]), "--json")
    assert shown.returncode == 0, shown.stderr
    key: dict[str, str] = json.loads(shown.stdout)
    refstack.register_key(key["public_key"], key["self_signature"])
    return key


def test_a_signed_upload_belongs_to_the_keys_owner(
        farm_server: FarmServer, refstack: RefStack, keys: dict[str, Path],
        operator_key: dict[str, str], smoke: dict[str, Any], tmp_path: Path) -> None:
    key = operator_key
    done = cli(farm_server, tmp_path, "results", "rs-smoke-1", "--upload",
               f"{refstack.url}/v1", "--key", str(keys["operator"]), "--cpid", "given-cpid-1")
    assert done.returncode == 0, done.stderr
    assert f"signed by {key['fingerprint']}" in done.stdout
    stored = refstack.stored(result_id(done.stdout))
    assert stored["meta"].get("user") == "https://openstackid.org/farm-operator"
    assert stored["cpid"] == "given-cpid-1"
    assert sorted(n for n, _ in stored["results"]) == sorted(smoke["passed"])


def test_an_unregistered_key_is_refused_with_401(
        farm_server: FarmServer, refstack: RefStack, keys: dict[str, Path],
        smoke: dict[str, Any], tmp_path: Path) -> None:
    done = cli(farm_server, tmp_path, "results", "rs-smoke-1", "--upload", refstack.url,
               "--key", str(keys["stranger"]))
    assert done.returncode == 1
    assert "refused the upload (401)" in done.stderr and "not registered" in done.stderr
    assert f"farm refstack-key {keys['stranger']}" in done.stderr
    last = uploads(farm_server, "rs-smoke-1")[-1]
    assert (last["state"], last["attempts"], last["result_id"]) == ("failed", 1, None)


def test_a_tampered_body_is_refused_with_the_servers_message(
        farm_server: FarmServer, refstack: RefStack, keys: dict[str, Path],
        smoke: dict[str, Any]) -> None:
    """A body changed after signing (as on a tampering path): RefStack's 400, named."""
    doc = farm_server.api("GET", "/v1/tests/rs-smoke-1/refstack").json()
    signed = SigningKey.load(keys["operator"])

    class Tampered(SigningKey):
        def headers(self, body: bytes) -> dict[str, str]:
            return signed.headers(encode({**doc, "duration_seconds": 1}))

    with pytest.raises(UploadError) as caught:
        upload(refstack.url, encode(doc), Tampered(signed.key, "tampered"), attempts=1)
    assert caught.value.status == 400 and not caught.value.retryable
    assert "(400): Signature verification failed" in str(caught.value)


def test_refstack_down_is_retried_marked_and_the_same_command_uploads_later(
        farm_server: FarmServer, refstack: RefStack, smoke: dict[str, Any],
        tmp_path: Path) -> None:
    refstack.stop()
    try:
        down = cli(farm_server, tmp_path, "results", "rs-smoke-1", "--upload", refstack.url,
                   "--attempts", "3")
    finally:
        refstack.start()
    assert down.returncode == 2, down.stderr
    assert "upload attempt 1: unreachable" in down.stderr
    assert "again in 2 s" in down.stderr and "again in 4 s" in down.stderr
    assert "3 attempts; the upload can be retried with the same command" in down.stderr
    last = uploads(farm_server, "rs-smoke-1")[-1]
    assert (last["state"], last["attempts"]) == ("failed", 3)
    assert farm_server.api("GET", "/v1/tests/rs-smoke-1").json()["test"]["state"] == "passed"
    again = cli(farm_server, tmp_path, "results", "rs-smoke-1", "--upload", refstack.url)
    assert again.returncode == 0, again.stderr
    assert uploads(farm_server, "rs-smoke-1")[-1]["state"] == "uploaded"


def wait_upload(server: FarmServer, test_id: str, state: str,
                timeout_s: float = 60) -> dict[str, Any]:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        found = uploads(server, test_id)
        if found and found[-1]["state"] == state:
            return found[-1]
        time.sleep(0.5)
    raise AssertionError(f"{test_id}: no {state} upload in {timeout_s} s: "
                         f"{uploads(server, test_id)}")


def test_the_module_uploads_once(farm_server: FarmServer, refstack: RefStack,
                                 keys: dict[str, Path], operator_key: dict[str, str],
                                 smoke: dict[str, Any],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """library/gearman_job.py with wait and upload_url, on a run the farm knows: the run is
    not submitted again, it is uploaded once (signed), and a second task changes nothing."""
    args = {"test_id": "rs-smoke-1", "tempest_version": "47.0.0", "server_url": farm_server.url,
            "token": farm_server.user_token, "wait": True,
            "upload_url": f"{refstack.url}/v1/results", "upload_key": str(keys["operator"])}
    code, first = run_module(capsys, **args)
    assert code == 0, first
    assert first["changed"] and first["state"] == "passed"
    assert first["upload"]["state"] == "uploaded"
    assert first["upload"]["signed_by"] == operator_key["fingerprint"]
    assert refstack.stored(first["upload"]["result_id"])["meta"].get("user")
    code, second = run_module(capsys, **args)
    assert code == 0 and not second["changed"]
    assert second["upload"]["result_id"] == first["upload"]["result_id"]
    code, bad = run_module(capsys, **{**args, "wait": False})
    assert code == 1 and "upload_key needs wait=true" in bad["msg"]


def test_the_server_uploads_a_run_when_it_ends(
        farm_server: FarmServer, refstack: RefStack, keystone: Keystone,
        server_key: SigningKey, smoke: dict[str, Any], tmp_path: Path) -> None:
    done = uploads(farm_server, "rs-smoke-1")[0]
    assert done["source"] == "server"
    assert (done["state"], done["signed_by"]) == ("uploaded", server_key.fingerprint)
    stored = refstack.stored(done["result_id"])
    assert stored["meta"].get("user") == "https://openstackid.org/farm-server"
    assert stored["cpid"] == identity_service_id(keystone)
    # RefStack away: the uploader retries (3 attempts, 1 s then 2 s), then marks it failed
    # saying how to upload by hand; the run stays passed, and that command uploads it
    dead = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "conf.json").write_text(json.dumps(keystone.tempest_conf()))
    sub = cli(farm_server, tmp_path, "submit", "--tempest", "47.0.0", "--conf", "conf.json",
              "--regex", ONE, "--test-id", "rs-auto-2", "--upload", dead, "--wait")
    assert sub.returncode == 0, sub.stderr
    failed = wait_upload(farm_server, "rs-auto-2", "failed")
    assert failed["attempts"] == 3 and "unreachable" in failed["message"]
    assert "; 3 attempts, the last at " in failed["message"]
    assert f"`farm results rs-auto-2 --upload {dead}` uploads it by hand" in failed["message"]
    assert farm_server.api("GET", "/v1/tests/rs-auto-2").json()["test"]["state"] == "passed"
    log = farm_server.log.read_text()
    assert "rs-auto-2: attempt 1 failed, again in 1 s" in log
    again = cli(farm_server, tmp_path, "results", "rs-auto-2", "--upload", refstack.url)
    assert again.returncode == 0, again.stderr
