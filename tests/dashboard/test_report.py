"""`mixnas study report`: one self-contained HTML file, or Markdown with PNG figures, with the
front the dashboard counts; user errors are one line, exit 2, nothing written."""

from __future__ import annotations

import re
import sys

import pytest

from mixnas.cli import main
from mixnas.dashboard.app import create_app
from mixnas.dashboard.report import collect, log_scale

from .conftest import TestClient
from .test_api import db_rows


def test_html_report_is_self_contained_with_the_dashboards_front(demo_db, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["study", "report", "demo", "--storage", demo_db, "-o", str(out)]) == 0
    text = out.read_text()
    assert not re.search(r"<script[^>]+src=", text) and "<link" not in text  # nothing fetched
    assert "plotly.js" in text[:3000] or "Plotly" in text
    with TestClient(create_app(demo_db)) as client:
        front = client.get("/api/studies/demo").json()["front"]
    assert f"{len(front)} designs on the Pareto front" in text
    for number in front[:3]:
        assert f"#{number}" in text
    assert text.count('class="plotly-graph-div"') >= 3  # front, importances, composition
    assert "Study settings" in text and "vocab_size" in text
    assert "class=strip" in text  # the top designs' layer strips
    assert "d_model × depth" in text


def test_report_panels_draw_each_pairs_own_front(demo_db):
    data = collect(demo_db, "demo")
    assert [(p["x"], p["y"]) for p in data["pairs"]] == [(0, 1), (0, 2), (1, 2)]
    designs = dict(data["points"])
    hashes = dict(db_rows(demo_db, "SELECT number, arch_hash FROM mixnas_trials"))
    assert len({hashes[n] for n in designs}) == len(designs)  # one point per design
    for pair in data["pairs"]:
        i, j = pair["x"], pair["y"]
        losses = {n: (v[i], -v[j] if j == 2 else v[j]) for n, v in designs.items()}  # acc: max
        brute = sorted(n for n, p in losses.items() if not any(
            q[0] <= p[0] and q[1] <= p[1] and q != p for q in losses.values()))
        assert pair["front"] == brute
        assert pair["stairs"] == sorted((designs[n][i], designs[n][j]) for n in brute)
    assert log_scale([400, 9_000, 1_048_576]) and not log_scale([0.2, 0.9])
    assert not log_scale([0, 5, 5_000])  # zero cannot sit on a log axis


def test_markdown_report_writes_tables_and_png_figures(demo_db, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.md"
    assert main(["study", "report", "demo", "--storage", demo_db, "-o", str(out)]) == 0
    text = out.read_text()
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["report_composition.png", "report_front.png", "report_importance.png"]
    for name in pngs:
        assert f"]({name})" in text and (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "| trial | loss | latency_ms | mqar_acc | d_model × depth | layers |" in text
    assert re.search(r"\| \d+ × \d+ \| ", text)
    assert "## Decision importance (PED-ANOVA)" in text and "| d_model |" in text


def test_markdown_without_matplotlib_is_one_line_and_writes_nothing(
    demo_db, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "report.md"
    assert main(["study", "report", "demo", "--storage", demo_db, "-o", str(out),
                 "--format", "md"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mixnas: error: --format md needs matplotlib: pip install 'mixnas[bench]'"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no study named 'nope'"),
        (["demo", "-o", "/no/such/dir/r.html"], "folder /no/such/dir does not exist"),
    ],
)
def test_report_user_errors(demo_db, tmp_path, capsys, args, message):
    argv = ["study", "report", *args, "--storage", demo_db]
    if "-o" not in args:
        argv += ["-o", str(tmp_path / "r.html")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
