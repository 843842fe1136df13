"""A realistic study database without training anything: for the dashboard's tests, benchmark and
screenshot, and to try the dashboard (`python -m mixnas.dashboard.demo demo.db --trials 300`).

It writes what the orchestrator writes: an Optuna multi-objective study (RDBStorage, metric names
set) and the matching mixnas rows with real Architecture JSON. Objective values come from a simple
made-up cost model (more attention: lower loss and better recall, slower), not from measurements.
Canonical JSON needs the primitive registry, so unlike the dashboard this module imports torch.
"""

from __future__ import annotations

import argparse
import math
import random
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import optuna

from mixnas.search_space.architecture import Architecture, Layer, Mixer
from mixnas.storage import RDBStorage, optuna_storage

OBJECTIVES = [
    {"name": "loss", "direction": "minimize"},
    {"name": "latency_ms", "direction": "minimize"},
    {"name": "mqar_acc", "direction": "maximize"},
]
VOCAB_SIZE = 8192
START = datetime(2025, 6, 1, 9, 0, 0)


def _token_mixer(kind: str, d_model: int, rng: random.Random) -> Mixer:
    heads = max(1, d_model // 32)
    if kind == "attention":
        window = rng.choice([None, None, 128])
        return Mixer(
            "attention", {"heads": heads, "kv_heads": rng.choice([1, heads]), "window": window}
        )
    if kind == "gated_deltanet":
        return Mixer("gated_deltanet", {"heads": heads, "conv_size": 4})
    if kind == "mamba2":
        return Mixer("mamba2", {"heads": heads, "d_state": rng.choice([16, 64]), "expand": 2})
    if kind == "hyena":
        return Mixer("hyena", {"order": 2, "conv_size": 3})
    if kind == "short_conv":
        return Mixer("short_conv", {"conv_size": rng.choice([3, 4, 8])})
    branches = [_token_mixer(k, d_model, rng).to_dict() for k in ("attention", "mamba2")]
    return Mixer("parallel", {"branches": branches, "combine": rng.choice(["concat", "mix"])})


def _channel_mixer(rng: random.Random) -> Mixer:
    kind = rng.choices(["swiglu", "mlp", "moe", "none"], weights=[5, 2, 2, 1])[0]
    if kind == "swiglu":
        return Mixer("swiglu", {"expand": rng.choice([2.0, 8 / 3, 4.0])})
    if kind == "mlp":
        return Mixer("mlp", {"expand": 4.0, "activation": "gelu"})
    if kind == "moe":
        return Mixer("moe", {"experts": rng.choice([4, 8]), "top_k": 2, "expand": 2.0})
    return Mixer("none", {})


def random_architecture(rng: random.Random) -> tuple[Architecture, dict]:
    """A random design and the decisions that drew it, named as a grammar names them (the
    `layer.N.*` decisions exist only for designs that deep: a conditional search space)."""
    d_model = rng.choice([64, 128, 128, 256])
    kinds = ["attention", "gated_deltanet", "mamba2", "hyena", "short_conv", "parallel"]
    weights = [3, 4, 3, 1, 1, 1]
    params: dict = {"d_model": d_model, "depth": rng.randint(2, 8)}
    layers = []
    for i in range(params["depth"]):
        kind = rng.choices(kinds, weights)[0]
        layers.append(Layer(_token_mixer(kind, d_model, rng), _channel_mixer(rng)))
        params[f"layer.{i}.token_mixer"] = kind
        params[f"layer.{i}.channel_mixer"] = layers[-1].channel_mixer.type
    params["norm"] = rng.choice(["rms", "rms", "layer"])
    return Architecture(d_model=d_model, layers=layers, norm=params["norm"]), params


def baselines() -> list[Architecture]:
    """The hand-designed references a study starts from, as `baselines:` in a study file."""

    def stack(name: str, d_model: int, pattern: list[tuple[Mixer, Mixer]]) -> Architecture:
        return Architecture(d_model, [Layer(t, c) for t, c in pattern], name=name)

    rng = random.Random(0)
    swiglu = Mixer("swiglu", {"expand": 8 / 3})
    attn = Mixer("attention", {"heads": 4, "kv_heads": 2, "window": None})
    gdn = _token_mixer("gated_deltanet", 128, rng)
    return [
        stack("transformer++", 128, [(attn, swiglu)] * 4),
        stack("mamba2", 128, [(_token_mixer("mamba2", 128, rng), Mixer("none", {}))] * 4),
        stack("hyena", 128, [(_token_mixer("hyena", 128, rng), Mixer("mlp", {"expand": 4.0}))] * 4),
        stack("gdn-3:1", 128, [(gdn, swiglu)] * 3 + [(attn, swiglu)]),
    ]


def _param_count(arch: Architecture) -> int:
    return len(arch.layers) * arch.d_model**2 * 12


def _objectives(arch: Architecture, rng: random.Random) -> dict[str, float]:
    counts = arch.mixer_counts()
    n_mixers = sum(counts.values())
    attn = counts.get("attention", 0) / n_mixers
    recurrent = (counts.get("gated_deltanet", 0) + counts.get("mamba2", 0)) / n_mixers
    size = _param_count(arch)
    loss = 3.4 - 0.22 * math.log2(size / 1e5) - 0.5 * min(attn, 0.3) - 0.15 * recurrent
    latency = 1e-5 * size**0.8 * (1 + 2.5 * attn) * (1.4 if arch.d_model == 256 else 1.0)
    recall = 1 / (1 + math.exp(-(6 * min(attn, 0.35) + 2 * recurrent + arch.d_model / 128 - 2.5)))
    return {
        "loss": round(loss + rng.gauss(0, 0.06), 4),
        "latency_ms": round(latency * math.exp(rng.gauss(0, 0.08)), 3),
        "mqar_acc": round(min(1.0, max(0.0, recall + rng.gauss(0, 0.04))), 4),
    }


def _curve(values: dict, steps: int, rungs: list[int], rng: random.Random) -> list[dict]:
    """An evaluation every 5% of the 1,200-step budget (60 steps), as studies evaluate by
    default: train loss, and the validation loss and recall accuracy the trainer measures."""
    points = []
    for step in range(60, steps + 1, 60):
        decay = math.exp(-step / 250)
        loss = values["loss"] + (math.log(VOCAB_SIZE) - values["loss"]) * decay
        point = {"step": step, "tokens": step * 64 * 256, "train_loss": loss + rng.gauss(0, 0.03)}
        accuracy = max(0.0, values["mqar_acc"] * (1 - decay) + rng.gauss(0, 0.01))
        point["metrics"] = {"val_loss": loss + 0.05, "mqar_acc": round(accuracy, 4)}
        if step in rungs:
            point["rung"] = rungs.index(step)
        points.append(point)
    return points


def build_demo_db(
    storage: str | Path,
    n_trials: int = 200,
    seed: int = 0,
    study_name: str = "demo",
    running: int = 2,
    with_optuna: bool = True,
) -> str:
    """Write a study of `n_trials` (baselines first, the last `running` still running) to a new
    SQLite file (a path) or an empty database (a URL); return its storage URL."""
    url = str(storage) if "://" in str(storage) else f"sqlite:///{Path(storage).resolve()}"
    rng = random.Random(seed)
    rungs = [300, 960]
    storage = RDBStorage(url)  # as the orchestrator's: WAL, so readers never wait
    trials, curves = [], []
    done: list[dict] = []  # complete trials that trained their design: what repeats reuse
    for number in range(n_trials):
        base = baselines()
        decisions, original = None, None
        if number < len(base):
            arch = base[number]
        elif done and number < n_trials - running and rng.random() < 0.06:
            original = rng.choice(done)  # the sampler drew a design again: its result is reused
            arch, decisions = Architecture.from_json(original["arch_json"]), original["params"]
        else:
            arch, decisions = random_architecture(rng)
        values = original["values"] if original else _objectives(arch, rng)
        state = "complete"
        if number >= n_trials - running:
            state = "running"
        elif number >= len(base) and not original:
            state = rng.choices(["complete", "pruned", "failed", "infeasible"], [80, 8, 5, 5])[0]
        started = START + timedelta(seconds=40 * number)
        seconds = rng.uniform(30, 300)
        trial = _trial_row(number, arch, state, values, started, seconds, rng)
        trial.update(params=decisions, duplicate_of=original["number"] if original else None)
        # infeasible trials never train, a reused result is not trained again: no curve
        steps = {"complete": 1200, "pruned": 300, "running": 400, "failed": 200}.get(state, -1)
        if original:
            steps, trial["metrics"], trial["profile"] = -1, original["metrics"], original["profile"]
        elif state == "complete" and decisions:
            done.append(trial)
        trials.append(trial)
        curves.append(_curve(values, steps, rungs, rng))

    study_id = storage.create_study(
        study_name,
        {
            "task": {"name": "mqar", "vocab_size": VOCAB_SIZE, "seq_len": 256},
            "budget": {"trials": n_trials, "max_params": 1_000_000},
        },
        objectives=OBJECTIVES,
        target_trials=n_trials + 100,
    )
    storage.add_trials(study_id, trials, curves)
    storage.set_study_state(study_id, "running" if running else "finished")
    storage.close()
    if with_optuna:
        _write_optuna_study(url, study_name, trials)
    return url


def _trial_row(number: int, arch, state: str, values: dict, started, seconds: float,
               rng: random.Random) -> dict:
    """One trial as `RDBStorage.add_trials` takes it: profile, metrics or failure by state."""
    params = _param_count(arch)
    trial = {
        "number": number,
        "state": state,
        "arch_json": arch.canonical_json(),
        "arch_hash": arch.hash,
        "baseline": arch.name,
        "values": values if state == "complete" else None,
        "metrics": None,
        "profile": None,
        "failure_reason": None,
        "started_at": started,
        "finished_at": None if state == "running" else started + timedelta(seconds=seconds),
        "compute_seconds": None if state == "running" else round(seconds, 1),
    }
    if state in ("complete", "pruned", "running"):
        trial["profile"] = {
            "params": params,
            "flops_per_token": 6 * params,
            "latency_ms": values["latency_ms"],
            "peak_memory_mb": round(params * 16 / 2**20 + 40, 1),
            "tokens_per_s": round(64 * 256 / values["latency_ms"] * 1e3),
        }
    if state == "complete":
        trial["metrics"] = {
            "loss": values["loss"],
            "mqar_acc": values["mqar_acc"],
            "mad": {
                "recall": round(rng.uniform(0.5, 1), 3),
                "selective_copy": round(rng.uniform(0.3, 1), 3),
            },
        }
    if state == "infeasible":
        trial["values"] = {"latency_ms": values["latency_ms"]}
        trial["failure_reason"] = f"params {params / 1e6:.2f}M exceed the 1.00M budget"
    if state == "failed":
        trial["failure_reason"] = "RuntimeError: loss is NaN at step 200 (lr too high?)"
    return trial


def _write_optuna_study(url: str, study_name: str, trials: list[dict]) -> None:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per study otherwise
    try:
        _add_optuna_trials(url, study_name, trials)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _add_optuna_trials(url: str, study_name: str, trials: list[dict]) -> None:
    storage = optuna_storage(url)
    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=[o["direction"] for o in OBJECTIVES]
    )
    names = [o["name"] for o in OBJECTIVES]
    with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
    state = {"complete": "COMPLETE", "pruned": "PRUNED", "running": "RUNNING"}
    frozen = [
        optuna.trial.create_trial(
            state=optuna.trial.TrialState[state.get(t["state"], "FAIL")],
            values=[t["values"][name] for name in names] if t["state"] == "complete" else None,
            user_attrs={"arch_hash": t["arch_hash"], "mixnas_state": t["state"]},
        )
        for t in trials
    ]
    study.add_trials(frozen)
    storage.remove_session()
    storage.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="SQLite file to create (or an empty database's URL)")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if "://" not in args.path and Path(args.path).exists():
        parser.error(f"{args.path} exists; give a new file")
    print(build_demo_db(args.path, args.trials, args.seed))


if __name__ == "__main__":
    main()
