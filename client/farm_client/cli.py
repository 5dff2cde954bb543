"""`farm`: the client commands (config, submit, watch, cancel, ..., one module each in
farm_client/commands/). The only module of the client that exits the process. The status
server has its own command, `farm-server` (farm_server.cli)."""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence

from farm_client import __version__
from farm_client.commands import add_client_commands
from farm_client.exceptions import FarmClientError
from farm_worker import clikit
from farm_worker.exceptions import PayloadError

DESCRIPTION = """\
refstack-farm: queue Tempest runs on a pool of workers through gearman, follow and cancel
them, read their results.

Every command finds the farm in refstack.cfg: GEARMAN_SERVER, GEARMAN_PORT, TEST_METHOD,
FARM_SERVER_URL, FARM_TOKEN; each from its flag, else FARM_<KEY> in the environment, else
the file (-c, else $FARM_CONFIG, else ./refstack.cfg, ~/.config/refstack-farm/refstack.cfg,
/etc/refstack-farm/refstack.cfg, /etc/refstack/refstack.cfg), else the default.
With FARM_SERVER_URL they go through the status server (farm-server), else straight to
gearmand."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps each paragraph of a description on its own; keeps the blank lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n\n" not in text and "\n" in text:  # laid out by hand
            return super()._fill_text(text, width, indent)
        return "\n\n".join(textwrap.fill(par, width, initial_indent=indent,
                                         subsequent_indent=indent)
                           for par in text.split("\n\n"))


def build_parser() -> argparse.ArgumentParser:
    parser = clikit.Parser(prog="farm", description=DESCRIPTION, epilog=clikit.EXIT_TABLE,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"farm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_client_commands(sub, _Formatter)
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "gear"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    args = clikit.parse(build_parser(), argv)
    setup_logging(clikit.log_level(args))
    prog = f"farm {args.command}"
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args))
    except (FarmClientError, PayloadError, OSError) as exc:
        return clikit.fail(prog, exc, as_json=as_json, debug=args.debug)
    except KeyboardInterrupt:
        return clikit.fail(prog, KeyboardInterrupt("interrupted"), as_json=as_json,
                           code=clikit.EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
