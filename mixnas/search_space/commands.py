"""What `mixnas space show|validate|sample FILE` do; the CLI only parses arguments and prints.

Each raises `GrammarError` (a ValueError whose message is `FILE:LINE: message`) for a bad file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from mixnas.search_space.constraints import footprint, human
from mixnas.search_space.grammar import Grammar, GrammarError
from mixnas.search_space.sampling import RandomDecider

MAX_SAMPLES = 10_000  # `space sample --n`: a file of more is no longer something to read


def show(path: str | Path, console: Console) -> None:
    """Print the grammar as a tree: settings, constraints, and each rule's weighted productions."""
    console.print(Grammar.load(path).render_tree())


def validate(path: str | Path, draws: int = 100) -> str:
    """Check the file, then derive `draws` random architectures (which also exercises every
    decision name the draws reach) and count the feasible ones; a one-line summary."""
    grammar = Grammar.load(path)
    rejected = check_feasible(grammar, path, draws)
    productions = sum(len(rule.productions) for rule in grammar.rules.values())
    summary = (
        f"{path}: ok, {grammar.name!r} has {len(grammar.rules)} rules and {productions} "
        f"productions; {draws - len(rejected)}/{draws} random draws are feasible"
    )
    return summary + (f" (a rejection: {rejected[0]})" if rejected else "")


def check_feasible(grammar: Grammar, path: str | Path, draws: int = 100) -> list[str]:
    """Derive `draws` random architectures (exercising every decision they reach) and refuse a
    grammar none of whose draws is feasible: a study of it could only fail every trial.

    Returns:
        The first reason of each rejected draw.

    Raises:
        GrammarError: `FILE: no feasible architecture in N draws: ...`, or a draw that cannot
            be derived.
    """
    decider = RandomDecider(0)
    rejected = [grammar.check_constraints(grammar.sample(decider)) for _ in range(draws)]
    rejected = [reasons[0] for reasons in rejected if reasons]
    if len(rejected) == draws:
        message = f"no feasible architecture in {draws} draws: {rejected[0]}"
        raise GrammarError(str(path), None, message)
    return rejected


def sample(path: str | Path, n: int, seed: int | None = None) -> list[dict[str, Any]]:
    """`n` feasible architectures as JSON-ready dicts: hash, sizes, a one-line summary, and the
    architecture itself (`Architecture.from_dict` reads it back); at most `MAX_SAMPLES`.

    Raises:
        GrammarError: A bad grammar file.
        ValueError: `--n` above `MAX_SAMPLES`, or `--seed` outside 0 to 2**32 - 1.
    """
    if not 0 < n <= MAX_SAMPLES:
        raise ValueError(f"--n: must be from 1 to {MAX_SAMPLES:,}, got {n:,}")
    if seed is not None and not 0 <= seed < 1 << 32:
        raise ValueError(f"--seed: must be from 0 to {(1 << 32) - 1}, got {seed}")
    grammar = Grammar.load(path)
    context = grammar.constraints.context_length
    out = []
    for arch in grammar.sample_many(n, seed):
        size = footprint(arch, context)
        mixers = ", ".join(f"{k} x{v}" for k, v in sorted(arch.mixer_counts().items()))
        out.append(
            {
                "hash": arch.hash,
                "non_embedding_params": size.non_embedding_params,
                "state_bytes": size.state_bytes,
                "context_length": context,
                "summary": f"d_model {arch.d_model}, {len(arch.layers)} layers ({mixers}), "
                f"{human(size.non_embedding_params)} params",
                "architecture": arch.to_dict(),
            }
        )
    return out
