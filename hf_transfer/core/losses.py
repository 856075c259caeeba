"""Classification losses as pure functions, summed over items so callers choose the normaliser.

Summing (rather than averaging) per micro-batch is what makes gradient accumulation and DDP exact: the trainer divides
the sum by the number of labelled items in the whole accumulated, all-device batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hf_transfer.core.tasks import MULTI_LABEL


def classification_loss_sum(
    logits: torch.Tensor, labels: torch.Tensor, problem_type: str, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Sum of per-item losses: cross-entropy over examples, or binary cross-entropy over (example, label) entries.

    Items labelled -100 are ignored, as in `transformers`. The loss is computed in float32 whatever the logits' dtype.
    `label_smoothing` applies to single-label cross-entropy (as `TrainingArguments.label_smoothing_factor`).
    """
    logits = logits.float()
    if problem_type == MULTI_LABEL:
        targets = labels.to(logits.dtype)
        mask = targets.ne(-100)
        per_entry = F.binary_cross_entropy_with_logits(logits, targets.clamp(0, 1), reduction="none")
        return (per_entry * mask).sum()
    return F.cross_entropy(
        logits.view(-1, logits.size(-1)),
        labels.view(-1).long(),
        ignore_index=-100,
        reduction="sum",
        label_smoothing=label_smoothing,
    )


def count_loss_items(labels: torch.Tensor) -> torch.Tensor:
    """The number of items `classification_loss_sum` sums over: labels that are not -100 (entries, for multi-label)."""
    return labels.ne(-100).sum()
