"""`farm results ID --upload URL` and `farm refstack-key KEY`: a run's results to RefStack.

The status server builds the document (it holds the subunit stream and the cloud's cpid),
this process signs it with the operator's key (the private key never leaves this machine),
sends it with retries, and tells the server what became of it (`farm status` shows it).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from farm_client.api import APIError, dumps
from farm_client.farm import Farm
from farm_client.refstack_upload import (
    KeyProblem,
    SigningKey,
    UploadError,
    encode,
    results_endpoint,
    upload,
)

EXIT_UPLOADED, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2


def upload_results(farm: Farm, test_id: str, target: str, *, key_file: str | None = None,
                   cpid: str | None = None, attempts: int = 5,
                   backoff_s: float = 2.0) -> dict[str, Any]:
    """Upload a stored run to the RefStack API `target`; the upload as the server recorded
    it (`state` uploaded or failed, `result_url`, `message`). Raises KeyProblem for an
    unusable key and APIError when the status server cannot give the run."""
    results_endpoint(target)  # an address that cannot work fails before anything is fetched
    key = SigningKey.load(key_file) if key_file else None
    doc = farm.refstack_document(test_id, cpid)

    def retrying(attempt: int, problem: str, delay: float) -> None:
        print(f"{test_id}: upload attempt {attempt}: {problem}; again in {delay:g} s",
              file=sys.stderr)

    record: dict[str, Any] = {"target": target,
                              "signed_by": key.fingerprint if key else None}
    try:
        done = upload(target, encode(doc), key, attempts=attempts, backoff_s=backoff_s,
                      on_retry=retrying)
    except UploadError as exc:
        record.update(state="failed", message=str(exc), attempts=exc.attempts)
        _record(farm, test_id, record)
        raise
    record.update(state="uploaded", result_id=done.result_id, result_url=done.url,
                  attempts=done.attempts)
    return _record(farm, test_id, record)


def _record(farm: Farm, test_id: str, record: dict[str, Any]) -> dict[str, Any]:
    try:
        return farm.record_upload(test_id, record)
    except APIError as exc:  # the upload itself is what counts; say the record is missing
        print(f"{test_id}: the status server did not record the upload: {exc}",
              file=sys.stderr)
        return record


def cmd_upload(args: argparse.Namespace, farm: Farm) -> int:
    """The --upload branch of `farm results`."""
    try:
        done = upload_results(farm, args.test_id, args.upload, key_file=args.key,
                              cpid=args.cpid, attempts=args.attempts)
    except KeyProblem as exc:
        print(f"farm: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except UploadError as exc:
        print(f"{args.test_id}: not uploaded: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if exc.retryable else EXIT_REFUSED
    if args.json:
        print(dumps(done))
    else:
        signed = f", signed by {done['signed_by']}" if done.get("signed_by") else ", unsigned"
        print(f"{args.test_id}: uploaded to {args.upload} as {done['result_id']}{signed}: "
              f"{done['result_url']}")
    return EXIT_UPLOADED


def cmd_refstack_key(args: argparse.Namespace) -> int:
    try:
        key = SigningKey.load(args.key)
    except KeyProblem as exc:
        print(f"farm: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(dumps({"public_key": key.public_line, "self_signature": key.self_signature(),
                     "fingerprint": key.fingerprint}))
        return 0
    print("# Add this key to your RefStack profile (Profile > Import public key):")
    print(f"public key:\n{key.public_line}\n")
    print(f"signature:\n{key.self_signature()}\n")
    print(f"# fingerprint {key.fingerprint}")
    return 0


def _attempts(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 100:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 1 to 100")
    return number


def add_upload_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("upload to RefStack (API v1, as refstack-client does)")
    g.add_argument("--upload", metavar="URL",
                   help="the RefStack API to upload to, e.g. https://refstack.openstack.org/api")
    g.add_argument("--key", metavar="PRIVATE_KEY",
                   help="sign with this RSA key (registered in your RefStack profile; a "
                        "passphrase comes from $FARM_REFSTACK_KEY_PASSPHRASE); unsigned "
                        "without it")
    g.add_argument("--cpid", metavar="CPID",
                   help="the cloud's id (default: the one the worker found in the cloud's "
                        "Keystone catalog)")
    g.add_argument("--attempts", type=_attempts, default=5, metavar="N",
                   help="tries against an unreachable RefStack, with doubling waits "
                        "(default 5)")


def add_refstack_key_command(add: Any) -> None:
    p = add("refstack-key", cmd_refstack_key,
            "the public key and self-signature RefStack asks for",
            "Print what the RefStack profile page asks for to register a key: the OpenSSH "
            "public key line and the signature of the word `signature` made with the "
            "private key (RSA). Then `farm results ID --upload URL --key KEY` signs uploads "
            "with it.\n\nexit: 0, 2 the key cannot be used")
    p.add_argument("key", metavar="PRIVATE_KEY")
    p.add_argument("--json", action="store_true")
