"""The columns `predict` adds to each row, from logits: pure functions on arrays. Single-label: the argmax label and
softmax probabilities. Multi-label: every label whose sigmoid is above a threshold, 0.5 by default
(`core.tasks.predicted_labels`), and sigmoid probabilities. Rows with empty text get an empty label and no scores."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hf_transfer.core.tasks import MULTI_LABEL, predicted_labels

PREDICTED_LABEL, SCORE = "predicted_label", "score"


def output_column_names(label_names: list[str], top_k: int | None) -> list[str]:
    """The columns predict adds, in order."""
    names = [PREDICTED_LABEL, SCORE]
    if top_k:
        return names + [f"top{i}_{part}" for i in range(1, top_k + 1) for part in ("label", "score")]
    return names + [f"prob_{name}" for name in label_names]


def probabilities(logits: np.ndarray, problem_type: str) -> np.ndarray:
    """Softmax over labels, or an independent sigmoid per label for multi-label models (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    if problem_type == MULTI_LABEL:
        return 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without overflow for large |x|
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def prediction_columns(
    logits: np.ndarray,
    empty: np.ndarray,
    label_names: list[str],
    problem_type: str,
    top_k: int | None = None,
    threshold: float = 0.5,
) -> dict[str, np.ndarray | list]:
    """The added columns for a chunk of rows, in input order. `logits` holds the rows whose text is not empty, in
    order; `empty` marks every row of the chunk. `score` is the probability of the predicted label (multi-label: the
    highest label probability). Multi-label: the labels whose probability is above `threshold`."""
    empty = np.asarray(empty, dtype=bool)
    n, names = len(empty), np.array(label_names, dtype=object)
    probs = np.full((n, len(label_names)), np.nan)
    probs[~empty] = probabilities(logits, problem_type)
    if problem_type == MULTI_LABEL:
        hot = np.zeros((n, len(label_names)), dtype=bool)
        hot[~empty] = predicted_labels(logits, MULTI_LABEL, threshold).astype(bool)
        predicted = [list(names[row]) for row in hot]
    else:
        predicted = np.full(n, "", dtype=object)
        predicted[~empty] = names[predicted_labels(logits, problem_type)]
    columns: dict[str, np.ndarray | list] = {PREDICTED_LABEL: predicted, SCORE: np.nanmax(probs, axis=1, initial=-1)}
    columns[SCORE][empty] = np.nan
    if not top_k:
        columns.update({f"prob_{name}": probs[:, i] for i, name in enumerate(label_names)})
        return columns
    order = np.argsort(-np.nan_to_num(probs, nan=0.0), axis=1, kind="stable")[:, :top_k]
    for i in range(top_k):
        top_names = names[order[:, i]]
        top_names[empty] = ""
        columns[f"top{i + 1}_label"] = top_names
        columns[f"top{i + 1}_score"] = np.take_along_axis(probs, order[:, i : i + 1], axis=1)[:, 0]
    return columns


def empty_text_mask(values: pd.Series) -> np.ndarray:
    """Rows whose text is missing or blank, as `core.cleaning.clean_split` drops them from training data."""
    missing = values.isna().to_numpy()
    text = values.where(~missing, "").astype(str)
    return missing | text.str.strip().eq("").to_numpy()
