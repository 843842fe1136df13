"""The primitive registry, mixnas's public primitive API (docs/primitives.md): each token or channel
mixer declares its module and its typed parameters, each plugin metric its names.

The grammar checks its terminals against these declarations, `Architecture.canonical_dict` fills
defaults and drops unused parameters through them, and the model builder instantiates from them.
Built-in primitives (`primitives/`) and users' plugins (`plugins.py` loads them) call the same
`register`; a plugin may not take a built-in's name or another plugin's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mixnas.errors import PluginError
from mixnas.search_space.architecture import Mixer

ROLES = ("token", "channel")
# What a primitive's module must implement (shapes: docs/primitives.md).
REQUIRED_METHODS = ("forward", "init_state", "step", "state_bytes", "flops_per_token")
BUILTIN = "builtin"


@dataclass(frozen=True)
class ParamSpec:
    """A primitive parameter and the widest domain the primitive accepts."""

    kind: str  # "int" | "float" | "choice" | "bool" | "mixers" (a list of token-mixer dicts)
    default: Any
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    doc: str = ""

    def check(self, value: Any) -> str | None:
        """Return why `value` is outside the domain, or None when it is inside.

        None is inside the domain exactly when it is the default (e.g. `window=None`: no window)."""
        if value is None and self.default is None:
            return None
        if self.kind == "mixers":
            if not isinstance(value, (list, tuple)) or len(value) < 2:
                return f"expected a list of at least 2 mixers, got {value!r}"
            bad = [b for b in value if not isinstance(b, (dict, Mixer)) or not _type_of(b)]
            return f"not a mixer: {bad[0]!r}" if bad else None
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"expected a bool, got {value!r}"
        if self.kind == "choice":
            if value in self.choices:
                return None
            return f"{value!r} is not one of {list(self.choices)}"
        if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return f"expected an int, got {value!r}"
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind == "float" and not number:
            return f"expected a number, got {value!r}"
        if self.low is not None and value < self.low:
            return f"{value!r} is below the minimum {self.low}"
        if self.high is not None and value > self.high:
            return f"{value!r} is above the maximum {self.high}"
        return None


@dataclass(frozen=True)
class PrimitiveSpec:
    """A primitive's declaration.

    Args:
        name: The name grammars use (letters, digits, _), unique among all primitives.
        role: Its kind: "token" (mixes across positions) or "channel" (mixes each position).
        family: A coarse kind for features and the dashboard (attention, linear, ssm, delta,
            conv, mlp, glu, moe, none, parallel, or any new word).
        build: `build(d_model, **params) -> nn.Module`, usually the module class itself.
        params: The typed parameters with their domains and defaults.
        doc: One paragraph for `space show` and the docs.
        normalize: Maps equivalent parameter settings to one form (they hash alike).
    """

    name: str
    role: str  # "token" | "channel"
    family: str  # attention | linear | ssm | delta | conv | mlp | glu | moe | none | parallel
    build: Callable[..., Any]  # build(d_model, **params) -> nn.Module
    params: dict[str, ParamSpec] = field(default_factory=dict)
    doc: str = ""
    # normalize(params) -> params, applied to the defaults-filled parameters: maps equivalent
    # settings to one form (kv_heads=None -> heads, unused values -> defaults): they hash alike
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class MetricSpec:
    """A plugin cost model: named numbers computed for each trial, usable as objectives.

    Args:
        names: The metric names `compute` returns (objectives and constraints use them).
        compute: `compute(arch) -> {name: number}`; with needs_model, `compute(arch, model)` on
            the trained model (a `MixnasModel`), after training.
        needs_model: Whether `compute` needs the trained model.
        doc: What it measures.
    """

    names: tuple[str, ...]
    compute: Callable[..., dict[str, float]]
    needs_model: bool = False
    doc: str = ""


REGISTRY: dict[str, PrimitiveSpec] = {}
METRICS: dict[str, MetricSpec] = {}  # each metric name -> the spec that computes it
ORIGIN: dict[str, str] = {}  # primitive or metric name -> BUILTIN or the plugin file that made it
_loading: list[str] = []  # the plugin file being executed (plugins.py pushes and pops)


def register(spec: PrimitiveSpec) -> PrimitiveSpec:
    """Add a primitive; built-ins and plugins alike call this at import time.

    Raises:
        PluginError: A bad declaration (unknown role, a module missing a required method), or
            a name another primitive has (a plugin's message names its file).
    """
    origin = _loading[-1] if _loading else BUILTIN
    where = "" if origin == BUILTIN else f"{origin}: "
    if not isinstance(spec.name, str) or not spec.name.isidentifier():
        raise PluginError(f"{where}primitive name must be an identifier, got {spec.name!r}")
    if spec.role not in ROLES:
        raise PluginError(f"{where}primitive {spec.name!r}: role must be 'token' or 'channel', "
                          f"got {spec.role!r}")
    if not callable(spec.build):
        raise PluginError(f"{where}primitive {spec.name!r}: build must be callable")
    if isinstance(spec.build, type):
        missing = [m for m in REQUIRED_METHODS if not callable(getattr(spec.build, m, None))]
        if missing:
            raise PluginError(f"{where}primitive {spec.name!r}: {spec.build.__name__} lacks "
                              f"{', '.join(missing)} (a primitive implements "
                              f"{', '.join(REQUIRED_METHODS)})")
    for key, pspec in spec.params.items():
        typed = isinstance(pspec, ParamSpec)
        if not typed or (pspec.kind != "mixers" and pspec.check(pspec.default) is not None):
            raise PluginError(f"{where}primitive {spec.name!r}: parameter {key!r} needs a "
                              "ParamSpec whose default is inside its domain")
    _claim(spec.name, origin, "primitive")
    REGISTRY[spec.name] = spec
    return spec


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a plugin cost model whose numbers trials report (in their profile) and studies may
    use as objectives.

    Raises:
        PluginError: A name another plugin already uses (`profile_metric_names` refuses the
            built-in profile metrics' names).
    """
    origin = _loading[-1] if _loading else BUILTIN
    names = tuple(spec.names)
    if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise PluginError(f"{origin}: metric names must be identifiers, got {names!r}")
    for name in names:
        _claim(f"metric:{name}", origin, "metric")
    for name in names:
        METRICS[name] = spec
    return spec


def _claim(name: str, origin: str, what: str) -> None:
    """Record who made `name`; the same plugin file re-executed (a worker reloading new code)
    replaces its own entries, anyone else's name is a clash."""
    owner = ORIGIN.get(name)
    shown = name.removeprefix("metric:")
    if owner is not None and owner != origin:
        if origin == BUILTIN:
            raise PluginError(f"{what} {shown!r} registered twice")
        theirs = "a built-in" if owner == BUILTIN else f"one from {owner}"
        raise PluginError(f"{origin}: {what} {shown!r} clashes with {theirs}; rename it")
    if owner == BUILTIN and origin == BUILTIN:
        raise PluginError(f"{what} {shown!r} registered twice")
    ORIGIN[name] = origin


def get_primitive(name: str, role: str | None = None) -> PrimitiveSpec:
    load_builtin_primitives()
    spec = REGISTRY.get(name)
    if spec is None:
        raise KeyError(f"unknown primitive {name!r}; known: {', '.join(sorted(REGISTRY))}")
    if role is not None and spec.role != role:
        raise KeyError(f"primitive {name!r} is a {spec.role} mixer, not a {role} mixer")
    return spec


def canonical_mixer(mixer: Mixer, role: str, d_model: int) -> dict[str, Any]:
    """Mixer as canonical plain data: defaults filled in, undeclared parameters dropped."""
    spec = get_primitive(mixer.type, role)
    params: dict[str, Any] = {}
    for key, pspec in spec.params.items():
        params[key] = mixer.params.get(key, pspec.default)
    if mixer.type == "parallel":
        params["branches"] = [
            canonical_mixer(_as_mixer(b), "token", d_model)
            for b in mixer.params.get("branches", [])
        ]
    if spec.normalize is not None:
        params = spec.normalize(params)
    return {"type": mixer.type, "params": params}


def build_mixer(mixer: Mixer, role: str, d_model: int, where: str = "") -> Any:
    """Check a mixer's parameters against its declaration and build its module at width d_model.

    Errors are one-line ValueErrors prefixed with `where` (e.g. "layer 2 token_mixer: ")."""
    prefix = f"{where}{mixer.type}"
    try:
        spec = get_primitive(mixer.type, role)
    except KeyError as err:
        raise ValueError(f"{where}{err.args[0]}") from None
    for key, pspec in spec.params.items():
        problem = pspec.check(mixer.params.get(key, pspec.default))
        if problem:
            raise ValueError(f"{prefix}.{key}: {problem}")
    params = canonical_mixer(mixer, role, d_model)["params"]
    try:
        return spec.build(d_model, **params)
    except ValueError as err:
        raise ValueError(f"{prefix}: {err}") from None


def _as_mixer(value: Any) -> Mixer:
    return value if isinstance(value, Mixer) else Mixer.from_dict(value)


def _type_of(value: Any) -> str | None:
    return value.type if isinstance(value, Mixer) else value.get("type")


def load_builtin_primitives() -> None:
    """Importing the primitives package registers every built-in primitive once; then the
    installed plugins (entry point group `mixnas.primitives`) register theirs."""
    import mixnas.search_space.primitives  # noqa: F401
    from mixnas.search_space.plugins import load_entry_points

    load_entry_points()
