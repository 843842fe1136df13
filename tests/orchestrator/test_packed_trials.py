"""Packed trials: what each trial asks Ray for, how many run at once, and which device they train
on. The last tests run studies on a real Ray cluster that declares one GPU it does not have
(`ray start --num-gpus 1`), so Ray's scheduling of fractional GPUs is real while the trials,
finding no CUDA, train on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mixnas.errors import MixnasError
from mixnas.orchestrator.cluster import trial_resources, trials_that_fit
from mixnas.orchestrator.config import ResourcesConfig
from mixnas.orchestrator.worker import trial_device
from tests.reliability.helpers import ray_client_env, ray_head_process

REPO = Path(__file__).resolve().parents[2]


def test_a_trial_asks_for_its_share_and_a_whole_gpu_by_default():
    gpu_node = {"CPU": 8.0, "GPU": 2.0}
    assert trial_resources(gpu_node, ResourcesConfig()) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert trial_resources({"CPU": 8.0}, ResourcesConfig()) == {"num_cpus": 1.0, "num_gpus": 0.0}
    packed = ResourcesConfig(gpus_per_trial=0.25, cpus_per_trial=2)
    assert trial_resources(gpu_node, packed) == {"num_cpus": 2, "num_gpus": 0.25}


@pytest.mark.parametrize("cluster,resources,message", [
    ({"CPU": 8.0}, ResourcesConfig(gpus_per_trial=0.5), "has 0 GPU(s)"),
    ({"CPU": 8.0, "GPU": 1.0}, ResourcesConfig(gpus_per_trial=2), "has 1 GPU(s)"),
    ({"CPU": 2.0, "GPU": 1.0}, ResourcesConfig(cpus_per_trial=4), "has 2 CPUs"),
])
def test_a_trial_the_cluster_could_never_run_is_refused(cluster, resources, message):
    with pytest.raises(MixnasError, match=message.replace("(", r"\(").replace(")", r"\)")):
        trial_resources(cluster, resources)


@pytest.mark.parametrize("cluster,per_trial,fits", [
    ({"CPU": 16.0, "GPU": 1.0}, {"num_cpus": 1, "num_gpus": 0.25}, 4),  # the GPU bounds
    ({"CPU": 2.0, "GPU": 1.0}, {"num_cpus": 1, "num_gpus": 0.25}, 2),  # the CPUs bound
    ({"CPU": 16.0, "GPU": 1.0}, {"num_cpus": 1, "num_gpus": 0.1}, 10),  # 1 / 0.1 is 9.99..
    ({"CPU": 8.0, "GPU": 2.0}, {"num_cpus": 1, "num_gpus": 1}, 2),
    ({"CPU": 6.0}, {"num_cpus": 1.5, "num_gpus": 0}, 4),  # no GPUs: CPUs / cpus_per_trial
    ({"CPU": 1.0}, {"num_cpus": 1, "num_gpus": 0}, 1),
])
def test_workers_default_to_the_trials_the_cluster_fits(cluster, per_trial, fits):
    assert trials_that_fit(cluster, per_trial) == fits


def test_a_gpu_share_trains_on_cuda_and_falls_back_to_the_cpu_without_it(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trial_device(0.25) == ("cuda", None)
    assert trial_device(0) == ("cpu", None)  # no share: never the GPU another trial was given
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, note = trial_device(0.25)
    assert device == "cpu" and "GPU share (0.25) has no usable CUDA device" in note


def test_the_command_line_checks_resources_like_the_study_file():
    from mixnas.cli import main

    for bad, message in (("0", "must be a number > 0"), ("1.5", "at most 1"),
                         ("x", "expected a number > 0")):
        proc = subprocess.run([sys.executable, "-m", "mixnas.cli", "study", "start", "s.yaml",
                               "--gpus-per-trial", bad], capture_output=True, text=True,
                              cwd=REPO)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert main(["study", "resume", "x", "--cpus-per-trial", "-1"]) == 2


# --------------------------------------------------------------------------- a real Ray cluster
STUDY = """\
name: {name}
search_space: {space}
task: {{name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}}
budget: {{steps: 12}}
train: {{lr: 3.0e-3, batch_size: 8}}
objectives:
  - {{name: accuracy, direction: maximize}}
  - {{name: non_embedding_params, direction: minimize}}
profile: {{latency: false}}
n_trials: {n}
seed: 3
baselines: [transformer, mamba2, gated_deltanet, hyena, griffin, gdn_attn_3to1]
reuse_results: false
pruning: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def fake_gpu_cluster():
    """A Ray head declaring one GPU (and 2 CPUs) that this machine need not have."""
    with ray_head_process(num_cpus=2, num_gpus=1) as head:
        yield head.address


def run_study(tmp_path, address, name, n, *options):
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, space=REPO / "studies/spaces/quickstart.yaml", n=n))
    url = f"sqlite:///{tmp_path}/{name}.db"
    proc = subprocess.run(
        [sys.executable, "-m", "mixnas.cli", "study", "start", str(path), "--storage", url,
         "--ray-address", address, "--quiet", *options],
        capture_output=True, text=True, timeout=900, cwd=REPO,
        env={**os.environ, **ray_client_env(address), "PYTHONPATH": str(REPO), "CI": "true"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return url, proc.stderr


def most_at_once(url) -> tuple[int, int]:
    """(trials that trained, the most that were training at one moment), from the span each ran:
    the worker's start (started_at) plus its compute seconds."""
    import sqlalchemy as sa

    from mixnas.storage import TrialRecord

    with sa.create_engine(url).connect() as conn:
        rows = conn.execute(sa.select(TrialRecord)).all()
    spans = [(r.started_at.timestamp(), r.started_at.timestamp() + r.compute_seconds)
             for r in rows if r.worker and r.compute_seconds and r.duplicate_of is None]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return len(spans), peak


@pytest.mark.slow
def test_quarter_gpus_pack_four_trials_onto_one_gpu_and_whole_gpus_take_turns(fake_gpu_cluster,
                                                                               tmp_path):
    import torch

    from mixnas.orchestrator.study import load_study

    # the driver offers 5 trials at once; Ray runs only as many as the one GPU holds
    url, err = run_study(tmp_path, fake_gpu_cluster, "quarter", 5, "--workers", "5",
                         "--gpus-per-trial", "0.25", "--cpus-per-trial", "0.25")
    trained, peak = most_at_once(url)
    assert trained == 5 and 2 <= peak <= 4, (trained, peak)
    if not torch.cuda.is_available():  # the declared GPU is not there: said once, on the CPU
        assert err.count("no usable CUDA device") == 1 and "trained on the CPU" in err, err
    stored = load_study("quarter", url).config.resources
    assert (stored.gpus_per_trial, stored.cpus_per_trial) == (0.25, 0.25)

    url, _ = run_study(tmp_path, fake_gpu_cluster, "whole", 2, "--workers", "2",
                       "--gpus-per-trial", "1", "--cpus-per-trial", "0.25")
    assert most_at_once(url) == (2, 1)
