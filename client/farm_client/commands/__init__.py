"""The `farm` commands, one module each (as stestr's are): `NAME`, `HELP`, `DESCRIPTION`,
`register(parser)` adding its arguments, `take_action(args)` for the CLI, and `run(...)`
taking plain arguments and returning the exit code, for use as a library."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

from farm_client.commands import (
    cancel,
    config,
    ping,
    queue,
    refstack_key,
    results,
    status,
    submit,
    watch,
)
from farm_client.commands import list as list_
from farm_client.commands.common import add_location_options

# in the order `farm --help` lists them
COMMANDS: tuple[ModuleType, ...] = (config, submit, watch, cancel, status, list_, results,
                                    refstack_key, queue, ping)


def add_client_commands(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    located = argparse.ArgumentParser(add_help=False)
    add_location_options(located)
    for command in COMMANDS:
        p: argparse.ArgumentParser = sub.add_parser(
            command.NAME, parents=[located], help=command.HELP,
            description=command.DESCRIPTION, formatter_class=formatter)
        command.register(p)
        p.set_defaults(func=command.take_action)
