"""A folder for the prepared data of this process: Arrow files that datasets memory-maps, so the rows need not fit in
memory. Each `load_data` call gets its own subfolder; the whole folder is removed when the process exits."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

_ROOT: list[Path] = []


def _process_folder() -> Path:
    if not _ROOT:
        import datasets

        try:  # beside datasets' own cache: on disk, where a large dataset is expected to go
            parent = Path(datasets.config.HF_DATASETS_CACHE) / "hf_transfer"
            parent.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="prepared-", dir=parent))
        except OSError:  # a read-only cache: the system's temporary folder
            folder = Path(tempfile.mkdtemp(prefix="hf_transfer-prepared-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _ROOT.append(folder)
    return _ROOT[0]


def scratch_folder() -> Path:
    """A new empty folder under this process's scratch folder."""
    return Path(tempfile.mkdtemp(prefix="data-", dir=_process_folder()))
