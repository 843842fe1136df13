"""`mixnas evaluate` and `mixnas export`: train, profile or export one architecture (or a front)."""

from __future__ import annotations

from rich.console import Console

from mixnas.commands.common import DEFAULT_STORAGE, positive_int
from mixnas.errors import MixnasError


def add_commands(commands) -> None:
    """Add `evaluate` and `export` to the top-level subparsers."""
    evaluate = commands.add_parser("evaluate", help="train and profile one architecture")
    evaluate.add_argument("arch", help="architecture YAML file or a baseline name")
    evaluate.add_argument("--task", required=True)
    evaluate.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="task, budget or train setting (repeatable)")
    evaluate.add_argument("--steps", type=positive_int, help="training steps")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)

    export = commands.add_parser(
        "export", help="export architectures as standalone PyTorch or for transformers"
    )
    export.add_argument("name", nargs="?", help="study name")
    export.add_argument("--storage", default=DEFAULT_STORAGE)
    export.add_argument("--trial", type=int)
    export.add_argument("--pareto", action="store_true")
    export.add_argument("--arch", help="architecture YAML file or baseline name")
    export.add_argument("--vocab-size", type=positive_int, default=256)
    export.add_argument("-o", "--output", required=True)
    export.add_argument("--force", action="store_true")
    export.add_argument("--format", choices=("torch", "hf"), default="torch",
                        help="torch: model.py + weights; hf: a transformers model directory "
                             "(needs pip install 'mixnas[hf]')")
    export.add_argument("--tokenizer", help="with --format hf: 'byte' or a tokenizer.json "
                                            "(default: the study task's own)")
    export.set_defaults(handler=cmd_export)


def cmd_evaluate(args) -> int:
    from mixnas.evaluator.commands import evaluate_command

    evaluate_command(args.arch, args.task, args.set or [], args.steps, args.json, Console())
    return 0


def cmd_export(args) -> int:
    from mixnas.export.commands import export_from_file, export_from_study

    if args.arch:
        if args.name:
            raise MixnasError("give either a study NAME or --arch, not both")
        paths = export_from_file(args.arch, args.output, vocab_size=args.vocab_size,
                                 force=args.force, format=args.format, tokenizer=args.tokenizer)
    else:
        if not args.name:
            raise MixnasError("give a study NAME (with --trial N or --pareto) or --arch FILE")
        if (args.trial is None) == (not args.pareto):
            raise MixnasError("give exactly one of --trial N or --pareto")
        paths = export_from_study(args.storage, args.name, trial=args.trial, pareto=args.pareto,
                                  out_dir=args.output, force=args.force, format=args.format,
                                  tokenizer=args.tokenizer)
    for path in paths:
        print(path)
    return 0
