"""`farm-server`: run the status server (serve, monitor) and administer it (init-db,
add-worker, add-user, workers). The only module of the server that exits the process."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from farm_client.exceptions import FarmClientError
from farm_client.gearman_client import Gearman
from farm_server import __version__
from farm_server.config import ServerConfig, load_server_config
from farm_server.exceptions import FarmServerError
from farm_server.store import Store
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
    flags = {"database_url": getattr(args, "database_url", None),
             "gearman_servers": getattr(args, "gearman", None), **overrides}
    config = load_server_config(args.config, overrides=flags)
    setup_logging(config.log_level)
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from farm_server.app import create_app

    config = _config(args, listen=args.listen, processes=args.processes,
                     monitor=False if args.no_monitor else None)
    create_app(config)  # fail here, with a clear message, before forking anything

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", config.listen)
            # sync workers: measured faster than gthread here (bench/status_api.py); a
            # slow client holds one process, so production puts a proxy in front (TLS)
            self.cfg.set("workers", config.serve_processes())
            self.cfg.set("worker_class", "sync")
            self.cfg.set("accesslog", "-" if args.access_log else None)
            self.cfg.set("errorlog", "-")
            self.cfg.set("loglevel", config.log_level.lower())
            self.cfg.set("proc_name", "farm-serve")
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1
                self.cfg.set("control_socket_disable", True)

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
        monitor = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
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


def cmd_monitor(args: argparse.Namespace) -> int:
    from farm_client.refstack_upload import SigningKey
    from farm_server.monitor import Monitor
    from farm_server.uploader import UPLOAD_INTERVAL_S, Uploader

    config = _config(args)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="farm-server", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"farm-server {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="server.yaml")
    common.add_argument("--database-url", help="SQLAlchemy URL (config: database_url)")
    common.add_argument("--gearman", action="append", metavar="HOST:PORT",
                        help="gearmand (repeat for several; config: gearman_servers)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run the status server (gunicorn)")
    p.add_argument("--listen", metavar="HOST:PORT", help="config: listen")
    p.add_argument("--processes", type=int, help="gunicorn worker processes")
    p.add_argument("--no-monitor", action="store_true",
                   help="do not start the monitor (run `farm-server monitor` elsewhere)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("monitor", parents=[common],
                       help="reconcile the store with gearmand (lost and stale jobs)")
    p.add_argument("--once", action="store_true", help="one pass, print what it did")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("init-db", parents=[common],
                       help="create or upgrade the database schema (keeps data)")
    p.set_defaults(func=cmd_init_db)
    p = sub.add_parser("add-worker", parents=[common],
                       help="register a testing host; prints its token once")
    p.add_argument("name", type=_name)
    p.add_argument("--allow", action="append", type=_cidr, metavar="CIDR",
                   help="networks it may report from (repeat; default: anywhere)")
    p.set_defaults(func=cmd_add_worker)
    p = sub.add_parser("add-user", parents=[common],
                       help="register an API user; prints the token once")
    p.add_argument("name", type=_name)
    p.set_defaults(func=cmd_add_user)
    p = sub.add_parser("workers", parents=[common], help="list the testing hosts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FarmServerError, FarmClientError, PayloadError, SQLAlchemyError, OSError) as exc:
        print(f"farm-server {args.command}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"farm-server {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
