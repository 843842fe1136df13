"""The surrogate sampler: screen many candidate designs on a model, train the most promising one.

A trial costs minutes to hours of accelerator time; predicting a design's scores costs
milliseconds. So each trial draws `candidates` designs from an inner proposal (grouped TPE by
default, or the grammar's own prior), predicts every objective of each from their architecture
features (`mixnas.search_space.features`) with a model that knows its uncertainty
(`surrogate_model`), and trains the one with the largest expected hypervolume improvement (EHVI,
Monte Carlo with draws shared across candidates) over the front found so far. Objectives that
need no training (non-embedding parameters, decode-state bytes) are computed exactly, the rest
predicted. Designs already trained or in flight are never proposed again, and the in-flight ones
count at their predicted values (so parallel workers do not chase one idea).

The model learns from this study's complete trials and, with warm starts, from earlier studies'
(`warm_start.WarmSource`), weighted by how well each ranks this study's results so far.

Optuna drives a trial one parameter at a time (the grammar asks its decisions in turn); the
sampler makes its choice at the first question of a trial and then answers each decision from
the chosen design. Enqueued trials (baselines, warm-start fronts, retries) pass through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from mixnas.orchestrator.surrogate_model import MODELS, SourceData, TransferModel
from mixnas.orchestrator.warm_start import WarmSource, map_objectives
from mixnas.pareto import front_nd, hypervolume_improvement
from mixnas.search_space.architecture import Architecture
from mixnas.search_space.features import (
    DEFAULT_CONTEXT,
    FeatureTable,
    architecture_features,
    decision_features,
    footprint_cached,
)
from mixnas.search_space.grammar import Grammar
from mixnas.search_space.sampling import (
    Decider,
    RandomDecider,
    RecordingDecider,
    ScriptedDecider,
)

INNERS = ("tpe", "grammar")
EXACT = ("non_embedding_params", "state_bytes")  # counted from the model on the meta device
SCREEN_ATTR = "mixnas:surrogate"  # trial system attribute: candidates screened, EHVI, weights


@dataclass
class SurrogateOptions:
    """`sampler_options` of `sampler: surrogate`."""

    # who proposes candidates: the grammar's prior (measured best: benchmarks/warm_start.py), or
    # grouped TPE (its samples, so the screen only sees what TPE already favours)
    inner: str = "grammar"
    candidates: int = 32  # designs screened per trial
    model: str = "forest"  # forest | gp | gbm (surrogate_model.py)
    n_startup_trials: int = 5  # trials proposed by `inner` alone before the model is used
    mc_samples: int = 128  # Monte Carlo draws per candidate for the expected improvement
    inner_options: dict[str, Any] = field(default_factory=dict)  # passed to the inner sampler

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> SurrogateOptions:
        """Check and read `sampler_options`; raises ValueError naming the bad key."""
        known = {f: getattr(cls, f, None) for f in cls.__dataclass_fields__}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown surrogate option '{unknown[0]}'; known: "
                             f"{', '.join(sorted(known))}")
        out = cls(**dict(options))
        if out.inner not in INNERS:
            raise ValueError(f"surrogate option 'inner' must be one of {', '.join(INNERS)}, "
                             f"got {out.inner!r}")
        if out.model not in MODELS:
            raise ValueError(f"surrogate option 'model' must be one of {', '.join(MODELS)}, "
                             f"got {out.model!r}")
        for key in ("candidates", "mc_samples"):
            value = getattr(out, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"surrogate option '{key}' must be a positive int, got {value!r}")
        n = out.n_startup_trials
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"surrogate option 'n_startup_trials' must be an int >= 0, got {n!r}")
        if not isinstance(out.inner_options, dict):
            raise ValueError("surrogate option 'inner_options' must be a mapping")
        return out


@dataclass
class Candidate:
    decisions: dict[str, Any]
    arch: Architecture


@dataclass
class _Observed:
    arch: Architecture
    decisions: dict[str, Any]
    state: str  # complete | running | failed (failed, pruned: not proposed again, not learnt)
    loss: list[float] | None  # objective values in loss orientation when complete


class SurrogateSampler(optuna.samplers.BaseSampler):
    """Optuna sampler that pre-screens grammar designs on a surrogate model (see module).

    Args:
        grammar: the study's grammar (decisions are answered by derivation-path name).
        objectives: (name, direction) per objective, in the study's order.
        options: the sampler options.
        inner: the proposal sampler (used with `options.inner == "tpe"`).
        seed: seeds the proposals, the models and the Monte Carlo draws.
        context_length: the profile's context length (decode-state bytes are counted there).
        warm: earlier studies to learn from.
    """

    def __init__(self, grammar: Grammar, objectives: Sequence[tuple[str, str]],
                 options: SurrogateOptions, inner: optuna.samplers.BaseSampler, *,
                 seed: int | None = 0, context_length: int = DEFAULT_CONTEXT,
                 warm: Sequence[WarmSource] = ()):
        self.grammar, self.options, self.inner = grammar, options, inner
        self.objectives = [(n, d) for n, d in objectives]
        self.seed = 0 if seed is None else seed
        self.context_length = context_length
        self._rng = np.random.default_rng(self.seed)
        self._prior = RandomDecider(self.seed)
        self._plans: dict[int, dict[str, Any]] = {}
        self._archs: dict[int, tuple[Architecture, dict[str, Any]] | None] = {}
        self._feasibility: dict[str, bool] = {}
        self.warm = list(warm)
        self._sources = self._source_rows()
        self._table: FeatureTable | None = None
        self.last: dict[str, Any] = {}  # what the last screened trial saw (tests, logging)

    # ---------------------------------------------------------------- Optuna's sampler API
    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        plan = self._plan(study, trial)
        value = plan.get(param_name)
        if value is not None and _contains(param_distribution, value):
            return value
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)
        self._plans.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self._rng = np.random.default_rng()
        self._prior = RandomDecider()

    # ---------------------------------------------------------------- choosing a design
    def _plan(self, study, trial: FrozenTrial) -> dict[str, Any]:
        if trial.number not in self._plans:
            attrs = trial.user_attrs
            enqueued = trial.system_attrs.get("fixed_params") or "arch_json" in attrs
            self._plans[trial.number] = {} if enqueued else self._choose(study, trial)
        return self._plans[trial.number]

    def _choose(self, study, trial: FrozenTrial) -> dict[str, Any]:
        observed = self._observed(study, trial)
        done = [o for o in observed if o.loss is not None]
        taken = {o.arch.hash for o in observed}
        candidates = self._candidates(study, trial, taken)
        if not candidates:
            return {}
        if len(done) < self.options.n_startup_trials and not self._sources:
            self.last = {"screened": 0}
            return candidates[0].decisions
        pending = [Candidate(o.decisions, o.arch) for o in observed if o.state == "running"]
        mean, std = self._predict(done, candidates + pending)
        score = self._expected_improvement(done, candidates, mean, std)
        best = int(np.argmax(score)) if score.max() > 0 else 0
        self.last = {"screened": len(candidates), "ehvi": float(score[best]),
                     "weights": self._weights}
        # kept with the trial: what the screen saw (the dashboard and tests can read it)
        _keep_with_trial(study, trial, SCREEN_ATTR, self.last)
        return candidates[best].decisions

    def _candidates(self, study, trial: FrozenTrial, taken: set[str]) -> list[Candidate]:
        """Up to `candidates` distinct, feasible designs nobody trained or is training: the inner
        sampler's proposals, topped up from the grammar's prior when they repeat themselves."""
        space = {}
        if self.options.inner == "tpe":
            space = self.inner.infer_relative_search_space(study, trial)
        out: list[Candidate] = []
        seen = set(taken)
        k = self.options.candidates
        for attempt in range(4 * k):
            if self.options.inner == "tpe" and attempt < k:
                relative = self.inner.sample_relative(study, trial, space) if space else {}
                decider: Decider = _InnerDecider(self.inner, study, trial, relative)
            else:
                decider = self._prior
            recorder = RecordingDecider(decider)
            try:
                arch = self.grammar.sample(recorder)
            except ValueError:
                continue
            if arch.hash in seen or not self._feasible(arch, recorder.decisions):
                continue
            seen.add(arch.hash)
            out.append(Candidate(recorder.decisions, arch))
            if len(out) == k:
                break
        return out

    def _feasible(self, arch: Architecture, decisions: Mapping[str, Any]) -> bool:
        """Within the grammar's constraints and buildable (remembered per architecture)."""
        if arch.hash not in self._feasibility:
            try:
                self._features(arch, decisions)
                self._feasibility[arch.hash] = not self.grammar.check_constraints(arch)
            except ValueError:
                self._feasibility[arch.hash] = False
        return self._feasibility[arch.hash]

    def _observed(self, study, trial: FrozenTrial) -> list[_Observed]:
        """This study's designs other than `trial`'s, with their losses when complete."""
        out = []
        signs = [1.0 if d == "minimize" else -1.0 for _, d in self.objectives]
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number or t.state == TrialState.WAITING:
                continue
            found = self._trial_arch(t)
            if found is None:
                continue
            state = {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running"}.get(
                t.state, "failed")
            loss = None
            if state == "complete" and t.values is not None:
                loss = [s * v for s, v in zip(signs, t.values)]
            out.append(_Observed(found[0], found[1], state, loss))
        return out

    def _trial_arch(self, t: FrozenTrial) -> tuple[Architecture, dict[str, Any]] | None:
        cached = self._archs.get(t.number)
        if cached is not None or (t.number in self._archs and t.state.is_finished()):
            return cached
        found = None
        if "arch_json" in t.user_attrs:
            found = (Architecture.from_json(t.user_attrs["arch_json"]), {})
        else:
            try:
                found = (self.grammar.sample(ScriptedDecider(t.params)), dict(t.params))
            except (KeyError, ValueError):
                found = None
        if t.state.is_finished() or found is not None:
            self._archs[t.number] = found
        return found

    # ---------------------------------------------------------------- the model
    def _features(self, arch: Architecture, decisions: Mapping[str, Any]) -> dict[str, float]:
        return {**architecture_features(arch, self.context_length), **decision_features(decisions)}

    def _source_rows(self) -> dict[str, list[tuple[str, list[dict[str, float]], np.ndarray]]]:
        """Per predicted objective, each earlier study's feature rows and losses for it."""
        out: dict[str, list] = {}
        for source in self.warm:
            mapping = map_objectives(self.objectives, source.objectives)
            for name, (source_name, direction) in mapping.items():
                if name in EXACT:
                    continue
                sign = 1.0 if direction == "minimize" else -1.0
                rows, y = [], []
                for t in source.trials:
                    if source_name not in t.values:
                        continue
                    try:
                        rows.append(self._features(Architecture.from_json(t.arch_json), t.params))
                    except ValueError:
                        continue
                    y.append(sign * t.values[source_name])
                if rows:
                    out.setdefault(name, []).append((source.name, rows, np.asarray(y)))
        return out

    def _predict(self, done: Sequence[_Observed], designs: Sequence[Candidate]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (len(designs), n_objectives) in loss orientation."""
        rows_done = [self._features(o.arch, o.decisions) for o in done]
        rows = [self._features(c.arch, c.decisions) for c in designs]
        if self._table is None or any(set(r) - set(self._table.columns) for r in rows_done):
            source_rows = [r for items in self._sources.values() for _, rs, _ in items for r in rs]
            self._table = FeatureTable(rows_done + rows + source_rows)
            self._fitted: dict[str, list] = {}
        X_done, X = self._table.matrix(rows_done), self._table.matrix(rows)
        mean, std = np.zeros((len(designs), len(self.objectives))), np.zeros(
            (len(designs), len(self.objectives)))
        self._weights: dict[str, dict[str, float]] = {}
        for j, (name, direction) in enumerate(self.objectives):
            sign = 1.0 if direction == "minimize" else -1.0
            if name in EXACT:
                mean[:, j] = [sign * self._exact(c.arch, name) for c in designs]
                continue
            if name not in self._fitted:
                self._fitted[name] = [
                    SourceData(source, self._table.matrix(rs), y)
                    for source, rs, y in self._sources.get(name, [])
                ]
            model = TransferModel(self.options.model, self._fitted[name], seed=self.seed)
            model.fit(X_done, np.array([o.loss[j] for o in done]))
            mean[:, j], std[:, j] = model.predict(X)
            self._weights[name] = model.weights
        return mean, std

    def _exact(self, arch: Architecture, name: str) -> float:
        size = footprint_cached(arch, self.context_length)
        return float(size.non_embedding_params if name == "non_embedding_params"
                     else size.state_bytes)

    def _expected_improvement(self, done, candidates, mean, std) -> np.ndarray:
        """Monte Carlo EHVI of each candidate over the front of `done` and `pending` (at their
        predicted means), in objectives scaled to [0, 1] by what is observed and predicted."""
        k = len(candidates)
        observed = np.array([o.loss for o in done], dtype=float).reshape(-1, len(self.objectives))
        believed = mean[k:]
        mean, std = mean[:k], std[:k]
        both = np.vstack([observed, believed, mean])
        lo, span = both.min(0), np.ptp(both, axis=0)
        span[span == 0] = 1.0
        known = (np.vstack([observed, believed]) - lo) / span
        front = known[front_nd([tuple(p) for p in known])] if len(known) else known
        m = len(self.objectives)
        draws = self.options.mc_samples if m == 2 else max(8, self.options.mc_samples // 4)
        z = self._rng.standard_normal((draws, m))
        samples = ((mean - lo) / span)[:, None, :] + (std / span)[:, None, :] * z[None]
        reference = np.full(m, 1.1)
        gain = hypervolume_improvement(samples.reshape(-1, m), front, reference)
        return gain.reshape(k, draws).mean(1)


def _keep_with_trial(study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Store `value` as a system attribute of the trial being sampled.

    A sampler is handed a `FrozenTrial`, which has no setter; Optuna's own samplers (NSGA-II,
    the GP sampler) write through the study's storage by the trial's id, as here. This and
    `_contains` are the only places that use Optuna's private names.
    """
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


class _InnerDecider(Decider):
    """Answers the grammar's decisions with the inner sampler: its relative (joint) sample where
    it has one, else its independent sample for that decision."""

    def __init__(self, sampler, study, trial, relative: Mapping[str, Any]):
        self.sampler, self.study, self.trial, self.relative = sampler, study, trial, relative

    def _ask(self, name: str, distribution: BaseDistribution) -> Any:
        value = self.relative.get(name)
        if value is not None and _contains(distribution, value):
            return value
        return self.sampler.sample_independent(self.study, self.trial, name, distribution)

    def choose(self, name, options, weights):
        return self._ask(name, CategoricalDistribution(list(options)))

    def integer(self, name, low, high, step=1, log=False):
        return self._ask(name, IntDistribution(low, high, log=log, step=step))

    def real(self, name, low, high, step=None, log=False):
        return self._ask(name, FloatDistribution(low, high, log=log, step=step))
