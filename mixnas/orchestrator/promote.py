"""Promotion: train a study's best designs again at a larger scale and check that the ranking holds.

A search on small proxies is only worth its savings if what wins small still wins large. `promote`
takes the top-K designs of a study's Pareto front by its first quality objective, scales each one
(S x width, S x depth by repeating the layer pattern, S x training budget), trains them as a new
study `<name>-x<S>` linked to the parent (its `parent_study`, and each trial's `parent_trial`)
through the usual driver, and reports the Spearman rank correlation of the quality objective
between the two scales.
"""

from __future__ import annotations

import math
from typing import Any

from mixnas.orchestrator.config import Objective, StudyConfig
from mixnas.orchestrator.study import StudyHandle, create_study, load_study, pareto_front
from mixnas.search_space.architecture import Architecture, Layer
from mixnas.search_space.constraints import footprint

_WIDTH_TRIES = 16  # multiples of the width quantum tried when a rounded width does not build


def promoted_name(name: str, scale: float) -> str:
    return f"{name}-x{scale:g}"


def scale_architecture(arch: Architecture, scale: float) -> Architecture:
    """`arch` with S x the width and S x the depth (its layer pattern repeated cyclically).

    The width is rounded to a multiple of 8 x the largest head count (so every head keeps a width
    divisible by 8); parameters that are absolute sizes (windows, state sizes, ranks) are kept."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    quantum = 8 * math.lcm(*_head_counts(arch.canonical_dict()["layers"]), 1)
    depth = max(1, round(len(arch.layers) * scale))
    layers = [Layer.from_dict(arch.layers[i % len(arch.layers)].to_dict()) for i in range(depth)]
    width = max(quantum, round(arch.d_model * scale / quantum) * quantum)
    problem = ""
    for _ in range(_WIDTH_TRIES):
        scaled = Architecture(width, layers, arch.norm, arch.tie_embeddings, arch.name)
        try:
            footprint(scaled)
            return scaled
        except ValueError as exc:
            problem = str(exc)
            width += quantum
    raise ValueError(f"cannot scale architecture {arch.hash} by {scale:g}: {problem}")


def _head_counts(mixers: Any) -> list[int]:
    """Every `heads` value in canonical mixer data (parallel branches included)."""
    if isinstance(mixers, list):
        return [h for item in mixers for h in _head_counts(item)]
    if not isinstance(mixers, dict):
        return []
    found = [mixers["heads"]] if isinstance(mixers.get("heads"), int) else []
    return found + [h for value in mixers.values() for h in _head_counts(value)]


def scale_budget(budget: dict[str, Any], scale: float) -> dict[str, Any]:
    """S x the training steps or tokens; evaluation spacing is kept."""
    out = dict(budget)
    for key in ("steps", "tokens"):
        if key in out:
            out[key] = max(1, round(out[key] * scale))
    return out


def quality_objective(config: StudyConfig) -> Objective:
    """The study's first objective that the task measures (not a cost from the profiler)."""
    from mixnas.evaluator import task_metric_names

    settings = {k: v for k, v in config.task.items() if k != "name"}
    metrics = set(task_metric_names(config.task["name"], **settings))
    for objective in config.objectives:
        if objective.name in metrics:
            return objective
    raise ValueError(
        f"study '{config.name}' has no quality objective (a metric of task "
        f"'{config.task['name']}') to rank designs by"
    )


def top_designs(front: list[dict[str, Any]], objective: Objective, k: int) -> list[dict[str, Any]]:
    """The k best front members by `objective` (ties: the earlier trial)."""
    sign = -1 if objective.direction == "maximize" else 1
    usable = [item for item in front if item["architecture"] is not None]
    return sorted(usable, key=lambda i: (sign * i["values"][objective.name], i["trial"]))[:k]


def _label(parent: str, trial: int) -> str:
    """The name a promoted design is shown by (the link itself is its trial's `parent_trial`)."""
    return f"{parent}#{trial}"


def promotion_config(parent: StudyConfig, picks: list[dict[str, Any]], scale: float,
                     workers: int | None = None) -> StudyConfig:
    """The promoted study: the parent's settings at S x budget, the scaled designs as baselines.

    Every trial is one of those baselines (n_trials = K), so the sampler never runs; pruning is
    off because every design must finish for the two rankings to be comparable."""
    config = StudyConfig.from_dict(parent.to_dict())
    config.name = promoted_name(parent.name, scale)
    config.budget = scale_budget(parent.budget, scale)
    config.baselines = []
    for item in picks:
        arch = scale_architecture(Architecture.from_dict(item["architecture"]), scale)
        arch.name = _label(parent.name, item["trial"])
        config.baselines.append(arch.to_dict())
    config.n_trials = len(picks)
    config.sampler, config.sampler_options = "random", {}
    config.pruning.enabled = False
    config.workers = max(1, min(workers or parent.workers, len(picks)))
    return config


def promote(name: str, storage: str, top_k: int = 3, scale: float = 2.0, *,
            workers: int | None = None, ray_address: str | None = None,
            progress: Any = None) -> dict[str, Any]:
    """Train the top-K front designs of study `name` at `scale` and compare the two rankings."""
    from mixnas.orchestrator.driver import Driver

    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    parent = load_study(name, storage)
    objective = quality_objective(parent.config)
    picks = top_designs(pareto_front(parent), objective, top_k)
    if not picks:
        raise ValueError(f"study '{name}' has no completed trial on its Pareto front to promote")
    config = promotion_config(parent.config, picks, scale, workers)
    config.storage = storage
    handle = create_study(config, parent_study=name)
    _enqueue_designs(handle, picks)
    Driver(handle, ray_address=ray_address, progress=progress).run(seed_baselines=False)
    return promotion_report(config.name, storage)


def _enqueue_designs(handle: StudyHandle, picks: list[dict[str, Any]]) -> None:
    """Queue the scaled designs (the promoted study's baselines), each linked to its parent
    trial; a retry keeps the link (`trials.CARRIED_ATTRS`)."""
    for item, design in zip(picks, handle.config.baselines):
        attrs = {"baseline": design["name"], "arch_json": Architecture.from_dict(design).to_json(),
                 "parent_trial": item["trial"]}
        handle.optuna_study.enqueue_trial({}, user_attrs=attrs)


def promotion_report(name: str, storage: str) -> dict[str, Any]:
    """Small- vs large-scale quality of the designs of promoted study `name` (also after resume)."""
    child = load_study(name, storage)
    parent_name = child.storage.get_study_by_id(child.record_id).parent_study
    if parent_name is None:
        raise ValueError(f"study '{name}' was not made by promote (it has no parent study)")
    parent_id = child.storage.get_study(parent_name).id
    small = {t.number: t for t in child.storage.get_trials(parent_id)}
    objective = quality_objective(child.config)
    pairs, missing = [], []
    for trial in child.storage.get_trials(child.record_id):
        origin = trial.parent_trial
        if origin is None:
            continue
        if trial.state != "complete":
            if not trial.retried:
                missing.append({"parent_trial": origin, "trial": trial.number,
                                "state": trial.state, "reason": trial.failure_reason})
            continue
        source = small[origin]
        pairs.append({
            "parent_trial": origin,
            "trial": trial.number,
            "arch_hash_small": source.arch_hash,
            "arch_hash_large": trial.arch_hash,
            "small": source.values[objective.name],
            "large": trial.values[objective.name],
        })
    rho, p_value = rank_correlation([p["small"] for p in pairs], [p["large"] for p in pairs])
    return {
        "study": name,
        "parent": parent_name,
        "objective": objective.to_dict(),
        "pairs": pairs,
        "missing": missing,
        "spearman": rho,
        "p_value": p_value,
    }


def rank_correlation(small: list[float], large: list[float]) -> tuple[float | None, float | None]:
    """Spearman's rho and its p-value; None when undefined (< 3 pairs or a constant side)."""
    from scipy.stats import spearmanr

    if len(small) < 3 or len(set(small)) < 2 or len(set(large)) < 2:
        return None, None
    result = spearmanr(small, large)
    return float(result.statistic), float(result.pvalue)
