"""What one Ray worker does for one trial: train and profile, write the learning curve as it goes,
and stop at a rung when the study already holds a clearly better and cheaper design.

The worker writes curve points straight to the study database (so the dashboard sees them live and
other workers can compare at rungs); the driver alone writes the trial's final state.

A trial with a GPU share (`resources.gpus_per_trial`) trains on CUDA; Ray sets the worker's
CUDA_VISIBLE_DEVICES to the GPU it shares. Where that GPU is only declared (`ray start
--num-gpus` on a machine without CUDA, as the tests do) the trial trains on the CPU instead, logs a
warning, and says so in its result (the driver shows it once), rather than failing every trial.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import traceback
from typing import Any

from mixnas.orchestrator.pruning import RungEntry, as_float_dict, dominator, split_objectives
from mixnas.orchestrator.trials import TrialPayload, TrialResult
from mixnas.storage import RDBStorage, utcnow

log = logging.getLogger(__name__)


def run_trial(payload: TrialPayload) -> TrialResult:
    """Evaluate one architecture; never raises for a trial's own failure (returns the reason).

    Args:
        payload: The trial (the driver wrote its row, state running).

    Returns:
        Its result: complete, pruned (at a rung) or failed (with the reason).
    """
    import torch

    from mixnas.evaluator import TrialFailed

    torch.set_num_threads(payload.threads)
    storage = RDBStorage(payload.storage, "existing")
    worker = f"{socket.gethostname()}:{os.getpid()}"
    # the trial starts now, not when the driver queued it (a packed cluster may hold it back):
    # started_at + compute_seconds is the span it ran
    began, started = utcnow(), time.perf_counter()
    storage.update_trial(payload.trial_id, started_at=began, worker=worker)
    device, note = trial_device(payload.gpus)
    try:
        from mixnas.search_space.plugins import load_sources

        load_sources(payload.plugins)
        result = _evaluate(payload, storage, started, worker, device)
        result.device, result.device_note = device, note
        return result
    except TrialFailed as exc:
        reason = str(exc)
    except Exception as exc:  # a crash in model code must fail the trial, not the study
        reason = f"error: {traceback.format_exception_only(type(exc), exc)[-1].strip()}"
    return TrialResult.failed(reason, seconds=time.perf_counter() - started, worker=worker,
                              device=device, device_note=note)


def trial_device(gpus: float) -> tuple[str, str | None]:
    """The device a trial trains on: CUDA when it has a GPU share and CUDA works here, else CPU.

    Args:
        gpus: The trial's GPU share (0: none).

    Returns:
        ('cuda' or 'cpu', why a trial with a GPU share trains on the CPU, or None).
    """
    if gpus <= 0:
        return "cpu", None
    import torch

    if torch.cuda.is_available():
        return "cuda", None
    note = (f"its GPU share ({gpus:g}) has no usable CUDA device on {socket.gethostname()} "
            "(torch.cuda.is_available() is False): trained on the CPU")
    log.warning("mixnas trial: %s", note)
    return "cpu", note


def _evaluate(payload: TrialPayload, storage: RDBStorage, started: float,
              worker: str, device: str) -> TrialResult:
    from mixnas.evaluator import evaluate, get_task
    from mixnas.search_space import Architecture
    from mixnas.search_space.model import state_dict_bytes

    arch = Architecture.from_json(payload.arch_json)
    task = payload.task
    settings = {k: v for k, v in task.items() if k != "name"}
    quality_dirs, cost_dirs = split_objectives(payload.objectives)
    costs = _upfront_costs(arch, get_task(task["name"], **settings).vocab_size, payload)
    storage.update_trial(payload.trial_id, profile=costs)

    def on_eval(point: dict[str, Any]) -> None:
        storage.add_curve_point(
            payload.trial_id, step=int(point.get("step", 0)), tokens=int(point.get("tokens", 0)),
            train_loss=_finite_or_none(point.get("train_loss")),
            metrics=as_float_dict(point.get("metrics")), rung=point.get("rung"),
        )

    def on_rung(rung: int, step: int, metrics: dict[str, Any]) -> bool:
        pruning = payload.pruning
        if not pruning.enabled or not quality_dirs:
            return False
        others = _rung_entries(storage, payload.study_id, rung, set(quality_dirs))
        if len(others) < pruning.min_trials:
            return False
        me = RungEntry(payload.number, as_float_dict(metrics), as_float_dict(costs))
        return dominator(me, others, quality_dirs, cost_dirs, pruning.margin) is not None

    result = evaluate(
        arch, task, payload.budget, payload.train or None, payload.profile or None,
        seed=payload.seed, on_rung=on_rung, on_eval=on_eval, keep_weights=payload.keep_weights,
        device=device,
    )
    return TrialResult(
        status="pruned" if result.pruned_at_step is not None else "complete",
        metrics=as_float_dict(result.metrics),
        profile={**costs, **as_float_dict(result.profile)},
        pruned_at_step=result.pruned_at_step,
        steps=result.steps,
        budget_steps=result.budget_steps,
        vocab_size=result.vocab_size,
        weights=state_dict_bytes(result.state_dict) if result.state_dict else None,
        seconds=time.perf_counter() - started,
        worker=worker,
    )


def _upfront_costs(arch, vocab_size: int, payload: TrialPayload) -> dict[str, float]:
    """Analytic costs known before training, so rung comparisons can use them."""
    from mixnas.evaluator.profiler import plugin_metrics
    from mixnas.search_space import build_model

    context = int(payload.profile.get("context_length", 2048))
    model = build_model(arch, vocab_size)
    return {
        **plugin_metrics(arch),
        "params": float(model.num_params(non_embedding=False)),
        "non_embedding_params": float(model.num_params(non_embedding=True)),
        "state_bytes": float(model.state_bytes(context)),
        "flops_per_token": float(model.flops_per_token(context)),
    }


def _rung_entries(storage: RDBStorage, study_id: int, rung: int,
                  quality: set[str]) -> list[RungEntry]:
    """Every other trial's standing at this rung, with the costs it reported up front."""
    return [
        RungEntry(number, as_float_dict(metrics), as_float_dict(profile))
        for number, profile, metrics in storage.get_rung_standings(study_id, rung)
        if metrics and quality & set(metrics)
    ]


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None
