"""A folder for the prepared data of this process: Arrow files that datasets memory-maps, so the rows need not fit in
memory. Each `load_data` call gets its own subfolder; the whole folder is removed when the process exits, and a
folder left by a process of this machine that was killed is removed by the next one."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

_ROOT: list[Path] = []
# The host is in the name: a cache folder shared by several machines only ever loses folders of dead local processes.
_PREFIX = f"hf_transfer-prepared-{socket.gethostname()}-"


def _remove_orphans(parent: Path) -> None:
    """Remove this host's folders whose process no longer runs (killed before its exit handler could)."""
    for folder in parent.glob(f"{_PREFIX}*-*"):
        pid = folder.name[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, under another user
        return True
    return True


def process_tag() -> str:
    """`<host>-<pid>`, for the name of a folder this process builds and renames or removes when done: a later
    process of this host can tell one left by a process that was killed (SIGKILL, a crash) and remove it."""
    return f"{socket.gethostname()}-{os.getpid()}"


def remove_dead_builds(folders) -> None:
    """Remove those of `folders` (or files) named with `process_tag()` of this host by a process that no longer
    runs (a cache, an export or a predict output half-built when it was killed: 693 MB each for the SST-2 feature
    cache). One of another host sharing the disk, or of a live process, stays."""
    host = re.escape(socket.gethostname())
    for folder in folders:
        found = re.search(rf"[.-]{host}-(\d+)(\.tmp)?$", folder.name)
        if found and not _running(int(found.group(1))):
            shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink(missing_ok=True)


def _process_folder() -> Path:
    if not _ROOT:
        import datasets

        try:  # beside datasets' own cache: on disk, where a large dataset is expected to go
            parent = Path(datasets.config.HF_DATASETS_CACHE) / "hf_transfer"
            parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only cache: the system's temporary folder
            parent = Path(tempfile.gettempdir())
        _remove_orphans(parent)
        folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=parent))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _ROOT.append(folder)
    return _ROOT[0]


def scratch_folder() -> Path:
    """A new empty folder under this process's scratch folder."""
    return Path(tempfile.mkdtemp(prefix="data-", dir=_process_folder()))


@contextlib.contextmanager
def scratch_of_the_command():
    """The prepared data a command writes is removed when it returns: a process that runs several (a notebook calling
    `main`) piled it up until it exited, about 9 MB a run on SST-2."""
    before = set(_ROOT[0].iterdir()) if _ROOT else set()
    try:
        yield
    finally:
        for folder in set(_ROOT[0].iterdir()) - before if _ROOT else ():
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def new_folders_removed_if_empty(paths, is_main: bool = True):
    """Those of `paths` (output folders) that did not exist before the block, and hold no file when it raises (an
    interrupt, a refusal, a crash before the first save), are removed: a Ctrl-C during the first steps left an empty
    `output_dir` behind. A folder holding any file (a complete checkpoint, logs) stays, as does one that was there."""
    new = [Path(p) for p in paths if p and not Path(p).exists()]
    try:
        yield
    except BaseException:
        for folder in new if is_main else ():
            _remove_if_empty(folder)
        raise


def _remove_if_empty(folder: Path) -> None:
    """Remove `folder` when it holds only empty folders, deepest first; leave it whole when it holds any file."""
    if not folder.is_dir() or any(not p.is_dir() for p in folder.rglob("*")):
        return
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def can_write_in(folder: str | Path) -> bool:
    """`folder` exists or can be made, and a file can be created in it: a read-only `HF_HOME` (a shared cluster's)
    failed a finished training at its last step, losing the model."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def temporary_home(kind: str) -> Path:
    """A folder of this user's under the system's temporary folder, for what would go under an unwritable HF_HOME."""
    folder = Path(tempfile.gettempdir()) / f"hf_transfer-{os.getuid()}" / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder
