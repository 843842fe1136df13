"""The (gated) delta rule on the Triton path: the torch WY/UT chunk preparation of the reference
(batched matmuls and one triangular solve, differentiated by autograd) feeding the Triton chunk
scan (forward and backward kernels, see `chunk_scan.py`)."""

from mixnas.kernels import reference
from mixnas.kernels.triton_ops._config import check_inputs
from mixnas.kernels.triton_ops.chunk_scan import chunk_scan_fwd


def delta_rule(q, k, v, beta, log_decay=None, scale=None, initial_state=None,
               output_final_state=False, chunk_size=64):
    """Triton path of `mixnas.kernels.delta_rule` (same arguments and semantics)."""
    check_inputs("delta_rule", q, k, v, beta, log_decay, initial_state)
    T, Dk = q.shape[1], q.shape[3]
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"delta_rule: chunk_size must be a power of two >= 16, got {chunk_size}")
    scale = Dk ** -0.5 if scale is None else float(scale)
    g = None if log_decay is None else log_decay.float()
    chunks = reference._delta_rule_chunks(
        q.float(), k.float(), v.float(), beta.float(), g, chunk_size
    )
    o, s, _ = chunk_scan_fwd(*chunks, initial_state)
    o = reference._unchunk(o * scale, T).to(q.dtype)
    return (o, s) if output_final_state else o
