"""`farm results`: a run's results (table, JSON, JUnit XML, subunit, HTML), and with
--upload, the run sent to RefStack.

For RefStack the status server builds the document (it holds the subunit stream and the
cloud's cpid), this process signs it with the operator's key (the private key never leaves
this machine), sends it with retries, and tells the server what became of it (`farm
status` shows it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farm_client.commands.common import UsageError, dumps, farm_of, test_id_arg

if TYPE_CHECKING:
    from farm_client.farm import Farm

NAME = "results"
HELP = "a run's results: table, json, junit, subunit, html"
DESCRIPTION = (
    "Print or save a test's results (needs the status server): a table of counts "
    "and each failure with its traceback; JSON; JUnit XML; the raw subunit stream; "
    "or one self-contained HTML page (summary, failures, slowest tests). With "
    "--upload: send the passed tests to a RefStack server, signed with --key "
    "(the status server records the result URL; `farm status` shows it).\n\n"
    "exit: 0, 1 RefStack refused the upload (401 key not registered, 400 "
    "signature or data), 2 RefStack unreachable after --attempts (run it again)")
FORMATS = ("table", "json", "junit", "subunit", "html")
EXIT_UPLOADED, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("test_id", type=test_id_arg, metavar="TEST_ID",
                   help="the test's id (as submit printed it)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default), json, junit, subunit or html")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--conf", action="store_true",
                   help="the tempest.conf the run used (discovered or given), its secrets "
                        "removed: where \"why was this skipped\" starts")
    p.add_argument("--json", action="store_true", help="with --upload: the upload as JSON")
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


def take_action(args: argparse.Namespace) -> int:
    if (args.key or args.cpid) and not args.upload:
        raise UsageError("--key and --cpid go with --upload URL")
    if args.conf and (args.upload or args.format != "table"):
        raise UsageError("--conf: not with --upload or --format")
    farm = farm_of(args)
    try:
        if args.conf:
            return show_conf(farm, args.test_id, args.output)
        if args.upload:
            return upload(farm, args.test_id, args.upload, key_file=args.key, cpid=args.cpid,
                          attempts=args.attempts, as_json=args.json)
        return run(farm, args.test_id, args.format, args.output)
    finally:
        farm.close()


def run(farm: Farm, test_id: str, fmt: str = "table", output: str | None = None) -> int:
    """The results in `fmt`, to `output` (written whole, then renamed) or stdout."""
    from farm_client.console import make_console, outcome_of, print_results, result_rows
    from farm_client.farm import snapshot_of

    if fmt in ("junit", "subunit", "html"):  # html: the server renders the report
        data = farm.results_raw(test_id, fmt)
    else:
        doc = farm.results(test_id)
        if fmt == "json":
            data = (dumps(doc) + "\n").encode()
        else:
            console = make_console(open(output, "w", encoding="utf-8")  # noqa: SIM115
                                   if output else None)
            print_results(console, snapshot_of(doc["test"]), result_rows(doc),
                          doc["test"]["tempest_version"], outcome_of(doc["test"]))
            if output:
                console.file.close()
            return 0
    _write(data, test_id, fmt, output)
    return 0


def conf_text(conf: dict[str, dict[str, str]]) -> str:
    """{section: {key: value}} as tempest.conf text."""
    return "\n".join(f"[{section}]\n" + "".join(f"{key} = {value}\n"
                                               for key, value in values.items())
                     for section, values in conf.items())


def show_conf(farm: Farm, test_id: str, output: str | None = None) -> int:
    """`farm results ID --conf`: the run's tempest.conf, as the server keeps it."""
    conf = farm.test(test_id).get("tempest_conf")
    if not conf:
        print(f"{test_id}: no tempest.conf kept (the run did not get as far as writing one, "
              "or ran before the server kept them)", file=sys.stderr)
        return 1
    _write(conf_text(conf).encode(), test_id, "tempest.conf", output)
    return 0


def _write(data: bytes, test_id: str, what: str, output: str | None) -> None:
    if output:
        tmp = Path(output + ".part")
        tmp.write_bytes(data)
        tmp.replace(output)
        print(f"{test_id}: {what} written to {output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def upload_results(farm: Farm, test_id: str, target: str, *, key_file: str | None = None,
                   cpid: str | None = None, attempts: int = 5,
                   backoff_s: float = 2.0) -> dict[str, Any]:
    """Upload a stored run to the RefStack API `target`; the upload as the server recorded
    it (`state` uploaded or failed, `result_url`, `message`). Raises KeyProblem for an
    unusable key and APIError when the status server cannot give the run."""
    from farm_client.refstack_upload import (
        SigningKey,
        UploadError,
        encode,
        results_endpoint,
    )
    from farm_client.refstack_upload import upload as send

    results_endpoint(target)  # an address that cannot work fails before anything is fetched
    key = SigningKey.load(key_file) if key_file else None
    doc = farm.refstack_document(test_id, cpid)

    def retrying(attempt: int, problem: str, delay: float) -> None:
        print(f"{test_id}: upload attempt {attempt}: {problem}; again in {delay:g} s",
              file=sys.stderr)

    record: dict[str, Any] = {"target": target,
                              "signed_by": key.fingerprint if key else None}
    try:
        done = send(target, encode(doc), key, attempts=attempts, backoff_s=backoff_s,
                      on_retry=retrying)
    except UploadError as exc:
        record.update(state="failed", message=str(exc), attempts=exc.attempts)
        _record(farm, test_id, record)
        raise
    record.update(state="uploaded", result_id=done.result_id, result_url=done.url,
                  attempts=done.attempts)
    return _record(farm, test_id, record)


def _record(farm: Farm, test_id: str, record: dict[str, Any]) -> dict[str, Any]:
    from farm_client.api import APIError

    try:
        return farm.record_upload(test_id, record)
    except APIError as exc:  # the upload itself is what counts; say the record is missing
        print(f"{test_id}: the status server did not record the upload: {exc}",
              file=sys.stderr)
        return record


def upload(farm: Farm, test_id: str, target: str, *, key_file: str | None = None,
           cpid: str | None = None, attempts: int = 5, as_json: bool = False) -> int:
    """`farm results --upload`: send the run to RefStack, say what became of it."""
    from farm_client.refstack_upload import KeyProblem, UploadError

    try:
        done = upload_results(farm, test_id, target, key_file=key_file, cpid=cpid,
                              attempts=attempts)
    except KeyProblem as exc:
        print(f"farm: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except UploadError as exc:
        print(f"{test_id}: not uploaded: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if exc.retryable else EXIT_REFUSED
    if as_json:
        print(dumps(done))
    else:
        signed = f", signed by {done['signed_by']}" if done.get("signed_by") else ", unsigned"
        print(f"{test_id}: uploaded to {target} as {done['result_id']}{signed}: "
              f"{done['result_url']}")
    return EXIT_UPLOADED


def _attempts(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 100:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 1 to 100")
    return number
