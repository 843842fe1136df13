"""The grammar's parts: decision domains, slots, productions, rules and the checked file.

A grammar file becomes these plain objects (grammar_parser.py reads them, grammar_checker.py checks
the whole, grammar.py derives architectures from them); docs/grammar.md documents the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mixnas.search_space.constraints import Constraints
from mixnas.search_space.registry import ParamSpec
from mixnas.search_space.sampling import Decider
from mixnas.yamlfile import SourceError

PLACEMENTS = ("interleaved", "first", "middle", "last")
KIND_WORDS = {
    "stack": "a layer stack",
    "layer": "a layer",
    "token": "a token mixer",
    "channel": "a channel mixer",
}
# A slot's kind and its name in decision paths; a rule named like its slot is not repeated there.
SLOT_NAMES = {"layer": "layer", "token": "token_mixer", "channel": "channel_mixer"}
# Domains of the architecture settings and pattern numbers, checked like primitive parameters.
SETTINGS = {
    # upper limits: a grammar beyond them describes models no study here could train
    "d_model": ParamSpec("int", 256, low=1, high=65536),
    "depth": ParamSpec("int", 4, low=1, high=1024),
    "norm": ParamSpec("choice", "rms", choices=("rms", "layer")),
    "tie_embeddings": ParamSpec("bool", True),
}


class GrammarError(SourceError):
    """A problem a grammar file causes; str(error) is exactly `FILE:LINE: message`."""


# ----------------------------------------------------------------------------------------------
# The grammar's parts


@dataclass(frozen=True)
class Domain:
    """The values a decision may take: one fixed value, a weighted choice, or an int/float range."""

    kind: str  # "fixed" | "choice" | "int" | "float"
    line: int
    values: tuple = ()  # fixed: (value,); choice: the options
    weights: tuple = ()
    item_lines: tuple = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False

    @property
    def decided(self) -> bool:
        """Whether drawing a value is a real decision (more than one possible value)."""
        if self.kind in ("fixed", "choice"):
            return len(self.values) > 1
        return self.low < self.high

    def signature(self) -> tuple:
        return (self.kind, self.values, self.low, self.high, self.step, self.log)

    def draw(self, decider: Decider, name: str) -> Any:
        if not self.decided:
            return self.values[0] if self.values else self.low
        if self.kind == "choice":
            return decider.choose(name, self.values, self.weights)
        if self.kind == "int":
            return decider.integer(name, self.low, self.high, self.step, self.log)
        return decider.real(name, self.low, self.high, self.step, self.log)

    def describe(self) -> str:
        if self.kind == "fixed":
            return _scalar(self.values[0])
        if self.kind == "choice":
            options = ", ".join(_scalar(v) for v in self.values)
            if len(set(self.weights)) > 1:
                options += f" | weights {', '.join(f'{w:g}' for w in self.weights)}"
            return "{" + options + "}"
        extra = (f" step {self.step:g}" if self.step not in (None, 1) else "") + (
            " log" if self.log else ""
        )
        return f"{self.kind} [{self.low:g}, {self.high:g}]{extra}"


@dataclass
class Slot:
    """A place that needs a sub-derivation: the name of a rule, or an inline production."""

    line: int
    kind: str  # what it must derive: stack | layer | token | channel
    rule: str | None = None
    inline: Production | None = None

    def describe(self) -> str:
        return self.rule if self.rule else f"({self.inline.describe()})"


@dataclass
class Production:
    label: str
    weight: float
    line: int

    def slots(self) -> list[Slot]:
        return []


@dataclass
class PrimitiveProduction(Production):
    """A terminal: a registered primitive with a domain per parameter (others keep defaults)."""

    primitive: str
    role: str
    params: dict[str, Domain]
    mixers: dict[str, list[Slot]]  # parameters that are lists of mixers (parallel `branches`)

    def slots(self):
        return [slot for slots in self.mixers.values() for slot in slots]

    def describe(self) -> str:
        parts = [f"{k}={d.describe()}" for k, d in self.params.items()]
        parts += [f"{k}=[{' | '.join(s.describe() for s in v)}]" for k, v in self.mixers.items()]
        return self.primitive + (" " + " ".join(parts) if parts else "")


@dataclass
class RuleProduction(Production):
    """Derive whatever another rule derives (a unit production)."""

    rule: str

    def describe(self) -> str:
        return f"-> {self.rule}"


@dataclass
class LayerProduction(Production):
    token_mixer: Slot
    channel_mixer: Slot

    def slots(self):
        return [self.token_mixer, self.channel_mixer]

    def describe(self) -> str:
        return f"token {self.token_mixer.describe()}, channel {self.channel_mixer.describe()}"


@dataclass
class PerLayerProduction(Production):
    """`depth` layers, each derived independently from one layer rule."""

    layer: Slot

    def slots(self):
        return [self.layer]

    def describe(self) -> str:
        return f"per_layer {self.layer.describe()} x depth"


@dataclass
class MotifProduction(Production):
    """A sequence of layers derived once and repeated (`repeat` times, or depth // len)."""

    layers: list[Slot]
    repeat: Domain | None

    def slots(self):
        return list(self.layers)

    def describe(self) -> str:
        times = self.repeat.describe() if self.repeat else f"depth // {len(self.layers)}"
        return f"motif [{', '.join(s.describe() for s in self.layers)}] x {times}"


@dataclass
class RatioProduction(Production):
    """One `a` layer per `r` `b` layers over `depth` layers. Shared: a and b are each derived once
    (a homogeneous hybrid); not shared: every layer is derived on its own from a or b."""

    a: Slot
    b: Slot
    r: Domain
    placement: Domain
    shared: Domain

    def slots(self):
        return [self.a, self.b]

    def describe(self) -> str:
        return (
            f"ratio 1 {self.a.describe()} : r {self.b.describe()}, r={self.r.describe()}, "
            f"placement={self.placement.describe()}, shared={self.shared.describe()}"
        )


@dataclass
class Rule:
    name: str
    line: int
    productions: list[Production]
    kind: str | None = None

    def production(self, label: str) -> Production:
        return next(p for p in self.productions if p.label == label)


@dataclass
class Syntax:
    """A checked grammar file."""

    file: str
    name: str
    description: str
    settings: dict[str, Domain | None]  # d_model, depth (None: not given), norm, tie_embeddings
    layers: Slot  # the start symbol: what derives the layer stack
    constraints: Constraints
    rules: dict[str, Rule]
    plugins: tuple = ()  # the PluginSources the file's `plugins` key loaded


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)

