"""Users' primitives: the documented example runs, `primitive check` catches each broken property,
bad plugins fail as one line naming the file, and installed packages' entry points load."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mixnas.cli import main
from mixnas.evaluator.profiler import plugin_metrics, profile_metric_names
from mixnas.search_space.grammar import Grammar
from mixnas.search_space.plugin_commands import check, split_target

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "primitives.md"

HEADER = """\
import torch
import torch.nn as nn
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register
"""
# A correct causal token mixer (a gated one-step shift), to be broken one property at a time.
SHIFT = """
class {cls}(nn.Module):
    def __init__(self, d_model, scale=1.0):
        super().__init__()
        self.d_model, self.scale = d_model, scale
        self.proj = nn.Linear(2 * d_model, d_model, bias=False)

    def forward(self, x):
        prev = torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]
        {forward_extra}
        return self.proj(torch.cat([x, prev * self.scale], dim=-1))

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)

    def step(self, x_t, state):
        y = self.proj(torch.cat([x_t, state * self.scale], dim=-1))
        return {step_out}, x_t

    def state_bytes(self, seq_len, bytes_per_element=2):
        return {state_size} * bytes_per_element

    def flops_per_token(self, seq_len):
        return 2 * self.proj.weight.numel()


register(PrimitiveSpec("{name}", "token", "custom", {cls},
                       {{"scale": ParamSpec("float", 1.0, low=0.5, high=2.0)}}))
"""
GOOD = {"forward_extra": "", "step_out": "y", "state_size": "self.d_model"}


def plugin(tmp_path, name, **broken):
    fields = {**GOOD, **broken}
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + SHIFT.format(cls=name.title().replace("_", ""), name=name, **fields))
    return path


def doc_examples(target: Path) -> dict[str, Path]:
    """Write each `<!-- example: NAME -->` code block of docs/primitives.md to target/NAME."""
    found = re.findall(r"<!-- example: (\S+) -->\n```\w+\n(.*?)```", DOC.read_text(), re.S)
    assert found, "docs/primitives.md lost its examples"
    out = {}
    for name, body in found:
        out[name] = target / name
        out[name].write_text(body)
    return out


@pytest.mark.slow
def test_the_documented_example_checks_samples_and_measures(tmp_path):
    files = doc_examples(tmp_path)
    lines, ok = check(str(files["my_mixers.py"]), examples=2)
    assert ok, lines
    grammar = Grammar.load(files["my_space.yaml"])
    archs = grammar.sample_many(12, seed=0)
    assert any(layer.token_mixer.type == "ema" for a in archs for layer in a.layers)
    ema = next(a for a in archs if a.layers[0].token_mixer.type == "ema")
    assert plugin_metrics(ema)["ema_share"] > 0
    assert "ema_share" in profile_metric_names({"latency": False})


def test_a_correct_plugin_passes(tmp_path, capsys):
    path = plugin(tmp_path, "shift_ok")
    assert main(["primitive", "check", f"{path}:shift_ok", "--examples", "3"]) == 0
    assert "shift_ok: ok" in capsys.readouterr().out


@pytest.mark.parametrize("name,broken,prop", [
    ("peek_ahead", {"forward_extra": "x = torch.roll(x, -1, dims=1)"}, "causal"),
    ("wrong_state", {"state_size": "2 * self.d_model"}, "state_bytes"),
    ("step_differs", {"step_out": "y * 1.5"}, "step"),
])
def test_check_names_each_broken_property_and_exits_2(tmp_path, capsys, name, broken, prop):
    path = plugin(tmp_path, name, **broken)
    assert main(["primitive", "check", str(path), "--examples", "3"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    failed = [line for line in out if f"{name}: {prop} fails at d_model=" in line]
    assert failed and "scale=" in failed[0] and str(path) in failed[0], out


BAD = {
    "no_import": ("import torch\nimport no_such_package_xyz\n", r":2: plugin does not import: "
                  "ModuleNotFoundError"),
    "clash": (HEADER + "register(PrimitiveSpec('attention', 'token', 'x', lambda d: None))\n",
              "primitive 'attention' clashes with a built-in; rename it"),
    "no_step": (HEADER + SHIFT.format(cls="NoStep", name="no_step", **GOOD).replace(
        "def step(", "def stepp("), "NoStep lacks step"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_plugins_are_one_line_naming_the_file(tmp_path, capsys, case):
    source, message = BAD[case]
    path = tmp_path / f"{case}.py"
    path.write_text(source)
    assert main(["primitive", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"mixnas: error: {path}") and re.search(message, err)
    space = tmp_path / "space.yaml"
    space.write_text(f"plugins: [{path.name}]\narchitecture: {{d_model: 16, depth: 1, layers: l}}"
                     "\nrules:\n  l: {token_mixer: {primitive: attention}, "
                     "channel_mixer: {primitive: mlp}}\n")
    assert main(["space", "validate", str(space)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err


def test_a_failed_plugin_registers_nothing(tmp_path):
    path = tmp_path / "half.py"
    path.write_text(HEADER + SHIFT.format(cls="Half", name="half_done", **GOOD) + "1 / 0\n")
    with pytest.raises(ValueError, match="ZeroDivisionError"):
        check(str(path))
    from mixnas.search_space.registry import REGISTRY
    assert "half_done" not in REGISTRY


def test_grammar_plugin_errors_and_targets(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("plugins: missing.py\narchitecture: {d_model: 16, depth: 1, layers: l}\n")
    with pytest.raises(ValueError, match=r"space.yaml:1: plugins must be a list"):
        Grammar.load(space)
    space.write_text("plugins: [missing.py]\narchitecture: {d_model: 16, depth: 1, layers: l}\n")
    with pytest.raises(ValueError, match=f"{tmp_path}/missing.py: plugin file not found"):
        Grammar.load(space)
    assert split_target("a/b.py:ema") == ("a/b.py", "ema")
    assert split_target("pkg.mixers") == ("pkg.mixers", None)


ENTRY_MODULE = HEADER + SHIFT.format(cls="Installed", name="installed_shift", **GOOD)


@pytest.mark.slow
def test_installed_package_entry_point_route(tmp_path):
    """A package installed the way pip leaves it (a module and a dist-info with
    entry_points.txt) provides a primitive that grammars use without naming a plugin."""
    site = tmp_path / "site"
    dist = site / "mixnas_test_mixers-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "mixnas_test_mixers.py").write_text(ENTRY_MODULE)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mixnas-test-mixers\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[mixnas.primitives]\nshift = mixnas_test_mixers\n")
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent("""\
        architecture: {d_model: 16, depth: 2, layers: s}
        rules:
          s: {motif: [l]}
          l: {token_mixer: {primitive: installed_shift}, channel_mixer: {primitive: mlp}}
        """))
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}"}
    proc = subprocess.run([sys.executable, "-m", "mixnas.cli", "space", "sample", str(space),
                           "--n", "1"], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "installed_shift x2" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "mixnas.cli", "primitive", "check",
                           "mixnas_test_mixers", "--examples", "2"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0 and "installed_shift: ok" in proc.stdout, proc.stderr


def test_a_worker_executes_shipped_source_and_picks_up_new_code(tmp_path):
    from dataclasses import replace

    from mixnas.search_space.plugins import load_plugin, load_sources
    from mixnas.search_space.registry import REGISTRY

    shipped = load_plugin(str(plugin(tmp_path, "shipped_shift")))
    (tmp_path / "shipped_shift.py").unlink()  # a worker on another machine has no file
    load_sources([shipped])
    first = REGISTRY["shipped_shift"].build
    newer = shipped.source.replace("2 * self.proj.weight.numel()", "3 * self.proj.weight.numel()")
    load_sources([replace(shipped, source=newer, sha256="changed")])
    assert REGISTRY["shipped_shift"].build is not first
    assert REGISTRY["shipped_shift"].build(8).flops_per_token(4) == 3 * 8 * 16
