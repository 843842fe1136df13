"""Sequence-mixer kernel ops: plain-torch references (CPU) and the fastest correct GPU form.

Every op builds a `dispatch.Call` from its inputs and runs the implementation `dispatch` chooses:
on CPU the torch reference in `reference.py` (what searches train with); on CUDA the winner of
the table `mixnas bench kernels` measured (our Triton kernels, PyTorch SDPA's flash / cuDNN /
memory-efficient backends, FlexAttention, or the reference), else the documented defaults.
`MIXNAS_KERNELS` overrides: `triton`, `reference`, ... for every op, `attention=sdpa_cudnn` for one
(see `dispatch`; forcing Triton on CPU tensors needs `TRITON_INTERPRET=1`). The Triton code is
imported on the first Triton call, because Triton decides at kernel definition time whether to
interpret: importing `mixnas.kernels` must not freeze that choice. Decode steps (`*_step`) always
use the reference ops, a handful of small tensor ops per step on any device.

Layout is (batch, time, heads, head_dim) throughout: B batch, T (Tq, Tk) time, H (Hkv) heads,
D / Dk / Dv head dims, C channels. Each fast form has a naive reference beside it in
`reference.py`: `attention_naive`, `linear_attention_recurrent`, `delta_rule_recurrent`, and the
decode steps for the recurrences.
"""

from mixnas.kernels import dispatch, reference
from mixnas.kernels.reference import causal_conv1d_step, delta_rule_step, linear_attention_step

__all__ = [
    "attention",
    "causal_conv1d",
    "causal_conv1d_step",
    "delta_rule",
    "delta_rule_step",
    "implementation",
    "linear_attention",
    "linear_attention_step",
    "rms_norm",
    "swiglu",
]


def attention(q, k, v, causal=True, window=None, scale=None):
    """Softmax attention with GQA/MQA and an optional causal sliding window.

    Args:
        q: queries `[B, Tq, H, D]`; query i sits at position i + Tk - Tq (end-aligned, as with a
            KV cache).
        k, v: keys and values `[B, Tk, Hkv, D]`, H % Hkv == 0 (Hkv = 1: MQA).
        causal: mask keys after each query's position.
        window: None or w >= 1: position t attends keys in (t - w, t]; needs causal=True.
        scale: softmax scale, default D ** -0.5.

    Returns:
        o `[B, Tq, H, D]`, dtype of q. Naive reference: `reference.attention_naive`.

    Raises:
        ValueError: heads not a multiple of kv heads, a window without causal, window < 1,
            causal with Tq > Tk.
    """
    if dispatch.reference_fast_path(q):
        return reference.attention(q, k, v, causal=causal, window=window, scale=scale)
    call = dispatch.attention_call(q, k, causal, window)
    return dispatch.run(call, q, k, v, causal=causal, window=window, scale=scale)


def linear_attention(q, k, v, log_decay=None, scale=None, initial_state=None,
                     output_final_state=False, chunk_size=None):
    """Chunked decayed linear attention: S_t = exp(g_t) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t.

    Args:
        q, k: `[B, T, H, Dk]`.
        v: `[B, T, H, Dv]`.
        log_decay: g, None (no decay), `[H]` (per head), `[B, T, H]` (per token and head) or
            `[B, T, H, Dk]` (per channel). g <= 0 is a decay; g > 0 (growth) is computed exactly
            but exponentiates positive numbers, which overflow for long sequences.
        scale: default Dk ** -0.5.
        initial_state: None or `[B, H, Dk, Dv]`.
        output_final_state: also return the final state.
        chunk_size: any positive integer for the reference; the Triton kernels take 16, 32 or 64
            (dispatch uses the reference for others). None: `reference.default_chunk_size`
            (16 on a CPU, where short chunks train fastest; 64 on a GPU).

    Returns:
        o `[B, T, H, Dv]` (dtype of q), and with output_final_state the float32 (float64 for
        float64 inputs) state `[B, H, Dk, Dv]`. Naive reference:
        `reference.linear_attention_recurrent`.

    Raises:
        ValueError: log_decay of none of the shapes above, chunk_size not a positive integer.
    """
    if chunk_size is None:
        chunk_size = reference.default_chunk_size(q)
    kwargs = {"log_decay": log_decay, "scale": scale, "initial_state": initial_state,
              "output_final_state": output_final_state, "chunk_size": chunk_size}
    if dispatch.reference_fast_path(q):
        return reference.linear_attention(q, k, v, **kwargs)
    return dispatch.run(dispatch.linear_attention_call(q, log_decay, chunk_size), q, k, v, **kwargs)


def delta_rule(q, k, v, beta, log_decay=None, scale=None, initial_state=None,
               output_final_state=False, chunk_size=None):
    """Chunked (gated) delta rule: S_t = a_t S_{t-1} + beta_t k_t (v_t - (a_t S_{t-1})^T k_t)^T,
    a_t = exp(g_t) (a diagonal matrix for per-channel g), o_t = scale q_t S_t.

    Args:
        q, k: `[B, T, H, Dk]`, expected L2-normalised over Dk.
        v: `[B, T, H, Dv]`.
        beta: write strengths `[B, T, H]`, usually in (0, 1).
        log_decay: g, None (DeltaNet), `[H]`, `[B, T, H]` (gated DeltaNet) or `[B, T, H, Dk]`.
        scale: default Dk ** -0.5.
        initial_state: None or `[B, H, Dk, Dv]`.
        output_final_state: also return the final state.
        chunk_size: as for `linear_attention`.

    Returns:
        o `[B, T, H, Dv]` (dtype of q), and with output_final_state the state `[B, H, Dk, Dv]`.
        Naive reference: `reference.delta_rule_recurrent`.

    Raises:
        ValueError: log_decay of none of the shapes above, chunk_size not a positive integer.
    """
    if chunk_size is None:
        chunk_size = reference.default_chunk_size(q)
    kwargs = {"log_decay": log_decay, "scale": scale, "initial_state": initial_state,
              "output_final_state": output_final_state, "chunk_size": chunk_size}
    if dispatch.reference_fast_path(q):
        return reference.delta_rule(q, k, v, beta, **kwargs)
    return dispatch.run(dispatch.delta_rule_call(q, log_decay, chunk_size), q, k, v, beta,
                        **kwargs)


def rms_norm(x, weight=None, eps=1e-6):
    """RMSNorm over the last dim: x * rsqrt(mean(x^2) + eps) * weight, in float32 or wider.

    Args:
        x: `[..., C]`.
        weight: None or `[C]`.

    Returns:
        `[..., C]`, dtype of x. Reference: `reference.rms_norm`.
    """
    if dispatch.reference_fast_path(x):
        return reference.rms_norm(x, weight, eps=eps)
    return dispatch.run(dispatch.rowwise_call("rms_norm", x), x, weight, eps=eps)


def swiglu(gate, up):
    """silu(gate) * up, elementwise.

    Args:
        gate, up: `[..., C]`.

    Returns:
        `[..., C]`. Reference: `reference.swiglu`.
    """
    if dispatch.reference_fast_path(gate):
        return reference.swiglu(gate, up)
    return dispatch.run(dispatch.rowwise_call("swiglu", gate), gate, up)


def causal_conv1d(x, weight, bias=None, activation=None):
    """Depthwise causal convolution: y[:, t, c] = sum_j w[c, j] x[:, t - K + 1 + j, c] + bias[c].

    Args:
        x: `[B, T, C]`.
        weight: `[C, K]`.
        bias: None or `[C]`.
        activation: None or 'silu'.

    Returns:
        y `[B, T, C]`. Reference: `reference.causal_conv1d`; one decode step:
        `causal_conv1d_step`.

    Raises:
        ValueError: an activation other than None or 'silu'.
    """
    if dispatch.reference_fast_path(x):
        return reference.causal_conv1d(x, weight, bias=bias, activation=activation)
    return dispatch.run(dispatch.rowwise_call("causal_conv1d", x), x, weight, bias=bias,
                        activation=activation)


def implementation(op, *args, **kwargs):
    """Which implementation an op would run for these inputs (for tests and benchmarks).

    Args:
        op: An op's name: 'attention', 'linear_attention', 'delta_rule', 'rms_norm', 'swiglu' or
            'causal_conv1d'.
        *args, **kwargs: The op's arguments, as for the op itself (only shapes, dtype, device and
            the options that choose a kernel are read).

    Returns:
        The name in `dispatch.CANDIDATES[op]` it runs first: 'reference', 'triton', 'sdpa',
        'sdpa_cudnn', 'flex', ...
    """
    if op == "attention":
        call = dispatch.attention_call(args[0], args[1], kwargs.get("causal", True),
                                       kwargs.get("window"))
    elif op in ("linear_attention", "delta_rule"):
        make = getattr(dispatch, f"{op}_call")
        chunk_size = kwargs.get("chunk_size")
        chunk_size = reference.default_chunk_size(args[0]) if chunk_size is None else chunk_size
        call = make(args[0], kwargs.get("log_decay"), chunk_size)
    else:
        call = dispatch.rowwise_call(op, args[0])
    return dispatch.choice(call)

