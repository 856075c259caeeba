"""The errors bad input raises. A leaf: every module may import it, it imports nothing of ours."""

from __future__ import annotations


class HfTransferError(ValueError):
    """A problem with the user's input: the CLI prints its message as one line and exits with status 2."""


class ConfigError(HfTransferError):
    """A configuration value is invalid or conflicts with another one."""


class DataError(HfTransferError):
    """A data file or dataset cannot be used as given."""


class DiskFullError(RuntimeError):
    """The disk filled up during a run: the CLI prints one line and exits with status 1."""


class TrainingDivergedError(RuntimeError):
    """Training left NaN or inf in the weights: the CLI prints one line and exits with status 1, and no final model
    is saved."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters, for error messages that quote a library."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
