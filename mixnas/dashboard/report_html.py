"""The HTML study report: one file, plotly's JavaScript inlined once, every figure embedded, so it
opens offline and can be mailed or attached as it is."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from mixnas.dashboard.designs import family
from mixnas.dashboard.report import TOP_DESIGNS, escape, fmt, log_scale, settings_text

# the dashboard's family colours (static/app.css --fam-*)
COLOURS = {"attention": "#f59e0b", "linear": "#10b981", "delta": "#8b5cf6", "ssm": "#3b82f6",
           "conv": "#ec4899", "parallel": "#64748b", "other": "#94a3b8"}
STYLE = """body{font:14px system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1f2933}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{padding:4px 8px;border-bottom:1px solid #e5e7eb;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}td:first-child{white-space:nowrap}
.strip{display:flex;gap:2px}
.strip span{padding:2px 6px;border-radius:4px;color:#fff;font-size:11px}.note{color:#6b7785}
pre{background:#f8fafc;padding:12px;overflow:auto;font-size:12px}"""


def _figure(fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 50},
                      height=380, font={"size": 12})
    fig.update_xaxes(exponentformat="SI")
    fig.update_yaxes(exponentformat="SI")
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _front(data: dict) -> str:
    """One panel per pair of objectives: every design, the members of the front of all
    objectives, and the pair's own 2-D front as a staircase."""
    objectives = data["objectives"]
    if len(objectives) < 2:
        return "<p class=note>One objective: no front to draw.</p>"
    pairs = data["pairs"]
    fig = make_subplots(rows=1, cols=len(pairs), horizontal_spacing=0.08)
    on_front = {d["number"] for d in data["front"]}
    for col, pair in enumerate(pairs, start=1):
        i, j = pair["x"], pair["y"]
        seen = [p for p in data["points"] if p[1][i] is not None and p[1][j] is not None]
        for label, keep, marker in (
            ("dominated", False, {"size": 5, "opacity": 0.35, "color": "#6366f1"}),
            ("front of all objectives", True, {"size": 9, "color": "#f59e0b",
                                               "line": {"color": "#111827", "width": 1}}),
        ):
            pts = [p for p in seen if (p[0] in on_front) == keep]
            fig.add_scatter(x=[p[1][i] for p in pts], y=[p[1][j] for p in pts], mode="markers",
                            name=f"{label} ({len(pts)})", text=[f"#{p[0]}" for p in pts],
                            marker=marker, legendgroup=label, showlegend=col == 1,
                            row=1, col=col)
        stairs = pair["stairs"]
        shape = "hv" if objectives[i]["direction"] == "minimize" else "vh"
        fig.add_scatter(x=[x for x, _ in stairs], y=[y for _, y in stairs], mode="lines",
                        line={"shape": shape, "color": "#111827", "width": 1.2},
                        name="front of the pair", legendgroup="pair", showlegend=col == 1,
                        row=1, col=col)
        for axis, k in (("x", i), ("y", j)):
            update = fig.update_xaxes if axis == "x" else fig.update_yaxes
            update(title_text=objectives[k]["name"], row=1, col=col,
                   type="log" if log_scale([p[1][k] for p in seen]) else "linear")
    fig.update_layout(title=f"Designs and the Pareto front ({len(data['points'])} designs, "
                            "one point each; log axes where values span 100x)",
                      legend={"orientation": "h", "y": -0.22})
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
        + f"<td class=num>{escape(d['size'])}</td><td>{_strip(d['order'])}</td></tr>"
        for d in data["front"][:TOP_DESIGNS])
    return (f"<table><tr><th>trial</th>{head}<th>d_model × depth</th><th>layers</th></tr>"
            f"{rows}</table>")


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
