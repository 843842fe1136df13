"""Train one design with the reference ops, the Triton ops and the dispatched ops, and compare the
loss curves (issue 17: is the GPU path the same model as the CPU path?).

The design touches every kernel op: GQA attention, sliding-window attention, gated DeltaNet (delta
rule with a per-token decay), Mamba-2 (linear attention, per-token decay), GLA (per-channel
decay), Hyena (causal convolutions), RMSNorm and SwiGLU. Each mode trains it from the same seed
on the same MQAR batches (`MIXNAS_KERNELS` selects the ops); the result is each curve, the final
metrics, and the largest relative difference of the training loss from the reference run over the
evaluation points. On a GPU training runs under bf16 autocast, so a few percent is rounding,
not a bug; a wrong kernel shows up as a curve that departs and stays away.

Usage: python -m benchmarks.gpu_loss_curves [--steps 200] [--eval-every 20] [--modes ...]
       [--device cuda|cpu] [--out PATH] [--check]
Needs a CUDA GPU unless `--device cpu` (there the Triton mode runs under TRITON_INTERPRET=1:
minutes even for a few steps). `--check` validates the arguments and prints the plan.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, device_slug, environment, write_json

MODES = {"reference": "reference", "triton": "triton", "dispatched": ""}
DESIGN = {
    "d_model": 64,
    "tie_embeddings": False,
    "layers": [
        {"token_mixer": {"type": "attention", "params": {"heads": 4, "kv_heads": 2}},
         "channel_mixer": {"type": "swiglu"}},
        {"token_mixer": {"type": "gated_deltanet", "params": {"heads": 4}},
         "channel_mixer": {"type": "swiglu"}},
        {"token_mixer": {"type": "mamba2", "params": {"heads": 4, "expand": 2}},
         "channel_mixer": {"type": "none"}},
        {"token_mixer": {"type": "gla", "params": {"heads": 4, "gate_rank": 16}},
         "channel_mixer": {"type": "swiglu"}},
        {"token_mixer": {"type": "hyena", "params": {"order": 2}},
         "channel_mixer": {"type": "swiglu"}},
        {"token_mixer": {"type": "attention", "params": {"heads": 4, "kv_heads": 1,
                                                         "window": 16}},
         "channel_mixer": {"type": "swiglu"}},
    ],
}
TASK = {"name": "mqar", "vocab_size": 64, "seq_len": 64, "num_kv_pairs": 8}
TRAIN = {"lr": 3.0e-3, "batch_size": 32, "schedule": "wsd"}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_loss_curves",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON path (default benchmarks/results/"
                                      "gpu_loss_curves_<device>.json)")
    parser.add_argument("--check", action="store_true", help="validate arguments, print the plan")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.eval_every < 1:
        parser.error(f"--steps and --eval-every must be positive, got {args.steps}, "
                     f"{args.eval_every}")
    if "reference" not in args.modes:
        parser.error("--modes must include 'reference' (the curve the others are compared with)")
    return args


def train(mode: str, args) -> dict:
    """One training run of DESIGN with `MIXNAS_KERNELS` set for `mode`."""
    from mixnas.evaluator.evaluation import evaluate
    from mixnas.search_space.architecture import Architecture

    os.environ["MIXNAS_KERNELS"] = MODES[mode]
    start = time.perf_counter()
    result = evaluate(Architecture.from_dict(DESIGN), TASK,
                      {"steps": args.steps, "eval_every": args.eval_every}, TRAIN,
                      {"latency": False}, seed=args.seed, device=args.device)
    return {"mode": mode, "kernels": MODES[mode] or "auto", "metrics": result.metrics,
            "curve": [{"step": p["step"], "train_loss": p["train_loss"],
                       "loss": p["metrics"].get("loss")} for p in result.curve],
            "wall_seconds": time.perf_counter() - start}


def max_relative_difference(curve, reference, key="train_loss") -> float | None:
    """max over shared evaluation steps of |x - ref| / |ref|."""
    ref = {p["step"]: p[key] for p in reference if p[key] is not None}
    diffs = [abs(p[key] - ref[p["step"]]) / abs(ref[p["step"]])
             for p in curve if p[key] is not None and ref.get(p["step"])]
    return max(diffs) if diffs else None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.check:
        print(f"gpu_loss_curves: would train a {len(DESIGN['layers'])}-layer design for "
              f"{args.steps} steps on {args.device} with kernels {', '.join(args.modes)}")
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_loss_curves: needs a CUDA GPU (none here); --device cpu runs it on the CPU",
              file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    modes = ["reference"] + [m for m in dict.fromkeys(args.modes) if m != "reference"]
    runs = [train(mode, args) for mode in modes]
    reference = runs[0]["curve"]
    for run in runs:
        run["max_rel_diff_train_loss"] = max_relative_difference(run["curve"], reference)
        run["max_rel_diff_eval_loss"] = max_relative_difference(run["curve"], reference, "loss")
    out = Path(args.out) if args.out else RESULTS / f"gpu_loss_curves_{device_slug(name)}.json"
    write_json(out, {"environment": environment("benchmarks.gpu_loss_curves", argv),
                     "device": name, "design": DESIGN, "task": TASK, "train": TRAIN,
                     "steps": args.steps, "runs": runs})
    for run in runs:
        diff = run["max_rel_diff_train_loss"]
        print(f"{run['mode']:11s} final loss {run['curve'][-1]['train_loss']:.4f}  "
              f"max rel diff vs reference {diff:.2%}  ({run['wall_seconds']:.0f} s)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
