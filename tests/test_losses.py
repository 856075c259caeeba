"""The summed classification losses that make accumulation exact."""

import pytest
import torch
import torch.nn.functional as F

from hf_transfer.core.losses import (
    LossNormaliser,
    classification_loss_sum,
    count_loss_items,
    item_weights,
    resolve_class_weights,
)
from hf_transfer.core.tasks import MULTI_LABEL, SINGLE_LABEL
from hf_transfer.errors import ConfigError


def test_single_label_sum_matches_mean_times_count_and_ignores_minus_100():
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 2, -100, 1, 1])
    total = classification_loss_sum(logits, labels, SINGLE_LABEL)
    assert count_loss_items(labels) == 4
    torch.testing.assert_close(total / 4, F.cross_entropy(logits, labels, ignore_index=-100))


def test_label_smoothing_is_applied():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    smoothed = classification_loss_sum(logits, labels, SINGLE_LABEL, label_smoothing=0.1)
    torch.testing.assert_close(smoothed / 4, F.cross_entropy(logits, labels, label_smoothing=0.1))


def test_multi_label_sums_over_entries_in_float32():
    logits = torch.randn(3, 4, dtype=torch.bfloat16)
    labels = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]])
    total = classification_loss_sum(logits, labels, MULTI_LABEL)
    assert total.dtype == torch.float32 and count_loss_items(labels) == 12
    torch.testing.assert_close(total / 12, F.binary_cross_entropy_with_logits(logits.float(), labels))


# --- class weights ---------------------------------------------------------------------------------------------------


def test_weighted_sum_over_weight_is_torch_weighted_cross_entropy():
    logits, labels = torch.randn(6, 3), torch.tensor([0, 2, -100, 1, 1, 0])
    weights = torch.tensor([0.5, 2.0, 3.0])
    total = classification_loss_sum(logits, labels, SINGLE_LABEL, class_weights=weights)
    normaliser = LossNormaliser.of([labels], weights)
    assert normaliser.labelled == 0.5 + 3.0 + 2.0 + 2.0 + 0.5 and normaliser.items == 6
    torch.testing.assert_close(total / normaliser.labelled, F.cross_entropy(logits, labels, weight=weights))


def test_multi_label_class_weights_weigh_each_labels_positive_entries():
    """A label's weight multiplies its positive entries only (BCE's pos_weight): weighting the whole column, negatives
    too, would not move where a rare label's decision falls."""
    logits, labels = torch.randn(2, 3), torch.tensor([[1.0, 0.0, -100.0], [0.0, 1.0, 1.0]])
    weights = torch.tensor([3.0, 2.0, 4.0])
    per_entry = F.binary_cross_entropy_with_logits(logits, labels.clamp(0, 1), reduction="none")
    expected = (per_entry * torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 4.0]])).sum()
    torch.testing.assert_close(classification_loss_sum(logits, labels, MULTI_LABEL, class_weights=weights), expected)
    assert LossNormaliser.of([labels], weights).labelled == 11.0
    # Up to the normaliser's constant, it is torch's pos_weight.
    full = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    ours = classification_loss_sum(logits, full, MULTI_LABEL, class_weights=weights)
    torch.testing.assert_close(
        ours, F.binary_cross_entropy_with_logits(logits, full, pos_weight=weights, reduction="sum")
    )


def test_balanced_multi_label_weights_make_a_rare_labels_positives_weigh_as_much_as_its_negatives():
    names, counts = ["rare", "half", "everywhere"], {"rare": 10, "half": 50, "everywhere": 100}
    balanced = resolve_class_weights("balanced", names, counts, rows=100)
    assert balanced == pytest.approx([90 / 10, 50 / 50, 1.0])
    assert resolve_class_weights("sqrt", names, counts, rows=100) == pytest.approx([3.0, 1.0, 1.0])
    assert resolve_class_weights({"rare": 4}, names, counts, rows=100) == [4.0, 1.0, 1.0]
    # With these weights, the total weight of "rare"'s positives equals that of its negatives.
    labels = torch.zeros(100, 3)
    labels[:10, 0], labels[:50, 1], labels[:, 2] = 1.0, 1.0, 1.0
    w = item_weights(labels, torch.tensor(balanced))
    assert w[:10, 0].sum() == w[10:, 0].sum() == 90.0


def test_resolve_class_weights():
    names, counts = ["bad", "neutral", "good"], {"bad": 10, "neutral": 30, "good": 60}
    balanced = resolve_class_weights("balanced", names, counts)
    assert balanced == pytest.approx([100 / 30, 100 / 90, 100 / 180])
    assert resolve_class_weights("sqrt", names, counts) == pytest.approx([w**0.5 for w in balanced])
    assert resolve_class_weights({"neutral": 2.5}, names, counts) == [1.0, 2.5, 1.0]
    # keys read as the data's labels are: spaces around, a combining accent, a number written "01"
    names = ["négatif", "1", "中评"]
    weights = resolve_class_weights({"ne\u0301gatif": 2, "01": 3, " 中评\u200b": 4}, names, dict.fromkeys(names, 1))
    assert weights == [2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("spec", "counts", "match"),
    [
        ("balance", {"a": 1, "b": 1}, "one of balanced, sqrt"),
        ({"c": 2.0}, {"a": 1, "b": 1}, r"label\(s\) \['c'\]"),
        ({"a": 0}, {"a": 1, "b": 1}, "positive"),
        ({"a": -1.0}, {"a": 1, "b": 1}, "positive"),
        ("balanced", {"a": 3, "b": 0}, r"\['b'\] have none"),
    ],
)
def test_bad_class_weights(spec, counts, match):
    with pytest.raises(ConfigError, match=match):
        resolve_class_weights(spec, ["a", "b"], counts)
