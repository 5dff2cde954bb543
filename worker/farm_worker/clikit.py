"""What the three command lines (`farm`, `farm-server`, `farm-worker`) share: one table of
exit codes, errors as one line (a JSON object under --json), the verbosity flags, and a
parser that names its commands when none is given."""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_OK = 0  # done; a run that passed
EXIT_NO = 1  # the answer is no: a run that failed, an unknown test, nothing to cancel
EXIT_ERROR = 2  # could not: a run that ended error/timed_out/rejected, a usage or
# config error, a refusal, a server that does not answer
EXIT_CANCELLED = 3
EXIT_INTERRUPTED = 130

EXIT_TABLE = ("exit codes: 0 ok or passed; 1 failed, unknown test or nothing to do; 2 error "
              "(run error, timed_out or rejected; bad usage or config; refused; no answer); "
              "3 cancelled; 130 interrupted")

_ARGUMENT = re.compile(r"^argument ([^:]+): (.*)$", re.S)


def wants_json(argv: Sequence[str] | None) -> bool:
    """Whether errors should be JSON: --json is on the command line."""
    return "--json" in (sys.argv[1:] if argv is None else argv)


def error_line(prog: str, message: str, field: str | None, as_json: bool) -> str:
    message = message.strip().splitlines()[0] if message.strip() else "failed"
    if as_json:
        return json.dumps({"error": message, "field": field or None}, sort_keys=True)
    return f"{prog}: {message}"


def fail(prog: str, exc: BaseException, *, as_json: bool, debug: bool = False,
         code: int = EXIT_ERROR) -> int:
    """Report `exc` as one line on stderr (a JSON object on stdout under --json, where a
    script reads the result); its traceback too with --debug. Returns `code`."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    line = error_line(prog, str(exc), getattr(exc, "field", None), as_json)
    print(line, file=sys.stdout if as_json else sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at the help; when a command is missing
    it lists the commands; under --json the error is a JSON object on stdout."""

    json_errors = False  # set by main() before parsing; shared by the subparsers

    def error(self, message: str) -> NoReturn:
        name, commands = self._commands()
        field: str | None
        if commands and message.endswith(f"required: {name}"):
            message = f"{name.lower()} is required: " + ", ".join(commands)
            field = name
        else:
            m = _ARGUMENT.match(message)
            field = m.group(1).split("/")[0] if m else None
            if message.startswith("the following arguments are required: "):
                field = message.rsplit(": ", 1)[1].split(",")[0].strip()
            if field and not field.startswith("-"):  # a positional, as its metavar
                field = field.lower()
        if Parser.json_errors:
            print(error_line(self.prog, message, field, True))
        else:
            print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_ERROR)

    def _commands(self) -> tuple[str, list[str]]:
        """The name of this parser's command argument, and the commands."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return str(action.metavar or action.dest), list(action.choices)
        return "", []


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="say more: -v logs at INFO, -vv at DEBUG")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="only errors and the result: no progress, no warnings")
    g.add_argument("--debug", action="store_true",
                   help="log at DEBUG and print the traceback of an error")


def log_level(args: argparse.Namespace, default: str = "WARNING") -> str:
    """The level the verbosity flags ask for; `default` without any."""
    if getattr(args, "debug", False) or getattr(args, "verbose", 0) >= 2:
        return "DEBUG"
    if getattr(args, "verbose", 0) == 1:
        return "INFO"
    if getattr(args, "quiet", False):
        return "ERROR"
    return default


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> Any:
    """The arguments; an argument no parser knows is an error of the command it was given
    to (`farm-worker cache list: unrecognized arguments: --x`), not of the program."""
    Parser.json_errors = wants_json(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace
               ) -> argparse.ArgumentParser:
    """The parser of the (sub)command `args` chose."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _innermost(action.choices[chosen], args)
    return parser
