"""Reading a grammar file: located YAML into the grammar's parts, failing at the first problem.

`parse(text, file)` checks a whole file against the primitive registry and raises `GrammarError`
(`FILE:LINE: message`): unknown keys, primitives or parameters, domains outside a primitive's
declared ones, bad weights; then grammar_checker.py checks the grammar as a whole (undefined or
unreachable rules, rules of the wrong kind, rules that never finish deriving).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from mixnas.errors import did_you_mean
from mixnas.search_space.constraints import Constraints
from mixnas.search_space.grammar_checker import check_grammar
from mixnas.search_space.grammar_parts import (
    KIND_WORDS,
    PLACEMENTS,
    SETTINGS,
    Domain,
    GrammarError,
    LayerProduction,
    MotifProduction,
    PerLayerProduction,
    PrimitiveProduction,
    Production,
    RatioProduction,
    Rule,
    RuleProduction,
    Slot,
    Syntax,
)
from mixnas.search_space.plugins import PluginSource, load_plugin
from mixnas.search_space.registry import REGISTRY, ParamSpec, get_primitive
from mixnas.yamlfile import YamlMap, YamlSeq, parse_yaml

_COUNT = ParamSpec("int", 1, low=1)
_PLACEMENT = ParamSpec("choice", "interleaved", choices=PLACEMENTS)
_SHARED = ParamSpec("bool", True)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^([0-9][0-9_]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([KMGT]i?)?B?$")


class _Parser:
    """Turns the located YAML into the grammar's parts, failing at the first problem."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, line: int, message: str):
        raise GrammarError(self.file, line, message)

    def keys(self, data: YamlMap, allowed: tuple, where: str, required: tuple = ()) -> None:
        for key in data:
            if key not in allowed:
                self.fail(
                    data.key_lines[key],
                    f"unknown key {key!r} in {where}; expected {_one_of(allowed)}",
                )
        for key in required:
            if key not in data:
                self.fail(data.line, f"{where} needs '{key}'")

    def mapping(self, value: Any, line: int, what: str) -> YamlMap:
        if not isinstance(value, YamlMap):
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
        if isinstance(value, YamlSeq):
            self.fail(line, f"{what}: write a list of options as {{choice: [...]}}")
        if not isinstance(value, YamlMap):
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
            isinstance(bounds, YamlSeq)
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

    def choice(self, value: YamlMap, what: str) -> Domain:
        self.keys(value, ("choice", "weights"), f"{what} (choice)")
        options, line = value["choice"], value.value_lines["choice"]
        if not isinstance(options, YamlSeq) or not options:
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
            if not isinstance(given, YamlSeq) or len(given) != len(options):
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
            if not isinstance(items, YamlSeq) or not items:
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

    def primitive(self, data: YamlMap, label: str, weight: float, common: tuple) -> Production:
        name, name_line = data["primitive"], data.value_lines["primitive"]
        if not isinstance(name, str):
            self.fail(name_line, f"primitive must be a name, got {name!r}")
        try:
            spec = get_primitive(name)
        except KeyError:
            self.fail(name_line, f"unknown primitive {name!r}{did_you_mean(name, REGISTRY)}")
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
            if not isinstance(items, YamlSeq):
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

    def settings(self, data: YamlMap) -> tuple[dict[str, Domain | None], Slot]:
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

    def constraints(self, data: YamlMap) -> Constraints:
        fields = ("min_params", "max_params", "max_layers", "max_state_bytes", "context_length")
        self.keys(data, fields, "constraints")
        values = {k: self.quantity(data[k], data.value_lines[k], k) for k in fields if k in data}
        if "max_state_bytes" in values and "context_length" not in values:
            self.fail(data.key_lines["max_state_bytes"], "max_state_bytes needs context_length")
        if values.get("min_params", 0) > values.get("max_params", math.inf):
            self.fail(data.key_lines["min_params"], "min_params is above max_params")
        return Constraints(**values)

    def plugins(self, data: YamlMap) -> tuple[PluginSource, ...]:
        """Load the plugin modules the grammar names, before its primitives are checked."""
        items, line = data["plugins"], data.value_lines["plugins"]
        if not isinstance(items, YamlSeq):
            self.fail(line, "plugins must be a list of .py files or module names")
        lines = items.item_lines
        for item, item_line in zip(items, lines):
            if not isinstance(item, str) or not item.strip():
                self.fail(item_line, f"a plugin is a .py path or a module name, got {item!r}")
        base = Path(self.file).parent
        return tuple(load_plugin(item, base) for item in items)

    def rules(self, data: YamlMap) -> dict[str, Rule]:
        rules = {}
        for name, value in data.items():
            line = data.key_lines[name]
            self.ident(name, line, "a rule name")
            if name in SETTINGS:
                self.fail(line, f"{name!r} names an architecture setting; choose another rule name")
            items = value if isinstance(value, YamlSeq) else [value]
            lines = value.item_lines if isinstance(value, YamlSeq) else [data.value_lines[name]]
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


def _type(value: Any) -> str:
    names = {YamlMap: "a mapping", YamlSeq: "a list", type(None): "null"}
    return names.get(type(value), repr(value))


def _one_of(names: tuple) -> str:
    return ", ".join(repr(n) for n in names)


def parse(text: str, file: str = "<string>") -> Syntax:
    """Read and check a grammar file's text.

    Args:
        text: The grammar file's YAML.
        file: The file's name, for error messages.

    Returns:
        The checked grammar's parts.

    Raises:
        GrammarError: `FILE:LINE: message` at the first problem.
    """
    parser = _Parser(file)
    data = parse_yaml(text, file, GrammarError)
    if not isinstance(data, YamlMap):
        parser.fail(1, "a grammar file is a mapping with 'architecture' and 'rules'")
    top = ("name", "description", "plugins", "architecture", "constraints", "rules")
    parser.keys(data, top, "the grammar file", required=("architecture",))
    plugins = parser.plugins(data) if "plugins" in data else ()
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
    check_grammar(file, rules, layers, settings["depth"] is not None)
    name = data.get("name", Path(file).stem)
    return Syntax(file, name, data.get("description", ""), settings, layers, constraints, rules,
                  plugins)
