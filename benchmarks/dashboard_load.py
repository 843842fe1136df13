"""How long the dashboard takes to load a study page of a 5,000-trial study, and how long the
"what matters" importances (PED-ANOVA over every complete design) take to compute and, cached,
to serve again.

A "load" is what a browser does on /studies/NAME: the HTML, its static files (CSS, JS, plotly.js),
the study summary, then the trials table, the Pareto front and the hypervolume history. Requests
go through the ASGI app in-process (httpx via Starlette's TestClient, gzip accepted, one at a time,
so the browser's parallel requests would finish sooner). The first load of a fresh app is "cold"
(architectures not yet parsed); later loads are "warm". On a shared machine wall time follows the
load average (recorded); CPU seconds (client and server threads together) do not.

    python -m benchmarks.dashboard_load [--trials 5000] [--repeats 5] [--db PATH]

Writes benchmarks/results/dashboard_load.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from starlette.exceptions import StarletteDeprecationWarning

from benchmarks.common import RESULTS as RESULTS_DIR
from benchmarks.common import environment, write_json
from mixnas.dashboard.app import create_app
from mixnas.dashboard.demo import build_demo_db

with warnings.catch_warnings():  # Starlette 1.x prefers the httpx2 fork; httpx still works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

BUDGET_S = 1.0
RESULTS = RESULTS_DIR / "dashboard_load.json"


def page_requests(study: str) -> list[str]:
    api = f"/api/studies/{study}"
    axes = "x=loss&y=latency_ms"
    return [
        f"/studies/{study}",
        "/static/app.css",
        "/static/common.js",
        "/static/study.js",
        "/vendor/plotly.min.js",
        api,
        f"{api}/trials",
        f"{api}/pareto?{axes}",
        f"{api}/hypervolume",  # the page's default: all objectives
    ]


def importance_timing(client: TestClient, study: str) -> dict:
    """The "what matters" answer twice: computed (PED-ANOVA), then from the cache."""
    timings = []
    for _ in range(2):
        t0 = time.perf_counter()
        answer = client.get(f"/api/studies/{study}/insight").json()
        timings.append((round(time.perf_counter() - t0, 4), answer["cached"]))
    found = answer["importance"]
    return {"designs": found["n"], "evaluator": found["evaluator"],
            "compute_seconds": found["seconds"], "first_request_seconds": timings[0][0],
            "first_cached": timings[0][1], "cached_request_seconds": timings[1][0],
            "second_cached": timings[1][1]}


def load(client: TestClient, urls: list[str]) -> dict:
    """Fetch every URL in order; per-URL seconds and bytes on the wire (gzip)."""
    timings = {}
    cpu = time.process_time()
    start = time.perf_counter()
    for url in urls:
        t0 = time.perf_counter()
        response = client.get(url)
        response.raise_for_status()
        timings[url] = {
            "seconds": round(time.perf_counter() - t0, 4),
            "wire_bytes": response.num_bytes_downloaded,
        }
    return {
        "total_seconds": round(time.perf_counter() - start, 4),
        "cpu_seconds": round(time.process_time() - cpu, 4),  # client and server threads
        "requests": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--db", help="reuse (or create) this SQLite file instead of a temp one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db or Path(tmp) / "dashboard_bench.db")
        t0 = time.perf_counter()
        reused = path.exists()
        url = f"sqlite:///{path.resolve()}" if reused else build_demo_db(path, args.trials)
        build_s = None if reused else round(time.perf_counter() - t0, 1)
        urls = page_requests("demo")
        with TestClient(create_app(url)) as client:
            cold = load(client, urls)
            warm = [load(client, urls) for _ in range(args.repeats)]
            n_trials = client.get("/api/studies/demo").json()["n_trials"]
            importance = importance_timing(client, "demo")
        db_bytes = path.stat().st_size

    warm_totals = [w["total_seconds"] for w in warm]
    api_only = [
        sum(v["seconds"] for u, v in w["requests"].items() if u.startswith("/api/")) for w in warm
    ]
    result = {
        "benchmark": "dashboard study page load",
        **environment("benchmarks.dashboard_load"),
        "n_trials": n_trials,
        "db_bytes": db_bytes,
        "db_build_seconds": build_s,
        "budget_seconds": BUDGET_S,
        "cold_seconds": cold["total_seconds"],
        "cold_cpu_seconds": cold["cpu_seconds"],
        "warm_median_seconds": round(statistics.median(warm_totals), 4),
        "warm_max_seconds": max(warm_totals),
        "warm_cpu_median_seconds": round(statistics.median(w["cpu_seconds"] for w in warm), 4),
        "warm_api_median_seconds": round(statistics.median(api_only), 4),
        "within_budget": cold["total_seconds"] < BUDGET_S and max(warm_totals) < BUDGET_S,
        "importance": importance,
        "cold": cold,
        "warm_last": warm[-1],
    }
    write_json(RESULTS, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("cold", "warm_last")}, indent=2))
    for url, timing in cold["requests"].items():
        print(f"cold {timing['seconds'] * 1000:7.1f} ms {timing['wire_bytes']:>9,} B  {url}")


if __name__ == "__main__":
    main()
