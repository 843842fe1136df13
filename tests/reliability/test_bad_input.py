"""Every bad input through the real CLI: one line on stderr naming the file:line or the field,
exit code 2, no traceback, and nothing written. (Loader-level cases are in
tests/orchestrator/test_config.py; this table goes through `mixnas.cli.main` end to end.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from mixnas.cli import main
from mixnas.storage import DriverRecord, StudyRecord, TrialRecord

from .helpers import SPACE, free_port

STUDY = """\
name: bad
search_space: {space}
task: {{name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}}
budget: {{steps: 30}}
objectives:
  - {{name: accuracy, direction: maximize}}
  - {{name: non_embedding_params, direction: minimize}}
n_trials: 4
workers: 1
baselines: []
"""


def _bad_grammar(tmp: Path) -> Path:
    text = SPACE.read_text().replace("primitive: short_conv", "primitive: short_convv")
    path = tmp / "space.yaml"
    path.write_text(text)
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# id -> (edit of the study text, extra CLI args, expected message; {study}/{space} filled in)
START_CASES = {
    "malformed yaml": (("task: {name: mqar", "task: [oops"), (), "{study}:3: malformed YAML"),
    "unknown key": (("workers: 1", "wrokers: 1"), (),
                    "{study}:9: unknown key 'wrokers' in the study file (did you mean 'workers'?)"),
    "wrong type": (("n_trials: 4", "n_trials: four"), (),
                   "{study}:8: 'n_trials' must be int, got a string"),
    "zero budget": (("steps: 30", "steps: 0"), (), "{study}:4: 'steps' must be positive"),
    "negative budget": (("steps: 30", "steps: -30"), (), "{study}:4: 'steps' must be positive"),
    "negative workers": (("workers: 1", "workers: -2"), (), "{study}:9: 'workers' must be positive"),
    "unknown task": (("name: mqar", "name: mqarr"), (), "{study}:3: task: "),
    "unknown objective": (("name: accuracy,", "name: acuracy,"), (),
                          "{study}:5: unknown objective metric 'acuracy' (did you mean 'accuracy'?)"),
    "unknown primitive": ((None, None), (),
                          "{space}:{space_line}: unknown primitive 'short_convv'"),
    "unreachable storage": ((None, None),
                            ("--storage", "postgresql+psycopg://postgres@127.0.0.1:1/none"),
                            "cannot reach storage 'postgresql+psycopg://postgres@127.0.0.1:1/none'"),
    "storage directory missing": ((None, None), ("--storage", "sqlite:///{tmp}/no/such/x.db"),
                                  "does not exist"),
}


def run_cli(capfd, args: list[str]) -> str:
    code = main(args)
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("mixnas: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("case", list(START_CASES))
def test_bad_study_start_is_one_line_and_writes_nothing(tmp_path, capfd, case):
    (old, new), extra, expected = START_CASES[case]
    space = _bad_grammar(tmp_path) if case == "unknown primitive" else SPACE
    text = STUDY.format(space=space)
    if old is not None:
        assert old in text
        text = text.replace(old, new, 1)
    study = tmp_path / "study.yaml"
    study.write_text(text)
    db = tmp_path / "new.db"
    storage = [a.replace("{tmp}", str(tmp_path)) for a in extra] or ["--storage", f"sqlite:///{db}"]
    line = run_cli(capfd, ["study", "start", str(study), *storage, "--quiet"])
    space_line = _line_of(space, "short_convv") if case == "unknown primitive" else 0
    assert expected.format(study=study, space=space, space_line=space_line) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["study.yaml"] + (["space.yaml"] if case == "unknown primitive" else [])
    ), "a failed start must not create a database"


@pytest.fixture
def existing_db(tmp_path):
    """A database that already holds one study (created without running it)."""
    from mixnas.orchestrator.config import load_study_config
    from mixnas.orchestrator.study import create_study

    study = tmp_path / "other.yaml"
    study.write_text(STUDY.format(space=SPACE).replace("name: bad", "name: other"))
    config = load_study_config(study)
    config.storage = f"sqlite:///{tmp_path}/existing.db"
    create_study(config)
    return config.storage


def _snapshot(url: str):
    import optuna

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        mine = sorted(conn.execute(sa.select(StudyRecord.name)).scalars())
        trials = conn.execute(sa.select(sa.func.count()).select_from(TrialRecord)).scalar()
        drivers = conn.execute(sa.select(sa.func.count()).select_from(DriverRecord)).scalar()
    engine.dispose()
    theirs = sorted(s.study_name for s in optuna.get_all_study_summaries(url))
    return mine, theirs, trials, drivers


def test_bad_start_into_an_existing_database_adds_no_study(tmp_path, capfd, existing_db):
    before = _snapshot(existing_db)
    study = tmp_path / "bad.yaml"
    study.write_text(STUDY.format(space=SPACE).replace("name: accuracy,", "name: acuracy,"))
    run_cli(capfd, ["study", "start", str(study), "--storage", existing_db, "--quiet"])
    assert _snapshot(existing_db) == before == (["other"], ["other"], 0, 0)


@pytest.mark.parametrize("command", ["resume", "status", "pareto"])
def test_unknown_study_names_it_and_creates_no_database(tmp_path, capfd, command):
    db = tmp_path / "absent.db"
    line = run_cli(capfd, ["study", command, "nope", "--storage", f"sqlite:///{db}"])
    assert "no study named 'nope'" in line
    assert not db.exists()


def test_unknown_study_in_an_existing_database_lists_the_known_ones(capfd, existing_db):
    before = _snapshot(existing_db)
    line = run_cli(capfd, ["study", "resume", "nope", "--storage", existing_db])
    assert "no study named 'nope'" in line and "studies there: other" in line
    assert _snapshot(existing_db) == before


def test_unreachable_ray_cluster_fails_fast_and_touches_nothing(capfd, existing_db):
    before = _snapshot(existing_db)
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    line = run_cli(capfd, ["study", "resume", "other", "--storage", existing_db,
                           "--ray-address", address, "--quiet"])
    assert f"cannot reach the Ray cluster at '{address}'" in line
    assert _snapshot(existing_db) == before


def test_export_onto_an_existing_export_is_refused(tmp_path, capfd):
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.py").write_text("# mine\n")
    line = run_cli(capfd, ["export", "--arch", "transformer", "-o", str(target)])
    assert f"{target / 'model.py'} already exists; pass --force" in line
    assert [p.name for p in target.iterdir()] == ["model.py"]
    assert (target / "model.py").read_text() == "# mine\n"
