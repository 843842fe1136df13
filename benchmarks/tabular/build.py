"""Build the tabular benchmark: train every architecture of a finite grammar once and store it.

    python -m benchmarks.tabular.build [--task mqar|lm] [--workers 1] [--limit N] [--table PATH]

Resumable: architectures already in the table are skipped, so an interrupted build continues where
it stopped. Two tables exist, one per task, so that transfer between tasks (warm starts) can be
measured on exact answers:

- `mqar` (tabular.sqlite): one evaluation costs ~2-6 CPU seconds on one core and accuracy spreads
  from chance (~0.07) to ~0.35 across the space.
- `lm` (tabular_lm.sqlite): byte-level language modelling on the Python standard library's own
  source (the task's default corpus), 200 steps of 16 windows of 32 bytes; one evaluation costs
  ~4-18 CPU seconds (gated DeltaNet stacks are the slowest) and bits per byte spread from ~2.8 to
  ~3.7. Every task setting is spelt out here, so a change of the task's defaults cannot silently
  change what the table measures (a build refuses a table whose stored settings differ).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from benchmarks.common import environment
from benchmarks.tabular.table import Row, Table, distinct_architectures
from mixnas.search_space.grammar import Grammar

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GRAMMAR = REPO / "studies/spaces/tabular.yaml"
TABLE = HERE / "tabular.sqlite"  # not *.db: the repository ignores those
LM_TABLE = HERE / "tabular_lm.sqlite"

# What every row is measured with (stored in the table's meta; `evaluate` arguments).
SETTINGS: dict[str, Any] = {
    "task": {"name": "mqar", "vocab_size": 32, "seq_len": 32, "num_kv_pairs": 4,
             "num_train": 20_000, "num_test": 500},
    "budget": {"steps": 150},
    "train": {"lr": 3e-3, "batch_size": 32, "eval_batch_size": 500},
    "profile": {"latency": False, "context_length": 512},
    "seed": 0,
}
LM_SETTINGS: dict[str, Any] = {
    "task": {"name": "lm", "files": None, "max_bytes": 1_000_000, "seq_len": 32,
             "val_frac": 0.1, "num_val": 64},
    "budget": {"steps": 200},
    "train": {"lr": 3e-3, "batch_size": 16, "eval_batch_size": 64},
    "profile": {"latency": False, "context_length": 512},
    "seed": 0,
}
# task -> (settings, default table)
TASKS: dict[str, tuple[dict[str, Any], Path]] = {
    "mqar": (SETTINGS, TABLE),
    "lm": (LM_SETTINGS, LM_TABLE),
}


def evaluate_one(arch_json: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Train and profile one architecture on one thread (runs in a worker process)."""
    import torch

    from mixnas.evaluator import TrialFailed, evaluate
    from mixnas.search_space import Architecture

    torch.set_num_threads(1)
    start = time.process_time()
    try:
        s = settings
        result = evaluate(Architecture.from_json(arch_json), s["task"], s["budget"], s["train"],
                          s["profile"], seed=s["seed"])
    except TrialFailed as exc:
        return {"status": "failed", "reason": str(exc), "seconds": time.process_time() - start}
    return {
        "status": "complete",
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "profile": {k: float(v) for k, v in result.profile.items()},
        "seconds": time.process_time() - start,
    }


def build(table_path: Path, grammar_path: Path, workers: int = 1, limit: int | None = None,
          settings: dict[str, Any] = SETTINGS, log=print, argv: list[str] | None = None) -> int:
    """Evaluate the architectures missing from the table; returns how many were added."""
    grammar = Grammar.load(grammar_path)
    space = distinct_architectures(grammar)
    with Table(table_path) as table:
        _check_meta(table, grammar_path, settings)
        have = set(table.rows())
        todo = [h for h in space if h not in have]
        log(f"{len(space)} architectures in {grammar_path.name}; {len(have)} in the table; "
            f"{len(todo)} to evaluate")
        for h in list(todo):  # infeasible ones need no training
            decisions, arch = space[h]
            reasons = grammar.check_constraints(arch)
            if reasons:
                table.add(Row(h, arch.canonical_json(), decisions, "infeasible",
                              reason="; ".join(reasons)))
                todo.remove(h)
        todo = todo[:limit] if limit is not None else todo
        jobs = {h: space[h][1].canonical_json() for h in todo}
        started = time.perf_counter()
        for done, (h, result) in enumerate(_run(jobs, settings, workers), 1):
            table.add(Row(h, jobs[h], space[h][0], result["status"], result.get("metrics"),
                          result.get("profile"), result.get("reason"), result["seconds"]))
            shown = " ".join(f"{k} {v:.3f}" for k, v in (result.get("metrics") or {}).items())
            log(f"[{done}/{len(jobs)}] {h} {result['status']} {shown} "
                f"cpu {result['seconds']:.1f}s elapsed {time.perf_counter() - started:.0f}s")
        env = environment("benchmarks.tabular.build", argv)
        table.set_meta(built_at=env["date"], command=env["command"], machine=env["machine"],
                       versions=env["versions"])
    return len(jobs)


def _run(jobs: dict[str, str], settings: dict[str, Any], workers: int):
    if workers == 1:
        for h, arch_json in jobs.items():
            yield h, evaluate_one(arch_json, settings)
        return
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(evaluate_one, job, settings): h for h, job in jobs.items()}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _check_meta(table: Table, grammar_path: Path, settings: dict[str, Any]) -> None:
    """A table is one measurement: refuse to mix rows from other settings or another grammar."""
    meta = table.meta()
    wanted = {"settings": settings, "grammar": grammar_path.read_text()}
    if meta.get("settings") is None:
        table.set_meta(**wanted, grammar_file=str(grammar_path.relative_to(REPO))
                       if grammar_path.is_relative_to(REPO) else str(grammar_path))
        return
    for key, value in wanted.items():
        if meta.get(key) != value:
            raise SystemExit(
                f"{table.path}: its {key} differ from this build's; "
                "use another --table or delete the file to rebuild"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="mqar",
                        help="which proxy task the table measures (its settings are fixed above)")
    parser.add_argument("--table", type=Path, help="default: the task's table beside this file")
    parser.add_argument("--grammar", type=Path, default=GRAMMAR)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit", type=int, help="evaluate at most this many new architectures")
    args = parser.parse_args(argv)
    settings, table = TASKS[args.task]
    build(args.table or table, args.grammar.resolve(), args.workers, args.limit,
          settings=settings, log=lambda m: print(m, flush=True), argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
