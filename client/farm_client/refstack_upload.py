"""Results to a RefStack server: the API v1 upload refstack-client makes.

`POST <api>/v1/results` with `{"cpid", "duration_seconds", "results": [{"name", "uuid"}]}`:
the passed tests only, each named without its attributes (`[id-...,smoke]`) and carrying
the idempotent id from the `id-<uuid>` attribute; the duration runs from the first to the
last timestamp of the subunit stream. With a key, the exact body bytes are signed (RSA
PKCS#1 v1.5, SHA-256): hex in `X-Signature`, the OpenSSH public key line in
`X-Public-Key`. RefStack accepts a signed upload only from a key registered to a user
(`farm refstack-key` prints what its profile page asks for).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from farm_client.exceptions import FarmClientError
from farm_client.subunit_results import Collector
from farm_worker.protocol import SUBUNIT_PASSED

_UUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
IDEMPOTENT_ID = re.compile(rf"(?:^|,)id-({_UUID})(?:,|$)")
CPID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # what a cloud id may be
PASSPHRASE_ENV = "FARM_REFSTACK_KEY_PASSPHRASE"  # noqa: S105 (a variable name)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class UploadError(FarmClientError):
    """The upload did not happen. `retryable`: the same command may succeed later (the
    server was unreachable or failing), as opposed to a refusal (401, 400)."""

    def __init__(self, message: str, *, status: int | None = None,
                 retryable: bool = False, attempts: int = 1, problem: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.attempts = attempts
        self.problem = problem or message  # what went wrong, without advice


class KeyProblem(FarmClientError, ValueError):
    """The private key cannot be used to sign a RefStack upload."""


def split_name(test_id: str) -> tuple[str, str | None]:
    """`tempest.a.B.test_c[id-<uuid>,smoke]` -> (`tempest.a.B.test_c`, `<uuid>`)."""
    name, _, attrs = test_id.partition("[")
    found = IDEMPOTENT_ID.search(attrs.rstrip("]"))
    return name, (found.group(1).lower() if found else None)


def refstack_payload(parsed: Collector, cpid: str) -> dict[str, Any]:
    """The document RefStack stores: passed tests once each, in stream order."""
    results: list[dict[str, str]] = []
    seen: set[str] = set()
    for test in parsed.tests:
        if test.status not in SUBUNIT_PASSED:
            continue
        name, uuid = split_name(test.test_id)
        if name in seen:
            continue
        seen.add(name)
        results.append({"name": name, "uuid": uuid} if uuid else {"name": name})
    return {"cpid": cpid, "duration_seconds": round(parsed.wall_s),
            "results": results}


def encode(doc: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed)."""
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SigningKey:
    key: rsa.RSAPrivateKey
    source: str

    @classmethod
    def load(cls, path: str | Path, passphrase: str | None = None) -> SigningKey:
        """An RSA private key in OpenSSH (`ssh-keygen`'s default) or PEM form. A key with a
        passphrase takes it from the argument, else from $FARM_REFSTACK_KEY_PASSPHRASE."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise KeyProblem(f"--key {path}: cannot read it ({exc.strerror})") from None
        secret = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
        password = secret.encode() if secret else None
        loader = (serialization.load_ssh_private_key if b"OPENSSH PRIVATE KEY" in data
                  else serialization.load_pem_private_key)
        try:
            key = loader(data, password)
        except TypeError as exc:  # needs a passphrase, or got one it does not need
            needed = "no passphrase" not in str(exc).lower() and password is None
            raise KeyProblem(f"--key {path}: " + (
                f"the key has a passphrase: set ${PASSPHRASE_ENV}" if needed
                else str(exc))) from None
        except (ValueError, UnsupportedAlgorithm):
            raise KeyProblem(f"--key {path}: not a private key in OpenSSH or PEM form (make "
                             "one with `ssh-keygen -t rsa -b 4096`)") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyProblem(f"--key {path}: a {type(key).__name__.removesuffix('PrivateKey')}"
                             " key; RefStack verifies RSA signatures only: make one with "
                             "`ssh-keygen -t rsa -b 4096 -m PEM`")
        return cls(key, str(path))

    @property
    def public_line(self) -> str:
        """`ssh-rsa AAAA...`: what goes in X-Public-Key and in the RefStack profile."""
        return self.key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH).decode()

    @property
    def fingerprint(self) -> str:
        """`SHA256:...` as `ssh-keygen -l` prints it: which key signed, without the key."""
        blob = base64.b64decode(self.public_line.split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    def sign(self, data: bytes) -> str:
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256()).hex()

    def self_signature(self) -> str:
        """The signature of b"signature" that RefStack asks for with a new public key."""
        return self.sign(b"signature")

    def headers(self, body: bytes) -> dict[str, str]:
        return {"X-Signature": self.sign(body), "X-Public-Key": self.public_line}


@dataclass(frozen=True)
class Uploaded:
    result_id: str
    url: str
    attempts: int


def results_endpoint(api_url: str) -> str:
    """The upload URL for a RefStack API address: `https://refstack.openstack.org/api`,
    `.../api/v1` and `.../api/v1/results` all name the same endpoint."""
    if not api_url.startswith(("http://", "https://")):
        raise UploadError(f"--upload {api_url!r}: not an http(s) URL of a RefStack API")
    base = api_url.rstrip("/")
    if base.endswith("/v1/results"):
        return base
    if base.endswith("/v1"):
        return base + "/results"
    return base + "/v1/results"


def _server_message(resp: requests.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason
    if isinstance(doc, dict):
        for key in ("detail", "title", "message", "error"):
            if doc.get(key):
                return str(doc[key])[:300]
    return json.dumps(doc)[:300]


def upload(api_url: str, body: bytes, key: SigningKey | None = None, *, attempts: int = 5,
           backoff_s: float = 2.0, timeout_s: float = 30.0,
           sleep: Callable[[float], None] = time.sleep,
           on_retry: Callable[[int, str, float], None] | None = None) -> Uploaded:
    """POST the body; retry an unreachable or failing server with exponential backoff
    (`backoff_s`, doubling) up to `attempts` times. Refusals are not retried."""
    url = results_endpoint(api_url)
    if attempts < 1:
        raise ValueError(f"attempts: {attempts} is not a positive number")
    headers = {"Content-Type": "application/json", **(key.headers(body) if key else {})}
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            resp = requests.post(url, data=body, headers=headers, timeout=timeout_s)
        except requests.RequestException as exc:
            problem = f"unreachable ({type(exc).__name__})"
        else:
            if resp.status_code == 201:
                doc = resp.json()
                return Uploaded(str(doc["test_id"]), str(doc.get("url") or ""), attempt)
            message = _server_message(resp)
            if resp.status_code == 401:
                raise UploadError(
                    f"RefStack at {url} refused the upload (401): {message}" + (
                        f" (the key {key.source} is not registered: add the output of "
                        f"`farm refstack-key {key.source}` to your RefStack profile)"
                        if key else ""), status=401, attempts=attempt)
            if resp.status_code not in RETRY_STATUSES:
                raise UploadError(f"RefStack at {url} rejected the upload "
                                  f"({resp.status_code}): {message}", status=resp.status_code,
                                  attempts=attempt)
            problem = f"answered {resp.status_code}: {message}"
        if attempt < attempts:
            delay = backoff_s * 2 ** (attempt - 1)
            if on_retry is not None:
                on_retry(attempt, problem, delay)
            sleep(delay)
    raise UploadError(f"RefStack at {url}: {problem}, {attempts} attempts; the upload can "
                      "be retried with the same command", retryable=True, attempts=attempts,
                      problem=f"RefStack at {url}: {problem}")
