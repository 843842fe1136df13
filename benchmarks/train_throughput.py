"""Training throughput: tokens per second of mixnas models next to a plain PyTorch training loop.

CPU language-model searches are bound by training speed, so the mixnas training path has to be as
fast as what a user would write by hand. For each design this times full training steps (forward,
cross-entropy, backward, AdamW) of the mixnas model with the trainer's optimizer
(`mixnas.evaluator.trainer.make_optimizer`: fused AdamW), and for attention designs also of a
plain PyTorch model of the same shape (`plain_transformer` below: nn.Linear projections, rotary
embeddings, `F.scaled_dot_product_attention` with `enable_gqa`, nn.RMSNorm, SwiGLU, nanoGPT
style), once with the default `torch.optim.AdamW` (what a hand-written loop uses: `plain`) and
once with the same fused AdamW as mixnas (`plain_fused`: the model code alone compared). Steps
alternate between the models in one process so that all see the same machine load; the figure is
the median over `--steps` timed steps
(and, as `*_best`, the fastest one: on a machine shared with other work the least disturbed).
The trainer's gradient clipping and learning-rate schedule (about 0.1 ms a step) are not part of
either loop.

Shapes (`--shapes`): `issue` is the comparison of mixnas issue 13 (batch 32, T 64, width 64,
2 layers); `lm` is what `studies/lm.yaml` trains (batch 16, T 128, width 64 and depth 4, the most
likely of `studies/spaces/lm-cpu.yaml`); `custom` takes --batch/--seq/--width/--depth. With
`--compile` the mixnas model is also trained through `torch.compile` (the opt-in `compile` train
setting): its compile seconds and steady speed say after how many steps it pays.

    python -m benchmarks.train_throughput [--threads 1] [--shapes issue,lm] [--steps 20]
        [--designs attention,gated_deltanet,...] [--compile] [--device cpu|cuda]
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
            self.tables = {}

        def rope_tables(self, T, device):  # precomputed once per length, as LLaMA-style code does
            if T not in self.tables:
                half = width // heads // 2
                inv = 10000.0 ** (-torch.arange(half, dtype=torch.float32) / half)
                ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
                self.tables[T] = ang.cos().to(device), ang.sin().to(device)
            return self.tables[T]

        def forward(self, tokens):
            cos, sin = self.rope_tables(tokens.shape[1], tokens.device)
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


SHAPES = {"issue": {"batch": 32, "seq": 64, "width": 64, "depth": 2},
          "lm": {"batch": 16, "seq": 128, "width": 64, "depth": 4}}


def time_steps(models: dict[str, Any], opts: dict[str, Any], shape: dict[str, int], args,
               device) -> dict[str, list[float]]:
    """Seconds per training step of each model, alternating models step by step (the first
    step of each, which includes any compilation, is kept apart under key + '_first')."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    data = torch.randint(VOCAB, (shape["batch"], shape["seq"] + 1), generator=gen).to(device)
    x, y = data[:, :-1], data[:, 1:]
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
            if i == 0:
                times[key + "_first"] = [time.perf_counter() - t]
            if i >= args.warmup:
                times[key].append(time.perf_counter() - t)
    return times


def measure(name: str, shape_name: str, args, device) -> dict[str, Any]:
    """One row: tokens/s of design `name` (and its plain twins) at one shape."""
    import torch

    from mixnas.evaluator.trainer import make_optimizer, resolve_train
    from mixnas.search_space.model import build_model

    shape = SHAPES[shape_name] if shape_name != "custom" else {
        k: getattr(args, k) for k in ("batch", "seq", "width", "depth")}
    cfg = resolve_train({"lr": 1e-3, "weight_decay": 0.0})
    torch.manual_seed(0)
    mixnas_model = build_model(design(name, shape["width"], shape["depth"]), VOCAB).to(device)
    models: dict[str, Any] = {"mixnas": mixnas_model}
    opts = {"mixnas": make_optimizer([{"params": list(mixnas_model.parameters())}], cfg, device)}
    if args.compile:
        torch.compiler.reset()  # else past torch's recompile limit later designs run eagerly
        models["mixnas_compiled"] = torch.compile(mixnas_model)
        opts["mixnas_compiled"] = opts["mixnas"]
    if name == "attention":
        hidden = mixnas_model.blocks[0].channel_mixer.hidden
        for key in ("plain", "plain_fused"):
            torch.manual_seed(0)
            models[key] = plain_transformer(shape["width"], shape["depth"], 4, 2, hidden).to(device)
        opts["plain"] = torch.optim.AdamW(models["plain"].parameters(), lr=1e-3)
        opts["plain_fused"] = make_optimizer([{"params": list(models["plain_fused"].parameters())}],
                                             cfg, device)
    times = time_steps(models, opts, shape, args, device)
    tokens = shape["batch"] * shape["seq"]
    row: dict[str, Any] = {"design": name, "shape": shape_name, **shape,
                           "non_embedding_params": mixnas_model.num_params()}
    for key in models:
        row[f"{key}_tokens_per_s"] = round(tokens / statistics.median(times[key]), 1)
        # the fastest step: on a machine shared with other work, the least disturbed one
        row[f"{key}_best_tokens_per_s"] = round(tokens / min(times[key]), 1)
    if "plain" in models:
        for suffix in ("", "_best"):
            mixnas = row[f"mixnas{suffix}_tokens_per_s"]
            row[f"mixnas_vs_plain{suffix}"] = round(mixnas / row[f"plain{suffix}_tokens_per_s"], 3)
            row[f"mixnas_vs_plain_fused{suffix}"] = round(
                mixnas / row[f"plain_fused{suffix}_tokens_per_s"], 3)
    if args.compile:
        eager, compiled = statistics.median(times["mixnas"]), statistics.median(
            times["mixnas_compiled"])
        row["compile_first_step_s"] = round(times["mixnas_compiled_first"][0], 2)
        row["compiled_vs_eager"] = round(eager / compiled, 3)
        saved = eager - compiled
        row["compile_pays_after_steps"] = (
            round(times["mixnas_compiled_first"][0] / saved) if saved > 0 else None)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", default="issue,lm",
                        help=f"comma-separated: {', '.join(SHAPES)}, custom")
    parser.add_argument("--batch", type=int, default=32, help="shape custom")
    parser.add_argument("--seq", type=int, default=64, help="shape custom")
    parser.add_argument("--width", type=int, default=64, help="shape custom")
    parser.add_argument("--depth", type=int, default=2, help="shape custom")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--designs", default=",".join(DEFAULT_DESIGNS))
    parser.add_argument("--compile", action="store_true",
                        help="also time the mixnas model under torch.compile")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=str(RESULTS / "train_throughput.json"))
    args = parser.parse_args(argv)
    shapes = [s for s in args.shapes.split(",") if s]
    for shape in shapes:
        if shape not in (*SHAPES, "custom"):
            parser.error(f"--shapes: unknown shape {shape!r}; known: {', '.join(SHAPES)}, custom")
    import os

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for shape in shapes:
        for name in [d for d in args.designs.split(",") if d]:
            rows.append(measure(name, shape, args, device))
            print(rows[-1], flush=True)
    for shape in shapes:
        attention = next((r for r in rows if r["design"] == "attention" and r["shape"] == shape),
                         None)
        for row in rows:
            if attention and row["shape"] == shape:
                row["vs_plain_attention"] = round(
                    row["mixnas_tokens_per_s"] / attention["plain_tokens_per_s"], 3)
    data = {**environment("benchmarks.train_throughput", argv),
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "load_average_before": load_before, "settings": vars(args), "rows": rows}
    write_json(Path(args.out), data)
    return data


if __name__ == "__main__":
    main()
