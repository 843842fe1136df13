"""Where a corpus comes from: files, directories and globs, read as a stream of documents.

`resolve` turns the user's SRC arguments into a sorted, de-duplicated list of files (so the same
arguments always give the same corpus, whatever order the file system lists them in) and checks
each before anything is written. `documents` then yields one document at a time, never the whole
corpus: a plain-text file is one document, each line of a `.jsonl` file is one (its `text`
field), each row of a parquet file is one (its `text` column, read a row group at a time).
"""

from __future__ import annotations

import fnmatch
import glob
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mixnas.errors import DataError, first_line

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".text", ".markdown")
STRUCTURED = {".jsonl": "jsonl", ".parquet": "parquet"}
DEFAULT_INCLUDE = tuple(f"*{s}" for s in (*TEXT_SUFFIXES, *STRUCTURED))


@dataclass(frozen=True)
class Source:
    """One input file and how to read it: `text` (the whole file), `jsonl` or `parquet`."""

    path: Path
    kind: str
    size: int  # bytes on disk


def _kind(path: Path) -> str:
    return STRUCTURED.get(path.suffix.lower(), "text")


def resolve(args: list[str], include: tuple[str, ...] = DEFAULT_INCLUDE,
            exclude: tuple[str, ...] = ()) -> list[Source]:
    """Files named by `args` (files, directories searched recursively for `include` patterns,
    or globs), sorted by path and each listed once. In directories, hidden entries,
    `__pycache__` and any entry whose name matches an `exclude` pattern are skipped.

    Raises:
        DataError: an argument matches nothing, a directory holds no matching file, or a file
            cannot be read (parquet without pyarrow installed).
    """
    if not args:
        raise DataError("no SRC given: name files, directories or globs to read")
    found: dict[Path, None] = {}
    for arg in args:
        path = Path(arg).expanduser()
        if path.is_file():
            hits = [path]
        elif path.is_dir():
            hits = sorted(p for pattern in include for p in path.rglob(pattern)
                          if p.is_file() and not _skipped(p.relative_to(path), exclude))
            if not hits:
                raise DataError(f"{arg}: no file matching {', '.join(include)} in this directory")
        else:
            matches = glob.glob(str(path), recursive=True)
            hits = sorted(Path(p) for p in matches if Path(p).is_file())
            if not hits:
                raise DataError(f"{arg}: no such file, directory or matching glob")
        for hit in hits:
            found[hit.resolve()] = None
    sources = [Source(p, _kind(p), p.stat().st_size) for p in sorted(found)]
    _check_readable(sources)
    return sources


def _skipped(rel: Path, exclude: tuple[str, ...]) -> bool:
    return any(part.startswith(".") or part == "__pycache__"
               or any(fnmatch.fnmatch(part, pattern) for pattern in exclude)
               for part in rel.parts)


def _check_readable(sources: list[Source]) -> None:
    if any(s.kind == "parquet" for s in sources):
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            first = next(s for s in sources if s.kind == "parquet")
            raise DataError(f"{first.path}: reading parquet needs pyarrow "
                            "(pip install pyarrow)") from None
    for s in sources:
        try:
            with s.path.open("rb"):
                pass
        except OSError as exc:
            raise DataError(f"{s.path}: cannot read ({exc.strerror})") from None


def documents(source: Source) -> Iterator[bytes]:
    """The documents of one source as UTF-8 bytes (text files: their raw bytes).

    Raises:
        DataError: FILE:LINE for a jsonl line that is not a JSON object with a string `text`.
    """
    if source.kind == "text":
        yield source.path.read_bytes()
    elif source.kind == "jsonl":
        yield from _jsonl(source.path)
    else:
        yield from _parquet(source.path)


def _jsonl(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}:{number}: not a JSON line ({exc.args[0]})") from None
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(f"{path}:{number}: no 'text' string field in this JSON line")
            yield text.encode("utf-8", errors="replace")


def _parquet(path: Path) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid
        raise DataError(f"{path}: not a parquet file ({first_line(exc)})") from None
    if "text" not in table.schema_arrow.names:
        names = ", ".join(table.schema_arrow.names)
        raise DataError(f"{path}: no 'text' column (columns: {names})")
    for group in range(table.num_row_groups):
        for text in table.read_row_group(group, columns=["text"]).column("text").to_pylist():
            if text:
                yield text.encode("utf-8", errors="replace")
