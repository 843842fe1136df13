"""The import rules that keep the layers apart (README, Layout), checked on every module's source.

Every import counts, the ones inside functions too: a lazy import still ties two layers together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mixnas"
# Modules with no mixnas dependency beyond each other, which every layer may use.
FOUNDATION = ("mixnas.errors", "mixnas.yamlfile", "mixnas.pareto")
SQL = ("sqlalchemy", "alembic")

# layer -> (the mixnas modules it may import besides itself, or None for "any but" rules)
ONLY = {
    "mixnas.kernels": (),
    "mixnas.search_space": ("mixnas.kernels", "mixnas.errors", "mixnas.yamlfile"),
    "mixnas.storage": FOUNDATION,
    "mixnas.data": ("mixnas.errors",),  # a leaf: the evaluator and export both read corpora
    "mixnas.errors": (),
    "mixnas.yamlfile": ("mixnas.errors",),
    "mixnas.pareto": (),
}
NEVER = {
    "mixnas.evaluator": ("mixnas.storage", "mixnas.orchestrator", "mixnas.dashboard",
                         "mixnas.export"),
    "mixnas.dashboard": ("mixnas.orchestrator",),
    "mixnas.export": ("mixnas.orchestrator",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement of a source file."""
    found = []
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, _submodule(base, alias.name)) for alias in node.names]
    return found


def _submodule(base: str, name: str) -> str:
    """`from base import name`: the module `base.name` when it is one, else `base`."""
    path = PACKAGE.parent.joinpath(*f"{base}.{name}".split("."))
    return f"{base}.{name}" if path.is_dir() or path.with_suffix(".py").is_file() else base


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(module: str, layers) -> str | None:
    matches = [layer for layer in layers if within(module, layer)]
    return max(matches, key=len) if matches else None


def violations(module: str, imported: list[tuple[int, str]]) -> list[str]:
    """The rules `module` breaks by importing `imported`."""
    problems = []
    only, never = layer_of(module, ONLY), layer_of(module, NEVER)
    storage = within(module, "mixnas.storage")
    for line, name in imported:
        if name.split(".")[0] in SQL and not storage:
            problems.append(f"{module}:{line} imports {name}: only mixnas.storage talks SQL")
        if not within(name, "mixnas") or (only and within(name, only)):
            continue
        if only is not None and not any(within(name, ok) for ok in ONLY[only]):
            problems.append(f"{module}:{line} imports {name}: {only} may import only "
                            f"{', '.join(ONLY[only]) or 'nothing of mixnas'}")
        if never is not None and any(within(name, bad) for bad in NEVER[never]):
            problems.append(f"{module}:{line} imports {name}: {never} never imports it")
    return problems


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_keeps_the_layer_rules():
    problems = [p for path in all_modules() for p in violations(module_name(path), imports(path))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "module,imported,broken",
    [
        ("mixnas.kernels.reference", "mixnas.errors", "may import only nothing of mixnas"),
        ("mixnas.search_space.model", "mixnas.evaluator.trainer", "may import only"),
        ("mixnas.evaluator.trainer", "mixnas.storage", "never imports"),
        ("mixnas.dashboard.app", "mixnas.orchestrator.study", "never imports"),
        ("mixnas.export.commands", "sqlalchemy.orm", "only mixnas.storage talks SQL"),
        ("mixnas.orchestrator.driver", "alembic", "only mixnas.storage talks SQL"),
        ("mixnas.storage.rdb", "mixnas.search_space", "may import only"),
        ("mixnas.data.prepare", "mixnas.evaluator.tasks", "may import only"),
    ],
)
def test_the_checker_catches_each_kind_of_break(module, imported, broken):
    assert any(broken in p for p in violations(module, [(1, imported)]))


def test_allowed_imports_pass_the_checker():
    assert not violations("mixnas.search_space.grammar", [(1, "mixnas.yamlfile"),
                                                          (2, "mixnas.kernels.reference")])
    assert not violations("mixnas.storage.rdb", [(1, "sqlalchemy"), (2, "mixnas.pareto")])
    assert not violations("mixnas.dashboard.store", [(1, "mixnas.storage")])
    assert any(within(module_name(p), "mixnas.storage") for p in all_modules())
