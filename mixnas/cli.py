"""`mixnas` command line: studies, search spaces, single evaluations, export, dashboard, benchmarks.

This module builds the parser and runs a command; the commands live in `mixnas.commands`, one
module per area. Every user error ends as one line on stderr and exit code 2 (MIXNAS_DEBUG=1
shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys

from mixnas.commands import bench, dashboard, data, model, primitive, space, study
from mixnas.commands.common import DEFAULT_STORAGE, EXIT_INTERRUPTED, EXIT_USAGE
from mixnas.errors import MixnasError, first_line

__all__ = ["DEFAULT_STORAGE", "build_parser", "main"]

# The top-level commands in the order `mixnas --help` lists them.
AREAS = (study, space, primitive, model, dashboard, data, bench)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `mixnas study start: error: ...`, exit 2, no usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run one `mixnas` command.

    Args:
        argv: The arguments after the program name; `sys.argv[1:]` when None.

    Returns:
        The exit code: 0 on success, 2 for a usage or input error (one line on stderr),
        130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("mixnas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MixnasError, ValueError, LookupError, FileExistsError, FileNotFoundError) as exc:
        if os.environ.get("MIXNAS_DEBUG"):
            raise
        print(f"mixnas: error: {first_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """The `mixnas` parser with every command; each parsed command carries its `handler`."""
    parser = _Parser(
        prog="mixnas", description="Neural architecture search over sequence-model mixers."
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for area in AREAS:
        area.add_commands(commands)
    return parser


def _version() -> str:
    from mixnas import __version__

    return f"mixnas {__version__}"


if __name__ == "__main__":
    sys.exit(main())
