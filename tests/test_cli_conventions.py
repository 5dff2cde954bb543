"""The three command lines keep one set of conventions: every subcommand has a description
that ends with its exit codes, every argument has help, the same options have the same
names, and a missing command is answered with the list of commands."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm_client.cli import build_parser as farm_parser
from farm_server.cli import build_parser as server_parser
from farm_worker.cli import build_parser as worker_parser

PARSERS = {"farm": farm_parser, "farm-server": server_parser, "farm-worker": worker_parser}


def commands(parser: argparse.ArgumentParser, name: str
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield f"{name} {sub_name}", sub
                yield from commands(sub, f"{name} {sub_name}")


@pytest.mark.parametrize("prog", PARSERS)
def test_every_command_is_described_with_its_exit_codes(prog: str) -> None:
    found = list(commands(PARSERS[prog](), prog))
    assert found
    missing = [name for name, p in found
               if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)
               and "exit:" not in (p.description or "")]
    assert missing == []


@pytest.mark.parametrize("prog", PARSERS)
def test_every_argument_has_help(prog: str) -> None:
    bare = [f"{name}: {a.dest}" for name, p in commands(PARSERS[prog](), prog)
            for a in p._actions
            if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert bare == []


@pytest.mark.parametrize("prog", PARSERS)
def test_the_shared_options(prog: str) -> None:
    for name, p in commands(PARSERS[prog](), prog):
        if any(isinstance(a, argparse._SubParsersAction) for a in p._actions):
            continue
        flags = {s for a in p._actions for s in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet", "--debug"} <= flags, name
        if name != "farm refstack-key":  # it reads a key file, nothing else
            assert "-c" in flags, name
        for a in p._actions:
            if "--gearman" in a.option_strings:
                assert a.metavar == "HOST[:PORT]", name


def test_refstack_key_takes_no_farm_flags() -> None:
    (p,) = [p for name, p in commands(farm_parser(), "farm") if name == "farm refstack-key"]
    flags = {s for a in p._actions for s in a.option_strings}
    assert not flags & {"--gearman", "--server", "--token", "--direct", "-c"}


def test_cache_list_takes_no_verify_flags() -> None:
    (p,) = [p for name, p in commands(worker_parser(), "farm-worker")
            if name == "farm-worker cache list"]
    flags = {s for a in p._actions for s in a.option_strings}
    assert not flags & {"--repair", "--quick", "--dry-run"}


@pytest.mark.parametrize(("argv", "prog"), [
    (["farm-worker", "cache", "list", "--x"], "farm-worker cache list"),
    (["farm", "status", "t-1", "--x"], "farm status"),
    (["farm-server", "workers", "--x"], "farm-server workers"),
])
def test_an_unknown_argument_is_the_commands_error(argv: list[str], prog: str) -> None:
    binary = str(Path(sys.executable).parent / argv[0])
    proc = subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"{prog}: unrecognized arguments: --x (see {prog} --help)\n"
