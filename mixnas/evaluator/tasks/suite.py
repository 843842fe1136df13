"""The `mad` suite: the six MAD tasks, each trained as its own model on an equal budget share.

Its score `accuracy` is the mean test accuracy over the tasks (MAD's aggregate); each task's own
metrics are reported too, prefixed with its name. A task's settings can be overridden with a
mapping under its name, e.g. `{"name": "mad", "selective_copying": {"seq_len": 128}}`, and `tasks`
picks a subset.
"""

from __future__ import annotations

from typing import Any

from mixnas.evaluator.tasks.base import Task
from mixnas.evaluator.tasks.mad import (
    Compression,
    FuzzyInContextRecall,
    InContextRecall,
    Memorization,
    NoisyInContextRecall,
    SelectiveCopying,
)

MAD_TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        InContextRecall,
        NoisyInContextRecall,
        FuzzyInContextRecall,
        SelectiveCopying,
        Compression,
        Memorization,
    )
}


class MadSuite(Task):
    name = "mad"
    defaults = {"tasks": list(MAD_TASKS), **{name: {} for name in MAD_TASKS}}

    def __init__(self, **settings):
        super().__init__(**settings)
        names = self._names(self.settings)
        self._parts = []
        for name in names:
            overrides = self.settings[name]
            if not isinstance(overrides, dict):
                self.fail(f"setting '{name}' must be a mapping of that task's settings")
            self._parts.append(MAD_TASKS[name](**overrides))
        self.vocab_size = max(part.vocab_size for part in self._parts)
        self.seq_len = round(sum(part.seq_len for part in self._parts) / len(self._parts))

    @classmethod
    def _names(cls, settings: dict[str, Any]) -> list[str]:
        names = settings.get("tasks", cls.defaults["tasks"])
        if not isinstance(names, list) or not names:
            raise ValueError(f"task 'mad': setting 'tasks' must be a non-empty list, got {names!r}")
        for name in names:
            if name not in MAD_TASKS:
                raise ValueError(
                    f"task 'mad': unknown task {name!r}; known: {', '.join(MAD_TASKS)}"
                )
        return names

    @classmethod
    def metric_names_for(cls, settings: dict[str, Any]) -> list[str]:
        names = cls._names(settings)
        return [*cls.metric_names, *(f"{n}.{m}" for n in names for m in cls.metric_names)]

    def parts(self) -> list[Task]:
        return self._parts

    def combine(self, metrics: list[dict[str, float]]) -> dict[str, float]:
        out = {m: sum(r[m] for r in metrics) / len(metrics) for m in self.metric_names}
        for part, result in zip(self._parts, metrics):
            out.update({f"{part.name}.{m}": result[m] for m in self.metric_names})
        return out
