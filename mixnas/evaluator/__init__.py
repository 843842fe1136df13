"""Trial evaluation: task data generators, the trainer, and the cost profiler.

`evaluate(arch, task, budget, ...)` is the one entry point a search worker calls; the rest is
exported so that study files can be validated before anything runs.
"""

from mixnas.evaluator.evaluation import EvalResult, evaluate
from mixnas.evaluator.profiler import PROFILE_METRICS, is_profile_metric, profile_metric_names
from mixnas.evaluator.tasks import TASKS, get_task, task_metric_names
from mixnas.evaluator.trainer import DEFAULT_TRAIN, TrialFailed

__all__ = [
    "DEFAULT_TRAIN",
    "PROFILE_METRICS",
    "TASKS",
    "EvalResult",
    "TrialFailed",
    "evaluate",
    "get_task",
    "is_profile_metric",
    "profile_metric_names",
    "task_metric_names",
]
