"""Teachers for distillation: checking them before any weight is loaded, aligning their labels with the data's, and
the on-disk teacher-logit cache (one row per training row, in the training set's order; see `core/caching.py`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hf_transfer.core.caching import load_or_build
from hf_transfer.core.models import is_sequence_classifier
from hf_transfer.distill.students import check_label_sets
from hf_transfer.errors import ConfigError

logger = logging.getLogger(__name__)

_DEFAULT_LABEL = re.compile(r"^LABEL_(\d+)$")


def check_teacher_is_classifier(config, name: str) -> None:
    """The teacher must be a fine-tuned sequence classifier: its logits are the soft targets."""
    if not is_sequence_classifier(config):
        found = ", ".join(getattr(config, "architectures", None) or []) or "none recorded"
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
    it is missing, stale or corrupted (see `caching.load_or_build`). Returns `(dataset, info)`."""

    def rows_of_logits():
        logits = build()
        if len(logits) != rows:
            raise RuntimeError(f"the teacher produced {len(logits)} rows of logits for {rows} training rows")
        columns = logits_to_columns(logits, top_k)
        for i in range(rows):
            yield {name: values[i] for name, values in columns.items()}

    # The columns' types are read off the first row: full logits, or top-k values and indices when k < labels.
    dataset, info = load_or_build(
        cache_root, key, rows, None, rows_of_logits, what="Teacher-logit", description=description
    )
    return dataset, {**info, "top_k": top_k}
