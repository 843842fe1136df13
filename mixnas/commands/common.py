"""Argument types, defaults and exit codes shared by the `mixnas` subcommands."""

from __future__ import annotations

import argparse

DEFAULT_STORAGE = "sqlite:///mixnas.db"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def positive_int(text: str) -> int:
    """argparse type: an integer above zero, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the live display (or the final table) says it better.

    Called by the commands that run trials, never on import: a library user keeps Optuna's own
    logging unless they ask for less.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
