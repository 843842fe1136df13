"""CPU cost of one quickstart trial evaluation on one core.

Runs `mixnas.evaluator.evaluate` with the quickstart study's task, budget, training and profile
settings (read from studies/quickstart.yaml) on architectures drawn from its search space, with
`torch.set_num_threads(1)` as a search worker does, and records process CPU seconds (less
sensitive than wall time to other jobs on a shared machine) per evaluation. Building the task's
data happens once per worker process and is timed separately.

Usage: python -m benchmarks.eval_cost [--n 4] [--seed 0] [--out benchmarks/results/eval_cost.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import RESULTS, environment, write_json
from mixnas.evaluator import evaluate, get_task
from mixnas.search_space.grammar import sample_architectures

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(STUDIES / "quickstart.yaml"))
    parser.add_argument("--n", type=int, default=4, help="architectures to evaluate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "eval_cost.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    study = yaml.safe_load(Path(args.study).read_text())
    space = Path(args.study).parent / study["search_space"]
    task, budget = dict(study["task"]), dict(study["budget"])
    if study.get("pruning", {}).get("enabled"):
        budget["rungs"] = study["pruning"]["rungs"]  # evaluations at the rungs cost time too
    settings = {k: v for k, v in task.items() if k != "name"}
    cpu0 = time.process_time()
    get_task(task["name"], **settings)
    data_seconds = time.process_time() - cpu0

    trials = []
    for arch in sample_architectures(space, args.n, args.seed):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = evaluate(
            arch,
            task,
            budget,
            study.get("train"),
            study.get("profile"),
            on_rung=lambda i, step, metrics: False,
        )
        trials.append(
            {
                "arch_hash": arch.hash,
                "mixers": arch.mixer_counts(),
                "d_model": arch.d_model,
                "non_embedding_params": result.profile["non_embedding_params"],
                "steps": result.steps,
                "accuracy": round(result.metrics["accuracy"], 4),
                "cpu_seconds": round(time.process_time() - cpu0, 2),
                "wall_seconds": round(time.perf_counter() - wall0, 2),
            }
        )
        print(trials[-1], flush=True)
    cpu = [t["cpu_seconds"] for t in trials]
    data = {
        **environment("benchmarks.eval_cost", argv),
        "study": args.study,
        "task": task,
        "budget": budget,
        "train": study.get("train"),
        "profile": study.get("profile"),
        "threads": torch.get_num_threads(),
        "task_data_cpu_seconds_once_per_process": round(data_seconds, 2),
        "trials": trials,
        "cpu_seconds_median": statistics.median(cpu),
        "cpu_seconds_max": max(cpu),
        "target_cpu_seconds": 20,
    }
    write_json(Path(args.out), data)
    return data


if __name__ == "__main__":
    main()
