"""Promotion: train a study's best designs again at a larger scale and check that the ranking holds.

A search on small proxies is only worth its savings if what wins small still wins large. `promote`
takes the top-K designs of a study's Pareto front by its first quality objective, and the study's
baselines, scales each one (W x width, D x depth by repeating the layer pattern, B x training
budget; one factor S for all three by default), trains them as a new study `<name>-x<S>` (or
`<name>-w<W>-d<D>-b<B>`) linked to the parent (its `parent_study`, and each trial's
`parent_trial`) through the usual driver, and reports the rank agreement of the quality objective
between the two scales (Spearman and Kendall with bootstrap intervals) and the Composer-style
claim: does the search's pick (its best searched design at the small scale) beat the best
baseline at the large scale, and by how much?
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mixnas.orchestrator.config import Objective, StudyConfig
from mixnas.orchestrator.study import (
    StudyHandle,
    create_study,
    front_entry,
    load_study,
    pareto_front,
)
from mixnas.search_space.architecture import Architecture, Layer
from mixnas.search_space.constraints import footprint

_WIDTH_TRIES = 16  # multiples of the width quantum tried when a rounded width does not build


@dataclass(frozen=True)
class Scaling:
    """How much larger the promoted study is: width, depth and training-budget factors."""

    width: float = 2.0
    depth: float = 2.0
    budget: float = 2.0

    @classmethod
    def of(cls, scale: float = 2.0, width: float | None = None, depth: float | None = None,
           budget: float | None = None) -> Scaling:
        """One factor `scale` for all three, each overridable.

        Raises:
            ValueError: `--NAME: ...` for a factor that is not above 0 and at most `MAX_FACTOR`.
        """
        given = {"width": width, "depth": depth, "budget": budget}
        for name, value in given.items():
            flag = "--scale" if value is None else f"--{name}"
            value = scale if value is None else value
            if not 0 < value <= MAX_FACTOR:
                raise ValueError(f"{flag}: the factor must be above 0 and at most "
                                 f"{MAX_FACTOR}, got {value}")
        return cls(*(scale if f is None else f for f in given.values()))

    @property
    def label(self) -> str:
        """`x2` when the three factors agree, else `w2-d1-b4`."""
        if self.width == self.depth == self.budget:
            return f"x{self.width:g}"
        return f"w{self.width:g}-d{self.depth:g}-b{self.budget:g}"


MAX_FACTOR = 64  # a larger scale-up is a different study, not a check of this one's ranking


def promoted_name(name: str, scaling: Scaling | float) -> str:
    scaling = scaling if isinstance(scaling, Scaling) else Scaling.of(scaling)
    return f"{name}-{scaling.label}"


def scale_architecture(arch: Architecture, scale: float, depth: float | None = None
                       ) -> Architecture:
    """`arch` with `scale` x the width and `depth` (default: `scale`) x the depth, its layer
    pattern repeated cyclically.

    The width is rounded to a multiple of 8 x the largest head count (so every head keeps a width
    divisible by 8); parameters that are absolute sizes (windows, state sizes, ranks) are kept.

    Raises:
        ValueError: a factor that is not positive, or no width near the target builds.
    """
    depth = scale if depth is None else depth
    if not scale > 0 or not depth > 0:
        raise ValueError(f"scale must be positive, got width {scale}, depth {depth}")
    quantum = 8 * math.lcm(*_head_counts(arch.canonical_dict()["layers"]), 1)
    n_layers = max(1, round(len(arch.layers) * depth))
    layers = [Layer.from_dict(arch.layers[i % len(arch.layers)].to_dict())
              for i in range(n_layers)]
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
    """S x the training steps or tokens, and the spacing of evaluations a budget sets, so a
    promoted trial is evaluated as often per run as its parent was (no spacing: the trainer's
    default share of the run)."""
    out = dict(budget)
    for key in ("steps", "tokens", "eval_every"):
        if key in out:
            out[key] = max(1, round(out[key] * scale))
    return out


def quality_objective(config: StudyConfig) -> Objective:
    """The study's first objective that the task measures (not a cost from the profiler)."""
    from mixnas.evaluator.profiler import is_profile_metric

    for objective in config.objectives:
        if not is_profile_metric(objective.name):
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


def baseline_designs(handle: StudyHandle) -> list[dict[str, Any]]:
    """The study's complete baseline trials, one per distinct design (front-entry shaped)."""
    seen, out = set(), []
    for trial in handle.storage.get_trials(handle.record_id):
        if (trial.baseline is None or trial.state != "complete" or trial.arch_json is None
                or trial.arch_hash in seen):
            continue
        seen.add(trial.arch_hash)
        out.append(front_entry(trial, handle.objective_names()))
    return out


def _label(parent: str, item: dict[str, Any]) -> str:
    """The name a promoted design is shown by (the link itself is its trial's `parent_trial`):
    `lm#12`, or `lm#3:transformer` for a baseline."""
    base = f"{parent}#{item['trial']}"
    return f"{base}:{item['baseline']}" if item.get("baseline") else base


def promotion_config(parent: StudyConfig, picks: list[dict[str, Any]], scaling: Scaling,
                     workers: int | None = None) -> StudyConfig:
    """The promoted study: the parent's settings at B x budget, the scaled designs as baselines.

    Every trial is one of those baselines (n_trials = K), so the sampler never runs; pruning is
    off because every design must finish for the two rankings to be comparable."""
    config = StudyConfig.from_dict(parent.to_dict())
    config.name = promoted_name(parent.name, scaling)
    config.budget = scale_budget(parent.budget, scaling.budget)
    config.baselines = []
    for item in picks:
        arch = scale_architecture(Architecture.from_dict(item["architecture"]), scaling.width,
                                  scaling.depth)
        arch.name = _label(parent.name, item)
        config.baselines.append(arch.to_dict())
    config.n_trials = len(picks)
    config.sampler, config.sampler_options = "random", {}
    config.pruning.enabled = False
    chosen = workers or parent.workers  # None: as many as the resources allow (Driver)
    config.workers = max(1, min(chosen, len(picks))) if chosen else None
    return config


def promote(name: str, storage: str, top_k: int = 8, scale: float | Scaling = 2.0, *,
            baselines: bool = True, workers: int | None = None, ray_address: str | None = None,
            progress: Any = None) -> dict[str, Any]:
    """Train the top-K front designs of study `name` (and its baselines) at a larger scale.

    Args:
        name: the parent study.
        storage: its database URL; the promoted study is written there too.
        top_k: how many front designs to promote, best first by the first quality objective.
        scale: one factor for width, depth and budget, or a `Scaling`.
        baselines: also promote the parent's baseline designs (so the report can say whether
            the search's pick beats the best baseline at the larger scale).
        workers, ray_address, progress: as for `Driver`.

    Returns:
        `promotion_report` of the promoted study.

    Raises:
        StudyNotFound, StudyExists: the parent is missing, or was already promoted this way.
        ValueError: no completed front design to promote, or a bad factor.
    """
    from mixnas.orchestrator.driver import Driver

    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    scaling = scale if isinstance(scale, Scaling) else Scaling.of(scale)
    parent = load_study(name, storage)
    objective = quality_objective(parent.config)
    picks = top_designs(pareto_front(parent), objective, top_k)
    if not picks:
        raise ValueError(f"study '{name}' has no completed trial on its Pareto front to promote")
    if baselines:
        chosen = {item["arch_hash"] for item in picks}
        picks += [b for b in baseline_designs(parent) if b["arch_hash"] not in chosen]
    config = promotion_config(parent.config, picks, scaling, workers)
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
    """Small- vs large-scale quality of the designs of promoted study `name` (also after resume).

    Returns:
        `pairs` (one per promoted design: parent trial, baseline name or None, small and large
        values), `missing` (designs that did not complete), the rank agreement (`spearman`,
        `kendall`, `ci95`, `p_value`, ...) and `verdict` (`verdict` below).
    """
    from mixnas.stats import rank_agreement

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
            "baseline": source.baseline,
            "arch_hash_small": source.arch_hash,
            "arch_hash_large": trial.arch_hash,
            "small": source.values[objective.name],
            "large": trial.values[objective.name],
        })
    agreement = rank_agreement([p["small"] for p in pairs], [p["large"] for p in pairs])
    return {
        "study": name,
        "parent": parent_name,
        "objective": objective.to_dict(),
        "pairs": pairs,
        "missing": missing,
        **agreement,
        "p_value": agreement["spearman_p"],
        "verdict": verdict(pairs, objective),
    }


def verdict(pairs: list[dict[str, Any]], objective: Objective) -> dict[str, Any] | None:
    """Does the search's pick beat the best baseline at the large scale, and by how much?

    The pick is the searched design (not a baseline) that was best at the small scale, i.e. the
    one the search would have recommended; it is compared with the baseline that is best at the
    large scale. `margin` is positive when the pick is better (in the objective's units), and
    `pick_rank_large` is its rank among all promoted designs at the large scale (1 = best).
    None when the promotion holds no searched design or no baseline."""
    sign = -1 if objective.direction == "maximize" else 1
    searched = [p for p in pairs if p["baseline"] is None]
    based = [p for p in pairs if p["baseline"] is not None]
    if not searched or not based:
        return None
    pick = min(searched, key=lambda p: (sign * p["small"], p["parent_trial"]))
    best = min(based, key=lambda p: (sign * p["large"], p["parent_trial"]))
    order = sorted(pairs, key=lambda p: (sign * p["large"], p["parent_trial"]))
    margin = sign * (best["large"] - pick["large"])
    return {
        "pick_parent_trial": pick["parent_trial"],
        "pick_small": pick["small"],
        "pick_large": pick["large"],
        "best_baseline": best["baseline"],
        "best_baseline_large": best["large"],
        "margin": margin,
        "pick_beats_best_baseline": margin > 0,
        "pick_rank_large": order.index(pick) + 1,
        "designs": len(pairs),
    }
