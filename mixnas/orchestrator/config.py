"""Study files: YAML loaded safely into typed config objects, every error naming FILE:LINE.

A study file says what to search (`search_space`), on what (`task`, `budget`, `train`), for which
objectives, with which sampler, and where results go (`storage`). Unknown or misspelt keys are
errors, because a silently ignored key is a silently wrong study.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixnas.errors import ConfigError, did_you_mean, first_line
from mixnas.yamlfile import YamlMap, YamlSeq, plain, read_yaml

SAMPLERS = ("tpe", "nsga2", "random", "surrogate")
KEEP_WEIGHTS = ("pareto", "all", "none")
# A study name is part of URLs, file names and shell commands: letters, digits, '_', '.', '-' and
# '+', starting with a letter or digit, at most 128 characters.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
# Upper limits of the study's sizes, checked before anything starts (a larger value is a typo)
LIMITS = {"n_trials": 100_000, "workers": 1024, "max_retries": 100, "seed": (1 << 32) - 1,
          "trial_timeout_s": 30 * 86400.0}


@dataclass
class Objective:
    name: str
    direction: str  # "minimize" | "maximize"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "direction": self.direction}


@dataclass
class PruningConfig:
    """Rung-based early stopping for multi-objective studies (see orchestrator/pruning.py)."""

    enabled: bool = True
    rungs: list[float] = field(default_factory=lambda: [0.25, 0.5])
    margin: float = 0.1  # how far below the front (in the quality objective's units) is 'clearly'
    min_trials: int = 4  # trials that must have reached a rung before anything is pruned there


@dataclass
class ResourcesConfig:
    """What each trial asks Ray for (see orchestrator/cluster.py).

    `gpus_per_trial` below 1 packs several trials onto one GPU (Ray's fractional GPUs: 0.25 runs
    four small proxy models on one card); None asks for one whole GPU when the cluster has any,
    else none. `cpus_per_trial` is also the worker's torch thread count (at least 1).
    """

    gpus_per_trial: float | None = None
    cpus_per_trial: float = 1.0

    def to_dict(self) -> dict[str, float | None]:
        return {"gpus_per_trial": self.gpus_per_trial, "cpus_per_trial": self.cpus_per_trial}


def check_resource(key: str, value: Any) -> str | None:
    """Why `value` is not a valid `resources` setting `key`, or None when it is.

    Args:
        key: 'gpus_per_trial' or 'cpus_per_trial'.
        value: The setting (from a study file or the command line).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return f"'{key}' must be a number > 0, got {value!r}"
    if value != value or value == float("inf"):
        return f"'{key}' must be a finite number, got {value!r}"
    if key == "gpus_per_trial" and value > 1 and value != int(value):
        return (f"'gpus_per_trial' must be at most 1 (a share of one GPU) or a whole number of "
                f"GPUs, got {value!r}")
    return None


@dataclass
class StudyConfig:
    name: str
    search_space: str  # path of the grammar file (resolved against the study file)
    task: dict[str, Any]
    budget: dict[str, Any]
    objectives: list[Objective]
    storage: str = "sqlite:///mixnas.db"
    train: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    n_trials: int = 32
    workers: int | None = None  # None: as many trials as the cluster's resources allow
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    seed: int = 0
    baselines: list[Any] = field(default_factory=lambda: ["all"])
    pruning: PruningConfig = field(default_factory=PruningConfig)
    max_retries: int = 1
    keep_weights: str = "pareto"
    reuse_results: bool = True
    trial_timeout_s: float | None = None
    warm_start: list[str] = field(default_factory=list)  # earlier studies in the same storage
    source: str | None = None  # the file the config came from
    # the grammar's and installed plugins: ref, module, path, sha256 (resume compares them)
    plugins: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "search_space": self.search_space,
            "task": dict(self.task),
            "budget": dict(self.budget),
            "objectives": [o.to_dict() for o in self.objectives],
            "storage": self.storage,
            "train": dict(self.train),
            "profile": dict(self.profile),
            "sampler": self.sampler,
            "sampler_options": dict(self.sampler_options),
            "n_trials": self.n_trials,
            "workers": self.workers,
            "resources": self.resources.to_dict(),
            "seed": self.seed,
            "baselines": list(self.baselines),
            "pruning": {
                "enabled": self.pruning.enabled,
                "rungs": list(self.pruning.rungs),
                "margin": self.pruning.margin,
                "min_trials": self.pruning.min_trials,
            },
            "max_retries": self.max_retries,
            "keep_weights": self.keep_weights,
            "reuse_results": self.reuse_results,
            "trial_timeout_s": self.trial_timeout_s,
            "warm_start": list(self.warm_start),
            "source": self.source,
            "plugins": [dict(p) for p in self.plugins],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        """Rebuild a config stored in the database (already validated once)."""
        data = dict(data)
        data["objectives"] = [Objective(**o) for o in data["objectives"]]
        data["pruning"] = PruningConfig(**data.get("pruning", {}))
        data["resources"] = ResourcesConfig(**data.get("resources", {}))
        return cls(**data)


_TOP_KEYS = {
    "name": "a study name (letters, digits, '_', '.', '-', '+'; at most 128 characters)",
    "storage": "an SQLAlchemy URL",
    "search_space": "a grammar file path",
    "task": "a mapping with 'name' and the task's settings",
    "budget": "a mapping with 'steps' or 'tokens'",
    "train": "a mapping of trainer settings",
    "profile": "a mapping of profiler settings",
    "objectives": "a list of {name, direction}",
    "sampler": f"one of {', '.join(SAMPLERS)}",
    "sampler_options": "a mapping passed to the sampler",
    "n_trials": "a positive integer",
    "workers": "a positive integer (default: as many trials as the resources allow)",
    "resources": "a mapping (gpus_per_trial, cpus_per_trial)",
    "seed": "an integer",
    "baselines": "a list of baseline names, 'all', or architecture mappings",
    "pruning": "a mapping (enabled, rungs, margin, min_trials)",
    "max_retries": "a non-negative integer",
    "keep_weights": f"one of {', '.join(KEEP_WEIGHTS)}",
    "reuse_results": "true or false: an architecture already trained in the study is not "
    "trained again",
    "trial_timeout_s": "seconds (a positive number)",
    "warm_start": "a list of earlier study names in the same storage to learn from",
}


class _Reader:
    """Reads one mapping, tracking which keys were used, with FILE:LINE-aware errors."""

    def __init__(self, path: Path, data: Any, where: str, line: int | None = None):
        self.path = path
        self.where = where
        if not isinstance(data, dict):
            self.fail(f"{where} must be a mapping, got {_type_name(data)}", line)
        self.data = data
        self.lines = getattr(data, "key_lines", {})
        self.line = getattr(data, "line", line)

    def fail(self, message: str, line: int | None = None):
        raise ConfigError(f"{self.path}{f':{line}' if line else ''}: {message}")

    def line_of(self, key: str) -> int | None:
        return self.lines.get(key, self.line)

    def check_keys(self, allowed: dict[str, str] | set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                suggestion = did_you_mean(key, allowed)
                known = ", ".join(sorted(allowed))
                self.fail(
                    f"unknown key '{key}' in {self.where}{suggestion}; known keys: {known}",
                    self.line_of(key),
                )

    def get(self, key: str, kind: type | tuple, default: Any = ..., *, positive: bool = False):
        if key not in self.data:
            if default is ...:
                self.fail(f"{self.where} is missing required key '{key}'", self.line)
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            expected = " or ".join(k.__name__ for k in kinds)
            self.fail(
                f"'{key}' must be {expected}, got {_type_name(value)} {value!r}", self.line_of(key)
            )
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(f"'{key}' must be a finite number, got {value!r}", self.line_of(key))
        if positive and value <= 0:
            self.fail(f"'{key}' must be positive, got {value!r}", self.line_of(key))
        high = LIMITS.get(key)
        if high is not None and value > high:
            self.fail(f"'{key}' must be at most {high:,}, got {value:,}", self.line_of(key))
        return value


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", YamlMap: "a mapping", list: "a list", YamlSeq: "a list"}
    return {**names, str: "a string"}.get(
        type(value), type(value).__name__
    )


def load_study_config(path: str | Path, *, validate_names: bool = True) -> StudyConfig:
    """Load and validate a study file, before anything is written anywhere.

    Args:
        path: The study YAML file.
        validate_names: Also check the task, its settings, the objectives' names and the
            baselines against the evaluator and search space (False: the file's own structure
            only).

    Returns:
        The study's config, defaults filled in; `search_space` resolved against the file's folder.

    Raises:
        ConfigError: One line, `FILE:LINE: message`, for the first problem found.
    """
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    top = _Reader(path, data, "the study file", 1)
    top.check_keys(_TOP_KEYS)

    name = top.get("name", str)
    if not NAME_PATTERN.fullmatch(name):
        top.fail(f"'name' {name!r} must be 1 to 128 letters, digits, '_', '.', '-' or '+', "
                 "starting with a letter or digit", top.line_of("name"))

    space = top.get("search_space", str)
    space_path = (path.parent / space).resolve() if not Path(space).is_absolute() else Path(space)
    if not space_path.exists():
        top.fail(f"search_space file not found: {space_path}", top.line_of("search_space"))
    if not space_path.is_file():
        top.fail(f"search_space is not a file: {space_path}", top.line_of("search_space"))

    task_reader = _Reader(path, top.get("task", dict), "'task'", top.line_of("task"))
    task = dict(task_reader.data)
    task_reader.get("name", str)
    if isinstance(task.get("data"), str) and not Path(task["data"]).expanduser().is_absolute():
        task["data"] = str((path.parent / task["data"]).resolve())  # like search_space

    budget = _read_budget(path, top)
    objectives = _read_objectives(path, top)

    pruning = PruningConfig()
    if "pruning" in top.data:
        p = _Reader(path, top.data["pruning"], "'pruning'", top.line_of("pruning"))
        p.check_keys({"enabled", "rungs", "margin", "min_trials"})
        pruning.enabled = p.get("enabled", bool, True)
        pruning.rungs = list(p.get("rungs", list, pruning.rungs))
        if any(not isinstance(r, (int, float)) or not 0 < r < 1 for r in pruning.rungs):
            p.fail("'rungs' must be fractions of the budget strictly between 0 and 1",
                   p.line_of("rungs"))
        pruning.rungs = sorted(float(r) for r in pruning.rungs)
        pruning.margin = float(p.get("margin", float, pruning.margin))
        if pruning.margin < 0:
            p.fail("'margin' must be >= 0", p.line_of("margin"))
        pruning.min_trials = p.get("min_trials", int, pruning.min_trials, positive=True)

    sampler = top.get("sampler", str, "tpe")
    if sampler not in SAMPLERS:
        top.fail(f"unknown sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}",
                 top.line_of("sampler"))
    keep_weights = top.get("keep_weights", str, "pareto")
    if keep_weights not in KEEP_WEIGHTS:
        top.fail(f"'keep_weights' must be one of {', '.join(KEEP_WEIGHTS)}",
                 top.line_of("keep_weights"))
    baselines = top.get("baselines", (list, str), ["all"])
    if isinstance(baselines, str):
        baselines = [baselines]
    seed = top.get("seed", int, 0)
    if seed < 0:
        top.fail(f"'seed' must be >= 0, got {seed}", top.line_of("seed"))
    max_retries = top.get("max_retries", int, 1)
    if max_retries < 0:
        top.fail("'max_retries' must be >= 0", top.line_of("max_retries"))
    timeout = top.get("trial_timeout_s", float, None, positive=True)
    warm_start = top.get("warm_start", (list, str), [])
    warm_start = [warm_start] if isinstance(warm_start, str) else warm_start
    if not all(isinstance(w, str) and w.strip() for w in warm_start):
        top.fail("'warm_start' must be a list of study names", top.line_of("warm_start"))
    if name in warm_start:
        top.fail(f"study '{name}' cannot warm-start from itself", top.line_of("warm_start"))
    sampler_options = plain(dict(top.get("sampler_options", dict, {})))

    config = StudyConfig(
        name=name,
        search_space=str(space_path),
        task=plain(task),
        budget=budget,
        objectives=objectives,
        storage=top.get("storage", str, "sqlite:///mixnas.db"),
        train=plain(dict(top.get("train", dict, {}))),
        profile=plain(dict(top.get("profile", dict, {}))),
        sampler=sampler,
        sampler_options=sampler_options,
        n_trials=top.get("n_trials", int, 32, positive=True),
        workers=top.get("workers", int, None, positive=True),
        resources=_read_resources(path, top),
        seed=seed,
        baselines=plain(baselines),
        pruning=pruning,
        max_retries=max_retries,
        keep_weights=keep_weights,
        reuse_results=top.get("reuse_results", bool, True),
        trial_timeout_s=float(timeout) if timeout is not None else None,
        warm_start=list(dict.fromkeys(warm_start)),
        source=str(path.resolve()),
    )
    _check_sampler(config, top)
    if validate_names:
        _validate_against_components(config, path, top)
    return config


def _check_sampler(config: StudyConfig, top: _Reader) -> None:
    """Build the sampler once, so that a bad option (an unknown key, a population of 1) is
    refused here, naming the line, and not when the study is created."""
    from mixnas.orchestrator.study import make_sampler

    if config.sampler == "random" and config.sampler_options:
        top.fail("sampler_options: the random sampler takes no options",
                 top.line_of("sampler_options"))
    if config.sampler == "surrogate":
        from mixnas.orchestrator.surrogate import SurrogateOptions

        build = lambda: SurrogateOptions.from_dict(config.sampler_options)  # noqa: E731
    else:
        build = lambda: make_sampler(config)  # noqa: E731
    try:
        build()
    except (ValueError, TypeError) as exc:
        top.fail(f"sampler_options: {first_line(exc)}", top.line_of("sampler_options"))


def _read_budget(path: Path, top: _Reader) -> dict[str, Any]:
    b = _Reader(path, top.get("budget", dict), "'budget'", top.line_of("budget"))
    b.check_keys({"steps", "tokens", "eval_every"})
    if ("steps" in b.data) == ("tokens" in b.data):
        b.fail("'budget' needs exactly one of 'steps' or 'tokens'", b.line)
    budget: dict[str, Any] = {}
    for key in ("steps", "tokens", "eval_every"):
        if key in b.data:
            budget[key] = b.get(key, int, positive=True)
    from mixnas.evaluator.trainer import resolve_budget

    try:
        resolve_budget(budget)  # the evaluator's limits
    except ValueError as exc:
        b.fail(str(exc), b.line)
    return budget


def _read_resources(path: Path, top: _Reader) -> ResourcesConfig:
    resources = ResourcesConfig()
    if "resources" not in top.data:
        return resources
    r = _Reader(path, top.data["resources"], "'resources'", top.line_of("resources"))
    r.check_keys({"gpus_per_trial", "cpus_per_trial"})
    for key in ("gpus_per_trial", "cpus_per_trial"):
        if key in r.data:
            problem = check_resource(key, r.data[key])
            if problem:
                r.fail(problem, r.line_of(key))
            setattr(resources, key, float(r.data[key]))
    return resources


def _read_objectives(path: Path, top: _Reader) -> list[Objective]:
    items = top.get("objectives", list)
    line = top.line_of("objectives")
    if not items:
        top.fail("'objectives' must list at least one objective", line)
    objectives = []
    for item in items:
        o = _Reader(path, item, "an objective", line)
        o.check_keys({"name", "direction"})
        name = o.get("name", str)
        direction = o.get("direction", str)
        if direction not in ("minimize", "maximize"):
            o.fail(f"objective '{name}': direction must be 'minimize' or 'maximize', "
                   f"got '{direction}'", o.line_of("direction"))
        if name in {obj.name for obj in objectives}:
            o.fail(f"objective '{name}' is listed twice", o.line_of("name"))
        objectives.append(Objective(name, direction))
    return objectives


def _validate_against_components(config: StudyConfig, path: Path, top: _Reader) -> None:
    """Check the task, train settings, metric and baseline names against what the evaluator and
    search space know (a bad setting would otherwise fail every trial, one by one)."""
    from mixnas.evaluator import get_task, profile_metric_names, task_metric_names
    from mixnas.evaluator.profiler import resolve_profile
    from mixnas.evaluator.trainer import resolve_train
    from mixnas.search_space import BASELINES, Architecture, Grammar

    try:
        resolve_train(config.train)
    except ValueError as exc:
        top.fail(f"train: {exc}", top.line_of("train"))
    try:
        resolve_profile(config.profile)
    except ValueError as exc:
        top.fail(f"profile: {exc}", top.line_of("profile"))

    task_settings = {k: v for k, v in config.task.items() if k != "name"}
    try:
        get_task(config.task["name"], **task_settings)
    except (ValueError, TypeError) as exc:
        top.fail(f"task: {exc}", top.line_of("task"))
    known = set(task_metric_names(config.task["name"], **task_settings))
    known |= set(profile_metric_names(config.profile))
    if any(o.name not in known for o in config.objectives):
        Grammar.load(config.search_space)  # its plugins may register metrics (docs/primitives.md)
        known |= set(profile_metric_names(config.profile))
    for objective in config.objectives:
        if objective.name not in known:
            suggestion = did_you_mean(objective.name, sorted(known))
            top.fail(
                f"unknown objective metric '{objective.name}'{suggestion}; "
                f"known: {', '.join(sorted(known))}",
                top.line_of("objectives"),
            )
    for baseline in config.baselines:
        if isinstance(baseline, str):
            if baseline != "all" and baseline not in BASELINES:
                top.fail(
                    f"unknown baseline '{baseline}'; known: all, {', '.join(sorted(BASELINES))}",
                    top.line_of("baselines"),
                )
            continue
        try:
            Architecture.from_dict(baseline).canonical_dict()
        except (ValueError, KeyError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            top.fail(f"baselines: {message}", top.line_of("baselines"))
