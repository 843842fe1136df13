"""Cheap checks that keep untrusted bytes harmless: YAML only through safe loaders, nothing
unpickled from the database, and a dashboard that listens on loopback unless told otherwise."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import sqlalchemy as sa
import yaml

import mixnas
from mixnas.cli import build_parser
from mixnas.storage.models import Base

PACKAGE = Path(mixnas.__file__).parent
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def test_yaml_is_only_loaded_with_safe_loaders():
    checked = 0
    for path, tree in _sources():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "yaml"):
                continue
            name = node.func.attr
            where = f"{path}:{node.lineno}"
            assert name not in ("unsafe_load", "unsafe_load_all", "full_load", "full_load_all"), where
            if name in ("load", "load_all"):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                assert isinstance(loader, ast.Name), f"{where}: yaml.{name} without a named Loader"
                module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
                loader_class = getattr(importlib.import_module(module), loader.id)
                assert issubclass(loader_class, yaml.SafeLoader), f"{where}: {loader.id} is unsafe"
                checked += 1
    assert checked, "the study-file loader was not found: is this test still looking right?"


def test_every_yaml_loader_class_is_a_safe_loader():
    """A loader constructed directly (mixnas.yamlfile's, which remembers lines) must be safe too."""
    checked = 0
    for path, tree in _sources():
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                cls = getattr(importlib.import_module(module), node.name, None)
                if isinstance(cls, type) and issubclass(cls, yaml.reader.Reader):
                    assert issubclass(cls, yaml.SafeLoader), f"{path}:{node.lineno} is unsafe"
                    checked += 1
    assert checked, "the line-aware loader was not found: is this test still looking right?"


def test_nothing_is_unpickled():
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                if isinstance(node, ast.Attribute) and node.attr == "load":
                    value = node.value
                    assert not (isinstance(value, ast.Name) and value.id == "torch"), (
                        f"{path}:{node.lineno}: torch.load unpickles; weights are safetensors"
                    )
                continue
            assert not names & UNSAFE_MODULES, f"{path}:{node.lineno}: imports {names}"
    for table in Base.metadata.tables.values():
        for column in table.columns:
            assert not isinstance(column.type, sa.PickleType), f"{table.name}.{column.name}"


def test_dashboard_binds_loopback_by_default():
    from mixnas.dashboard.app import serve

    assert build_parser().parse_args(["dashboard"]).host == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
