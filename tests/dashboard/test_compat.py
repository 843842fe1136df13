"""The dashboard stays light (no torch), and the same database also serves optuna-dashboard."""

from __future__ import annotations

import subprocess
import sys

import httpx
import optuna_dashboard

from mixnas.dashboard.demo import OBJECTIVES

CHECK_NO_TORCH = """
import sys, warnings
warnings.simplefilter("ignore")
from starlette.testclient import TestClient
from mixnas.dashboard.app import create_app
client = TestClient(create_app(sys.argv[1]))
for url in ["/", "/studies/demo", "/api/studies", "/api/studies/demo", "/api/studies/demo/trials",
            "/api/studies/demo/pareto", "/api/studies/demo/hypervolume", "/api/trials/3"]:
    assert client.get(url).status_code == 200, url
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "triton", "ray")))
"""


def test_serving_a_study_never_imports_torch(demo_db):
    result = subprocess.run(
        [sys.executable, "-c", CHECK_NO_TORCH, demo_db], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_optuna_dashboard_reads_the_same_database(demo_db, client):
    wsgi = optuna_dashboard.wsgi(demo_db)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://test") as od:
        (summary,) = od.get("/api/studies").json()["study_summaries"]
        assert summary["study_name"] == "demo"
        assert summary["directions"] == [o["direction"] for o in OBJECTIVES]
        detail = od.get(f"/api/studies/{summary['study_id']}").json()
    assert detail["objective_names"] == [o["name"] for o in OBJECTIVES]  # set_metric_names
    front = client.get("/api/studies/demo/pareto").json()
    # Optuna lists a front design's repeats too (same values); mixnas draws them as one point
    repeats = [n for numbers in front["repeats"].values() for n in numbers]
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(front["trials"] + repeats)
