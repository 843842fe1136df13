"""Named reference architectures at small default sizes (d_model 64), for studies to train next
to searched designs on CPU. Each follows its published layer pattern, shrunk: the pattern, not the
scale, is what a study compares."""

from __future__ import annotations

import os
from pathlib import Path

from mixnas.errors import ConfigError, first_line
from mixnas.search_space.architecture import Architecture, Layer, Mixer
from mixnas.yamlfile import plain, read_yaml

D_MODEL = 64
GQA = Mixer("attention", {"heads": 4, "kv_heads": 2, "rope": True})
GDN = Mixer("gated_deltanet", {"heads": 4})
SWIGLU = Mixer("swiglu", {"expand": 8 / 3})
NONE = Mixer("none")


def _arch(name: str, layers: list[tuple[Mixer, Mixer]]) -> Architecture:
    return Architecture(D_MODEL, [Layer(t, c) for t, c in layers], "rms", True, name)


def _jamba() -> Architecture:
    """1 attention : 7 Mamba-2 layers (attention in the middle, layer 4), MoE on odd layers with
    top-2 of 4 experts at half the SwiGLU width each, so the active width matches SWIGLU."""
    moe = Mixer("moe", {"experts": 4, "top_k": 2, "expand": 4 / 3, "expert": "swiglu"})
    layers = [
        (GQA if i == 4 else Mixer("mamba2", {"heads": 4, "expand": 2, "d_state": 16}),
         moe if i % 2 else SWIGLU)
        for i in range(8)
    ]
    return _arch("jamba", layers)


def _griffin() -> Architecture:
    """Griffin's (recurrent, recurrent, local attention) pattern, twice; GLA stands in for the
    RG-LRU recurrence, sliding-window attention of 32 tokens for local attention, GeGLU MLPs."""
    rec = Mixer("gla", {"heads": 4, "gate_rank": 16})
    local = Mixer("attention", {"heads": 4, "kv_heads": 1, "rope": True, "window": 32})
    geglu = Mixer("geglu", {"expand": 8 / 3})
    return _arch("griffin", [(m, geglu) for m in [rec, rec, local] * 2])


BASELINES: dict[str, Architecture] = {
    "transformer": _arch("transformer", [(GQA, SWIGLU)] * 4),
    # Mamba stacks SSM blocks without MLPs; 6 of them about match the transformer's parameters
    "mamba2": _arch("mamba2", [(Mixer("mamba2", {"heads": 4, "expand": 2}), NONE)] * 6),
    "gated_deltanet": _arch("gated_deltanet", [(GDN, SWIGLU)] * 4),
    "hyena": _arch("hyena", [(Mixer("hyena", {"order": 2}), SWIGLU)] * 4),
    "gdn_attn_3to1": _arch(
        "gdn_attn_3to1", [(GDN, SWIGLU)] * 3 + [(GQA, SWIGLU)]
    ),
    "jamba": _jamba(),
    "griffin": _griffin(),
}


def get_baseline(name: str) -> Architecture:
    """A fresh copy of the named baseline (callers may mutate it)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(sorted(BASELINES))}")
    return Architecture.from_dict(BASELINES[name].to_dict())


MAX_PARAMS = 10**10  # a design with more non-embedding parameters is a typo, not a mixer study


def load_architecture(spec: str | os.PathLike) -> Architecture:
    """The architecture `mixnas evaluate` and `mixnas export --arch` take.

    The file (YAML or JSON, read with mixnas/yamlfile.py) holds an architecture mapping, a
    baseline's name, or what `mixnas space sample --json` prints (an item with an `architecture`
    key, or a list of exactly one such item). The design is built on the meta device, so one
    that cannot be built, or has more than `MAX_PARAMS` parameters, is refused here.

    Args:
        spec: A file path or a baseline's name.

    Returns:
        The architecture (a fresh copy for a baseline).

    Raises:
        ConfigError: One line naming the file (and line for malformed YAML): no such file nor
            baseline, an unknown baseline name in it, or a design that is not a valid
            architecture or is too large.
    """
    from mixnas.search_space.constraints import footprint  # it imports torch

    path = Path(spec)
    if not path.exists():
        if str(spec) in BASELINES:
            return get_baseline(str(spec))
        raise ConfigError(f"{str(spec)!r} is neither an architecture file nor a baseline; "
                          f"{_known()}")
    data = plain(read_yaml(path))  # a SourceError (a ConfigError): FILE:LINE: ...
    if isinstance(data, list):
        if len(data) != 1:
            raise ConfigError(f"{path}: holds {len(data)} architectures; expected one "
                              "(e.g. `mixnas space sample FILE --n 1 --json`)")
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("architecture"), dict):
        data = data["architecture"]  # an item of `space sample --json`
    if isinstance(data, str):
        if data not in BASELINES:
            raise ConfigError(f"{path}: {data!r} is not a baseline; {_known()}")
        return get_baseline(data)
    try:
        arch = Architecture.from_dict(data)
        params = footprint(arch).non_embedding_params
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else first_line(exc)
        raise ConfigError(f"{path}: not a valid architecture: {message}") from None
    if params > MAX_PARAMS:
        raise ConfigError(f"{path}: {params:,} non-embedding parameters; at most "
                          f"{MAX_PARAMS:,} are accepted")
    return arch


def _known() -> str:
    return "baselines: " + ", ".join(sorted(BASELINES))
