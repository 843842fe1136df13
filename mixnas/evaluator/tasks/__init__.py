"""Task registry: name -> Task class, and a per-process cache of built tasks (their data)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from mixnas.evaluator.tasks.base import IGNORE, Split, Task
from mixnas.evaluator.tasks.lm import LanguageModel
from mixnas.evaluator.tasks.mqar import MQAR
from mixnas.evaluator.tasks.suite import MAD_TASKS, MadSuite

TASKS: dict[str, type[Task]] = {
    **MAD_TASKS,
    MadSuite.name: MadSuite,
    MQAR.name: MQAR,
    LanguageModel.name: LanguageModel,
}


def _task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def get_task(name: str, **settings: Any) -> Task:
    """The task `name` with `settings`; built once per process, since building generates data."""
    _task_class(name)
    return _cached_task(name, json.dumps(settings, sort_keys=True, default=str))


@lru_cache(maxsize=8)
def _cached_task(name: str, settings_json: str) -> Task:
    return TASKS[name](**json.loads(settings_json))


def task_metric_names(task_name: str, **settings: Any) -> list[str]:
    """Names of the metrics `task_name` reports (with these settings), for validating objectives."""
    return _task_class(task_name).metric_names_for(settings)


__all__ = ["IGNORE", "TASKS", "Split", "Task", "get_task", "task_metric_names"]
