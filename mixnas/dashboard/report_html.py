"""The HTML study report: one file, plotly's JavaScript inlined once, every figure embedded, so it
opens offline and can be mailed or attached as it is."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from mixnas.dashboard.designs import family
from mixnas.dashboard.report import escape, fmt, settings_text

# the dashboard's family colours (static/app.css --fam-*)
COLOURS = {"attention": "#f59e0b", "linear": "#10b981", "delta": "#8b5cf6", "ssm": "#3b82f6",
           "conv": "#ec4899", "parallel": "#64748b", "other": "#94a3b8"}
STYLE = """body{font:14px system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1f2933}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{padding:4px 8px;border-bottom:1px solid #e5e7eb;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.strip{display:flex;gap:2px}
.strip span{padding:2px 6px;border-radius:4px;color:#fff;font-size:11px}.note{color:#6b7785}
pre{background:#f8fafc;padding:12px;overflow:auto;font-size:12px}"""


def _figure(fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 50},
                      height=380, font={"size": 12})
    fig.update_xaxes(exponentformat="SI")
    fig.update_yaxes(exponentformat="SI")
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _front(data: dict) -> str:
    objectives = data["objectives"]
    if len(objectives) < 2:
        return "<p class=note>One objective: no front to draw.</p>"
    x, y = objectives[0]["name"], objectives[1]["name"]
    on_front = {d["number"] for d in data["front"]}
    seen = [p for p in data["points"] if None not in p[1][:2]]
    fig = go.Figure()
    for label, keep, size in (("dominated", False, 6), ("Pareto front (all objectives)", True, 11)):
        pts = [p for p in seen if (p[0] in on_front) == keep]
        fig.add_scatter(x=[p[1][0] for p in pts], y=[p[1][1] for p in pts], mode="markers",
                        name=f"{label} ({len(pts)})", text=[f"#{p[0]}" for p in pts],
                        marker={"size": size, "opacity": 1 if keep else 0.35})
    fig.update_layout(xaxis_title=x, yaxis_title=y, title="Designs and the Pareto front")
    return _figure(fig)


def _colour(mixer_type: str) -> str:
    """A primitive's strip colour; kinds the dashboard does not know (users' plugin primitives)
    each get a stable colour hashed from the name, as `mixerColor` in static/common.js."""
    fam = family(mixer_type)
    if fam != "other":
        return COLOURS.get(fam, COLOURS["other"])
    digest = 0
    for ch in mixer_type:
        digest = (digest * 31 + ord(ch)) & 0xFFFFFFFF
    return f"hsl({digest % 360}, 55%, 42%)"


def _strip(order: list[str]) -> str:
    boxes = "".join(f"<span style='background:{_colour(t)}'>{escape(t)}</span>" for t in order)
    return f"<div class=strip>{boxes}</div>"


def _top_designs(data: dict) -> str:
    names = [o["name"] for o in data["objectives"]]
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><td>#{d['number']}{' (' + escape(d['baseline']) + ')' if d['baseline'] else ''}"
        f"{' ×' + str(d['repeats']) if d['repeats'] > 1 else ''}</td>"
        + "".join(f"<td class=num>{fmt(v)}</td>" for v in d["values"])
        + f"<td>{_strip(d['order'])}</td></tr>"
        for d in data["front"][:10])
    return f"<table><tr><th>trial</th>{head}<th>layers</th></tr>{rows}</table>"


def _importances(data: dict) -> str:
    found = data["insight"]["importance"]
    if found["hidden"]:
        return f"<p class=note>Hidden: {escape(found['hidden'])}.</p>"
    parts = []
    for name, ranking in [*found["by_objective"].items(), ("reaching the front", found["front"])]:
        if not ranking:
            continue
        top = ranking[:10][::-1]
        fig = go.Figure(go.Bar(x=[v for _, v in top], y=[p for p, _ in top], orientation="h"))
        fig.update_layout(title=f"Importance for {name}", height=320)
        parts.append(_figure(fig))
    return (f"<p class=note>PED-ANOVA (optuna.importance) on {found['n']} complete designs "
            "(a repeated design counted once).</p>" + "".join(parts))


def _composition(data: dict) -> str:
    comp = data["insight"]["composition"]
    if comp["hidden"]:
        return f"<p class=note>Hidden: {escape(comp['hidden'])}.</p>"
    parts = []
    for k, objective in enumerate(data["objectives"]):
        rows = [r for r in comp["rows"] if r[6][k] is not None]
        fig = go.Figure()
        fig.add_scatter(x=[r[1] for r in rows], y=[r[6][k] for r in rows], mode="markers",
                        name="attention share", marker={"opacity": 0.5})
        fig.add_box(x=[r[3] for r in rows], y=[r[6][k] for r in rows], name="placement",
                    boxpoints="all", xaxis="x2", yaxis="y")
        fig.add_box(x=[r[2] for r in rows], y=[r[6][k] for r in rows], name="recurrent family",
                    boxpoints="all", xaxis="x3", yaxis="y")
        fig.update_layout(
            title=f"{objective['name']} vs composition ({len(rows)} designs)", showlegend=False,
            xaxis={"domain": [0, 0.3], "title": "share of attention layers"},
            xaxis2={"domain": [0.35, 0.65], "title": "attention placement"},
            xaxis3={"domain": [0.7, 1], "title": "recurrent family"},
            yaxis_title=objective["name"])
        parts.append(_figure(fig))
    return "".join(parts)


def render_html(data: dict) -> str:
    """The report as one HTML document (see the module docstring)."""
    study = data["study"]
    counts = ", ".join(f"{n} {state}" for state, n in study["counts"].items() if n)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(study['name'])} · mixnas study report</title><style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>Study {escape(study['name'])}</h1>"
        f"<p>{study['n_trials']} trials ({counts}); objectives: "
        + ", ".join(f"{escape(o['name'])} ({o['direction'][:3]})" for o in data["objectives"])
        + f"; {len(data['front'])} designs on the Pareto front.</p>"
        f"<h2>Pareto front</h2>{_front(data)}"
        f"<h2>Top designs</h2><p class=note>The front's designs, best "
        f"{escape(data['objectives'][0]['name'])} first; ×N: the design was tried N times."
        f"</p>{_top_designs(data)}"
        f"<h2>What the decisions matter for</h2>{_importances(data)}"
        f"<h2>Composition effects</h2>{_composition(data)}"
        f"<h2>Study settings</h2><pre>{escape(settings_text(study))}</pre>"
        "</body></html>"
    )
