"""`mixnas study ...`: start, resume, list and inspect studies and promote a front."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext

from rich.console import Console

from mixnas.commands.common import DEFAULT_STORAGE, EXIT_INTERRUPTED, positive_int, quiet_optuna


def add_commands(commands) -> None:
    """Add `study` and its actions to the top-level subparsers."""
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
    resume.add_argument("--allow-changed-plugins", action="store_true",
                        help="continue although a plugin's source changed since the start")
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
    promote.add_argument("--top-k", type=positive_int, default=8,
                         help="front designs to promote, best first (default 8)")
    promote.add_argument("--scale", type=float, default=2.0,
                         help="width, depth and budget factor (default 2)")
    promote.add_argument("--width", type=float, help="width factor (default: --scale)")
    promote.add_argument("--depth", type=float, help="depth factor (default: --scale)")
    promote.add_argument("--budget", type=float,
                         help="training budget (steps or tokens) factor (default: --scale)")
    promote.add_argument("--no-baselines", action="store_true",
                         help="promote only front designs, not the study's baselines")
    promote.add_argument("--workers", type=positive_int)
    promote.add_argument("--ray-address")
    promote.add_argument("--quiet", action="store_true")
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(handler=cmd_study_promote)

    report = study_cmds.add_parser("report", help="write a shareable report of a study")
    report.add_argument("name")
    report.add_argument("--storage", default=DEFAULT_STORAGE)
    report.add_argument("-o", "--output", required=True, help="the report file to write")
    report.add_argument("--format", metavar="{html,md}",
                        help="html (one self-contained file) or md (tables + PNG figures); "
                             "default: from the output's suffix, else html")
    report.set_defaults(handler=cmd_study_report)


def _driver_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int,
                        help="trials in flight at once (default: what the resources allow)")
    parser.add_argument("--gpus-per-trial", type=_resource("gpus_per_trial"), metavar="G",
                        help="each trial's GPU share: 0.25 packs four trials on one GPU")
    parser.add_argument("--cpus-per-trial", type=_resource("cpus_per_trial"), metavar="C",
                        help="each trial's CPUs (and torch threads)")
    parser.add_argument("--n-trials", type=positive_int, help="target number of trials")
    parser.add_argument(
        "--ray-address",
        help="run on an existing Ray cluster: HOST:PORT, or 'auto' for RAY_ADDRESS or the "
        "cluster this machine joined (default: a private local Ray)",
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress display")


def cmd_study_start(args) -> int:
    from mixnas.orchestrator.cluster import check_ray_address
    from mixnas.orchestrator.config import load_study_config
    from mixnas.orchestrator.study import create_study, load_warm_sources
    from mixnas.orchestrator.warm_start import check_mappable
    from mixnas.search_space.commands import check_feasible
    from mixnas.search_space.grammar import Grammar
    from mixnas.search_space.plugin_commands import quick_check
    from mixnas.search_space.plugins import with_installed
    from mixnas.storage import check_writable

    config = load_study_config(args.file)
    if args.storage:
        config.storage = args.storage
    _apply_driver_options(config, args, n_trials=args.n_trials)
    if args.warm_start:
        config.warm_start = list(dict.fromkeys(config.warm_start + args.warm_start))
    check_writable(config.storage)
    if args.ray_address:
        check_ray_address(args.ray_address)
    grammar = Grammar.load(config.search_space)  # a broken grammar fails before any write
    check_feasible(grammar, config.search_space)  # what `space validate` refuses
    plugins = with_installed(grammar.plugins)
    quick_check(plugins)  # users' primitives: property checks first
    config.plugins = [p.record() for p in plugins]  # resume compares their hashes
    if config.name in config.warm_start:
        raise ValueError(f"--warm-start: study '{config.name}' cannot warm-start from itself")
    warm = load_warm_sources(config.storage, config.warm_start)
    for source in warm:
        check_mappable(grammar, source, f"{args.file}: warm_start")
    quiet_optuna()
    handle = create_study(config, warm=warm)
    return _drive(handle, args, seed_baselines=True)


def cmd_study_resume(args) -> int:
    from mixnas.orchestrator.cluster import check_ray_address
    from mixnas.orchestrator.study import check_plugins_unchanged, load_study
    from mixnas.storage import check_writable

    quiet_optuna()
    _apply_driver_options(None, args, n_trials=args.n_trials)  # checked before any work
    if args.ray_address:
        check_ray_address(args.ray_address)
    check_writable(args.storage)
    handle = load_study(args.name, args.storage)
    for change in check_plugins_unchanged(handle.config, args.allow_changed_plugins):
        print(f"mixnas: warning: {change}", file=sys.stderr)
    if args.n_trials:
        handle.config.n_trials = args.n_trials
        handle.storage.set_study_target(handle.record_id, args.n_trials)
    _apply_driver_options(handle.config, args)
    return _drive(handle, args, seed_baselines=False)


def _apply_driver_options(config, args, **more) -> None:
    """--workers, --gpus-per-trial, --cpus-per-trial (and `more`, e.g. n_trials) over the study's
    own settings, bounded as the study file's are (config None: only check)."""
    check_overrides(config, workers=args.workers, gpus_per_trial=args.gpus_per_trial,
                    cpus_per_trial=args.cpus_per_trial, **more)


def _resource(key: str):
    """An argparse type for a `resources` setting, checked as the study file's is."""

    def parse(text: str) -> float:
        from mixnas.orchestrator.config import check_resource

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
        problem = check_resource(key, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


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
    from mixnas.orchestrator.progress import LiveProgress
    from mixnas.orchestrator.promote import Scaling, promote, promoted_name

    check_overrides(None, workers=args.workers)
    scaling = Scaling.of(args.scale, args.width, args.depth, args.budget)
    quiet_optuna()
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


def cmd_study_report(args) -> int:
    from pathlib import Path

    from mixnas.dashboard.report import write_report

    out = Path(args.output)
    fmt_name = args.format or ("md" if out.suffix.lower() == ".md" else "html")
    for path in write_report(args.storage, args.name, out, fmt_name):
        print(path)
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


def check_overrides(config, **values: float | None) -> None:
    """Check command-line overrides against what a study file may say and apply them to `config`
    (None: only check, for a study not loaded yet).

    Args:
        config: The study's settings, or None.
        values: `workers=`, `n_trials=` (bounded by `LIMITS`), `gpus_per_trial=`,
            `cpus_per_trial=` (checked by `check_resource`, applied to `config.resources`);
            a None value is no override.

    Raises:
        ConfigError: `--workers: must be at most 1,024, got ...`.
    """
    from mixnas.errors import ConfigError
    from mixnas.orchestrator.config import LIMITS, check_resource

    for key, value in values.items():
        if value is None:
            continue
        flag = f"--{key.replace('_', '-')}"
        if key in ("gpus_per_trial", "cpus_per_trial"):
            problem = check_resource(key, value)
            if problem:
                raise ConfigError(f"{flag}: {problem}")
            target = config.resources if config is not None else None
        else:
            if value > LIMITS[key]:
                raise ConfigError(f"{flag}: must be at most {LIMITS[key]:,}, got {value:,}")
            target = config
        if target is not None:
            setattr(target, key, value)
