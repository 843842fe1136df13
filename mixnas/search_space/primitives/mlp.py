"""Dense channel mixers: a two-layer MLP (gelu or squared relu) and gated linear units
(SwiGLU, GeGLU). Hidden widths are round(expand * d_model)."""

import torch.nn as nn
import torch.nn.functional as F

from mixnas.kernels import swiglu
from mixnas.search_space.primitives.common import StatelessMixer
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class MLP(StatelessMixer):
    def __init__(self, d_model, expand=4.0, activation="gelu"):
        super().__init__()
        if activation not in ("gelu", "relu2"):
            raise ValueError(f"activation must be 'gelu' or 'relu2', got {activation!r}")
        self.hidden, self.activation = max(1, round(expand * d_model)), activation
        self.up = nn.Linear(d_model, self.hidden, bias=False)
        self.down = nn.Linear(self.hidden, d_model, bias=False)

    def forward(self, x):
        h = self.up(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h).square()
        return self.down(h)

    def flops_per_token(self, seq_len):
        return 4 * self.up.in_features * self.hidden


class SwiGLU(StatelessMixer):
    def __init__(self, d_model, expand=8 / 3):
        super().__init__()
        self.hidden = max(1, round(expand * d_model))
        self.gate_up = nn.Linear(d_model, 2 * self.hidden, bias=False)
        self.down = nn.Linear(self.hidden, d_model, bias=False)

    def act(self, gate, up):
        return swiglu(gate, up)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.act(gate, up))

    def flops_per_token(self, seq_len):
        return 6 * self.gate_up.in_features * self.hidden


class GeGLU(SwiGLU):
    def act(self, gate, up):
        return F.gelu(gate) * up


GLU_PARAMS = {"expand": ParamSpec("float", 8 / 3, low=0.25, high=16.0, doc="hidden / d_model")}

register(
    PrimitiveSpec(
        name="mlp",
        role="channel",
        family="mlp",
        build=MLP,
        params={
            "expand": ParamSpec("float", 4.0, low=0.25, high=16.0, doc="hidden / d_model"),
            "activation": ParamSpec("choice", "gelu", choices=("gelu", "relu2")),
        },
        doc=__doc__,
    )
)
register(PrimitiveSpec("swiglu", "channel", "glu", SwiGLU, dict(GLU_PARAMS), doc=__doc__))
register(PrimitiveSpec("geglu", "channel", "glu", GeGLU, dict(GLU_PARAMS), doc=__doc__))
register(
    PrimitiveSpec(
        name="none",
        role="channel",
        family="none",
        build=lambda d_model: None,
        doc="No channel mixer: the layer is token mixing only (build gives None, so the block "
        "has no second norm and sublayer).",
    )
)
