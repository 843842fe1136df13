"""Training throughput: tokens per second of mixnas models next to a plain PyTorch training loop.

CPU language-model searches are bound by training speed, so the mixnas training path has to be as
fast as what a user would write by hand. For each design this times full training steps (forward,
cross-entropy, backward, AdamW) of the mixnas model, and for attention designs also of a plain
PyTorch model of the same shape (`PlainTransformer` below: nn.Linear projections, rotary
embeddings, `F.scaled_dot_product_attention`, RMSNorm, SwiGLU, nanoGPT style), with the same
batch, sequence length, width and depth. Steps alternate between the two models in one process so
that both see the same machine load; the figure is the median over `--steps` timed steps.

    python -m benchmarks.train_throughput [--threads 1] [--batch 32] [--seq 64] [--width 64]
        [--depth 2] [--steps 20] [--designs attention,gated_deltanet,...] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, environment, write_json

VOCAB = 256


def plain_transformer(width: int, depth: int, heads: int, kv_heads: int, hidden: int):
    """A hand-written pre-norm GQA transformer of the same shape as mixnas's attention design."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.hd = width // heads
            self.n1, self.n2 = nn.RMSNorm(width, eps=1e-6), nn.RMSNorm(width, eps=1e-6)
            self.q = nn.Linear(width, width, bias=False)
            self.kv = nn.Linear(width, 2 * kv_heads * self.hd, bias=False)
            self.o = nn.Linear(width, width, bias=False)
            self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
            self.down = nn.Linear(hidden, width, bias=False)

        def forward(self, x, cos, sin):
            B, T, _ = x.shape
            h = self.n1(x)
            q = self.q(h).view(B, T, heads, self.hd).transpose(1, 2)
            k, v = self.kv(h).view(B, T, 2, kv_heads, self.hd).permute(2, 0, 3, 1, 4)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + self.o(o.transpose(1, 2).reshape(B, T, width))
            gate, up = self.gate_up(self.n2(x)).chunk(2, dim=-1)
            return x + self.down(F.silu(gate) * up)

    def rope(x, cos, sin):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, width)
            self.layers = nn.ModuleList(Layer() for _ in range(depth))
            self.norm = nn.RMSNorm(width, eps=1e-6)
            self.head = nn.Linear(width, VOCAB, bias=False)

        def forward(self, tokens):
            T, half = tokens.shape[1], width // heads // 2
            inv = 10000.0 ** (-torch.arange(half, dtype=torch.float32) / half)
            ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
            cos, sin = ang.cos().to(tokens.device), ang.sin().to(tokens.device)
            x = self.embed(tokens)
            for layer in self.layers:
                x = layer(x, cos, sin)
            return self.head(self.norm(x))

    return Model()


def design(name: str, width: int, depth: int):
    """A uniform mixnas design: `name`'s token mixer (attention: GQA 4/2 heads) with SwiGLU."""
    from mixnas.search_space.architecture import Architecture

    token = {"attention": {"type": "attention", "params": {"heads": 4, "kv_heads": 2}},
             "mamba2": {"type": "mamba2", "params": {"heads": 4, "expand": 2, "d_state": 16}},
             }.get(name, {"type": name, "params": {"heads": 4}} if name in HEADED else
                   {"type": name, "params": {}})
    layer = {"token_mixer": token, "channel_mixer": {"type": "swiglu", "params": {}}}
    return Architecture.from_dict({"d_model": width, "layers": [layer] * depth,
                                   "tie_embeddings": False})


HEADED = {"gated_deltanet", "deltanet", "gla", "retention", "linear_attention", "mla"}
DEFAULT_DESIGNS = ["attention", "gated_deltanet", "mamba2", "deltanet", "gla", "retention",
                   "hyena", "short_conv"]


def time_steps(models: dict[str, Any], args, device) -> dict[str, list[float]]:
    """Seconds per training step of each model, alternating models step by step."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    data = torch.randint(VOCAB, (args.batch, args.seq + 1), generator=gen).to(device)
    x, y = data[:, :-1], data[:, 1:]
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}

    def step(key):
        opts[key].zero_grad(set_to_none=True)
        loss = F.cross_entropy(models[key](x).flatten(0, 1).float(), y.flatten())
        loss.backward()
        opts[key].step()

    for i in range(args.warmup + args.steps):
        for key in models:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            step(key)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[key].append(time.perf_counter() - t)
    return times


def measure(name: str, args, device) -> dict[str, Any]:
    from mixnas.search_space.model import build_model

    arch = design(name, args.width, args.depth)
    mixnas_model = build_model(arch, VOCAB).to(device)
    models = {"mixnas": mixnas_model}
    if name == "attention":
        hidden = mixnas_model.blocks[0].channel_mixer.hidden
        models["plain"] = plain_transformer(args.width, args.depth, 4, 2, hidden).to(device)
    times = time_steps(models, args, device)
    tokens = args.batch * args.seq
    row: dict[str, Any] = {"design": name, "non_embedding_params": mixnas_model.num_params()}
    for key, ts in times.items():
        row[f"{key}_tokens_per_s"] = round(tokens / statistics.median(ts), 1)
    if "plain" in times:
        row["mixnas_vs_plain"] = round(row["mixnas_tokens_per_s"] / row["plain_tokens_per_s"], 3)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--designs", default=",".join(DEFAULT_DESIGNS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=str(RESULTS / "train_throughput.json"))
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name in [d for d in args.designs.split(",") if d]:
        rows.append(measure(name, args, device))
        print(rows[-1], flush=True)
    attention = next((r for r in rows if r["design"] == "attention"), None)
    if attention:
        for row in rows:
            row["vs_plain_attention"] = round(
                row["mixnas_tokens_per_s"] / attention["plain_tokens_per_s"], 3)
    data = {**environment("benchmarks.train_throughput", argv),
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "settings": vars(args), "rows": rows}
    write_json(Path(args.out), data)
    return data


if __name__ == "__main__":
    main()
