"""The prepared GPU check (scripts/gpu-check.sh) and its GPU benchmarks, on a machine without a GPU:
the script checks each step's command line and says so in one line; the benchmarks validate their
arguments, refuse to run without a GPU in one line, and compute their figures right."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check, gpu_loss_curves, gpu_throughput

ROOT = Path(__file__).resolve().parents[2]


def run_script(tmp_path, **env):
    full = {**os.environ, "PYTHONPATH": str(ROOT), "GPU_CHECK_DRY": "1",
            "GPU_CHECK_RESULTS": str(tmp_path / "results"), **env}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh")], capture_output=True,
                          text=True, env=full, timeout=600)


@pytest.mark.slow
def test_gpu_check_without_a_gpu_checks_every_step_in_one_line(tmp_path):
    before = sorted((ROOT / "benchmarks" / "results").iterdir())
    proc = run_script(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0] and "6 steps are valid" in lines[0]
    assert not (tmp_path / "results").exists()  # nothing written
    assert sorted((ROOT / "benchmarks" / "results").iterdir()) == before


def test_gpu_check_names_a_step_whose_command_line_is_invalid(tmp_path):
    proc = run_script(tmp_path, GPU_CHECK_TRIALS="0", GPU_CHECK_STEPS="study curves")
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines() == [
        "gpu-check: step 'study' has an invalid command line: python -m benchmarks.gpu_throughput:"
        " error: argument --trials: expected a positive integer, got 0"]
    proc = run_script(tmp_path, GPU_CHECK_STEPS="bench tset")
    assert proc.returncode == 2 and "unknown step 'tset'" in proc.stdout


def test_throughput_checks_its_arguments(capsys):
    assert gpu_throughput.main(["--check", "--scales", "quickstart", "--packs", "4", "1",
                                "--trials", "16", "4"]) == 0
    out = capsys.readouterr().out
    assert "quickstart x4 (16 trials); quickstart x1 (4 trials)" in out
    for bad in (["--packs", "0"], ["--packs", "17"], ["--trials", "0"],
                ["--packs", "1", "2", "--trials", "1", "2", "3"],
                ["--scales", "no-such-scale"]):
        with pytest.raises(SystemExit) as exit_:
            gpu_throughput.parse_args(["--scales", "quickstart", *bad]
                                      if "--scales" not in bad else bad)
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no study file" in err and "known scales: quickstart, lm-gpu" in err


def test_throughput_study_command_packs_trials():
    cmd = gpu_throughput.start_command(Path("s.yaml"), "sqlite:///x.db", 4, 16)
    assert cmd[cmd.index("--gpus-per-trial") + 1] == "0.25"
    assert cmd[cmd.index("--workers") + 1] == "4" and cmd[cmd.index("--n-trials") + 1] == "16"
    study = gpu_throughput.SCALES["quickstart"]
    for pack in (1, 2, 4, 8):  # every pack size's command line is one `study start` accepts
        assert gpu_throughput.check_command(
            gpu_throughput.start_command(study, "sqlite://", pack, 4)) is None
    bad = gpu_throughput.start_command(study, "sqlite://", 4, 4)
    bad[bad.index("--gpus-per-trial") + 1] = "1.5"
    assert "'gpus_per_trial' must be at most 1" in gpu_throughput.check_command(bad)


def test_throughput_without_a_gpu_checks_its_command_lines_and_says_so(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("there is a GPU")
    assert gpu_throughput.main(["--scales", "quickstart", "lm-gpu", "--packs", "1", "8"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU here: nothing measured" in out[0]
    assert "the command lines of its 4 runs are valid" in out[0] and "lm-gpu x8" in out[0]


def test_throughput_counts_trained_trials_over_their_span():
    t = "2026-01-01T00:00:{:02d}"
    rows = [
        {"number": 0, "state": "complete", "duplicate_of": None, "started_at": t.format(0),
         "finished_at": t.format(30)},
        {"number": 1, "state": "pruned", "duplicate_of": None, "started_at": t.format(10),
         "finished_at": t.format(20)},
        {"number": 2, "state": "complete", "duplicate_of": 0, "started_at": t.format(31),
         "finished_at": t.format(31)},  # reused: not trained
        {"number": 3, "state": "failed", "duplicate_of": None, "started_at": t.format(5),
         "finished_at": t.format(36)},
    ]
    s = gpu_throughput.summarise(rows, wall=60.0)
    assert (s["trials"], s["trained"], s["span_seconds"]) == (4, 2, 30.0)
    assert s["trials_per_hour"] == 240.0 and s["trials_per_hour_wall"] == 120.0
    assert s["mean_trial_seconds"] == 20.0
    runs = [{"scale": "q", "pack": 4, "trials_per_hour": 300.0},
            {"scale": "q", "pack": 1, "trials_per_hour": 100.0},
            {"scale": "lm", "pack": 2, "trials_per_hour": 50.0}]
    gpu_throughput.add_packing_gains(runs)
    assert runs[0]["packing_gain"] == 3.0 and runs[1]["packing_gain"] == 1.0
    assert "packing_gain" not in runs[2]


def test_loss_curves_check_arguments_and_compare_curves(capsys):
    assert gpu_loss_curves.main(["--check", "--steps", "50"]) == 0
    assert "6-layer design for 50 steps" in capsys.readouterr().out
    for bad in (["--steps", "0"], ["--modes", "triton"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            gpu_loss_curves.parse_args(bad)
    ref = [{"step": 10, "train_loss": 2.0}, {"step": 20, "train_loss": 1.0}]
    other = [{"step": 10, "train_loss": 2.1}, {"step": 20, "train_loss": 0.9}]
    assert gpu_loss_curves.max_relative_difference(other, ref) == pytest.approx(0.1)
    assert gpu_loss_curves.max_relative_difference(ref, ref) == 0.0


def test_loss_curves_design_uses_every_kernel_op():
    from mixnas.search_space.architecture import Architecture
    from mixnas.search_space.model import build_model

    model = build_model(Architecture.from_dict(gpu_loss_curves.DESIGN), 64)
    sources = {type(m).__module__ for m in model.modules()}
    for prim in ("attention", "deltanet", "mamba2", "gla", "hyena", "mlp"):
        assert f"mixnas.search_space.primitives.{prim}" in sources


def test_gpu_check_summary_merges_the_steps_and_copies_out(tmp_path, monkeypatch, capsys):
    work, res, out = tmp_path / "work", tmp_path / "res", tmp_path / "out"
    for d in (work, res, out):
        d.mkdir()
    (work / "tests.step.json").write_text(json.dumps(
        {"step": "tests", "rc": 1, "seconds": 90, "limit_s": 150, "timed_out": False}))
    (work / "bench.step.json").write_text(json.dumps(
        {"step": "bench", "rc": 124, "seconds": 170, "limit_s": 170, "timed_out": True}))
    (work / "tests.log").write_text("log\n")
    (work / "kernel_tests.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="0" skipped="1">'
        '<testcase classname="test_x" name="test_a"><failure message="assert 0.03 &lt; 0.015"/>'
        '</testcase></testsuite></testsuites>')
    slug = "nvidia-h100-80gb-hbm3"
    figures = {"attention_vs_sdpa": [{"T": 1024, "head_dim": 64, "sdpa_best": "sdpa_cudnn",
                                      "sdpa_best_ms": 0.2, "triton_ms": 0.25,
                                      "dispatched": "sdpa_cudnn", "dispatched_ms": 0.2,
                                      "speedup_dispatched": 1.0, "speedup_triton": 0.8}],
               "attention_fwd_8k_d128": None, "linear_vs_sdpa": []}
    (res / f"kernels_{slug}.json").write_text(json.dumps(
        {"figures": figures, "checks": [{"ok": False, "impl": "flex"}], "rows": []}))
    (res / f"kernel_table_{slug}.json").write_text(json.dumps(
        {"entries": [{"winner": "sdpa_cudnn"}, {"winner": "triton"}]}))
    monkeypatch.setenv("OUT", str(out))
    assert gpu_check.main(["--work", str(work), "--device", "NVIDIA H100 80GB HBM3",
                           "--results", str(res)]) == 0
    text = capsys.readouterr().out
    assert "kernel tests: 3 passed, 1 failed, 1 skipped" in text
    assert "FAILED test_x::test_a" in text and "bench TIMEOUT 170s" in text
    assert "sdpa_cudnn" in text and "winners sdpa_cudnn 1, triton 1" in text
    assert len(text.splitlines()) < 40  # one screen
    doc = json.loads((res / f"gpu_check_{slug}.json").read_text())
    assert doc["device"] == "NVIDIA H100 80GB HBM3" and doc["environment"]["command"]
    assert doc["bench"]["failed_checks"] == [{"ok": False, "impl": "flex"}]
    assert {p.name for p in out.iterdir()} == {
        f"gpu_check_{slug}.json", f"kernels_{slug}.json", f"kernel_table_{slug}.json",
        "gpu-check-logs.tar.gz"}


def test_the_benchmark_modules_run_as_scripts():
    for module in ("benchmarks.gpu_check", "benchmarks.gpu_loss_curves"):
        proc = subprocess.run([sys.executable, "-m", module, "--check"], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ,
                                                                   "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr


def test_throughput_reads_trial_times_from_a_study_database(tmp_path):
    from mixnas.dashboard.demo import build_demo_db

    url = build_demo_db(tmp_path / "demo.db", n_trials=12, running=2, with_optuna=False)
    rows = gpu_throughput.trial_times(url)
    assert len(rows) == 12 and {r["state"] for r in rows} >= {"complete", "running"}
    s = gpu_throughput.summarise(rows, wall=3600.0)
    assert s["trials"] == 12 and 0 < s["trained"] <= 10 and s["span_seconds"] > 0


def test_a_study_past_its_time_limit_is_stopped_with_ctrl_c(tmp_path):
    code = ("import time, sys\nprint('trial 1 done', flush=True)\n"
            "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
            "    print('interrupted', flush=True); sys.exit(130)\n")
    rc, tail = gpu_throughput.run_study([sys.executable, "-c", code], 2, tmp_path / "log")
    assert rc is None and tail == ["trial 1 done", "interrupted", "stopped after 2 s"]
    rc, tail = gpu_throughput.run_study([sys.executable, "-c", "print('ok')"], 30,
                                        tmp_path / "log")
    assert rc == 0 and tail == ["ok"]


def test_gpu_check_counts_tests_from_the_log_when_pytest_was_stopped(tmp_path):
    log = tmp_path / "tests.log"
    log.write_text("[gw0] [ 10%] PASSED tests/kernels/test_a.py::test_x[1]\n"
                   "[gw1] [ 20%] FAILED tests/kernels/test_a.py::test_y\n"
                   "tests/kernels/test_b.py::test_z SKIPPED (GPU-only) [ 30%]\n"
                   "some PASSED word without a test id\n")
    t = gpu_check.kernel_tests_from_log(log)
    assert (t["passed"], t["failures"], t["skipped"]) == (1, 1, 1)
    assert t["failed"] == ["tests/kernels/test_a.py::test_y"]
    assert gpu_check.kernel_tests_from_log(tmp_path / "missing.log") is None
