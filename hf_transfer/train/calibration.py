"""Decision calibration for macro-F1: per-class logit offsets (single-label) or per-label thresholds (multi-label),
fitted on a calibration split carved from train, never on the split that is reported, and folded into the bias of
the classifier's output layer, so that the saved model, `pipeline()` and the Hub apply them with no extra code.

The fitting is a pure function of logits and labels: coordinate ascent over one offset at a time, each tried on the
grid of values where the decision of some calibration row flips, keeping the best macro-F1 (ties: the smallest
change), a few rounds until nothing improves."""

from __future__ import annotations

import numpy as np
from torch import nn

from hf_transfer.core.tasks import MULTI_LABEL, predicted_labels
from hf_transfer.errors import ConfigError

ROUNDS = 4


def macro_f1(logits: np.ndarray, labels: np.ndarray, problem_type: str) -> float:
    """scikit-learn's `f1_score(average="macro", zero_division=0)` of the decisions, counted with numpy: this runs
    rounds × classes × up to 201 times per fit, and scikit-learn's 2 ms a call made 120 classes take 3 minutes.
    Single-label: over the classes among the labels or the predictions, as `core.metrics` averages; multi-label:
    over every label."""
    preds = predicted_labels(logits, problem_type)
    if problem_type == MULTI_LABEL:
        truth = np.asarray(labels) > 0
        tp = (preds.astype(bool) & truth).sum(axis=0)
        fp, fn = preds.sum(axis=0) - tp, truth.sum(axis=0) - tp
    else:
        size = logits.shape[-1]
        tp = np.bincount(labels[preds == labels], minlength=size)
        fp, fn = np.bincount(preds, minlength=size) - tp, np.bincount(labels, minlength=size) - tp
        present = (tp + fp + fn) > 0
        tp, fp, fn = tp[present], fp[present], fn[present]
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(len(tp), dtype=np.float64), where=denominator > 0)
    return float(f1.mean()) if len(f1) else 0.0


def _candidates(scores: np.ndarray) -> np.ndarray:
    """Offsets worth trying for one column: 0 and the midpoints between sorted distinct scores (where a decision
    flips), thinned to at most 200."""
    values = np.unique(scores)
    mids = (values[1:] + values[:-1]) / 2 if len(values) > 1 else values
    if len(mids) > 200:
        mids = np.quantile(mids, np.linspace(0, 1, 200))
    return np.concatenate([[0.0], mids])


def fit_offsets(logits, labels, problem_type: str) -> np.ndarray:
    """Per-class additive logit offsets that maximise macro-F1 of the decisions on (`logits`, `labels`).

    Single-label: the decision is argmax(logits + offsets); each class's offset is tried at the values that make its
    margin over the best other class cross zero. Multi-label: each label is decided alone (logit + offset > 0), so
    each offset is the best threshold of its own F1."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels).astype(np.int64)
    offsets = np.zeros(logits.shape[-1])
    if problem_type == MULTI_LABEL:
        for c in range(logits.shape[-1]):
            offsets[c] = _best(logits, labels, problem_type, offsets, c, _candidates(-logits[:, c]))
        return offsets
    for _ in range(ROUNDS):
        before = offsets.copy()
        for c in range(logits.shape[-1]):
            shifted = logits + offsets
            others = np.delete(shifted, c, axis=1).max(axis=1)
            margins = others - logits[:, c]  # the offset at which row i starts choosing class c
            offsets[c] = _best(logits, labels, problem_type, offsets, c, _candidates(margins))
        if np.allclose(before, offsets):
            break
    return offsets - offsets.mean()  # only differences matter for argmax: centre them


def _best(logits, labels, problem_type, offsets, c, candidates) -> float:
    best_value, best_score = offsets[c], -1.0
    for value in sorted(candidates, key=lambda v: abs(v - offsets[c])):  # ties: the smallest change
        trial = offsets.copy()
        trial[c] = value
        score = macro_f1(logits + trial, labels, problem_type)
        if score > best_score + 1e-12:
            best_value, best_score = value, score
    return best_value


def output_layer(model: nn.Module, num_labels: int, head: tuple[str, ...]) -> tuple[str, nn.Linear]:
    """The linear layer that produces the logits: the last `nn.Linear` of the head with `num_labels` outputs."""
    found = None
    for name, module in model.named_modules():
        inside_head = any(p.startswith(f"{name}.") for p in head)
        if isinstance(module, nn.Linear) and module.out_features == num_labels and inside_head:
            found = (name, module)
    if found is None:
        raise ConfigError(
            f"calibrate_decision folds offsets into the bias of the layer that outputs the {num_labels} logits, but "
            f"{type(model).__name__} has no such linear layer in its head; drop calibrate_decision."
        )
    if found[1].bias is None:
        raise ConfigError(
            f"calibrate_decision folds offsets into the bias of {found[0]!r}, but that layer of "
            f"{type(model).__name__} has no bias; drop calibrate_decision for this architecture."
        )
    return found


def fold_into_bias(layer: nn.Linear, offsets) -> None:
    """Add the offsets to the output layer's bias: the model now decides as argmax(logits + offsets)."""
    import torch

    with torch.no_grad():
        layer.bias.add_(torch.as_tensor(offsets, dtype=layer.bias.dtype, device=layer.bias.device))
