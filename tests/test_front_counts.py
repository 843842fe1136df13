"""One Pareto front everywhere: the CLI, the JSON API and the study page's card count the same trials
on a quickstart-space study that holds repeated designs (issue 15: the CLI said 5, the page 7).

The trials are written straight to storage with made-up scores (no training), so the test is quick;
the repeats are what once split the counts: a design trained twice with identical scores, and a
reused result (a later trial of an earlier design, with its values).
"""

from __future__ import annotations

import json
import random
import warnings
from datetime import datetime, timedelta
from pathlib import Path

from mixnas import pareto
from mixnas.cli import main
from mixnas.dashboard.app import create_app
from mixnas.orchestrator.config import load_study_config
from mixnas.orchestrator.study import create_study
from mixnas.search_space.grammar import Grammar

with warnings.catch_warnings():  # Starlette 1.x prefers the httpx2 fork; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parents[1]
STUDY = """\
name: fronts
search_space: {space}
task: {{name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}}
budget: {{steps: 40}}
objectives:
  - {{name: accuracy, direction: maximize}}
  - {{name: non_embedding_params, direction: minimize}}
profile: {{latency: false}}
n_trials: 40
baselines: []
"""
START = datetime(2026, 1, 1)


def trial(number: int, arch, values: dict | None, state: str = "complete") -> dict:
    return {"number": number, "state": state, "arch_json": arch.canonical_json(),
            "arch_hash": arch.hash, "baseline": None, "values": values,
            "metrics": values and {"accuracy": values["accuracy"]},
            "profile": values and {"non_embedding_params": values["non_embedding_params"]},
            "started_at": START + timedelta(minutes=number),
            "finished_at": START + timedelta(minutes=number + 1)}


def test_front_counts_agree_across_cli_api_and_page(tmp_path, capsys):
    path = tmp_path / "fronts.yaml"
    path.write_text(STUDY.format(space=REPO / "studies/spaces/quickstart.yaml"))
    config = load_study_config(path)
    config.storage = f"sqlite:///{tmp_path}/fronts.db"
    handle = create_study(config)
    rng = random.Random(0)
    archs = Grammar.load(config.search_space).sample_many(12, seed=0)
    rows = [trial(i, arch, {"accuracy": round(rng.random(), 2),
                            "non_embedding_params": rng.randrange(1000, 9000, 500)})
            for i, arch in enumerate(archs)]
    rows.append(trial(len(rows), archs[3], None, state="failed"))
    directions = [o["direction"] for o in handle.objectives()]
    scored = pareto.scored(((r["number"], r["arch_hash"], r["values"]) for r in rows
                            if r["state"] == "complete"), handle.objective_names())
    designs_on_front = pareto.front(scored, directions)
    first = designs_on_front[0].number
    # the front's first design trained again with the same scores, and a reuse of every design
    rows.append(trial(len(rows), archs[first], rows[first]["values"]))
    rows += [trial(len(rows) + i, a, r["values"]) for i, (a, r) in enumerate(zip(archs, rows))]
    handle.storage.add_trials(handle.record_id, rows, [[] for _ in rows])

    assert main(["study", "pareto", "fronts", "--storage", config.storage, "--json"]) == 0
    cli = [entry["trial"] for entry in json.loads(capsys.readouterr().out)]
    live = [t.number for t in handle.storage.get_pareto_trials(handle.record_id,
                                                                handle.objectives())]
    with TestClient(create_app(config.storage)) as client:
        api = client.get("/api/studies/fronts/pareto").json()["trials"]
        card = client.get("/api/studies/fronts").json()["front"]  # the page's "Pareto front"
    assert cli == live == api == card == [p.number for p in designs_on_front]
    assert len(rows) > 2 * len(archs)  # the repeats are there, and counted once
