"""The RefStack document of a run, the signing key, and the server's upload endpoints and
fields, through Flask's test client (no RefStack needed: tests/server/test_refstack_server.py
sends them to the real one)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from farm_client.refstack_upload import (
    KeyProblem,
    SigningKey,
    UploadError,
    encode,
    refstack_payload,
    results_endpoint,
    split_name,
)
from farm_client.subunit_results import parse
from farm_lab.gearmand import Gearmand
from farm_server.config import ServerConfigError, load_server_config
from farm_server.models import TestRow
from harness.farmcli import farm
from harness.subunit_streams import stream
from server.conftest import App, json_of, make_app
from server.test_refstack_api import seed

U1, U2 = "8e2a2a9b-3c63-4a3f-9b3a-1f1e2d3c4b5a", "0c7f3a1e-5d4b-4e2f-8a1c-2b3d4e5f6a7b"
STREAM = stream([
    (f"tempest.api.identity.v3.test_a.A.test_one[id-{U1},smoke]", "success", ""),
    (f"tempest.api.identity.v3.test_a.A.test_two[smoke,id-{U2.upper()}]", "success", ""),
    ("tempest.api.identity.v3.test_a.A.test_three[id-not-a-uuid]", "success", ""),
    ("tempest.api.identity.v3.test_a.A.test_four", "fail", "Traceback: boom"),
    ("tempest.api.identity.v3.test_a.A.test_five[id-1]", "skip", "not here"),
    (f"tempest.api.identity.v3.test_a.A.test_one[id-{U1},smoke]", "success", ""),
], seconds=2.5)


def keygen(path: Path, kind: str = "rsa", *extra: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path), *extra],
                   check=True)
    return path


def test_split_name_takes_the_idempotent_id_from_the_attributes() -> None:
    assert split_name(f"a.B.test_c[id-{U1},smoke]") == ("a.B.test_c", U1)
    assert split_name(f"a.B.test_c[smoke,id-{U1.upper()}]") == ("a.B.test_c", U1)
    assert split_name("a.B.test_c[id-123]") == ("a.B.test_c", None)
    assert split_name("a.B.test_c") == ("a.B.test_c", None)
    assert split_name(f"a.B.test_c[xid-{U1}]") == ("a.B.test_c", None)


def test_the_document_holds_passed_tests_once_and_the_stream_duration() -> None:
    doc = refstack_payload(parse(STREAM), "cloud-1")
    assert doc == {"cpid": "cloud-1", "duration_seconds": 15, "results": [
        {"name": "tempest.api.identity.v3.test_a.A.test_one", "uuid": U1},
        {"name": "tempest.api.identity.v3.test_a.A.test_two", "uuid": U2},
        {"name": "tempest.api.identity.v3.test_a.A.test_three"}]}
    assert encode(doc).startswith(b'{"cpid":"cloud-1","duration_seconds":15,')


def test_a_signature_verifies_over_the_exact_body(tmp_path: Path) -> None:
    key = SigningKey.load(keygen(tmp_path / "id_rsa", "rsa", "-b", "2048"))
    body = encode(refstack_payload(parse(STREAM), "cloud-1"))
    headers = key.headers(body)
    assert headers["X-Public-Key"].startswith("ssh-rsa ")
    assert headers["X-Public-Key"] == (tmp_path / "id_rsa.pub").read_text().split(" ")[0] \
        + " " + (tmp_path / "id_rsa.pub").read_text().split(" ")[1]
    public = key.key.public_key()
    public.verify(bytes.fromhex(headers["X-Signature"]), body, padding.PKCS1v15(),
                  hashes.SHA256())
    public.verify(bytes.fromhex(key.self_signature()), b"signature", padding.PKCS1v15(),
                  hashes.SHA256())
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "id_rsa.pub")],
                         capture_output=True, text=True, check=True).stdout
    assert key.fingerprint in out
    pem = SigningKey.load(keygen(tmp_path / "pem_rsa", "rsa", "-b", "2048", "-m", "PEM"))
    assert pem.public_line.startswith("ssh-rsa ")


def test_keys_refstack_cannot_use_are_named(tmp_path: Path) -> None:
    with pytest.raises(KeyProblem, match=r"Ed25519 key; RefStack verifies RSA signatures"):
        SigningKey.load(keygen(tmp_path / "ed", "ed25519"))
    with pytest.raises(KeyProblem, match=r"cannot read it"):
        SigningKey.load(tmp_path / "missing")
    (tmp_path / "junk").write_text("not a key\n")
    with pytest.raises(KeyProblem, match=r"junk: not a private key in OpenSSH or PEM form"):
        SigningKey.load(tmp_path / "junk")
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "pass-phrase-1",
                    "-f", str(locked)], check=True)
    with pytest.raises(KeyProblem, match=r"has a passphrase: set \$FARM_REFSTACK_KEY_PASS"):
        SigningKey.load(locked)
    assert SigningKey.load(locked, "pass-phrase-1").public_line.startswith("ssh-rsa ")


def test_results_endpoint_accepts_the_usual_spellings() -> None:
    for url in ("https://refstack.example.org/api", "https://refstack.example.org/api/",
                "https://refstack.example.org/api/v1", "https://refstack.example.org/api/v1/results"):
        assert results_endpoint(url) == "https://refstack.example.org/api/v1/results"
    with pytest.raises(UploadError, match="not an http"):
        results_endpoint("refstack.example.org")


def test_server_settings_are_checked(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("refstack_upload_url: ftp://x\n")
    with pytest.raises(ServerConfigError, match=r"refstack_upload_url: 'ftp://x' is not an"):
        load_server_config(tmp_path / "s.yaml", environ={})
    keygen(tmp_path / "ed", "ed25519")
    (tmp_path / "s.yaml").write_text(f"refstack_key_file: {tmp_path / 'ed'}\n")
    with pytest.raises(ServerConfigError, match=r"refstack_key_file: .*Ed25519 key"):
        load_server_config(tmp_path / "s.yaml", environ={})


def _with_results(app: App, test_id: str, cpid: str | None) -> None:
    seed(app, test_id)
    query = f"post-result?test_id={test_id}" + (f"&cpid={cpid}" if cpid else "")
    r = app.client.post(query, data={"file": (io.BytesIO(STREAM), "r.subunit")},
                        headers=app.worker(), content_type="multipart/form-data")
    assert r.status_code == 201, r.text


def test_the_document_endpoint(farm_app: App) -> None:
    _with_results(farm_app, "t1", "cloud-from-worker")
    r = farm_app.client.get("/v1/tests/t1/refstack", headers=farm_app.user())
    assert r.status_code == 200 and json_of(r)["cpid"] == "cloud-from-worker"
    assert len(json_of(r)["results"]) == 3
    r = farm_app.client.get("/v1/tests/t1/refstack?cpid=given-1", headers=farm_app.user())
    assert json_of(r)["cpid"] == "given-1"
    r = farm_app.client.get("/v1/tests/t1/refstack?cpid=bad%20id", headers=farm_app.user())
    assert r.status_code == 400 and json_of(r)["field"] == "cpid"
    _with_results(farm_app, "t2", None)
    r = farm_app.client.get("/v1/tests/t2/refstack", headers=farm_app.user())
    assert r.status_code == 409 and "cpid" in json_of(r)["error"]
    seed(farm_app, "t3")
    r = farm_app.client.get("/v1/tests/t3/refstack", headers=farm_app.user())
    assert r.status_code == 404 and "no results" in json_of(r)["error"]
    assert farm_app.client.get("/v1/tests/t1/refstack").status_code == 401


@pytest.mark.parametrize(("body", "field"), [
    ({"target": "ftp://x", "state": "uploaded", "result_id": "r"}, "target"),
    ({"target": "http://r/api", "state": "done", "result_id": "r"}, "state"),
    ({"target": "http://r/api", "state": "uploaded"}, "result_id"),
    ({"target": "http://r/api", "state": "failed", "attempts": 0}, "attempts"),
    ({"target": "http://r/api", "state": "failed", "message": 5}, "message"),
    ({"target": "http://r/api", "state": "failed", "extra": 1}, "extra"),
])
def test_a_recorded_upload_is_checked_field_by_field(farm_app: App, body: dict[str, object],
                                                     field: str) -> None:
    seed(farm_app)
    r = farm_app.client.post("/v1/tests/t1/uploads", json=body, headers=farm_app.user())
    assert r.status_code == 400 and json_of(r)["field"] == field, r.text
    assert farm_app.store.uploads("t1") == []


def test_a_recorded_upload_shows_with_the_test(farm_app: App) -> None:
    seed(farm_app)
    r = farm_app.client.post("/v1/tests/t1/uploads", headers=farm_app.user(), json={
        "target": "http://r/api", "state": "uploaded", "result_id": "abc",
        "result_url": "http://r/#/results/abc", "attempts": 2})
    assert r.status_code == 201, r.text
    doc = json_of(farm_app.client.get("/v1/tests/t1", headers=farm_app.user()))
    assert [(u["state"], u["source"], u["result_url"], u["attempts"])
            for u in doc["uploads"]] == [("uploaded", "client", "http://r/#/results/abc", 2)]
    r = farm_app.client.post("/v1/tests/nope/uploads", headers=farm_app.user(), json={
        "target": "http://r/api", "state": "failed"})
    assert r.status_code == 404


@pytest.mark.parametrize(("extra", "field"), [
    ({"upload_url": "refstack"}, "upload_url"), ({"upload_url": 5}, "upload_url"),
    ({"cpid": "a b"}, "cpid"), ({"cpid": "x" * 65}, "cpid"), ({"cpid": 7}, "cpid"),
])
def test_submit_checks_the_upload_fields(farm_app: App, extra: dict[str, object],
                                         field: str) -> None:
    r = farm_app.client.post("/v1/tests", headers=farm_app.user(), json={
        "test_id": "up-1", "tempest": {"version": "47.0.0"}, "dry_run": True,
        "conf": {}, "queue_anyway": True, **extra})
    assert r.status_code == 400 and json_of(r)["field"] == field, r.text
    assert farm_app.store.get("up-1") is None


def test_the_cli_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "conf.json").write_text("{}")
    done = farm(tmp_path, "submit", "--tempest", "47.0.0", "--conf", "conf.json", "--upload",
                "http://r/api", "--gearman", "127.0.0.1:1")
    assert done.returncode == 2
    assert "upload_url: uploads to RefStack are made by the status server" in done.stderr
    done = farm(tmp_path, "results", "t1", "--key", "k", "--server", "http://127.0.0.1:1/")
    assert done.returncode == 2 and "--key and --cpid go with --upload URL" in done.stderr
    keygen(tmp_path / "ed", "ed25519")
    done = farm(tmp_path, "refstack-key", str(tmp_path / "ed"))
    assert done.returncode == 2 and "RefStack verifies RSA signatures only" in done.stderr
    keygen(tmp_path / "rsa", "rsa", "-b", "2048")
    done = farm(tmp_path, "refstack-key", str(tmp_path / "rsa"))
    assert done.returncode == 0
    public = (tmp_path / "rsa.pub").read_text().split()
    assert f"{public[0]} {public[1]}" in done.stdout and "signature:" in done.stdout
    done = farm(tmp_path, "results", "t1", "--upload", "refstack.example.org", "--server",
                "http://127.0.0.1:1/")
    assert done.returncode == 1 and "not an http(s) URL" in done.stderr
    done = farm(tmp_path, "results", "t1", "--upload", "http://r/api", "--attempts", "0")
    assert done.returncode == 2 and "--attempts: '0' is not a number from 1 to 100" in done.stderr


def test_the_servers_upload_target_applies_to_new_tests(tmp_path: Path,
                                                        own_gearmand: Gearmand) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'server.db'}", own_gearmand,
                   refstack_upload_url="http://refstack.example.org/api")
    try:
        for test_id, extra in (("d-1", {}), ("d-2", {"upload_url": "http://other.org/api",
                                                     "cpid": "c-1"})):
            r = app.client.post("/v1/tests", headers=app.user(), json={
                "test_id": test_id, "tempest": {"version": "47.0.0"}, "dry_run": True,
                "conf": {}, "queue_anyway": True, **extra})
            assert r.status_code == 201, r.text
        one, two = app.store.get("d-1"), app.store.get("d-2")
        assert one is not None and one.upload_to == "http://refstack.example.org/api"
        assert two is not None and (two.upload_to, two.cpid) == ("http://other.org/api", "c-1")
    finally:
        app.app.extensions["farm"].gearman.close()
        app.store.engine.dispose()


def test_the_uploader_marks_a_run_it_cannot_upload_and_moves_on(farm_app: App) -> None:
    """No cpid (the worker could not ask the cloud and none was given): the automatic
    upload is recorded failed with the reason, once; the run stays as it was."""
    from farm_server.lifecycle import Report
    from farm_server.uploader import Uploader
    from farm_worker.protocol import TestState

    _with_results(farm_app, "t1", None)
    with farm_app.store.write() as s:
        row = s.get(TestRow, "t1")
        assert row is not None
        row.upload_to = "http://127.0.0.1:9/api"
    farm_app.store.apply("t1", Report(TestState.PASSED, "done", "host-1"), source="worker")
    uploader = Uploader(farm_app.store, None)
    assert uploader.run_once() == ["t1: not uploaded: the cloud's cpid for t1 is not known "
                                   "(the worker could not ask its Keystone): give one (--cpid)"]
    assert uploader.run_once() == []
    [upload] = farm_app.store.uploads("t1")
    assert (upload.state, upload.source, upload.attempts) == ("failed", "server", 1)
    test = farm_app.store.get("t1")
    assert test is not None and test.state == "passed"
