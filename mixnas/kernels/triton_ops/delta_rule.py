"""The (gated) delta rule on the Triton path: the torch WY/UT chunk preparation of the reference
(batched matmuls and one triangular solve, differentiated by autograd) feeding the Triton chunk
scan (forward and backward kernels, see `chunk_scan.py`). Decays: none, per head, per token and
head, or per channel (the scan takes a Dk vector of decays per chunk)."""

from mixnas.kernels import reference
from mixnas.kernels.triton_ops._config import check_chunk_size, check_inputs
from mixnas.kernels.triton_ops.chunk_scan import chunk_scan_fwd


def delta_rule(q, k, v, beta, log_decay=None, scale=None, initial_state=None,
               output_final_state=False, chunk_size=64):
    """Triton path of `mixnas.kernels.delta_rule` (same arguments, shapes and semantics;
    chunk_size 16, 32 or 64). Naive reference: `reference.delta_rule_recurrent`."""
    check_inputs("delta_rule", q, k, v, beta, log_decay, initial_state)
    check_chunk_size("delta_rule", chunk_size)
    B, T, H, Dk = q.shape
    scale = Dk ** -0.5 if scale is None else float(scale)
    g = reference.decay_per_step(log_decay, B, T, H, Dk)  # (B, T, H) or (B, T, H, Dk)
    g = None if g is None else g.float()
    chunks = reference.delta_rule_chunks(
        q.float(), k.float(), v.float(), beta.float(), g, chunk_size
    )
    o, s, _ = chunk_scan_fwd(*chunks, initial_state)
    o = reference.unchunk(o * scale, T).to(q.dtype)
    return (o, s) if output_final_state else o
