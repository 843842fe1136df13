"""Rooms a new contributor can read: no module over ~500 lines, no function over ~80 (issue 15).

Generated Alembic migrations are exempt. An entry in WAIVED names a function that is too long for
a reason recorded next to it and is owed a split; the test fails once it fits, so the waiver
cannot outlive its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mixnas"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
WAIVED = {
    # Study-file validation: typed train/budget/profile configs (issue 14) replace its body.
    "orchestrator/config.py:load_study_config",
}
WAIVED_MODULES = {
    # 533 lines since the CPU speed work added the conv backward and its naive twin beside the
    # fast forms; export follows imports out of this file, so the pointwise/conv ops can move to
    # their own module: owed.
    "kernels/reference.py",
}


def sources() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts]


def long_functions(path: Path, root: Path = PACKAGE) -> dict[str, int]:
    """`file:function` -> lines, for every function (methods and nested ones too) over the limit."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                found[f"{path.relative_to(root).as_posix()}:{node.name}"] = lines
    return found


def test_no_module_over_the_limit():
    big = {p.relative_to(PACKAGE).as_posix(): n for p in sources()
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not set(big) - WAIVED_MODULES, f"modules over {MAX_MODULE_LINES} lines: {big}"
    assert not WAIVED_MODULES - set(big), "a waived module now fits: drop its waiver"


def test_no_function_over_the_limit():
    long = {name: n for p in sources() for name, n in long_functions(p).items()}
    assert not set(long) - WAIVED, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
    assert not WAIVED - set(long), f"waived but short enough now: {WAIVED - set(long)}"


def test_the_checker_counts_a_long_function(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    short = tmp_path / "short.py"
    short.write_text("def g():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES - 1))
    assert long_functions(long, tmp_path) == {"long.py:f": MAX_FUNCTION_LINES + 1}
    assert long_functions(short, tmp_path) == {}
