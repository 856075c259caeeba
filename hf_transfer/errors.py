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


# How torch (a wrapped OSError), safetensors (a Rust io::Error, Display or Debug form) and SQLite (Optuna's study)
# spell a full disk; a file-size limit (`ulimit -f`, FAT32's 4 GiB) is EFBIG; torch.save's zip writer reports any
# short write (either of those, and it loses the errno) as "unexpected pos N vs M".
_DISK_FULL_TEXT = re.compile(
    r"no space left on device|disk quota exceeded|os error 28\b|code: 28\b|StorageFull|database or disk is full", re.I
)
_TOO_LARGE_TEXT = re.compile(r"file too large|os error 27\b|FileTooLarge", re.I)
_SHORT_WRITE_TEXT = re.compile(r"unexpected pos \d+ vs \d+")

DISK_FULL = "no space left on device"
FILE_TOO_LARGE = "a file outgrew the file-size limit (ulimit -f) or the filesystem's largest file"
SHORT_WRITE = "a file could not be written in full (no space left on device, or a file-size limit)"
STORAGE_REMEDY = {
    DISK_FULL: "free some space",
    FILE_TOO_LARGE: "raise the limit (ulimit -f) or write to another filesystem",
    SHORT_WRITE: "free some space (or raise ulimit -f)",
}


def storage_failure(err: BaseException) -> str | None:
    """What failed when `err`, or an error it was raised from, is a write the storage refused: DISK_FULL (or a full
    quota), FILE_TOO_LARGE, or SHORT_WRITE (torch's message, which says neither); None for any other error. torch and
    safetensors wrap the OSError in their own exceptions, so their messages are read too."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        code = err.errno if isinstance(err, OSError) else None
        if code in (errno.ENOSPC, errno.EDQUOT) or _DISK_FULL_TEXT.search(str(err)):
            return DISK_FULL
        if code == errno.EFBIG or _TOO_LARGE_TEXT.search(str(err)):
            return FILE_TOO_LARGE
        if _SHORT_WRITE_TEXT.search(str(err)):
            return SHORT_WRITE
        err = err.__cause__ or err.__context__
    return None


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters, for error messages that quote a library."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s]+@", re.I)  # to the last @ before the path, as urllib3 reads it


def without_userinfo(text: str) -> str:
    """`text` with the `user:password@` of every URL in it removed: an endpoint given with credentials in it
    (`HF_ENDPOINT=https://user:pass@host`) was printed whole in the failure line."""
    return _USERINFO.sub(r"\1", text)
