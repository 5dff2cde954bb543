"""`farm-server`: run the status server (serve, monitor) and administer it (init-db,
add-worker, add-user, workers). The only module of the server that exits the process."""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from farm_client.exceptions import FarmClientError
from farm_client.gearman_client import Gearman
from farm_server import __version__
from farm_server.config import ServerConfig, load_server_config
from farm_server.exceptions import FarmServerError
from farm_server.store import Store
from farm_worker import clikit
from farm_worker.exceptions import PayloadError

log = logging.getLogger("farm_server")

DESCRIPTION = """\
refstack-farm's status server: it queues tests on gearmand, takes the workers' reports
and results (the RefStack contract), serves the v1 API and uploads results to RefStack.

Every command reads server.yaml: each setting from its flag, else FARM_SERVER_<KEY> in the
environment, else the file (-c, else $FARM_SERVER_CONFIG, else
/etc/refstack-farm/server.yaml), else the default."""

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("gear", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _config(args: argparse.Namespace, **overrides: Any) -> ServerConfig:
    level = clikit.log_level(args, default="")
    flags = {"database_url": getattr(args, "database_url", None),
             "gearman_servers": getattr(args, "gearman", None),
             "log_level": level or None, **overrides}
    config = load_server_config(args.config, overrides=flags)
    setup_logging(config.log_level)
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    from farm_server import metrics, metricsdir
    from farm_server.app import create_app

    config = _config(args, listen=args.listen, processes=args.processes,
                     monitor=False if args.no_monitor else None)
    create_app(config)  # fail here, with a clear message, before forking anything
    check_listen(config.listen)
    # every process (gunicorn's and the monitor) counts into one directory: a scrape of
    # any of them adds them up; a new one each start (the counters start again); those
    # that killed servers left behind are removed by the next start (metricsdir.py)
    with metricsdir.serve_dir() as metrics_dir:
        os.environ[metrics.MULTIPROC_ENV] = str(metrics_dir)
        return _serve(args, config)


def _serve(args: argparse.Namespace, config: ServerConfig) -> int:
    """gunicorn, and the monitor beside it, until a signal stops them."""
    from gunicorn.app.base import BaseApplication

    from farm_server import metrics
    from farm_server.app import create_app

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", config.listen)
            # gthread workers: a live page's open stream holds a thread, not a process,
            # and at most live_streams of each process's threads (farm_server/dashboard/
            # live.py); the reports' throughput with 50 live pages: bench/dashboard.py
            self.cfg.set("workers", config.serve_processes())
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", config.threads)
            # no keep-alive (as the sync workers): the workers, the module and `farm`
            # poll at intervals near gunicorn's 2 s keep-alive and raced its close of an
            # idle connection ("connection reset by peer", the deployment test on CI)
            self.cfg.set("keepalive", 0)
            self.cfg.set("accesslog", "-" if args.access_log else None)
            self.cfg.set("errorlog", "-")
            self.cfg.set("loglevel", config.log_level.lower())
            self.cfg.set("proc_name", "farm-serve")
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("child_exit", lambda _arbiter, worker:
                         metrics.mark_process_dead(worker.pid))
            self.cfg.set("post_worker_init", _end_streams_on_term)

        def load(self) -> Any:
            return create_app(config)

    monitor = None
    if config.monitor:
        argv = [sys.executable, "-m", "farm_server.cli", "monitor"]
        if args.config:
            argv += ["-c", args.config]
        if args.database_url:
            argv += ["--database-url", args.database_url]
        for server in args.gearman or []:
            argv += ["--gearman", server]
        monitor = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                   env={**os.environ, PARENT_ENV: str(os.getpid())})
    try:
        _Gunicorn().run()
    finally:
        if monitor is not None:
            monitor.terminate()
            try:
                monitor.wait(15)
            except subprocess.TimeoutExpired:
                monitor.kill()
                monitor.wait()
    return 0


PR_SET_PDEATHSIG = 1  # prctl(2)
PARENT_ENV = "FARM_SERVE_PID"  # set by `serve` for the monitor it starts


def _end_with_parent() -> None:
    """In the monitor `serve` started: SIGTERM when `serve` dies, even by kill -9
    (gunicorn's workers see their parent change and stop on their own), so that no
    monitor of a server that is gone runs on, orphaned."""
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent.isdigit():
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # it died before the line above
        raise SystemExit(f"monitor: farm-server serve ({parent}) is gone")


def _end_streams_on_term(_worker: Any) -> None:
    """In a gunicorn worker: SIGTERM (and SIGQUIT) end the live pages' streams at once,
    then gunicorn's own handler stops the worker gracefully."""
    from farm_server.dashboard.live import CLOSING

    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            CLOSING.set()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)


def check_listen(listen: str) -> None:
    """Bind the address once before gunicorn does: a busy port is one line, not gunicorn
    retrying for seconds."""
    import errno
    import socket

    host, _, port = listen.rpartition(":")
    try:  # no host: every address (AI_PASSIVE), as gunicorn binds ":PORT"
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port),
                                   type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, ValueError) as exc:
        raise FarmServerError(f"listen: {listen!r} is not HOST:PORT ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            why = ("the address is in use (another farm-server, or another program)"
                   if exc.errno == errno.EADDRINUSE else exc.strerror)
            raise FarmServerError(f"listen {listen}: {why}") from None


def cmd_health(args: argparse.Namespace) -> int:
    import time

    import requests

    config = _config(args)
    host, _, port = config.listen.rpartition(":")
    host = host.strip("[]")
    try:  # a server listening on every address is asked on loopback
        if not host or ipaddress.ip_address(host).is_unspecified:
            host = "::1" if ":" in host else "127.0.0.1"
    except ValueError:
        pass  # a host name
    url = (f"http://{f'[{host}]' if ':' in host else host}:{port}/health/"
           f"{'ready' if args.ready else 'live'}")
    end = time.monotonic() + args.wait
    while True:
        try:
            answer = requests.get(url, timeout=5)
            why = answer.text.strip()
            if answer.status_code == 200:
                print(why)
                return 0
        except requests.RequestException as exc:
            why = f"{url}: {exc.__class__.__name__}"
        if time.monotonic() >= end:
            print(why)
            return 1
        time.sleep(0.5)


def cmd_monitor(args: argparse.Namespace) -> int:
    from farm_client.refstack_upload import SigningKey
    from farm_server import metrics, metricsdir
    from farm_server.monitor import Monitor
    from farm_server.uploader import UPLOAD_INTERVAL_S, Uploader

    _end_with_parent()
    config = _config(args)
    multiproc = os.environ.get(metrics.MULTIPROC_ENV)
    if multiproc and not args.once:
        metricsdir.hold(Path(multiproc))  # the directory stays while this process runs
    store = Store(config.database_url)
    gearman = Gearman(config.gearman_servers)
    monitor = Monitor(store, gearman, config.stale_after_s, config.callback_url)
    uploader = Uploader(store, SigningKey.load(config.refstack_key_file)
                        if config.refstack_key_file else None,
                        attempts=config.refstack_upload_attempts,
                        retry_s=config.refstack_retry_s)
    if args.once:
        for line in monitor.run_once() + uploader.run_once():
            print(line)
        gearman.close()
        return 0

    def stop(_signum: int, _frame: Any) -> None:
        monitor.stop()
        uploader.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("monitor: every %.0f s, stale after %.0f s", config.monitor_interval_s,
             config.stale_after_s)
    uploader.start(UPLOAD_INTERVAL_S)
    monitor.run_forever(config.monitor_interval_s)
    gearman.close()
    return 0


def cmd_init_db(args: argparse.Namespace) -> int:
    config = _config(args)
    store = Store(config.database_url)
    before = store.revision()
    store.migrate()
    after = store.revision()
    print(f"{_safe_url(config.database_url)}: schema {before or 'none'} -> {after}"
          if before != after else f"{_safe_url(config.database_url)}: schema {after}, "
                                  "up to date")
    return 0


def _safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)


def _name(value: str) -> str:
    if not re.match(NAME_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a name ({NAME_PATTERN})")
    return value


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an address or network "
                                         "(e.g. 10.0.0.0/24)") from None


def cmd_add_worker(args: argparse.Namespace) -> int:
    config = _config(args)
    token = Store(config.database_url).add_worker(args.name, args.allow or [])
    print(token)
    print(f"worker {args.name}: give it this token (worker.yaml callbacks[].token); "
          "it is not stored and cannot be shown again", file=sys.stderr)
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    config = _config(args)
    token = Store(config.database_url).add_user(args.name)
    print(token)
    print(f"user {args.name}: this token is not stored and cannot be shown again",
          file=sys.stderr)
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    config = _config(args)
    rows = [{"name": w.name, "allow": json.loads(w.allow_json),
             "last_seen_at": w.last_seen_at.isoformat() if w.last_seen_at else None}
            for w in Store(config.database_url).workers()]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['name']:<24} {','.join(r['allow']) or 'any address':<24} "
                  f"last seen {r['last_seen_at'] or 'never'}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    config = _config(args)
    rows = [{"name": u.name, "created_at": u.created_at.isoformat() if u.created_at else None}
            for u in Store(config.database_url).users()]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['name']:<24} created {r['created_at']}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    config = _config(args)
    Store(config.database_url).revoke(args.kind, args.name)
    print(f"{args.kind} {args.name}: token revoked (refused at once)", file=sys.stderr)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    config = _config(args)
    token = Store(config.database_url).rotate(args.kind, args.name)
    print(token)
    print(f"{args.kind} {args.name}: the old token is refused from now on; this one is not "
          "stored and cannot be shown again", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = clikit.Parser(prog="farm-server", description=DESCRIPTION,
                           epilog=clikit.EXIT_TABLE,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"farm-server {__version__}")
    common = clikit.Parser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", help="server.yaml")
    common.add_argument("--database-url", metavar="URL",
                        help="sqlite:///PATH or postgresql+psycopg://... (config: database_url)")
    common.add_argument("--gearman", action="append", metavar="HOST[:PORT]",
                        help="gearmand (repeat for several; config: gearman_servers)")
    clikit.add_verbosity(common)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, description: str, exits: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_,
                              description=f"{textwrap.fill(description, 88)}\n\nexit: {exits}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("serve", "run the status server (gunicorn)",
                "Serve the RefStack contract and the v1 API under gunicorn on --listen, with "
                "the monitor beside it (unless --no-monitor). The port is checked first.",
                "0 stopped, 2 a config, schema or port problem")
    p.add_argument("--listen", metavar="HOST:PORT", help="config: listen")
    p.add_argument("--processes", type=int, metavar="N", help="gunicorn worker processes")
    p.add_argument("--no-monitor", action="store_true",
                   help="do not start the monitor (run `farm-server monitor` elsewhere)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)

    p = command("monitor", "reconcile the store with gearmand (lost and stale jobs)",
                "Reconcile the store with gearmand: tests whose job was lost, stale running "
                "tests, due uploads to RefStack; every monitor_interval_s, or once.",
                "0, 2 error")
    p.add_argument("--once", action="store_true", help="one pass, print what it did")
    p.set_defaults(func=cmd_monitor)

    p = command("init-db", "create or upgrade the database schema (keeps data)",
                "Create the schema, or upgrade it to the newest revision; data is kept.",
                "0, 2 the database cannot be reached or refused")
    p.set_defaults(func=cmd_init_db)

    p = command("add-worker", "register a testing host; prints its token once",
                "Register a testing host and print its token (stored hashed: it cannot be "
                "shown again; `rotate worker NAME` makes a new one).", "0, 2 the name exists")
    p.add_argument("name", type=_name, metavar="NAME", help="the host's name (A-Za-z0-9._-)")
    p.add_argument("--allow", action="append", type=_cidr, metavar="CIDR",
                   help="networks it may report from (repeat; default: anywhere)")
    p.set_defaults(func=cmd_add_worker)

    p = command("add-user", "register an API user; prints the token once",
                "Register an API user and print the token (stored hashed; shown once).",
                "0, 2 the name exists")
    p.add_argument("name", type=_name, metavar="NAME", help="the user's name (A-Za-z0-9._-)")
    p.set_defaults(func=cmd_add_user)

    p = command("workers", "list the testing hosts",
                "List the testing hosts: name, the networks they may report from, when last "
                "seen.", "0, 2 error")
    p.add_argument("--json", action="store_true",
                   help="print them as JSON: name, allowed networks, last seen")
    p.set_defaults(func=cmd_workers)

    p = command("users", "list the API users", "List the API users and when each was added.",
                "0, 2 error")
    p.add_argument("--json", action="store_true", help="print them as JSON: name, created")
    p.set_defaults(func=cmd_users)

    for name, func, what in (("revoke", cmd_revoke, "Remove a user or a testing host: its "
                              "token is refused at once, by every server process."),
                             ("rotate", cmd_rotate, "Give a user or a testing host a new "
                              "token, printed once; the old one is refused at once.")):
        p = command(name, f"{name} the token of a user or a testing host", what,
                    "0, 2 no such user or worker")
        p.add_argument("kind", choices=["user", "worker"], help="user or worker")
        p.add_argument("name", type=_name, metavar="NAME", help="its name")
        p.set_defaults(func=func)

    p = command("health", "ask the running server's /health/live or /health/ready",
                "Ask the server on `listen` (its own host) whether it is live, or with "
                "--ready ready (its database and a gearmand answer), waiting up to --wait "
                "seconds for it; prints its answer. The systemd unit runs it after a start.",
                "0 live (ready), 1 not within --wait, 2 a config problem")
    p.add_argument("--ready", action="store_true", help="ask /health/ready")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="keep asking for up to S seconds (default: once)")
    p.set_defaults(func=cmd_health)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = clikit.parse(build_parser(), argv)
    prog = f"farm-server {args.command}"
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args))
    except (FarmServerError, FarmClientError, PayloadError, SQLAlchemyError, OSError) as exc:
        return clikit.fail(prog, exc, as_json=as_json, debug=args.debug)
    except KeyboardInterrupt:
        return clikit.fail(prog, KeyboardInterrupt("interrupted"), as_json=as_json,
                           code=clikit.EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
