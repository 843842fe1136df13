"""Plain-torch reference implementations of every mixnas kernel op.

These are the ground truth the Triton kernels are tested against, the CPU path every candidate
model trains with during a search, and the source that `export` copies into standalone model
files. Hence each op is a self-contained top-level function that uses only `torch`,
`torch.nn.functional as F`, `math` and other functions of this file.

Layout is (batch, time, heads, head_dim) throughout. The linear-attention and delta-rule ops come
in three forms (flash-linear-attention style): the chunked form used for training, a per-step
recurrent form (`*_recurrent`, the ground truth for the chunked one) and a single decode step
(`*_step`). Accumulation and recurrent state use float32 (float64 for float64 inputs, so that
gradcheck works); outputs have the dtype of `q` (or `x`).
"""

import math

import torch
import torch.nn.functional as F


def attention(q, k, v, causal=True, window=None, scale=None):
    """Softmax attention with GQA/MQA and an optional causal sliding window.

    q: (B, Tq, H, D); k, v: (B, Tk, Hkv, D) with H % Hkv == 0. Query i sits at position
    i + Tk - Tq (aligned to the end, as in KV-cached decoding). `window=w` lets position t attend
    keys in (t - w, t]; it requires causal=True. Windows shorter than the sequence take a banded
    form whose cost grows with T * w instead of T^2.
    """
    Tq, H, D = q.shape[1:]
    Tk, Hkv = k.shape[1], k.shape[2]
    check_attention(q, k, causal, window)
    scale = D ** -0.5 if scale is None else scale
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if window is not None and window >= Tk:
        window = None
    # GQA/MQA: SDPA shares each key/value head among its query heads itself (enable_gqa), which
    # halves the CPU training step of a GQA layer against copying k and v per query head
    gqa = {"enable_gqa": True} if Hkv != H else {}
    if not causal:
        o = F.scaled_dot_product_attention(q, k, v, scale=scale, **gqa)
    elif window is None and Tq == Tk:
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, **gqa)
    elif Tq == Tk:
        if Hkv != H:  # the banded blocks fold heads into the batch: expand k and v first
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
        o = _banded_attention(q, k, v, window, scale)
    else:
        pos_q = torch.arange(Tk - Tq, Tk, device=q.device)[:, None]
        pos_k = torch.arange(Tk, device=q.device)[None, :]
        mask = pos_k <= pos_q
        if window is not None:
            mask = mask & (pos_k > pos_q - window)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, **gqa)
    return o.transpose(1, 2)


def check_attention(q, k, causal, window):
    """Raise ValueError unless q (B, Tq, H, D) and k (B, Tk, Hkv, D) fit `attention`'s rules:
    H a multiple of Hkv, a window only with causal=True and at least 1, and with causal=True at
    least as many keys as queries. Shared by every attention implementation."""
    Tq, H = q.shape[1], q.shape[2]
    Tk, Hkv = k.shape[1], k.shape[2]
    if H % Hkv != 0:
        raise ValueError(f"attention: {H} query heads is not a multiple of {Hkv} key/value heads")
    if window is not None and not causal:
        raise ValueError("attention: window requires causal=True")
    if window is not None and window < 1:
        raise ValueError(f"attention: window must be >= 1, got {window}")
    if causal and Tq > Tk:
        raise ValueError("attention: causal attention needs at least as many keys as queries")


def _banded_attention(q, k, v, window, scale, block=128):
    """Causal sliding-window attention on (B, H, T, D), window < T, with work (and counted FLOPs)
    growing with T * window instead of T^2: the first `window` queries see every earlier key
    (plain causal attention); the rest go in blocks of b = min(window, block) queries that each
    attend to the window + b keys ending with the block, under one (b, window + b) band mask."""
    B, H, T, D = q.shape
    W = window
    b = min(W, block)
    head = F.scaled_dot_product_attention(q[:, :, :W], k[:, :, :W], v[:, :, :W], is_causal=True,
                                          scale=scale)
    nb = -(-(T - W) // b)
    pad = nb * b - (T - W)
    q = F.pad(q[:, :, W:], (0, 0, 0, pad)).reshape(B * H, nb, b, D)
    k, v = (F.pad(x, (0, 0, 0, pad)).unfold(2, W + b, b).transpose(-1, -2) for x in (k, v))
    k, v = (x.reshape(B * H, nb, W + b, x.shape[-1]) for x in (k, v))
    a = torch.arange(b, device=q.device)[:, None]  # query offset in its block
    j = torch.arange(W + b, device=q.device)[None, :]  # key offset, from block start - W
    mask = (j > a) & (j <= a + W)
    rest = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return torch.cat([head, rest.reshape(B, H, nb * b, -1)[:, :, : T - W]], dim=2)


def attention_naive(q, k, v, causal=True, window=None, scale=None):
    """Naive reference of `attention`: the explicit mask and a materialised softmax, in float32
    (float64 for float64 inputs). q (B, Tq, H, D); k, v (B, Tk, Hkv, D). O(Tq * Tk) memory: for
    tests and benchmarks, never for training."""
    Tq, H, D = q.shape[1:]
    Tk, Hkv = k.shape[1], k.shape[2]
    acc = _acc_dtype(q)
    scale = D ** -0.5 if scale is None else scale
    k, v = (x.to(acc).repeat_interleave(H // Hkv, dim=2) for x in (k, v))
    s = torch.einsum("bthd,bshd->bhts", q.to(acc), k) * scale
    pos_q = torch.arange(Tk - Tq, Tk, device=q.device)[:, None]
    pos_k = torch.arange(Tk, device=q.device)[None, :]
    visible = pos_k <= pos_q if causal else torch.ones_like(pos_k <= pos_q)
    if window is not None:
        visible = visible & (pos_k > pos_q - window)
    p = s.masked_fill(~visible, -math.inf).softmax(-1)
    return torch.einsum("bhts,bshd->bthd", p, v).to(q.dtype)


def _acc_dtype(x):
    """float32 for half/bfloat16/float32 inputs, float64 for float64 ones."""
    return torch.promote_types(x.dtype, torch.float32)


def decay_per_step(log_decay, B, T, H, Dk=None):
    """Normalise a linear-attention or delta-rule log_decay to None, (B, T, H) or (B, T, H, Dk)."""
    if log_decay is None:
        return None
    g = log_decay.to(_acc_dtype(log_decay))
    if g.dim() == 1:
        if g.shape[0] != H:
            raise ValueError(f"log_decay of shape {tuple(g.shape)} does not match {H} heads")
        return g.view(1, 1, H).expand(B, T, H)
    if tuple(g.shape) == (B, T, H) or (g.dim() == 4 and tuple(g.shape[:3]) == (B, T, H)
                                       and Dk in (None, g.shape[3])):
        return g
    raise ValueError(
        f"log_decay of shape {tuple(g.shape)} is none of (H,), (B,T,H), (B,T,H,Dk) "
        f"for B={B}, T={T}, H={H}, Dk={Dk}"
    )


# Chunk length of the chunked forms when the caller names none. On a CPU the in-chunk work
# (C x C scores, the delta rule's triangular solve) dominates a training step and a sequential
# loop over chunks costs little, so short chunks are faster (measured 2026-11-27 on 2 loaded
# cores, 1 thread: a gated DeltaNet model trains 1.2x faster with 16 than with 64 at T=64 and
# 1.6x at T=128; 16 was best or near it for Mamba-2 and GLA too); GPUs prefer 64.
CPU_CHUNK_SIZE = 16
GPU_CHUNK_SIZE = 64


def default_chunk_size(x):
    """The chunk length for inputs like `x` when chunk_size is None: by device type."""
    return GPU_CHUNK_SIZE if x.is_cuda else CPU_CHUNK_SIZE


def _chunk_for(T, chunk_size, name="linear_attention"):
    """The chunk length for T steps: `chunk_size`, or the next power of two >= T when that is
    shorter (padding a 32-step sequence to a 64-step chunk triples the CPU time of training).
    Any positive integer is a valid chunk_size here (the Triton kernels take powers of two)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{name}: chunk_size must be a positive integer, got {chunk_size!r}")
    return min(chunk_size, 1 << max(0, T - 1).bit_length())


def _chunked(x, chunk_size):
    """(B, T, H, ...) -> (B, H, N, C, ...), zero-padding T up to a multiple of C."""
    T = x.shape[1]
    pad = (-T) % chunk_size
    if pad:
        x = torch.cat([x, x.new_zeros((x.shape[0], pad) + tuple(x.shape[2:]))], dim=1)
    x = x.view((x.shape[0], -1, chunk_size) + tuple(x.shape[2:]))
    return x.movedim(3, 1)


def _channel_decay_scores(q, k, b, sub):
    """Causal in-chunk scores A[t, s] = sum_d q_td k_sd exp(b_td - b_sd) for per-channel
    cumulative log decays b (..., C, Dk). Blocks below the diagonal are matmuls of q and k
    rescaled to the decay at the query sub-chunk start (both factors <= 1 for decays); only the
    diagonal
 (sub, sub) blocks need the (sub, sub, Dk) tensor of pairwise decays."""
    C, Dk = q.shape[-2:]
    M = C // sub
    lead = tuple(q.shape[:-2])
    qs, ks, bs = (x.reshape(lead + (M, sub, Dk)) for x in (q, k, b))
    ref = bs[..., :1, :]  # (..., M, 1, Dk)
    q_ref = qs * (bs - ref).exp()
    pos = torch.arange(C, device=q.device)
    later = pos.view(1, C, 1) >= pos[::sub].view(M, 1, 1)  # key s not before sub-chunk m
    # masked, not clamped: a positive log decay (growth) makes ref - b_s > 0 for earlier keys
    k_ref = k[..., None, :, :] * (ref - b[..., None, :, :]).masked_fill(later, -math.inf).exp()
    below = q_ref @ k_ref.transpose(-1, -2)  # (..., M, sub, C), zero from the sub-chunk on
    tri = torch.ones(sub, sub, dtype=torch.bool, device=q.device).tril()
    rel = (bs[..., :, None, :] - bs[..., None, :, :]).masked_fill(~tri[:, :, None], -math.inf)
    diag = (qs[..., :, None, :] * ks[..., None, :, :] * rel.exp()).sum(-1)  # (..., M, sub, sub)
    eye = torch.eye(M, dtype=q.dtype, device=q.device)
    diag = (diag[..., :, :, None, :] * eye[:, None, :, None]).reshape(lead + (M, sub, C))
    return (below + diag).reshape(lead + (C, C))


def linear_attention_chunks(q, k, v, g, C):
    """Per-chunk operands of linear attention for `_chunk_scan` (all (B, H, N, C, .)).

    b is the cumulative log decay from the chunk start, so q_in = q e^b, k_out = k e^(b_last - b)
    and the in-chunk decays e^(b_t - b_s), s <= t, only ever exponentiate non-positive numbers.
    """
    channel = g is not None and g.dim() == 4
    qc, kc, vc = (_chunked(x, C) for x in (q, k, v))
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    if g is None:
        attn = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0.0)
        return qc, kc, vc, attn, None
    b = _chunked(g, C).cumsum(3)  # (B, H, N, C[, Dk])
    b_last = b[:, :, :, -1:]
    q_in = qc * (b.exp() if channel else b.exp()[..., None])
    k_out = kc * ((b_last - b).exp() if channel else (b_last - b).exp()[..., None])
    if channel:
        attn = _channel_decay_scores(qc, kc, b, math.gcd(C, 8))
    else:
        rel = (b[..., :, None] - b[..., None, :]).masked_fill(~causal, -math.inf).exp()
        attn = (qc @ kc.transpose(-1, -2)) * rel
    return q_in, k_out, vc, attn, b_last.squeeze(3).exp()


def _chunk_scan(q, k, u, w, attn, decay, initial_state):
    """The sequential part of the chunked forms, over chunks n with state S_n at the chunk start:

    U_n = u_n - w_n S_n (u_n when w is None), o_n = q_n S_n + attn_n U_n,
    S_{n+1} = decay_n * S_n + k_n^T U_n.
    q, k, w: (B, H, N, C, Dk); u: (B, H, N, C, Dv); attn: (B, H, N, C, C); decay None, (B, H, N)
    or (B, H, N, Dk); initial_state None or (B, H, Dk, Dv). Returns o (B, H, N, C, Dv) and S_N.
    Only the state recurrence runs chunk by chunk; the outputs of all chunks are two batched
    matmuls after it (fewer small ops: on a CPU their count, not their FLOPs, sets the time).
    """
    B, H, N, C, Dk = q.shape
    S = q.new_zeros(B, H, Dk, u.shape[-1])
    if initial_state is not None:
        S = S + initial_state.to(q.dtype)
    if decay is not None:
        decay = decay[..., None, None] if decay.dim() == 3 else decay[..., None]
    if w is None:  # the state updates do not depend on the state: batch them
        updates = k.transpose(-1, -2) @ u
    states, corrected = [], []
    for n in range(N):
        states.append(S)
        if w is None:
            update = updates[:, :, n]
        else:
            U = u[:, :, n] - w[:, :, n] @ S
            corrected.append(U)
            update = k[:, :, n].transpose(-1, -2) @ U
        S = (S if decay is None else decay[:, :, n] * S) + update
    U = u if w is None else torch.stack(corrected, dim=2)
    return q @ torch.stack(states, dim=2) + attn @ U, S


def unchunk(o, T):
    """(B, H, N, C, D) -> (B, T, H, D)."""
    B, H, N, C, D = o.shape
    return o.movedim(1, 3).reshape(B, N * C, H, D)[:, :T]


def linear_attention(
    q, k, v, log_decay=None, scale=None, initial_state=None, output_final_state=False,
    chunk_size=None,
):
    """Chunked (decayed) linear attention: S_t = exp(g_t) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t.

    q, k: (B, T, H, Dk); v: (B, T, H, Dv); log_decay g: None, (H,), (B, T, H) or (B, T, H, Dk);
    state (B, H, Dk, Dv); chunk_size any positive integer or None (`default_chunk_size`).
    Returns o (B, T, H, Dv) and, with output_final_state, the state. Within a chunk all decays are
    taken relative to the chunk start in log space, so for decays (g <= 0) only exponentials of
    non-positive numbers are ever formed (exp() of a positive number would overflow for strong
    decays); growth (g > 0) is exact too.
    Naive reference: `linear_attention_recurrent`.
    """
    B, T, H, Dk = q.shape
    scale = Dk ** -0.5 if scale is None else scale
    acc = _acc_dtype(q)
    g = decay_per_step(log_decay, B, T, H, Dk)
    g = None if g is None else g.to(acc)
    C = _chunk_for(T, default_chunk_size(q) if chunk_size is None else chunk_size)
    chunks = linear_attention_chunks(q.to(acc), k.to(acc), v.to(acc), g, C)
    q_in, k_out, u, attn, decay = chunks
    o, S = _chunk_scan(q_in, k_out, u, None, attn, decay, initial_state)
    o = unchunk(o * scale, T).to(q.dtype)
    return (o, S) if output_final_state else o


def _step_decay(log_decay, B, H, Dk, acc):
    """exp(log_decay) of one step as a factor for a (B, H, Dk, Dv) state; log_decay is None, (H,),
    (B, H) or (B, H, Dk)."""
    if log_decay is None:
        return None
    g = log_decay.to(acc)
    if g.dim() == 1 and g.shape[0] == H:
        return g.exp().view(1, H, 1, 1)
    if g.dim() == 2 and tuple(g.shape) == (B, H):
        return g.exp()[..., None, None]
    if tuple(g.shape) == (B, H, Dk):
        return g.exp()[..., None]
    raise ValueError(f"log_decay of shape {tuple(g.shape)} is none of (H,), (B,H), (B,H,Dk) "
                     f"for B={B}, H={H}, Dk={Dk}")


def _step_start(q, v, state, log_decay, scale):
    """What a decode step starts from: q (B, H, Dk), v (B, H, Dv), state (B, H, Dk, Dv) or None.
    Returns (scale, accumulation dtype, the state decayed by this step's log_decay)."""
    B, H, Dk = q.shape
    scale = Dk ** -0.5 if scale is None else scale
    acc = _acc_dtype(q)
    if state is None:
        state = q.new_zeros(B, H, Dk, v.shape[-1], dtype=acc)
    S = state.to(acc)
    if log_decay is not None:
        S = S * _step_decay(log_decay, B, H, Dk, acc)
    return scale, acc, S


def linear_attention_step(q, k, v, state, log_decay=None, scale=None):
    """One decode step of `linear_attention`: q, k (B, H, Dk), v (B, H, Dv); log_decay None, (H,),
    (B, H) or (B, H, Dk); state (B, H, Dk, Dv) or None for zeros. Returns (o, new_state)."""
    scale, acc, S = _step_start(q, v, state, log_decay, scale)
    S = S + k.to(acc)[..., :, None] * v.to(acc)[..., None, :]
    o = (q.to(acc)[..., None, :] @ S).squeeze(-2) * scale
    return o.to(q.dtype), S


def linear_attention_recurrent(
    q, k, v, log_decay=None, scale=None, initial_state=None, output_final_state=False
):
    """Step-by-step form of `linear_attention` (ground truth for the chunked form): same
    arguments and shapes, T calls of `linear_attention_step`."""
    B, T, H, Dk = q.shape
    g = decay_per_step(log_decay, B, T, H, Dk)
    S = initial_state
    outs = []
    for t in range(T):
        o, S = linear_attention_step(
            q[:, t], k[:, t], v[:, t], S, None if g is None else g[:, t], scale
        )
        outs.append(o)
    o = torch.stack(outs, dim=1)
    if S is None:
        S = q.new_zeros(B, H, Dk, v.shape[-1], dtype=_acc_dtype(q))
    return (o, S) if output_final_state else o


def delta_rule_chunks(q, k, v, beta, g, C):
    """Per-chunk operands of the (gated) delta rule for `_chunk_scan` (all (B, H, N, C, .)).

    Within a chunk the state updates are U = u - w S_0 with
    (I + tril(diag(beta) (K K^T * Gamma), -1)) [u | w] = [beta V | beta e^b K] (the WY/UT
    representation), solved by one triangular solve; b is the cumulative log decay from the chunk
    start and Gamma[t, s] = exp(b_t - b_s) for s < t, never a positive exponent.
    """
    qc, kc, vc = (_chunked(x, C) for x in (q, k, v))
    bc = _chunked(beta, C)[..., None]  # (B, H, N, C, 1)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    if g is not None and g.dim() == 4:  # per-channel decay: Gamma[t, s] becomes a Dk vector
        b = _chunked(g, C).cumsum(3)  # (B, H, N, C, Dk)
        b_last = b[:, :, :, -1:]
        sub = math.gcd(C, 8)
        kk, attn = _channel_decay_scores(kc, kc, b, sub), _channel_decay_scores(qc, kc, b, sub)
        q_in, w_rhs, k_out = qc * b.exp(), bc * kc * b.exp(), kc * (b_last - b).exp()
        decay = b_last.squeeze(3).exp()  # (B, H, N, Dk)
    elif g is None:
        kk = kc @ kc.transpose(-1, -2)
        attn = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0.0)
        q_in, w_rhs, k_out, decay = qc, bc * kc, kc, None
    else:
        b = _chunked(g, C).cumsum(3)  # (B, H, N, C)
        b_last = b[:, :, :, -1:]
        gamma = (b[..., :, None] - b[..., None, :]).masked_fill(~causal, -math.inf).exp()
        kk = (kc @ kc.transpose(-1, -2)) * gamma
        attn = (qc @ kc.transpose(-1, -2)) * gamma
        q_in = qc * b.exp()[..., None]
        w_rhs = bc * kc * b.exp()[..., None]
        k_out = kc * (b_last - b).exp()[..., None]
        decay = b_last.squeeze(3).exp()  # (B, H, N)
    # a unit lower-triangular solve reads only the strictly lower part of its matrix (and its
    # gradient is zero elsewhere), so I + tril(bc * kk, -1) needs neither the identity nor a mask
    uw = torch.linalg.solve_triangular(
        bc * kk, torch.cat([bc * vc, w_rhs], dim=-1), upper=False, unitriangular=True
    )
    Dv = v.shape[-1]
    return q_in, k_out, uw[..., :Dv], uw[..., Dv:], attn, decay


def delta_rule(
    q, k, v, beta, log_decay=None, scale=None, initial_state=None, output_final_state=False,
    chunk_size=None,
):
    """Chunked (gated) delta rule with the WY/UT representation (see `delta_rule_chunks`).

    S_t = a_t S_{t-1} + beta_t k_t (v_t - (a_t S_{t-1})^T k_t)^T, a_t = exp(g_t),
    o_t = scale q_t S_t (a_t a diagonal matrix for per-channel g).
    q, k: (B, T, H, Dk) (expected L2-normalised); v: (B, T, H, Dv); beta: (B, T, H); log_decay g:
    None, (H,), (B, T, H) or (B, T, H, Dk); state (B, H, Dk, Dv); chunk_size any positive integer
    or None (`default_chunk_size`). Returns o (B, T, H, Dv) and, with output_final_state, the
    state. Naive reference: `delta_rule_recurrent`.
    """
    B, T, H, Dk = q.shape
    scale = Dk ** -0.5 if scale is None else scale
    acc = _acc_dtype(q)
    g = decay_per_step(log_decay, B, T, H, Dk)
    g = None if g is None else g.to(acc)
    C = _chunk_for(T, default_chunk_size(q) if chunk_size is None else chunk_size, "delta_rule")
    chunks = delta_rule_chunks(q.to(acc), k.to(acc), v.to(acc), beta.to(acc), g, C)
    o, S = _chunk_scan(*chunks, initial_state)
    o = unchunk(o * scale, T).to(q.dtype)
    return (o, S) if output_final_state else o


def delta_rule_step(q, k, v, beta, state, log_decay=None, scale=None):
    """One decode step of `delta_rule`: q, k (B, H, Dk), v (B, H, Dv), beta (B, H); log_decay None,
    (H,), (B, H) or (B, H, Dk); state (B, H, Dk, Dv) or None for zeros. Returns (o, new_state)."""
    scale, acc, S = _step_start(q, v, state, log_decay, scale)
    kf = k.to(acc)
    v_old = (kf[..., None, :] @ S).squeeze(-2)
    S = S + kf[..., :, None] * (beta.to(acc)[..., None] * (v.to(acc) - v_old))[..., None, :]
    o = (q.to(acc)[..., None, :] @ S).squeeze(-2) * scale
    return o.to(q.dtype), S


def delta_rule_recurrent(
    q, k, v, beta, log_decay=None, scale=None, initial_state=None, output_final_state=False
):
    """Step-by-step form of `delta_rule` (ground truth for the chunked form): same arguments and
    shapes, T calls of `delta_rule_step`."""
    B, T, H, Dk = q.shape
    g = decay_per_step(log_decay, B, T, H, Dk)
    S = initial_state
    outs = []
    for t in range(T):
        o, S = delta_rule_step(
            q[:, t], k[:, t], v[:, t], beta[:, t], S, None if g is None else g[:, t], scale
        )
        outs.append(o)
    o = torch.stack(outs, dim=1)
    if S is None:
        S = q.new_zeros(B, H, Dk, v.shape[-1], dtype=_acc_dtype(q))
    return (o, S) if output_final_state else o


def rms_norm(x, weight=None, eps=1e-6):
    """x * rsqrt(mean(x^2) + eps) * weight over the last dim, computed in float32 or wider.
    x: (..., C); weight: None or (C,). Returns (..., C) in the dtype of x."""
    xf = x.to(_acc_dtype(x))
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(xf.dtype)
    return y.to(x.dtype)


def swiglu(gate, up):
    """silu(gate) * up; gate, up: (..., C) of one shape."""
    return F.silu(gate) * up


def _activate(y, activation):
    if activation is None:
        return y
    if activation in ("silu", "swish"):
        return F.silu(y)
    raise ValueError(f"causal_conv1d: unknown activation {activation!r} (expected None or 'silu')")


def causal_conv1d(x, weight, bias=None, activation=None):
    """Depthwise causal convolution: y[:, t, c] = sum_j weight[c, j] x[:, t - K + 1 + j, c] + bias.

    x: (B, T, C); weight: (C, K); activation None or 'silu'. One `F.conv1d` forward, with its own
    backward (`_CausalConv1d`): PyTorch's depthwise-convolution backward is the slowest part of a
    short convolution's training step on a CPU, while K shifted multiply-adds of the (B, T, C)
    gradient compute the same thing in a fraction of the time. Naive reference:
    `causal_conv1d_naive`.
    """
    if activation not in (None, "silu", "swish"):
        _activate(x, activation)  # raises the error that names the activation
    if not (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        return causal_conv1d_naive(x, weight, bias, activation)
    return _CausalConv1d.apply(x, weight, bias, activation is not None)


def _conv_pre_activation(x, weight, bias):
    """The depthwise causal convolution of x (B, T, C) before any activation, as (B, T, C)."""
    T = x.shape[1]
    C, K = weight.shape
    y = F.conv1d(x.transpose(1, 2), weight[:, None, :], bias, padding=K - 1, groups=C)
    return y[..., :T].transpose(1, 2)


class _CausalConv1d(torch.autograd.Function):
    """`causal_conv1d` with a backward of shifted multiply-adds (forward: one conv1d; `silu`: a
    silu activation after it). Gradients are accumulated in float32 (float64 for float64)."""

    @staticmethod
    def forward(ctx, x, weight, bias, silu):
        y = _conv_pre_activation(x, weight, bias)
        ctx.save_for_backward(x, weight, y if silu else None)
        ctx.bias_dtype, ctx.silu = None if bias is None else bias.dtype, silu
        return F.silu(y) if silu else y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, y = ctx.saved_tensors
        B, T, C = x.shape
        K = weight.shape[1]
        acc = _acc_dtype(x)
        if ctx.silu:
            grad = torch.ops.aten.silu_backward(grad, y)
        g = grad.to(acc)
        w = weight.to(acc)
        # dx[t] = sum_j w[j] g[t + K - 1 - j]; dw[j] = sum_{b, t} g[t] x[t - K + 1 + j]
        g_pad = F.pad(g, (0, 0, 0, K - 1))
        dx = g_pad[:, K - 1:] * w[:, 0]
        for j in range(1, K):
            dx = dx.addcmul_(g_pad[:, K - 1 - j:K - 1 - j + T], w[:, j])
        x_pad = F.pad(x.to(acc), (0, 0, K - 1, 0))
        dw = torch.stack([(g * x_pad[:, j:j + T]).sum((0, 1)) for j in range(K)], dim=1)
        db = None if ctx.bias_dtype is None else g.sum((0, 1)).to(ctx.bias_dtype)
        return dx.to(x.dtype), dw.to(weight.dtype), db, None


def causal_conv1d_naive(x, weight, bias=None, activation=None):
    """Naive reference of `causal_conv1d`: one padded `F.conv1d` and autograd's backward."""
    return _activate(_conv_pre_activation(x, weight, bias), activation)


def causal_conv1d_step(x_t, conv_state, weight, bias=None, activation=None):
    """One decode step of `causal_conv1d`: x_t (B, C); conv_state (B, C, K-1) holds the previous
    K-1 inputs, oldest first. Returns (y_t, new_conv_state)."""
    window = torch.cat([conv_state.to(x_t.dtype), x_t[..., None]], dim=-1)  # (B, C, K)
    y = (window * weight).sum(-1)
    if bias is not None:
        y = y + bias
    return _activate(y, activation), window[..., 1:]
