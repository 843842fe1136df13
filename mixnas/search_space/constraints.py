"""Feasibility of a sampled architecture: it must build, and fit the space's size budgets.

Sizes come from the model itself, built on PyTorch's meta device: every parameter and buffer has a
shape but no storage and no initialisation, so the check costs milliseconds even for large models
and uses exactly the counts the trainer will see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mixnas.search_space.architecture import Architecture

# Non-embedding parameters and decode state do not depend on the vocabulary; any size will do.
_VOCAB = 16


@dataclass(frozen=True)
class Footprint:
    non_embedding_params: int
    state_bytes: int | None  # decode state per sequence at the context length; None if not asked


@dataclass(frozen=True)
class Constraints:
    """Bounds on a derived architecture; None means unbounded."""

    min_params: int | None = None  # non-embedding parameters
    max_params: int | None = None
    max_layers: int | None = None
    max_state_bytes: int | None = None  # decode state of one sequence of `context_length` tokens
    context_length: int | None = None

    def violations(self, arch: Architecture) -> list[str]:
        """Why `arch` is infeasible, one reason per violated bound; empty when it is feasible."""
        reasons = []
        if self.max_layers is not None and len(arch.layers) > self.max_layers:
            reasons.append(f"{len(arch.layers)} layers > max_layers {self.max_layers}")
        try:
            size = footprint(arch, self.context_length if self.max_state_bytes else None)
        except ValueError as err:
            return reasons + [f"does not build: {err}"]
        params = size.non_embedding_params
        if self.min_params is not None and params < self.min_params:
            reasons.append(
                f"{human(params)} non-embedding params < min_params {human(self.min_params)}"
            )
        if self.max_params is not None and params > self.max_params:
            reasons.append(
                f"{human(params)} non-embedding params > max_params {human(self.max_params)}"
            )
        if self.max_state_bytes is not None and size.state_bytes > self.max_state_bytes:
            reasons.append(
                f"{human(size.state_bytes, 'B')} decode state at {self.context_length} tokens "
                f"> max_state_bytes {human(self.max_state_bytes, 'B')}"
            )
        return reasons


def footprint(arch: Architecture, context_length: int | None = None) -> Footprint:
    """Count the non-embedding parameters (and decode-state bytes at `context_length`) of `arch`.

    Raises ValueError when the architecture does not build (e.g. d_model not divisible by heads)."""
    from mixnas.search_space.model import build_model  # the model imports the primitives

    with torch.device("meta"):
        model = build_model(arch, _VOCAB)
    state = None if context_length is None else int(model.state_bytes(context_length))
    return Footprint(int(model.num_params(non_embedding=True)), state)


def human(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M'; bytes use binary prefixes: 1048576 -> '1MiB'."""
    base, prefixes = (1024, ("", "Ki", "Mi", "Gi", "Ti")) if unit else (1000, " KMGT")
    prefixes = [p.strip() for p in prefixes]
    index = 0
    while abs(value) >= base and index < len(prefixes) - 1:
        value, index = value / base, index + 1
    return f"{value:.3g}{prefixes[index]}{unit}"
