"""The `farm` commands, one module each (as stestr's are): `NAME`, `HELP`, `DESCRIPTION`,
`register(parser)` adding its arguments, `take_action(args)` for the CLI, and `run(...)`
taking plain arguments and returning the exit code, for use as a library; `LOCATED =
False` for a command that talks to no farm (it gets no -c/--gearman/--server flags)."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

from farm_client.commands import (
    cancel,
    compare,
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
from farm_worker import clikit

# in the order `farm --help` lists them
COMMANDS: tuple[ModuleType, ...] = (config, submit, watch, cancel, status, list_, results,
                                    compare, refstack_key, queue, ping)


def add_client_commands(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    located = argparse.ArgumentParser(add_help=False)
    add_location_options(located)
    verbosity = argparse.ArgumentParser(add_help=False)
    clikit.add_verbosity(verbosity)
    for command in COMMANDS:
        # a command that talks to no farm (refstack-key) takes no flags that say where it is
        parents = [located, verbosity] if getattr(command, "LOCATED", True) else [verbosity]
        p: argparse.ArgumentParser = sub.add_parser(
            command.NAME, parents=parents, help=command.HELP,
            description=command.DESCRIPTION, formatter_class=formatter)
        command.register(p)
        p.set_defaults(func=command.take_action)
