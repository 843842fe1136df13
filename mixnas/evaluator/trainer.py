"""The training loop: AdamW, warmup + cosine schedule, gradient clipping, rung evaluations.

One `Run` is one model learning one task. A plain task has one run; a suite (`mad`) has one per
member task, stepped in lock-step so that every evaluation point (each `eval_every` steps, each
rung, the end) sees all of them at the same fraction of their budget. A run that reaches test
accuracy 0.999 stops training (MAD's early-stopping rule) and keeps its last metrics; the whole
loop stops when every run has.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.evaluator.tasks import IGNORE, Task

DEFAULT_TRAIN: dict[str, Any] = {
    "lr": 5e-4,  # MAD's learning rate, AdamW, cosine decay to min_lr
    "min_lr": 1e-6,
    "weight_decay": 0.1,  # on matrices and embeddings only
    "betas": [0.9, 0.98],
    "batch_size": 128,
    "eval_batch_size": 256,
    "warmup_frac": 0.05,
    # cosine: decay over the whole run. wsd (warmup-stable-decay): constant, then a linear decay
    # over the last decay_frac of the steps, so a short run follows a long one's schedule for
    # most of its length and ranks designs more like it does
    "schedule": "cosine",
    "decay_frac": 0.2,
    "grad_clip": 1.0,  # 0 disables clipping
    "aux_loss_coef": 0.01,  # weight of the model's MoE load-balancing loss
    # torch.compile the training forward/backward (opt-in): it pays only when a trial trains
    # long enough to earn back the compile time (benchmarks/train_throughput.py --compile
    # reports both)
    "compile": False,
}
NUMBER_SETTINGS = tuple(k for k, v in DEFAULT_TRAIN.items() if isinstance(v, float))
# Upper limits, refused before any work starts: a budget beyond them would run for months.
MAX_BATCH = 1 << 16
MAX_BUDGET = {"steps": 10_000_000, "tokens": 10**13, "eval_every": 10_000_000}
# Evaluations per run when the budget sets no `eval_every`: every 5% of the run's steps, so a
# learning curve has points to draw whether the budget is in steps or tokens.
DEFAULT_EVALUATIONS = 20
EARLY_STOP_ACCURACY = 0.999


class TrialFailed(Exception):
    """The architecture cannot be trained (non-finite loss, out of memory, build error)."""


@dataclass
class Outcome:
    metrics: dict[str, float]
    curve: list[dict[str, Any]]
    steps: int  # optimizer steps taken, summed over runs
    budget_steps: int
    pruned_at_step: int | None
    wall_seconds: float


def resolve_train(train: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_TRAIN updated with `train`; unknown keys are errors."""
    cfg = dict(DEFAULT_TRAIN)
    for key, value in (train or {}).items():
        if key not in DEFAULT_TRAIN:
            raise ValueError(f"unknown train setting '{key}'; known: {', '.join(DEFAULT_TRAIN)}")
        cfg[key] = value
    for key in ("batch_size", "eval_batch_size"):
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_BATCH:
            raise ValueError(f"train setting '{key}' must be an int from 1 to {MAX_BATCH}, "
                             f"got {value!r}")
    if cfg["schedule"] not in ("cosine", "wsd"):
        raise ValueError(f"train setting 'schedule' must be cosine or wsd, got {cfg['schedule']!r}")
    for key in NUMBER_SETTINGS:
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 <= value < math.inf):
            raise ValueError(f"train setting '{key}' must be a finite number >= 0, got {value!r}")
    betas = cfg["betas"]
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise ValueError(f"train setting 'betas' must be two numbers in [0, 1), got {betas!r}")
    if not 0 <= cfg["warmup_frac"] < 1:
        raise ValueError(f"train setting 'warmup_frac' must be in [0, 1), got {cfg['warmup_frac']}")
    if not isinstance(cfg["compile"], bool):
        raise ValueError(f"train setting 'compile' must be true or false, got {cfg['compile']!r}")
    if not 0 < cfg["decay_frac"] <= 1:
        raise ValueError(f"train setting 'decay_frac' must be in (0, 1], got {cfg['decay_frac']}")
    return cfg


def resolve_budget(budget: dict[str, Any]) -> dict[str, Any]:
    """Check a budget: exactly one of steps/tokens, optional rungs (fractions) and eval_every."""
    unknown = set(budget) - {"steps", "tokens", "rungs", "eval_every"}
    if unknown:
        raise ValueError(
            f"unknown budget key(s) {sorted(unknown)}; known: steps, tokens, rungs, eval_every"
        )
    if ("steps" in budget) == ("tokens" in budget):
        raise ValueError("budget needs exactly one of 'steps' or 'tokens'")
    for key in ("steps", "tokens", "eval_every"):
        value = budget.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"budget '{key}' must be a positive int, got {value!r}")
        if value > MAX_BUDGET[key]:
            raise ValueError(f"budget '{key}' must be at most {MAX_BUDGET[key]:,}, got {value:,}")
    rungs = budget.get("rungs", [])
    if not isinstance(rungs, list) or not all(
        isinstance(f, (int, float)) and 0 < f < 1 for f in rungs
    ):
        raise ValueError(f"budget 'rungs' must be a list of fractions in (0, 1), got {rungs!r}")
    return {**budget, "rungs": sorted(rungs)}


def learning_rate(step: int, total_steps: int, cfg: dict[str, Any]) -> float:
    """The learning rate at `step` of `total_steps`: linear warmup, then cosine or WSD decay."""
    lr, min_lr = cfg["lr"], cfg["min_lr"]
    warmup = int(cfg["warmup_frac"] * total_steps)
    if step < warmup:
        return lr * (step + 1) / warmup
    if cfg["schedule"] == "wsd":
        decay_start = max(warmup, total_steps - round(cfg["decay_frac"] * total_steps))
        progress = (step - decay_start) / max(1, total_steps - decay_start)
        return lr if progress < 0 else lr - (lr - min_lr) * progress
    progress = (step - warmup) / max(1, total_steps - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def steps_per_run(budget: dict[str, Any], task: Task, batch_size: int) -> int:
    """Optimizer steps of each run: the budget split evenly over the task's parts."""
    n = len(task.parts())
    if "steps" in budget:
        return max(1, budget["steps"] // n)
    return max(1, math.ceil(budget["tokens"] / (n * batch_size * task.seq_len)))


def make_optimizer(params_groups: list[dict], cfg: dict[str, Any], device: torch.device):
    """AdamW over `params_groups`, fused (one kernel for all parameters) where PyTorch has a fused
    AdamW for the device: on a CPU the fused step is ~3x faster than the per-parameter loop."""
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    return torch.optim.AdamW(params_groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), **fused)


def device_context(device: torch.device):
    """bf16 autocast on CUDA, plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Run:
    """One model (plus the task's optional head) and its optimizer on one task."""

    task: Task
    model: nn.Module
    cfg: dict[str, Any]
    total_steps: int
    device: torch.device
    generator: torch.Generator
    head: nn.Module | None = field(init=False)
    train_model: nn.Module = field(init=False)  # the model, or its torch.compile wrapper
    done: int = field(init=False, default=0)
    finished: bool = field(init=False, default=False)
    metrics: dict[str, float] = field(init=False, default_factory=dict)
    losses: list[float] = field(init=False, default_factory=list)  # since the last evaluation

    def __post_init__(self):
        self.head = self.task.make_head()
        modules = [self.model] + ([self.head.to(self.device)] if self.head is not None else [])
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        self.optimizer = make_optimizer(
            [
                {"params": decay, "weight_decay": self.cfg["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            self.cfg,
            self.device,
        )
        # training runs the compiled module (same parameters); evaluation and profiling the eager
        # one, so that eval batch shapes cause no recompilation
        self.train_model = torch.compile(self.model) if self.cfg["compile"] else self.model

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.task.train_batch(self.cfg["batch_size"], self.generator)
        return inputs.to(self.device), targets.to(self.device)

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """One optimizer step; returns the task loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.done, self.total_steps, self.cfg)
        self.optimizer.zero_grad(set_to_none=True)
        with device_context(self.device):
            logits = self.task.predict(self.train_model, self.head, inputs)
            loss = F.cross_entropy(
                logits.float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE
            )
            aux = self.model.aux_loss()
            total = loss + self.cfg["aux_loss_coef"] * aux if torch.is_tensor(aux) else loss
        value = loss.item()
        if not math.isfinite(value):
            raise TrialFailed(f"non-finite loss at step {self.done + 1}")
        total.backward()
        if self.cfg["grad_clip"] > 0:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg["grad_clip"])
            if not math.isfinite(norm.item()):
                raise TrialFailed(f"non-finite gradient norm at step {self.done + 1}")
        self.optimizer.step()
        self.done += 1
        return value

    def step(self) -> None:
        self.losses.append(self.train_step(*self.batch()))

    @torch.no_grad()
    def evaluate(self) -> None:
        """Score on the test splits; a solved task (MAD's 0.999 rule) stops training."""
        self.model.eval()

        def predict(inputs: torch.Tensor) -> torch.Tensor:
            with device_context(self.device):
                return self.task.predict(self.model, self.head, inputs.to(self.device))

        try:
            self.metrics = self.task.evaluate(predict, self.cfg["eval_batch_size"])
        finally:
            self.model.train()
        if self.metrics.get("accuracy", 0.0) >= EARLY_STOP_ACCURACY:
            self.finished = True


def train(
    task: Task,
    runs: list[Run],
    budget: dict[str, Any],
    on_rung: Callable[[int, int, dict], bool] | None = None,
    on_eval: Callable[[dict], None] | None = None,
) -> Outcome:
    """Train `runs` (one per part of `task`) in lock-step for their `total_steps`, evaluating at
    every `eval_every` steps (default: `DEFAULT_EVALUATIONS` times a run), at each rung and at
    the end."""
    start = time.perf_counter()
    total = runs[0].total_steps
    rung_at: dict[int, list[int]] = {}
    for i, frac in enumerate(budget["rungs"]):
        rung_at.setdefault(min(total, max(1, round(frac * total))), []).append(i)
    every = budget.get("eval_every") or max(1, total // DEFAULT_EVALUATIONS)
    curve: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    pruned_at = None
    for r in range(1, total + 1):
        for run in runs:
            if not run.finished:
                run.step()
        if not (r == total or r in rung_at or (every and r % every == 0)):
            continue
        losses = [loss for run in runs for loss in run.losses]
        for run in runs:
            run.losses.clear()
            if not run.finished:
                run.evaluate()
        metrics = task.combine([run.metrics for run in runs])
        step = sum(run.done for run in runs)
        rungs = rung_at.get(r, [])
        point = {
            "step": step,
            "tokens": sum(run.done * run.cfg["batch_size"] * run.task.seq_len for run in runs),
            "train_loss": sum(losses) / len(losses) if losses else None,
            "metrics": dict(metrics),
            "rung": rungs[-1] if rungs else None,
        }
        curve.append(point)
        if on_eval is not None:
            on_eval(point)
        if on_rung is not None and any(on_rung(i, step, dict(metrics)) for i in rungs):
            pruned_at = step
            break
        if all(run.finished for run in runs):
            break
    return Outcome(
        metrics=metrics,
        curve=curve,
        steps=sum(run.done for run in runs),
        budget_steps=total * len(runs),
        pruned_at_step=pruned_at,
        wall_seconds=time.perf_counter() - start,
    )
