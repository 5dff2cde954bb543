"""`farm` commands for people and scripts: config, submit, watch, cancel, status, list,
results, queue, ping. Each returns the process's exit code; cli.py registers them."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from farm_client.api import dumps
from farm_client.config import ClientConfig, load_client_config
from farm_client.console import display_for, make_console, print_results, result_rows
from farm_client.exceptions import FarmClientError
from farm_client.farm import GONE, Farm, Run, Snapshot
from farm_client.farm import open_farm as farm_of
from farm_client.refstack_commands import (
    add_refstack_key_command,
    add_upload_options,
    cmd_upload,
)
from farm_client.reports import html_report
from farm_worker.protocol import (
    EXIT_ERROR,
    TEST_ID_PATTERN,
    VERSION_PATTERN,
    TestState,
    exit_code,
)

EXIT_INTERRUPTED = 130
STATES = [s.value for s in TestState]


class UsageError(FarmClientError):
    """A flag or a file given on the command line is invalid."""


# ---- configuration ----------------------------------------------------------------------------
def client_config(args: argparse.Namespace) -> ClientConfig:
    flags = {"GEARMAN_SERVER": ",".join(args.gearman) if args.gearman else None,
             "FARM_SERVER_URL": "" if args.direct else args.server,
             "FARM_TOKEN": args.token}
    return load_client_config(args.config, flags=flags)


def open_farm(args: argparse.Namespace) -> Farm:
    return farm_of(client_config(args))


def cmd_config(args: argparse.Namespace) -> int:
    config = client_config(args)
    rows = config.describe()
    if args.json:
        print(dumps({k: {"value": v, "from": o} for k, v, o in rows}))
        return 0
    print(f"file: {config.file or '(none found: ./refstack.cfg, /etc/refstack/refstack.cfg)'}")
    for key, value, origin in rows:
        print(f"{key:<16} {value:<40} {origin}")
    print("mode: " + (f"through the status server {config.server_url}" if config.uses_server
                      else "straight to gearmand (no FARM_SERVER_URL)"))
    return 0


# ---- submit -----------------------------------------------------------------------------------
def _load_document(path: str, what: str) -> Any:
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
    if args.regex is not None or args.include or args.exclude:
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


def cmd_submit(args: argparse.Namespace) -> int:
    doc = payload_from_args(args)
    farm = open_farm(args)
    try:
        if not args.wait:
            _announce(args, farm.submit(doc, args.queue_anyway).__dict__)
            return 0
        run = farm.start(doc, args.queue_anyway)
        _announce(args, run.submitted.__dict__)
        return _watch(farm, run.submitted.test_id, run.snapshots, args, run=run)
    finally:
        farm.close()


def _announce(args: argparse.Namespace, submitted: dict[str, Any]) -> None:
    if args.json and not args.wait:
        print(dumps(submitted))
        return
    where = (f"gearmand {submitted['server']}, handle {submitted['handle']}"
             if submitted["via"] == "gearman" else "the status server")
    out = sys.stderr if args.json else sys.stdout
    print(f"{submitted['test_id']} queued on {submitted['function']} via {where}", file=out,
          flush=True)


# ---- watch ------------------------------------------------------------------------------------
def _watch(farm: Farm, test_id: str, snapshots: Iterator[Snapshot], args: argparse.Namespace,
           run: Run | None = None) -> int:
    # with --json, stdout carries the result alone; progress goes to stderr
    display = display_for(sys.stderr if getattr(args, "json", False) else sys.stdout)
    snap: Snapshot | None = None
    # Ctrl-C sets a flag the loop checks at each snapshot (they come at least every half
    # second): a KeyboardInterrupt raised at an arbitrary point could land inside gear or
    # rich and leave them stuck
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: interrupted.set())
    try:
        for snap in snapshots:
            display.update(snap)
            if interrupted.is_set():
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    display.close(snap)
    if interrupted.is_set():
        return _interrupted(farm, test_id, snap, args, run)
    if snap is None:
        return 2
    if snap.state == GONE:
        print(f"{test_id}: left gearmand's queue; without a status server its final state "
              "is not known here", file=sys.stderr)
        return 2
    _final_report(farm, snap, args)
    return snap.exit_code


def _interrupted(farm: Farm, test_id: str, snap: Snapshot | None, args: argparse.Namespace,
                 run: Run | None) -> int:
    if getattr(args, "cancel_on_interrupt", False):
        outcome = farm.cancel(test_id)
        print(f"\n{test_id}: {outcome.message}", file=sys.stderr)
        final = farm.wait(test_id, 60, run)
        if final is None:
            return EXIT_ERROR
        if final.state == GONE:  # out of gearmand's queue after the cancel
            return exit_code(TestState.CANCELLED)
        print(f"{test_id}: {final.state}", file=sys.stderr)
        return final.exit_code
    if run is not None and run.withdrawn_if_left and (
            snap is None or snap.state == TestState.QUEUED.value):
        print(f"\n{test_id}: stopped watching while it was still queued; gearmand withdraws "
              "a waiting foreground job when its client leaves, so it will not run "
              "(submit without --wait, or through a status server, to keep it queued)",
              file=sys.stderr)
    else:
        print(f"\n{test_id}: stopped watching; the run goes on (farm status {test_id}, "
              f"farm cancel {test_id})", file=sys.stderr)
    return EXIT_INTERRUPTED


def _final_report(farm: Farm, snap: Snapshot, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        print(dumps(snap.summary or snap.__dict__))
        return
    doc = farm.final_results(snap)
    tempest = (doc.get("test") or snap.summary or {}).get("tempest_version")
    rows, complete = result_rows(doc) if doc else ([], False)
    print_results(make_console(), snap, rows, complete, tempest)


def cmd_watch(args: argparse.Namespace) -> int:
    farm = open_farm(args)
    try:
        return _watch(farm, args.test_id, farm.watch(args.test_id), args)
    finally:
        farm.close()


# ---- cancel, status, list, results ------------------------------------------------------------
def cmd_cancel(args: argparse.Namespace) -> int:
    farm = open_farm(args)
    try:
        outcome = farm.cancel(args.test_id)
        print(f"{args.test_id}: {outcome.message}")
        if outcome.outcome == "nothing":
            return 1
        if not args.wait:
            return 0
        final = farm.wait(args.test_id, args.timeout)
        if final is None:
            print(f"{args.test_id}: not ended after {args.timeout:g} s", file=sys.stderr)
            return 2
        if final.state == GONE:
            print(f"{args.test_id}: gone from the queue")
            return 0
        print(f"{args.test_id}: {final.state}")
        return 0 if final.state == TestState.CANCELLED.value else 2
    finally:
        farm.close()


def cmd_status(args: argparse.Namespace) -> int:
    farm = open_farm(args)
    try:
        report = farm.report(args.test_id)
    finally:
        farm.close()
    if args.json:
        print(dumps(report.to_json()))
    elif report.stored is not None:
        _print_stored(report.stored)
    else:  # only what gearmand knows while it has the test
        snap = report.snapshot
        where = f" on gearmand {snap.where}" if snap.where else ""
        progress = f" {snap.done}/{snap.total}" if snap.total else ""
        print(f"{snap.test_id}: {snap.state}{progress}{where}"
              + (f"; {snap.message}" if snap.message else ""))
    return 1 if report.snapshot.state == GONE else 0


def _print_stored(doc: dict[str, Any]) -> None:
    """A test the status server keeps: its state, progress, uploads and history."""
    t = doc["test"]
    p, s = t["progress"], t["summary"]
    print(f"{t['id']}: {t['state']}  tempest {t['tempest_version']}  "
          f"worker {t['worker'] or '-'}")
    if p["total"]:
        print(f"progress {p['done']}/{p['total']}  passed {s['passed']} failed "
              f"{s['failed']} skipped {s['skipped']}  current {p['current'] or '-'}")
    if t["message"]:
        print(f"message: {t['message']}")
    if t.get("cpid"):
        print(f"cpid: {t['cpid']}")
    for u in doc.get("uploads", []):
        where = u["result_url"] or u["message"]
        print(f"refstack upload ({u['source']}) to {u['target']}: {u['state']}, "
              f"{u['attempts']} attempt(s){': ' + where if where else ''}")
    for h in doc["history"]:
        print(f"  {h['at']}  {h['state']:<11} {h['source']:<8} {h['worker'] or '':<12} "
              f"{h['message'] or ''}")


def cmd_list(args: argparse.Namespace) -> int:
    farm = open_farm(args)
    try:
        doc = farm.tests(args.state or None, args.version, args.limit)
    finally:
        farm.close()
    if args.json:
        print(dumps(doc))
        return 0
    table = Table(title=f"{len(doc['tests'])} of {doc['total']} tests", title_justify="left")
    for column in ("test id", "state", "tempest", "progress", "passed", "failed",
                   "skipped", "worker", "created"):
        table.add_column(column)
    for t in doc["tests"]:
        p, s = t["progress"], t["summary"]
        table.add_row(t["id"], t["state"], t["tempest_version"],
                      f"{p['done']}/{p['total']}" if p["total"] else "",
                      str(s["passed"] or 0), str(s["failed"] or 0), str(s["skipped"] or 0),
                      t["worker"] or "", (t["created_at"] or "").replace("T", " ")[:19])
    make_console().print(table)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    if (args.key or args.cpid) and not args.upload:
        raise UsageError("--key and --cpid go with --upload URL")
    farm = open_farm(args)
    try:
        if args.upload:
            return cmd_upload(args, farm)
        if args.format in ("junit", "subunit"):
            data = farm.results_raw(args.test_id, args.format)
        else:
            doc = farm.results(args.test_id)
            if args.format == "json":
                data = (dumps(doc) + "\n").encode()
            elif args.format == "html":
                data = html_report(doc["test"], doc["results"]).encode()
            else:
                console = make_console(open(args.output, "w", encoding="utf-8")  # noqa: SIM115
                                       if args.output else None)
                snap = Snapshot(doc["test"]["id"], doc["test"]["state"],
                                worker=doc["test"]["worker"], message=doc["test"]["message"])
                rows, complete = result_rows(doc)
                print_results(console, snap, rows, complete, doc["test"]["tempest_version"])
                if args.output:
                    console.file.close()
                return 0
    finally:
        farm.close()
    if args.output:
        tmp = Path(args.output + ".part")
        tmp.write_bytes(data)
        tmp.replace(args.output)
        print(f"{args.test_id}: {args.format} written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


# ---- the pool ---------------------------------------------------------------------------------
def cmd_queue(args: argparse.Namespace) -> int:
    farm = open_farm(args)
    try:
        servers = farm.queue()
    finally:
        farm.close()
    if args.json:
        print(dumps({"servers": servers}))
        return 0
    console = make_console()
    for s in servers:
        if not s["reachable"]:
            console.print(f"[bold]gearmand {s['server']}[/]: [red]unreachable[/] "
                          f"({s.get('error', '')})", highlight=False)
            continue
        table = Table(title=f"gearmand {s['server']}", title_justify="left")
        for column in ("function", "queued", "running", "workers"):
            table.add_column(column, justify="left" if column == "function" else "right")
        for f in sorted(s["functions"], key=lambda f: f["name"]):
            if f["name"].startswith(("farm:ping", "tempest:cancel:")):
                continue
            table.add_row(f["name"], str(f["queued"] - f["running"]), str(f["running"]),
                          str(f["workers"]))
        console.print(table)
        names = sorted({w["client_id"] for w in s["workers"]
                        if not w["client_id"].endswith(".control")})
        console.print(f"workers: {', '.join(names) or 'none'}", highlight=False)
    return 0 if any(s["reachable"] for s in servers) else 2


def cmd_ping(args: argparse.Namespace) -> int:
    farm = open_farm(args)
    try:
        answers = farm.ping(args.timeout)
    finally:
        farm.close()
    if args.json:
        print(dumps([a.__dict__ for a in answers]))
    elif not answers:
        print("no farm worker is registered on any reachable gearmand")
    for a in answers if not args.json else []:
        if a.error:
            print(f"{a.worker:<20} {'-':>9}  {a.error}")
            continue
        busy = a.answer.get("busy")
        print(f"{a.worker:<20} {a.rtt_ms:7.2f} ms  tempest "
              f"{','.join(a.answer.get('versions', [])) or '-'}  "
              f"{'busy with ' + busy if busy else 'idle'}"
              + ("  draining" if a.answer.get("draining") else ""))
    return 0 if answers and all(a.error is None for a in answers) else 2


# ---- the parser -------------------------------------------------------------------------------
def _test_id(value: str) -> str:
    import re
    if not re.match(TEST_ID_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a test id ({TEST_ID_PATTERN})")
    return value


def _version(value: str) -> str:
    import re
    if not re.match(VERSION_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an exact Tempest version "
                                         "(e.g. 47.0.0)")
    return value


def _seconds(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return int(value)


def _state(value: str) -> str:
    for v in value.split(","):
        if v not in STATES:
            raise argparse.ArgumentTypeError(f"{v!r} is not a state ({', '.join(STATES)})")
    return value


def add_client_commands(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("where the farm is (flag > FARM_* environment > "
                                  "refstack.cfg > default)")
    g.add_argument("-c", "--config", metavar="FILE",
                   help="refstack.cfg (default: ./refstack.cfg, else "
                        "/etc/refstack/refstack.cfg)")
    g.add_argument("--gearman", action="append", metavar="HOST[:PORT]",
                   help="gearmand (repeat for several; GEARMAN_SERVER)")
    g.add_argument("--server", metavar="URL", help="the status server (FARM_SERVER_URL)")
    g.add_argument("--token", help="API token for the status server (FARM_TOKEN; prefer "
                                   "the environment or the file: flags show in ps)")
    g.add_argument("--direct", action="store_true",
                   help="talk to gearmand even when a status server is configured")

    def add(name: str, func: Any, help_text: str, description: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, parents=[common], help=help_text, description=description,
            formatter_class=formatter)
        p.set_defaults(func=func)
        return p

    p = add("config", cmd_config, "show the effective client configuration",
            "Print each refstack.cfg key, its effective value and where it came from "
            "(flag, environment, file:line, default). Secrets are masked.")
    p.add_argument("--json", action="store_true")

    p = add("submit", cmd_submit, "queue a Tempest run",
            "Queue a Tempest run: through the status server when FARM_SERVER_URL is set "
            "(the conf is kept there and fetched by the worker), else straight to gearmand "
            "with a self-contained payload. Prints the test id and returns at once, unless "
            "--wait. Fails at once, naming the registered versions, when no worker serves "
            "the version (--queue-anyway to queue regardless). A test id runs once.\n\n"
            "exit: 0 queued (or, with --wait, passed), 1 failed, 2 error/timed_out/"
            "rejected or refused, 3 cancelled, 130 stopped watching (the run goes on)")
    p.add_argument("payload", nargs="?", metavar="PAYLOAD",
                   help="a payload file (JSON or YAML, schema 1); flags override its fields")
    p.add_argument("--tempest", type=_version, metavar="VERSION", help="e.g. 47.0.0")
    p.add_argument("--conf", metavar="FILE",
                   help="tempest.conf as JSON or YAML: {section: {option: value}}")
    p.add_argument("--regex", help="select tests by regex (e.g. tempest.api.identity)")
    p.add_argument("--include", metavar="FILE", help="a file of regexes, one per line, to run")
    p.add_argument("--exclude", metavar="FILE", help="a file of regexes, one per line, to skip")
    p.add_argument("--dry-run", action="store_true",
                   help="build the environment and the config, list the tests, run none")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="the run's time limit")
    p.add_argument("--test-id", type=_test_id, metavar="ID", help="default: a new one")
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

    p = add("watch", cmd_watch, "follow a run live until it ends",
            "Follow a test: a progress bar on a terminal (tests done/total, passed/failed/"
            "skipped so far, current test, elapsed, ETA), plain lines otherwise. Ctrl-C stops "
            "watching and leaves the run going, unless --cancel-on-interrupt.\n\n"
            "exit: 0 passed, 1 failed, 2 error/timed_out/rejected, 3 cancelled, 130 "
            "stopped watching")
    p.add_argument("test_id", type=_test_id)
    p.add_argument("--cancel-on-interrupt", action="store_true")
    p.add_argument("--json", action="store_true", help="print the final result as JSON")

    p = add("cancel", cmd_cancel, "cancel a queued or running run",
            "Cancel a test. Queued: it never starts. Running: its worker kills the whole "
            "Tempest process tree, cleans up and reports cancelled. Finished or unknown: "
            "says so and queues nothing.\n\nexit: 0 cancelled or requested, 1 nothing to "
            "cancel, 2 error")
    p.add_argument("test_id", type=_test_id)
    p.add_argument("--wait", action="store_true", help="wait until it has stopped")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="with --wait (default 60)")

    p = add("status", cmd_status, "a run's state, progress and history",
            "Show a test: state, progress and the history of its status reports (from the "
            "status server), or where it stands in gearmand's queue (without one).\n\n"
            "exit: 0 known, 1 unknown")
    p.add_argument("test_id", type=_test_id)
    p.add_argument("--json", action="store_true")

    p = add("list", cmd_list, "list runs (status server)",
            "List tests, newest first (needs the status server).")
    p.add_argument("--state", action="append", type=_state, metavar="STATE",
                   help="only these states (repeat, or comma-separated): " + ", ".join(STATES))
    p.add_argument("--version", type=_version, help="only this Tempest version")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true")

    p = add("results", cmd_results, "a run's results: table, json, junit, subunit, html",
            "Print or save a test's results (needs the status server): a table of counts "
            "and each failure with its traceback; JSON; JUnit XML; the raw subunit stream; "
            "or one self-contained HTML page (summary, failures, slowest tests). With "
            "--upload: send the passed tests to a RefStack server, signed with --key "
            "(the status server records the result URL; `farm status` shows it).\n\n"
            "exit: 0, 1 RefStack refused the upload (401 key not registered, 400 "
            "signature or data), 2 RefStack unreachable after --attempts (run it again)")
    p.add_argument("test_id", type=_test_id)
    p.add_argument("--format", choices=("table", "json", "junit", "subunit", "html"),
                   default="table")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--json", action="store_true", help="with --upload: the upload as JSON")
    add_upload_options(p)
    add_refstack_key_command(add)

    p = add("queue", cmd_queue, "gearmand's queue per server: versions, queued, running",
            "For each gearmand: one row per function (a Tempest version), jobs queued and "
            "running, workers that serve it; and the workers connected. Through the status "
            "server when one is set.\n\nexit: 0, or 2 when no gearmand answers")
    p.add_argument("--json", action="store_true")

    p = add("ping", cmd_ping, "ask every worker for its state; round-trip times",
            "Every worker answers farm:ping:<id> with its versions and current job; prints "
            "the round-trip time of each.\n\nexit: 0 all answered, 2 none registered or "
            "one did not answer")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--json", action="store_true")
