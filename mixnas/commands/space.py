"""`mixnas space ...`: show, validate and sample a search-space grammar."""

from __future__ import annotations

import json

from rich.console import Console

from mixnas.commands.common import positive_int


def add_commands(commands) -> None:
    """Add `space` and its actions to the top-level subparsers."""
    space = commands.add_parser("space", help="inspect search-space grammars")
    space_cmds = space.add_subparsers(title="space commands", metavar="ACTION")
    show = space_cmds.add_parser("show", help="print a grammar as a tree")
    show.add_argument("file")
    show.set_defaults(handler=cmd_space_show)
    validate = space_cmds.add_parser("validate", help="check a grammar file")
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_space_validate)
    sample = space_cmds.add_parser("sample", help="sample architectures from a grammar")
    sample.add_argument("file")
    sample.add_argument("--n", type=positive_int, default=5)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--json", action="store_true")
    sample.set_defaults(handler=cmd_space_sample)


def cmd_space_show(args) -> int:
    from mixnas.search_space.commands import show

    show(args.file, Console())
    return 0


def cmd_space_validate(args) -> int:
    from mixnas.search_space.commands import validate

    print(validate(args.file))
    return 0


def cmd_space_sample(args) -> int:
    from mixnas.search_space.commands import sample

    archs = sample(args.file, args.n, args.seed)
    if args.json:
        print(json.dumps(archs, indent=2, sort_keys=True))
        return 0
    for item in archs:
        print(item["summary"])
    return 0
