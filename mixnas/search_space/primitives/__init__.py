"""Built-in primitives; importing this package registers every one of them.

Export contract (the exporter writes standalone PyTorch code by copying class source with
`inspect.getsource`):

1. Each primitive's nn.Module class(es) live in `primitives/<name>.py` and use only torch,
   torch.nn, torch.nn.functional as F, math, kernel ops imported by exact name from
   `mixnas.kernels`, and the helpers of `common.py` (itself self-contained; copy it whole).
   Copy a class together with its bases up to nn.Module (e.g. GatedDeltaNet -> DeltaNet, GeGLU ->
   SwiGLU, MoE -> StatelessMixer) and module-level helpers it calls (Hyena: Sin, HyenaFilter,
   fft_causal_conv).
2. The `register(PrimitiveSpec(...))` call sits at the bottom of each file, apart from the classes.
3. `spec.build(d_model, **canonical_params)` builds the module. For every primitive except
   `parallel` and `none`, `spec.build` IS the class and its constructor takes exactly
   (d_model, *declared params*). `none` builds None (the block has no channel sublayer).
   `parallel` builds each branch at `Parallel.branch_width(d_model, n, combine)` and passes the
   built branch modules: `Parallel(d_model, branches=[modules], combine)`.

Every token mixer has forward(x), init_state(batch_size, device, dtype), step(x_t, state),
state_bytes(seq_len, bytes_per_element) and flops_per_token(seq_len); channel mixers have the
same (their state is None).
"""

from mixnas.search_space.primitives import (  # noqa: F401  (imports register the primitives)
    attention,
    deltanet,
    gla,
    hyena,
    linear_attention,
    mamba2,
    mla,
    mlp,
    moe,
    parallel,
    retention,
    short_conv,
)
