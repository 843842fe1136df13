"""Search efficiency on the tabular benchmark: how fast each sampler finds the true Pareto front.

    python -m benchmarks.search_efficiency [--seeds 20] [--n-trials 200] [--workers 2]

Every sampler `make_sampler` offers is replayed over many seeds against the table
(benchmarks/tabular/tabular.sqlite); after each trial we record the hypervolume of the front found
so far as a fraction of the table's full-front hypervolume (objectives normalised to [0, 1] by the
table's best and worst values, reference point at the worst). The headline number is the median
over seeds of the trials needed to reach 95% of the full front; the target is that the default
sampler needs at most a third of what random search needs. Each sampler also runs seeded with the
table's versions of the baselines (transformer, Mamba-2, Gated DeltaNet, Hyena stacks), enqueued
as the driver does (architecture only) and as grammar parameters. Writes JSON and a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import optuna

from benchmarks.common import RESULTS, environment, require_extra, write_json
from benchmarks.tabular.build import GRAMMAR, TABLE
from benchmarks.tabular.hypervolume import Normaliser
from benchmarks.tabular.replay import replay, trials_to_fraction
from benchmarks.tabular.table import Table, distinct_architectures
from mixnas import pareto
from mixnas.orchestrator.config import SAMPLERS
from mixnas.search_space.architecture import Architecture
from mixnas.search_space.grammar import Grammar
from mixnas.search_space.sampling import ScriptedDecider

DEFAULT_SAMPLER = "nsga2"  # StudyConfig's default
OBJECTIVES = [("accuracy", "maximize"), ("non_embedding_params", "minimize")]
TARGET = 0.95


def baseline_seeds(grammar: Grammar) -> dict[str, Architecture]:
    """The library's baselines as they exist in the tabular space: uniform two-layer stacks."""
    stacks = {"transformer": ("attention", "swiglu"), "mamba2": ("mamba2", "none"),
              "gated_deltanet": ("gated_deltanet", "swiglu"), "hyena": ("hyena", "swiglu")}
    seeds = {}
    for name, (token, channel) in stacks.items():
        decisions = {"d_model": 64}
        for i in range(2):
            decisions[f"layer.{i}.token_mixer"] = token
            decisions[f"layer.{i}.channel_mixer"] = channel
        seeds[name] = grammar.sample(ScriptedDecider(decisions))
    return seeds


def _one(job: dict[str, Any]) -> dict[str, Any]:
    """One replayed study (runs in a worker process): its hypervolume-fraction curve."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not one line per replayed trial
    grammar = Grammar.load(job["grammar"])
    with Table(job["table"]) as table:
        objectives = [tuple(o) for o in job["objectives"]]
        normaliser = Normaliser([d for _, d in objectives], table.values(objectives))
        full = normaliser.hypervolume(table.values(objectives))
        seeds = [Architecture.from_json(s) for s in job["seeds"]]
        started = time.process_time()
        result = replay(table, grammar, objectives, sampler=job["sampler"],
                        n_trials=job["n_trials"], seed=job["seed"],
                        sampler_options=job["options"], seeds=seeds, seed_mode=job["seed_mode"])
        seconds = time.process_time() - started
    curve = [hv / full for hv in result.hypervolume_curve(normaliser)]
    return {**job, "curve": curve, "distinct": result.distinct, "cpu_seconds": seconds,
            "failed": sum(v is None for v in result.values)}


def _parse_sampler(text: str) -> tuple[str, str, dict[str, Any]]:
    """'nsga2' or 'nsga2:population_size=16,crossover_prob=0.8' -> (label, sampler, options)."""
    name, _, rest = text.partition(":")
    if name not in SAMPLERS:
        raise SystemExit(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = json.loads(value)
    return text, name, options


def _parse_objective(text: str) -> tuple[str, str]:
    name, _, direction = text.partition(":")
    if direction not in ("minimize", "maximize"):
        raise argparse.ArgumentTypeError(f"expected NAME:minimize or NAME:maximize, got {text!r}")
    return name, direction


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per configuration: median trials to 95% (never reaching it counts as infinite)."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(r["label"] for r in runs):
        mine = [r for r in runs if r["label"] == key]
        curves = [r["curve"] for r in mine]
        hits = [trials_to_fraction(c, TARGET) for c in curves]
        median_hit = _median([math.inf if h is None else h for h in hits])
        by_trial = list(zip(*curves))
        out[key] = {
            "sampler": mine[0]["sampler"],
            "options": mine[0]["options"],
            "seeding": mine[0]["seeding"],
            "seeds": len(mine),
            "trials_to_95": hits,
            "reached_95": sum(h is not None for h in hits),
            "median_trials_to_95": None if math.isinf(median_hit) else median_hit,
            "median_fraction": [round(_median(list(t)), 5) for t in by_trial],
            "q25_fraction": [round(_quantile(list(t), 0.25), 5) for t in by_trial],
            "q75_fraction": [round(_quantile(list(t), 0.75), 5) for t in by_trial],
            "median_final_fraction": _median([c[-1] for c in curves]),
            "median_distinct_architectures": _median([r["distinct"] for r in mine]),
            "cpu_seconds_per_study": _median([r["cpu_seconds"] for r in mine]),
        }
    return out


def verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """The target check, and which configuration is best (fewest median trials to 95%)."""
    def trials(key: str) -> float:
        value = summary[key]["median_trials_to_95"]
        return math.inf if value is None else value

    unseeded = [k for k, s in summary.items() if s["seeding"] == "none"]
    best = min(unseeded, key=trials)
    out = {"best_unseeded": best, "best_unseeded_median_trials": summary[best][
        "median_trials_to_95"]}
    if DEFAULT_SAMPLER in summary and "random" in summary:
        default, random_ = trials(DEFAULT_SAMPLER), trials("random")
        out["default_sampler"] = DEFAULT_SAMPLER
        out["default_median_trials"] = summary[DEFAULT_SAMPLER]["median_trials_to_95"]
        out["random_median_trials"] = summary["random"]["median_trials_to_95"]
        out["random_over_default"] = (
            None if math.isinf(default) or math.isinf(random_) else random_ / default
        )
        out["target"] = "default sampler needs <= 1/3 of random search's trials to 95% HV"
        out["target_met"] = not math.isinf(default) and default <= random_ / 3
        out["random_over_best"] = (
            None if math.isinf(trials(best)) or math.isinf(random_) else random_ / trials(best)
        )
    return out


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeded = any(s["seeding"] != "none" for s in summary.values())
    fig, axes = plt.subplots(1, 2 if seeded else 1, figsize=(13 if seeded else 7, 5),
                             sharey=True, squeeze=False)
    axes = axes[0]
    colors = {}
    for key, s in summary.items():
        ax = axes[0] if s["seeding"] == "none" else axes[1]
        base = key.split(" ")[0]
        color = colors.setdefault(base, f"C{len(colors)}")
        style = {"none": "-", "arch": "--", "params": ":"}[s["seeding"]]
        x = range(1, len(s["median_fraction"]) + 1)
        hit = s["median_trials_to_95"]
        label = f"{key} (median {hit if hit is not None else '>' + str(len(x))} trials to 95%)"
        ax.plot(x, s["median_fraction"], style, color=color, label=label)
        if s["seeding"] == "none":
            ax.fill_between(x, s["q25_fraction"], s["q75_fraction"], color=color, alpha=0.15)
            if seeded:
                axes[1].plot(x, s["median_fraction"], "-", color=color, lw=0.8, alpha=0.4)
    for ax, sub in zip(axes, ("no seeding (median, IQR)",
                                "seeded with 4 baselines (median; faint: unseeded)")):
        ax.axhline(TARGET, color="grey", lw=0.8)
        ax.set_xlabel("trials")
        ax.set_title(sub)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("hypervolume / full-front hypervolume")
    axes[0].set_ylim(0.0, 1.01)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--grammar", type=Path, default=GRAMMAR)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS),
                        help="sampler names, optionally with options: nsga2:population_size=16")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n-trials", type=int, default=200)
    parser.add_argument("--no-seeding", action="store_true", help="skip the seeded runs")
    parser.add_argument("--objectives", nargs="+", type=_parse_objective,
                        default=OBJECTIVES, help="NAME:maximize or NAME:minimize")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "search_efficiency")
    args = parser.parse_args(argv)
    require_extra("matplotlib")
    objectives = args.objectives
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    grammar = Grammar.load(args.grammar)
    seeds = baseline_seeds(grammar)
    with Table(args.table) as table:
        rows = table.rows()
        complete = [r for r in rows.values() if r.status == "complete"]
        missing = len(set(distinct_architectures(grammar)) - set(rows))
        if missing:
            raise SystemExit(f"{args.table}: {missing} architectures of the grammar are missing; "
                             "finish it with python -m benchmarks.tabular.build")
        values = table.values(objectives)
        normaliser = Normaliser([d for _, d in objectives], values)
        points = pareto.scored(((i, r.hash, r.measured) for i, r in enumerate(complete)),
                               [n for n, _ in objectives])
        front = [p.design for p in pareto.front(points, [d for _, d in objectives])]
        meta = table.meta()
        full = normaliser.hypervolume(values)

    jobs = []
    for label, sampler, options in map(_parse_sampler, args.samplers):
        modes = [("none", "arch")] + ([] if args.no_seeding else [("arch", "arch"),
                                                                    ("params", "params")])
        for seeding, mode in modes:
            key = label if seeding == "none" else f"{label} +baselines({seeding})"
            for seed in range(args.seeds):
                jobs.append({
                    "label": key, "sampler": sampler, "options": options, "seed": seed,
                    "seeding": seeding, "seed_mode": mode, "n_trials": args.n_trials,
                    "seeds": [] if seeding == "none" else [a.to_json() for a in seeds.values()],
                    "objectives": objectives, "table": str(args.table),
                    "grammar": str(args.grammar),
                })
    started = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            runs = list(pool.map(_one, jobs))
    else:
        runs = [_one(job) for job in jobs]
    summary = summarise(runs)
    result = {
        "benchmark": "search_efficiency",
        **environment("benchmarks.search_efficiency", argv),
        "wall_seconds": time.perf_counter() - started,
        "table": {"path": str(args.table), "architectures": len(rows), "complete": len(complete),
                  "settings": meta.get("settings"), "built_at": meta.get("built_at")},
        "objectives": objectives,
        "hypervolume": {"normalisation": "objective -> [0, 1], 0 = table best, 1 = table worst",
                        "reference": normaliser.reference, "full_front": full,
                        "full_front_size": len(front), "full_front_hashes": front},
        "n_trials": args.n_trials,
        "seeds": args.seeds,
        "baseline_seeds": {name: a.hash for name, a in seeds.items()},
        "target_fraction": TARGET,
        "verdict": verdict(summary),
        "summary": summary,
    }
    write_json(args.out.with_suffix(".json"), result)
    title = (f"Tabular benchmark ({len(rows)} architectures, {len(front)} on the true front)\n"
             f"{args.seeds} seeds per sampler, objectives {', '.join(n for n, _ in objectives)}")
    plot(summary, args.out.with_suffix(".png"), title)
    for key, s in summary.items():
        print(f"{key:32s} median trials to 95%: {s['median_trials_to_95']}  "
              f"(reached {s['reached_95']}/{s['seeds']}), final {s['median_final_fraction']:.3f}, "
              f"distinct {s['median_distinct_architectures']}")
    print(json.dumps(result["verdict"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
