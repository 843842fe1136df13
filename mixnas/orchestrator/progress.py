"""Live study progress in the terminal (rich), and the Pareto-front table shown at the end."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


class LiveProgress:
    """A panel that redraws as trials finish: counts, elapsed time, front size, recent events."""

    def __init__(self, console: Console, study_name: str):
        self.console = console
        self.study_name = study_name
        self.started = time.monotonic()
        self.events: deque[str] = deque(maxlen=6)
        self._state: tuple[Any, int] | None = None
        self._live = Live(console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)

    def update(self, counts, target: int, message: str | None) -> None:
        if message:
            self.events.append(message)
        self._state = (counts, target)
        self._live.update(self._render())

    def note(self, message: str) -> None:
        self.events.append(f"[yellow]{message}[/]")
        if self._state is not None:
            self._live.update(self._render())

    def _render(self) -> Panel:
        counts, target = self._state
        elapsed = time.monotonic() - self.started
        line = Text.assemble(
            (f"{counts.done}/{target} done", "bold"),
            "   ",
            (f"{counts.running} running", "cyan"),
            "   ",
            (f"{counts.complete} complete", "green"),
            "   ",
            (f"{counts.pruned} pruned", "magenta"),
            "   ",
            (f"{counts.failed} failed", "red"),
            "   ",
            (f"{counts.infeasible} infeasible", "yellow"),
            "   ",
            (f"front {counts.front}", "bold blue"),
            "   ",
            (f"{elapsed:,.0f} s", "dim"),
        )
        bar = ProgressBar(total=max(target, 1), completed=min(counts.done, target), width=60)
        events = Text.from_markup("\n".join(self.events) or "[dim]waiting for the first trial[/]")
        return Panel(Group(line, bar, events), title=f"mixnas study [bold]{self.study_name}[/]")


def pareto_table(front: list[dict[str, Any]], objectives: list[dict[str, str]]) -> Table:
    table = Table(title=f"Pareto front ({len(front)} trials)", header_style="bold")
    table.add_column("trial", justify="right")
    for objective in objectives:
        arrow = "↑" if objective["direction"] == "maximize" else "↓"
        table.add_column(f"{objective['name']} {arrow}", justify="right")
    table.add_column("architecture")
    for item in front:
        row = [str(item["trial"])]
        row += [_fmt(item["values"].get(o["name"])) for o in objectives]
        row.append(describe(item.get("architecture"), item.get("baseline")))
        table.add_row(*row)
    return table


def describe(arch: dict[str, Any] | None, baseline: str | None = None) -> str:
    """A one-line summary: width, depth and the token/channel mixers layer by layer."""
    if not arch:
        return "-"
    mixers = []
    for layer in arch["layers"]:
        token = layer["token_mixer"]
        if token["type"] == "parallel":
            names = "|".join(b["type"] for b in token["params"].get("branches", []))
            token_name = f"({names})"
        else:
            token_name = token["type"]
        channel = layer["channel_mixer"]["type"]
        mixers.append(token_name if channel == "none" else f"{token_name}+{channel}")
    label = f"[{baseline}] " if baseline else ""
    return f"{label}d{arch['d_model']} x{len(arch['layers'])}: " + ", ".join(mixers)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return f"{value:,.0f}"
