"""What travels with a trial: the worker's payload and result, and what re-queues a failed trial.

The driver sends a `TrialPayload` to a Ray worker and gets a `TrialResult` back (both pickled);
`retry_attrs` are the Optuna user attributes that queue a failed trial again, used alike by the
driver (a worker died) and by stale recovery (a driver died).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mixnas.orchestrator.config import PruningConfig

# User attributes a re-queued trial keeps: a baseline is re-run by its architecture (it has no
# grammar parameters), a promoted design keeps its link to the parent study's trial.
CARRIED_ATTRS = ("baseline", "arch_json", "parent_trial")


@dataclass(frozen=True)
class TrialPayload:
    """Everything a worker needs to run one trial; it writes the curve to `storage` itself."""

    storage: str  # the study database's URL
    study_id: int
    trial_id: int  # our trial row
    number: int  # Optuna's trial number
    arch_json: str
    task: dict[str, Any]
    budget: dict[str, Any]  # the study's budget with the pruning rungs
    train: dict[str, Any]
    profile: dict[str, Any]
    objectives: list[dict[str, str]]
    pruning: PruningConfig
    seed: int = 0
    keep_weights: bool = False
    threads: int = 1  # torch threads of the worker process
    gpus: float = 0.0  # the trial's GPU share (Ray's num_gpus): it trains on CUDA when > 0
    plugins: tuple = ()  # PluginSources the worker executes first (it may be on another machine)


@dataclass
class TrialResult:
    """A worker's report on one trial (or the driver's, when the worker never reported)."""

    status: str  # complete | pruned | failed
    reason: str | None = None  # why it failed
    retry: bool = False  # a failure that is not the design's fault: queue the trial again
    metrics: dict[str, float] = field(default_factory=dict)
    profile: dict[str, float] = field(default_factory=dict)
    pruned_at_step: int | None = None
    steps: int | None = None
    budget_steps: int | None = None
    vocab_size: int | None = None
    weights: bytes | None = None  # safetensors bytes, when the study keeps them
    seconds: float | None = None
    worker: str | None = None  # host:pid
    device: str | None = None  # what it trained on: cpu or cuda
    device_note: str | None = None  # why not the device its resources asked for

    @classmethod
    def failed(cls, reason: str, *, retry: bool = False, **fields: Any) -> TrialResult:
        """A failed trial's result."""
        return cls("failed", reason=reason, retry=retry, **fields)


def retry_attrs(number: int, attempt: int, carried: dict[str, Any],
                max_retries: int) -> dict[str, Any] | None:
    """User attributes that re-queue trial `number`, or None once its retries are used up.

    Args:
        number: The failed trial's number (the retry records it as `retry_of`).
        attempt: Which attempt the failed trial was (0: the first).
        carried: Attributes the retry keeps (`CARRIED_ATTRS`, where the trial has them).
        max_retries: The study's `max_retries`.
    """
    if attempt >= max_retries:
        return None
    kept = {k: v for k, v in carried.items() if k in CARRIED_ATTRS and v is not None}
    return {**kept, "retry_of": number, "attempt": attempt + 1}
