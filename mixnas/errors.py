"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MixnasError(Exception):
    """Base of every error that is the user's input rather than a bug."""


class ConfigError(MixnasError, ValueError):
    """A study, grammar or architecture file is wrong; the message names FILE:LINE."""


class PluginError(ConfigError):
    """A user's plugin (a primitive or metric module) does not import, clashes with a known name,
    lacks a required method, or changed since its study started; the message names the file."""


class StorageError(MixnasError):
    """The storage URL is malformed or the database cannot be reached or is of a newer schema."""


class StudyNotFound(MixnasError, LookupError):
    pass


class StudyExists(MixnasError):
    pass


class DataError(MixnasError, ValueError):
    """A corpus input is wrong (a missing file, an empty corpus, a jsonl line without `text`, a
    tokenizer that does not parse or does not match); the message names the file, line or option."""


def did_you_mean(name: object, known: Iterable[object]) -> str:
    """` (did you mean 'x'?)` naming the closest of `known` to `name`, or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def first_line(error: BaseException) -> str:
    """An exception as one line: its message's first line, or its type's name when it has none.

    A KeyError's message is its key as given, not the key's repr that `str(KeyError)` gives.
    """
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__
