"""`evaluate`: build an architecture for a task, train it within a budget, and profile its cost.

This is what one search trial runs. Failures that belong to the architecture (it cannot be built,
its loss diverges, it does not fit in memory) raise `TrialFailed` with a one-line reason; a bad
task, budget, train or profile setting raises ValueError before any training starts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from mixnas.errors import first_line
from mixnas.evaluator.profiler import plugin_metrics, profile_run, resolve_profile
from mixnas.evaluator.tasks import get_task
from mixnas.evaluator.trainer import (
    Run,
    TrialFailed,
    resolve_budget,
    resolve_train,
    steps_per_run,
)
from mixnas.evaluator.trainer import train as train_runs
from mixnas.search_space.architecture import Architecture
from mixnas.search_space.model import build_model


@dataclass
class EvalResult:
    metrics: dict[str, float]  # task metrics at the end (or at the pruning rung)
    profile: dict[str, float | int]
    curve: list[dict[str, Any]]  # {step, tokens, train_loss, metrics, rung}
    vocab_size: int  # the vocabulary the model was built with
    state_dict: dict[str, torch.Tensor] | None  # CPU tensors with keep_weights (single-model tasks)
    pruned_at_step: int | None
    steps: int
    budget_steps: int
    wall_seconds: float


def resolve_device(device: Any) -> torch.device:
    """The torch device `device` names (None: CUDA when there is one, else the CPU).

    Raises:
        ValueError: `device: ...` for a name torch does not know, or a device this machine lacks.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError):
        raise ValueError(f"device: unknown device {device!r}; e.g. cpu, cuda or cuda:1") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index or 0) >= count:
            raise ValueError(f"device: {device!r} is not available here ({count} CUDA device(s))")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {device!r} is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: {device!r} is not supported; use cpu, cuda or mps")
    return dev


def check_seed(seed: Any) -> int:
    """A seed numpy and torch both accept: an int from 0 to 2**32 - 1; ValueError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 32:
        raise ValueError(f"seed: must be an int from 0 to {(1 << 32) - 1}, got {seed!r}")
    return seed


def evaluate(
    arch: Architecture,
    task: dict[str, Any],
    budget: dict[str, Any],
    train: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    device: str | None = None,
    on_rung: Callable[[int, int, dict], bool] | None = None,
    on_eval: Callable[[dict], None] | None = None,
    keep_weights: bool = False,
) -> EvalResult:
    """Train `arch` on `task` ({"name": ..., **settings}) for `budget` and profile it.

    `on_rung(i, step, metrics)` is called at each rung fraction of the budget; returning True
    stops the trial there (`pruned_at_step`). `on_eval(point)` receives every learning-curve point.
    A suite task trains one model per member task; its result carries no weights.
    """
    start = time.perf_counter()
    settings = dict(task)
    if "name" not in settings:
        raise ValueError("task needs a 'name'")
    task_obj = get_task(settings.pop("name"), **settings)
    budget = resolve_budget(budget)
    cfg = resolve_train(train)
    prof_cfg = resolve_profile(profile)
    dev = resolve_device(device)
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    # torch.manual_seed also seeds CUDA, which costs ~0.2 s when CUDA is not initialised
    (torch.manual_seed if dev.type == "cuda" else torch.random.default_generator.manual_seed)(seed)
    generator = torch.Generator().manual_seed(seed)
    steps = steps_per_run(budget, task_obj, cfg["batch_size"])
    if cfg["compile"]:
        # a fresh compile cache for each trial: a worker trains many designs one after another,
        # and past torch's recompile limit a new design would silently run eagerly
        torch.compiler.reset()
    try:
        runs = [
            Run(part, _build(arch, part.vocab_size, dev), cfg, steps, dev, generator)
            for part in task_obj.parts()
        ]
        outcome = train_runs(task_obj, runs, budget, on_rung, on_eval)
        state_dict = None
        if keep_weights and len(runs) == 1:
            state_dict = {
                k: v.detach().cpu().clone() for k, v in runs[0].model.state_dict().items()
            }
        widest = max(runs, key=lambda run: run.task.vocab_size)
        prof = profile_run(widest, prof_cfg)
        prof.update(plugin_metrics(arch, widest.model))
    except Exception as exc:
        if _is_oom(exc):
            raise TrialFailed(f"out of memory: {first_line(exc)}") from None
        raise
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return EvalResult(
        metrics=outcome.metrics,
        profile=prof,
        curve=outcome.curve,
        vocab_size=task_obj.vocab_size,
        state_dict=state_dict,
        pruned_at_step=outcome.pruned_at_step,
        steps=outcome.steps,
        budget_steps=outcome.budget_steps,
        wall_seconds=time.perf_counter() - start,
    )


def _build(arch: Architecture, vocab_size: int, device: torch.device) -> nn.Module:
    try:
        return build_model(arch, vocab_size).to(device)
    except Exception as exc:
        if _is_oom(exc):
            raise
        raise TrialFailed(f"model build failed: {type(exc).__name__}: {first_line(exc)}") from None


def _is_oom(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )
