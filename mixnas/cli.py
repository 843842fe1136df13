"""`mixnas` command line: studies, search spaces, single evaluations, export, dashboard, benchmarks.

Every user error ends as one line on stderr and exit code 2 (MIXNAS_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext

from rich.console import Console

from mixnas.errors import MixnasError

DEFAULT_STORAGE = "sqlite:///mixnas.db"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `mixnas study start: error: ...`, exit 2, no usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
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
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"mixnas: error: {message.splitlines()[0] if message else type(exc).__name__}",
              file=sys.stderr)
        return EXIT_USAGE


# --------------------------------------------------------------------------- study
def cmd_study_start(args) -> int:
    from mixnas.orchestrator.cluster import check_ray_address
    from mixnas.orchestrator.config import check_overrides, load_study_config
    from mixnas.orchestrator.study import create_study, load_warm_sources
    from mixnas.orchestrator.warm_start import check_mappable
    from mixnas.search_space.commands import check_feasible
    from mixnas.search_space.grammar import Grammar
    from mixnas.storage import check_writable

    config = load_study_config(args.file)
    if args.storage:
        config.storage = args.storage
    check_overrides(config, workers=args.workers, n_trials=args.n_trials)
    if args.warm_start:
        config.warm_start = list(dict.fromkeys(config.warm_start + args.warm_start))
    check_writable(config.storage)
    if args.ray_address:
        check_ray_address(args.ray_address)
    grammar = Grammar.load(config.search_space)  # a broken grammar fails before any write
    check_feasible(grammar, config.search_space)  # what `space validate` refuses
    if config.name in config.warm_start:
        raise ValueError(f"--warm-start: study '{config.name}' cannot warm-start from itself")
    warm = load_warm_sources(config.storage, config.warm_start)
    for source in warm:
        check_mappable(grammar, source, f"{args.file}: warm_start")
    _quiet_optuna()
    handle = create_study(config, warm=warm)
    return _drive(handle, args, seed_baselines=True)


def cmd_study_resume(args) -> int:
    from mixnas.orchestrator.cluster import check_ray_address
    from mixnas.orchestrator.config import check_overrides
    from mixnas.orchestrator.study import load_study
    from mixnas.storage import check_writable

    _quiet_optuna()
    check_overrides(None, workers=args.workers, n_trials=args.n_trials)
    if args.ray_address:
        check_ray_address(args.ray_address)
    check_writable(args.storage)
    handle = load_study(args.name, args.storage)
    if args.n_trials:
        handle.config.n_trials = args.n_trials
        handle.storage.set_study_target(handle.record_id, args.n_trials)
    if args.workers:
        handle.config.workers = args.workers
    return _drive(handle, args, seed_baselines=False)


def _quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the live display (or the final table) says it better."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _drive(handle, args, *, seed_baselines: bool) -> int:
    from mixnas.orchestrator.driver import Driver
    from mixnas.orchestrator.progress import LiveProgress, pareto_table
    from mixnas.orchestrator.study import failure_summary, pareto_front

    console = Console(stderr=False)
    quiet = args.quiet or not console.is_terminal and os.environ.get("CI")
    progress = None if quiet else LiveProgress(console, handle.name)
    driver = Driver(handle, ray_address=args.ray_address, progress=progress)
    with progress if progress else nullcontext():
        counts = driver.run(seed_baselines=seed_baselines)
    front = pareto_front(handle)
    objectives = handle.objectives()
    console.print(pareto_table(front, objectives))
    console.print(
        f"{counts.done}/{handle.config.n_trials} trials done: {counts.complete} complete, "
        f"{counts.pruned} pruned, {counts.failed} failed, {counts.infeasible} infeasible. "
        f"Explore: mixnas dashboard --storage {handle.config.storage}"
    )
    if driver.aborting or driver.stopping:
        console.print(f"stopped; continue with: mixnas study resume {handle.name} "
                      f"--storage {handle.config.storage}")
        return EXIT_INTERRUPTED
    summary = failure_summary(handle)
    if summary:  # a study that learnt nothing is not a success
        print(f"mixnas: {summary}", file=sys.stderr)
        return 1
    return 0


def cmd_study_list(args) -> int:
    from mixnas.orchestrator.study import list_studies

    studies = list_studies(args.storage)
    if args.json:
        print(json.dumps(studies, indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"studies in {args.storage}")
    for column in ("name", "state", "done/target", "complete", "running", "failed", "pruned"):
        table.add_column(column)
    for s in studies:
        t = s["trials"]
        done = t["complete"] + t["pruned"] + t["infeasible"] + t["failed"]
        table.add_row(s["name"], s["state"], f"{done}/{s['target_trials']}", str(t["complete"]),
                      str(t["running"]), str(t["failed"]), str(t["pruned"]))
    Console().print(table)
    return 0


def cmd_study_status(args) -> int:
    from mixnas.orchestrator.study import status

    info = status(args.name, args.storage)
    if args.json:
        out = {k: info[k] for k in ("name", "objectives")}
        out["trials"] = {k: info["trials"][k] for k in ("complete", "running", "failed", "pruned")}
        out["trials"]["infeasible"] = info["trials"]["infeasible"]
        out["state"] = info["state"]
        out["target_trials"] = info["target_trials"]
        print(json.dumps(out, indent=2))
        return 0
    objectives = ", ".join(f"{o['name']} ({o['direction']})" for o in info["objectives"])
    trials = ", ".join(f"{n} {state}" for state, n in info["trials"].items())
    Console().print(f"[bold]{info['name']}[/] [{info['state']}]  target {info['target_trials']}\n"
                    f"objectives: {objectives}\ntrials: {trials}")
    return 0


def cmd_study_pareto(args) -> int:
    from mixnas.orchestrator.progress import pareto_table
    from mixnas.orchestrator.study import load_study, pareto_front

    handle = load_study(args.name, args.storage)
    front = pareto_front(handle)
    if args.json:
        print(json.dumps(
            [{k: item[k] for k in ("trial", "values", "arch_hash", "architecture")}
             for item in front],
            indent=2,
        ))
        return 0
    Console().print(pareto_table(front, handle.objectives()))
    return 0


def cmd_study_promote(args) -> int:
    from mixnas.orchestrator.config import check_overrides
    from mixnas.orchestrator.progress import LiveProgress
    from mixnas.orchestrator.promote import Scaling, promote, promoted_name

    check_overrides(None, workers=args.workers)
    scaling = Scaling.of(args.scale, args.width, args.depth, args.budget)
    _quiet_optuna()
    console = Console()
    progress = None if args.quiet else LiveProgress(console, promoted_name(args.name, scaling))
    with progress if progress else nullcontext():
        report = promote(args.name, args.storage, top_k=args.top_k, scale=scaling,
                         baselines=not args.no_baselines, workers=args.workers,
                         ray_address=args.ray_address, progress=progress)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_promotion(console, report)
    return 0


def _print_promotion(console: Console, report: dict) -> None:
    from rich.table import Table

    objective = report["objective"]["name"]
    table = Table(title=f"{report['parent']} -> {report['study']}: {objective}")
    for column in ("parent trial", "baseline", "small", "trial", "large"):
        table.add_column(column, justify="right")
    for pair in report["pairs"]:
        table.add_row(str(pair["parent_trial"]), pair["baseline"] or "", f"{pair['small']:.4g}",
                      str(pair["trial"]), f"{pair['large']:.4g}")
    console.print(table)
    rho = report["spearman"]
    if rho is None:
        summary = "undefined (fewer than 3 designs or a constant side)"
    else:
        lo, hi = report["ci95"] or (float("nan"), float("nan"))
        summary = (f"Spearman {rho:.3f} (95% bootstrap CI {lo:.2f} to {hi:.2f}, "
                   f"p={report['p_value']:.3g}), Kendall {report['kendall']:.3f}")
    console.print(f"Rank agreement small vs large over {len(report['pairs'])} designs: {summary}")
    v = report["verdict"]
    if v is not None:
        outcome = "beats" if v["pick_beats_best_baseline"] else "does not beat"
        console.print(
            f"The search's pick (parent trial {v['pick_parent_trial']}, {objective} "
            f"{v['pick_small']:.4g} small, {v['pick_large']:.4g} large) {outcome} the best "
            f"baseline at the large scale ({v['best_baseline']}: {v['best_baseline_large']:.4g}) "
            f"by {v['margin']:+.4g}; it ranks {v['pick_rank_large']} of {v['designs']} there.")


# --------------------------------------------------------------------------- space
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


# --------------------------------------------------------------------------- others
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


def cmd_dashboard(args) -> int:
    from mixnas.dashboard.app import serve
    from mixnas.storage import check_url

    check_url(args.storage)
    serve(args.storage, host=args.host, port=args.port)
    return 0


def cmd_bench_kernels(args) -> int:
    from mixnas.kernels.bench import main as bench_main

    argv = (["--json", args.json] if args.json else []) + (["--smoke"] if args.smoke else [])
    for flag in ("table", "ops", "lengths", "head_dims", "variants"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", *map(str, value if isinstance(value, list)
                                                          else [value])]
    return bench_main(argv)


# --------------------------------------------------------------------------- data
def cmd_data_prepare(args) -> int:
    from pathlib import Path

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from mixnas.data import PrepareOptions, prepare
    from mixnas.data.prepare import check

    options = PrepareOptions(
        sources=args.sources, out=Path(args.output), tokenizer=args.tokenizer,
        val_frac=args.val_frac, max_bytes=args.max_bytes, force=args.force,
        include=tuple(args.include) if args.include else PrepareOptions.include,
        exclude=tuple(args.exclude or ()),
    )
    check(options)  # every input problem is one line before the progress display starts
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=args.quiet) as progress:
        meta = prepare(options, progress)
    print(_corpus_summary(args.output, meta))
    return 0


def cmd_data_info(args) -> int:
    from mixnas.data import PreparedCorpus

    corpus = PreparedCorpus.open(args.dir)
    if args.json:
        print(json.dumps({k: v for k, v in corpus.meta.items() if k != "sources"}, indent=2))
        return 0
    print(_corpus_summary(args.dir, corpus.meta))
    return 0


def _corpus_summary(path, meta) -> str:
    tok = meta["tokenizer"]
    name = "byte" if tok["kind"] == "byte" else f"bpe:{tok['vocab_size']}"
    train, val = meta["train"], meta["val"]
    per = (train["bytes"] + val["bytes"]) / max(1, train["tokens"] + val["tokens"])
    return (f"{path}: {train['tokens']:,} train + {val['tokens']:,} val tokens ({name}, "
            f"{meta['dtype']}, {per:.2f} bytes/token) from {len(meta['sources'])} file(s); "
            f"split: {meta['split']['rule']}")


def _data_commands(commands) -> None:
    data = commands.add_parser("data", help="prepare text corpora for language modelling")
    data_cmds = data.add_subparsers(title="data commands", metavar="ACTION")
    prep = data_cmds.add_parser(
        "prepare", help="tokenise local text into DIR/train.bin, val.bin and meta.json")
    prep.add_argument("sources", nargs="+", metavar="SRC",
                      help="files, directories (searched recursively) or globs: plain text, "
                      ".jsonl with a 'text' field, parquet with a 'text' column (needs pyarrow)")
    prep.add_argument("-o", "--output", required=True, metavar="DIR")
    prep.add_argument("--tokenizer", default="byte",
                      help="byte (default), bpe:VOCAB (train a byte-level BPE on the corpus) or "
                      "PATH/tokenizer.json")
    prep.add_argument("--val-frac", type=float, default=0.05,
                      help="share of documents held out for validation (default 0.05)")
    prep.add_argument("--max-bytes", type=_positive_int, help="read at most this much text")
    prep.add_argument("--include", action="append", metavar="GLOB",
                      help="file patterns searched in directories (repeatable; default: *.txt "
                      "*.md *.rst *.py *.text *.markdown *.jsonl *.parquet)")
    prep.add_argument("--exclude", action="append", metavar="GLOB",
                      help="skip files and directories with a matching name inside directories "
                      "(repeatable), e.g. --exclude site-packages")
    prep.add_argument("--force", action="store_true", help="replace DIR if it exists")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(handler=cmd_data_prepare)
    info = data_cmds.add_parser("info", help="what a prepared corpus holds")
    info.add_argument("dir")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=cmd_data_info)


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mixnas", description="Neural architecture search over sequence-model mixers."
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    study = commands.add_parser("study", help="start, resume and inspect studies")
    study_cmds = study.add_subparsers(title="study commands", metavar="ACTION")
    start = study_cmds.add_parser("start", help="start a study from a study file")
    start.add_argument("file", help="study YAML file, e.g. studies/quickstart.yaml")
    start.add_argument("--storage", help="SQLAlchemy URL (default: the file's storage)")
    start.add_argument("--warm-start", action="append", default=[], metavar="STUDY",
                       help="learn from an earlier study in the same storage (repeatable; "
                            "adds to the file's warm_start)")
    _driver_options(start)
    start.set_defaults(handler=cmd_study_start)

    resume = study_cmds.add_parser("resume", help="continue a study (after a crash or Ctrl-C)")
    resume.add_argument("name")
    resume.add_argument("--storage", default=DEFAULT_STORAGE)
    _driver_options(resume)
    resume.set_defaults(handler=cmd_study_resume)

    listing = study_cmds.add_parser("list", help="list the studies in a database")
    listing.add_argument("--storage", default=DEFAULT_STORAGE)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_study_list)

    for name, handler, text in (
        ("status", cmd_study_status, "trial counts by state"),
        ("pareto", cmd_study_pareto, "the Pareto front"),
    ):
        sub = study_cmds.add_parser(name, help=text)
        sub.add_argument("name")
        sub.add_argument("--storage", default=DEFAULT_STORAGE)
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=handler)

    promote = study_cmds.add_parser(
        "promote", help="retrain the front's top designs at a larger scale as a linked study"
    )
    promote.add_argument("name")
    promote.add_argument("--storage", default=DEFAULT_STORAGE)
    promote.add_argument("--top-k", type=_positive_int, default=8,
                         help="front designs to promote, best first (default 8)")
    promote.add_argument("--scale", type=float, default=2.0,
                         help="width, depth and budget factor (default 2)")
    promote.add_argument("--width", type=float, help="width factor (default: --scale)")
    promote.add_argument("--depth", type=float, help="depth factor (default: --scale)")
    promote.add_argument("--budget", type=float,
                         help="training budget (steps or tokens) factor (default: --scale)")
    promote.add_argument("--no-baselines", action="store_true",
                         help="promote only front designs, not the study's baselines")
    promote.add_argument("--workers", type=_positive_int)
    promote.add_argument("--ray-address")
    promote.add_argument("--quiet", action="store_true")
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(handler=cmd_study_promote)

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
    sample.add_argument("--n", type=_positive_int, default=5)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--json", action="store_true")
    sample.set_defaults(handler=cmd_space_sample)

    evaluate = commands.add_parser("evaluate", help="train and profile one architecture")
    evaluate.add_argument("arch", help="architecture YAML file or a baseline name")
    evaluate.add_argument("--task", required=True)
    evaluate.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="task, budget or train setting (repeatable)")
    evaluate.add_argument("--steps", type=_positive_int, help="training steps")
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
    export.add_argument("--vocab-size", type=_positive_int, default=256)
    export.add_argument("-o", "--output", required=True)
    export.add_argument("--force", action="store_true")
    export.add_argument("--format", choices=("torch", "hf"), default="torch",
                        help="torch: model.py + weights; hf: a transformers model directory "
                             "(needs pip install 'mixnas[hf]')")
    export.add_argument("--tokenizer", help="with --format hf: 'byte' or a tokenizer.json "
                                            "(default: the study task's own)")
    export.set_defaults(handler=cmd_export)

    dashboard = commands.add_parser("dashboard", help="web dashboard over a study database")
    dashboard.add_argument("--storage", default=DEFAULT_STORAGE)
    dashboard.add_argument("--host", default="127.0.0.1")
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.set_defaults(handler=cmd_dashboard)

    _data_commands(commands)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_cmds = bench.add_subparsers(title="benchmarks", metavar="WHAT")
    kernels = bench_cmds.add_parser(
        "kernels", help="time every kernel implementation, write the dispatch table (GPU)")
    kernels.add_argument("--json", nargs="?", const="-", metavar="PATH",
                         help="print the results as JSON (or write them to PATH)")
    kernels.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    kernels.add_argument("--table", metavar="PATH", help="where to write the dispatch table")
    kernels.add_argument("--ops", nargs="+", metavar="OP", help="ops to benchmark")
    kernels.add_argument("--lengths", nargs="+", type=int, metavar="T")
    kernels.add_argument("--head-dims", nargs="+", type=int, metavar="D")
    kernels.add_argument("--variants", nargs="+", metavar="V")
    kernels.set_defaults(handler=cmd_bench_kernels)
    return parser


def _driver_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=_positive_int, help="trials in flight at once")
    parser.add_argument("--n-trials", type=_positive_int, help="target number of trials")
    parser.add_argument(
        "--ray-address",
        help="run on an existing Ray cluster: HOST:PORT, or 'auto' for RAY_ADDRESS or the "
        "cluster this machine joined (default: a private local Ray)",
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress display")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _version() -> str:
    from mixnas import __version__

    return f"mixnas {__version__}"


if __name__ == "__main__":
    sys.exit(main())
