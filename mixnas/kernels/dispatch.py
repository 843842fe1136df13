"""Which implementation runs a kernel op: the fastest correct one for the call, from a table.

Why: on a GPU one op has several implementations (our Triton kernels; PyTorch's SDPA with its
flash, cuDNN and memory-efficient backends; FlexAttention for sliding windows; the torch
references), and which is fastest depends on the device, dtype, head dim and length. `mixnas bench
kernels` times them all, checks each against the reference before it may win, and writes the
winner per (op, dtype, variant, T bucket, D bucket) to a table (`Table`); every op call looks up
its bucket there, or the nearest measured length of the same op, dtype, variant and head dim.

Order of precedence for one call:
1. `MIXNAS_KERNELS` (`parse_override`): `triton`, `reference`, ... for every op that has that
   implementation, or `op=name` for one op (comma-separated, e.g.
   `MIXNAS_KERNELS=reference,attention=sdpa_cudnn`). A forced implementation that cannot run the
   call (see `Candidate.refuses`) warns once and falls back to 2-3.
2. Off CUDA: the torch reference (the CPU path searches train with).
3. On CUDA: the table's winner, then `DEFAULT_ORDER` (SDPA, letting PyTorch pick its backend, for
   full attention before any GPU figure exists; Triton for windows, where SDPA cannot skip
   blocks, and for every other op), skipping what cannot run the call.
SDPA backends and FlexAttention can still refuse inputs at run time (a backend without GQA, a
head dim a compiler does not take): the next implementation then runs, with a warning once.

The table is `MIXNAS_KERNEL_TABLE` (a path; `none` disables tables), else
`$XDG_CACHE_HOME/mixnas/kernel_table.json` (`~/.cache/...`); a table measured on another device
is ignored. This module imports nothing of triton: the Triton code loads on its first call.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from mixnas.kernels import reference, torch_ops

OPS = ("attention", "linear_attention", "delta_rule", "rms_norm", "swiglu", "causal_conv1d")
TRITON_CHUNK_SIZES = (16, 32, 64)  # the chunk scans hold (C, C) and (C, Dk) tiles
TABLE_ENV = "MIXNAS_KERNEL_TABLE"
OVERRIDE_ENV = "MIXNAS_KERNELS"
TABLE_FORMAT = "mixnas-kernel-table/1"
DEFAULT_ORDER = {
    "attention": ("sdpa", "triton", "flex", "reference"),
    **dict.fromkeys(OPS[1:], ("triton", "reference")),
}


@dataclass(frozen=True)
class Call:
    """What dispatch knows of one op call.

    variant: attention 'causal' | 'full' | 'window' | 'offset' (causal with Tq < Tk, as in
    decoding with a KV cache); linear_attention the decay form 'none' | 'head' | 'token' |
    'channel'; delta_rule 'plain' | 'gated' | 'channel'; other ops '-'. T: the (key) length or rows;
    D: the head dim (channels for the elementwise ops).
    """

    op: str
    device: str
    dtype: str
    variant: str
    T: int
    D: int
    gqa: bool = False
    chunk_size: int | None = None

    def bucket(self) -> tuple[str, str, str, int, int]:
        """(op, dtype, variant, T rounded up to a power of two, D likewise)."""
        return self.op, self.dtype, self.variant, _pow2(self.T), _pow2(self.D)


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _dtype(x: torch.Tensor) -> str:
    return str(x.dtype).removeprefix("torch.")


def attention_call(q, k, causal=True, window=None) -> Call:
    """The `Call` of `attention(q, k, v, causal, window)`; q (B, Tq, H, D), k (B, Tk, Hkv, D)."""
    Tq, H, D = q.shape[1:]
    Tk, Hkv = k.shape[1], k.shape[2]
    if window is not None and window < Tk:
        variant = "window"
    elif causal and Tq not in (Tk, 1):
        variant = "offset"
    else:
        variant = "causal" if causal and Tq > 1 else "full"
    return Call("attention", q.device.type, _dtype(q), variant, Tk, D, gqa=Hkv != H)


def linear_attention_call(q, log_decay=None, chunk_size=64) -> Call:
    """The `Call` of `linear_attention`; q (B, T, H, Dk), log_decay None/(H,)/(B,T,H)/(B,T,H,Dk)."""
    forms = {None: "none", 1: "head", 3: "token", 4: "channel"}
    form = forms.get(None if log_decay is None else log_decay.dim(), "invalid")
    return Call("linear_attention", q.device.type, _dtype(q), form, q.shape[1], q.shape[3],
                chunk_size=chunk_size)


def delta_rule_call(q, log_decay=None, chunk_size=64) -> Call:
    """The `Call` of `delta_rule`; q (B, T, H, Dk), log_decay None/(H,)/(B,T,H)/(B,T,H,Dk)."""
    dim = None if log_decay is None else log_decay.dim()
    form = {None: "plain", 1: "gated", 3: "gated", 4: "channel"}.get(dim, "invalid")
    return Call("delta_rule", q.device.type, _dtype(q), form, q.shape[1], q.shape[3],
                chunk_size=chunk_size)


def rowwise_call(op, x) -> Call:
    """The `Call` of an op over the last dim of x (rms_norm, swiglu; causal_conv1d's (B, T, C))."""
    D = x.shape[-1]
    rows = x.shape[1] if op == "causal_conv1d" else x.numel() // max(1, D)
    return Call(op, x.device.type, _dtype(x), "-", rows, D)


# --------------------------------------------------------------------------- candidates
def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


def triton_chunk_ok(chunk_size) -> bool:
    """Whether the Triton chunked kernels take this chunk size (an int in TRITON_CHUNK_SIZES)."""
    return type(chunk_size) is int and chunk_size in TRITON_CHUNK_SIZES


def _triton_refuses(call: Call) -> str | None:
    if call.device != "cuda" and not _interpreting():
        return "Triton needs CUDA tensors (or TRITON_INTERPRET=1)"
    if call.device != "cuda" and call.dtype == "bfloat16":
        return "bfloat16 is not supported under TRITON_INTERPRET=1"
    if call.chunk_size is not None and not triton_chunk_ok(call.chunk_size):
        return f"chunk_size={call.chunk_size!r} (the Triton kernels take {TRITON_CHUNK_SIZES})"
    return None


def _sdpa_refuses(name: str) -> Callable[[Call], str | None]:
    half = ("float16", "bfloat16")

    def refuses(call: Call) -> str | None:
        if call.variant in ("window", "offset"):
            return f"SDPA has no {'sliding window' if call.variant == 'window' else 'offset'} mask"
        if name in ("sdpa", "sdpa_math"):
            return None
        if name in ("sdpa_cudnn", "sdpa_efficient") and call.device != "cuda":
            return f"{name} needs CUDA tensors"
        pinned_half = name in ("sdpa_flash", "sdpa_cudnn") and call.device == "cuda"
        if pinned_half and call.dtype not in half:
            return f"{name} needs float16 or bfloat16"
        limit = 128 if name == "sdpa_cudnn" else 256
        if name != "sdpa_efficient" and (call.D % 8 or limit < call.D):
            return f"{name} needs a head dim that is a multiple of 8 up to {limit}"
        return None

    return refuses


def _flex_refuses(call: Call) -> str | None:
    if call.variant not in ("window", "offset"):
        return "FlexAttention serves sliding windows and offset masks (full attention: SDPA)"
    if call.device != "cuda":
        return "FlexAttention has no backward pass on CPU"
    if call.D < 16 or call.D > 128 or call.D & (call.D - 1):
        return "FlexAttention needs a power-of-two head dim from 16 to 128"
    return None


@dataclass(frozen=True)
class Candidate:
    """One implementation of an op: `load()` returns the callable (same signature as the op);
    `refuses(call)` says why it cannot run a call (None: it can); `fallible`: it may still refuse
    at run time (SDPA backends, FlexAttention), and the next candidate then runs."""

    name: str
    load: Callable[[], Callable]
    refuses: Callable[[Call], str | None]
    fallible: bool = False


def _triton(op: str) -> Callable[[], Callable]:
    return lambda: getattr(importlib.import_module("mixnas.kernels.triton_ops"), op)


def _candidates() -> dict[str, dict[str, Candidate]]:
    table: dict[str, dict[str, Candidate]] = {}
    for op in OPS:
        table[op] = {
            "triton": Candidate("triton", _triton(op), _triton_refuses),
            "reference": Candidate("reference", lambda op=op: getattr(reference, op),
                                   lambda call: None),
        }
    for name in ("sdpa", *torch_ops.SDPA_BACKENDS):
        table["attention"][name] = Candidate(
            name, lambda name=name: torch_ops.sdpa_candidate(name), _sdpa_refuses(name), True)
    table["attention"]["flex"] = Candidate("flex", lambda: torch_ops.flex_attention,
                                           _flex_refuses, True)
    return table


CANDIDATES = _candidates()


# --------------------------------------------------------------------------- override
def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@lru_cache(maxsize=16)
def parse_override(text: str) -> dict[str, str]:
    """`MIXNAS_KERNELS` as {op or '*': implementation}; '' or 'auto' is no override.

    Raises:
        ValueError: an unknown op or implementation, named with a did-you-mean.
    """
    forced: dict[str, str] = {}
    every = sorted({name for cands in CANDIDATES.values() for name in cands} | {"auto"})
    for item in filter(None, (part.strip().lower() for part in text.split(","))):
        op, sep, name = item.rpartition("=")
        op = op.strip() if sep else "*"
        name = name.strip()
        if op != "*" and op not in CANDIDATES:
            raise ValueError(f"{OVERRIDE_ENV}={text!r}: unknown op {op!r}"
                             f"{_did_you_mean(op, CANDIDATES)}; ops: {', '.join(OPS)}")
        choices = every if op == "*" else sorted({*CANDIDATES[op], "auto"})
        if name not in choices:
            raise ValueError(f"{OVERRIDE_ENV}={text!r}: unknown implementation {name!r}"
                             f"{_did_you_mean(name, choices)}; expected one of "
                             f"{', '.join(choices)}")
        if name != "auto":
            forced[op] = name
    return forced


def _forced(op: str) -> str | None:
    forced = parse_override(os.environ.get(OVERRIDE_ENV, ""))
    name = forced.get(op, forced.get("*"))
    return name if name in CANDIDATES[op] else None


# --------------------------------------------------------------------------- table
def default_table_path() -> Path | None:
    """`MIXNAS_KERNEL_TABLE` (None when it says 'none'), else the user cache's kernel_table.json."""
    env = os.environ.get(TABLE_ENV, "").strip()
    if env:
        return None if env.lower() == "none" else Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mixnas" / "kernel_table.json"


@dataclass(frozen=True)
class Table:
    """Measured winners of one device: {(op, dtype, variant, T bucket, D bucket): name}.

    File format (written by `mixnas bench kernels`, see `Table.to_json`):
    `{"format": "mixnas-kernel-table/1", "device": "NVIDIA H100 80GB HBM3", "entries":
    [{"op", "dtype", "variant", "T", "D", "winner", "ms": {name: ms}, "rejected": {name: why}}]}`.
    """

    device: str
    winners: dict[tuple[str, str, str, int, int], str]

    def winner(self, call: Call) -> str | None:
        """The winner of the call's bucket, or of the nearest measured one with the same op,
        dtype and variant (nearest head dim first, then nearest length, in powers of two; of two
        as near, the shorter)."""
        op, dtype, variant, T, D = call.bucket()
        exact = self.winners.get((op, dtype, variant, T, D))
        if exact is not None:
            return exact
        near = [(abs(math.log2(d / D)), abs(math.log2(t / T)), d, t, name)
                for (o, dt, v, t, d), name in self.winners.items()
                if (o, dt, v) == (op, dtype, variant)]
        return min(near)[-1] if near else None

    @classmethod
    def from_json(cls, data: dict, source: str = "kernel table") -> Table:
        """Parse and validate a table document.

        Raises:
            ValueError: naming the source and the entry at fault.
        """
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise ValueError(f"{source}: not a kernel table (expected format {TABLE_FORMAT!r})")
        winners = {}
        for i, entry in enumerate(data.get("entries", [])):
            try:
                key = (entry["op"], entry["dtype"], entry["variant"], int(entry["T"]),
                       int(entry["D"]))
                winner = entry["winner"]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{source}: entries[{i}]: missing or bad field {exc}") from None
            if key[0] not in CANDIDATES or winner not in CANDIDATES[key[0]]:
                raise ValueError(f"{source}: entries[{i}]: unknown op or implementation "
                                 f"{key[0]}/{winner}")
            winners[key] = winner
        return cls(str(data.get("device", "")), winners)


def table_entry(call_bucket, winner, ms, rejected) -> dict:
    """One entry of a table document (what `Table.from_json` reads back)."""
    op, dtype, variant, T, D = call_bucket
    return {"op": op, "dtype": dtype, "variant": variant, "T": T, "D": D, "winner": winner,
            "ms": ms, "rejected": rejected}


def merge_table(path: Path, device: str, entries: list[dict], meta: dict) -> dict:
    """Write `entries` into the table at `path` (replacing same-bucket entries of the same device;
    a table of another device is replaced whole). Returns the document written."""
    doc = {"format": TABLE_FORMAT, "device": device, **meta, "entries": []}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        if isinstance(old, dict) and old.get("device") == device:
            doc["entries"] = list(old.get("entries", []))
    fresh = {tuple(e[k] for k in ("op", "dtype", "variant", "T", "D")) for e in entries}
    doc["entries"] = [e for e in doc["entries"]
                      if tuple(e.get(k) for k in ("op", "dtype", "variant", "T", "D"))
                      not in fresh] + entries
    Table.from_json(doc, str(path))  # never write what cannot be read back
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return doc


_tables: dict[tuple[str, float], Table | None] = {}


def _warn_once(message: str, _seen: set = set()) -> None:  # noqa: B006 (a process-wide set)
    if message not in _seen:
        _seen.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def load_table(path: Path | None) -> Table | None:
    """The table at `path` (re-read when the file changes); None when absent.

    Raises:
        ValueError: a table named by `MIXNAS_KERNEL_TABLE` that cannot be read (the default
            location's broken table only warns).
    """
    if path is None:
        return None
    try:
        stamp = path.stat().st_mtime
    except OSError:
        if os.environ.get(TABLE_ENV, "").strip():
            raise ValueError(f"{TABLE_ENV}={path}: no such kernel table") from None
        return None
    key = (str(path), stamp)
    if key not in _tables:
        try:
            _tables[key] = Table.from_json(json.loads(path.read_text()), str(path))
        except (OSError, ValueError) as exc:
            if os.environ.get(TABLE_ENV, "").strip():
                raise ValueError(str(exc).splitlines()[0]) from None
            _warn_once(f"ignoring the kernel table {path}: {exc}")
            _tables[key] = None
    return _tables[key]


@lru_cache(maxsize=8)
def device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def _table_winner(call: Call, device_index: int) -> str | None:
    table = load_table(default_table_path())
    if table is None:
        return None
    name = device_name(device_index)
    if table.device != name:
        _warn_once(f"ignoring the kernel table measured on {table.device!r}: this is {name!r}")
        return None
    return table.winner(call)


# --------------------------------------------------------------------------- choice
def reference_fast_path(x: torch.Tensor) -> bool:
    """True when a call on `x` runs the reference with no choice to make (not CUDA, no
    override): the ops then skip building a `Call`, keeping the CPU training path as cheap as
    calling the reference directly (a Call and a plan cost ~20 us, a small CPU op ~40 us)."""
    return not x.is_cuda and os.environ.get(OVERRIDE_ENV, "auto") in ("", "auto")


def plan(call: Call, device_index: int = 0) -> list[str]:
    """The implementations that may run `call`, best first; the first one runs, the others are
    the fallbacks if a fallible one refuses at run time."""
    path = default_table_path() if call.device == "cuda" else None
    try:
        stamp = path.stat().st_mtime if path is not None else None
    except OSError:
        stamp = None
    names = _plan(call, device_index, os.environ.get(OVERRIDE_ENV, ""), str(path), stamp)
    return [n for n in names if (call, n) not in _refused]


@lru_cache(maxsize=4096)
def _plan(call: Call, device_index: int, override: str, table: str, stamp) -> tuple[str, ...]:
    """`plan` for one override text and table version (the arguments after `call` are the keys
    that invalidate the cache)."""
    cands = CANDIDATES[call.op]
    order: list[str] = []
    forced = _forced(call.op)
    if forced is not None:
        why = cands[forced].refuses(call)
        if why is None:
            order.append(forced)
        else:
            _warn_once(f"{OVERRIDE_ENV} forces {call.op}={forced}, which cannot run this call "
                       f"({why}): using the automatic choice")
    if call.device != "cuda":
        order.append("reference")
    else:
        winner = _table_winner(call, device_index)
        order += ([winner] if winner else []) + list(DEFAULT_ORDER[call.op])
    seen: set[str] = set()
    return tuple(n for n in order
                 if not (n in seen or seen.add(n)) and cands[n].refuses(call) is None)


_refused: set[tuple[Call, str]] = set()


def run(call: Call, *args, **kwargs):
    """Run the op of `call` with the first implementation of `plan(call)` that accepts it."""
    x = args[0]
    names = plan(call, (x.device.index or 0) if x.is_cuda else 0)
    for i, name in enumerate(names):
        cand = CANDIDATES[call.op][name]
        if not cand.fallible or i == len(names) - 1:
            return cand.load()(*args, **kwargs)
        try:
            return cand.load()(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:
            if name.startswith("sdpa") and not torch_ops.backend_unavailable(exc):
                raise
            _refused.add((call, name))
            _warn_once(f"{call.op}: {name} refused {call.variant} {call.dtype} T={call.T} "
                       f"D={call.D} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                       f"using {names[i + 1]}")
    raise AssertionError("unreachable: the last implementation of a plan runs unguarded")


def choice(call: Call, device_index: int = 0) -> str:
    """The implementation `run(call, ...)` tries first."""
    return plan(call, device_index)[0]
