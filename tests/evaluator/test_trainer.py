"""The trainer through `evaluate`, on real (tiny) models built by `build_model`."""

import math

import pytest
import torch

import mixnas.evaluator.evaluation as evaluation
from mixnas.evaluator import DEFAULT_TRAIN, TrialFailed, evaluate
from mixnas.evaluator.trainer import learning_rate, resolve_train
from mixnas.search_space import Architecture, Layer, Mixer, build_model

from .helpers import EASY, NO_LATENCY, QUICK_TRAIN, tiny_arch


def run(arch=None, task=EASY, budget=None, train=QUICK_TRAIN, **kwargs):
    budget = budget or {"steps": 60}
    return evaluate(arch or tiny_arch(), task, budget, train, NO_LATENCY, **kwargs)


def test_loss_goes_down_on_a_learnable_task():
    task = {**EASY, "vocab_size": 64}  # a 32-entry map
    result = run(task=task, budget={"steps": 80, "eval_every": 20})
    losses = [p["train_loss"] for p in result.curve]
    assert losses[-1] < 0.5 * losses[0]
    assert result.curve[-1]["metrics"]["loss"] < 0.5 * result.curve[0]["metrics"]["loss"]
    assert result.metrics == result.curve[-1]["metrics"]
    assert [p["step"] for p in result.curve] == list(range(20, result.steps + 1, 20))
    assert result.steps >= 60 and result.budget_steps == 80 and result.pruned_at_step is None
    assert result.curve[1]["tokens"] == 40 * 16 * 8


def test_early_stop_at_solved_accuracy():
    task = {**EASY, "vocab_size": 4, "seq_len": 4}  # a 2-entry map
    result = run(task=task, budget={"steps": 400, "eval_every": 10})
    assert result.metrics["accuracy"] >= 0.999
    assert result.steps < 400 and result.steps == result.curve[-1]["step"]


def test_same_seed_same_result_other_seed_other_result():
    a, b, c = run(seed=3), run(seed=3), run(seed=4)
    assert a.metrics == b.metrics and a.curve == b.curve
    assert a.curve[-1]["train_loss"] != c.curve[-1]["train_loss"]


def test_rung_callback_can_prune():
    calls = []

    def on_rung(i, step, metrics):
        calls.append((i, step, metrics))
        return i == 1

    points = []
    result = run(budget={"steps": 40, "rungs": [0.25, 0.5], "eval_every": 40},
                 on_rung=on_rung, on_eval=points.append)  # evaluations: the rungs only
    assert [(i, s) for i, s, _ in calls] == [(0, 10), (1, 20)]
    assert result.pruned_at_step == 20 and result.steps == 20 and result.budget_steps == 40
    assert result.metrics == calls[1][2] == points[-1]["metrics"]
    assert [p["rung"] for p in points] == [0, 1]
    assert set(result.profile) >= {"params", "state_bytes"}


def test_token_budget_becomes_steps():
    result = run(budget={"tokens": 16 * 8 * 5 + 1})
    assert result.budget_steps == 6


def test_non_finite_loss_fails_the_trial(monkeypatch):
    def nan_after_two_steps(arch, vocab_size):
        model = build_model(arch, vocab_size)
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * math.nan if calls["n"] >= 3 else output

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(evaluation, "build_model", nan_after_two_steps)
    with pytest.raises(TrialFailed, match="non-finite loss at step 3"):
        run()


def test_out_of_memory_fails_the_trial(monkeypatch):
    def oom(module, inputs, output):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def build(arch, vocab_size):
        model = build_model(arch, vocab_size)
        model.register_forward_hook(oom)
        return model

    monkeypatch.setattr(evaluation, "build_model", build)
    with pytest.raises(TrialFailed, match="out of memory: CUDA out of memory"):
        run()


def test_build_errors_fail_the_trial():
    with pytest.raises(TrialFailed, match="model build failed: .*heads"):
        run(arch=tiny_arch(heads=3))


def test_bad_settings_are_value_errors():
    with pytest.raises(ValueError, match="unknown train setting 'lr_max'"):
        run(train={"lr_max": 1.0})
    with pytest.raises(ValueError, match="exactly one of 'steps' or 'tokens'"):
        run(budget={"steps": 10, "tokens": 10})
    with pytest.raises(ValueError, match="rungs"):
        run(budget={"steps": 10, "rungs": [1.5]})
    with pytest.raises(ValueError, match="unknown profile setting 'latncy'"):
        evaluate(tiny_arch(), EASY, {"steps": 1}, None, {"latncy": False})
    assert DEFAULT_TRAIN["lr"] == 5e-4 and DEFAULT_TRAIN["min_lr"] == 1e-6
    with pytest.raises(ValueError, match="'schedule' must be cosine or wsd"):
        resolve_train({"schedule": "linear"})
    with pytest.raises(ValueError, match=r"'decay_frac' must be in \(0, 1\]"):
        resolve_train({"decay_frac": 0})
    assert resolve_train({"compile": True})["compile"] is True
    with pytest.raises(ValueError, match="'compile' must be true or false"):
        resolve_train({"compile": "yes"})


def test_the_optimizer_is_fused_adamw_with_the_trainer_settings():
    from mixnas.evaluator.trainer import make_optimizer

    param = torch.nn.Parameter(torch.ones(3))
    cfg = resolve_train({"lr": 0.1, "betas": [0.8, 0.9]})
    opt = make_optimizer([{"params": [param], "weight_decay": 0.0}], cfg, torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["betas"] == (0.8, 0.9)
    param.grad = torch.ones(3)
    opt.step()  # Adam's first step moves each weight by lr against the gradient's sign
    torch.testing.assert_close(param.detach(), torch.full((3,), 0.9))


def test_schedules_warm_up_then_decay_to_min_lr():
    cfg = resolve_train({"lr": 1.0, "min_lr": 0.0, "warmup_frac": 0.1})
    cosine = [learning_rate(s, 100, cfg) for s in range(100)]
    assert cosine[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert cosine[10] == 1.0 and cosine[55] == pytest.approx(0.5) and cosine[-1] < 1e-3
    assert all(a >= b for a, b in zip(cosine[10:], cosine[11:]))

    wsd = [learning_rate(s, 100, {**cfg, "schedule": "wsd", "decay_frac": 0.2}) for s in range(100)]
    assert wsd[:10] == cosine[:10] and set(wsd[10:80]) == {1.0}
    assert wsd[90] == pytest.approx(0.5) and wsd[-1] == pytest.approx(0.05)
    # a short WSD run holds the long run's learning rate for most of its length
    long = [learning_rate(s, 800, {**cfg, "schedule": "wsd", "warmup_frac": 0.0}) for s in range(80)]
    short = [learning_rate(s, 100, {**cfg, "schedule": "wsd", "warmup_frac": 0.0}) for s in range(80)]
    assert short == long


def test_keep_weights_returns_a_loadable_cpu_state_dict():
    result = run(budget={"steps": 5}, keep_weights=True)
    assert result.vocab_size == 16
    assert all(t.device.type == "cpu" for t in result.state_dict.values())
    model = build_model(tiny_arch(), result.vocab_size)
    model.load_state_dict(result.state_dict)
    assert run(budget={"steps": 5}).state_dict is None


def test_mad_suite_trains_one_model_per_task():
    small = {"num_train": 32, "num_test": 32}
    task = {
        "name": "mad",
        "tasks": ["selective_copying", "memorization"],
        "selective_copying": {"seq_len": 16, "num_tokens_to_copy": 3, **small},
        "memorization": {"vocab_size": 8, "seq_len": 8, **small},
    }
    result = run(task=task, budget={"steps": 20, "rungs": [0.5], "eval_every": 20})
    m = result.metrics
    assert m["accuracy"] == pytest.approx(
        (m["selective_copying.accuracy"] + m["memorization.accuracy"]) / 2
    )
    assert result.budget_steps == 20 and result.steps == 20
    assert [p["step"] for p in result.curve] == [10, 20]
    assert result.vocab_size == 16 and result.state_dict is None


def test_moe_balancing_loss_is_added_with_its_coefficient():
    arch = Architecture(16, [Layer(Mixer("attention", {"heads": 2}), Mixer("moe", {"experts": 4}))])
    curves = [
        [p["train_loss"] for p in run(arch, train={**QUICK_TRAIN, "aux_loss_coef": c}).curve]
        for c in (0.0, 0.0, 10.0)
    ]
    assert curves[0] == curves[1] != curves[2]


def test_a_budget_without_eval_every_draws_a_curve_of_twenty_points():
    task = {**EASY, "vocab_size": 64}
    run_steps = 80
    tokens = run_steps * QUICK_TRAIN["batch_size"] * task["seq_len"]
    result = run(task=task, budget={"tokens": tokens})  # tokens: no spacing set anywhere
    assert result.budget_steps == run_steps
    assert [p["step"] for p in result.curve] == list(range(4, run_steps + 1, 4))


def test_compiled_trials_each_start_from_a_fresh_compile_cache(monkeypatch):
    # a worker trains many designs in one process; past torch's recompile limit the later ones
    # would run eagerly, so every compiled trial resets the cache first (and eager ones do not)
    resets, compiled = [], []
    monkeypatch.setattr(torch.compiler, "reset", lambda: resets.append(1))
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    run(budget={"steps": 4}, train={**QUICK_TRAIN, "compile": True})
    run(budget={"steps": 4}, train={**QUICK_TRAIN, "compile": True})
    assert len(resets) == 2 and len(compiled) == 2
    run(budget={"steps": 4})
    assert len(resets) == 2 and len(compiled) == 2
