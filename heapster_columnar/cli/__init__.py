"""Command line: ``heapster-columnar <command>``. One module per command; this one only dispatches.

Exit codes: 0 success, 1 the command ran but some input was rejected (named on stderr),
2 usage or I/O error before any work was done.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from heapster_columnar.cli import bench, decode, demo, report, run, simulate
from heapster_columnar.cli._errors import CommandError

PROG = "heapster-columnar"
COMMANDS = {"bench": bench, "decode": decode, "demo": demo, "report": report, "run": run, "simulate": simulate}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _version() -> str:
    try:
        return version("heapster-columnar")
    except PackageNotFoundError:  # running from a source tree without install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Heapster-style Kubernetes metrics on Arrow.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS.items():
        module.add_parser(commands, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    if args.verbose < 3:  # httpx/httpcore log every request at INFO/DEBUG: 5,000 lines a window
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        result: int = COMMANDS[args.command].run(args)
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return result
