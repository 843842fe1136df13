"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class MixnasError(Exception):
    """Base of every error that is the user's input rather than a bug."""


class ConfigError(MixnasError, ValueError):
    """A study, grammar or architecture file is wrong; the message names FILE:LINE."""


class StorageError(MixnasError):
    """The storage URL is malformed or the database cannot be reached or is of a newer schema."""


class StudyNotFound(MixnasError, LookupError):
    pass


class StudyExists(MixnasError):
    pass


class DataError(MixnasError, ValueError):
    """A corpus input is wrong (a missing file, an empty corpus, a jsonl line without `text`, a
    tokenizer that does not parse or does not match); the message names the file, line or option."""
