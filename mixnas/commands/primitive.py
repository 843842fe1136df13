"""`mixnas primitive check`: a user's own primitive, put through the built-ins' property checks.

The command's logic lives beside the registry (`search_space/plugin_commands.py`), since it needs
nothing but the search space; this module only hangs it on the CLI like every other area.
"""

from __future__ import annotations


def add_commands(commands) -> None:
    """Add `primitive` and its actions to the top-level subparsers."""
    from mixnas.search_space.plugin_commands import add_cli

    add_cli(commands)
