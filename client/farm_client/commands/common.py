"""What every `farm` command shares: where the farm is (flags over refstack.cfg), argument
types, JSON output. Light to import, as every command module is at its top: `farm --help`
builds every command's parser, so what a command needs to run (gear, requests, rich,
jinja2) is imported when it runs (following.py has the watch loop)."""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING, Any

from farm_client.exceptions import FarmClientError
from farm_worker.protocol import STATE_VALUES, TEST_ID_PATTERN, VERSION_PATTERN

if TYPE_CHECKING:
    from farm_client.config import ClientConfig
    from farm_client.farm import Farm

STATES = STATE_VALUES


class UsageError(FarmClientError):
    """A flag or a file given on the command line is invalid."""


def add_location_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("where the farm is (flag > FARM_* environment > "
                                  "refstack.cfg > default)")
    g.add_argument("-c", "--config", metavar="FILE",
                   help="refstack.cfg (default: $FARM_CONFIG, else the first of "
                        "./refstack.cfg, ~/.config/refstack-farm/refstack.cfg, "
                        "/etc/refstack-farm/refstack.cfg, /etc/refstack/refstack.cfg)")
    g.add_argument("--gearman", action="append", metavar="HOST[:PORT]",
                   help="gearmand (repeat for several; GEARMAN_SERVER)")
    g.add_argument("--server", metavar="URL", help="the status server (FARM_SERVER_URL)")
    g.add_argument("--token", help="API token for the status server (FARM_TOKEN; prefer "
                                   "the environment or the file: flags show in ps)")
    g.add_argument("--direct", action="store_true",
                   help="talk to gearmand even when a status server is configured")


def dumps(doc: Any) -> str:
    """JSON as every command prints it."""
    return json.dumps(doc, indent=1, sort_keys=True)


def client_config(args: argparse.Namespace) -> ClientConfig:
    from farm_client.config import load_client_config

    flags = {"GEARMAN_SERVER": ",".join(args.gearman) if args.gearman else None,
             "FARM_SERVER_URL": "" if args.direct else args.server,
             "FARM_TOKEN": args.token, "REFSTACK_URL": getattr(args, "refstack", None)}
    return load_client_config(args.config, flags=flags)


def farm_of(args: argparse.Namespace) -> Farm:
    from farm_client.farm import open_farm

    return open_farm(client_config(args))


# ---- argument types ---------------------------------------------------------------------------
def test_id_arg(value: str) -> str:
    if not re.match(TEST_ID_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a test id ({TEST_ID_PATTERN})")
    return value


def version_arg(value: str) -> str:
    if not re.match(VERSION_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an exact Tempest version "
                                         "(e.g. 47.0.0)")
    return value


def seconds_arg(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return int(value)


def state_arg(value: str) -> str:
    for v in value.split(","):
        if v not in STATES:
            raise argparse.ArgumentTypeError(f"{v!r} is not a state ({', '.join(STATES)})")
    return value
