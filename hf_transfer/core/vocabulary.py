"""How much of the data the tokenizer reads: text in a script the base model's vocabulary lacks (Chinese or Thai
with all-MiniLM-L6-v2's) becomes the unknown token, and the model then learns from almost nothing while the run
trains, scores and saves as usual; rows longer than max_seq_length are cut."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # `card` reads UNKNOWN_WARN_PERCENT without loading datasets
    import datasets

logger = logging.getLogger(__name__)

# Above this share of the training tokens, the run says so. With all-MiniLM-L6-v2's tokenizer it is under 0.01% on
# SST-2's and the clothing reviews' training text, and 86% on a Chinese review.
UNKNOWN_WARN_PERCENT = 5.0


def unknown_token_percent(tokenized: datasets.Dataset, tokenizer) -> float | None:
    """The unknown token's share of a split's tokens, in percent, special tokens ([CLS], [SEP]) left out; None when
    the tokenizer has no unknown token (byte-level BPE reads every byte) or the split has no tokens."""
    import pyarrow.compute as pc

    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or len(tokenized) == 0:
        return None
    column = tokenized.with_format("arrow", columns=["input_ids"])[:]["input_ids"]
    ids = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    special = [i for i in getattr(tokenizer, "all_special_ids", []) if i != unk]
    ids = ids[~np.isin(ids, special)]
    return round(100.0 * float(np.count_nonzero(ids == unk)) / len(ids), 2) if len(ids) else None


def note_unknown_tokens(tokenized: datasets.DatasetDict, tokenizer, summary: dict) -> None:
    """Record each split's `unknown_token_percent` in the data summary (the run record's `data`), and warn when the
    training text is largely unknown to the tokenizer."""
    for split, ds in tokenized.items():
        if (percent := unknown_token_percent(ds, tokenizer)) is not None:
            summary.setdefault(split, {})["unknown_token_percent"] = percent
    percent = summary.get("train", {}).get("unknown_token_percent")
    if percent is not None and percent > UNKNOWN_WARN_PERCENT:
        logger.warning(
            "%.0f%% of the training text's tokens are %s, the tokenizer's unknown token: its vocabulary does not "
            "cover this text's script or language, so the model learns from little of it. Choose a base model whose "
            "tokenizer covers it (a multilingual one), or check text_column_name.",
            percent,
            tokenizer.unk_token,
        )


def say_truncated(truncated: int, rows: int, split: str, max_seq_length: int, pairs: bool) -> None:
    """A split's rows cut to `max_seq_length`: a warning from 1% of its rows (it had been logged at info, unseen)."""
    if not truncated:
        return
    how = " (a pair's tokens cut from its longer text first)" if pairs else ""
    logger.log(
        logging.WARNING if truncated >= 0.01 * rows else logging.INFO,
        "%d of %d %s rows are longer than max_seq_length %d tokens and were cut to it%s.",
        truncated, rows, split, max_seq_length, how,
    )  # fmt: skip
