"""The grammar file format: YAML read with line numbers, the grammar's parts, and validation.

`parse(text, file)` checks a whole file against the primitive registry and raises `GrammarError`
(`FILE:LINE: message`) at the first problem: unknown keys, primitives or parameters, domains outside
a primitive's declared ones, bad weights, undefined or unreachable rules, rules of the wrong kind,
rules that never finish deriving. docs/grammar.md documents the format for users.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mixnas.errors import ConfigError
from mixnas.search_space.constraints import Constraints
from mixnas.search_space.registry import REGISTRY, ParamSpec, get_primitive
from mixnas.search_space.sampling import Decider

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
    "d_model": ParamSpec("int", 256, low=1),
    "depth": ParamSpec("int", 4, low=1),
    "norm": ParamSpec("choice", "rms", choices=("rms", "layer")),
    "tie_embeddings": ParamSpec("bool", True),
}
_COUNT = ParamSpec("int", 1, low=1)
_PLACEMENT = ParamSpec("choice", "interleaved", choices=PLACEMENTS)
_SHARED = ParamSpec("bool", True)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^([0-9][0-9_]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([KMGT]i?)?B?$")


class GrammarError(ConfigError):
    """A problem a grammar file causes; str(error) is exactly `FILE:LINE: message`."""

    def __init__(self, file: str, line: int | None, message: str):
        self.file, self.line, self.message = str(file), line, message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")

    def __reduce__(self):  # survives pickling (e.g. across Ray workers)
        return type(self), (self.file, self.line, self.message)


# ----------------------------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict):
    """A YAML mapping that remembers the line of itself, its keys and its values."""

    def __init__(self, line: int):
        super().__init__()
        self.line, self.key_lines, self.value_lines = line, {}, {}


class _Seq(list):
    """A YAML sequence that remembers the line of itself and of each item."""

    def __init__(self, line: int):
        super().__init__()
        self.line, self.item_lines = line, []


class _Loader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader (same safety), with line-remembering mappings and sequences."""

    file = "<string>"

    def construct_located_map(self, node: yaml.MappingNode) -> _Map:
        self.flatten_mapping(node)
        out = _Map(node.start_mark.line + 1)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (dict, list)):
                raise GrammarError(self.file, line, "a mapping key must be a plain value")
            if key in out:
                raise GrammarError(self.file, line, f"duplicate key {key!r}")
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key], out.value_lines[key] = line, value_node.start_mark.line + 1
        return out

    def construct_located_seq(self, node: yaml.SequenceNode) -> _Seq:
        out = _Seq(node.start_mark.line + 1)
        for item in node.value:
            out.append(self.construct_object(item, deep=True))
            out.item_lines.append(item.start_mark.line + 1)
        return out


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_located_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_located_seq)
# YAML 1.1 reads 1e-4 and 5e6 as strings (its floats need a dot and a signed exponent).
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(text: str, file: str) -> Any:
    loader = _Loader(text)
    loader.file = file
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise GrammarError(file, line, f"invalid YAML: {err.problem}") from None
    finally:
        loader.dispose()


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


# ----------------------------------------------------------------------------------------------
# Parsing and validation


class _Parser:
    """Turns the located YAML into the grammar's parts, failing at the first problem."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, line: int, message: str):
        raise GrammarError(self.file, line, message)

    def keys(self, data: _Map, allowed: tuple, where: str, required: tuple = ()) -> None:
        for key in data:
            if key not in allowed:
                self.fail(
                    data.key_lines[key],
                    f"unknown key {key!r} in {where}; expected {_one_of(allowed)}",
                )
        for key in required:
            if key not in data:
                self.fail(data.line, f"{where} needs '{key}'")

    def mapping(self, value: Any, line: int, what: str) -> _Map:
        if not isinstance(value, _Map):
            self.fail(line, f"{what} must be a mapping, got {_type(value)}")
        return value

    def ident(self, value: Any, line: int, what: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value):
            self.fail(line, f"{what} must be a name (letters, digits, _), got {value!r}")
        return value

    def weight(self, value: Any, line: int, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(line, f"{what} must be a positive number, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            self.fail(line, f"{what} must be a positive number, got {value!r}")
        return float(value)

    def quantity(self, value: Any, line: int, what: str) -> int:
        """A positive count: 12, 1.5e6, '20M', '64MiB' (K/M/G/T are 1000s, Ki/Mi/Gi/Ti 1024s)."""
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and (match := _QUANTITY.match(value.strip())):
            prefix = match.group(2) or ""
            base = 1024 if prefix.endswith("i") else 1000
            power = " KMGT".index(prefix[:1] or " ")
            number = float(match.group(1).replace("_", "")) * base**power
        if number is None or number <= 0 or number != int(number):
            self.fail(line, f"{what} must be a whole number > 0 like 5000 or '5M', not {value!r}")
        return int(number)

    # domains ------------------------------------------------------------------------------

    def domain(self, value: Any, line: int, what: str) -> Domain:
        if isinstance(value, _Seq):
            self.fail(line, f"{what}: write a list of options as {{choice: [...]}}")
        if not isinstance(value, _Map):
            return Domain("fixed", line, values=(value,))
        forms = [form for form in ("choice", "int", "float") if form in value]
        if len(forms) != 1:
            self.fail(
                value.line,
                f"{what}: a domain is a value, {{choice: [...]}}, {{int: [low, high]}} "
                f"or {{float: [low, high]}}",
            )
        form = forms[0]
        if form == "choice":
            return self.choice(value, what)
        self.keys(value, (form, "step", "log"), f"{what} ({form} range)")
        bounds, bounds_line = value[form], value.value_lines[form]
        numbers = (int,) if form == "int" else (int, float)
        if not (
            isinstance(bounds, _Seq)
            and len(bounds) == 2
            and all(isinstance(b, numbers) and not isinstance(b, bool) for b in bounds)
        ):
            self.fail(bounds_line, f"{what}: {form} needs [low, high] with {form} bounds")
        low, high = bounds
        if low > high:
            self.fail(bounds_line, f"{what}: low {low} is above high {high}")
        log = value.get("log", False)
        if not isinstance(log, bool):
            self.fail(value.value_lines["log"], f"{what}: log must be true or false")
        if log and low <= 0:
            self.fail(value.line, f"{what}: a log range needs low > 0")
        step = value.get("step", 1 if form == "int" else None)
        if "step" in value:
            step_line = value.value_lines["step"]
            if isinstance(step, bool) or not isinstance(step, numbers) or step <= 0:
                self.fail(step_line, f"{what}: step must be a positive {form}")
            if log and step != 1:
                self.fail(step_line, f"{what}: a log range takes no step")
            if not math.isclose((high - low) / step, round((high - low) / step)):
                self.fail(step_line, f"{what}: high - low must be a multiple of step {step}")
        if form == "float":
            low, high = float(low), float(high)
        return Domain(form, value.line, low=low, high=high, step=step, log=log)

    def choice(self, value: _Map, what: str) -> Domain:
        self.keys(value, ("choice", "weights"), f"{what} (choice)")
        options, line = value["choice"], value.value_lines["choice"]
        if not isinstance(options, _Seq) or not options:
            self.fail(line, f"{what}: choice needs a non-empty list of options")
        for option, option_line in zip(options, options.item_lines):
            if option is not None and not isinstance(option, (str, int, float, bool)):
                self.fail(
                    option_line,
                    f"{what}: options must be strings, numbers, booleans or null, "
                    f"got {_type(option)}",
                )
            if sum(option == o and type(option) is type(o) for o in options) > 1:
                self.fail(option_line, f"{what}: option {option!r} is listed twice")
        weights = (1.0,) * len(options)
        if "weights" in value:
            given, weights_line = value["weights"], value.value_lines["weights"]
            if not isinstance(given, _Seq) or len(given) != len(options):
                self.fail(weights_line, f"{what}: weights needs one number per option")
            weights = tuple(
                self.weight(w, wl, f"{what} weight") for w, wl in zip(given, given.item_lines)
            )
        return Domain(
            "choice",
            value.line,
            values=tuple(options),
            weights=weights,
            item_lines=tuple(options.item_lines),
        )

    def check_domain(self, spec: ParamSpec, domain: Domain, what: str) -> None:
        """Fail unless every value of `domain` is inside the declared domain `spec`."""
        if domain.kind in ("int", "float"):
            if spec.kind not in ("int", "float") or (domain.kind == "float" and spec.kind == "int"):
                self.fail(domain.line, f"{what} takes {spec.kind} values, not {domain.kind} ranges")
            points = [(domain.low, domain.line), (domain.high, domain.line)]
        else:
            points = list(zip(domain.values, domain.item_lines or (domain.line,)))
        for value, line in points:
            problem = spec.check(value)
            if problem:
                self.fail(line, f"{what}: {problem}")

    # productions --------------------------------------------------------------------------

    _FORMS = {
        "primitive": ("primitive",),
        "rule": ("rule",),
        "layer": ("token_mixer", "channel_mixer"),
        "per_layer": ("per_layer",),
        "motif": ("motif",),
        "ratio": ("ratio",),
    }

    def production(self, value: Any, line: int, inline: bool = False) -> Production:
        if isinstance(value, str):
            name = self.ident(value, line, "a rule reference")
            return RuleProduction(name, 1.0, line, rule=name)
        data = self.mapping(value, line, "a production")
        forms = [form for form, keys in self._FORMS.items() if any(k in data for k in keys)]
        if len(forms) != 1:
            self.fail(
                data.line,
                "a production needs exactly one of 'primitive', 'rule', "
                "'token_mixer' + 'channel_mixer', 'per_layer', 'motif' or 'ratio'"
                + (f"; got {', '.join(forms)}" if forms else ""),
            )
        form = forms[0]
        label = data[form] if form in ("primitive", "rule") else form
        if "label" in data:
            label = self.ident(data["label"], data.value_lines["label"], "label")
        weight = 1.0
        if "weight" in data:
            if inline:
                self.fail(data.key_lines["weight"], "an inline production takes no weight")
            weight = self.weight(data["weight"], data.value_lines["weight"], "weight")
        common = ("label", "weight")
        if form == "primitive":
            return self.primitive(data, label, weight, common)
        if form == "rule":
            self.keys(data, ("rule", *common), "a rule production")
            name = self.ident(data["rule"], data.value_lines["rule"], "rule")
            return RuleProduction(label, weight, data.line, rule=name)
        if form == "layer":
            layer_keys = self._FORMS["layer"]
            self.keys(data, (*layer_keys, *common), "a layer", required=layer_keys)
            token = self.slot(data["token_mixer"], data.value_lines["token_mixer"], "token")
            channel = self.slot(data["channel_mixer"], data.value_lines["channel_mixer"], "channel")
            return LayerProduction(label, weight, data.line, token, channel)
        if form == "per_layer":
            self.keys(data, ("per_layer", *common), "a per_layer production")
            layer = self.layer_slot(data["per_layer"], data.value_lines["per_layer"], "per_layer")
            return PerLayerProduction(label, weight, data.line, layer)
        if form == "motif":
            self.keys(data, ("motif", "repeat", *common), "a motif production")
            items, items_line = data["motif"], data.value_lines["motif"]
            if not isinstance(items, _Seq) or not items:
                self.fail(items_line, "motif needs a non-empty list of layer rules")
            layers = [self.layer_slot(i, il, "motif") for i, il in zip(items, items.item_lines)]
            repeat = None
            if "repeat" in data:
                repeat = self.domain(data["repeat"], data.value_lines["repeat"], "repeat")
                self.check_domain(_COUNT, repeat, "repeat")
            return MotifProduction(label, weight, data.line, layers, repeat)
        ratio = self.mapping(data["ratio"], data.value_lines["ratio"], "ratio")
        self.keys(data, ("ratio", *common), "a ratio production")
        self.keys(ratio, ("a", "b", "r", "placement", "shared"), "ratio", required=("a", "b", "r"))
        a = self.layer_slot(ratio["a"], ratio.value_lines["a"], "ratio a")
        b = self.layer_slot(ratio["b"], ratio.value_lines["b"], "ratio b")
        r = self.domain(ratio["r"], ratio.value_lines["r"], "ratio r")
        self.check_domain(_COUNT, r, "ratio r")
        placement = Domain("fixed", ratio.line, values=("interleaved",))
        if "placement" in ratio:
            placement = self.domain(ratio["placement"], ratio.value_lines["placement"], "placement")
            self.check_domain(_PLACEMENT, placement, "placement")
        shared = Domain("fixed", ratio.line, values=(True,))
        if "shared" in ratio:
            shared = self.domain(ratio["shared"], ratio.value_lines["shared"], "shared")
            self.check_domain(_SHARED, shared, "shared")
        return RatioProduction(label, weight, data.line, a, b, r, placement, shared)

    def primitive(self, data: _Map, label: str, weight: float, common: tuple) -> Production:
        name, name_line = data["primitive"], data.value_lines["primitive"]
        if not isinstance(name, str):
            self.fail(name_line, f"primitive must be a name, got {name!r}")
        try:
            spec = get_primitive(name)
        except KeyError:
            self.fail(name_line, f"unknown primitive {name!r}{_did_you_mean(name, REGISTRY)}")
        lists = tuple(k for k, p in spec.params.items() if p.kind == "mixers")
        self.keys(data, ("primitive", "params", *lists, *common), f"primitive {name!r}")
        params = {}
        if "params" in data:
            given = self.mapping(data["params"], data.value_lines["params"], "params")
            for key, value in given.items():
                key_line = given.key_lines[key]
                if key not in spec.params:
                    self.fail(
                        key_line,
                        f"unknown parameter {key!r} of primitive {name!r}; "
                        f"it takes {_one_of(tuple(spec.params))}",
                    )
                if key in lists:
                    self.fail(key_line, f"give {name}.{key} beside 'primitive:', not in params")
                domain = self.domain(value, given.value_lines[key], f"{name}.{key}")
                self.check_domain(spec.params[key], domain, f"{name}.{key}")
                params[key] = domain
        mixers = {}
        for key in lists:
            if key not in data:
                self.fail(data.line, f"primitive {name!r} needs '{key}': a list of token mixers")
            items, items_line = data[key], data.value_lines[key]
            if not isinstance(items, _Seq):
                self.fail(items_line, f"{name}.{key} must be a list of token-mixer rules")
            problem = spec.params[key].check([{"type": "token"}] * len(items))
            if problem:
                self.fail(items_line, f"{name}.{key}: {problem}")
            mixers[key] = [self.slot(i, il, "token") for i, il in zip(items, items.item_lines)]
        return PrimitiveProduction(label, weight, data.line, name, spec.role, params, mixers)

    def slot(self, value: Any, line: int, kind: str) -> Slot:
        if isinstance(value, str):
            return Slot(line, kind, rule=self.ident(value, line, "a rule reference"))
        data = self.mapping(value, line, f"{KIND_WORDS[kind]} (a rule name or a production)")
        return Slot(line, kind, inline=self.production(data, data.line, inline=True))

    def layer_slot(self, value: Any, line: int, where: str) -> Slot:
        if not isinstance(value, str):
            self.fail(line, f"{where} takes the names of layer rules, got {_type(value)}")
        return self.slot(value, line, "layer")

    # sections -----------------------------------------------------------------------------

    def settings(self, data: _Map) -> tuple[dict[str, Domain | None], Slot]:
        keys = (*SETTINGS, "layers")
        self.keys(data, keys, "architecture", required=("d_model", "layers"))
        settings: dict[str, Domain | None] = {
            "d_model": None,
            "depth": None,
            "norm": Domain("fixed", data.line, values=("rms",)),
            "tie_embeddings": Domain("fixed", data.line, values=(True,)),
        }
        for key, spec in SETTINGS.items():
            if key in data:
                settings[key] = self.domain(data[key], data.value_lines[key], key)
                self.check_domain(spec, settings[key], key)
        value, line = data["layers"], data.value_lines["layers"]
        return settings, (self.slot(value, line, "stack"))

    def constraints(self, data: _Map) -> Constraints:
        fields = ("min_params", "max_params", "max_layers", "max_state_bytes", "context_length")
        self.keys(data, fields, "constraints")
        values = {k: self.quantity(data[k], data.value_lines[k], k) for k in fields if k in data}
        if "max_state_bytes" in values and "context_length" not in values:
            self.fail(data.key_lines["max_state_bytes"], "max_state_bytes needs context_length")
        if values.get("min_params", 0) > values.get("max_params", math.inf):
            self.fail(data.key_lines["min_params"], "min_params is above max_params")
        return Constraints(**values)

    def rules(self, data: _Map) -> dict[str, Rule]:
        rules = {}
        for name, value in data.items():
            line = data.key_lines[name]
            self.ident(name, line, "a rule name")
            if name in SETTINGS:
                self.fail(line, f"{name!r} names an architecture setting; choose another rule name")
            items = value if isinstance(value, _Seq) else [value]
            lines = value.item_lines if isinstance(value, _Seq) else [data.value_lines[name]]
            if not items:
                self.fail(line, f"rule {name!r} has no productions")
            rule = Rule(name, line, [self.production(v, vl) for v, vl in zip(items, lines)])
            seen = set()
            for production in rule.productions:
                if production.label in seen:
                    self.fail(
                        production.line,
                        f"two productions of rule {name!r} are labelled {production.label!r}; "
                        "give one a 'label'",
                    )
                seen.add(production.label)
            rules[name] = rule
        return rules


class _Checker:
    """Whole-grammar checks: references, kinds, termination, reachability."""

    def __init__(self, parser: _Parser, rules: dict[str, Rule], root: Slot, has_depth: bool):
        self.fail, self.rules, self.root, self.has_depth = parser.fail, rules, root, has_depth

    def run(self) -> None:
        self.references()
        self.kinds()
        self.terminating()
        self.unit_cycles()
        self.reachable()

    def all_slots(self) -> Iterator[Slot]:
        """Every slot of the grammar, inline productions' slots included."""
        stack = [self.root]
        stack += [s for r in self.rules.values() for p in r.productions for s in p.slots()]
        while stack:
            slot = stack.pop()
            yield slot
            if slot.inline is not None:
                stack.extend(slot.inline.slots())

    def references(self) -> None:
        refs = [(s.rule, s.line) for s in self.all_slots() if s.rule]
        refs += [(p.rule, p.line) for p in self.productions() if isinstance(p, RuleProduction)]
        for name, line in sorted(refs, key=lambda ref: ref[1]):
            if name not in self.rules:
                self.fail(line, f"undefined rule {name!r}{_did_you_mean(name, self.rules)}")

    def productions(self) -> Iterator[Production]:
        """Every production, inline ones included."""
        for rule in self.rules.values():
            yield from rule.productions
        for slot in self.all_slots():
            if slot.inline is not None:
                yield slot.inline

    def kind_of(self, production: Production) -> str | None:
        if isinstance(production, PrimitiveProduction):
            return production.role
        if isinstance(production, RuleProduction):
            return self.rules[production.rule].kind
        return "layer" if isinstance(production, LayerProduction) else "stack"

    def kinds(self) -> None:
        changed = True
        while changed:
            changed = False
            for rule in self.rules.values():
                kinds = [self.kind_of(p) for p in rule.productions]
                if rule.kind is None and any(kinds):
                    rule.kind, changed = next(k for k in kinds if k), True
        for rule in self.rules.values():
            for production in rule.productions:
                kind = self.kind_of(production)
                if kind and kind != rule.kind:
                    self.fail(
                        production.line,
                        f"this production derives {KIND_WORDS[kind]}, but rule {rule.name!r} "
                        f"derives {KIND_WORDS[rule.kind]}",
                    )
            slot_name = SLOT_NAMES.get(rule.kind)
            if rule.name in SLOT_NAMES.values() and rule.name != slot_name:
                self.fail(rule.line, f"a rule named {rule.name!r} must derive what its name says")
        for slot in sorted(self.all_slots(), key=lambda s: s.line):
            kind = self.rules[slot.rule].kind if slot.rule else self.kind_of(slot.inline)
            if kind and kind != slot.kind:
                what = f"rule {slot.rule!r}" if slot.rule else "this production"
                self.fail(
                    slot.line,
                    f"{KIND_WORDS[slot.kind]} is needed here but {what} derives {KIND_WORDS[kind]}",
                )

    def terminating(self) -> None:
        done: set[str] = set()

        def finishes(production: Production) -> bool:
            if isinstance(production, RuleProduction):
                return production.rule in done
            return all(
                (s.rule in done) if s.rule else finishes(s.inline) for s in production.slots()
            )

        changed = True
        while changed:
            changed = False
            for rule in self.rules.values():
                if rule.name not in done and any(finishes(p) for p in rule.productions):
                    done.add(rule.name)
                    changed = True
        for rule in self.rules.values():
            if rule.name not in done:  # report the loop that causes it, at its first rule
                cycle = self.cycle(rule.name, lambda name: set(self.uses(name)) - done)
                self.fail(
                    self.rules[cycle[0]].line,
                    f"rule {cycle[0]!r} never finishes deriving: every production needs a rule "
                    f"that never finishes ({' -> '.join(cycle)})",
                )

    def uses(self, name: str, units_only: bool = False) -> list[str]:
        """The rules that rule `name` refers to (only through unit productions if asked)."""
        used = []
        for production in self.rules[name].productions:
            if isinstance(production, RuleProduction):
                used.append(production.rule)
            elif not units_only:
                stack = production.slots()
                while stack:
                    slot = stack.pop()
                    if slot.rule:
                        used.append(slot.rule)
                    else:
                        stack.extend(slot.inline.slots())
                        if isinstance(slot.inline, RuleProduction):
                            used.append(slot.inline.rule)
        return used

    def cycle(self, start: str, next_rules) -> list[str]:
        """Follow `next_rules` from `start` until a rule repeats; the path that closes the loop."""
        path = [start]
        while True:
            name = sorted(next_rules(path[-1]))[0]
            if name in path:
                return path[path.index(name) :] + [name]
            path.append(name)

    def unit_cycles(self) -> None:
        for rule in self.rules.values():
            goal = rule.name
            if any(self.reaches(u, goal) for u in self.uses(goal, units_only=True)):
                loop = self.cycle(
                    goal,
                    lambda n, goal=goal: {
                        u for u in self.uses(n, units_only=True) if self.reaches(u, goal)
                    },
                )
                self.fail(
                    rule.line,
                    f"rules {' -> '.join(loop)} refer to each other in a loop without "
                    "deriving anything in between",
                )

    def reaches(self, start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            name = stack.pop()
            if name == goal:
                return True
            if name not in seen:
                seen.add(name)
                stack.extend(self.uses(name, units_only=True))
        return False

    def reachable(self) -> None:
        root = [self.root.rule] if self.root.rule else []
        if self.root.inline is not None:
            root = [s.rule for s in self.root.inline.slots()]
            if isinstance(self.root.inline, RuleProduction):
                root.append(self.root.inline.rule)
        seen, stack = set(), list(root)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(self.uses(name))
        for rule in self.rules.values():
            if rule.name not in seen:
                self.fail(
                    rule.line,
                    f"rule {rule.name!r} is never used: architecture.layers cannot reach it",
                )
        if not self.has_depth:
            for production in self.productions():
                if isinstance(production, (PerLayerProduction, RatioProduction)) or (
                    isinstance(production, MotifProduction) and production.repeat is None
                ):
                    self.fail(production.line, f"{production.label} needs architecture.depth")


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def _type(value: Any) -> str:
    return {_Map: "a mapping", _Seq: "a list", type(None): "null"}.get(type(value), repr(value))


def _one_of(names: tuple) -> str:
    return ", ".join(repr(n) for n in names)


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ----------------------------------------------------------------------------------------------
# The whole file


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


def parse(text: str, file: str = "<string>") -> Syntax:
    """Read and check a grammar file's text; `file` names it in error messages."""
    parser = _Parser(file)
    data = _read_yaml(text, file)
    if not isinstance(data, _Map):
        parser.fail(1, "a grammar file is a mapping with 'architecture' and 'rules'")
    top = ("name", "description", "architecture", "constraints", "rules")
    parser.keys(data, top, "the grammar file", required=("architecture",))
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            parser.fail(data.value_lines[key], f"{key} must be a string")
    line = data.value_lines["architecture"]
    settings, layers = parser.settings(parser.mapping(data["architecture"], line, "architecture"))
    constraints = Constraints()
    if "constraints" in data:
        line = data.value_lines["constraints"]
        constraints = parser.constraints(parser.mapping(data["constraints"], line, "constraints"))
    rules = {}
    if "rules" in data:
        rules = parser.rules(parser.mapping(data["rules"], data.value_lines["rules"], "rules"))
    _Checker(parser, rules, layers, settings["depth"] is not None).run()
    name = data.get("name", Path(file).stem)
    return Syntax(file, name, data.get("description", ""), settings, layers, constraints, rules)
