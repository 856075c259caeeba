"""Teachers for distillation: checking them before any weight is loaded, aligning their labels with the data's,
fingerprinting, the on-disk teacher-logit cache, and the teacher-vs-student speed measurement.

The cache is a `datasets.Dataset` saved with `save_to_disk` (arrow, no pickle), one row per training row, in the
training set's order. Its folder name is a fingerprint of everything the logits depend on, so a changed teacher,
tokenizer, `max_seq_length`, dtype or data gets a new cache; a `meta.json` beside the arrow files holds their
checksums, so a truncated or corrupted cache is detected and rebuilt, never used silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from .config import ConfigError
from .distillation import check_label_sets

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
_DEFAULT_LABEL = re.compile(r"^LABEL_(\d+)$")


# --- checks ---------------------------------------------------------------------------------------------------------


def check_teacher_is_classifier(config, name: str) -> None:
    """The teacher must be a fine-tuned sequence classifier: its logits are the soft targets."""
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        found = ", ".join(architectures) or "none recorded"
        raise ConfigError(
            f"teacher {name!r} is not a sequence classifier (architectures: {found}); distil from a model "
            "fine-tuned on your labels, e.g. the output_dir of `hf-transfer train`."
        )


def teacher_label_permutation(teacher_config, label_names: Sequence[str], name: str) -> list[int] | None:
    """Indices that put the teacher's logits in the data's label order (None when already in order).

    Labels are matched by name. A teacher whose labels are unnamed (`LABEL_0`, `LABEL_1`, ...) is matched by id when
    it has as many labels as the data, with a warning.
    """
    id2label = {int(k): str(v) for k, v in (teacher_config.id2label or {}).items()}
    names = [id2label[i] for i in sorted(id2label)]
    if len(names) == len(label_names) and all(_DEFAULT_LABEL.match(n) for n in names):
        if list(label_names) != names:
            logger.warning(
                f"Teacher {name!r} has unnamed labels {names}; matching them to the data's {list(label_names)} by id."
            )
        return None
    try:
        perm = check_label_sets(dict(enumerate(names)), dict(enumerate(label_names)))
    except ConfigError:
        raise ConfigError(
            f"teacher {name!r} has labels {names} but the data has {list(label_names)}; distillation needs the same "
            "label set (set class_names or label_mapping so the data's names match the teacher's)."
        ) from None
    if perm is not None:
        logger.info(f"Teacher {name!r} orders its labels {names}; reordering its logits to {list(label_names)}.")
    return perm


# --- fingerprints ---------------------------------------------------------------------------------------------------


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


def fingerprint_tokenizer(tokenizer) -> str:
    """sha256 of what decides the token ids: the full tokenizer definition, or the vocabulary for slow tokenizers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
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


def fingerprint_texts(texts: Sequence[str], pairs: Sequence[str] | None = None) -> str:
    """sha256 of the rows, in order (a length-prefixed encoding, so no two different lists collide)."""
    digest = hashlib.sha256()
    for i, text in enumerate(texts):
        for part in (text,) if pairs is None else (text, pairs[i]):
            raw = str(part).encode()
            digest.update(len(raw).to_bytes(8, "little"))
            digest.update(raw)
    digest.update(b"pairs" if pairs is not None else b"single")
    return digest.hexdigest()


def cache_key(**parts) -> str:
    """A short stable key from named parts (fingerprints, lengths, dtypes, options)."""
    payload = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hf_transfer" / "teacher_logits"


# --- the logit cache ------------------------------------------------------------------------------------------------


def _file_checksums(folder: Path) -> dict[str, str]:
    sums = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != "meta.json":
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            sums[path.name] = digest.hexdigest()
    return sums


def _valid_cache(folder: Path, key: str, rows: int) -> bool:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("key") == key and meta.get("rows") == rows and meta.get("files") == _file_checksums(folder)


def logits_to_columns(logits: np.ndarray, top_k: int | None) -> dict[str, np.ndarray]:
    """The cache's columns: all logits, or the top k values and their label indices (largest first)."""
    logits = np.asarray(logits, dtype=np.float32)
    if top_k is None or top_k >= logits.shape[-1]:
        return {"teacher_logits": logits}
    indices = np.argsort(-logits, axis=-1, kind="stable")[:, :top_k]
    values = np.take_along_axis(logits, indices, axis=-1)
    return {"teacher_topk_values": values, "teacher_topk_indices": indices.astype(np.int64)}


def load_or_build_logit_cache(
    cache_root: Path, key: str, rows: int, build, *, top_k: int | None = None, description: dict | None = None
):
    """The cached teacher-logit dataset for `key`, built with `build()` (→ float32 logits, one row per example) when
    it is missing, stale or corrupted. Returns `(dataset, info)`; `info` says whether it was a hit, where it lives,
    its size on disk and how long building took.
    """
    import datasets

    folder = Path(cache_root) / key
    info = {"path": str(folder), "key": key, "top_k": top_k}
    if _valid_cache(folder, key, rows):
        info.update(hit=True, build_seconds=0.0)
    else:
        if folder.exists():
            logger.warning(f"Teacher-logit cache {folder} is incomplete or corrupted; rebuilding it.")
            shutil.rmtree(folder)
        started = time.perf_counter()
        logits = build()
        if len(logits) != rows:
            raise RuntimeError(f"the teacher produced {len(logits)} rows of logits for {rows} training rows")
        columns = logits_to_columns(logits, top_k)
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        features = datasets.Features({k: datasets.List(datasets.Value(str(v.dtype))) for k, v in columns.items()})
        datasets.Dataset.from_dict({k: v.tolist() for k, v in columns.items()}, features=features).save_to_disk(
            str(tmp)
        )
        meta = {"key": key, "rows": rows, "files": _file_checksums(tmp), **(description or {})}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        tmp.replace(folder)  # atomic: a crash leaves a tmp folder, never a half-written cache under the key
        info.update(hit=False, build_seconds=round(time.perf_counter() - started, 2))
    dataset = datasets.load_from_disk(str(folder))
    info["disk_bytes"] = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return dataset, info


# --- speed ----------------------------------------------------------------------------------------------------------


def measure_speed(models: dict, texts: list[str], pairs: list[str] | None, *, batch_size: int, max_length: int):
    """Inference throughput (samples/s) of each `name: (model, tokenizer)` on the same texts.

    The models take turns, twice, after a warm-up batch; each keeps its faster pass, so a burst of load on a shared
    machine hurts neither side alone. Also returns each model's logits.
    """
    from .inference import predict_logits

    best = dict.fromkeys(models, float("inf"))
    logits = {}
    for model, tokenizer in models.values():
        predict_logits(model, tokenizer, texts[:batch_size], None if pairs is None else pairs[:batch_size],
                       batch_size=batch_size, max_length=max_length, progress=False)  # fmt: skip
    for _ in range(2):
        for name, (model, tokenizer) in models.items():
            started = time.perf_counter()
            logits[name] = predict_logits(
                model, tokenizer, texts, pairs, batch_size=batch_size, max_length=max_length, progress=False
            )
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: len(texts) / seconds for name, seconds in best.items()}, logits
