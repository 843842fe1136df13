"""Deciders answer the grammar's decisions: random sampling, an Optuna trial, or a fixed script.

The grammar names every decision by its derivation path (`depth`, `layer.3.token_mixer`,
`layer.3.token_mixer.attention.heads`), asks only the decisions a derivation reaches, and asks each
at most once, so a name is a stable, conditional search-space parameter.
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any


class Decider(abc.ABC):
    """Makes the decisions of one derivation; the grammar calls exactly one method per decision."""

    @abc.abstractmethod
    def choose(self, name: str, options: Sequence[Any], weights: Sequence[float]) -> Any:
        """Pick one of `options` (hashable scalars); `weights` are the grammar's prior."""

    @abc.abstractmethod
    def integer(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        """An int in [low, high] on the grid low + k*step (log: log-uniform prior, step 1)."""

    @abc.abstractmethod
    def real(
        self, name: str, low: float, high: float, step: float | None = None, log: bool = False
    ) -> float:
        """A float in [low, high], on the grid low + k*step when step is given."""


class RandomDecider(Decider):
    """Samples from the grammar's prior: production weights, uniform or log-uniform ranges."""

    def __init__(self, seed: int | None = None):
        self.rng = random.Random(seed)

    def choose(self, name, options, weights):
        return self.rng.choices(list(options), weights=list(weights))[0]

    def integer(self, name, low, high, step=1, log=False):
        if log:  # as Optuna does: log-uniform over [low - 0.5, high + 0.5], rounded
            value = math.exp(self.rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
            return min(high, max(low, round(value)))
        return low + step * self.rng.randrange((high - low) // step + 1)

    def real(self, name, low, high, step=None, log=False):
        if log:
            return math.exp(self.rng.uniform(math.log(low), math.log(high)))
        if step is not None:
            return min(high, low + step * self.rng.randrange(int(round((high - low) / step)) + 1))
        return self.rng.uniform(low, high)


class OptunaDecider(Decider):
    """Maps each decision to the Optuna parameter of the same name on `trial`.

    Production weights are only a prior for random sampling; Optuna's sampler ignores them."""

    def __init__(self, trial: Any):
        self.trial = trial

    def choose(self, name, options, weights):
        return self.trial.suggest_categorical(name, list(options))

    def integer(self, name, low, high, step=1, log=False):
        return self.trial.suggest_int(name, low, high, step=step, log=log)

    def real(self, name, low, high, step=None, log=False):
        return self.trial.suggest_float(name, low, high, step=step, log=log)


class ScriptedDecider(Decider):
    """Answers from a dict of decision name -> value: replays a trial's `params`, scripts the
    derivation of a known architecture, or pins some decisions and leaves the rest to `fallback`.
    Without a fallback, a decision missing from the dict raises KeyError; a scripted value outside
    the decision's domain always raises ValueError, so a stale script fails loudly."""

    def __init__(self, decisions: Mapping[str, Any], fallback: Decider | None = None):
        self.decisions, self.fallback = dict(decisions), fallback
        self.asked: list[str] = []  # scripted names, in the order the derivation asked them

    @property
    def unused(self) -> set[str]:
        """Scripted names the derivation never asked for."""
        return set(self.decisions) - set(self.asked)

    def _scripted(self, name: str) -> bool:
        if name in self.decisions:
            self.asked.append(name)
            return True
        if self.fallback is None:
            raise KeyError(f"no scripted value for decision {name!r}")
        return False

    def choose(self, name, options, weights):
        if not self._scripted(name):
            return self.fallback.choose(name, options, weights)
        value = self.decisions[name]
        if not any(value == o and type(value) is type(o) for o in options):
            raise ValueError(f"decision {name!r}: {value!r} is not one of {list(options)}")
        return value

    def integer(self, name, low, high, step=1, log=False):
        if not self._scripted(name):
            return self.fallback.integer(name, low, high, step, log)
        value = self.decisions[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"decision {name!r}: expected an int, got {value!r}")
        if not low <= value <= high or (value - low) % step:
            raise ValueError(f"decision {name!r}: {value} not in range({low}, {high + 1}, {step})")
        return value

    def real(self, name, low, high, step=None, log=False):
        if not self._scripted(name):
            return self.fallback.real(name, low, high, step, log)
        value = self.decisions[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            raise ValueError(f"decision {name!r}: {value!r} is not a number in [{low}, {high}]")
        return float(value)


class RecordingDecider(Decider):
    """Passes each decision to `decider` and records it in `decisions` (name -> value): the
    grammar decisions that derive a design drawn by any decider, e.g. to enqueue it in a study."""

    def __init__(self, decider: Decider):
        self.decider = decider
        self.decisions: dict[str, Any] = {}

    def choose(self, name, options, weights):
        self.decisions[name] = self.decider.choose(name, options, weights)
        return self.decisions[name]

    def integer(self, name, low, high, step=1, log=False):
        self.decisions[name] = self.decider.integer(name, low, high, step, log)
        return self.decisions[name]

    def real(self, name, low, high, step=None, log=False):
        self.decisions[name] = self.decider.real(name, low, high, step, log)
        return self.decisions[name]
