"""A run folder's checkpoints: which are complete (safe to resume from), and a full disk (or a file-size limit)
during training turned into one line, with the checkpoints a save cut off removed."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from hf_transfer.errors import STORAGE_REMEDY, DiskFullError, storage_failure

# The entry of `trainer_state.json`'s stateful_callbacks that names our own files of a checkpoint.
OWN_FILES_STATE = "CheckpointFiles"


def complete_checkpoints(output_dir: str | Path, own_files: bool = True) -> list[Path]:
    """`checkpoint-N` folders that a save finished, oldest first. Trainer writes `trainer_state.json` after its own
    files, so a folder without a readable one was cut off mid-save (a crash or a kill) and must not be resumed from;
    our files come after it (`on_save`), and its state names them (`resume_order.CheckpointFiles`): a folder that
    lacks one was cut off between the two."""
    folders = []
    for path in Path(output_dir).glob("checkpoint-*"):
        step = path.name.split("-", 1)[1]
        state = path / "trainer_state.json"
        if not (step.isdigit() and path.is_dir() and state.is_file()):
            continue
        try:
            saved = json.loads(state.read_bytes())
        except (OSError, ValueError):
            continue
        if not own_files or all((path / name).is_file() for name in _own_files(saved)):
            folders.append((int(step), path))
    return [path for _, path in sorted(folders)]


def _own_files(trainer_state) -> list[str]:
    named = (trainer_state.get("stateful_callbacks") or {}) if isinstance(trainer_state, dict) else {}
    entry = named.get(OWN_FILES_STATE) if isinstance(named, dict) else None
    entry = entry[0] if isinstance(entry, list) and entry else entry
    files = (entry.get("args") or {}).get("files") if isinstance(entry, dict) else None
    return [name for name in files or [] if isinstance(name, str) and "/" not in name]


@contextlib.contextmanager
def stop_cleanly(output_dir: str, is_main: bool):
    """Turn a full disk during training or saving into one `DiskFullError` line. A checkpoint cut off mid-save, by a
    full disk or by an interrupt (Ctrl-C, which `accelerate launch` passes to every process), is removed by the main
    process: it holds no `trainer_state.json`, so it would never be resumed from, and its weights, loadable as they
    are, were left beside the complete checkpoints. Those are left as they are."""
    try:
        yield
    except KeyboardInterrupt:
        if is_main:
            _remove_cut_off_checkpoints(output_dir)
        raise
    except Exception as err:
        if (what := storage_failure(err)) is None:
            raise
        if is_main:
            _remove_cut_off_checkpoints(output_dir)
        complete = complete_checkpoints(output_dir)
        remedy = STORAGE_REMEDY[what].capitalize()
        then = (  # with no checkpoint, a resume is refused, and a plain rerun finds the cut-off final save's files
            f"the last complete checkpoint, {complete[-1]}, is intact. {remedy}, then rerun with "
            "--resume_from_checkpoint true (or save less: save_total_limit, save_strategy no)"
            if complete
            else f"no checkpoint was complete. {remedy}, then run the same command with --overwrite_output_dir true"
        )
        raise DiskFullError(f"{what} while writing to {output_dir!r}; {then}.") from None


def _remove_cut_off_checkpoints(output_dir: str) -> None:
    """Those without Trainer's state. One that lacks only our files stays: Trainer may have rotated the checkpoints
    before it away already (save_total_limit), and its weights are whole; a resume passes over it, said."""
    complete = complete_checkpoints(output_dir, own_files=False)
    for path in Path(output_dir).glob("checkpoint-*"):
        if path.is_dir() and path not in complete:
            shutil.rmtree(path, ignore_errors=True)
