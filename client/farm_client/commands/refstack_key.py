"""`farm refstack-key`: what RefStack's profile page asks for to register a signing key."""

from __future__ import annotations

import argparse
import sys

from farm_client.commands.common import dumps

NAME = "refstack-key"
LOCATED = False  # it reads a key file; no gearmand or status server
HELP = "the public key and self-signature RefStack asks for"
DESCRIPTION = (
    "Print what the RefStack profile page asks for to register a key: the OpenSSH "
    "public key line and the signature of the word `signature` made with the "
    "private key (RSA). Then `farm results ID --upload URL --key KEY` signs uploads "
    "with it.\n\nexit: 0, 2 the key cannot be used")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("key", metavar="PRIVATE_KEY",
                   help="the RSA private key file (OpenSSH or PEM) that will sign uploads")
    p.add_argument("--json", action="store_true",
                   help="print the public key and the signature as JSON")


def take_action(args: argparse.Namespace) -> int:
    return run(args.key, as_json=args.json)


def run(key_file: str, *, as_json: bool = False) -> int:
    from farm_client.refstack_upload import KeyProblem, SigningKey

    try:
        key = SigningKey.load(key_file)
    except KeyProblem as exc:
        print(f"farm: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(dumps({"public_key": key.public_line, "self_signature": key.self_signature(),
                     "fingerprint": key.fingerprint}))
        return 0
    print("# Add this key to your RefStack profile (Profile > Import public key):")
    print(f"public key:\n{key.public_line}\n")
    print(f"signature:\n{key.self_signature()}\n")
    print(f"# fingerprint {key.fingerprint}")
    return 0
