"""The head at α = 0: whether a classifier (`head_init`, or a pretrained classifier with the fine-tuned labels) can
start the head that WiSE-FT interpolates, checked on the meta device, and its tensors in the fine-tuned head's
layout (label rows in the fine-tuned order; a bias its layer lacks taken as zeros, which is what a layer without
one computes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from hf_transfer.core.models import is_sequence_classifier, meta_classifier
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.errors import ConfigError
from hf_transfer.merge.interpolation import TensorSpec, label_rows, reorder_rows, specs


class HeadMisfit(ConfigError):
    """The head cannot start the interpolation; `reason` says why in a few words, for a card."""

    def __init__(self, role: str, reason: str, advice: str):
        super().__init__(f"{role} cannot start the interpolated head: {reason}; {advice}")
        self.reason = reason


@dataclass(frozen=True)
class HeadStart:
    labels: list[str] | None = None  # its label names, when in another order than the fine-tuned ones
    rows: tuple[str, ...] = ()  # the head tensors with one row per label, reordered by name
    zero: tuple[str, ...] = ()  # biases the fine-tuned head has and its layer lacks: zeros

    def tensors(self, state: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], head, labels):
        """Its head tensors (from `state`) in the fine-tuned head's layout and label order."""
        out = {
            k: finetuned[k].new_zeros(finetuned[k].shape) if k in self.zero else state[k].detach().clone()
            for k in head
        }
        if self.labels is not None:
            out = reorder_rows(out, self.rows, [self.labels.index(n) for n in labels])
        return out


def _joined(names, limit: int = 20) -> str:
    """Label names joined by commas, cut after `limit` (a 120-label head made a card sentence of 120 names, twice)."""
    names = list(names)
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def label_names(config) -> list[str]:
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def _kind(problem_type) -> str:
    return "multi-label" if problem_type == MULTI_LABEL else "single-label"


def check_head_start(
    role: str, config, labels: list[str], problem_type, wanted: Mapping[str, TensorSpec], head: Sequence[str]
):
    """How the classifier `config` describes starts the fine-tuned head `head` (names in `wanted`) of a model of
    `problem_type`, or HeadMisfit."""
    advice = "give a classifier trained for the fine-tuned labels, such as the linear_probe/ folder of an LP-FT run"
    if not is_sequence_classifier(config):
        # Its classifier would be freshly initialised: random weights mixed into the head, called trained ones.
        architectures = getattr(config, "architectures", None)
        raise HeadMisfit(role, f"it is not a sequence classifier (architectures {architectures})", advice)
    names = label_names(config)
    if sorted(names) != sorted(labels):
        raise HeadMisfit(role, f"it is for labels {_joined(names)}, not {_joined(labels)}", advice)
    if _kind(getattr(config, "problem_type", None)) != _kind(problem_type):
        # A softmax head's logits read through sigmoids (or the reverse): α = 0 would be no trained classifier.
        kinds = f"{_kind(getattr(config, 'problem_type', None))}, and the fine-tuned model {_kind(problem_type)}"
        raise HeadMisfit(role, f"it is {kinds}", advice)
    if not head:
        raise HeadMisfit(role, "every fine-tuned tensor is in the pretrained model", "leave head_init out")
    have = specs(meta_classifier(config).state_dict())
    modules = {name.rsplit(".", 1)[0] for name in head}
    zero = []
    for name in head:
        if name not in have and name.endswith(".bias") and name.removesuffix(".bias") + ".weight" in have:
            zero.append(name)
        elif name not in have or have[name].shape != wanted[name].shape:
            found = have[name].shape if name in have else "missing"
            reason = f"its {name!r} is {found}, but {wanted[name].shape} in the fine-tuned head"
            raise HeadMisfit(role, reason, advice)
    extra = [name for name in have if name not in wanted and name.rsplit(".", 1)[0] in modules]
    if extra:  # dropped, the α = 0 end would not be this classifier
        raise HeadMisfit(role, f"its {extra[0]!r} has no place in the fine-tuned head", advice)
    if names == labels:
        return HeadStart(zero=tuple(zero))
    rows = label_rows({name: wanted[name] for name in head}, len(labels))
    if not rows:
        reason = f"its labels are in another order ({', '.join(names)}) and no layer with one row per label was found"
        raise HeadMisfit(role, reason, "give a head with the labels in the fine-tuned order")
    return HeadStart(names, rows, tuple(zero))
