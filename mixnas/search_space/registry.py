"""The primitive registry: each token or channel mixer declares its module and its typed parameters.

The grammar checks its terminals against these declarations, `Architecture.canonical_dict` fills
defaults and drops unused parameters through them, and the model builder instantiates from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mixnas.search_space.architecture import Mixer


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
    name: str
    role: str  # "token" | "channel"
    family: str  # attention | linear | ssm | delta | conv | mlp | glu | moe | none | parallel
    build: Callable[..., Any]  # build(d_model, **params) -> nn.Module
    params: dict[str, ParamSpec] = field(default_factory=dict)
    doc: str = ""
    # normalize(params) -> params, applied to the defaults-filled parameters: maps equivalent
    # settings to one form (kv_heads=None -> heads, unused values -> defaults): they hash alike
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None


REGISTRY: dict[str, PrimitiveSpec] = {}


def register(spec: PrimitiveSpec) -> PrimitiveSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"primitive {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec


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
    """Importing the primitives package registers every built-in primitive once."""
    import mixnas.search_space.primitives  # noqa: F401
