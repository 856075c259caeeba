"""Knowledge-distillation losses as pure functions: the KD term (softmax KL, or sigmoid BCE for multi-label), the
α-mix with the hard-label loss, teacher ensembles, and hidden-state matching.

Like `core/losses.py`, every loss returns a SUM over items so that the trainer divides by the item count of the
whole accumulated, all-device batch. The teacher's tensors are always detached: only the student gets gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hf_transfer.core.losses import LossNormaliser, classification_loss_sum
from hf_transfer.core.tasks import MULTI_LABEL, SINGLE_LABEL, check_problem_type
from hf_transfer.errors import ConfigError


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature!r}; 1.0 leaves the logits as they are.")


def _teacher_target(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, teacher_probs: torch.Tensor | None
) -> torch.Tensor:
    """The teacher tensor (logits or probabilities), detached, in float32, shape-checked against the student."""
    if (teacher_logits is None) == (teacher_probs is None):
        raise ValueError("Give exactly one of teacher_logits and teacher_probs.")
    target = (teacher_logits if teacher_probs is None else teacher_probs).detach().float()
    if target.shape != student_logits.shape:
        raise ConfigError(
            f"The teacher's outputs have shape {tuple(target.shape)} but the student's {tuple(student_logits.shape)}; "
            "teacher and student need the same labels (see check_label_sets)."
        )
    return target


def _masked_sum(per_item: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per_item.sum()
    mask = mask.to(per_item.device)
    if mask.dim() < per_item.dim():  # a mask of rows for per-entry losses
        mask = mask.unsqueeze(-1)
    # where(), not a product: a padded row's inf or nan must not leak into the sum.
    return torch.where(mask.bool(), per_item, per_item.new_zeros(())).sum()


def kd_loss_sum(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    temperature: float = 1.0,
    *,
    teacher_probs: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """T² · KL(teacher ‖ student) of the temperature-softened distributions, summed over rows, in float32.

    Give the teacher as `teacher_logits`, or as `teacher_probs` already softened at `temperature` (for instance an
    ensemble from `mix_probabilities`). `mask` (shape `logits.shape[:-1]`) keeps only the true rows. The T² factor
    keeps the gradient's scale independent of T (Hinton et al., 2015).
    """
    _check_temperature(temperature)
    target = _teacher_target(student_logits, teacher_logits, teacher_probs)
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    if teacher_probs is None:
        teacher_log_probs = F.log_softmax(target / temperature, dim=-1)
        per_entry = teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)
    else:
        per_entry = torch.xlogy(target, target) - target * student_log_probs  # 0·log 0 = 0
    return temperature**2 * _masked_sum(per_entry.sum(-1), mask)


def kd_multilabel_loss_sum(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    temperature: float = 1.0,
    *,
    teacher_probs: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """T² · BCE(sigmoid(student/T), sigmoid(teacher/T)) with the teacher as soft targets, summed over entries.

    Unlike `kd_loss_sum` this is a cross-entropy, not a KL: it does not reach 0 when the student equals the teacher
    (it bottoms out at the teacher's entropy), but its gradient is the same. `mask` selects rows or single entries.
    """
    _check_temperature(temperature)
    target = _teacher_target(student_logits, teacher_logits, teacher_probs)
    if teacher_probs is None:
        target = torch.sigmoid(target / temperature)
    per_entry = F.binary_cross_entropy_with_logits(student_logits.float() / temperature, target, reduction="none")
    return temperature**2 * _masked_sum(per_entry, mask)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    *,
    alpha: float,
    temperature: float,
    problem_type: str = SINGLE_LABEL,
    teacher_probs: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
    normaliser: LossNormaliser | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """α · KD / items + (1 − α) · CE / labelled, and the detached summed terms `{"kd": ..., "ce": ...}`.

    The KD term is summed over every row (entry, for multi-label), those without a label too: rows labelled -100 (an
    unlabelled transfer set) get the soft loss only. The hard-label term is Σ wᵢ·ℓᵢ over the labelled items, wᵢ their
    class weight. `normaliser` (see `losses.LossNormaliser`) holds the whole accumulated, all-device batch's counts;
    without it, this batch's own are used. With α = 1 `labels` may be None. `mask` (rows) leaves rows out of the KD
    term: DDP's padding rows, which are unlabelled too.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1] (the weight of the KD term), got {alpha!r}.")
    _check_temperature(temperature)
    check_problem_type(problem_type)
    if labels is None and alpha != 1.0:
        raise ConfigError(
            f"alpha={alpha!r} weights a hard-label loss, so labels are needed; use alpha=1 without them."
        )
    if labels is None:
        shape = student_logits.shape if problem_type == MULTI_LABEL else student_logits.shape[:-1]
        labels = torch.full(shape, -100, device=student_logits.device)
    normaliser = normaliser or LossNormaliser.of([labels], class_weights)
    kd_fn = kd_multilabel_loss_sum if problem_type == MULTI_LABEL else kd_loss_sum
    kd = kd_fn(student_logits, teacher_logits, temperature, teacher_probs=teacher_probs, mask=mask)
    ce = classification_loss_sum(
        student_logits, labels, problem_type, label_smoothing=label_smoothing, class_weights=class_weights
    )
    loss = alpha * kd / normaliser.items.clamp(min=1e-12)
    if alpha < 1.0:
        loss = loss + (1.0 - alpha) * ce / normaliser.labelled.clamp(min=1e-12)
    return loss, {"kd": kd.detach(), "ce": ce.detach()}


def teacher_probabilities(
    teacher_logits: torch.Tensor, temperature: float = 1.0, problem_type: str = SINGLE_LABEL
) -> torch.Tensor:
    """Softened teacher probabilities in float32: softmax(logits / T), or sigmoid per label for multi-label."""
    _check_temperature(temperature)
    check_problem_type(problem_type)
    scaled = teacher_logits.detach().float() / temperature
    return torch.sigmoid(scaled) if problem_type == MULTI_LABEL else F.softmax(scaled, dim=-1)


def topk_probabilities(
    values: torch.Tensor, indices: torch.Tensor, num_labels: int, temperature: float = 1.0
) -> torch.Tensor:
    """The teacher's distribution from its top-k logits only: softmax over the k kept logits at T, zero elsewhere.

    This is what a cache with `teacher_top_k` stores; with k = num_labels it equals `teacher_probabilities`.
    """
    _check_temperature(temperature)
    kept = F.softmax(values.detach().float() / temperature, dim=-1)
    probs = kept.new_zeros((*kept.shape[:-1], num_labels))
    return probs.scatter(-1, indices.long(), kept)


def mix_probabilities(probabilities: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """The weighted average of several teachers' probabilities; `weights` (default: equal) are normalised."""
    if len(probabilities) == 0:
        raise ConfigError("an ensemble needs at least one teacher's outputs, got an empty list.")
    shapes = [tuple(p.shape) for p in probabilities]
    if len(set(shapes)) > 1:
        raise ConfigError(f"All teachers must output the same shape (same labels, same batch), got {shapes}.")
    if weights is None:
        weights = [1.0] * len(probabilities)
    if len(weights) != len(probabilities):
        raise ConfigError(f"Got {len(weights)} teacher weights for {len(probabilities)} teachers; give one each.")
    if not all(w > 0 and w != float("inf") for w in weights):
        raise ConfigError(f"Teacher weights must be positive and finite, got {list(weights)}.")
    total = float(sum(weights))
    mixed = torch.zeros(shapes[0], dtype=torch.float32, device=probabilities[0].device)
    for probs, weight in zip(probabilities, weights, strict=True):
        mixed += (weight / total) * probs.detach().float()
    return mixed


def hidden_state_loss_sum(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    kind: Literal["mse", "cosine"] = "mse",
    projection: nn.Linear | None = None,
    *,
    per_row: bool = False,
) -> torch.Tensor:
    """Per-token distance between hidden states `(batch, seq, hidden)`, summed over non-padding tokens, in float32.

    `kind="mse"` is the mean squared error over the hidden dimension, `"cosine"` is 1 − cosine similarity; either way
    the normaliser is the number of tokens, `attention_mask.sum()`. With `per_row=True` each row's distances are
    averaged over its own tokens first and the rows are summed, so the normaliser is the number of rows, as for the
    KD and CE terms. `projection` maps the student's states to the teacher's hidden size when they differ (it is
    trained with the student).
    """
    if kind not in ("mse", "cosine"):
        raise ConfigError(f"kind must be 'mse' or 'cosine', got {kind!r}.")
    if projection is not None:
        student_hidden = projection(student_hidden.to(projection.weight.dtype))
    student, teacher = student_hidden.float(), teacher_hidden.detach().float()
    if student.shape != teacher.shape:
        raise ConfigError(
            f"Student hidden states have shape {tuple(student.shape)} but the teacher's {tuple(teacher.shape)}; "
            "pass projection=nn.Linear(student_hidden_size, teacher_hidden_size) when the hidden sizes differ."
        )
    if kind == "mse":
        per_token = (student - teacher).pow(2).mean(-1)
    else:
        per_token = 1.0 - F.cosine_similarity(student, teacher, dim=-1)
    if per_row:
        mask = torch.ones_like(per_token) if attention_mask is None else attention_mask.to(per_token.device).float()
        per_token = torch.where(mask.bool(), per_token, per_token.new_zeros(()))
        return (per_token.sum(-1) / mask.sum(-1).clamp(min=1)).sum()
    return _masked_sum(per_token, attention_mask)


def pooled_states(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """One L2-normalised vector per row from a block's states `(batch, tokens, hidden)`: the first token's (`cls`) or
    the mean over the row's non-padding tokens (`mean`), in float32 (Patient KD's normalised [CLS] targets)."""
    hidden = hidden.float()
    if pooling == "cls":
        vector = hidden[:, 0]
    elif pooling == "mean":
        mask = torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None else attention_mask
        mask = mask.to(hidden.device, hidden.dtype).unsqueeze(-1)
        vector = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    else:
        raise ConfigError(f"pooling must be cls or mean, got {pooling!r}.")
    return F.normalize(vector, dim=-1)


def pooled_hidden_loss_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Σ over rows of the mean over mapped blocks of ‖s − t‖², between normalised pooled states `(batch, blocks,
    hidden)` (Patient KD); the teacher's side is detached."""
    if student.shape != teacher.shape:
        raise ConfigError(
            f"Student pooled states have shape {tuple(student.shape)} but the teacher's {tuple(teacher.shape)}; the "
            "layer map and the hidden sizes must agree (a projection maps the student's size to the teacher's)."
        )
    return (student.float() - teacher.detach().float()).pow(2).sum(-1).mean(-1).sum()
