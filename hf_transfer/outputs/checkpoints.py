"""A run folder's checkpoints: which are complete (safe to resume from), and a full disk (or a file-size limit)
during training turned into one line, with the checkpoints a save cut off removed."""

from __future__ import annotations

import contextlib
import enum
import importlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

from hf_transfer.errors import STORAGE_REMEDY, DiskFullError, storage_failure

# The entry of `trainer_state.json`'s stateful_callbacks that names our own files of a checkpoint.
OWN_FILES_STATE = "CheckpointFiles"


def complete_checkpoints(output_dir: str | Path, own_files: bool = True, ours_only: bool = False) -> list[Path]:
    """`checkpoint-N` folders that a save finished, oldest first. Trainer writes `trainer_state.json` after its own
    files, so a folder without a readable one was cut off mid-save (a crash or a kill) and must not be resumed from;
    our files come after it (`on_save`), and its state names them (`resume_order.CheckpointFiles`): a folder that
    lacks one was cut off between the two. `ours_only`: only checkpoints whose state names our files (a stock
    Trainer's names none)."""
    folders = []
    for path in Path(output_dir).glob("checkpoint-*"):
        step = path.name.split("-", 1)[1]
        if step.isdigit() and is_complete_checkpoint(path, own_files, ours_only):
            folders.append((int(step), path))
    return [path for _, path in sorted(folders)]


def is_complete_checkpoint(path: Path, own_files: bool = True, ours_only: bool = False) -> bool:
    """Whether one folder, whatever its name, is a checkpoint a save finished (see `complete_checkpoints`)."""
    state = path / "trainer_state.json"
    if not (path.is_dir() and state.is_file()):
        return False
    try:
        named = _own_files(json.loads(state.read_bytes()))
    except (OSError, ValueError):
        return False
    return bool(named or not ours_only) and (not own_files or all((path / name).is_file() for name in named))


def damaged_file(checkpoint: Path) -> str | None:
    """The name of a weights or state file of a complete checkpoint that is cut short (a power cut, or a disk that
    failed under a save that was reported finished), found without loading it: a safetensors file shorter than its
    header says, or a torch file (optimizer, scheduler, RNG states, arguments) whose zip directory is missing or
    unreadable. A resume read it deep inside Trainer, after the model had loaded: torch's "PytorchStreamReader
    failed reading zip archive" traceback."""
    for path in sorted(checkpoint.rglob("*")):
        if path.suffix in (".safetensors", ".pt", ".pth", ".bin") and path.is_file() and not _whole(path):
            return str(path.relative_to(checkpoint))
    return None


def _whole(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            head = file.read(8)
            if path.suffix == ".safetensors":
                header_size = int.from_bytes(head, "little") if len(head) == 8 else -1
                size = path.stat().st_size
                if not 0 <= header_size <= size - 8:
                    return False
                header = json.loads(file.read(header_size))
                ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
                return 8 + header_size + max(ends, default=0) <= size
        if head.startswith(b"\x80"):  # torch's legacy (pre-zip) format: a bare pickle, nothing to check cheaply
            return True
        with zipfile.ZipFile(path):  # reads the directory at the end of the file: gone when the file is cut short
            return True
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, zipfile.BadZipFile):
        return False


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


def saved_training_arguments(checkpoint: Path):
    """The fields of the `TrainingArguments` a checkpoint saved (`training_args.bin`, a torch pickle) as attributes of
    an inert object, read without running anything from the file: Trainer's own resume never unpickles it, and a
    checkpoint handed over by someone else could hold any pickle. Enums of the libraries that define the arguments
    come back as themselves, every other class as a plain record of its state. None when missing or unreadable."""
    path = checkpoint / "training_args.bin"
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl")
            return _InertUnpickler(io.BytesIO(archive.read(name))).load()
    except Exception:  # missing, legacy format, another version's classes: the resume goes on unchecked
        return None


class _Record:
    """What any class of a saved pickle becomes: its state, and nothing it could run."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update({k: v for k, v in state.items() if isinstance(k, str)})


class _InertUnpickler(pickle.Unpickler):
    _BUILTINS = {"frozenset": frozenset, "set": set, "complex": complex}
    _ENUM_PACKAGES = ("transformers", "accelerate", "hf_transfer", "torch")

    def find_class(self, module, name):
        if module == "builtins":
            return self._BUILTINS.get(name, _Record)
        if module.split(".", 1)[0] in self._ENUM_PACKAGES and "." not in name:
            try:
                found = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                return _Record
            if isinstance(found, type) and issubclass(found, enum.Enum):
                return found
        return _Record

    def persistent_load(self, pid):  # a tensor's storage: none belongs in the arguments
        raise pickle.UnpicklingError("tensor data in training_args.bin")


def finished_at(checkpoint: Path) -> tuple[int, float] | None:
    """(its step, the run's epochs) when `checkpoint` is the last step of the run that saved it, else None."""
    state = json.loads((checkpoint / "trainer_state.json").read_bytes())
    step, last = state.get("global_step") or 0, state.get("max_steps") or 0
    return (step, state.get("num_train_epochs") or 0) if last and step >= last else None


def checkpoint_launch(checkpoint: Path) -> tuple[int | None, int | None]:
    """(processes, batch per process) of the run that saved a Trainer checkpoint, None where it cannot be told:
    Trainer saves one `rng_state_<rank>.pth` per process of a multi-process run (`rng_state.pth` alone), and its
    `train_batch_size` (per device, times the GPUs of a single process) in trainer_state.json."""
    ranks = len(list(checkpoint.glob("rng_state_*.pth")))
    processes = ranks or (1 if (checkpoint / "rng_state.pth").is_file() else None)
    return processes, json.loads((checkpoint / "trainer_state.json").read_bytes()).get("train_batch_size")
