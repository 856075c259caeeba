"""The two classification problems hf-transfer handles, and how logits become predicted labels in each."""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np

from hf_transfer.errors import ConfigError

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
ProblemType = Literal["single_label_classification", "multi_label_classification"]
PROBLEM_TYPES: tuple[str, ...] = get_args(ProblemType)
# How tables and figures name the single-label scores a merge sweep can choose α on.
METRIC_NAMES = {"accuracy": "accuracy", "f1_macro": "macro-F1"}


def check_problem_type(problem_type: str) -> None:
    if problem_type not in PROBLEM_TYPES:
        raise ConfigError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}.")


def predicted_labels(logits, problem_type: str, threshold: float = 0.5) -> np.ndarray:
    """Class ids (argmax), or multi-hot 0/1 rows for multi-label: sigmoid(x) > threshold, computed on the logit
    (x > log(t / (1 - t)), x > 0 for 0.5) so that large logits cannot overflow."""
    logits = np.asarray(logits)
    if problem_type == MULTI_LABEL:
        return (logits > math.log(threshold / (1.0 - threshold))).astype(np.int64)
    return logits.argmax(-1)


def names_labels(names) -> bool:
    """Whether label names (in id order) name anything: transformers' placeholders `LABEL_0`, `LABEL_1`, ... do not."""
    names = [str(name) for name in names]
    return bool(names) and names != [f"LABEL_{i}" for i in range(len(names))]
