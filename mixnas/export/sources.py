"""Collect the source code a set of mixnas definitions needs, so that export can copy it verbatim.

Export copies code instead of re-implementing it, so an exported model computes exactly what the
searched one did. A definition depends on the module-level names its source mentions; names
imported from another mixnas module are followed to their definition (ops imported from
`mixnas.kernels` to their plain-torch twin in `mixnas.kernels.reference`), and names imported from
anywhere else (torch, math, ...) become import lines of the generated file. Users' plugin modules
are copied alike, from the source they were executed from; their imports must be torch or the
standard library, since the exported file must run without the user's other packages.
"""

from __future__ import annotations

import ast
import heapq
import importlib
import inspect
import sys
from dataclasses import dataclass

from mixnas.search_space import plugins

KERNELS = "mixnas.kernels"
REFERENCE = "mixnas.kernels.reference"
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


class ExportSourceError(ValueError):
    """A definition cannot be copied into standalone code (the message says which and why)."""


@dataclass(frozen=True)
class Definition:
    """One top-level statement (function, class or assignment) of a mixnas module."""

    module: str
    names: tuple[str, ...]
    lineno: int
    source: str


@dataclass(frozen=True)
class _Import:
    """A module-level import: of mixnas (`target`: (module, name), name "" for a whole module)
    or of another package (`line`, the statement the generated file repeats)."""

    line: str | None = None
    target: tuple[str, str] | None = None
    value: object = None  # the bound object, to tell whether two external imports agree


class _ModuleIndex:
    """The top-level definitions and import bindings of one module, parsed from its source."""

    def __init__(self, module_name: str):
        module = importlib.import_module(module_name)
        self.name = module_name
        self.path = module_name.replace(".", "/") + ".py"
        plugin = plugins.LOADED.get(module_name)
        if plugin is not None:  # a user's plugin: the source it was executed from
            self.path, source = plugin.path or plugin.ref, plugin.source
        else:
            source = inspect.getsource(module)
        self.lines = source.splitlines()
        self.nodes: dict[str, ast.stmt] = {}
        self.imports: dict[str, _Import] = {}
        package = module_name if hasattr(module, "__path__") else module_name.rpartition(".")[0]
        for node in ast.parse(source).body:
            if isinstance(node, _DEFINITIONS):
                for name in _bound_names(node):
                    self.nodes[name] = node
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.partition(".")[0]
                    if alias.name.partition(".")[0] == "mixnas":
                        self.imports[bound] = _Import(target=(alias.name, ""))
                    else:
                        line = _spelled("import", alias)
                        _check_portable(self.path, alias.name, line, plugin)
                        self.imports[bound] = _Import(line=line, value=getattr(module, bound))
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, package)
                for alias in node.names:
                    bound = alias.asname or alias.name
                    if base.partition(".")[0] == "mixnas":
                        if alias.asname and alias.asname != alias.name:
                            raise ExportSourceError(
                                f"{self.path}: import {alias.name!r} under its own name, not as "
                                f"{alias.asname!r}, so that export can copy its definition"
                            )
                        target = REFERENCE if base == KERNELS else base
                        self.imports[bound] = _Import(target=(target, alias.name))
                    elif base != "__future__":
                        line = _spelled(f"from {base} import", alias)
                        _check_portable(self.path, base, line, plugin)
                        self.imports[bound] = _Import(line=line, value=getattr(module, bound))

    def definition(self, name: str) -> Definition:
        node = self.nodes[name]
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while start > 1 and self.lines[start - 2].startswith("#"):  # keep the comment above it
            start -= 1
        source = "\n".join(self.lines[start - 1 : node.end_lineno])
        return Definition(self.name, _bound_names(node), node.lineno, source)

    def mentioned(self, name: str) -> list[str]:
        """Module-level names (definitions or imports) that the definition of `name` mentions.

        A local variable that shadows a module-level name counts too: at worst that copies a
        definition or import the generated file does not need."""
        node = self.nodes[name]
        own = set(_bound_names(node))
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - own
        return sorted(n for n in used if n in self.nodes or n in self.imports)


class SourceCollector:
    """Gathers definitions transitively from root names, then lists them in a valid order."""

    def __init__(self, generated: tuple[str, ...] = ()):
        """`generated`: names the generated file defines itself; copied code may use them."""
        self._generated = set(generated)
        self._indexes: dict[str, _ModuleIndex] = {}
        self._definitions: dict[tuple[str, str], Definition] = {}
        self._deps: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._imports: dict[str, _Import] = {}
        self._owner: dict[str, tuple[str, str]] = {}  # emitted name -> definition key

    def add(self, module: str, name: str) -> str:
        """Collect `module.name` and all it needs; returns the name it has in the generated code."""
        self._resolve(module, name, needed_by=f"{module}.{name}")
        return name

    def add_object(self, obj: object) -> str:
        """Collect a top-level function or class by object (e.g. a registry `build` callable)."""
        qualname = getattr(obj, "__qualname__", "")
        module = getattr(obj, "__module__", "") or ""
        ours = module.startswith("mixnas.") or module in plugins.LOADED
        if not ours or not qualname or "." in qualname or "<" in qualname:
            raise ExportSourceError(
                f"{obj!r} is not a top-level function or class of a mixnas module, so export "
                "cannot copy it"
            )
        return self.add(module, qualname)

    def _index(self, module: str) -> _ModuleIndex:
        if module not in self._indexes:
            try:
                self._indexes[module] = _ModuleIndex(module)
            except (ImportError, OSError, TypeError) as err:
                raise ExportSourceError(f"cannot read the source of {module}: {err}") from None
        return self._indexes[module]

    def _resolve(self, module: str, name: str, needed_by: str) -> tuple[str, str] | None:
        """The key of the definition `name` stands for in `module` (collected on first sight), or
        None for an external import."""
        index = self._index(module)
        if name in index.nodes:
            key = (module, _bound_names(index.nodes[name])[0])
            if key not in self._definitions:
                self._collect(index, name, key)
            return key
        binding = index.imports.get(name)
        if binding is None:
            raise ExportSourceError(f"{needed_by} needs {name!r}; {index.path} does not define it")
        if binding.target is None:
            self._claim_import(name, binding, index.path)
            return None
        target_module, target_name = binding.target
        if not target_name:
            raise ExportSourceError(
                f"{index.path} imports the mixnas module {target_module}; import the names it "
                "uses from it instead, so that export can copy them"
            )
        return self._resolve(target_module, target_name, needed_by=f"{module}.{name}")

    def _collect(self, index: _ModuleIndex, name: str, key: tuple[str, str]) -> None:
        definition = index.definition(name)
        self._definitions[key] = definition
        for bound in definition.names:
            self._claim(bound, key, index.path)
        self._deps[key] = set()
        for used in index.mentioned(name):
            if used in self._generated:
                continue
            dep = self._resolve(index.name, used, needed_by=f"{index.name}.{name}")
            if dep is not None and dep != key:
                self._deps[key].add(dep)

    def _claim(self, name: str, key: tuple[str, str], path: str) -> None:
        owner = self._owner.get(name)
        if owner is not None and owner != key or name in self._imports or name in self._generated:
            other = (
                owner[0] if owner is not None
                else self._imports[name].line if name in self._imports
                else "the generated code"
            )
            raise ExportSourceError(
                f"{path} and {other} both define the top-level name {name!r}; rename one of them "
                "so that both can live in one exported file"
            )
        self._owner[name] = key

    def _claim_import(self, name: str, binding: _Import, path: str) -> None:
        known = self._imports.get(name)
        if name in self._owner or known is not None and known.value is not binding.value:
            raise ExportSourceError(
                f"{path} binds {name!r} ({binding.line}) to something else than other copied "
                "code does; use one spelling for it across mixnas"
            )
        if known is None or binding.line < known.line:
            self._imports[name] = binding

    def import_lines(self) -> list[str]:
        return sorted({binding.line for binding in self._imports.values()})

    def definitions(self, module_order: tuple[str, ...] = ()) -> list[Definition]:
        """Every collected definition, dependencies first; otherwise grouped by module, modules
        in `module_order` (by name prefix) first, definitions in source order, so that the output
        reads like the originals."""

        def place(module: str) -> int:
            prefixes = [i for i, prefix in enumerate(module_order) if module.startswith(prefix)]
            return prefixes[0] if prefixes else len(module_order)

        order = {key: (place(key[0]), key[0], d.lineno) for key, d in self._definitions.items()}
        pending = {key: set(deps) for key, deps in self._deps.items()}
        users: dict[tuple[str, str], set[tuple[str, str]]] = {key: set() for key in pending}
        for key, deps in pending.items():
            for dep in deps:
                users[dep].add(key)
        ready = [(order[key], key) for key, deps in pending.items() if not deps]
        heapq.heapify(ready)
        result: list[Definition] = []
        while pending:
            if not ready:  # a cycle (mutual recursion): break it at the earliest definition
                key = min(pending, key=order.__getitem__)
                pending[key] = set()
                ready.append((order[key], key))
            _, key = heapq.heappop(ready)
            del pending[key]
            result.append(self._definitions[key])
            for user in sorted(users[key]):
                if user in pending and key in pending[user]:
                    pending[user].discard(key)
                    if not pending[user]:
                        heapq.heappush(ready, (order[user], user))
        return result

    def module_path(self, module: str) -> str:
        return self._index(module).path


def _check_portable(path: str, module: str, line: str, plugin: object) -> None:
    """A plugin's import must work where the exported model runs: torch or the standard library
    (mixnas's own code is copied); anything else is refused, naming the import."""
    top = module.partition(".")[0]
    if plugin is None or top == "torch" or top in sys.stdlib_module_names:
        return
    raise ExportSourceError(
        f"{path}: export cannot copy `{line}` into a standalone model.py (it needs only torch and "
        "the standard library); move what the primitive uses from there into the plugin file"
    )


def _bound_names(node: ast.stmt) -> tuple[str, ...]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return (node.name,)
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return tuple(dict.fromkeys(names))


def _spelled(prefix: str, alias: ast.alias) -> str:
    """The import statement for one alias; `import a.b as b` is spelled `from a import b`."""
    package, _, last = alias.name.rpartition(".")
    if prefix == "import" and package and alias.asname == last:
        return f"from {package} import {last}"
    return f"{prefix} {alias.name}" + (f" as {alias.asname}" if alias.asname else "")


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base
