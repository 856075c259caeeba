"""Classification metrics and the `compute_metrics` hook for `Trainer`.

The numbers come from `evaluate` modules shipped in `core/metric_modules/` (so they load without the Hub), which
compute with scikit-learn."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_transfer.core.tasks import MULTI_LABEL, ProblemType, check_problem_type, predicted_labels
from hf_transfer.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import EvalPrediction


logger = logging.getLogger(__name__)

METRICS_DIR = Path(__file__).parent / "metric_modules"


# Per-class keys are `<metric>_<label name>`: a label may not take the name of an average.
_RESERVED_NAMES = {"macro", "micro", "weighted", "per_label"}


@functools.cache
def load_metric(name: str):
    """Load one of the metric modules shipped in `hf_transfer/metrics/` (offline), once per process."""
    import evaluate

    available = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
    if name not in available:
        raise ConfigError(f"Unknown metric {name!r}: hf_transfer ships {available}.")
    _writable_caches(evaluate.config)
    # In memory: no cache files or locks under ~/.cache, which several processes (DDP) would share.
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def _writable_caches(config) -> None:
    """`evaluate.load` copies the metric's script into HF_HOME/modules and makes its folder under HF_HOME/metrics: a
    read-only HF_HOME raised OSError when a training ended (its weights not yet saved), and after `predict` had
    written its output. Such a process uses folders of its own instead, removed when it exits."""
    import atexit
    import shutil
    import tempfile

    from hf_transfer.core.scratch import can_write_in

    for name in ("HF_MODULES_CACHE", "HF_METRICS_CACHE"):
        if not can_write_in(getattr(config, name)):
            folder = Path(tempfile.mkdtemp(prefix=f"hf_transfer-{name.lower()}-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            setattr(config, name, folder)


def label_keys(label_names: Sequence[str]) -> list[str]:
    """Readable key suffixes for the labels: the name with spaces as `_`, made unique with the id where needed."""
    keys = [re.sub(r"\s+", "_", str(name).strip()) for name in label_names]
    keys = [f"{k}_{i}" if not k or k in _RESERVED_NAMES or keys.count(k) > 1 else k for i, k in enumerate(keys)]
    while len(set(keys)) < len(keys):  # a made key can be another label's name (`a b`, `a_b`, `a_b_1`): again
        keys = [f"{k}_{i}" if keys.count(k) > 1 else k for i, k in enumerate(keys)]
    return keys


def _mean_over(values, present: np.ndarray) -> float:
    """A single-label macro average: the mean over the classes that occur among the references or the predictions,
    as sklearn (and `evaluate`'s f1) average when not given the labels. A class with no row in the set and never
    predicted has no score (its 0 had pulled macro-F1 of a one-sided file down to 0.5 at accuracy 1). Multi-label
    averages keep every label column, as sklearn does."""
    values = np.asarray(values, dtype=np.float64)
    return float(values[present].mean()) if present.any() else 0.0


def classification_metrics(
    predictions,
    references,
    label_names: Sequence[str],
    problem_type: ProblemType = "single_label_classification",
) -> dict[str, Any]:
    """Scores of predictions against references, as plain Python numbers that JSON can hold.

    Single-label: `predictions` and `references` are class ids. Returns `accuracy`, `precision_macro`,
    `recall_macro`, `f1_macro`, per label `precision_<name>`, `recall_<name>`, `f1_<name>`, and `confusion_matrix`
    (rows are true labels, columns predicted ones, in label id order).
    Multi-label: both are multi-hot 0/1 arrays of shape (samples, labels). Returns `f1_micro`, `f1_macro`,
    `subset_accuracy` and per label `f1_<name>`.
    """
    check_problem_type(problem_type)
    predictions, references = np.asarray(predictions), np.asarray(references)
    if len(predictions) != len(references) or len(predictions) == 0:
        raise DataError(
            f"Need as many predictions as references, and at least one: got {len(predictions)} "
            f"predictions and {len(references)} references."
        )
    keys = label_keys(label_names)
    if problem_type == "multi_label_classification":
        if predictions.shape != (len(references), len(keys)) or predictions.shape != references.shape:
            raise DataError(
                f"Multi-label predictions and references must both have shape (samples, labels) = "
                f"({len(references)}, {len(keys)}); got {predictions.shape} and {references.shape}."
            )
        scores = load_metric("multilabel").compute(
            predictions=predictions.astype(int), references=references.astype(int)
        )
        # f1_macro over every label column, as sklearn averages a multi-hot matrix
        result = {name: scores[name] for name in ("f1_micro", "f1_macro", "subset_accuracy")}
        result.update({f"f1_{key}": float(v) for key, v in zip(keys, scores["f1_per_label"], strict=True)})
        return result

    label_ids = list(range(len(keys)))
    for name, ids in (("predictions", predictions), ("references", references)):
        outside = sorted(set(ids.tolist()) - set(label_ids))
        if ids.ndim != 1 or outside:
            raise DataError(
                f"Single-label {name} must be class ids from 0 to {len(keys) - 1} ({len(keys)} label names); "
                f"got shape {ids.shape} with ids {outside[:5]} outside that range."
            )
    predictions, references = predictions.astype(np.int64), references.astype(np.int64)
    per_class = load_metric("classification").compute(
        predictions=predictions, references=references, labels=label_ids, average=None
    )
    result = {"accuracy": per_class["accuracy"]}
    present = np.isin(label_ids, np.concatenate([references, predictions]))
    result.update({f"{name}_macro": _mean_over(per_class[name], present) for name in ("precision", "recall", "f1")})
    for name in ("precision", "recall", "f1"):
        result.update({f"{name}_{key}": float(v) for key, v in zip(keys, per_class[name], strict=True)})
    from sklearn.metrics import confusion_matrix  # here: `card` and `push` import this module, sklearn takes ~1 s

    matrix = confusion_matrix(references, predictions, labels=label_ids)
    result["confusion_matrix"] = matrix.tolist()
    return result


def metric_names(label_names: Sequence[str], problem_type: ProblemType = "single_label_classification") -> list[str]:
    """The scalar keys `classification_metrics` (so `make_compute_metrics`) returns for these labels."""
    keys = label_keys(label_names)
    if problem_type == MULTI_LABEL:
        return ["f1_micro", "f1_macro", "subset_accuracy", *(f"f1_{key}" for key in keys)]
    averages = [f"{name}_macro" for name in ("precision", "recall", "f1")]
    return ["accuracy", *averages, *(f"{name}_{key}" for name in ("precision", "recall", "f1") for key in keys)]


def make_compute_metrics(
    label_names: Sequence[str], problem_type: ProblemType = "single_label_classification"
) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for `Trainer`: logits to labels (`tasks.predicted_labels`), then the scalar scores."""
    check_problem_type(problem_type)

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits, references = eval_prediction.predictions, eval_prediction.label_ids
        # Models that return hidden states or attentions too give a tuple, with the logits first.
        logits = logits[0] if isinstance(logits, tuple) else logits
        references = references[0] if isinstance(references, tuple) else references
        if problem_type == MULTI_LABEL:
            references = np.rint(references)
        metrics = classification_metrics(predicted_labels(logits, problem_type), references, label_names, problem_type)
        return {key: value for key, value in metrics.items() if isinstance(value, (int, float))}

    return compute_metrics


def say_one_class(predictions, label_ids, names: Sequence[str], problem_type: str, split: str = "validation") -> None:
    """A warning when a single-label model predicts one class for every row of `split` whose labels hold several: it
    learnt no more than that class's share, which its accuracy alone does not show (a collapsed student's retention
    read 92% of its teacher's)."""
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    if problem_type == MULTI_LABEL or logits is None or len(logits) < 2 or label_ids is None:
        return
    predicted, truth = np.asarray(predicted_labels(logits, problem_type)), np.asarray(label_ids)
    if len(np.unique(predicted)) == 1 and len(np.unique(truth)) > 1:
        share = float(np.mean(truth == predicted[0]))
        logger.warning(
            f"the model predicts {names[int(predicted[0])]!r} for all {len(predicted)} {split} rows: it has learnt "
            f"no more than that class's share ({share:.4f}, its accuracy). Train longer or at another learning_rate, "
            "or weigh the classes (class_weights: balanced)."
        )
