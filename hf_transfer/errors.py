"""The errors bad input raises. A leaf: every module may import it, it imports nothing of ours."""

from __future__ import annotations

import errno
import re


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


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a job scheduler, `accelerate launch` stopping its processes), raised where Ctrl-C raises
    KeyboardInterrupt, so the same cleanups run (staged folders, temporary files, cut-off checkpoints); the CLI
    prints one line and exits with status 143."""


# How torch (a wrapped OSError) and safetensors (a Rust io::Error, Display or Debug form) spell a full disk.
_DISK_FULL_TEXT = re.compile(r"no space left on device|disk quota exceeded|os error 28\b|code: 28\b|StorageFull", re.I)


def is_disk_full(err: BaseException) -> bool:
    """True when `err`, or an error it was raised from, is "no space left on device" (or a full quota). torch and
    safetensors wrap the OSError in their own exceptions, so their messages are read too."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _DISK_FULL_TEXT.search(str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters, for error messages that quote a library."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
