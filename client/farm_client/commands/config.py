"""`farm config`: the effective client configuration and where each value came from."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from farm_client.commands.common import client_config, dumps

if TYPE_CHECKING:
    from farm_client.config import ClientConfig

NAME = "config"
HELP = "show the effective client configuration"
DESCRIPTION = ("Print each refstack.cfg key, its effective value and where it came from "
               "(flag, environment, file:line, default), and which file was read. Secrets are "
               "masked.\n\nexit: 0 valid, 2 invalid (the message names the source)")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print {KEY: {value, from}} and the file as JSON")


def take_action(args: argparse.Namespace) -> int:
    return run(client_config(args), as_json=args.json)


def run(config: ClientConfig, *, as_json: bool = False) -> int:
    from farm_client.config import SEARCH_TEXT

    rows = config.describe()
    if as_json:
        print(dumps({**{k: {"value": v, "from": o} for k, v, o in rows},
                     "file": str(config.file) if config.file else None}))
        return 0
    print(f"file: {config.file or '(none found: ' + SEARCH_TEXT + ')'}")
    for key, value, origin in rows:
        print(f"{key:<16} {value:<40} {origin}")
    print("mode: " + (f"through the status server {config.server_url}" if config.uses_server
                      else "straight to gearmand (no FARM_SERVER_URL)"))
    return 0
