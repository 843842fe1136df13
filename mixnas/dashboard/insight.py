"""What did the search learn: which grammar decisions matter for which objective, and how the
objectives move with a design's composition. Shared by the dashboard's "what matters" page and
the study report, so both say the same thing.

Both rest on the study's designs, not its trials: a design tried again repeats its first result
(the rule of `mixnas.pareto`), so counting repeats would weigh a design by how often the sampler
liked it. Importance is Optuna's PED-ANOVA (`optuna.importance`), which handles the grammar's
conditional decisions (`layer.5.*` exists only in deep designs) and takes a fraction of a second
on thousands of trials; fANOVA's random forest would take minutes there. It runs on an in-memory
Optuna study rebuilt from the recorded decisions (the study's own Optuna storage is never
written), and the store caches the answer until the study's trials change.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

MIN_IMPORTANCE = 20  # designs with decisions and values before importances mean anything
MIN_POINTS = 8  # designs before a composition plot is worth drawing
TOP_DECISIONS = 8  # decisions a parallel-coordinates view shows (by importance)


def distinct_designs(rows: Sequence[Any]) -> list[Any]:
    """The first complete trial of each design (store `Row`s, by number), as `pareto.distinct`."""
    seen: set = set()
    first = []
    for row in rows:
        if row.state != "complete":
            continue
        key = row.arch_hash or ("trial", row.number)
        if key not in seen:
            seen.add(key)
            first.append(row)
    return first


def _finite(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _distributions(trials: list[dict]) -> dict[str, Any]:
    """Optuna distributions inferred from the recorded decisions: numbers as int/float ranges,
    everything else categorical; a decision with a single value tells nothing and is left out."""
    import optuna

    values: dict[str, list] = {}
    for params in trials:
        for name, value in params.items():
            values.setdefault(name, []).append(value)
    out = {}
    for name, seen in values.items():
        numeric = all(_finite(v) for v in seen)
        if numeric and min(seen) < max(seen):
            if all(isinstance(v, int) for v in seen):
                out[name] = optuna.distributions.IntDistribution(min(seen), max(seen))
            else:
                out[name] = optuna.distributions.FloatDistribution(min(seen), max(seen))
        elif not numeric:
            choices = sorted({v if isinstance(v, (str, int, float, bool)) else str(v)
                              for v in seen}, key=repr)
            if len(choices) > 1:
                out[name] = optuna.distributions.CategoricalDistribution(choices)
    return out


def importances(rows: Sequence[Any], objectives: list[dict]) -> dict:
    """Per objective, the importance of each grammar decision (PED-ANOVA, sums to 1), and the
    importance of reaching the Pareto front of all objectives.

    Args:
        rows: The study's trial rows (store `Row`s: number, state, arch_hash, params, values).
        objectives: The study's objectives ({"name", "direction"}).

    Returns:
        {"n": designs used, "evaluator", "seconds", "hidden": a reason or None,
        "by_objective": {name: [[decision, importance], ...] most important first},
        "front": the same for reaching the front}.
    """
    names = [o["name"] for o in objectives]
    usable = [r for r in distinct_designs(rows)
              if r.params and all(_finite(r.values.get(n)) for n in names)]
    answer: dict[str, Any] = {"n": len(usable), "min": MIN_IMPORTANCE, "evaluator": "PED-ANOVA",
                              "by_objective": {}, "front": [], "hidden": None, "seconds": 0.0}
    if len(usable) < MIN_IMPORTANCE:
        answer["hidden"] = (f"{len(usable)} complete designs with recorded decisions; "
                            f"importances need at least {MIN_IMPORTANCE}")
        return answer
    start = time.perf_counter()
    study, distributions = _study(usable, objectives)
    if not distributions:
        answer["hidden"] = "every design made the same decisions: nothing to compare"
        return answer
    import optuna

    with warnings.catch_warnings():  # "target and region quantiles select the same set"
        warnings.simplefilter("ignore")
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        for k, name in enumerate(names):
            found = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t, k=k: t.values[k]
            )
            answer["by_objective"][name] = [[p, round(v, 6)] for p, v in found.items()]
        if len(names) > 1:
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
            answer["front"] = [[p, round(v, 6)] for p, v in found.items()]
    answer["seconds"] = round(time.perf_counter() - start, 4)
    return answer


def _study(usable: list[Any], objectives: list[dict]):
    """An in-memory Optuna study of the designs, values in loss space (lower is better, as
    PED-ANOVA assumes), so that no direction is misread."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = _distributions([r.params for r in usable])
    study = optuna.create_study(directions=["minimize"] * len(objectives))
    signs = [-1.0 if o["direction"] == "maximize" else 1.0 for o in objectives]
    trials = []
    for r in usable:
        params = {n: (v if isinstance(v, (str, int, float, bool)) else str(v))
                  for n, v in r.params.items() if n in distributions}
        trials.append(optuna.trial.create_trial(
            params=params, distributions={n: distributions[n] for n in params},
            values=[s * float(r.values[o["name"]]) for s, o in zip(signs, objectives)],
        ))
    study.add_trials(trials)
    return study, distributions


def composition(rows: Sequence[Any], objectives: list[dict], decisions: list[str]) -> dict:
    """One row per complete design: its composition, its objective values and the given
    decisions, for composition plots and the parallel-coordinates view.

    Returns:
        {"fields": [...], "rows": [[...], ...], "n", "min", "hidden": a reason or None}.
    """
    names = [o["name"] for o in objectives]
    designs = [r for r in distinct_designs(rows) if r.design is not None]
    answer: dict[str, Any] = {
        "fields": ["number", "attention_share", "recurrent_family", "placement", "d_model",
                   "depth", "values", "decisions"],
        "decisions": decisions, "n": len(designs), "min": MIN_POINTS, "hidden": None,
        "rows": [
            [r.number, r.design.attention_share, r.design.recurrent_family, r.design.placement,
             r.design.d_model, r.design.depth,
             [r.values.get(n) if _finite(r.values.get(n)) else None for n in names],
             [_plain(r.params.get(d)) for d in decisions]]
            for r in designs
        ],
    }
    if len(designs) < MIN_POINTS:
        answer["hidden"] = (f"{len(designs)} complete designs; composition plots need at least "
                            f"{MIN_POINTS}")
    return answer


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def top_decisions(found: dict, limit: int = TOP_DECISIONS) -> list[str]:
    """The decisions that matter most over all objectives (largest importance for any)."""
    best: dict[str, float] = {}
    for ranking in [*found["by_objective"].values(), found["front"]]:
        for name, value in ranking:
            best[name] = max(best.get(name, 0.0), value)
    return sorted(best, key=lambda n: -best[n])[:limit]
