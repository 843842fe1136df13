"""A study: an Optuna multi-objective study plus mixnas's record of it, in one database.

Optuna's RDBStorage keeps the sampler's view (parameters, objective values, trial states);
mixnas's storage (mixnas/storage) keeps everything else. `create_study` and `load_study` return
a `StudyHandle` holding both, which the driver, the CLI and promote work on.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from mixnas.errors import PluginError, StudyExists, StudyNotFound
from mixnas.orchestrator.config import StudyConfig
from mixnas.orchestrator.warm_start import WarmSource, WarmTrial, values_by_name
from mixnas.storage import TRIAL_STATES, RDBStorage, StudyRecord, TrialRecord, optuna_storage


def make_sampler(config: StudyConfig,
                 warm: Sequence[WarmSource] = ()) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a study config asks for, with mixnas's defaults for its size.

    Args:
        config: The study config (`sampler`, `sampler_options`, `n_trials`, `seed`).
        warm: Earlier studies the surrogate sampler learns from (other samplers ignore them).

    Raises:
        ValueError: Bad `sampler_options` for the surrogate sampler.
    """
    options = dict(config.sampler_options)
    if config.sampler == "surrogate":
        return _surrogate_sampler(config, warm)
    with warnings.catch_warnings():  # multivariate/group TPE are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if config.sampler == "nsga2":
            options.setdefault("population_size", max(4, min(50, config.n_trials // 4)))
            return optuna.samplers.NSGAIISampler(seed=config.seed, **options)
        if config.sampler == "tpe":
            # Grouped multivariate TPE models each set of decisions that occur together, which
            # suits a conditional grammar and is not derailed by baselines that have no grammar
            # decisions (benchmarks/results/search_efficiency*.json: the default on that evidence).
            options.setdefault("multivariate", True)
            options.setdefault("group", True)
            options.setdefault("n_startup_trials", max(4, min(10, config.n_trials // 4)))
            return optuna.samplers.TPESampler(seed=config.seed, **options)
        return optuna.samplers.RandomSampler(seed=config.seed)


def _surrogate_sampler(config: StudyConfig, warm: Sequence[WarmSource]):
    from dataclasses import replace

    from mixnas.evaluator.profiler import resolve_profile
    from mixnas.orchestrator.surrogate import SurrogateOptions, SurrogateSampler
    from mixnas.search_space.grammar import Grammar

    options = SurrogateOptions.from_dict(config.sampler_options)
    inner = make_sampler(replace(config, sampler="tpe", sampler_options=options.inner_options))
    return SurrogateSampler(
        Grammar.load(config.search_space), [(o.name, o.direction) for o in config.objectives],
        options, inner, seed=config.seed, warm=warm,
        context_length=resolve_profile(config.profile)["context_length"],
    )


@dataclass
class StudyHandle:
    """Everything a driver or a command needs to work on one study."""

    config: StudyConfig
    record_id: int
    storage: RDBStorage
    optuna_study: optuna.Study
    optuna_storage: optuna.storages.BaseStorage | None = None
    warm: list[WarmSource] = field(default_factory=list)  # earlier studies it learns from

    @property
    def name(self) -> str:
        return self.config.name

    def optuna_trial_id(self, number: int) -> int | None:
        """Optuna's own id of trial `number` (to join our rows with Optuna's tables)."""
        if self.optuna_storage is None:
            return None
        if self._optuna_study_id is None:
            self._optuna_study_id = self.optuna_storage.get_study_id_from_name(self.name)
        storage = self.optuna_storage
        return storage.get_trial_id_from_study_id_trial_number(self._optuna_study_id, number)

    def objective_names(self) -> list[str]:
        return [o.name for o in self.config.objectives]

    def objectives(self) -> list[dict[str, str]]:
        return [o.to_dict() for o in self.config.objectives]

    def __post_init__(self) -> None:
        self._optuna_study_id: int | None = None


def create_study(config: StudyConfig, parent_study: str | None = None,
                 warm: Sequence[WarmSource] = ()) -> StudyHandle:
    """Create a new study in `config.storage`.

    Args:
        config: The validated study config.
        parent_study: The study that promote scaled this one from.
        warm: Its warm-start studies, loaded and checked beforehand (`load_warm_sources`).

    Returns:
        The new study's handle.

    Raises:
        StudyExists: The name is taken in this storage.
        StorageError: The storage cannot be opened.
    """
    storage = RDBStorage(config.storage)
    taken = StudyExists(
        f"study '{config.name}' already exists in {config.storage}; continue it with "
        f"`mixnas study resume {config.name} --storage {config.storage}` or choose another name"
    )
    if config.name in {s.name for s in storage.get_all_studies()}:
        raise taken
    optuna_store = optuna_storage(config.storage)
    try:
        study = optuna.create_study(
            study_name=config.name,
            storage=optuna_store,
            directions=[o.direction for o in config.objectives],
            sampler=make_sampler(config, warm),
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise StudyExists(
            f"an Optuna study named '{config.name}' already exists in {config.storage}"
        ) from None
    with warnings.catch_warnings():  # experimental, but what optuna-dashboard reads names from
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in config.objectives])
    try:
        record_id = storage.create_study(
            config.name, config.to_dict(), objectives=[o.to_dict() for o in config.objectives],
            target_trials=config.n_trials, config_path=config.source, parent_study=parent_study,
        )
    except StudyExists:
        raise taken from None
    return StudyHandle(config, record_id, storage, study, optuna_store, list(warm))


def load_study(name: str, storage: str) -> StudyHandle:
    """Open an existing study, never creating a database to look for it.

    Args:
        name: The study's name.
        storage: The database's SQLAlchemy URL.

    Returns:
        The study's handle; its config is the one stored at creation (`storage` set to this URL).

    Raises:
        StudyNotFound: No mixnas database at the URL, or no study of that name in it (the message
            lists the studies there are).
        StorageError: The database cannot be reached.
    """
    store = _open_existing(name, storage)
    record = store.get_study(name)
    config = StudyConfig.from_dict(record.config)
    config.storage = storage
    warm = load_warm_sources(storage, config.warm_start, missing_ok=True)
    optuna_store = optuna_storage(storage)
    study = optuna.load_study(study_name=name, storage=optuna_store,
                              sampler=make_sampler(config, warm))
    return StudyHandle(config, record.id, store, study, optuna_store, warm)


def check_plugins_unchanged(config: StudyConfig, allow_changed: bool = False) -> list[str]:
    """Compare the plugins a study started with to the code on disk now (before `resume`).

    Loads the study's grammar (and so its plugins) in this process.

    Args:
        config: The stored study config (its `plugins` hold the sha256 recorded at start).
        allow_changed: Continue anyway (`--allow-changed-plugins`): return the changes instead.

    Returns:
        One line per plugin that changed (with allow_changed), went or appeared ([] when none
        did).

    Raises:
        PluginError: A plugin changed or went and `allow_changed` is false; the message names
            its file.
    """
    from mixnas.search_space.grammar import Grammar
    from mixnas.search_space.plugins import with_installed

    grammar = Grammar.load(config.search_space)
    now = {p.path or p.ref: p.sha256 for p in with_installed(grammar.plugins)}
    then = {p.get("path") or p["ref"]: p["sha256"] for p in config.plugins}
    changes = [f"{path}: plugin source changed since the study started (sha256 "
               f"{then[path][:12]} -> {now[path][:12]})"
               for path in sorted(set(now) & set(then)) if now[path] != then[path]]
    changes += [f"{path}: plugin the study started with is gone"
                for path in sorted(set(then) - set(now))]
    if changes and not allow_changed:
        raise PluginError(f"{changes[0]}; resume with --allow-changed-plugins to continue with "
                          "the code as it is now")
    # a plugin the study did not record (installed since, or a study from before plugins) is
    # reported, not refused: the study's recorded designs cannot have used it
    return changes + [f"{path}: plugin is new since the study started"
                      for path in sorted(set(now) - set(then))]


def load_warm_sources(storage: str, names: Sequence[str], *,
                      missing_ok: bool = False) -> list[WarmSource]:
    """The complete trials of the studies `names` in `storage`, to warm-start another study.

    Reads only: a storage without mixnas's tables is never created here.

    Args:
        storage: The SQLAlchemy URL both studies live in.
        names: Earlier study names.
        missing_ok: Skip names that are not there (a resumed study whose source was deleted).

    Returns:
        One WarmSource per study found, in the order of `names`.

    Raises:
        StudyNotFound: A study is not there (unless missing_ok); the message names it.
    """
    if not names:
        return []
    if not RDBStorage.exists(storage):
        if missing_ok:
            return []
        raise StudyNotFound(f"warm_start: no study named '{names[0]}' in {storage}: "
                            "no mixnas database there")
    store = RDBStorage(storage, "existing")
    out = []
    for name in names:
        try:
            record = store.get_study(name)
        except StudyNotFound as exc:
            if missing_ok:
                continue
            raise StudyNotFound(f"warm_start: {exc}") from None
        out.append(_warm_source(store, record))
    return out


def _warm_source(store: RDBStorage, record: StudyRecord) -> WarmSource:
    objectives = [(o["name"], o["direction"]) for o in record.objectives]
    names = [n for n, _ in objectives]
    trials = [
        WarmTrial(t.arch_json, dict(t.params or {}), values_by_name(names, t.values))
        for t in store.get_trials(record.id, states=["complete"])
        if t.arch_json and t.duplicate_of is None
    ]
    return WarmSource(record.name, objectives, [t for t in trials if t.values])


def list_studies(storage: str) -> list[dict[str, Any]]:
    """Every study's status (see `study_status`), oldest first; [] where no database is."""
    if not RDBStorage.exists(storage):  # reading must not create a database
        return []
    store = RDBStorage(storage, "existing")
    return [study_status(store, record) for record in store.get_all_studies()]


def status(name: str, storage: str) -> dict[str, Any]:
    """The status of study `name` (see `study_status`); raises StudyNotFound."""
    store = _open_existing(name, storage)
    return study_status(store, store.get_study(name))


def study_status(store: RDBStorage, record: StudyRecord) -> dict[str, Any]:
    """A study's name, state, objectives, target and trial counts by state."""
    counts = store.count_trials(record.id).by_state()
    return {
        "name": record.name,
        "state": record.state,
        "objectives": [{"name": o["name"], "direction": o["direction"]} for o in record.objectives],
        "target_trials": record.target_trials,
        "trials": {state: counts[state] for state in TRIAL_STATES},
        "created_at": record.created_at.isoformat(timespec="seconds"),
    }


def _open_existing(name: str, storage: str) -> RDBStorage:
    """Open a database that already holds mixnas's tables; never create one to look a study up."""
    if not RDBStorage.exists(storage):
        raise StudyNotFound(f"no study named '{name}' in {storage}: no mixnas database there")
    return RDBStorage(storage, "existing")


def pareto_front(handle: StudyHandle) -> list[dict[str, Any]]:
    """The study's Pareto front (`mixnas.pareto`: one entry per distinct design), by trial."""
    trials = handle.storage.get_pareto_trials(handle.record_id, handle.objectives())
    return [front_entry(trial, handle.objective_names()) for trial in trials]


def front_entry(trial: TrialRecord, names: list[str]) -> dict[str, Any]:
    """A front member as the CLI and promote show it."""
    return {
        "trial": trial.number,
        "values": {name: trial.values[name] for name in names},
        "arch_hash": trial.arch_hash,
        "architecture": json.loads(trial.arch_json) if trial.arch_json else None,
        "baseline": trial.baseline,
    }


def failure_summary(handle: StudyHandle) -> str | None:
    """A one-line summary when no trial of the study completed although some finished (every one
    failed, was pruned or infeasible), naming the commonest reason; None otherwise.

    A study like that has learnt nothing, so the command exits 1 with this line rather than 0.
    """
    from collections import Counter

    counts = handle.storage.count_trials(handle.record_id)
    if counts.complete or not counts.done:
        return None
    bad = handle.storage.get_trials(handle.record_id, states=["failed", "infeasible"])
    reasons = Counter((t.failure_reason or t.state).splitlines()[0][:200] for t in bad)
    commonest = (f"; commonest reason ({reasons.most_common(1)[0][1]} of {len(bad)}): "
                 f"{reasons.most_common(1)[0][0]}") if reasons else ""
    return (f"no trial of study '{handle.name}' completed: {counts.failed} failed, "
            f"{counts.infeasible} infeasible, {counts.pruned} pruned{commonest}")
