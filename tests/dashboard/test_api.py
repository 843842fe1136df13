"""The JSON API: content checked against the database and against Optuna, errors, read-only."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from datetime import datetime, timedelta
from html import escape
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna._hypervolume import compute_hypervolume
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mixnas.dashboard import api as api_module
from mixnas.dashboard.app import create_app
from mixnas.dashboard.demo import OBJECTIVES, VOCAB_SIZE
from mixnas.dashboard.store import CURSOR_OVERLAP
from mixnas.search_space.architecture import Architecture
from mixnas.storage import TrialRecord, utcnow
from mixnas.storage.engine import read_only_engine

from .conftest import N_TRIALS, TestClient

NAMES = [o["name"] for o in OBJECTIVES]


def db_rows(url: str, sql: str) -> list[tuple]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return conn.execute(sql).fetchall()


def test_studies_list_counts_and_best_values(client, demo_db):
    (study,) = client.get("/api/studies").json()["studies"]
    assert study["name"] == "demo" and study["n_trials"] == N_TRIALS
    expected = dict(db_rows(demo_db, "SELECT state, count(*) FROM mixnas_trials GROUP BY state"))
    assert {k: v for k, v in study["counts"].items() if v} == expected
    complete = client.get("/api/studies/demo/trials?state=complete").json()["rows"]
    for i, objective in enumerate(OBJECTIVES):
        pick = max if objective["direction"] == "maximize" else min
        best = pick(complete, key=lambda row: row[5][i])
        assert study["best"][objective["name"]]["value"] == best[5][i]
    assert client.get("/api/studies/demo").json()["config"]["task"]["vocab_size"] == VOCAB_SIZE


def test_trials_table_rows(client, demo_db):
    answer = client.get("/api/studies/demo/trials").json()
    assert answer["fields"] == [
        "number", "state", "baseline", "mix", "seconds", "values", "design", "shape"
    ]
    assert answer["objectives"] == NAMES
    assert [r[0] for r in answer["rows"]] == list(range(N_TRIALS))
    transformer = answer["rows"][0]
    assert transformer[2] == "transformer++" and transformer[3] == "attention×4"
    for number, arch_json in db_rows(demo_db, "SELECT number, arch_json FROM mixnas_trials"):
        counts = Architecture.from_json(arch_json).mixer_counts()
        assert answer["rows"][number][3] == " ".join(f"{k}×{v}" for k, v in sorted(counts.items()))
    failed = client.get("/api/studies/demo/trials?state=failed,infeasible").json()["rows"]
    assert failed and {r[1] for r in failed} <= {"failed", "infeasible"}


def first_of_each_design(trials):
    """Optuna's complete trials, one per design (its first), as mixnas.pareto counts them."""
    seen, first = set(), []
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["arch_hash"] not in seen:
            seen.add(t.user_attrs["arch_hash"])
            first.append(t)
    return first


def test_pareto_fronts_equal_optuna_best_trials(client, demo_db):
    study = optuna.load_study(study_name="demo", storage=demo_db)
    front = client.get("/api/studies/demo/pareto").json()
    complete = first_of_each_design(study.trials)
    assert len(complete) < len([t for t in study.trials if t.values])  # the demo has repeats
    distinct = optuna.create_study(directions=[o["direction"] for o in OBJECTIVES])
    distinct.add_trials(
        [optuna.trial.create_trial(values=t.values, user_attrs={"n": t.number}) for t in complete]
    )
    assert front["trials"] == sorted(t.user_attrs["n"] for t in distinct.best_trials)

    for i, j in itertools.permutations(range(3), 2):
        pair = optuna.create_study(
            directions=[OBJECTIVES[i]["direction"], OBJECTIVES[j]["direction"]]
        )
        pair.add_trials(
            [
                optuna.trial.create_trial(
                    values=[t.values[i], t.values[j]], user_attrs={"n": t.number}
                )
                for t in complete
            ]
        )
        answer = client.get(f"/api/studies/demo/pareto?x={NAMES[i]}&y={NAMES[j]}").json()
        assert answer["objectives"] == [OBJECTIVES[i], OBJECTIVES[j]]
        assert sorted(answer["trials"]) == sorted(t.user_attrs["n"] for t in pair.best_trials)
        by_number = {t.number: t for t in complete}
        assert answer["values"] == [
            [by_number[n].values[i], by_number[n].values[j]] for n in answer["trials"]
        ]


def test_repeated_designs_are_one_point_with_their_repeats(client, demo_db):
    rows = db_rows(
        demo_db,
        "SELECT number, duplicate_of FROM mixnas_trials WHERE state = 'complete' "
        "AND duplicate_of IS NOT NULL",
    )
    assert rows, "the demo study reuses some results"
    by_original: dict[int, list[int]] = {}
    for number, original in rows:
        by_original.setdefault(original, []).append(number)
    front = client.get("/api/studies/demo/pareto").json()
    assert not set(front["trials"]) & {n for n, _ in rows}  # a repeat is never a front point
    for number in front["trials"]:
        assert front["repeats"].get(str(number), []) == sorted(by_original.get(number, []))
    status = client.get("/api/studies/demo").json()
    assert status["front"] == front["trials"]


def test_nd_hypervolume_of_all_objectives_matches_optuna(client):
    answer = client.get("/api/studies/demo/hypervolume").json()
    assert [o["name"] for o in answer["objectives"]] == NAMES
    rows = {
        r[0]: r[5] for r in client.get("/api/studies/demo/trials?state=complete").json()["rows"]
    }
    signs = np.array([-1 if o["direction"] == "maximize" else 1 for o in OBJECTIVES])
    losses = np.array([rows[n] for n in answer["trials"]]) * signs
    ref = np.array(answer["reference"]) * signs
    accuracy = [rows[n][2] for n in answer["trials"]]
    assert 0 <= answer["reference"][2] < min(accuracy)  # never a negative accuracy
    assert all(float(f"{abs(r):.2g}") == abs(r) for r in answer["reference"])  # readable
    assert np.all(ref >= losses.max(axis=0))
    for k in (0, len(losses) // 2, len(losses) - 1):
        expected = compute_hypervolume(losses[: k + 1], ref)
        assert answer["hypervolume"][k] == pytest.approx(expected, rel=1e-9)
    box = np.prod(ref - losses.min(axis=0))
    assert answer["normalized"][-1] == pytest.approx(answer["hypervolume"][-1] / box)
    assert 0 < answer["normalized"][-1] <= 1


def test_hypervolume_history_matches_optuna(client):
    answer = client.get("/api/studies/demo/hypervolume?x=loss&y=mqar_acc").json()
    rows = {
        r[0]: r[5] for r in client.get("/api/studies/demo/trials?state=complete").json()["rows"]
    }
    assert answer["trials"] == sorted(rows)
    ref = np.array([answer["reference"][0], -answer["reference"][1]])  # mqar_acc is maximised
    losses = np.array([[rows[n][0], -rows[n][2]] for n in answer["trials"]])
    assert ref[0] > losses[:, 0].max() and ref[1] >= losses[:, 1].max()
    for k in (0, len(losses) // 2, len(losses) - 1):
        assert answer["hypervolume"][k] == pytest.approx(compute_hypervolume(losses[: k + 1], ref))
    assert np.all(np.diff(answer["hypervolume"]) >= 0)


def test_trial_detail_by_number_and_by_id(client, demo_db):
    by_number = client.get("/api/studies/demo/trials/5").json()
    by_id = client.get(f"/api/trials/{by_number['id']}").json()
    assert by_number == by_id
    ((arch_json, values),) = db_rows(
        demo_db, 'SELECT arch_json, "values" FROM mixnas_trials WHERE number = 5'
    )
    assert by_number["arch"] == Architecture.from_json(arch_json).canonical_dict()
    assert by_number["objectives"] == OBJECTIVES and by_number["vocab_size"] == VOCAB_SIZE
    curve = by_number["curve"]
    steps = db_rows(
        demo_db,
        f"SELECT step FROM mixnas_curve_points WHERE trial_id = {by_number['id']} ORDER BY step",
    )
    assert curve["step"] == [s for (s,) in steps] and len(curve["train_loss"]) == len(steps)
    if by_number["state"] == "complete":
        assert len(curve["metrics"]["val_loss"]) == len(steps)
    front = set(client.get("/api/studies/demo/pareto").json()["trials"])
    for number in (0, 1, 2, 3, 5, min(front)):
        trial = client.get(f"/api/studies/demo/trials/{number}").json()
        assert trial["on_front"] == (number in front)


def test_exported_code_and_download(client, demo_db):
    from mixnas.export import generate_code

    api_module.generated_code.cache_clear()
    (arch_json,) = db_rows(demo_db, "SELECT arch_json FROM mixnas_trials WHERE number = 3")[0]
    response = client.get("/api/studies/demo/trials/3/code")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/x-python")
    assert response.text == generate_code(Architecture.from_json(arch_json), VOCAB_SIZE)
    assert "content-disposition" not in response.headers
    download = client.get("/api/studies/demo/trials/3/code?download=1&vocab_size=1000")
    assert download.headers["content-disposition"] == 'attachment; filename="demo_trial3.py"'
    assert download.text == generate_code(Architecture.from_json(arch_json), 1000)


def test_code_without_the_export_package_is_a_clear_501(client, monkeypatch):
    api_module.generated_code.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "mixnas.export", None)
    response = client.get("/api/studies/demo/trials/4/code")
    assert response.status_code == 501
    assert response.json()["error"].startswith("code export is unavailable")
    api_module.generated_code.cache_clear()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/api/studies/demo/pareto?x=loss&y=bogus", "unknown objective 'bogus'"),
        ("/api/studies/demo/hypervolume?x=nope&y=loss", "unknown objective 'nope'"),
        ("/api/studies/demo/pareto?x=loss", "give both x and y"),
        ("/api/studies/demo/pareto?x=loss&y=loss", "objectives must differ"),
        ("/api/studies/demo/trials?state=done", "unknown state 'done'"),
        ("/api/studies/demo/trials?since=yesterday", "since must be the ISO timestamp"),
        ("/api/studies/demo/trials?page=2", "unknown query parameter 'page'"),
        ("/api/studies?x=1", "unknown query parameter 'x'"),
        ("/api/studies/demo/trials/3/code?vocab_size=-5", "vocab_size must be a positive"),
        ("/api/studies/demo/trials/3/code?download=yes", "download must be 0 or 1"),
    ],
)
def test_bad_parameters_are_400_naming_the_culprit(client, url, message):
    response = client.get(url)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/studies/nope",
        "/api/studies/nope/trials",
        "/api/studies/nope/pareto",
        "/api/studies/demo/trials/9999",
        "/api/studies/demo/trials/abc",
        "/api/trials/999999",
        "/api/trials/999999/code",
        "/api/unknown",
    ],
)
def test_unknown_things_are_404_json(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


def test_pages_and_assets(client):
    page = client.get("/studies/demo")
    assert page.status_code == 200 and "/static/study.js" in page.text
    assert client.get("/studies/demo/trials/3").status_code == 200
    assert client.get("/studies/nope").status_code == 404
    # a shared view: axes, colour, scales and hypervolume dimensions live in the URL
    shared = client.get("/studies/demo?x=latency_ms&y=mqar_acc&xscale=log&yscale=linear&hv=xy")
    assert shared.status_code == 200
    assert client.get("/studies/demo?x=latency_ms").status_code == 200
    for bad, message in [("x=bogus", "unknown objective 'bogus'"),
                         ("xscale=cubic", "xscale must be one of linear, log"),
                         ("zoom=2", "unknown query parameter 'zoom'")]:
        answer = client.get(f"/studies/demo?{bad}")
        assert answer.status_code == 400 and escape(message) in answer.text
    assert client.get("/studies/demo/trials/9999").status_code == 404
    assert "no study &#x27;nope&#x27;" in client.get("/studies/nope").text  # escaped
    plotly_js = client.get("/vendor/plotly.min.js")
    assert plotly_js.headers["content-encoding"] == "gzip"
    assert plotly_js.text.startswith("/**") and "plotly.js" in plotly_js.text[:500]
    headers = client.get("/").headers
    assert headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "unsafe-eval" not in headers["content-security-policy"]
    insight = client.get("/studies/demo/insight").headers.get_list("content-security-policy")
    assert len(insight) == 1 and "script-src 'self' 'unsafe-eval'" in insight[0]  # WebGL only


def test_read_only(client, demo_db):
    path = Path(demo_db.removeprefix("sqlite:///"))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/api/studies/demo").status_code == 405
        assert getattr(client, method)("/studies/demo").status_code == 405
    client.get("/api/studies/demo/trials")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    with (
        read_only_engine(demo_db).connect() as conn,
        pytest.raises(OperationalError, match="readonly"),
    ):
        conn.execute(text("DELETE FROM mixnas_trials"))


def test_new_trials_reach_a_running_app_through_the_cursor(writable_db):
    client = TestClient(create_app(writable_db))
    first = client.get("/api/studies/demo/trials").json()
    cursor = datetime.fromisoformat(first["cursor"])
    recent = [  # what `since` must answer: trials started or finished within the overlap
        number
        for number, started, finished in db_rows(
            writable_db, "SELECT number, started_at, finished_at FROM mixnas_trials"
        )
        if max(datetime.fromisoformat(t) for t in (started, finished) if t)
        >= cursor - CURSOR_OVERLAP
    ]
    unchanged = client.get(f"/api/studies/demo/trials?since={first['cursor']}").json()
    assert [row[0] for row in unchanged["rows"]] == sorted(recent)
    assert 0 < len(recent) < N_TRIALS and unchanged["cursor"] == first["cursor"]
    now = utcnow()
    with Session(create_engine(writable_db)) as session:
        session.add(
            TrialRecord(
                study_id=1,
                number=N_TRIALS,
                state="complete",
                started_at=now - timedelta(seconds=5),
                finished_at=now,
                values={"loss": 0.5, "latency_ms": 0.01, "mqar_acc": 1.0},
            )
        )
        running = session.query(TrialRecord).filter_by(study_id=1, state="running").first()
        running.state, running.finished_at = "failed", now
        failed = running.number
        session.commit()
    changed = client.get(f"/api/studies/demo/trials?since={first['cursor']}").json()
    numbers = [row[0] for row in changed["rows"]]
    assert N_TRIALS in numbers and failed in numbers
    assert datetime.fromisoformat(changed["cursor"]) == now
    study = client.get("/api/studies/demo").json()
    assert study["n_trials"] == N_TRIALS + 1 and study["best"]["loss"]["number"] == N_TRIALS
    assert client.get("/api/studies/demo/pareto?x=loss&y=latency_ms").json()["trials"] == [N_TRIALS]


def test_storage_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no database file"):
        create_app(f"sqlite:///{tmp_path / 'missing.db'}")
    optuna_only = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=optuna_only, study_name="plain")
    with pytest.raises(ValueError, match="no mixnas_studies table"):
        create_app(optuna_only)


def test_a_loopback_server_refuses_foreign_host_names(demo_db):
    guarded = create_app(demo_db, allowed_hosts=["127.0.0.1", "localhost"])
    assert TestClient(guarded, base_url="http://127.0.0.1").get("/api/studies").status_code == 200
    assert (
        TestClient(guarded, base_url="http://evil.example").get("/api/studies").status_code == 400
    )
