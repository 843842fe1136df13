"""`mixnas study report`: a study's result as one file to share, paste into a paper or attach to a
pull request: the front, the top designs' layer strips, what the decisions matter for, how the
objectives move with composition, and the study's settings.

HTML is one self-contained file (plotly's JavaScript inlined: it opens offline, about 5 MB);
Markdown is tables plus PNG figures written beside it (matplotlib, from the `bench` extra). The
numbers come from the dashboard's store, so report, dashboard and CLI count the same front.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from mixnas import pareto
from mixnas.dashboard.store import NotFound, Store
from mixnas.errors import MixnasError

TOP_DESIGNS = 10
MAX_PAIRS = 3  # front panels: pairs of objectives drawn in two dimensions
FORMATS = ("html", "md")
MD_NEEDS = "--format md needs matplotlib: pip install 'mixnas[bench]'"


class ReportError(MixnasError, ValueError):
    """A report that cannot be written (unknown study, no matplotlib, bad output path)."""


def fmt(value: Any) -> str:
    """The dashboard's number format (static/common.js `fmt`): 4 significant digits, an SI
    suffix with 3 from 10,000 on, an exponent below 0.001."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1e4:
        power = min(6, int(math.floor(math.log10(magnitude) / 3)))
        scaled = float(f"{value / 10 ** (3 * power):.3g}")
        if abs(scaled) >= 1000 and power < 6:
            power, scaled = power + 1, scaled / 1000
        return f"{scaled:g}{['', 'k', 'M', 'G', 'T', 'P', 'E'][power]}"
    if magnitude and magnitude < 1e-3:
        return f"{value:.1e}".replace(".0e", "e").replace("e-0", "e-")
    return f"{float(f'{value:.4g}'):g}" if isinstance(value, float) else str(value)


def collect(storage_url: str, name: str) -> dict:
    """Everything a report shows, read through the dashboard's read-only store.

    Raises:
        ReportError: No study `name` in the database.
    """
    store = Store(storage_url)
    try:
        study = store.study(name)
    except NotFound as error:
        raise ReportError(str(error)) from error
    objectives = study["objectives"]
    names = [o["name"] for o in objectives]
    rows = {r.number: r for r in store.snapshot(study["id"]).rows}
    repeats = store.repeats(study["id"])
    front = []
    for number in study["front"]:
        r = rows[number]
        front.append({"number": number, "values": [r.values.get(n) for n in names],
                      "baseline": r.baseline, "shape": r.design.shape if r.design else r.mix,
                      "order": list(r.design.order) if r.design else [],
                      "repeats": len(repeats.get(r.arch_hash, [number])) if r.arch_hash else 1})
        front[-1]["size"] = f"{r.design.d_model} × {r.design.depth}" if r.design else ""
    sign = -1 if objectives[0]["direction"] == "maximize" else 1
    front.sort(key=lambda d: sign * d["values"][0])
    designs = pareto.distinct(store.points(study["id"], names))  # one point per design
    return {"study": study, "objectives": objectives, "front": front,
            "insight": store.insight(study["id"], objectives),
            "points": [[p.number, list(p.values)] for p in designs],
            "pairs": pair_fronts(designs, objectives)}


def pair_fronts(designs: list[pareto.Point], objectives: list[dict]) -> list[dict]:
    """The front of each of the first `MAX_PAIRS` pairs of objectives (x: `i`, y: `j`), by
    `mixnas.pareto` over the designs' two values, and its points by x (`stairs`): what a 2-D
    panel of the report draws."""
    pairs = [(i, j) for i in range(len(objectives)) for j in range(i + 1, len(objectives))]
    answer = []
    for i, j in pairs[:MAX_PAIRS]:
        directions = [objectives[i]["direction"], objectives[j]["direction"]]
        flat = [pareto.Point(p.number, (p.values[i], p.values[j]), p.design) for p in designs]
        members = pareto.front([p for p in flat if all(map(math.isfinite, p.values))], directions)
        answer.append({"x": i, "y": j, "front": [p.number for p in members],
                       "stairs": sorted(p.values for p in members)})
    return answer


def log_scale(values: list[float]) -> bool:
    """Whether an axis reads better in log scale: positive values spanning 100x or more (a
    KV cache of 1 MB beside recurrent states of 400 B)."""
    shown = [v for v in values if v is not None and math.isfinite(v)]
    return bool(shown) and min(shown) > 0 and max(shown) >= 100 * min(shown)


def write_report(storage_url: str, name: str, out: Path, fmt_name: str = "html") -> list[Path]:
    """Write the report of study `name` to `out` (and, for Markdown, PNG figures beside it).

    Args:
        storage_url: The study database (opened read-only).
        name: The study.
        out: The report file.
        fmt_name: "html" (self-contained) or "md" (tables + PNG figures).

    Returns:
        The files written.

    Raises:
        ReportError: Unknown format or study, a missing output folder, or no matplotlib for md.
    """
    if fmt_name not in FORMATS:
        raise ReportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt_name!r}")
    if not out.parent.is_dir():
        raise ReportError(f"-o {out}: folder {out.parent} does not exist")
    if fmt_name == "md":
        try:
            import matplotlib  # noqa: F401
        except ImportError as error:
            raise ReportError(MD_NEEDS) from error
    data = collect(storage_url, name)  # validates the study before anything is written
    if fmt_name == "html":
        from mixnas.dashboard.report_html import render_html

        out.write_text(render_html(data), encoding="utf-8")
        return [out]
    from mixnas.dashboard.report_md import render_md

    return render_md(data, out)


def settings_text(study: dict) -> str:
    """The study's settings as indented JSON (the resolved study file)."""
    return json.dumps({"objectives": study["objectives"], "target_trials": study["target_trials"],
                       **study["config"]}, indent=2, default=str)


def escape(text: Any) -> str:
    return html.escape(str(text))
