"""`farm-worker`: execute, run, prepare, lock, cache, config. The only module that exits."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from farm_worker import __version__, clikit, locks, outbox_command, redaction
from farm_worker.config import WorkerConfig, load_config
from farm_worker.environments import EnvironmentCache
from farm_worker.exceptions import ConfigError, FarmError, FieldError, PayloadError
from farm_worker.execution import CancelEvent, JobHooks, JobRunner
from farm_worker.isolation import resolve_mode
from farm_worker.protocol import (
    COUNT_KEYS,
    EXIT_ERROR,
    FINAL_STATES,
    ProgressEvent,
    StateEvent,
    Summary,
    TestState,
    exit_code,
    parse_event,
)

log = logging.getLogger("farm_worker")

DESCRIPTION = """\
The refstack-farm worker: runs pinned Tempest versions for gearman jobs.

Each setting comes from its flag, else FARM_WORKER_<KEY> in the environment, else the
config file (-c, else $FARM_WORKER_CONFIG, else /etc/refstack-farm/worker.yaml), else
the default. Exit codes of execute: 0 passed, 1 failed, 2 error/timed_out/rejected or a
usage error, 3 cancelled."""

EXIT_USAGE = EXIT_ERROR
FINAL = frozenset(s.value for s in FINAL_STATES)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(redaction.RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("gear").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))


def _config(args: argparse.Namespace, default_level: str = "", **overrides: Any) -> WorkerConfig:
    flags = {"log_level": getattr(args, "log_level", None)
             or clikit.log_level(args, default=default_level) or None,
             "cache_dir": getattr(args, "cache_dir", None),
             "work_dir": getattr(args, "work_dir", None),
             "index_url": getattr(args, "index_url", None), **overrides}
    config = load_config(args.config, overrides=flags)
    setup_logging(config.log_level)
    return config


def _cache(config: WorkerConfig) -> EnvironmentCache:
    return EnvironmentCache(config.cache_dir, index_url=config.index_url,
                            pinned=config.tempest_versions, max_size=config.cache_max_size)


def _print(obj: Any, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=1, sort_keys=True) if as_json else text)


# ---- commands -------------------------------------------------------------------------------
def read_payload(name: str) -> bytes | dict[str, Any]:
    """The payload file (or - for standard input): JSON as it is (the worker validates
    its bytes), YAML turned into the same document; anything else is refused here."""
    raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    try:
        json.loads(raw)
        return raw
    except ValueError:
        pass
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise PayloadError([FieldError("payload", f"{name} is neither JSON nor YAML{at}")]) \
            from None
    if not isinstance(doc, dict):
        raise PayloadError([FieldError("payload", f"{name} is not a JSON or YAML mapping "
                                                  f"(it holds a {type(doc).__name__})")])
    return doc


def cmd_execute(args: argparse.Namespace) -> int:
    try:
        raw = read_payload(args.payload)
    except PayloadError as exc:  # as the worker would reject it: a summary, exit 2
        summary = Summary(None, TestState.REJECTED, message=str(exc), field=exc.field)
        _print(_execute_json(summary), args.json, _summary_text(summary))
        return exit_code(summary.state)
    # its own lines are the user's view; the worker's log joins with -v or --log-level
    config = _config(args, default_level="ERROR", install_on_demand=True,
                     results_dir=str(Path(args.results_dir).resolve()),
                     preflight=args.preflight)
    runner = JobRunner(config, _cache(config), resolve_mode(config.env_isolation,
                                                              config.work_dir),
                       share_outbox=True, job_flush_s=0)
    cancel = CancelEvent()
    give_up = threading.Event()  # a second signal: do not wait for reports either

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if cancel.is_set():
            give_up.set()
        cancel.cancel(f"interrupted (signal {signum})")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def emit(doc: dict[str, Any]) -> None:
        event = parse_event(doc)
        if isinstance(event, StateEvent):
            if event.state in FINAL:
                return  # the summary says it
            print(f"[{event.test_id}] {event.state}"
                  + (f": {event.message}" if event.message else ""), file=sys.stderr)
        elif isinstance(event, ProgressEvent):
            c = event.counts
            print(f"[{event.test_id}] {c.done}/{c.total} passed {c.passed} failed {c.failed} "
                  f"skipped {c.skipped} {event.current}", file=sys.stderr)

    summary = runner.execute(raw, cancel, JobHooks(emit=emit))
    if owed := runner.courier.owed() if runner.courier else 0:  # the server is away
        print(f"[{summary.test_id}] the callback server does not answer: waiting up to "
              f"{config.report_flush_s:.0f} s for {owed} reports (interrupt again to stop "
              "waiting)", file=sys.stderr)
    outbox = runner.courier.outbox.root if runner.courier else None
    if left := runner.stop_courier(config.report_flush_s, give_up):
        print(f"[{summary.test_id}] {left} reports stay in the outbox {outbox}: "
              "`farm-worker outbox flush` delivers them", file=sys.stderr)
    _print(_execute_json(summary), args.json, _summary_text(summary))
    return exit_code(summary.state)


def _execute_json(summary: Summary) -> dict[str, Any]:
    doc = summary.to_dict()
    keys = ("test_id", "state", *COUNT_KEYS, "not_run", "duration_s", "subunit")
    out = {k: doc[k] for k in keys}
    extra = ("message", "field", "failures", "selection", "compliance", "conf")
    out.update({k: doc[k] for k in extra if doc[k]})
    return out


def _summary_text(s: Summary) -> str:
    if s.state == TestState.REJECTED:
        return (f"test {s.test_id}" if s.test_id else "payload") + f" rejected: {s.message}"
    lines = [f"test {s.test_id}: {s.state.value}" + (f" ({s.message})" if s.message else ""),
             f"  {s.counts.describe()}, in {s.duration_s:.1f} s"]
    if s.subunit:
        lines.append(f"  subunit: {s.subunit}")
    for name in (s.selection or {}).get("not_found", []):
        lines.append(f"  NOT FOUND {name}")
    for f in s.failures:
        lines.append(f"  FAILED {f.test}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from farm_worker.gearman_worker import FarmWorker

    overrides: dict[str, Any] = {"worker_id": args.worker_id}
    if args.gearman:
        overrides["gearman_servers"] = args.gearman
    config = _config(args, **overrides).for_slot(args.slot)
    cache = _cache(config)
    runner = JobRunner(config, cache, resolve_mode(config.env_isolation, config.work_dir))
    runner.start_courier()  # what an earlier process owed goes beside the new jobs
    runner.clean_stale()
    runner.prune_results(config.results_keep_days)
    ready = []
    for version in config.tempest_versions:
        try:
            result = cache.prepare(version)
            ready.append(version)
            log.info("tempest %s ready (%s)", version, result.template)
        except FarmError as exc:
            log.error("tempest %s is not available: %s", version, exc)
    if not ready and not config.install_on_demand:
        raise ConfigError(f"{config.source}: no Tempest version is ready "
                          f"(tempest_versions: {list(config.tempest_versions)}) and "
                          "install_on_demand is off: nothing to serve")
    for removed in cache.prune():
        log.info("cache: removed %s", removed)
    worker = FarmWorker(runner, ready)
    worker.install_signal_handlers()
    worker.connect()
    return worker.serve()


def cmd_prepare(args: argparse.Namespace) -> int:
    config = _config(args)
    cache = _cache(config)
    if args.constraints:
        for version in args.versions:
            locks.compile_lock(version, cache.root / "locks" / locks.lock_name(version),
                               index_url=config.index_url, constraints=Path(args.constraints))
    results = [dataclasses.asdict(cache.prepare(v, force=args.force)) for v in args.versions]
    cache.prune()
    text = "\n".join(f"tempest {r['version']}: {'built' if r['built'] else 'ready'} in "
                     f"{r['seconds']:.1f} s: {r['template']}" for r in results)
    _print(results, args.json, text)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    config = _config(args)
    out = Path(args.output) if args.output else config.cache_dir / "locks" / locks.lock_name(
        args.version)
    exclude_newer = (dt.datetime.fromisoformat(args.exclude_newer).replace(
        tzinfo=dt.UTC) if args.exclude_newer else None)
    lock = locks.compile_lock(args.version, out, index_url=config.index_url,
                              exclude_newer=exclude_newer,
                              constraints=Path(args.constraints) if args.constraints else None)
    _print({"version": lock.version, "lock": str(lock.path), "packages": len(lock.pins),
            "digest": lock.digest}, args.json,
           f"tempest {lock.version}: {len(lock.pins)} packages locked in {lock.path}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    config = _config(args)
    cache = _cache(config)
    if args.cache_command == "list":
        entries = [dataclasses.asdict(e) for e in cache.entries()]
        text = "\n".join(
            f"{e['key']}  {e['size_bytes'] / 2**20:7.1f} MB  "
            f"{'pinned' if e['pinned'] else 'unpinned'}  "
            f"{'template' if e['template'] else 'no template'}"
            for e in entries) or "(empty)"
        _print(entries, args.json, text)
        return 0
    if args.cache_command == "verify":
        problems = cache.verify(deep=not args.quick)
        bad = {k: v for k, v in problems.items() if v}
        if args.repair:
            for key in bad:
                version = key.split("-")[1]
                cache.prepare(version, force=True)
        text = "\n".join(f"{k}: {'ok' if not v else '; '.join(v[:3])}"
                         for k, v in problems.items()) or "(empty)"
        _print(problems, args.json, text)
        return 1 if bad and not args.repair else 0
    removed = cache.prune(dry_run=args.dry_run)
    _print(removed, args.json, "\n".join(removed) or "nothing to remove")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    config = _config(args)
    doc = dataclasses.asdict(config)
    doc["origins"] = {f.name: config.origins.get(f.name, "default")
                      for f in dataclasses.fields(config) if f.name not in ("source", "origins")}
    doc["callbacks"] = [{"url": cb.url, "token": "***" if cb.token else None}
                        for cb in config.callbacks]
    doc["gearman_servers"] = [str(s) for s in config.gearman_servers]
    doc["tempest_defaults"] = {
        section: {k: redaction.MASK if redaction.SECRET_KEY.search(k) else v
                  for k, v in values.items()}
        for section, values in config.tempest_defaults.items()}
    if args.json:
        print(json.dumps(doc, indent=1, default=str))
        return 0
    print(f"file: {config.source}")
    for key, origin in doc["origins"].items():
        value = doc[key]
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        print(f"{key:<18} {text[:60]:<60} {origin}")
    return 0


# ---- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = clikit.Parser(
        prog="farm-worker", description=DESCRIPTION, epilog=clikit.EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"farm-worker {__version__}")
    common = clikit.Parser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", help="worker.yaml")
    common.add_argument("--cache-dir", metavar="DIR", help="environment cache (config: cache_dir)")
    common.add_argument("--work-dir", metavar="DIR", help="per-job directories (config: work_dir)")
    common.add_argument("--index-url", metavar="URL",
                        help="package index for locks and wheelhouses (config: index_url)")
    clikit.add_verbosity(common)
    common.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="the log's level, over -v/-q (config: log_level)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, description: str, exits: str,
                json_help: str | None = None, shared: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common] if shared else [], help=help_,
                           description=f"{description}\n\nexit: {exits}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if json_help:
            p.add_argument("--json", action="store_true", help=json_help)
        return p

    p = command("execute", "run one payload here, without gearman",
                "Run one job's payload (JSON or YAML, the schema farm submit sends) on this "
                "host, with its progress on stderr and its summary on stdout.",
                "0 passed, 1 failed, 2 error, timed_out or rejected, 3 cancelled",
                "print the summary as one JSON object")
    p.add_argument("payload", help="payload file (JSON or YAML), or - for standard input")
    p.add_argument("--results-dir", default=".", metavar="DIR",
                   help="where the subunit file is kept (default: here)")
    p.add_argument("--no-preflight", dest="preflight", action="store_false", default=None,
                   help="run Tempest without checking the conf against the cloud first "
                        "(config: preflight)")
    p.set_defaults(func=cmd_execute)

    p = command("run", "serve jobs from gearmand",
                "Prepare the configured Tempest versions, register them on every gearmand "
                "and run the jobs that come, until SIGTERM (which finishes the current one).",
                "0 stopped, 2 nothing to serve or a config error")
    p.add_argument("--slot", type=int, metavar="N", help="slot number: worker id <id>-<N>")
    p.add_argument("--worker-id", metavar="ID", help="config: worker_id")
    p.add_argument("--gearman", action="append", metavar="HOST[:PORT]",
                   help="gearmand to serve (repeat for several; config: gearman_servers)")
    p.set_defaults(func=cmd_run)

    p = command("prepare", "build the wheelhouse and template of Tempest versions",
                "Lock (if needed), download and build each version's environment template "
                "into the cache; a ready one takes a fraction of a second.",
                "0 ready, 2 a version could not be built",
                "print each version's result as JSON")
    p.add_argument("versions", nargs="+", metavar="VERSION",
                   help="exact Tempest versions, e.g. 47.0.0")
    p.add_argument("--force", action="store_true", help="rebuild even when ready")
    p.add_argument("--constraints", metavar="FILE",
                   help="lock against this constraints file first")
    p.set_defaults(func=cmd_prepare)

    p = command("lock", "resolve a Tempest version's dependency closure into a lock file",
                "Resolve the exact versions and hashes of everything a Tempest release "
                "installs, as of its release date.", "0 locked, 2 could not resolve",
                "print the lock's version, path, package count and digest as JSON")
    p.add_argument("version", metavar="VERSION", help="an exact Tempest version, e.g. 47.0.0")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="lock file (default: the cache's locks/)")
    p.add_argument("--constraints", metavar="FILE", help="resolve against this constraints file")
    p.add_argument("--exclude-newer", metavar="DATE",
                   help="ignore packages uploaded after DATE (default: the release date)")
    p.set_defaults(func=cmd_lock)

    p = command("cache", "list, verify or prune the cache",
                "The environment cache: its entries, their integrity, what pruning removes.",
                "0 done, 1 verify found a broken entry (without --repair), 2 error",
                shared=False)  # the options go after the action: cache list -c FILE
    cache = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    def action(name: str, help_: str, exits: str) -> argparse.ArgumentParser:
        return cache.add_parser(name, parents=[common], help=help_,
                                description=f"{help_}.\n\nexit: {exits}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    c = action("list", "the cached environments: key, size, pinned, template", "0, 2 error")
    c.add_argument("--json", action="store_true", help="print the entries as JSON")
    c = action("verify", "check each template (files and a smoke test)",
               "0 all sound (or repaired), 1 a broken entry, 2 error")
    c.add_argument("--quick", action="store_true", help="files only, no smoke test")
    c.add_argument("--repair", action="store_true", help="rebuild broken templates")
    c.add_argument("--json", action="store_true", help="print the problems per entry as JSON")
    c = action("prune", "remove leftovers and unpinned entries beyond cache_max_size",
               "0, 2 error")
    c.add_argument("--dry-run", action="store_true", help="only say what would go")
    c.add_argument("--json", action="store_true", help="print what is (or would be) removed")
    p.set_defaults(func=cmd_cache)

    outbox_command.add_parser(command("outbox", "what this host's workers owe the status "
                                      "servers: list, flush, drop",
                                      "The durable outbox of each worker id under outbox_dir: "
                                      "status reports and result uploads not yet delivered.",
                                      "0 done, 1 flush left entries, 2 error", shared=False),
                              common, _config)

    p = command("config", "print the effective configuration (secrets masked)",
                "Each setting, its effective value and where it came from (worker.yaml:line, "
                "$FARM_WORKER_<KEY>, --flag or default); secrets are masked.",
                "0 valid, 2 invalid (the message names the source)",
                "print the settings, the file and each origin as JSON")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = clikit.parse(build_parser(), argv)
    prog = f"farm-worker {args.command}"
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args))
    except (FarmError, OSError) as exc:
        exc.args = (redaction.redact(str(exc)),)
        return clikit.fail(prog, exc, as_json=as_json, debug=args.debug, code=EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
