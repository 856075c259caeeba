"""The one cache mechanism behind the teacher-logit and frozen-feature caches: fingerprints of what a cache depends on
(model weights, tokenizer, rows), a key built from them, and a checksummed arrow folder that is built once and
reused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

from hf_transfer.core.scratch import can_write_in, process_tag, remove_dead_builds, temporary_home
from hf_transfer.errors import ConfigError

# Bumped whenever what a cache holds changes, so every older cache gets a new key.
CACHE_FORMAT = 2
DATA_FILE = "data.arrow"
META_FILE = "meta.json"

logger = logging.getLogger(__name__)
# Config fields that do not change what a model computes: its names and labels, versions, the dtype it was saved in.
NON_COMPUTING_CONFIG_FIELDS = (
    "_name_or_path",
    "architectures",
    "id2label",
    "label2id",
    "num_labels",
    "problem_type",
    "finetuning_task",
    "transformers_version",
    "dtype",
    "torch_dtype",
)


def fingerprint_model(model, exclude: Collection[str] = ()) -> str:
    """sha256 of every tensor of the state dict (but those named in `exclude`): names, dtypes, shapes and bytes."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name in exclude:
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def computing_config(config) -> dict:
    """The fields of a model config that decide what the model computes (activation, norms, sizes...): a cache key
    part, since the same weights under another config compute something else."""
    return {key: value for key, value in config.to_dict().items() if key not in NON_COMPUTING_CONFIG_FIELDS}


# Parts of a fast tokenizer's definition that each call sets anew (`truncation=`, `max_length=`, `padding=`): they
# hold whatever the last call asked for, and the cache keys carry the length that matters themselves.
_CALL_STATE = ("truncation", "padding")


def fingerprint_tokenizer(tokenizer) -> str:
    """sha256 of what decides the token ids: the full tokenizer definition, or the vocabulary for slow tokenizers.
    Not the truncation and padding a fast tokenizer's last call left on it: the same tokenizer, once called to
    augment rows (or not), gave another key, so a cache was rebuilt, and under DDP each rank built its own."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        body = json.dumps({k: v for k, v in definition.items() if k not in _CALL_STATE}, sort_keys=True)
    else:
        body = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = json.dumps(
        [
            type(tokenizer).__name__,
            list(getattr(tokenizer, "model_input_names", [])),
            tokenizer.padding_side,
            tokenizer.truncation_side,
            str(tokenizer.pad_token),
        ]
    )
    return hashlib.sha256((body + extra).encode()).hexdigest()


# Rows of a text column read at a time by fingerprint_texts.
FINGERPRINT_CHUNK_ROWS = 65_536


def fingerprint_texts(texts: Sequence[str], pairs: Sequence[str] | None = None) -> str:
    """sha256 of the rows, in order (a length-prefixed encoding, so no two different lists collide). `texts` may be a
    lazy column (`datasets`' `Column`): it is read FINGERPRINT_CHUNK_ROWS rows at a time, never whole."""
    digest = hashlib.sha256()
    for start in range(0, len(texts), FINGERPRINT_CHUNK_ROWS):
        end = start + FINGERPRINT_CHUNK_ROWS
        chunk = texts[start:end]
        parts = [(t,) for t in chunk] if pairs is None else zip(chunk, pairs[start:end], strict=True)
        for row in parts:
            for part in row:
                raw = str(part).encode()
                digest.update(len(raw).to_bytes(8, "little"))
                digest.update(raw)
    digest.update(b"pairs" if pairs is not None else b"single")
    return digest.hexdigest()


def cache_key(**parts) -> str:
    """A short stable key from named parts (fingerprints, lengths, dtypes, options)."""
    payload = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def default_cache_dir(kind: str) -> Path:
    """`HF_HOME/hf_transfer/<kind>`: where caches of one kind (teacher_logits, frozen_features) live by default."""
    from huggingface_hub import constants

    from hf_transfer.core.runtime import said_once

    folder = Path(constants.HF_HOME) / "hf_transfer" / kind
    if can_write_in(folder):
        return folder
    fallback = temporary_home(kind)
    if not said_once(f"cache folder {kind}"):
        logger.warning(
            f"cannot write in {str(folder)!r} (HF_HOME {constants.HF_HOME!r}): the {kind} cache goes to "
            f"{str(fallback)!r}, which the system may clear; set HF_HOME, or the command's cache folder, to keep it."
        )
    return fallback


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_files(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.iterdir()) if path.is_file() and path.name != META_FILE]


def _file_records(folder: Path) -> dict[str, dict]:
    """Each file's sha256, size and modification time, as the cache's meta.json keeps them."""
    records = {}
    for path in _cache_files(folder):
        stat = path.stat()
        records[path.name] = {"sha256": _sha256(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return records


def _file_intact(path: Path, recorded) -> bool:
    """A file as its build left it: the same size and modification time (a hit of the 693 MB SST-2 feature cache
    hashed it anew, 1 to 4 s each time), else, when moved or copied, the same sha256. `recorded` is a bare sha256 in
    caches written before the size and time were kept."""
    if isinstance(recorded, str):
        return _sha256(path) == recorded
    stat = path.stat()
    if not isinstance(recorded, dict) or stat.st_size != recorded.get("size"):
        return False
    return stat.st_mtime_ns == recorded.get("mtime_ns") or _sha256(path) == recorded.get("sha256")


def _is_valid(folder: Path, key: str, rows: int | None) -> bool:
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_bytes())
    except (OSError, ValueError):
        return False
    rows_ok = rows is None or meta.get("rows") == rows
    files, recorded = _cache_files(folder), meta.get("files")
    if meta.get("key") != key or not rows_ok or not isinstance(recorded, dict):
        return False
    return sorted(recorded) == [path.name for path in files] and all(_file_intact(p, recorded[p.name]) for p in files)


def _note_checked_files(folder: Path) -> None:
    """After a hit whose files `_is_valid` checked by their sha256 (an entry written before sizes and times were
    kept, or one copied or moved), their size and time are noted, so later hits skip the hash (1 to 4 s for SST-2's
    feature cache, at every hit, for good). Written aside and renamed; left as it was where it cannot be written."""
    meta_path = folder / META_FILE
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        meta = json.loads(meta_path.read_bytes())
        recorded, changed = meta["files"], False
        for path in _cache_files(folder):
            stat, entry = path.stat(), recorded[path.name]
            now = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            if isinstance(entry, dict) and all(entry.get(k) == v for k, v in now.items()):
                continue
            sha256 = entry if isinstance(entry, str) else entry["sha256"]  # the one `_is_valid` just matched
            recorded[path.name], changed = {"sha256": sha256, **now}, True
        if changed:
            aside = meta_path.with_name(f".{META_FILE}.{process_tag()}.tmp")
            aside.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
            aside.replace(meta_path)


@contextlib.contextmanager
def _building(folder: Path, what: str):
    """Held while this process builds `folder`'s entry: another run that wants the same key waits, then reads it (two
    runs started together both spent the build time). An advisory flock on a hidden file beside the entry, dropped by
    the kernel if the process dies, and removed when done; where no lock can be taken (no fcntl, NFS without locks)
    they build side by side, as before, and the first renamed into place is used."""
    lock = folder.with_name(f".{folder.name}.lock")
    try:
        import fcntl

        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        fcntl = fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.warning(f"another run is building the {what.lower()} cache {folder.name}; waiting to use it.")
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass
        yield
    finally:
        if fd is not None:  # removed while held: a run waiting on it then finds the entry built (none is left behind)
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)


def load_or_build(
    cache_root: str | Path,
    key: str,
    rows: int | None,
    features,
    build: Callable[[], Iterable[dict]],
    *,
    what: str,
    description: dict | None = None,
):
    """The cached dataset for `key`: `rows` rows (or as many as `build` makes, when None) of `features` (a
    `datasets.Features`, or None to take the types from the first row), built from `build()` (an
    iterator of row dicts, streamed to one arrow file) when it is missing, stale or corrupted.

    The folder is named by the key; `meta.json` beside the arrow file holds the key, the row count and the files'
    checksums, so a truncated or corrupted cache is rebuilt, never used silently. It is written to a tmp folder and
    renamed into place, so a crash never leaves a half-written cache under the key. Returns `(dataset, info)`: where it
    lives, whether it was a hit, its bytes on disk and the build time. `what` names the cache in messages.
    """
    import datasets

    folder = Path(cache_root) / key
    info = {"path": str(folder), "key": key, "rows": rows}
    if folder.parent.is_dir() and can_write_in(folder.parent):  # a killed build of any key, up to 693 MB: a hit
        remove_dead_builds(folder.parent.glob("*.tmp-*"))  # had left it for the next miss to find
    if _is_valid(folder, key, rows):
        info.update(hit=True, build_seconds=0.0)
        _note_checked_files(folder)
    else:
        if not can_write_in(folder.parent):  # a cache folder given by flag on a read-only mount: a traceback
            raise ConfigError(
                f"the {what.lower()} cache folder {str(folder.parent)!r} cannot be written (read-only, or no "
                "permission) and holds no entry for this run; give a writable cache folder (teacher_cache_dir, "
                "frozen_features_cache_dir) or leave it unset."
            )
        with _building(folder, what):
            if _is_valid(folder, key, rows):  # another run built it while this one waited
                info.update(hit=True, build_seconds=0.0)
            else:
                started = time.perf_counter()
                _build_entry(folder, key, rows, features, build, what, description)
                info.update(hit=False, build_seconds=round(time.perf_counter() - started, 2))
    dataset = datasets.Dataset.from_file(str(folder / DATA_FILE))
    info["rows"] = len(dataset)
    info["disk_bytes"] = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return dataset, info


def _build_entry(folder: Path, key: str, rows, features, build, what: str, description) -> None:
    """Build `folder`'s entry in a tmp folder of this process and rename it into place (see `load_or_build`)."""
    from datasets.arrow_writer import ArrowWriter

    if folder.exists():
        logger.warning(f"{what} cache {folder} is incomplete or corrupted; rebuilding it.")
        # Renamed aside first: another run that found it damaged too removes it at the same moment.
        aside = folder.with_name(f"{folder.name}.stale.tmp-{process_tag()}")  # a kill here: removed as dead
        with contextlib.suppress(OSError):
            folder.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    remove_dead_builds(folder.parent.glob("*.tmp-*"))
    tmp = folder.with_name(f"{folder.name}.tmp-{process_tag()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with ArrowWriter(features=features, path=str(tmp / DATA_FILE)) as writer:
            for row in build():
                writer.write(row)
            written, _ = writer.finalize()
        if rows is not None and written != rows:
            raise RuntimeError(f"{what}: {written} rows were computed for {rows} training rows")
        meta = {"key": key, "rows": written, "files": _file_records(tmp), **(description or {})}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        try:
            tmp.replace(folder)
        except OSError:
            # Another run with the same key (where no lock could be taken) renamed its build into place first: the
            # key names the contents, so use that one.
            if not _is_valid(folder, key, rows):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
