"""One run per output folder: an advisory lock held for as long as a command writes there.

Two `train` runs started on one `output_dir` both exited 0 with their checkpoints interleaved and one model lost;
two `search` runs on one study marked each other's running trial failed and removed its folder. The lock is a hidden
file beside the folder (`.NAME.hf-transfer.lock`), not inside it, so the folder's own checks, its card and a push
never see it. The kernel drops a `flock` when its process dies, so a killed run never blocks the next one; the file
names the run holding it, for the refusal."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from hf_transfer.errors import ConfigError

LOCK_SUFFIX = ".hf-transfer.lock"


def lock_path(folder: str | Path) -> Path:
    folder = Path(os.path.realpath(folder))  # a symlink and its target are one folder
    return folder.parent / f".{folder.name}{LOCK_SUFFIX}"


@contextlib.contextmanager
def folders_held(paths, command: str, is_main: bool = True):
    """Hold each of `paths` (output folders; None skipped) for the block, from the main process of a launch (the
    others write through it). A folder another live run holds is refused in one line, before any work."""
    held = []
    try:
        for path in dict.fromkeys(os.path.realpath(p) for p in paths if p) if is_main else ():  # each folder once
            if (lock := _hold(Path(path), command)) is not None:
                held.append(lock)
        yield
    finally:
        for fd, path in reversed(held):
            with contextlib.suppress(OSError):
                path.unlink()  # while still held: a run that opened it meanwhile sees another file and retries
            os.close(fd)


def _hold(folder: Path, command: str):
    """(descriptor, lock file) once held; None where no lock can be taken (no fcntl, as on Windows; an unwritable
    parent; a filesystem without locks), where the run goes on as before."""
    try:
        import fcntl
    except ImportError:
        return None
    path = lock_path(folder)
    for _ in range(5):
        made = not path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 300).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"output_dir {str(folder)!r} is in use by another hf-transfer run ({holder}); wait for it to end, or "
                "give another output_dir."
            ) from None
        except OSError:  # a filesystem without locks (NFS mounted nolock): no lock, and no file left behind
            os.close(fd)
            if made:
                path.unlink(missing_ok=True)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{command}, pid {os.getpid()} on {socket.gethostname()}".encode())
            return fd, path
        os.close(fd)  # the run that held it removed the file between our open and our lock: take the new one
    return None
