"""`mixnas export` from a study database (one trial, the Pareto front) and from an arch file."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import save

from mixnas.export.commands import export_from_file, export_from_study
from mixnas.export.exporter import ExportError, ExportExistsError
from mixnas.search_space.architecture import Architecture, Layer, Mixer
from mixnas.search_space.model import build_model
from mixnas.storage import RDBStorage, StudyRecord, TrialRecord, TrialWeights

from .helpers import import_generated

VOCAB = 12
OBJECTIVES = [{"name": "loss", "direction": "minimize"}, {"name": "acc", "direction": "maximize"}]
# number -> (state, values, stores weights); trial 2 is dominated by trial 0, trial 3 failed
TRIALS = {
    0: ("complete", {"loss": 1.0, "acc": 0.9}, True),
    1: ("complete", {"loss": 0.5, "acc": 0.5}, False),
    2: ("complete", {"loss": 2.0, "acc": 0.8}, True),
    3: ("failed", None, False),
    4: ("complete", {"loss": 3.0, "acc": 0.95}, True),
}


def _arch(number: int) -> Architecture:
    token = ["attention", "gla", "retention", "short_conv", "mamba2"][number]
    return Architecture(16, [Layer(Mixer(token), Mixer("swiglu"))])


@pytest.fixture
def storage(tmp_path):
    """A study database with five trials; returns (url, {number: mixnas model})."""
    url = f"sqlite:///{tmp_path}/study.db"
    models = {}
    with RDBStorage(url).sessions() as session:
        study = StudyRecord(name="s1", config={}, objectives=OBJECTIVES, target_trials=5)
        session.add(study)
        session.flush()
        for number, (state, values, keep) in TRIALS.items():
            arch = _arch(number)
            trial = TrialRecord(study_id=study.id, number=number, state=state, values=values,
                                arch_json=None if state == "failed" else arch.canonical_json(),
                                baseline="tiny" if number == 0 else None,
                                metrics={"loss": values["loss"]} if values else None)
            session.add(trial)
            session.flush()
            torch.manual_seed(number)
            models[number] = build_model(arch, VOCAB).eval()
            if keep:
                tensors = {k: v.clone() for k, v in models[number].state_dict().items()}
                session.add(TrialWeights(trial_id=trial.id, vocab_size=VOCAB, data=save(tensors)))
        session.commit()
    return url, models


def test_export_one_trial_with_its_weights(storage, tmp_path):
    url, models = storage
    written = export_from_study(url, "s1", trial=0, out_dir=tmp_path / "out")
    assert sorted(p.name for p in written) == [
        "README.md", "config.json", "model.py", "model.safetensors"
    ]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert readme.startswith("# tiny\n") and "| study | s1 |" in readme and "| values.acc | 0.9 |" in readme
    module = import_generated(tmp_path / "out" / "model.py", "exported_trial_0")
    tokens = torch.randint(0, VOCAB, (2, 7))
    with torch.no_grad():
        assert torch.equal(module.load(tmp_path / "out")(tokens), models[0](tokens))
    with pytest.raises(ExportExistsError, match="already exists"):
        export_from_study(url, "s1", trial=0, out_dir=tmp_path / "out")
    export_from_study(url, "s1", trial=0, out_dir=tmp_path / "out", force=True)


def test_export_pareto_front(storage, tmp_path):
    url, _ = storage
    written = export_from_study(url, "s1", pareto=True, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "trial_0", "trial_1", "trial_4"
    ]
    assert (tmp_path / "trial_4" / "model.safetensors").exists()
    # trial 1's weights were not kept: code and config only, vocabulary from the study's weights
    assert not (tmp_path / "trial_1" / "model.safetensors").exists()
    assert '"vocab_size": 12' in (tmp_path / "trial_1" / "config.json").read_text()
    assert "class GLA(" in (tmp_path / "trial_1" / "model.py").read_text()
    assert len(written) == 11


def test_pareto_refuses_before_writing_anything(storage, tmp_path):
    url, _ = storage
    (tmp_path / "trial_4").mkdir()
    (tmp_path / "trial_4" / "README.md").write_text("mine")
    with pytest.raises(ExportExistsError, match="trial_4"):
        export_from_study(url, "s1", pareto=True, out_dir=tmp_path)
    assert not (tmp_path / "trial_0").exists()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"study": "nope", "trial": 0}, "no study named 'nope' in .*; studies there: s1"),
        ({"study": "s1", "trial": 9}, "study 's1' has no trial 9"),
        ({"study": "s1", "trial": 3}, "trial 3 has no architecture recorded"),
        ({"study": "s1"}, "exactly one of --trial N and --pareto"),
        ({"study": "s1", "trial": 0, "pareto": True}, "exactly one of"),
    ],
)
def test_bad_requests_are_one_line_errors(storage, tmp_path, kwargs, message):
    url, _ = storage
    study = kwargs.pop("study")
    with pytest.raises(ExportError, match=message) as info:
        export_from_study(url, study, out_dir=tmp_path / "x", **kwargs)
    assert "\n" not in str(info.value)


def test_missing_database_is_an_error(tmp_path):
    with pytest.raises(ExportError, match="no mixnas database"):
        export_from_study(f"sqlite:///{tmp_path}/none.db", "s1", trial=0, out_dir=tmp_path)


def test_export_from_arch_file_or_baseline_name(tmp_path):
    arch = Architecture(16, [Layer(Mixer("hyena"), Mixer("mlp"))], name="my arch")
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(arch.to_dict()))
    export_from_file(path, tmp_path / "a", vocab_size=30)
    module = import_generated(tmp_path / "a" / "model.py", "exported_from_file")
    assert module.CONFIG.vocab_size == 30 and module.CONFIG.name == "my arch"
    assert "class Hyena(" in (tmp_path / "a" / "model.py").read_text()

    named = tmp_path / "baseline.yaml"
    named.write_text("griffin\n")
    export_from_file(named, tmp_path / "b")
    assert '"vocab_size": 256' in (tmp_path / "b" / "config.json").read_text()
    export_from_file("transformer", tmp_path / "c", vocab_size=8)
    assert "class Attention(" in (tmp_path / "c" / "model.py").read_text()


@pytest.mark.parametrize(
    "content,message",
    [
        ("d_model: 16\nlayers: [{token_mixer: {type: warp}}]\n", "arch.yaml: not a valid .*warp"),
        ("d_model: 16\nlayers: [{token_mixer: {type: attention, params: {heads: 3}}}]\n",
         "arch.yaml: not a valid .*layer 0 token_mixer"),
        ("nonsense_baseline\n", "arch.yaml: 'nonsense_baseline' is not a baseline"),
        ("d_model: [\n", r"arch.yaml:\d+: malformed YAML"),
        ("", "arch.yaml: not a valid architecture"),
    ],
)
def test_bad_arch_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "arch.yaml"
    path.write_text(content)
    with pytest.raises(ExportError, match=message) as info:
        export_from_file(path, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_unknown_arch_path_lists_baselines(tmp_path):
    with pytest.raises(ExportError, match="neither an architecture file nor a baseline.*transformer"):
        export_from_file(tmp_path / "missing.yaml", tmp_path / "out")
