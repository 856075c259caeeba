"""Classification losses as pure functions, summed over items so callers choose the normaliser, and class weights.

Summing (rather than averaging) per micro-batch is what makes gradient accumulation and DDP exact: the trainer divides
the sum by a `LossNormaliser` taken over the whole accumulated, all-device batch: the total class weight of the
labelled items (their number, without class weights) for the hard-label loss, and the number of items, labelled or
not, for terms such as knowledge distillation that every row gets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.errors import ConfigError

CLASS_WEIGHT_SCHEMES = ("balanced", "sqrt")


def resolve_class_weights(
    spec, label_names: Sequence[str], counts: Mapping[str, int], rows: int | None = None
) -> list[float]:
    """Per-class loss weights, in label order, from `balanced`, `sqrt` (its square root) or a mapping {label name:
    weight} (labels not named weigh 1). `counts` are the training rows per label.

    Single-label (`rows` None): `balanced` is n / (k · n_c), as scikit-learn. Multi-label (`rows`, the number of
    training rows, given): a weight is that of the label's *positive* entries, its negatives weighing 1 (BCE's
    `pos_weight`), and `balanced` is n_negative / n_positive per label, so a rare label's positives weigh as much as
    its negatives (a label present in every row weighs 1: there is nothing to balance)."""
    if isinstance(spec, Mapping):
        from hf_transfer.core.cleaning import normalise_scalar

        # Keys read as the data's labels are read (surrounding spaces, Unicode form, `01` for 1), unless as written
        # they name a label already.
        read = {k: normalise_scalar(k) for k in spec}
        spec = {(k if str(k) in label_names or read[k] is None else read[k]): v for k, v in spec.items()}
        unknown = sorted(str(k) for k in spec if str(k) not in label_names)
        if unknown:
            raise ConfigError(
                f"class_weights names label(s) {unknown} that the data does not have; its labels are "
                f"{list(label_names)}."
            )
        weights = {str(k): v for k, v in spec.items()}
        for name, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(f"class_weights[{name!r}] must be a positive number, got {value!r}.")
        return [float(weights.get(name, 1.0)) for name in label_names]
    if spec not in CLASS_WEIGHT_SCHEMES:
        schemes = ", ".join(CLASS_WEIGHT_SCHEMES)
        raise ConfigError(f"class_weights must be one of {schemes} or a mapping {{label: weight}}, got {spec!r}.")
    missing = [name for name in label_names if not counts.get(name)]
    if missing:
        raise ConfigError(
            f"class_weights {spec} needs training rows of every label, but {missing} have none; give the weights as "
            "a mapping instead."
        )
    if rows is not None:
        balanced = [(rows - counts[name]) / counts[name] if rows > counts[name] else 1.0 for name in label_names]
    else:
        total = sum(counts[name] for name in label_names)
        balanced = [total / (len(label_names) * counts[name]) for name in label_names]
    return balanced if spec == "balanced" else [math.sqrt(w) for w in balanced]


def item_weights(labels: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The weight of each loss item: its class weight (1 without class weights), 0 for items labelled -100.

    Single-label items are rows (`labels` of class ids); multi-label items are (row, label) entries: a positive entry
    weighs its label's weight, a negative one 1 (`resolve_class_weights`)."""
    labelled = labels.ne(-100)
    if class_weights is None:
        return labelled.float()
    class_weights = class_weights.to(labels.device, torch.float32)
    if labels.dim() == 2 and labels.is_floating_point():  # multi-hot rows
        return labelled.float() * torch.where(labels > 0.5, class_weights, torch.ones_like(class_weights))
    return class_weights[labels.clamp(min=0).long()] * labelled


def mean_row_weight(labels: torch.Tensor, class_weights: torch.Tensor | None) -> float | None:
    """A set's total loss weight over its rows (`item_weights`, summed per row; None when nothing is labelled). A
    batch's summed loss divided by its rows times this, averaged over rows as Trainer averages evaluation losses, is
    the set's weighted mean Σ wᵢ·ℓᵢ / Σ wᵢ, where dividing each batch by its own weight gave a mean of batch means."""
    total = float(item_weights(labels, class_weights).sum())
    return total / len(labels) if len(labels) and total > 0 else None


@dataclass(frozen=True)
class LossNormaliser:
    """What summed losses are divided by: `labelled`, the total weight of the labelled items (their count without
    class weights), for hard-label terms; `items`, every item labelled or not (rows; entries for multi-label), for
    terms every row gets (knowledge distillation)."""

    labelled: torch.Tensor
    items: torch.Tensor

    @classmethod
    def of(cls, batches_of_labels: Sequence[torch.Tensor], class_weights: torch.Tensor | None = None):
        labelled = sum(item_weights(labels, class_weights).sum() for labels in batches_of_labels)
        items = sum(torch.tensor(labels.numel(), dtype=torch.float32) for labels in batches_of_labels)
        return cls(torch.as_tensor(labelled, dtype=torch.float32), torch.as_tensor(items, dtype=torch.float32))

    def as_tensor(self) -> torch.Tensor:
        return torch.stack([self.labelled.float(), self.items.float().to(self.labelled.device)])

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> LossNormaliser:
        """The inverse of `as_tensor`; rows of several processes' gathered values are summed."""
        values = values.reshape(-1, 2).sum(0)
        return cls(values[0], values[1])


def classification_loss_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: str,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ wᵢ·ℓᵢ: per-item cross-entropy over examples, or binary cross-entropy over (example, label) entries, each
    times its class weight (`item_weights`); divide by `LossNormaliser.labelled` for the weighted mean.

    Items labelled -100 are ignored, as in `transformers`. The loss is computed in float32 whatever the logits' dtype.
    `label_smoothing` applies to single-label cross-entropy (as `TrainingArguments.label_smoothing_factor`).
    """
    logits = logits.float()
    weights = item_weights(labels, class_weights)
    if problem_type == MULTI_LABEL:
        targets = labels.to(logits.dtype).clamp(0, 1)
        per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return (per_entry * weights).sum()
    per_row = F.cross_entropy(
        logits.view(-1, logits.size(-1)),
        labels.view(-1).long(),
        ignore_index=-100,
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return (per_row * weights.view(-1)).sum()


def count_loss_items(labels: torch.Tensor) -> torch.Tensor:
    """The number of items `classification_loss_sum` sums over: labels that are not -100 (entries, for multi-label)."""
    return labels.ne(-100).sum()
