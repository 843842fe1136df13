"""Promotion: train a study's best designs again at a larger scale and check that the ranking holds.

A search on small proxies is only worth its savings if what wins small still wins large. `promote`
takes the top-K designs of a study's Pareto front by its first quality objective, scales each one
(S x width, S x depth by repeating the layer pattern, S x training budget), trains them as a new
study `<name>-x<S>` linked to the parent (`mixnas_studies.parent_study`) through the usual driver,
and reports the Spearman rank correlation of the quality objective between the two scales.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa

from mixnas.orchestrator.config import Objective, StudyConfig
from mixnas.orchestrator.models import StudyRecord, TrialRecord
from mixnas.orchestrator.study import create_study, load_study, pareto_front
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


def _link(parent: str, trial: int) -> str:
    """The baseline name of a promoted design: which parent trial it came from."""
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
        arch.name = _link(parent.name, item["trial"])
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
    handle = create_study(config)
    with handle.sessions() as session, session.begin():
        session.get(StudyRecord, handle.record_id).parent_study = name
    Driver(handle, ray_address=ray_address, progress=progress).run(seed_baselines=True)
    return promotion_report(config.name, storage)


def promotion_report(name: str, storage: str) -> dict[str, Any]:
    """Small- vs large-scale quality of the designs of promoted study `name` (also after resume)."""
    child = load_study(name, storage)
    with child.sessions() as session:
        parent_name = session.get(StudyRecord, child.record_id).parent_study
        if parent_name is None:
            raise ValueError(f"study '{name}' was not made by promote (it has no parent study)")
        parent_id = session.scalar(sa.select(StudyRecord.id).where(StudyRecord.name == parent_name))
        large = session.scalars(
            sa.select(TrialRecord)
            .where(TrialRecord.study_id == child.record_id, TrialRecord.baseline.is_not(None))
            .order_by(TrialRecord.number)
        ).all()
        parent_trials = sa.select(TrialRecord).where(TrialRecord.study_id == parent_id)
        small = {t.number: t for t in session.scalars(parent_trials)}
        objective = quality_objective(child.config)
        pairs, missing = [], []
        for trial in large:
            origin = int(trial.baseline.rsplit("#", 1)[1])
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
