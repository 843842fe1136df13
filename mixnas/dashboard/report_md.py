"""The Markdown study report: tables a pull request or paper draft can take as they are, with PNG
figures (matplotlib, headless) written beside the .md file."""

from __future__ import annotations

from pathlib import Path

from mixnas.dashboard.report import TOP_DESIGNS, fmt, log_scale, settings_text


def _plots(data: dict, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    objectives = data["objectives"]
    if len(objectives) >= 2:
        written.append(_front_png(plt, data, stem.with_name(f"{stem.stem}_front.png")))
    found = data["insight"]["importance"]
    if not found["hidden"]:
        ranked = list(found["by_objective"].items())
        fig, axes = plt.subplots(1, len(ranked), figsize=(4 * len(ranked), 3.5), dpi=120)
        for ax, (name, ranking) in zip(list(getattr(axes, "flat", [axes])), ranked):
            top = ranking[:8][::-1]
            ax.barh([p for p, _ in top], [v for _, v in top])
            ax.set_title(name)
        written.append(_save(fig, stem.with_name(f"{stem.stem}_importance.png")))
    comp = data["insight"]["composition"]
    if not comp["hidden"]:
        fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 3.5), dpi=120)
        for k, (ax, o) in enumerate(zip(list(getattr(axes, "flat", [axes])), objectives)):
            rows = [r for r in comp["rows"] if r[6][k] is not None]
            ax.scatter([r[1] for r in rows], [r[6][k] for r in rows], s=10, alpha=0.5)
            ax.set_xlabel("share of attention layers")
            ax.set_ylabel(o["name"])
        written.append(_save(fig, stem.with_name(f"{stem.stem}_composition.png")))
    return written


def _front_png(plt, data: dict, path: Path) -> Path:
    """One panel per pair of objectives, as the HTML report: designs, the front of all
    objectives, the pair's own front as a staircase."""
    objectives, pairs = data["objectives"], data["pairs"]
    on_front = {d["number"] for d in data["front"]}
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8), dpi=120,
                             squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        i, j = pair["x"], pair["y"]
        seen = [p for p in data["points"] if p[1][i] is not None and p[1][j] is not None]
        for keep, style in ((False, {"alpha": 0.35, "s": 10}),
                            (True, {"s": 30, "c": "#f59e0b", "edgecolors": "k"})):
            sel = [p for p in seen if (p[0] in on_front) == keep]
            ax.scatter([p[1][i] for p in sel], [p[1][j] for p in sel], **style,
                       label=f"{'front of all objectives' if keep else 'dominated'} ({len(sel)})")
        stairs = pair["stairs"]
        where = "post" if objectives[i]["direction"] == "minimize" else "pre"
        ax.step([x for x, _ in stairs], [y for _, y in stairs], where=where, color="k",
                linewidth=1, label="front of the pair")
        for k, set_scale in ((i, ax.set_xscale), (j, ax.set_yscale)):
            set_scale("log" if log_scale([p[1][k] for p in seen]) else "linear")
        ax.set_xlabel(objectives[i]["name"])
        ax.set_ylabel(objectives[j]["name"])
    axes[0][0].legend(loc="best", fontsize=7)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_md(data: dict, out: Path) -> list[Path]:
    """Write the Markdown report to `out` and its figures beside it; the files written."""
    figures = _plots(data, out)
    study = data["study"]
    names = [o["name"] for o in data["objectives"]]
    parts = [f"# Study {study['name']}", "",
             f"{study['n_trials']} trials; {len(data['front'])} designs on the Pareto front of "
             + ", ".join(f"{o['name']} ({o['direction'][:3]})" for o in data["objectives"]) + ".",
             ""]
    parts += [f"![{p.stem}]({p.name})" for p in figures] + [""]
    parts += ["## Top designs", "",
              _table(["trial", *names, "d_model × depth", "layers"], [
                  [f"#{d['number']}" + (f" ({d['baseline']})" if d["baseline"] else "")
                   + (f" ×{d['repeats']}" if d["repeats"] > 1 else ""),
                   *[fmt(v) for v in d["values"]], d["size"], " › ".join(d["order"])]
                  for d in data["front"][:TOP_DESIGNS]]), ""]
    found = data["insight"]["importance"]
    parts += ["## Decision importance (PED-ANOVA)", ""]
    if found["hidden"]:
        parts += [f"Hidden: {found['hidden']}.", ""]
    else:
        decisions = [p for p, _ in (found["front"] or next(iter(found["by_objective"].values())))]
        table = {n: dict(r) for n, r in found["by_objective"].items()}
        parts += [f"On {found['n']} complete designs (a repeated design counted once).", "",
                  _table(["decision", *names], [[d, *[fmt(table[n].get(d)) for n in names]]
                                                for d in decisions[:12]]), ""]
    parts += ["## Study settings", "", "```json", settings_text(study), "```", ""]
    out.write_text("\n".join(parts), encoding="utf-8")
    return [out, *figures]
