"""Study files: valid ones load into typed configs; every mistake names FILE:LINE and the key."""

from pathlib import Path

import pytest

from mixnas.errors import ConfigError
from mixnas.orchestrator.config import load_study_config

GOOD = """\
name: demo
search_space: space.yaml
task:
  name: mqar
  seq_len: 64
budget:
  steps: 100
objectives:
  - {name: accuracy, direction: maximize}
  - {name: non_embedding_params, direction: minimize}
n_trials: 8
workers: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "space.yaml").write_text("placeholder: true\n")
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_good_file_loads_with_defaults(tmp_path):
    config = load_study_config(write(tmp_path, GOOD), validate_names=False)
    assert config.name == "demo"
    assert config.storage == "sqlite:///mixnas.db"
    assert config.sampler == "tpe"
    assert config.budget == {"steps": 100}  # no eval_every: the trainer evaluates every 5%
    assert [(o.name, o.direction) for o in config.objectives] == [
        ("accuracy", "maximize"),
        ("non_embedding_params", "minimize"),
    ]
    assert Path(config.search_space) == (tmp_path / "space.yaml").resolve()
    assert config.task == {"name": "mqar", "seq_len": 64}


def test_config_round_trips_through_the_database_form(tmp_path):
    from mixnas.orchestrator.config import StudyConfig

    config = load_study_config(write(tmp_path, GOOD), validate_names=False)
    assert StudyConfig.from_dict(config.to_dict()) == config
    packed = GOOD.replace("workers: 2\n", "resources: {gpus_per_trial: 0.25, cpus_per_trial: 2}\n")
    config = load_study_config(write(tmp_path, packed), validate_names=False)
    assert config.to_dict()["resources"] == {"gpus_per_trial": 0.25, "cpus_per_trial": 2.0}
    assert StudyConfig.from_dict(config.to_dict()) == config
    stored_before_resources = {k: v for k, v in config.to_dict().items() if k != "resources"}
    assert StudyConfig.from_dict(stored_before_resources).resources.gpus_per_trial is None


def test_resources_default_to_what_the_cluster_allows(tmp_path):
    config = load_study_config(write(tmp_path, GOOD.replace("workers: 2\n", "")),
                               validate_names=False)
    assert config.workers is None  # sized by the cluster when the driver joins it
    assert (config.resources.gpus_per_trial, config.resources.cpus_per_trial) == (None, 1.0)
    whole = GOOD + "resources: {gpus_per_trial: 2}\n"
    assert load_study_config(write(tmp_path, whole), validate_names=False
                             ).resources.gpus_per_trial == 2.0



def test_command_line_overrides_are_bounded_and_applied(tmp_path):
    from mixnas.commands.study import check_overrides

    config = load_study_config(write(tmp_path, GOOD), validate_names=False)
    check_overrides(config, workers=4, n_trials=None, gpus_per_trial=0.25, cpus_per_trial=2.0)
    assert (config.workers, config.n_trials) == (4, 8)
    assert (config.resources.gpus_per_trial, config.resources.cpus_per_trial) == (0.25, 2.0)
    with pytest.raises(ConfigError, match="--workers: must be at most 1,024"):
        check_overrides(None, workers=10**6)
    with pytest.raises(ConfigError, match="--gpus-per-trial: 'gpus_per_trial' must be at most 1"):
        check_overrides(config, gpus_per_trial=1.5)
    assert config.resources.gpus_per_trial == 0.25  # a refused override changes nothing

# (mutation of GOOD, expected line, expected text in the message)
BAD_CASES = [
    ("name: demo\nsearch_space: space.yaml\ntask: [oops\n", 4, "malformed YAML"),
    (GOOD.replace("workers: 2", "wrokers: 2"), 12, "unknown key 'wrokers' in the study file (did you mean 'workers'?)"),
    (GOOD.replace("  steps: 100", "  steps: 0"), 7, "'steps' must be positive"),
    (GOOD.replace("  steps: 100", "  steps: -5"), 7, "'steps' must be positive"),
    (GOOD.replace("  steps: 100", "  stpes: 100"), 7, "unknown key 'stpes' in 'budget'"),
    (GOOD.replace("n_trials: 8", "n_trials: many"), 11, "'n_trials' must be int, got a string"),
    (GOOD.replace("direction: maximize", "direction: up"), 9, "direction must be 'minimize' or 'maximize'"),
    (GOOD.replace("search_space: space.yaml", "search_space: nowhere.yaml"), 2, "search_space file not found"),
    (GOOD + "sampler: cmaes\n", 13, "unknown sampler 'cmaes'"),
    (GOOD.replace("name: demo\n", ""), 1, "missing required key 'name'"),
    (GOOD + "workers: 3\n", 13, "duplicate key 'workers'"),
    (GOOD + "pruning: {rungs: [0.5, 1.5]}\n", 13, "'rungs' must be fractions"),
    (GOOD.replace("  - {name: accuracy, direction: maximize}\n", "  - {name: accuracy, direction: maximize, weight: 2}\n"), 9, "unknown key 'weight' in an objective"),
    (GOOD + "resources:\n  gpus_per_trial: 0.25\n  gpu_per_trial: 1\n", 15, "unknown key 'gpu_per_trial' in 'resources' (did you mean 'gpus_per_trial'?)"),
    (GOOD + "resources:\n  gpus_per_trial: 0\n", 14, "'gpus_per_trial' must be a number > 0, got 0"),
    (GOOD + "resources:\n  cpus_per_trial: -1\n", 14, "'cpus_per_trial' must be a number > 0, got -1"),
    (GOOD + "resources:\n  gpus_per_trial: 1.5\n", 14, "'gpus_per_trial' must be at most 1 (a share of one GPU) or a whole number"),
    (GOOD + "resources:\n  cpus_per_trial: two\n", 14, "'cpus_per_trial' must be a number > 0, got 'two'"),
    (GOOD + "resources:\n  gpus_per_trial: true\n", 14, "'gpus_per_trial' must be a number > 0, got True"),
    (GOOD + "resources: 0.25\n", 13, "'resources' must be a mapping"),
]


@pytest.mark.parametrize("text,line,message", BAD_CASES)
def test_bad_study_files_name_file_line_and_field(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_study_config(path, validate_names=False)
    error = str(info.value)
    assert error.startswith(f"{path}:{line}: "), error
    assert message in error
    assert "\n" not in error


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_study_config(tmp_path / "absent.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_study_config(empty)


@pytest.mark.parametrize(
    "extra,message",
    [
        ("train: {schedule: linear}\n", "train: train setting 'schedule' must be cosine or wsd"),
        ("train: {lr_max: 1.0}\n", "train: unknown train setting 'lr_max'"),
        ("baselines: [gpt5]\n", "unknown baseline 'gpt5'"),
    ],
)
def test_settings_the_evaluator_would_reject_fail_at_load(tmp_path, extra, message):
    path = write(tmp_path, GOOD + extra)
    with pytest.raises(ConfigError) as info:
        load_study_config(path)
    assert str(info.value).startswith(f"{path}:13: ") and message in str(info.value)


def test_a_study_sets_its_evaluation_interval(tmp_path):
    text = GOOD.replace("  steps: 100", "  steps: 100\n  eval_every: 7")
    config = load_study_config(write(tmp_path, text), validate_names=False)
    assert config.budget == {"steps": 100, "eval_every": 7}
