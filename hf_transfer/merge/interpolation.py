"""Weight interpolation (WiSE-FT): θ(α) = (1 − α)·θ_pretrained + α·θ_finetuned, as pure functions on state dicts.

Which parameters mix is decided by name and shape alone (`plan_interpolation`), so the same check runs on models built
on the meta device, before any weights are read, and on the loaded weights. The rules:
- a floating tensor that both models have, with the same shape, is interpolated;
- a non-floating tensor (an integer buffer such as BERT's `position_ids`) is copied from the fine-tuned model;
- a fine-tuned parameter the pretrained model lacks is the task head (the classifier; a pooler missing from the
  checkpoint) and is kept from the fine-tuned model, or interpolated with a `head_init` model's head;
- anything else (a shape that differs, a body parameter that only one side has) is an architecture mismatch: a
  ConfigError naming the first such parameter."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from hf_transfer.errors import ConfigError

SELECTION_RULE = "best validation {metric}; ties go to the largest α (the one closest to the fine-tuned model)"


@dataclass(frozen=True)
class TensorSpec:
    """What the plan needs of a tensor: its shape and whether it is floating point."""

    shape: tuple[int, ...]
    floating: bool


def specs(state_dict: Mapping[str, torch.Tensor]) -> dict[str, TensorSpec]:
    """Shapes and kinds of a state dict's tensors (meta tensors work: no data is read)."""
    return {k: TensorSpec(tuple(v.shape), v.is_floating_point()) for k, v in state_dict.items()}


@dataclass(frozen=True)
class InterpolationPlan:
    """Fine-tuned tensor names by treatment, in the fine-tuned model's order."""

    interpolated: tuple[str, ...]
    copied: tuple[str, ...]  # non-floating buffers, from the fine-tuned model
    head: tuple[str, ...]  # not in the pretrained model: the fine-tuned head (or mixed with head_init)

    def as_record(self) -> dict:
        return {
            "interpolated_tensors": len(self.interpolated),
            "copied_buffers": list(self.copied),
            "head_tensors": list(self.head),
        }


def _shape(shape: Sequence[int]) -> str:
    return str(tuple(shape))


def plan_interpolation(
    pretrained: Mapping[str, TensorSpec],
    finetuned: Mapping[str, TensorSpec],
    head_names: Iterable[str],
    pretrained_name: str = "the pretrained model",
    finetuned_name: str = "the fine-tuned model",
) -> InterpolationPlan:
    """Match the two models' tensors by name (both in the fine-tuned model's key space).

    `head_names` are the fine-tuned tensors that may be missing from the pretrained model (the task head, the pooler,
    a final norm); a missing tensor outside them, a pretrained tensor the fine-tuned model lacks, or a shape that
    differs raises a ConfigError naming the first one, in the fine-tuned model's order.
    """
    head_names = set(head_names)
    interpolated, copied, head = [], [], []
    for name, spec in finetuned.items():
        other = pretrained.get(name)
        if other is None:
            if name not in head_names:
                raise ConfigError(
                    f"architectures differ: {finetuned_name} has parameter {name!r} {_shape(spec.shape)} that "
                    f"{pretrained_name} lacks; interpolate a fine-tuned model with the model it was fine-tuned from."
                )
            head.append(name)
        elif other.shape != spec.shape:
            raise ConfigError(
                f"shapes differ at parameter {name!r}: {_shape(other.shape)} in {pretrained_name}, "
                f"{_shape(spec.shape)} in {finetuned_name}; interpolate a fine-tuned model with the model it was "
                "fine-tuned from."
            )
        elif spec.floating and other.floating:
            interpolated.append(name)
        else:
            copied.append(name)
    extra = [name for name in pretrained if name not in finetuned]
    if extra:
        raise ConfigError(
            f"architectures differ: {pretrained_name} has parameter {extra[0]!r} {_shape(pretrained[extra[0]].shape)} "
            f"that {finetuned_name} lacks ({len(extra)} such tensors); interpolate a fine-tuned model with the model "
            "it was fine-tuned from."
        )
    if not interpolated:
        raise ConfigError(f"{pretrained_name} and {finetuned_name} share no parameter to interpolate.")
    return InterpolationPlan(tuple(interpolated), tuple(copied), tuple(head))


def label_rows(head: Mapping[str, TensorSpec], num_labels: int) -> tuple[str, ...]:
    """The head tensors with one row per label: those of the last head module whose weight has `num_labels` rows
    (`classifier`, `score`, `classifier.out_proj`; a `pre_classifier` or `dense` before it maps hidden to hidden)."""
    module = None
    for name, spec in head.items():
        if name.endswith(".weight") and len(spec.shape) == 2 and spec.shape[0] == num_labels:
            module = name.removesuffix(".weight")
    return tuple(
        name
        for name, spec in head.items()
        if module and name.rsplit(".", 1)[0] == module and spec.shape and spec.shape[0] == num_labels
    )


def reorder_rows(tensors: Mapping[str, torch.Tensor], names: Iterable[str], order: Sequence[int]) -> dict:
    """`tensors` with the rows of each of `names` taken in `order` (row i is the old row order[i])."""
    out = dict(tensors)
    index = torch.tensor(list(order))
    for name in names:
        out[name] = tensors[name].index_select(0, index).clone()
    return out


def check_alpha(alpha: float, name: str = "alpha") -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1] (0 = pretrained, 1 = fine-tuned), got {alpha!r}.")
    return float(alpha)


def mix(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 − α)·a + α·b in the tensors' dtype (computed in float32 at least); exactly a at α=0 and b at α=1."""
    if alpha == 0.0:
        return a.detach().clone()
    if alpha == 1.0:
        return b.detach().clone()
    dtype = torch.promote_types(b.dtype, torch.float32)
    return ((1.0 - alpha) * a.detach().to(dtype) + alpha * b.detach().to(dtype)).to(b.dtype)


def interpolate_state_dicts(
    pretrained: Mapping[str, torch.Tensor],
    finetuned: Mapping[str, torch.Tensor],
    alpha: float,
    keys: Iterable[str] | None = None,
) -> dict[str, torch.Tensor]:
    """θ(α) for every tensor of `finetuned`: floating tensors also in `pretrained` (and in `keys`, when given) are
    interpolated; every other tensor is the fine-tuned one. Shapes of interpolated tensors must match."""
    alpha = check_alpha(alpha)
    keys = None if keys is None else set(keys)
    out = {}
    for name, tensor in finetuned.items():
        other = pretrained.get(name)
        if other is None or (keys is not None and name not in keys) or not tensor.is_floating_point():
            out[name] = tensor.detach().clone()
            continue
        if other.shape != tensor.shape:
            raise ConfigError(
                f"shapes differ at parameter {name!r}: {_shape(other.shape)} in the pretrained model, "
                f"{_shape(tensor.shape)} in the fine-tuned one."
            )
        out[name] = mix(other, tensor, alpha)
    return out


def parse_alphas(value) -> list[float]:
    """`0,0.5,1`, `[0, 0.5, 1]` or a list, checked, sorted and deduplicated."""
    raw = value
    if isinstance(value, str):
        text = value.strip().strip("[]")
        value = [part.strip() for part in text.split(",")] if text.strip() else []
        if "" in value:  # `0,,1` or `0,1,`: a number lost between commas, not one to skip in silence
            raise ConfigError(f"alphas {raw!r} has an empty item between commas; give numbers such as 0,0.5,1.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"alphas must be a list of numbers in [0, 1] such as 0,0.25,0.5,0.75,1; got {raw!r}.")
    alphas = []
    for item in value:
        try:
            number = float(item) if not isinstance(item, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not 0.0 <= number <= 1.0:
            raise ConfigError(f"alphas must be numbers in [0, 1] (0 = pretrained, 1 = fine-tuned); got {item!r}.")
        alphas.append(number)
    return sorted(set(alphas))


def choose_alpha(scores: Mapping[float, float]) -> float:
    """The α with the highest validation score; ties go to the largest α (closest to the fine-tuned model)."""
    if not scores:
        raise ValueError("no α was evaluated")
    return max(scores, key=lambda alpha: (scores[alpha], alpha))
