"""Proxy fidelity: do cheap scores rank architectures the way expensive ones do?

For `--n` architectures drawn from a grammar (by default the default space, keeping only draws no
wider than `--max-width` and no deeper than `--max-depth` so that they train on a CPU), this
measures per architecture, on the quick task (MQAR, or with `--study` the study file's own task,
training settings and step budget, so that the figure is the fidelity of that study's proxy):

- `proxy`: accuracy after a short run of `--proxy-steps` (its own cosine schedule);
- `rung`: accuracy at the 1/multiplier rung of the long run (what rung pruning sees);
- `full`: accuracy after `--multiplier` times as many steps;
- `*_loss`: the same three as test cross-entropy (a score that still ranks designs before any of
  them has learned to recall);
- `mad`: the `mad` suite's mean accuracy (reduced settings below, `--mad-steps` per task);
- `lm_val_loss`: byte-level LM validation loss on the stdlib corpus after `--lm-steps`.

and reports Spearman rank correlations: proxy vs full and rung vs full (accuracy and loss), and
MQAR/MAD vs LM loss (negative is agreement: higher accuracy, lower loss). Writes JSON and a PNG
of the scatter plots.

Usage: python -m benchmarks.proxy_fidelity [--n 20] [--workers 1] [--proxy-steps 50]
       [--multiplier 8] [--mad-steps 240] [--lm-steps 200] [--space PATH] [--seed 0]
       [--study studies/quickstart.yaml --mqar-only]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, environment, require_extra, write_json

SPACES = Path(__file__).resolve().parents[1] / "studies" / "spaces"

MQAR = {"name": "mqar", "vocab_size": 64, "seq_len": 64, "num_kv_pairs": 8, "num_test": 1000}
MQAR_TRAIN = {"lr": 3e-3, "batch_size": 32}
SMALL = {"num_train": 2_000, "num_test": 256}
MAD = {
    "name": "mad",
    "in_context_recall": {"seq_len": 64, **SMALL},
    "noisy_in_context_recall": {"seq_len": 64, **SMALL},
    "fuzzy_in_context_recall": {"seq_len": 64, "num_keys": 4, **SMALL},
    "selective_copying": {"seq_len": 64, "num_tokens_to_copy": 8, **SMALL},
    "compression": {"seq_len": 16, **SMALL},
    "memorization": {"vocab_size": 64, "seq_len": 32, "num_test": 256},
}
MAD_TRAIN = {"lr": 3e-3, "batch_size": 32}
LM = {"name": "lm", "seq_len": 128, "max_bytes": 1_000_000, "num_val": 64}
LM_TRAIN = {"lr": 3e-3, "batch_size": 16}
PROFILE = {"latency": False, "context_length": 256}


def score(job: tuple[int, dict, dict]) -> dict[str, Any]:
    """All scores of one architecture (runs in a worker process on one thread)."""
    import torch

    from mixnas.evaluator import TrialFailed, evaluate
    from mixnas.search_space.architecture import Architecture

    torch.set_num_threads(1)
    index, arch_dict, cfg = job
    arch = Architecture.from_dict(arch_dict)
    row: dict[str, Any] = {
        "index": index,
        "arch_hash": arch.hash,
        "d_model": arch.d_model,
        "depth": len(arch.layers),
        "mixers": arch.mixer_counts(),
    }
    start = time.process_time()
    proxy, long = cfg["proxy_steps"], cfg["proxy_steps"] * cfg["multiplier"]
    try:
        task, train = cfg["task"], cfg["train"]
        quick = evaluate(arch, task, {"steps": proxy}, train, PROFILE)
        full = evaluate(
            arch, task, {"steps": long, "rungs": [1 / cfg["multiplier"]]}, train, PROFILE
        )
        if not cfg["mqar_only"]:
            mad = evaluate(arch, MAD, {"steps": 6 * cfg["mad_steps"]}, MAD_TRAIN, PROFILE)
            lm = evaluate(arch, LM, {"steps": cfg["lm_steps"]}, LM_TRAIN, PROFILE)
            row.update(mad=mad.metrics["accuracy"], lm_val_loss=lm.metrics["val_loss"])
    except TrialFailed as exc:
        return {**row, "failed": str(exc)}
    rung = next((p for p in full.curve if p["rung"] == 0), full.curve[-1])
    return {
        **row,
        "non_embedding_params": full.profile["non_embedding_params"],
        "proxy": quick.metrics["accuracy"],
        "rung": rung["metrics"]["accuracy"],
        "full": full.metrics["accuracy"],
        "proxy_loss": quick.metrics["loss"],
        "rung_loss": rung["metrics"]["loss"],
        "full_loss": full.metrics["loss"],
        "cpu_seconds": round(time.process_time() - start, 1),
    }


def sample(space: Path, n: int, seed: int, max_width: int, max_depth: int) -> list:
    """The first `n` draws that fit the width and depth caps."""
    from mixnas.search_space.grammar import Grammar

    grammar = Grammar.load(space)
    draws = grammar.sample_many(200 * n, seed)
    kept = [a for a in draws if a.d_model <= max_width and len(a.layers) <= max_depth]
    if len(kept) < n:
        raise SystemExit(f"only {len(kept)} of {len(draws)} draws fit the caps")
    return kept[:n]


def quick_task(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The task, training settings and proxy steps scored: the study's, or MQAR's."""
    if args.study:
        from mixnas.orchestrator.config import load_study_config

        study = load_study_config(args.study)
        if "steps" not in study.budget:
            raise SystemExit(f"{args.study}: --study needs a budget in steps")
        task = {**study.task, "num_test": MQAR["num_test"]}
        return task, study.train, args.proxy_steps or study.budget["steps"]
    task = {**MQAR, "seq_len": args.mqar_seq_len, "num_kv_pairs": args.mqar_kv_pairs}
    return task, MQAR_TRAIN, args.proxy_steps or 50


def correlations(rows: list[dict]) -> dict[str, dict[str, float]]:
    from scipy.stats import spearmanr

    pairs = {
        "proxy_vs_full": ("proxy", "full"),
        "rung_vs_full": ("rung", "full"),
        "proxy_vs_full_loss": ("proxy_loss", "full_loss"),
        "rung_vs_full_loss": ("rung_loss", "full_loss"),
        "mqar_vs_lm_loss": ("full", "lm_val_loss"),
        "mad_vs_lm_loss": ("mad", "lm_val_loss"),
    }
    out = {}
    for name, (a, b) in pairs.items():
        if a not in rows[0] or b not in rows[0]:
            continue  # --mqar-only
        rho, p = spearmanr([r[a] for r in rows], [r[b] for r in rows])
        out[name] = {"spearman": round(float(rho), 3), "p_value": round(float(p), 4)}
    return out


def plot(rows: list[dict], corr: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("proxy", "full", "proxy_vs_full"),
        ("rung", "full", "rung_vs_full"),
        ("proxy_loss", "full_loss", "proxy_vs_full_loss"),
        ("full", "lm_val_loss", "mqar_vs_lm_loss"),
        ("mad", "lm_val_loss", "mad_vs_lm_loss"),
    ]
    panels = [p for p in panels if p[2] in corr]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2))
    for ax, (x, y, name) in zip(axes, panels):
        ax.scatter([r[x] for r in rows], [r[y] for r in rows], s=18)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{name}: Spearman {corr[name]['spearman']:+.2f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(SPACES / "hybrid.yaml"))
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-width", type=int, default=64)
    parser.add_argument("--max-depth", type=int, default=4)
    parser.add_argument("--proxy-steps", type=int, help="default: 50, or the study's budget")
    parser.add_argument("--multiplier", type=int, default=8)
    parser.add_argument("--mad-steps", type=int, default=240, help="steps per MAD task")
    parser.add_argument("--lm-steps", type=int, default=200)
    parser.add_argument("--mqar-seq-len", type=int, default=MQAR["seq_len"])
    parser.add_argument("--mqar-kv-pairs", type=int, default=MQAR["num_kv_pairs"])
    parser.add_argument("--mqar-only", action="store_true", help="skip the MAD and LM scores")
    parser.add_argument(
        "--study", help="score this study file's task, train settings and budget (steps)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "proxy_fidelity.json"))
    args = parser.parse_args(argv)
    require_extra("matplotlib", "scipy")
    archs = sample(Path(args.space), args.n, args.seed, args.max_width, args.max_depth)
    task, train, args.proxy_steps = quick_task(args)
    cfg = {
        "proxy_steps": args.proxy_steps,
        "multiplier": args.multiplier,
        "mad_steps": args.mad_steps,
        "lm_steps": args.lm_steps,
        "task": task,
        "train": train,
        "mqar_only": args.mqar_only,
    }
    jobs = [(i, a.to_dict(), cfg) for i, a in enumerate(archs)]
    start = time.perf_counter()
    rows: list[dict] = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        for row in pool.imap_unordered(score, jobs):
            rows.append(row)
            print(row, flush=True)
            data = report(rows, args, argv, cfg, time.perf_counter() - start)  # partial ones too
    return data


def report(rows: list[dict], args: argparse.Namespace, argv, cfg: dict, wall: float) -> dict:
    """Write the JSON (and the PNG once three architectures are scored) for `rows` so far."""
    rows = sorted(rows, key=lambda r: r["index"])
    ok = [r for r in rows if "failed" not in r]
    corr = correlations(ok) if len(ok) >= 3 else {}
    out = Path(args.out)
    data = {
        **environment("benchmarks.proxy_fidelity", argv),
        "settings": {
            **vars(args),
            "task": cfg["task"],
            "train": cfg["train"],
            "mad": MAD,
            "mad_train": MAD_TRAIN,
            "lm": LM,
            "lm_train": LM_TRAIN,
        },
        "wall_seconds": round(wall, 1),
        "n_scored": len(ok),
        "n_planned": args.n,
        "correlations": corr,
        "rows": rows,
    }
    write_json(out, data)
    if corr:
        plot(ok, corr, out.with_suffix(".png"))
    return data


if __name__ == "__main__":
    main()
