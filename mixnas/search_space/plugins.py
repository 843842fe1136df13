"""Loading users' primitives and metrics: plugin files, importable modules and installed packages.

A grammar names its plugins (`plugins: [my_mixers.py, mypkg.mixers]`: paths relative to the
grammar file, or module names); installed packages declare theirs under the entry point group
`mixnas.primitives`. Executing a plugin runs its `register(...)` calls. Each loaded plugin is kept
as a `PluginSource` (its source text and sha256) because the source, not the path, is what
travels: Ray workers on other machines execute the same text (`load_sources`), a study records
the hashes so that `resume` notices changed code, and export copies the classes from it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

from mixnas.errors import PluginError
from mixnas.search_space import registry

ENTRY_POINT_GROUP = "mixnas.primitives"


@dataclass(frozen=True)
class PluginSource:
    """One loaded plugin module.

    Args:
        ref: How it was named: a path as the grammar wrote it, a module name, or `entry point X`.
        module: The module name it is executed as.
        path: The file it was read from ('' when unknown).
        source: Its source text.
        sha256: The source's hash.
    """

    ref: str
    module: str
    path: str
    source: str
    sha256: str

    def record(self) -> dict[str, str]:
        """What a study stores about it (no source text)."""
        return {"ref": self.ref, "module": self.module, "path": self.path, "sha256": self.sha256}


LOADED: dict[str, PluginSource] = {}  # module name -> the plugin source executed under it
_entry_points_done = False


def is_file_ref(ref: str) -> bool:
    """A plugin reference names a file (ends in .py or has a path separator), else a module."""
    return ref.endswith(".py") or "/" in ref or "\\" in ref


def load_plugin(ref: str, base_dir: str | Path = ".") -> PluginSource:
    """Load one plugin named by a grammar (or `primitive check`).

    Args:
        ref: A `.py` path (relative to `base_dir`) or an importable module name.
        base_dir: The grammar file's folder.

    Returns:
        The loaded plugin's source record.

    Raises:
        PluginError: The file or module is missing or raises on import, or its registrations
            clash or are malformed; the message names the file (and line where known).
    """
    registry.load_builtin_primitives()
    if is_file_ref(ref):
        path = (Path(base_dir) / ref).resolve()
        if not path.is_file():
            raise PluginError(f"{path}: plugin file not found")
        stem = "".join(c if c.isalnum() else "_" for c in path.stem)
        module = f"mixnas_plugin_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        return _execute(PluginSource(ref, module, str(path), *_read(path)))
    try:
        spec = importlib.util.find_spec(ref)
    except (ImportError, ValueError) as exc:
        raise PluginError(f"{ref}: plugin module does not import: {_one_line(exc)}") from None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise PluginError(f"{ref}: no importable Python module of that name")
    return _execute(PluginSource(ref, ref, spec.origin, *_read(Path(spec.origin))))


def load_sources(sources: list[PluginSource] | tuple[PluginSource, ...]) -> None:
    """Execute plugins shipped from the driver (a Ray worker's first act); a module already
    executed from the same source is skipped, one whose source changed is executed again."""
    registry.load_builtin_primitives()
    for source in sources:
        if LOADED.get(source.module) != source:
            _execute(source)


def load_records(records: list[dict[str, str]]) -> list[PluginSource]:
    """Load the plugins a study recorded (`PluginSource.record()`), from where they were then:
    what export and other readers of a finished study need to build its designs.

    Raises:
        PluginError: A plugin is gone or does not load (the message names its file).
    """
    registry.load_builtin_primitives()  # and the installed packages' entry points
    out = []
    for record in records:
        if record["ref"].startswith("entry point "):
            continue
        out.append(load_plugin(record.get("path") or record["ref"]))
    return out


def loaded() -> list[PluginSource]:
    """Every plugin this process has executed, in load order."""
    return list(LOADED.values())


def with_installed(plugins: tuple[PluginSource, ...] | list[PluginSource]) -> list[PluginSource]:
    """`plugins` (a grammar's) followed by the installed packages' plugins: what a study uses."""
    installed = [p for p in LOADED.values() if p.ref.startswith("entry point ")]
    return list(dict.fromkeys([*plugins, *installed]))


def load_entry_points() -> None:
    """Import the installed packages' plugins (entry point group `mixnas.primitives`) once."""
    global _entry_points_done
    if _entry_points_done:
        return
    _entry_points_done = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        spec = importlib.util.find_spec(entry.module)
        if spec is None or not spec.origin:
            raise PluginError(f"entry point {entry.name} ({entry.value}): module not found")
        path = Path(spec.origin)
        _execute(PluginSource(f"entry point {entry.name}", entry.module, str(path), *_read(path)))


def _read(path: Path) -> tuple[str, str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PluginError(f"{path}: cannot read plugin: {_one_line(exc)}") from None
    return text, hashlib.sha256(text.encode()).hexdigest()


def _execute(plugin: PluginSource) -> PluginSource:
    """Run a plugin's source as module `plugin.module`, its registrations credited to its file;
    the same source already run is not run again, and a failure takes back what it registered."""
    if LOADED.get(plugin.module) == plugin:
        return plugin
    where = plugin.path or plugin.ref
    before = set(registry.ORIGIN)
    module = types.ModuleType(plugin.module)
    module.__file__ = plugin.path or None
    # a spec, so that importlib.util.find_spec(name) still works once it sits in sys.modules
    module.__spec__ = importlib.util.spec_from_loader(plugin.module, None,
                                                      origin=plugin.path or None)
    module.__package__ = plugin.module.rpartition(".")[0]  # relative imports of a package module
    previous = sys.modules.get(plugin.module)
    sys.modules[plugin.module] = module  # dataclasses and pickling look classes up there
    registry._loading.append(where)
    try:
        code = compile(plugin.source, where, "exec")
        exec(code, module.__dict__)
    except PluginError:
        _undo(plugin.module, previous, before)
        raise
    except BaseException as exc:  # any failure of user code is the user's
        _undo(plugin.module, previous, before)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginError(f"{where}{_line_in(exc, where)}: plugin does not import: "
                          f"{_one_line(exc)}") from None
    finally:
        registry._loading.pop()
    LOADED[plugin.module] = plugin
    return plugin


def _undo(name: str, previous: types.ModuleType | None, before: set[str]) -> None:
    for key in set(registry.ORIGIN) - before:
        del registry.ORIGIN[key]
        registry.REGISTRY.pop(key, None)
        registry.METRICS.pop(key.removeprefix("metric:"), None)
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


def _line_in(exc: BaseException, filename: str) -> str:
    """`:LINE` of the deepest frame of `exc` inside `filename` ('' when none)."""
    if isinstance(exc, SyntaxError) and exc.filename == filename and exc.lineno:
        return f":{exc.lineno}"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return f":{lines[-1]}" if lines else ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
