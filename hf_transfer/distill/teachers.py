"""Teachers for distillation: checking them before any weight is loaded, aligning their labels with the data's, and
the on-disk teacher-logit cache (one row per training row, in the training set's order; see `core/caching.py`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hf_transfer.core.caching import load_or_build
from hf_transfer.core.cleaning import label_name_keys, listed
from hf_transfer.core.folders import embedding_model_hint
from hf_transfer.core.inference import length_sorted_batches
from hf_transfer.core.models import check_not_regression, is_sequence_classifier
from hf_transfer.core.runtime import progress_bar
from hf_transfer.distill.losses import pooled_states
from hf_transfer.distill.students import check_label_sets
from hf_transfer.errors import ConfigError

logger = logging.getLogger(__name__)

_DEFAULT_LABEL = re.compile(r"^LABEL_(\d+)$")


def check_teacher_is_classifier(config, name: str) -> None:
    """The teacher must be a fine-tuned sequence classifier: its logits are the soft targets."""
    if not is_sequence_classifier(config):
        found = ", ".join(getattr(config, "architectures", None) or []) or "none recorded"
        hint = embedding_model_hint(name)
        advice = (
            f".{hint}"
            if hint
            else ("; distil from a model fine-tuned on your labels, e.g. the output_dir of `hf-transfer train`.")
        )
        raise ConfigError(f"teacher {name!r} is not a sequence classifier (architectures: {found}){advice}")
    check_not_regression(config, name, "distill", role="teacher ")


def teacher_label_permutation(teacher_config, label_names: Sequence[str], name: str) -> list[int] | None:
    """Indices that put the teacher's logits in the data's label order (None when already in order).

    Labels are matched by name. A teacher whose labels are unnamed (`LABEL_0`, `LABEL_1`, ...) is matched by id when
    it has as many labels as the data, with a warning, unless the data's labels bear those very names.
    """
    id2label = {int(k): str(v) for k, v in (teacher_config.id2label or {}).items()}
    names = [id2label[i] for i in sorted(id2label)]
    unnamed = all(_DEFAULT_LABEL.match(n) for n in names) and set(names) != {str(n) for n in label_names}
    if len(names) == len(label_names) and unnamed:
        if list(label_names) != names:
            logger.warning(
                f"Teacher {name!r} has unnamed labels {listed(names)}; matching them to the data's "
                f"{listed(label_names)} by id."
            )
        return None
    try:
        # The teacher's names read as the data's are: a teacher trained on a csv's false/true matches True/False.
        perm = check_label_sets(dict(enumerate(label_name_keys(names))), dict(enumerate(label_names)))
    except ConfigError:
        raise ConfigError(
            f"teacher {name!r} has labels {listed(names)} but the data has {listed(label_names)}; distillation needs "
            "the same "
            "label set (set class_names or label_mapping so the data's names match the teacher's)."
        ) from None
    if perm is not None:
        logger.warning(
            f"Teacher {name!r} orders its labels {listed(names)}; reordering its logits to {listed(label_names)}."
        )
    return perm


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
    """The cached teacher dataset for `key`, built with `build()` when it is missing, stale or corrupted (see
    `caching.load_or_build`): `build()` returns float32 logits, one row per example, or `(logits, hidden)` with
    `hidden` the pooled, normalised states at the mapped blocks, `(rows, blocks, hidden size)`, stored as
    `teacher_hidden` beside the logits. Returns `(dataset, info)`."""

    def rows_of_targets():
        built = build()
        logits, hidden = built if isinstance(built, tuple) else (built, None)
        if len(logits) != rows:
            raise RuntimeError(f"the teacher produced {len(logits)} rows of logits for {rows} training rows")
        columns = logits_to_columns(logits, top_k)
        if hidden is not None:
            columns["teacher_hidden"] = np.asarray(hidden, dtype=np.float32)
        for i in range(rows):
            yield {name: values[i] for name, values in columns.items()}

    # The columns' types are read off the first row: full logits, or top-k values and indices when k < labels.
    dataset, info = load_or_build(
        cache_root, key, rows, None, rows_of_targets, what="Teacher-logit", description=description
    )
    info["bytes_per_row"] = round(info["disk_bytes"] / max(rows, 1), 1)
    return dataset, {**info, "top_k": top_k, "hidden_targets": "teacher_hidden" in dataset.column_names}


def teacher_outputs(
    teacher, tokenizer, texts, pairs, *, batch_size: int, max_length: int, blocks=None, pooling=None, desc="teacher"
):
    """The teacher's logits for `texts` in input order (length-sorted batches, no gradient, a progress bar) and,
    when `blocks` are given, its `pooling`-pooled normalised states after each of those blocks, `(rows, blocks,
    hidden size)`."""
    device = next(teacher.parameters()).device
    logits = np.zeros((len(texts), teacher.config.num_labels), dtype=np.float32)
    hidden = None if not blocks else np.zeros((len(texts), len(blocks), teacher.config.hidden_size), np.float32)
    teacher.eval()
    batches = length_sorted_batches(tokenizer, texts, pairs, batch_size=batch_size, max_length=max_length)
    with torch.inference_mode(), progress_bar(total=len(texts), desc=desc, unit="row") as bar:
        for idx, batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = teacher(**batch, output_hidden_states=bool(blocks))
            logits[idx] = out.logits.float().cpu().numpy()
            if blocks:
                mask = batch.get("attention_mask")
                pooled = [pooled_states(out.hidden_states[b + 1], mask, pooling) for b in blocks]
                hidden[idx] = torch.stack(pooled, 1).cpu().numpy()
            bar.update(len(idx))
    return logits, hidden
