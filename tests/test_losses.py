"""The summed classification losses that make accumulation exact."""

import torch
import torch.nn.functional as F

from hf_transfer.core.losses import classification_loss_sum, count_loss_items
from hf_transfer.core.tasks import MULTI_LABEL, SINGLE_LABEL


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
