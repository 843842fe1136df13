"""`mixnas evaluate ARCH.yaml|BASELINE --task NAME [--set key=value ...] [--json]`.

`--set` values are YAML scalars. Keys: `steps`, `tokens`, `rungs`, `eval_every` (budget),
`train.<key>`, `profile.<key>`, `seed`, `device`; any other key is a setting of the task.
"""

from __future__ import annotations

import json
from typing import Any

from mixnas.errors import ConfigError
from mixnas.evaluator.evaluation import EvalResult, check_seed, evaluate, resolve_device
from mixnas.evaluator.profiler import resolve_profile
from mixnas.evaluator.tasks import get_task
from mixnas.evaluator.trainer import resolve_budget, resolve_train
from mixnas.search_space.baselines import load_architecture
from mixnas.yamlfile import parse_yaml, plain

DEFAULT_STEPS = 500
BUDGET_KEYS = ("steps", "tokens", "rungs", "eval_every")


def parse_sets(task_name: str, sets: list[str], budget_steps: int | None) -> dict[str, Any]:
    """Split `key=value` assignments into task settings, budget, train, profile and run options."""
    parsed: dict[str, Any] = {
        "task": {"name": task_name},
        "budget": {},
        "train": {},
        "profile": {},
        "options": {},
    }
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        value = _scalar(key, text)
        section, _, sub = key.partition(".")
        if section in ("train", "profile", "budget") and sub:
            parsed[section][sub] = value
        elif key in BUDGET_KEYS:
            parsed["budget"][key] = value
        elif key in ("seed", "device"):
            parsed["options"][key] = value
        else:
            parsed["task"][key] = value
    if budget_steps is not None:
        parsed["budget"].pop("tokens", None)
        parsed["budget"]["steps"] = budget_steps
    if "steps" not in parsed["budget"] and "tokens" not in parsed["budget"]:
        parsed["budget"]["steps"] = DEFAULT_STEPS
    return parsed


def evaluate_command(
    arch_spec: str,
    task_name: str,
    sets: list[str],
    budget_steps: int | None,
    as_json: bool,
    console,
) -> EvalResult:
    arch = load_architecture(arch_spec)
    parsed = parse_sets(task_name, sets, budget_steps)
    settings = dict(parsed["task"])
    get_task(settings.pop("name"), **settings)  # unknown task or setting: fail before building
    resolve_budget(parsed["budget"])
    resolve_train(parsed["train"])
    resolve_profile(parsed["profile"])
    resolve_device(parsed["options"].get("device"))
    check_seed(parsed["options"].get("seed", 0))

    def show(point: dict) -> None:
        shown = "  ".join(f"{k}={v:.4g}" for k, v in point["metrics"].items() if "@" not in k)
        loss = point["train_loss"]
        console.print(f"step {point['step']:>6}  train_loss={loss:.4g}  {shown}", highlight=False)

    result = evaluate(
        arch,
        parsed["task"],
        parsed["budget"],
        parsed["train"],
        parsed["profile"],
        seed=parsed["options"].get("seed", 0),
        device=parsed["options"].get("device"),
        on_eval=None if as_json else show,
    )
    if as_json:
        text = json.dumps({"metrics": result.metrics, "profile": result.profile}, indent=2)
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        return result
    from rich.table import Table

    table = Table(
        title=f"{arch.name or arch_spec} on {task_name} ({result.steps} steps, "
        f"{result.wall_seconds:.1f} s)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in {**result.metrics, **result.profile}.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else f"{value:,}")
    console.print(table)
    return result


def _scalar(key: str, text: str) -> Any:
    """A YAML value, numbers read as YAML 1.2 reads them (1e-3 is a float)."""
    try:
        return plain(parse_yaml(text)) if text.strip() else None
    except ConfigError:
        raise ValueError(f"--set {key}: cannot parse value {text!r}") from None
