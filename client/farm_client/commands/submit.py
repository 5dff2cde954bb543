"""`farm submit`: queue a Tempest run (and, with --wait, follow it to its end)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from farm_client.commands.common import (
    UsageError,
    client_config,
    dumps,
    farm_of,
    seconds_arg,
    test_id_arg,
    version_arg,
)

if TYPE_CHECKING:
    from farm_client.farm import Farm, Submitted

NAME = "submit"
HELP = "queue a Tempest run"
DESCRIPTION = (
    "Queue a Tempest run: through the status server when FARM_SERVER_URL is set "
    "(the conf is kept there and fetched by the worker), else straight to gearmand "
    "with a self-contained payload. Prints the test id and returns at once, unless "
    "--wait. Fails at once, naming the registered versions, when no worker serves "
    "the version (--queue-anyway to queue regardless). A test id runs once.\n\n"
    "exit: 0 queued (or, with --wait, passed), 1 failed, 2 error/timed_out/"
    "rejected or refused, 3 cancelled, 130 stopped watching (the run goes on)")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("payload", nargs="?", metavar="PAYLOAD",
                   help="a payload file (JSON or YAML, schema 1); flags override its fields")
    p.add_argument("--tempest", type=version_arg, metavar="VERSION", help="e.g. 47.0.0")
    p.add_argument("--conf", metavar="FILE",
                   help="tempest.conf as JSON or YAML: {section: {option: value}}")
    p.add_argument("--os-cloud", metavar="NAME",
                   help="take the cloud (auth URL, region, credentials) from clouds.yaml as "
                        "openstacksdk finds it (secure.yaml merged), or from the OS_* "
                        "variables with NAME envvars; --conf overrides it")
    p.add_argument("--os-cloud-account", action="store_true",
                   help="with --os-cloud: its user as a pre-provisioned account (a cloud "
                        "where you are no admin), not as Tempest's admin")
    p.add_argument("--accounts", metavar="FILE",
                   help="Tempest's pre-provisioned accounts (accounts.yaml: a list of "
                        "username, password, project_name, roles, ...), used instead of "
                        "admin credentials; secrets as the conf's")
    p.add_argument("--discover", action="store_true",
                   help="the worker discovers tempest.conf with python-tempestconf (locked "
                        "with the Tempest version) from the cloud's Keystone and the admin "
                        "credentials or the accounts; the rest of --conf overrides what it "
                        "finds")
    p.add_argument("--discover-network", metavar="ID|NAME",
                   help="with --discover: the external network to use (default: the one "
                        "it finds)")
    p.add_argument("--regex", help="select tests by regex (e.g. tempest.api.identity)")
    p.add_argument("--include", metavar="FILE", help="a file of regexes, one per line, to run")
    p.add_argument("--exclude", metavar="FILE", help="a file of regexes, one per line, to skip")
    g = p.add_argument_group(
        "tests by list or interop guideline (instead of --regex/--include/--exclude)")
    g.add_argument("--test-list", metavar="FILE|URL",
                   help="refstack-client's list: a test a line, name[id-<uuid>,...], a test's "
                        "older names as extra lines with its id; matched by name, alias, id")
    g.add_argument("--guideline", metavar="VERSION",
                   help="run an interop guideline (e.g. 2020.06) read from the RefStack API at "
                        "--refstack (REFSTACK_URL); reported per capability")
    g.add_argument("--guideline-file", metavar="FILE|URL",
                   help="the guideline's JSON (interop schema 2.0) instead of RefStack's API")
    g.add_argument("--target", metavar="TARGET",
                   help="platform (default), compute, object, or an add-on: dns, "
                        "orchestration, shared_file_system, load_balancer, key_manager")
    g.add_argument("--type", metavar="STATUSES",
                   help="capability statuses, comma separated (default required; also "
                        "advisory, deprecated, removed)")
    g.add_argument("--include-flagged", action="store_true",
                   help="run the flagged tests too (reported, never required)")
    g.add_argument("--refstack", metavar="URL",
                   help="the RefStack API of --guideline, e.g. https://refstack.openstack.org/api"
                        " (REFSTACK_URL in refstack.cfg, $FARM_REFSTACK_URL)")
    p.add_argument("--dry-run", action="store_true",
                   help="build the environment and the config, list the tests, run none")
    p.add_argument("--timeout", type=seconds_arg, metavar="SECONDS",
                   help="the run's time limit")
    p.add_argument("--test-id", type=test_id_arg, metavar="ID", help="default: a new one")
    p.add_argument("--queue-anyway", action="store_true",
                   help="queue even if no worker serves the version yet")
    p.add_argument("--wait", action="store_true", help="watch it live until it ends")
    p.add_argument("--cancel-on-interrupt", action="store_true",
                   help="with --wait: Ctrl-C cancels the run instead of leaving it running")
    p.add_argument("--upload", metavar="URL",
                   help="status server: upload the results to this RefStack API when the "
                        "run ends passed or failed (signed with the server's key)")
    p.add_argument("--cpid", metavar="CPID",
                   help="status server: the cloud's id for RefStack (default: found by the "
                        "worker in the cloud's Keystone catalog)")
    p.add_argument("--json", action="store_true",
                   help="print the submission (or, with --wait, the result) as JSON")


def take_action(args: argparse.Namespace) -> int:
    doc = payload_from_args(args)
    farm = farm_of(args)
    try:
        return run(farm, doc, queue_anyway=args.queue_anyway, wait=args.wait,
                   cancel_on_interrupt=args.cancel_on_interrupt, as_json=args.json,
                   quiet=args.quiet)
    finally:
        farm.close()


def run(farm: Farm, doc: dict[str, Any], *, queue_anyway: bool = False, wait: bool = False,
        cancel_on_interrupt: bool = False, as_json: bool = False,
        quiet: bool = False) -> int:
    """Queue the payload document `doc`; with `wait`, follow the run to its end."""
    from farm_client.commands.following import follow

    if not wait:
        _announce(farm.submit(doc, queue_anyway), as_json=as_json, quiet=as_json)
        return 0
    started = farm.start(doc, queue_anyway)
    _announce(started.submitted, as_json=False, quiet=as_json)
    return follow(farm, started.submitted.test_id, started.snapshots, as_json=as_json,
                  cancel_on_interrupt=cancel_on_interrupt, run=started, quiet=quiet)


def _announce(submitted: Submitted, *, as_json: bool, quiet: bool) -> None:
    """The submission: as JSON on stdout, or a sentence (on stderr when stdout carries
    the JSON result of a --wait)."""
    if as_json:
        print(dumps(submitted.__dict__))
        return
    where = (f"gearmand {submitted.server}, handle {submitted.handle}"
             if submitted.via == "gearman" else "the status server")
    print(f"{submitted.test_id} queued on {submitted.function} via {where}",
          file=sys.stderr if quiet else sys.stdout, flush=True)


def _load_document(path: str, what: str) -> Any:
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what}: {path}: cannot read: {exc}") from None
    try:
        return json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"{what}: {path}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}"
                         f": {str(exc).splitlines()[0]}") from None


def _load_list(path: str, what: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what}: {path}: cannot read: {exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _listed_tests(args: argparse.Namespace) -> tuple[list[str], dict[str, Any] | None] | None:
    """--test-list, or --guideline/--guideline-file: the list and the guideline block."""
    chosen = [f for f, v in (("--test-list", args.test_list), ("--guideline", args.guideline),
                             ("--guideline-file", args.guideline_file)) if v]
    if len(chosen) > 1:
        raise UsageError(f"{chosen[0]}, {chosen[1]}: give one of --test-list, --guideline and "
                         "--guideline-file")
    if args.refstack and not args.guideline:
        raise UsageError("--refstack: only with --guideline (the RefStack API it reads the "
                         "guideline from)")
    options = [f for f, v in (("--target", args.target), ("--type", args.type),
                              ("--include-flagged", args.include_flagged)) if v]
    if options and not (args.guideline or args.guideline_file):
        raise UsageError(f"{options[0]}: only with --guideline or --guideline-file")
    if not chosen:
        return None
    from farm_client import guidelines as gl

    if args.test_list:
        return gl.parse_test_list(gl.fetch(args.test_list, "--test-list"), args.test_list), None
    args.target = args.target or "platform"
    types = [t.strip() for t in (args.type or "required").split(",") if t.strip()]
    if args.guideline_file:
        source = args.guideline_file
        doc = gl.parse_guideline(gl.fetch(source, "--guideline-file"), source)
        selected = gl.select(doc, args.target, types, args.include_flagged, source)
        return selected.lines, selected.guideline
    refstack = client_config(args).refstack_url
    if not refstack:
        raise UsageError("--guideline: needs the RefStack API to read it from: --refstack URL, "
                         "REFSTACK_URL in refstack.cfg or $FARM_REFSTACK_URL (or give the "
                         "file with --guideline-file)")
    selected, lines = gl.from_refstack(refstack, args.guideline, args.target, types,
                                       args.include_flagged)
    return lines, selected.guideline


def payload_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The payload document: the file (if any), then each flag over it."""
    doc: dict[str, Any] = {}
    if args.payload:
        loaded = _load_document(args.payload, "payload")
        if not isinstance(loaded, dict):
            raise UsageError(f"payload: {args.payload}: the top level must be an object")
        doc = loaded
    if args.tempest:
        doc["tempest"] = {"version": args.tempest}
    if args.conf:
        conf = _load_document(args.conf, "--conf")
        if not isinstance(conf, dict):
            raise UsageError(f"--conf: {args.conf}: must map sections to options, "
                             "e.g. {\"identity\": {\"uri_v3\": ...}}")
        doc["conf"] = conf
    if args.os_cloud_account and not args.os_cloud:
        raise UsageError("--os-cloud-account: only with --os-cloud")
    if args.os_cloud:
        from farm_client.clouds import add_cloud

        doc = add_cloud(doc, args.os_cloud, as_account=args.os_cloud_account)
    if args.accounts:
        if args.os_cloud_account:
            raise UsageError("--accounts: not with --os-cloud-account (which makes the "
                             "cloud's user the account)")
        accounts = _load_document(args.accounts, "--accounts")
        if not isinstance(accounts, list):
            raise UsageError(f"--accounts: {args.accounts}: must be a list of accounts, as "
                             "Tempest's accounts.yaml: [{username: ..., password: ..., "
                             "project_name: ...}]")
        doc["accounts"] = accounts
    if args.discover_network and not args.discover:
        raise UsageError("--discover-network: only with --discover")
    if args.discover:
        discover = dict(doc.get("discover") or {})
        if args.discover_network:
            discover["network_id"] = args.discover_network
        doc["discover"] = discover
    listed = _listed_tests(args)
    if listed is not None:
        lines, guideline = listed
        if args.regex is not None or args.include or args.exclude:
            raise UsageError("--test-list/--guideline: cannot be combined with --regex, "
                             "--include or --exclude: a list names every test it runs")
        doc["tests"] = {"list": lines}
        if guideline is not None:
            doc["guideline"] = guideline
        else:
            doc.pop("guideline", None)
    elif args.regex is not None or args.include or args.exclude:
        tests = dict(doc.get("tests") or {})
        if args.regex is not None:
            tests["regex"] = args.regex
        if args.include:
            tests["include"] = _load_list(args.include, "--include")
        if args.exclude:
            tests["exclude"] = _load_list(args.exclude, "--exclude")
        doc["tests"] = tests
    if args.dry_run:
        doc["dry_run"] = True
    if args.timeout is not None:
        doc["timeout_s"] = args.timeout
    if args.test_id:
        doc["test_id"] = args.test_id
    if args.upload:
        doc["upload_url"] = args.upload
    if args.cpid:
        doc["cpid"] = args.cpid
    if "tempest" not in doc:
        raise UsageError("tempest.version: required: --tempest 47.0.0, or tempest.version "
                         "in the payload file")
    return doc
