"""Surrogate pre-screening and warm starts on the tabular benchmark: trials to 95% of the front.

    python -m benchmarks.warm_start [--seeds 30] [--workers 1] [--phase mqar|lm|all]

Two tables hold the same 288 designs of studies/spaces/tabular.yaml, each trained once: on MQAR
(tabular.sqlite; accuracy vs non-embedding parameters) and on byte-level language modelling
(tabular_lm.sqlite; bits per byte vs non-embedding parameters). Per seed:

- `tpe`: grouped TPE, the default sampler, on the MQAR table; `surrogate`: the surrogate sampler.
- `cold`: the surrogate sampler on the LM table; `warm`: the same, warm-started from that seed's
  MQAR `surrogate` study (its front enqueued first as grammar decisions, re-evaluated on LM; its
  trials in the model), exactly what `warm_start:` does in a real study.
- negative-transfer probes: `warm_inverted` (warm-started from an MQAR study whose accuracy is
  negated: a source that ranks every design the wrong way), `warm_reverse` (an MQAR search
  warm-started from that seed's `cold` LM study), `tpe_cold`/`tpe_warm` on the LM table (TPE
  learns from the enqueued front only).

Each run's hypervolume curve is the fraction of its table's full-front hypervolume (objectives
normalised by the table's best and worst values). Runs are cached in --cache as JSON lines, so an
interrupted benchmark resumes; the JSON and the PNG are written when every run is there.
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

from benchmarks.common import RESULTS, environment, require_extra, write_json
from benchmarks.search_efficiency import TARGET, summarise
from benchmarks.tabular.build import GRAMMAR, LM_TABLE, TABLE
from benchmarks.tabular.hypervolume import Normaliser
from benchmarks.tabular.replay import replay, trials_to_fraction
from benchmarks.tabular.table import Table
from mixnas.orchestrator.warm_start import WarmSource, WarmTrial, front_to_enqueue
from mixnas.search_space.features import architecture_features
from mixnas.search_space.grammar import Grammar

MQAR = {"table": str(TABLE), "objectives": [("accuracy", "maximize"),
                                            ("non_embedding_params", "minimize")]}
LM = {"table": str(LM_TABLE), "objectives": [("bpb", "minimize"),
                                             ("non_embedding_params", "minimize")]}
# label -> (phase, table, sampler, source label (warm start) or None, source transform)
METHODS: dict[str, tuple[str, dict, str, str | None, str | None]] = {
    "tpe": ("mqar", MQAR, "tpe", None, None),
    "surrogate": ("mqar", MQAR, "surrogate", None, None),
    "surrogate_inner_tpe": ("mqar", MQAR, "surrogate", None, None),
    "cold": ("lm", LM, "surrogate", None, None),
    "warm": ("lm", LM, "surrogate", "surrogate", None),
    "warm_inverted": ("lm", LM, "surrogate", "surrogate", "invert"),
    "warm_reverse": ("lm2", MQAR, "surrogate", "cold", None),
    "tpe_cold": ("lm", LM, "tpe", None, None),
    "tpe_warm": ("lm", LM, "tpe", "surrogate", None),
}
SOURCE_TABLE = {"surrogate": MQAR, "cold": LM}


def _source(run: dict[str, Any], transform: str | None) -> WarmSource:
    """An earlier replayed study as a warm-start source: its distinct designs, their grammar
    decisions (as a real study stores its trials' parameters) and objective values."""
    spec = SOURCE_TABLE[run["label"]]
    names = [n for n, _ in spec["objectives"]]
    trials, seen = [], set()
    with Table(spec["table"]) as table:
        for h in run["hashes"]:
            row = table.lookup(h)
            if h in seen or row.status != "complete":
                continue
            seen.add(h)
            values = {n: float(row.measured[n]) for n in names}
            if transform == "invert":  # a task that ranks designs the opposite way
                values[names[0]] = -values[names[0]]
            trials.append(WarmTrial(row.arch_json, dict(row.decisions), values))
    return WarmSource(f"{run['label']}-{run['seed']}", list(map(tuple, spec["objectives"])),
                      trials)


def _warm_up(grammar: Grammar, tables: list[str]) -> None:
    """Fill this process's feature cache (the meta-device builds) before timing anything."""
    for path in tables:
        with Table(path) as table:
            for row in table.rows().values():
                architecture_features(row.architecture)


def _one(job: dict[str, Any]) -> dict[str, Any]:
    """One replayed study (runs in a worker process)."""
    grammar = Grammar.load(GRAMMAR)
    spec = job["spec"]
    objectives = [tuple(o) for o in spec["objectives"]]
    warm = [_source(job["source"], job["transform"])] if job["source"] else []
    enqueue = [d for _, d in front_to_enqueue(grammar, warm)]
    with Table(spec["table"]) as table:
        normaliser = Normaliser([d for _, d in objectives], table.values(objectives))
        full = normaliser.hypervolume(table.values(objectives))
        started = time.process_time()
        result = replay(table, grammar, objectives, sampler=job["sampler"],
                        n_trials=job["n_trials"], seed=job["seed"], warm=warm, enqueue=enqueue,
                        sampler_options=job["options"])
        seconds = time.process_time() - started
    curve = [hv / full for hv in result.hypervolume_curve(normaliser)]
    quality = objectives[0][0]
    weights = [((s or {}).get("weights") or {}).get(quality, {}) for s in result.screens]
    return {"label": job["label"], "sampler": job["sampler"], "options": job["options"],
            "seed": job["seed"],
            "seeding": "warm" if warm else "none", "curve": curve, "hashes": result.hashes,
            "distinct": result.distinct, "cpu_seconds": seconds, "enqueued": len(enqueue),
            "source_weight": [None if not w else 1.0 - w.get("<this study>", 0.0)
                              for w in weights]}


def _jobs(labels: list[str], seeds: int, n_trials: dict[str, int],
          done: dict[tuple[str, int], dict]) -> list[dict[str, Any]]:
    jobs = []
    for label in labels:
        _, spec, sampler, source, transform = METHODS[label]
        for seed in range(seeds):
            if (label, seed) in done:
                continue
            src = done.get((source, seed)) if source else None
            if source and src is None:
                continue  # its source has not run yet
            phase = "mqar" if spec is MQAR else "lm"
            options = {"inner": "tpe"} if label == "surrogate_inner_tpe" else {}
            jobs.append({"label": label, "sampler": sampler, "seed": seed, "spec": spec,
                         "options": options,
                         "n_trials": n_trials[f"{sampler}_{phase}"], "transform": transform,
                         "source": {k: src[k] for k in ("label", "seed", "hashes")} if src
                         else None})
    return jobs


def _load(cache: Path) -> dict[tuple[str, int], dict]:
    if not cache.exists():
        return {}
    runs = [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
    return {(r["label"], r["seed"]): r for r in runs}


def _median_trials(runs: list[dict], label: str) -> float:
    hits = [trials_to_fraction(r["curve"], TARGET) for r in runs if r["label"] == label]
    return statistics.median(math.inf if h is None else h for h in hits)


def _transfer(runs: list[dict], label: str, baseline: str) -> dict[str, Any]:
    """Per seed, trials to 95% warm vs cold; where warm starting hurt; the source's weight."""
    by = {(r["label"], r["seed"]): r for r in runs}
    seeds = sorted(s for (lab, s) in by if lab == label and (baseline, s) in by)

    def hit(lab, s):
        h = trials_to_fraction(by[(lab, s)]["curve"], TARGET)
        return math.inf if h is None else h

    worse = [s for s in seeds if hit(label, s) > hit(baseline, s)]
    weights = {}
    for t in (10, 20, 40):
        at = [by[(label, s)]["source_weight"][t - 1] for s in seeds
              if len(by[(label, s)]["source_weight"]) >= t
              and by[(label, s)]["source_weight"][t - 1] is not None]
        weights[f"trial_{t}"] = statistics.median(at) if at else None
    return {"baseline": baseline, "median": _finite(_median_trials(runs, label)),
            "baseline_median": _finite(_median_trials(runs, baseline)),
            "seeds_worse_than_baseline": worse, "seeds_compared": len(seeds),
            "median_source_weight": weights,
            "median_enqueued": statistics.median(by[(label, s)]["enqueued"] for s in seeds)}


def compare_models(table_path: str, n_fit: int = 24, repeats: int = 10) -> dict[str, Any]:
    """How well each surrogate model ranks MQAR accuracy of unseen designs after `n_fit` random
    ones (what the screen needs early in a search): Spearman correlation on the rest, how often
    its predicted best design is in the true top 10, the calibration of its spread (share of
    truths within mean +- 1 sd), and CPU seconds per fit and prediction."""
    import numpy as np
    from scipy.stats import spearmanr

    from mixnas.orchestrator.surrogate_model import MODELS, Regressor
    from mixnas.search_space.features import FeatureTable, decision_features

    with Table(table_path) as table:
        rows = [r for r in table.rows().values() if r.status == "complete"]
    feats = [{**architecture_features(r.architecture), **decision_features(r.decisions)}
             for r in rows]
    X = FeatureTable(feats).matrix(feats)
    y = -np.array([r.metrics["accuracy"] for r in rows])  # loss orientation
    top = set(np.argsort(y)[:10])
    out = {}
    for kind in MODELS:
        rho, hits, inside, seconds = [], 0, [], 0.0
        for rep in range(repeats):
            order = np.random.default_rng(rep).permutation(len(y))
            fit, rest = order[:n_fit], order[n_fit:]
            started = time.process_time()
            mean, std = Regressor(kind, rep).fit(X[fit], y[fit]).predict(X[rest])
            seconds += time.process_time() - started
            rho.append(spearmanr(mean, y[rest]).statistic)
            hits += int(rest[int(np.argmin(mean))] in top)
            inside.append(float(np.mean(np.abs(y[rest] - mean) <= std)))
        out[kind] = {"median_spearman": float(np.median(rho)), "best_in_top10": hits / repeats,
                     "share_within_1sd": float(np.median(inside)),
                     "cpu_seconds_per_fit": seconds / repeats}
    return {"n_fit": n_fit, "repeats": repeats, "models": out}


def _finite(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else x


def plot(runs: list[dict], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("MQAR table", ["tpe", "surrogate", "surrogate_inner_tpe", "warm_reverse"]),
              ("LM table (bits per byte)", ["cold", "warm", "warm_inverted", "tpe_cold",
                                            "tpe_warm"])]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    for ax, (title, labels) in zip(axes, panels):
        if not any(lab in summary for lab in labels):
            ax.text(0.5, 0.5, "not run yet", ha="center", transform=ax.transAxes)
        for i, label in enumerate(lab for lab in labels if lab in summary):
            s = summary[label]
            x = range(1, len(s["median_fraction"]) + 1)
            hit = s["median_trials_to_95"]
            ax.plot(x, s["median_fraction"], color=f"C{i}",
                    label=f"{label} (median {hit if hit is not None else '>' + str(len(x))})")
            ax.fill_between(x, s["q25_fraction"], s["q75_fraction"], color=f"C{i}", alpha=0.12)
        ax.axhline(TARGET, color="grey", lw=0.8)
        ax.set(xlabel="trials", ylabel="hypervolume / full front", title=title, ylim=(0, 1.01))
        ax.grid(alpha=0.3)
        if any(lab in summary for lab in labels):
            ax.legend(fontsize=8, loc="lower right")
    ax = axes[2]
    for i, label in enumerate(("warm", "warm_inverted", "warm_reverse")):
        mine = [r["source_weight"] for r in runs if r["label"] == label]
        if not mine:
            continue
        n = max(len(w) for w in mine)
        med = [statistics.median([w[t] for w in mine if t < len(w) and w[t] is not None] or
                                 [math.nan]) for t in range(n)]
        ax.plot(range(1, n + 1), med, color=f"C{i}", label=label)
    if not ax.lines:
        ax.text(0.5, 0.5, "not run yet", ha="center", transform=ax.transAxes)
    ax.set(xlabel="trials", ylabel="weight of the earlier study (median over seeds)",
           title="How much the model trusts the earlier study", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--phase", choices=("mqar", "lm", "all"), default="all",
                        help="mqar: the runs that need only the MQAR table")
    parser.add_argument("--n-trials-tpe", type=int, default=200)
    parser.add_argument("--n-trials-surrogate", type=int, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=RESULTS / "warm_start_runs.jsonl")
    parser.add_argument("--out", type=Path, default=RESULTS / "warm_start")
    parser.add_argument("--summary-only", action="store_true",
                        help="write the JSON and PNG from the cached runs, running nothing")
    parser.add_argument("--note", default="", help="recorded in the JSON (how the runs were made)")
    args = parser.parse_args(argv)
    require_extra("matplotlib", "scipy")
    n_trials = {"tpe_mqar": args.n_trials_tpe, "tpe_lm": args.n_trials_tpe,
                "surrogate_mqar": args.n_trials_surrogate, "surrogate_lm": args.n_trials_surrogate}
    phases = {"mqar": ["mqar"], "lm": ["lm", "lm2"], "all": ["mqar", "lm", "lm2"]}[args.phase]
    phases = [] if args.summary_only else phases
    started = time.perf_counter()
    for phase in phases:
        labels = [m for m in args.methods if METHODS[m][0] == phase]
        jobs = _jobs(labels, args.seeds, n_trials, _load(args.cache))
        print(f"phase {phase}: {len(jobs)} runs", flush=True)
        with ProcessPoolExecutor(args.workers, initializer=_warm_up,
                                 initargs=(Grammar.load(GRAMMAR), _tables(phase))) as pool:
            for run in pool.map(_one, jobs):
                with args.cache.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                hit = trials_to_fraction(run["curve"], TARGET)
                print(f"{run['label']:14s} seed {run['seed']:2d}: {hit} trials to 95% "
                      f"({run['cpu_seconds']:.1f} cpu s)", flush=True)
    runs = [r for r in _load(args.cache).values()
            if r["seed"] < args.seeds and r["label"] in args.methods]
    missing = [m for m in ("tpe", "surrogate") if m not in {r["label"] for r in runs}]
    if missing:
        print(f"{', '.join(missing)} not run yet; no summary written")
        return 0
    write_summary(runs, args, argv, time.perf_counter() - started)
    return 0


def _tables(phase: str) -> list[str]:
    return [str(TABLE)] if phase == "mqar" else [str(TABLE), str(LM_TABLE)]


def write_summary(runs: list[dict], args, argv, wall: float) -> None:
    summary = summarise(runs)
    medians = dict.fromkeys(("tpe", "surrogate", "cold", "warm"))  # None: not run
    medians.update({label: s["median_trials_to_95"] for label, s in summary.items()})
    labels = {r["label"] for r in runs}
    tpe, surrogate = _median_trials(runs, "tpe"), _median_trials(runs, "surrogate")
    lm = {"cold", "warm"} <= labels
    cold, warm = (_median_trials(runs, "cold"), _median_trials(runs, "warm")) if lm else (
        math.nan, math.nan)
    result = {
        "benchmark": "warm_start",
        **environment("benchmarks.warm_start", argv),
        "wall_seconds": wall,
        "note": args.note,
        "seeds": list(range(args.seeds)),
        "seeds_per_method": {lab: sum(r["label"] == lab for r in runs) for lab in sorted(labels)},
        "n_trials": {"tpe": args.n_trials_tpe, "surrogate": args.n_trials_surrogate},
        "tables": {"mqar": MQAR, "lm": LM},
        "target_fraction": TARGET,
        "median_trials_to_95": medians,
        "targets": {
            "surrogate_vs_tpe": {"target": "surrogate <= tpe / 2 on the MQAR table",
                                 "ratio": _finite(surrogate / tpe), "met": surrogate <= tpe / 2},
            "warm_vs_cold": {"target": "warm <= cold / 2 on the LM table",
                             "ratio": _finite(warm / cold) if lm else None,
                             "met": bool(warm <= cold / 2) if lm else None},
        },
        "model_choice": compare_models(MQAR["table"]),
        "transfer": {label: _transfer(runs, label, base) for label, base in (
            ("warm", "cold"), ("warm_inverted", "cold"), ("warm_reverse", "surrogate"),
            ("tpe_warm", "tpe_cold")) if {label, base} <= labels},
        "summary": summary,
    }
    write_json(args.out.with_suffix(".json"), result)
    plot(runs, summary, args.out.with_suffix(".png"))
    print(json.dumps({"median_trials_to_95": medians, "targets": result["targets"]}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
