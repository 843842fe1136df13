"""YAML read safely with line numbers: the one loader of study files, grammars and architectures.

Every user error must name FILE:LINE, so mappings and sequences remember the lines of their keys,
values and items. Numbers follow YAML 1.2's core schema, so a study file and a grammar read them
alike and as people write them: `1e-3` and `5e6` are floats (PyYAML's YAML 1.1 reads them as
strings), `010` is ten and `1:30` a string; `_` digit separators (`1_000_000`) stay allowed, as in
YAML 1.1 and Python. Everything else is `yaml.safe_load`'s: no tag builds a Python object.

A hostile file cannot exhaust the process: files over `MAX_FILE_BYTES`, nesting deeper than
`MAX_DEPTH` and documents whose aliases expand to more than `MAX_VALUES` values (an alias bomb:
each level repeating the one before) are refused with FILE:LINE before anything is built.

This module imports nothing of mixnas but `mixnas.errors`, so every layer may use it (the search
space, which may otherwise import only the kernels, included; tests/test_layers.py allows it).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from mixnas.errors import ConfigError, first_line

MAX_FILE_BYTES = 4 * 1024 * 1024  # study files, grammars and architectures are a few KiB
MAX_DEPTH = 64  # nested mappings/sequences; a grammar needs about 8
MAX_VALUES = 1_000_000  # values of the document with every alias expanded
MAX_DIGITS = 100  # an integer literal (Python refuses to parse over 4,300 digits)

_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_INT = re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class SourceError(ConfigError):
    """A problem at a place in a file; str(error) is exactly `FILE:LINE: message`."""

    def __init__(self, file: str, line: int | None, message: str):
        self.file, self.line, self.message = str(file), line, message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")

    def __reduce__(self):  # survives pickling (e.g. across Ray workers)
        return type(self), (self.file, self.line, self.message)


class YamlMap(dict):
    """A YAML mapping that remembers the line of itself, of its keys and of its values."""

    def __init__(self, line: int):
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}
        self.value_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        """The line of `key`, or of the mapping itself when the key is absent."""
        return self.key_lines.get(key, self.line)


class YamlSeq(list):
    """A YAML sequence that remembers the line of itself and of each item."""

    def __init__(self, line: int):
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class _Problem(Exception):
    """A problem the loader found at a line; `parse_yaml` names the file."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


class _Loader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader with located containers and YAML 1.2 numbers."""
    # SafeLoader's resolvers without YAML 1.1's int and float (added back below as YAML 1.2's)
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_document(self):
        self._depth, self._sizes = 0, {}
        try:
            return super().compose_document()
        finally:
            self._sizes = {}

    def compose_node(self, parent, index):
        """Compose as PyYAML does, bounding the nesting depth and the expanded size."""
        line = self.peek_event().start_mark.line + 1
        if self._depth >= MAX_DEPTH:
            raise _Problem(line, f"nested deeper than {MAX_DEPTH} levels")
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._sizes:  # an alias reuses its anchor's node (already sized)
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._sizes.get(id(item), 1) for item in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1)
                            for k, v in node.value)
            if size > MAX_VALUES:
                raise _Problem(line, f"aliases expand to more than {MAX_VALUES:,} values "
                                     "(an alias bomb?)")
            self._sizes[id(node)] = size
        return node

    def construct_located_map(self, node: yaml.MappingNode) -> YamlMap:
        self.flatten_mapping(node)
        out = YamlMap(node.start_mark.line + 1)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (dict, list)):
                raise _Problem(line, "a mapping key must be a plain value")
            if key in out:
                raise _Problem(line, f"duplicate key {key!r}")
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key], out.value_lines[key] = line, value_node.start_mark.line + 1
        return out

    def construct_located_seq(self, node: yaml.SequenceNode) -> YamlSeq:
        out = YamlSeq(node.start_mark.line + 1)
        for item in node.value:
            out.append(self.construct_object(item, deep=True))
            out.item_lines.append(item.start_mark.line + 1)
        return out

    def construct_yaml12_int(self, node: yaml.ScalarNode) -> int:
        text = self.construct_scalar(node).replace("_", "")
        if len(text) > MAX_DIGITS:
            raise _Problem(node.start_mark.line + 1, f"an integer of more than {MAX_DIGITS} digits")
        if text[:2] in ("0o", "0x"):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text)

    def construct_yaml12_float(self, node: yaml.ScalarNode) -> float:
        text = self.construct_scalar(node).replace("_", "").lower()
        if text.endswith(".inf"):
            return -math.inf if text.startswith("-") else math.inf
        return math.nan if text == ".nan" else float(text)


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_located_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_located_seq)
_Loader.add_constructor(_INT_TAG, _Loader.construct_yaml12_int)
_Loader.add_constructor(_FLOAT_TAG, _Loader.construct_yaml12_float)
_Loader.add_implicit_resolver(_INT_TAG, _INT, list("-+0123456789"))
_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+.0123456789"))


def parse_yaml(text: str, file: str = "<string>", error: type[SourceError] = SourceError) -> Any:
    """Parse YAML text into plain values, `YamlMap`s and `YamlSeq`s.

    Args:
        text: The YAML document.
        file: The file name that error messages start with.
        error: The `SourceError` subclass to raise (a grammar raises `GrammarError`).

    Returns:
        The document's value (None for an empty document).

    Raises:
        SourceError: (or `error`) `FILE:LINE: malformed YAML: ...`, a duplicate key, a key
            that is a mapping or a list, nesting deeper than `MAX_DEPTH`, or aliases that
            expand to more than `MAX_VALUES` values.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except _Problem as problem:
        raise error(file, problem.line, problem.message) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise error(file, line, f"malformed YAML: {err.problem or err.context}") from None
    except yaml.reader.ReaderError as err:  # a character YAML forbids (NUL, other controls)
        line = text.count("\n", 0, err.position) + 1
        code = err.character if isinstance(err.character, int) else ord(err.character)
        raise error(file, line, f"malformed YAML: character U+{code:04X} is not allowed in "
                                "YAML text") from None
    except yaml.YAMLError as err:
        raise error(file, None, f"malformed YAML: {first_line(err)}") from None


def read_text(path: str | Path, error: type[SourceError] = SourceError) -> str:
    """A text file's content.

    Raises:
        SourceError: (or `error`) `FILE: cannot read: ...` (no such file, a directory, no
            permission, not UTF-8, larger than `MAX_FILE_BYTES`).
    """
    path = Path(path)
    if not path.exists():
        raise error(str(path), None, "cannot read: no such file")
    if path.is_dir():
        raise error(str(path), None, "cannot read: is a directory, expected a YAML file")
    try:
        if not path.is_file():
            raise error(str(path), None, "cannot read: not a regular file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise error(str(path), None, f"cannot read: larger than {MAX_FILE_BYTES >> 20} MiB; "
                                         "a YAML file here is a few KiB")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(str(path), None, f"cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise error(str(path), None, f"cannot read: not UTF-8 text ({err.reason})") from None
    return text


def read_yaml(path: str | Path, error: type[SourceError] = SourceError) -> Any:
    """Read and parse a YAML file; raises what `read_text` and `parse_yaml` raise."""
    return parse_yaml(read_text(path, error), str(path), error)


def plain(value: Any) -> Any:
    """`YamlMap`s and `YamlSeq`s (at any depth) back to plain dicts and lists (JSON-storable)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
