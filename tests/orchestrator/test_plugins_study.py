"""A user's plugin file in a temp dir, through a real study: the CLI, a local Ray with 2 workers
(which execute the shipped plugin source), a plugin metric as an objective, the recorded hash that
`resume` checks, and export of a plugin design that loads without mixnas."""

import hashlib
import json
import subprocess
import sys

import pytest
import sqlalchemy as sa
import torch

from mixnas.orchestrator.config import StudyConfig
from mixnas.orchestrator.study import check_plugins_unchanged
from mixnas.storage import StudyRecord, TrialRecord

from ..export.helpers import run_isolated
from ..search_space.test_plugins import doc_examples
from .test_end_to_end import REPO, mixnas

STUDY = """\
name: ema
search_space: my_space.yaml
task: {name: mqar, vocab_size: 16, seq_len: 16, num_kv_pairs: 2}
budget: {steps: 12}
train: {lr: 3.0e-3, batch_size: 8}
objectives:
  - {name: accuracy, direction: maximize}
  - {name: ema_share, direction: minimize}
profile: {latency: false, context_length: 64}
n_trials: 4
workers: 2
seed: 3
baselines:                    # so that an EMA design trains whatever the sampler draws
  - name: ema-2l
    d_model: 32
    layers:
      - {token_mixer: {type: ema}, channel_mixer: {type: swiglu}}
      - {token_mixer: {type: ema}, channel_mixer: {type: swiglu}}
keep_weights: all
reuse_results: false
pruning: {enabled: false}
"""

LOAD = r"""
import importlib.util, json, sys, torch
directory = sys.argv[1]
spec = importlib.util.spec_from_file_location("exported", f"{directory}/model.py")
module = importlib.util.module_from_spec(spec)
sys.modules["exported"] = module
spec.loader.exec_module(module)
model = module.load(directory)
tokens = torch.randint(16, (1, 8))
with torch.no_grad():
    logits = model(tokens)
print(json.dumps({"shape": list(logits.shape), "finite": bool(torch.isfinite(logits).all()),
                  "mixnas": sorted(m for m in sys.modules if m.partition(".")[0] == "mixnas")}))
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugin_study")
    doc_examples(tmp)
    (tmp / "study.yaml").write_text(STUDY)
    url = f"sqlite:///{tmp}/ema.db"
    proc = subprocess.run(  # as test_end_to_end.mixnas, with room for a loaded machine
        [sys.executable, "-m", "mixnas.cli", "study", "start", str(tmp / "study.yaml"),
         "--storage", url, "--quiet"], capture_output=True, text=True, timeout=2400, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp, url


@pytest.mark.slow
def test_plugin_primitives_train_on_ray_workers_and_report_plugin_metrics(study):
    tmp, url = study
    with sa.create_engine(url).connect() as conn:
        record = conn.execute(sa.select(StudyRecord)).one()
        trials = conn.execute(sa.select(TrialRecord)).all()
    complete = [t for t in trials if t.state == "complete"]
    assert not [t for t in trials if t.state == "failed"], [t.failure_reason for t in trials]
    assert len(complete) >= 3, [(t.state, t.failure_reason) for t in trials]
    ema = [t for t in complete if '"ema"' in t.arch_json]
    assert ema, "the sampler never drew the plugin primitive"
    for t in complete:
        share = sum(layer["token_mixer"]["type"] == "ema"
                    for layer in json.loads(t.arch_json)["layers"]) / 2
        assert t.profile["ema_share"] == share and t.values["ema_share"] == share
    digest = hashlib.sha256((tmp / "my_mixers.py").read_text().encode()).hexdigest()
    [recorded] = record.config["plugins"]
    assert recorded["sha256"] == digest and recorded["path"] == str(tmp / "my_mixers.py")


@pytest.mark.slow
def test_export_of_a_plugin_design_loads_without_mixnas(study):
    tmp, url = study
    with sa.create_engine(url).connect() as conn:
        trials = conn.execute(sa.select(TrialRecord)).all()
    number = next(t.number for t in trials if t.state == "complete" and '"ema"' in t.arch_json)
    out = tmp / "exported"
    mixnas("export", "ema", "--storage", url, "--trial", str(number), "-o", str(out))
    code = (out / "model.py").read_text()
    assert "class EmaMixer(nn.Module):" in code and "PrimitiveSpec(" not in code
    import safetensors

    result = run_isolated(LOAD, [str(out)], (torch, safetensors), tmp)
    assert result == {"shape": [1, 8, 16], "finite": True, "mixnas": []}


@pytest.mark.slow
def test_resume_refuses_changed_plugin_code(study):
    tmp, url = study
    plugin = tmp / "my_mixers.py"
    original = plugin.read_text()
    plugin.write_text(original + "\n# tuned the decay\n")
    try:
        proc = mixnas("study", "resume", "ema", "--storage", url, "--quiet", check=False)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and "\n" not in err, proc.stderr
        assert str(plugin) in err and "--allow-changed-plugins" in err
        with sa.create_engine(url).connect() as conn:
            stored = conn.execute(sa.select(StudyRecord)).one().config
        changes = check_plugins_unchanged(StudyConfig.from_dict(stored), allow_changed=True)
        assert len(changes) == 1 and "source changed" in changes[0]
    finally:
        plugin.write_text(original)
    assert check_plugins_unchanged(StudyConfig.from_dict(stored)) == []


def test_cli_resume_has_the_flag():
    proc = subprocess.run([sys.executable, "-m", "mixnas.cli", "study", "resume", "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "--allow-changed-plugins" in proc.stdout
