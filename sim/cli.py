"""`smsload`: the project's command line. Each subcommand lives beside the code it drives.

A module in `_SUBCOMMANDS` provides `register(subparsers)`, which adds its parser and sets
`func` (taking the parsed args, returning an exit code). Errors a user can fix are reported
as one clear line and exit code 2, never a traceback. This module is the console script's
entry only: what the subcommands share lives in `sim.cli_support`, which none of them
needs this module for.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sim import __version__
from sim.cli_support import UsageError

_SUBCOMMANDS = [
    "sim.server.cli",
    "sim.scenario_cli",
    "sim.des.cli",
    "sim.report.cli",
    "sim.report.check_cli",
    "sim.report.calibrate_cli",
    "sim.sweep.cli",
    "sim.report.capacity_cli",
    "sim.demo",
    "loadtests.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsload",
        description="Simulate and load-test the command API of a server migration service (SMS).",
    )
    parser.add_argument("--version", action="version", version=f"smsload {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"smsload {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"smsload {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
