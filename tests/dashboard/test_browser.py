"""The pages in a real browser (Debian's Chromium through Playwright): the Pareto plot leads to a
trial page with its architecture strip and code, and new trials appear without a reload.

Set MIXNAS_DASHBOARD_SCREENSHOT=docs/dashboard.png to also write the documentation screenshot.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from mixnas.dashboard.app import create_app
from mixnas.dashboard.demo import build_demo_db
from mixnas.storage import TrialRecord, utcnow

from .conftest import N_TRIALS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]


def serve_in_thread(storage_url: str):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(storage_url), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def live_db(demo_db, tmp_path_factory) -> str:
    """A private copy: the live-update test adds a trial to it."""
    path = tmp_path_factory.mktemp("browser") / "live.db"
    path.write_bytes(Path(demo_db.removeprefix("sqlite:///")).read_bytes())
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def base_url(live_db):
    server, thread, url = serve_in_thread(live_db)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def pristine_url(demo_db):
    """A server over the unchanged demo study: the live-update test adds a trial to `live_db`
    that dominates every design, which would leave the front one architecture-less point."""
    server, thread, url = serve_in_thread(demo_db)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    yield page
    context.close()


def open_study(page, base_url: str, name: str = "demo"):
    page.goto(f"{base_url}/studies/{name}")
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    page.wait_for_selector("#pareto .scatterlayer .trace")


def test_clicking_a_front_point_opens_its_trial_with_strip_and_code(page, base_url):
    open_study(page, base_url)
    front = page.request.get(f"{base_url}/api/studies/demo/pareto?x=loss&y=latency_ms").json()
    # Plotly draws the traces in order: dominated, the front's step line, the front's markers.
    points = page.locator("#pareto .scatterlayer .trace").nth(2).locator("path.point")
    assert points.count() == len(front["trials"])
    box = points.first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url("**/studies/demo/trials/*", timeout=10_000)
    number = int(page.url.rsplit("/", 1)[1])
    assert number in front["trials"]

    page.wait_for_selector("body[data-ready=true]")
    trial = page.request.get(f"{base_url}/api/studies/demo/trials/{number}").json()
    assert page.locator(".strip .layer").count() == len(trial["arch"]["layers"])
    types = page.locator(".strip .mixer.token").evaluate_all("els => els.map(e => e.dataset.type)")
    assert types == [layer["token_mixer"]["type"] for layer in trial["arch"]["layers"]]
    assert page.locator(".badge.front").count() == 1
    assert page.locator("#curve .scatterlayer .trace").count() >= 1
    code = page.wait_for_selector("#code-text", timeout=60_000).inner_text()
    assert "class" in code and "CONFIG = Config(" in code
    href = page.get_attribute("#download", "href")
    download = page.request.get(f"{base_url}{href}")
    assert download.headers["content-disposition"].startswith("attachment;")
    assert page.errors == []


def test_parallel_layers_are_split_boxes(page, base_url):
    rows = page.request.get(f"{base_url}/api/studies/demo/trials").json()["rows"]
    number = next(
        r[0]
        for r in rows
        if "×" in r[3]
        and page.request.get(f"{base_url}/api/studies/demo/trials/{r[0]}").json()["arch"]["layers"][
            0
        ]["token_mixer"]["type"]
        == "parallel"
    )
    page.goto(f"{base_url}/studies/demo/trials/{number}")
    page.wait_for_selector("body[data-ready=true]")
    first = page.locator(".strip .layer").first
    assert first.locator(".mixer.parallel .branches .mixer").count() == 2
    assert page.errors == []


def test_table_sorts_filters_and_updates_live(page, base_url, live_db):
    open_study(page, base_url)
    first_row = page.locator("#trials-table tbody tr").first
    assert first_row.get_attribute("data-number") == str(N_TRIALS - 1)  # newest first
    page.fill("#filter", "transformer")
    assert page.locator("#trials-table tbody tr").count() == 1
    page.fill("#filter", "")
    page.click("#trials-table th[data-key='0']")  # by loss, ascending
    losses = page.locator("#trials-table tbody tr td:nth-child(3)").all_inner_texts()
    numeric = [float(v) for v in losses if v != "—"]
    assert numeric == sorted(numeric) and len(numeric) > 10

    now = utcnow()
    with Session(create_engine(live_db)) as session:
        session.add(
            TrialRecord(
                study_id=1,
                number=N_TRIALS,
                state="complete",
                baseline="late-arrival",
                started_at=now - timedelta(seconds=3),
                finished_at=now,
                values={"loss": 0.1, "latency_ms": 0.01, "mqar_acc": 1.0},
            )
        )
        session.commit()
    # The best loss now: first in the table sorted by loss, and on the front, with no reload.
    page.wait_for_selector(f"#trials-table tbody tr[data-number='{N_TRIALS}']", timeout=10_000)
    assert first_row.get_attribute("data-number") == str(N_TRIALS)
    assert "late-arrival" in page.locator("#pareto").inner_text()
    assert page.errors == []


@pytest.mark.skipif(
    not os.environ.get("MIXNAS_DASHBOARD_SCREENSHOT"), reason="set MIXNAS_DASHBOARD_SCREENSHOT"
)
def test_screenshot_for_the_docs(browser, tmp_path):
    url = build_demo_db(tmp_path / "shot.db", n_trials=400, seed=1, running=1, with_optuna=False)
    server, thread, base_url = serve_in_thread(url)
    page = browser.new_page(viewport={"width": 1440, "height": 1020}, device_scale_factor=1)
    try:
        open_study(page, base_url)
        page.wait_for_timeout(500)  # let plotly finish its transitions
        page.screenshot(path=os.environ["MIXNAS_DASHBOARD_SCREENSHOT"])
    finally:
        page.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_front_view_state_lives_in_the_url_and_points_are_designs(page, pristine_url):
    base_url = pristine_url
    page.goto(f"{base_url}/studies/demo?x=latency_ms&y=mqar_acc&xscale=log&hv=xy")
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    assert page.input_value("#x-axis") == "latency_ms" and page.input_value("#x-scale") == "log"
    layout = page.evaluate("() => document.getElementById('pareto').layout")
    assert layout["xaxis"]["type"] == "log" and layout["yaxis"]["type"] == "linear"
    hv = page.evaluate("() => document.getElementById('hypervolume').layout.yaxis.title.text")
    assert hv.startswith("hypervolume (2-D")
    page.select_option("#y-scale", "log")
    page.select_option("#hv-dims", "all")
    page.wait_for_function("() => location.search.includes('hv=all')")
    assert "yscale=log" in page.url and "x=latency_ms" in page.url
    page.wait_for_function(
        "() => document.getElementById('hypervolume').layout.yaxis.title.text.includes('3-D')"
    )

    front = page.request.get(f"{base_url}/api/studies/demo/pareto?x=latency_ms&y=mqar_acc").json()
    data = page.evaluate("() => document.getElementById('pareto').data")
    markers = next(t for t in data if t["name"].startswith("Pareto front"))
    assert sorted(c[0] for c in markers["customdata"]) == sorted(front["trials"])
    every = [c[0] for t in data if t.get("customdata") for c in t["customdata"]
             if t["name"].startswith(("Pareto", "dominated"))]
    assert len(every) == len(set(every))  # one point per design
    text = markers["customdata"][0][1]
    assert "d_model" in text and "layers:" in text
    assert all(name in text for name in ("loss", "latency_ms", "mqar_acc"))
    repeated = [n for n, r in front["repeats"].items() if r]
    if repeated:  # the count sits beside the point, and its hover names the trial that trained it
        counts = next(t for t in data if t["name"] == "tried more than once")
        assert f"×{len(front['repeats'][repeated[0]]) + 1}" in counts["text"]
    assert page.errors == []


def test_trial_page_lists_decisions_links_reuse_and_splits_curve_axes(page, base_url):
    rows = page.request.get(f"{base_url}/api/studies/demo/trials?state=complete").json()["rows"]
    repeat = next(
        t for t in (page.request.get(f"{base_url}/api/studies/demo/trials/{r[0]}").json()
                    for r in rows if r[0] >= 4)
        if t["duplicate_of"] is not None
    )
    page.goto(f"{base_url}/studies/demo/trials/{repeat['number']}")
    page.wait_for_selector("body[data-ready=true]")
    link = page.locator("#reused a")
    assert link.get_attribute("href") == f"/studies/demo/trials/{repeat['duplicate_of']}"
    names = page.locator("#decisions td:first-child").all_inner_texts()
    assert names == list(repeat["params"]) and "depth" in names
    link.click()
    page.wait_for_url(f"**/trials/{repeat['duplicate_of']}")
    page.wait_for_selector("body[data-ready=true]")
    layout = page.evaluate("() => document.getElementById('curve').layout")
    data = page.evaluate("() => document.getElementById('curve').data")
    assert layout["yaxis"]["title"]["text"] == "loss" and layout["yaxis2"]["side"] == "right"
    by_name = {t["name"]: t.get("yaxis", "y") for t in data}
    assert by_name["mqar_acc"] == "y2" and by_name["val_loss"] == "y"
    assert len(data[0]["x"]) >= 15  # an evaluation every 5% of the budget
    assert [a["text"] for a in layout["annotations"]] == ["rung 0", "rung 1"]
    assert page.errors == []


def test_what_matters_page_shows_importances_composition_and_parallel_view(page, base_url):
    page.goto(f"{base_url}/studies/demo/insight?objective=latency_ms")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    found = page.request.get(f"{base_url}/api/studies/demo/insight").json()
    assert page.input_value("#objective") == "latency_ms"
    bars = page.evaluate("() => document.getElementById('importance').data[0]")
    ranking = found["importance"]["by_objective"]["latency_ms"]
    assert bars["y"][-1] == ranking[0][0]  # the most important decision at the top
    assert f"{found['importance']['n']} complete designs" in page.inner_text("#importance-note")
    share = page.evaluate("() => document.getElementById('by-share').data[0]")
    assert len(share["x"]) == len(found["composition"]["rows"])
    for plot in ("by-family", "by-placement"):
        assert page.evaluate(f"() => document.getElementById('{plot}').data[0].type") == "box"
    dims = page.evaluate("() => document.getElementById('parallel').data[0].dimensions")
    labels = [d["label"] for d in dims]
    assert labels[-3:] == ["loss", "latency_ms", "mqar_acc"]
    assert labels[:-3] == found["composition"]["decisions"]
    # objectives' axes written as everywhere else (0.9, not plotly's SI '900m')
    ticks = page.evaluate(
        "() => [...document.querySelectorAll('#parallel .tick text')].map((t) => t.textContent)"
    )
    assert ticks and not [t for t in ticks if re.fullmatch(r"[0-9.]+[mµn]", t)]
    assert [d.get("tickformat") for d in dims[-3:]] == [".4~r", ".4~r", ".4~r"]
    placement = page.evaluate("() => document.getElementById('by-placement').layout.xaxis")
    assert placement["tickangle"] == 0 and "no<br>attention" in placement["ticktext"]
    page.select_option("#objective", "mqar_acc")
    page.wait_for_function("() => location.search === '?objective=mqar_acc'")
    assert page.errors == []


def test_what_matters_hides_figures_below_the_minimum(browser, tmp_path):
    url = build_demo_db(tmp_path / "few.db", n_trials=12, with_optuna=False)
    server, thread, base = serve_in_thread(url)
    page = browser.new_page()
    try:
        page.goto(f"{base}/studies/demo/insight")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        assert "importances need at least 20" in page.inner_text("#importance")
    finally:
        page.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_compare_page_overlays_fronts_and_lists_shared_designs(browser, tmp_path):
    url = build_demo_db(tmp_path / "pair.db", n_trials=40, with_optuna=False)
    build_demo_db(url, n_trials=30, seed=5, study_name="child", with_optuna=False)
    server, thread, base = serve_in_thread(url)
    page = browser.new_page()
    try:
        page.goto(f"{base}/compare?a=demo&b=child")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        answer = page.request.get(f"{base}/api/compare?a=demo&b=child").json()
        names = page.evaluate("() => document.getElementById('overlay').data.map(t => t.name)")
        assert any(n.startswith("demo front") for n in names)
        assert any(n.startswith("child front") for n in names)
        demo = answer["studies"][0]
        shown = page.evaluate("() => document.getElementById('overlay').data[1].customdata.length")
        assert shown == len(demo["pair_fronts"]["loss,latency_ms"])  # x, y: their 2-D front
        assert "as of" in page.inner_text("#live")
        page.select_option("#front-of", "all")
        page.wait_for_function("() => location.search.includes('front=all')")
        assert page.evaluate("() => document.getElementById('overlay').data[1].mode") == "markers"
        shown = page.evaluate("() => document.getElementById('overlay').data[1].customdata.length")
        assert shown == len(demo["front"])
        page.select_option("#y-axis", "2")
        page.wait_for_function("() => location.search.includes('y=mqar_acc')")
        page.goto(f"{base}/compare?a=demo&b=child&x=mqar_acc&y=loss&front=xy")  # a shared view
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        assert page.input_value("#x-axis") == "2" and page.input_value("#front-of") == "xy"
        shown = page.evaluate("() => document.getElementById('overlay').data[1].customdata.length")
        assert shown == len(demo["pair_fronts"]["loss,mqar_acc"])
        rows = page.locator("#shared-table tbody tr")
        assert rows.count() == len(answer["shared_designs"]) >= 4
        assert rows.first.locator("a").first.get_attribute("href").startswith("/studies/demo/")
    finally:
        page.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_html_report_opens_offline_with_its_plots(browser, demo_db, tmp_path):
    from mixnas.dashboard.report import write_report

    (out,) = write_report(demo_db, "demo", tmp_path / "report.html")
    context = browser.new_context(offline=True)
    page = context.new_page()
    fetched = []
    page.on("request", lambda r: r.url.startswith("file:") or fetched.append(r.url))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(out.as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
        graphs = page.locator(".plotly-graph-div")
        assert graphs.count() >= 3
        assert page.locator(".plotly-graph-div .main-svg").count() >= graphs.count()
        assert page.locator(".strip span").count() > 0
        assert fetched == [] and errors == []
    finally:
        context.close()


@pytest.mark.skipif(
    not os.environ.get("MIXNAS_DASHBOARD_SCREENSHOTS"),
    reason="set MIXNAS_DASHBOARD_SCREENSHOTS=docs to write the study, what-matters and report PNGs",
)
def test_insight_screenshots_for_the_docs(browser, tmp_path):
    from mixnas.dashboard.report import write_report

    folder = Path(os.environ["MIXNAS_DASHBOARD_SCREENSHOTS"])
    url = build_demo_db(tmp_path / "shots.db", n_trials=400, seed=1, running=1, with_optuna=False)
    server, thread, base_url = serve_in_thread(url)
    page = browser.new_page(viewport={"width": 1440, "height": 1020}, device_scale_factor=1)
    try:
        page.goto(f"{base_url}/studies/demo?x=latency_ms&y=mqar_acc&xscale=log")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(folder / "dashboard-study.png"))
        page.goto(f"{base_url}/studies/demo/insight?objective=mqar_acc")
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(folder / "dashboard-insight.png"), full_page=True)
        (report,) = write_report(url, "demo", tmp_path / "report.html")
        page.goto(report.as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(folder / "study-report.png"))
    finally:
        page.close()
        server.should_exit = True
        thread.join(timeout=10)
