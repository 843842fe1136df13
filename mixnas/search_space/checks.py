"""The properties every primitive must have, checked over its declared parameter domain.

One home for what tests/search_space/test_primitives.py asserts of the built-ins and what
`mixnas primitive check` (and `study start`, quickly) asserts of a user's primitive: it builds,
no output depends on a later token, `step` reproduces the parallel `forward`, `state_bytes` is the
decode state actually held, the parameter count does not depend on the device it is built on (the
constraints count on the meta device), the `flops_per_token` formula is within a factor of the
FLOPs torch counts, and gradients are finite. Hypothesis draws parameter settings from the
declared domains and shrinks a failure to a small one, which the report names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mixnas.search_space.architecture import Mixer
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, build_mixer

PROPERTIES = ("builds", "causal", "step", "state_bytes", "params", "flops", "gradients")
FLOPS_FACTOR = 2.0  # formula and count may differ by this factor (kernels do padded work)
BATCH = 2


@dataclass(frozen=True)
class Failure:
    """A property that failed, the parameter setting that broke it, and how."""

    prop: str
    params: dict[str, Any]
    d_model: int
    message: str

    def line(self, name: str) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params.items()) or "defaults"
        return f"{name}: {self.prop} fails at d_model={self.d_model}, {shown}: {self.message}"


# helpers shared with the tests ---------------------------------------------------------------


def run_steps(module, x: torch.Tensor):
    """Decode `x` `[B, T, C]` one token at a time: outputs `[B, T, C]` and the final state."""
    state = module.init_state(x.shape[0], x.device, x.dtype)
    outs = []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        outs.append(y)
    return torch.stack(outs, dim=1), state


def tensor_bytes(state: Any) -> int:
    """Bytes held by the tensors of a (nested) decode state; ints such as positions hold none."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(v) for v in state)
    return 0


def counted_flops(module, x: torch.Tensor) -> int:
    """FLOPs torch's FlopCounterMode counts in `module(x)` (matmuls and convolutions; the math
    SDPA backend runs attention as matmuls, which it can count)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from mixnas.kernels.flops import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


# the properties: each returns why it fails, or None -------------------------------------------


def _causal(module, x: torch.Tensor) -> str | None:
    T = x.shape[1]
    cut = T - max(1, T // 3)
    x2 = x.clone()
    x2[:, cut:] = torch.randn_like(x2[:, cut:])
    with torch.no_grad():
        y, y2 = module(x), module(x2)
    diff = (y[:, :cut] - y2[:, :cut]).abs().max().item()
    if diff > 1e-5 * max(1.0, y.abs().max().item()):
        return f"changing tokens {cut}.. changed earlier outputs by {diff:.3g}"
    return None


def _step(module, x: torch.Tensor) -> str | None:
    with torch.no_grad():
        expected = module(x)
        got, _ = run_steps(module, x)
    if got.shape != expected.shape:
        return f"step outputs stack to {tuple(got.shape)}, forward gives {tuple(expected.shape)}"
    diff = (got - expected).abs().max().item()
    if not diff <= 1e-4 * (1.0 + expected.abs().max().item()):
        return f"step differs from forward by {diff:.3g}"
    return None


def _state_bytes(module, x: torch.Tensor) -> str | None:
    B, T = x.shape[:2]
    with torch.no_grad():
        _, state = run_steps(module, x)
    held, declared = tensor_bytes(state), module.state_bytes(T, bytes_per_element=4)
    if held != B * declared:
        return (f"state_bytes({T}, 4) says {declared} per sequence, the decode state holds "
                f"{held / B:g} (float32)")
    if 2 * module.state_bytes(T, bytes_per_element=2) != declared:
        return "state_bytes does not scale with bytes_per_element"
    return None


def _flops(module, x: torch.Tensor) -> str | None:
    T = x.shape[1]
    window = getattr(module, "window", None)
    if window:  # the reference attention computes the whole band: count as full attention
        module.window = None
    try:
        return _compare_flops(module, x, T)
    finally:
        if window:
            module.window = window


def _compare_flops(module, x: torch.Tensor, T: int) -> str | None:
    analytic = float(module.flops_per_token(T))
    if not math.isfinite(analytic) or analytic <= 0:
        return f"flops_per_token({T}) = {analytic!r}, expected a positive number"
    counted = counted_flops(module, x[:1]) / T
    if counted and not 1 / FLOPS_FACTOR <= counted / analytic <= FLOPS_FACTOR:
        return (f"flops_per_token({T}) = {analytic:.4g} but torch counts {counted:.4g} per token "
                f"(allowed: within {FLOPS_FACTOR:g}x)")
    return None


def _gradients(module, x: torch.Tensor) -> str | None:
    x = x.clone().requires_grad_(True)
    y = module(x)
    loss = y.square().sum()
    aux = getattr(module, "aux_loss", None)
    if isinstance(aux, torch.Tensor):
        loss = loss + aux
    loss.backward()
    if not torch.isfinite(x.grad).all():
        return "the input's gradient is not finite"
    for name, p in module.named_parameters():
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all()):
            return f"parameter {name!r} gets {'no' if p.grad is None else 'a non-finite'} gradient"
    return None


def _params(spec: PrimitiveSpec, params: dict[str, Any], d_model: int, module) -> str | None:
    with torch.device("meta"):
        meta = _build(spec, params, d_model)
    real = sum(p.numel() for p in module.parameters())
    counted = sum(p.numel() for p in meta.parameters())
    if real != counted:
        return (f"{real} parameters when built on the CPU but {counted} on the meta device "
                "(constraints count there)")
    return None


_RUNTIME: dict[str, Callable[[Any, torch.Tensor], str | None]] = {
    "causal": _causal, "step": _step, "state_bytes": _state_bytes, "flops": _flops,
    "gradients": _gradients,
}


# drawing parameters --------------------------------------------------------------------------


def param_strategy(pspec: ParamSpec):
    """A hypothesis strategy over a parameter's declared domain (open ranges are cut to a small
    span above the low end: the properties do not depend on size)."""
    from hypothesis import strategies as st

    if pspec.kind == "bool":
        drawn = st.booleans()
    elif pspec.kind == "choice":
        drawn = st.sampled_from(list(pspec.choices))
    elif pspec.kind == "int":
        low = int(pspec.low) if pspec.low is not None else 0
        high = int(pspec.high) if pspec.high is not None else low + 8
        drawn = st.integers(low, min(high, low + 8))
    elif pspec.kind == "float":
        low = pspec.low if pspec.low is not None else 0.0
        high = pspec.high if pspec.high is not None else low + 4.0
        drawn = st.floats(low, min(high, low + 4.0), allow_nan=False)
    else:
        return st.just(pspec.default)
    return st.one_of(st.just(pspec.default), drawn)


def _build(spec: PrimitiveSpec, params: dict[str, Any], d_model: int):
    torch.manual_seed(0)
    return build_mixer(Mixer(spec.name, dict(params)), spec.role, d_model)


def check_primitive(spec: PrimitiveSpec, *, examples: int = 12, seq_len: int = 16,
                    d_models: tuple[int, ...] = (16, 32),
                    properties: tuple[str, ...] = PROPERTIES) -> list[Failure]:
    """Check a primitive's properties over parameter settings drawn from its domain.

    Args:
        spec: The primitive (built-in or plugin) to check.
        examples: Parameter settings hypothesis tries per property.
        seq_len: Tokens per test sequence.
        d_models: Model widths drawn from.
        properties: Which of `PROPERTIES` to check.

    Returns:
        One `Failure` per failed property (the smallest setting hypothesis found); [] when all
        hold.
    """
    from hypothesis import strategies as st

    strategies = {k: param_strategy(p) for k, p in spec.params.items() if p.kind != "mixers"}
    drawn = st.tuples(st.sampled_from(d_models), st.fixed_dictionaries(strategies))
    failures: list[Failure] = []
    built: dict[tuple, Any] = {}

    def module_for(d_model: int, params: dict[str, Any]):
        key = (d_model, tuple(sorted(params.items())))
        if key not in built:
            try:
                built[key] = _build(spec, params, d_model).float()
            except ValueError:  # a declared refusal (heads not dividing d_model)
                built[key] = None
        return built[key]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only contend
    try:
        _check_all(spec, drawn, examples, module_for, seq_len, d_models, properties, failures)
    finally:
        torch.set_num_threads(threads)
    return failures


def _check_all(spec, drawn, examples, module_for, seq_len, d_models, properties,
               failures) -> None:
    from hypothesis.errors import Unsatisfiable

    for prop in properties:
        found: dict[str, Any] = {}
        try:
            _falsify(prop, spec, drawn, examples, module_for, seq_len, found)
        except AssertionError:
            failures.append(Failure(prop, found["params"], found["d_model"], found["message"]))
        except Unsatisfiable:  # every drawn setting was refused
            failures.append(Failure("builds", {}, d_models[0],
                                    "no drawn parameter setting builds (each raised ValueError)"))
            break
        except Exception as exc:  # hypothesis saw a failure it could not reproduce (flaky)
            if not found:
                raise
            failures.append(Failure(prop, found["params"], found["d_model"],
                                    f"{found['message']} (not reproducible: {type(exc).__name__})"))


def _falsify(prop, spec, drawn, examples, module_for, seq_len, found) -> None:
    """Let hypothesis look for a setting where `prop` fails; raises AssertionError with `found`
    holding the (shrunk) setting and why."""
    from hypothesis import HealthCheck, assume, given, settings

    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(drawn)
    def run(case):
        d_model, params = case
        problem = _property(prop, spec, d_model, params, module_for, seq_len)
        if problem == "refused":
            assume(False)
        found.clear()
        if problem:
            found.update(params=params, d_model=d_model, message=problem)
            raise AssertionError(problem)

    run()


def _property(prop: str, spec: PrimitiveSpec, d_model: int, params: dict[str, Any],
              module_for, seq_len: int) -> str | None:
    """Check one property at one setting: None, 'refused' (build raised ValueError) or why."""
    try:
        module = module_for(d_model, params)
    except Exception as exc:
        return f"building raised {type(exc).__name__}: {exc}"
    if module is None:
        return "refused"
    torch.manual_seed(1)
    x = torch.randn(BATCH, seq_len, d_model)
    try:
        if prop == "builds":
            with torch.no_grad():
                y = module(x)
            if tuple(y.shape) != tuple(x.shape):
                return f"forward maps {tuple(x.shape)} to {tuple(y.shape)}, expected the same"
            return None if torch.isfinite(y).all() else "forward gives non-finite outputs"
        if prop == "params":
            return _params(spec, params, d_model, module)
        return _RUNTIME[prop](module, x)
    except Exception as exc:
        return f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
