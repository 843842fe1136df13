"""Cost profile of a trained model: size, FLOPs, decode state, latency and training memory.

The analytic numbers (parameters, the model's own FLOP and state formulas) and the counted ones
(FLOPs seen by `FlopCounterMode`, peak tensor memory of a training step) are always computed;
wall-clock latencies only when `latency` is on, because they cost repeated forward passes.
Latencies are medians over `repeats` after a warm-up call, timed with CUDA events on a GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from mixnas.errors import PluginError
from mixnas.evaluator.trainer import Run, device_context

# Imported from the kernels so that the CPU attention op is counted by the kernels' own formula
# (attending pairs only: causal is half of dense), whichever module is imported first.
from mixnas.kernels.flops import FlopCounterMode
from mixnas.search_space.registry import METRICS, ORIGIN

DEFAULT_PROFILE: dict[str, Any] = {
    "context_length": 2048,  # length at which FLOPs per token and decode state are reported
    "latency": True,
    "seq_lens": [512, 2048],  # prefill lengths
    "repeats": 5,
    "decode_tokens": 32,  # decode steps timed (after 8 untimed ones)
}
PROFILE_LIMITS = {"context_length": 1 << 24, "repeats": 1000, "decode_tokens": 1 << 16,
                  "seq_len": 1 << 20, "seq_lens": 16}  # upper limits, checked up front

PROFILE_METRICS: dict[str, str] = {
    "params": "all parameters, embeddings included",
    "non_embedding_params": "parameters without the token embedding and output head",
    "flops_per_token": "forward FLOPs per token at context_length from the model's own formula "
    "(model.flops_per_token): deterministic and device-independent, so it is the one to optimise",
    "flops_per_token_counted": "forward FLOPs per token at context_length, counted by "
    "FlopCounterMode on a batch-1 forward (matmuls, attention, convolutions; elementwise ops "
    "are not counted)",
    "state_bytes": "decode state of one sequence at context_length (KV cache or recurrent "
    "state), 2 bytes per element",
    "peak_memory_bytes": "peak memory of one training step at the training batch: the CUDA "
    "allocator's peak on a GPU; on CPU the peak of live tensor bytes (parameters, gradients, "
    "optimizer state, activations, temporaries) tracked by torch's MemTracker, not process RSS",
    "train_step_ms": "median wall time of one training step (forward, backward, AdamW) at the "
    "training batch size and the task's sequence length (latency only)",
    "prefill_ms": "median batch-1 forward latency at the largest of seq_lens (latency only)",
    "prefill_ms@T": "median batch-1 forward latency at length T, for each T in seq_lens "
    "(latency only)",
    "decode_ms_per_token": "median latency of one batch-1 model.step with the recurrent "
    "state/KV cache, after 8 warm-up tokens (latency only)",
}

LATENCY_METRICS = ("train_step_ms", "prefill_ms", "prefill_ms@T", "decode_ms_per_token")


def resolve_profile(profile: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_PROFILE updated with `profile`; unknown keys are errors."""
    cfg = dict(DEFAULT_PROFILE)
    for key, value in (profile or {}).items():
        if key not in DEFAULT_PROFILE:
            raise ValueError(
                f"unknown profile setting '{key}'; known: {', '.join(DEFAULT_PROFILE)}"
            )
        cfg[key] = value
    for key in ("context_length", "repeats", "decode_tokens"):
        value, high = cfg[key], PROFILE_LIMITS[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            raise ValueError(f"profile setting '{key}' must be an int from 1 to {high:,}, "
                             f"got {value!r}")
    lens, high = cfg["seq_lens"], PROFILE_LIMITS["seq_len"]
    if not isinstance(lens, list) or not 0 < len(lens) <= PROFILE_LIMITS["seq_lens"] or not all(
            type(t) is int and 0 < t <= high for t in lens):
        raise ValueError(
            f"profile setting 'seq_lens' must be a list of 1 to {PROFILE_LIMITS['seq_lens']} "
            f"ints from 1 to {high:,}, got {lens!r}"
        )
    if not isinstance(cfg["latency"], bool):
        raise ValueError(f"profile setting 'latency' must be true or false, got {cfg['latency']!r}")
    return cfg


def is_profile_metric(name: str) -> bool:
    """Whether an objective is a cost the profiler measures (the same on every task) rather than a
    task's quality metric: the one rule that splits a study's objectives into quality and cost.
    A loaded plugin's metric of the architecture alone is a cost too; one that needs the trained
    model is measured after training, like a task metric."""
    if name in PROFILE_METRICS or name.startswith("prefill_ms@"):
        return True
    spec = METRICS.get(name)
    return spec is not None and not spec.needs_model


def profile_metric_names(profile: dict[str, Any] | None = None) -> list[str]:
    """The metric names a profile with these settings reports (`prefill_ms@T` expanded), and
    the loaded plugins' metrics.

    Raises:
        PluginError: A plugin metric takes a built-in profile metric's name.
    """
    cfg = resolve_profile(profile)
    if not cfg["latency"]:
        names = [n for n in PROFILE_METRICS if n not in LATENCY_METRICS]
    else:
        names = [n for n in PROFILE_METRICS if n != "prefill_ms@T"]
        names += [f"prefill_ms@{t}" for t in cfg["seq_lens"]]
    for name in METRICS:
        if name in names or name in PROFILE_METRICS:
            origin = ORIGIN.get(f"metric:{name}", "a plugin")
            raise PluginError(f"{origin}: metric {name!r} clashes with a built-in profile metric")
    return names + list(METRICS)


def plugin_metrics(arch: Any, model: Any = None) -> dict[str, float]:
    """The loaded plugins' metrics of `arch` (docs/primitives.md, "Your own cost model"); those
    that need the trained model only when `model` is given.

    Raises:
        ValueError: A metric returned other names than it declared, or a non-number.
    """
    out: dict[str, float] = {}
    for spec in dict.fromkeys(METRICS.values()):
        if spec.needs_model and model is None:
            continue
        values = spec.compute(arch, model) if spec.needs_model else spec.compute(arch)
        origin = ORIGIN.get(f"metric:{spec.names[0]}", "a plugin")
        if not isinstance(values, dict) or set(values) != set(spec.names):
            raise ValueError(f"{origin}: metric returned {values!r}; expected a dict with "
                             f"{', '.join(spec.names)}")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{origin}: metric {name!r} is {value!r}, not a number")
            out[name] = float(value)
    return out


def profile_run(run: Run, cfg: dict[str, Any]) -> dict[str, float | int]:
    """Profile `run.model` (already trained: a timed training step changes its weights)."""
    model, device = run.model, run.device
    T = cfg["context_length"]
    out: dict[str, float | int] = {
        "params": int(model.num_params(non_embedding=False)),
        "non_embedding_params": int(model.num_params(non_embedding=True)),
        "flops_per_token": float(model.flops_per_token(T)),
        "state_bytes": int(model.state_bytes(T)),
    }
    vocab = run.task.vocab_size
    model.eval()
    with torch.no_grad(), device_context(device):
        tokens = torch.randint(vocab, (1, T), device=device)
        with FlopCounterMode(display=False) as counter:
            model(tokens)
        out["flops_per_token_counted"] = counter.get_total_flops() / T
    model.train()
    batch = run.batch()
    run.train_step(*batch)  # warm-up: the optimizer state exists before memory is measured
    out["peak_memory_bytes"] = _peak_memory(lambda: run.train_step(*batch), device, run)
    if cfg["latency"]:
        out.update(_latency(run, batch, cfg))
    return out


def _peak_memory(step: Callable[[], Any], device: torch.device, run: Run) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(run.model, run.optimizer)
    with tracker:
        step()
    return int(tracker.get_tracker_snapshot("peak")[device]["Total"])


def _latency(run: Run, batch, cfg: dict[str, Any]) -> dict[str, float]:
    model, device, repeats = run.model, run.device, cfg["repeats"]
    out = {"train_step_ms": _median_ms(lambda: run.train_step(*batch), repeats, device)}
    model.eval()
    with torch.no_grad(), device_context(device):
        for T in sorted(cfg["seq_lens"]):
            tokens = torch.randint(run.task.vocab_size, (1, T), device=device)
            out[f"prefill_ms@{T}"] = _median_ms(lambda t=tokens: model(t), repeats, device)
        out["prefill_ms"] = out[f"prefill_ms@{max(cfg['seq_lens'])}"]
        state = model.init_state(1, device=device)
        tokens = torch.randint(run.task.vocab_size, (8 + cfg["decode_tokens"], 1), device=device)
        for t in tokens[:8]:
            _, state = model.step(t, state)
        times = []
        for t in tokens[8:]:
            ms, (_, state) = _time_ms(lambda t=t, s=state: model.step(t, s), device)
            times.append(ms)
        out["decode_ms_per_token"] = statistics.median(times)
    model.train()
    return out


def _time_ms(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(wall time of one call in ms, its result); CUDA events on a GPU."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        result = fn()
        end.record()
        torch.cuda.synchronize(device)
        return begin.elapsed_time(end), result
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1e3, result


def _median_ms(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    return statistics.median(_time_ms(fn, device)[0] for _ in range(repeats))
