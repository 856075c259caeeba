"""Frozen-trunk feature caching: when the embeddings and the bottom k blocks stay frozen for the whole run, the hidden
states entering block k are a fixed function of the input. They are computed once (trunk in eval mode, no gradient),
stored on disk, and training runs only blocks k.. and the head on them.

The cache is an arrow file written with `datasets` (one row per training row, in the training set's order, each an
unpadded `(tokens, hidden)` array) in a folder named by a fingerprint of the trunk's weights and config, the tokenizer,
the rows, `max_seq_length`, k and the storage dtype. A `meta.json` holds the files' checksums, so a truncated or
corrupted cache is rebuilt, never used silently; it is written to a tmp folder and renamed into place.

Training on the cache runs the model's own forward, with the frozen blocks short-circuited: blocks 0..k-2 pass their
input through and block k-1 returns the cached states (`cached_trunk`). Where the embedding module's output only feeds
block 0 (BERT-like models, Llama, Qwen2), it is skipped too and hands over the cached states. The attention mask,
position ids, final norm, pooler and pooling (the last non-pad token for GPT-2) are built by the model's code exactly
as without the cache, and the parameters are the model's own, so what is saved is the ordinary full model."""

from __future__ import annotations

import functools
import logging
import os
from contextlib import contextmanager

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from hf_transfer.core.caching import (
    cache_key,
    computing_config,
    default_cache_dir,
    fingerprint_model,
    fingerprint_tokenizer,
    load_or_build,
)
from hf_transfer.core.layers import ModelLayout
from hf_transfer.core.runtime import progress_bar
from hf_transfer.errors import ConfigError

logger = logging.getLogger(__name__)

FEATURE_COLUMN = "frozen_hidden_states"
# The training rows carry their row number in the cache (a column whose name Trainer keeps, see trainer.py).
FEATURE_ROW = f"{FEATURE_COLUMN}_row"
# The cache's storage dtype when `frozen_features_dtype` is not set: the P3 benchmark found float16 storage gives the
# same dev accuracy as float32 at half the disk (README, P3).
DEFAULT_FEATURE_DTYPE = "float16"
# Model types whose blocks run one after the other on the hidden states alone and return a tensor, checked by
# tests/test_feature_cache.py. ALBERT re-runs one shared block, so it has no trunk to cut.
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert", "gpt2", "llama", "qwen2")


# --- checks ---------------------------------------------------------------------------------------------------------


def trunk_depth(layout: ModelLayout, frozen: set[str], model_type: str | None = None) -> int:
    """k, when the frozen part of the body is exactly the embeddings and blocks 0..k-1 (k >= 1); else ConfigError."""
    if model_type is not None and model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"cache_frozen_features does not support model type {model_type!r} yet; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}. Drop cache_frozen_features."
        )
    if not set(layout.embeddings) <= frozen:
        raise ConfigError(
            "cache_frozen_features caches the output of a frozen trunk, but the embeddings train; set "
            "freeze_embeddings: true (with freeze_layers: N) or drop cache_frozen_features."
        )
    k = 0
    while k < layout.depth and set(layout.blocks[k]) <= frozen:
        k += 1
    if k == 0:
        raise ConfigError(
            "cache_frozen_features needs whole bottom blocks frozen (e.g. freeze_layers: 2 with freeze_embeddings: "
            "true), but block 0 trains; freeze some bottom blocks or drop cache_frozen_features."
        )
    above = sorted({i for i in range(k, layout.depth) if frozen & set(layout.blocks[i])})
    if above:
        raise ConfigError(
            f"cache_frozen_features caches a contiguous frozen trunk (embeddings and blocks 0..{k - 1}), but blocks "
            f"{above} above it are also (partly) frozen; freeze a bottom range such as freeze_layers: {k}, or drop "
            "cache_frozen_features."
        )
    return k


def trunk_fingerprint(model, layout: ModelLayout, k: int) -> str:
    """sha256 of what the trunk computes: every tensor but those of blocks k.. and the head, and the config."""
    upper = set(layout.head).union(*(layout.blocks[k:]))
    config = computing_config(model.config)
    return cache_key(weights=fingerprint_model(model, exclude=upper), config=config, model=type(model).__name__)


# --- running with the trunk short-circuited -------------------------------------------------------------------------


# Model types whose embedding module's output goes straight into block 0, nothing in between, so that a cached step
# can skip the embeddings too (their output would be thrown away). Not ELECTRA (a projection can follow them) nor
# GPT-2 (its embeddings are summed inside the base model's forward).
_EMBEDDINGS_FEED_BLOCK_0 = ("bert", "roberta", "xlm-roberta", "distilbert", "llama", "qwen2")


def embeddings_module(model, layout: ModelLayout) -> str | None:
    """The name of the one module holding every embedding parameter, where a cached step may skip it; else None."""
    return _embeddings_module(getattr(model.config, "model_type", None), layout.embeddings)


@functools.lru_cache(maxsize=64)
def _embeddings_module(model_type: str | None, embedding_params: tuple[str, ...]) -> str | None:
    # Worked out once per model type and layout, not on every cached step.
    if model_type not in _EMBEDDINGS_FEED_BLOCK_0 or not embedding_params:
        return None
    common = os.path.commonprefix([name.split(".")[:-1] for name in embedding_params])
    return ".".join(common) if len(common) > 1 else None  # a bare base model ("bert") is not the embeddings


@contextmanager
def cached_trunk(model, layout: ModelLayout, k: int, hidden_states: torch.Tensor):
    """Within this context, a forward of `model` (or of a DDP wrapper around it) skips the embeddings (where their
    output only feeds block 0) and the frozen blocks 0..k-1: block k receives `hidden_states` (batch, tokens, hidden),
    which must be padded like the batch's input_ids."""
    blocks = [model.get_submodule(name) for name in layout.block_modules[:k]]
    name = embeddings_module(model, layout)
    embeddings = [] if name is None else [model.get_submodule(name)]

    def passthrough(*args, **kwargs):
        return args[0] if args else kwargs["hidden_states"]

    def cached(*args, **kwargs):
        return hidden_states

    # The skipped embeddings hand over the cached states themselves: besides the passthrough blocks, only the
    # attention-mask builder sees them, for their shape and dtype.
    patched = [*embeddings, *blocks]
    saved = [module.__dict__.get("forward") for module in patched]
    try:
        for module in embeddings:
            module.forward = cached
        for block in blocks[:-1]:
            block.forward = passthrough
        blocks[-1].forward = cached
        yield
    finally:
        for block, forward in zip(patched, saved, strict=True):
            del block.forward
            if forward is not None:
                block.forward = forward


class _Captured(Exception):
    pass


def _trunk_output(model, layout: ModelLayout, k: int, batch: dict) -> torch.Tensor:
    """The hidden states leaving block k-1, without running the blocks above it."""
    captured = {}

    def capture(module, args, output):
        captured["hidden"] = output[0] if isinstance(output, tuple) else output
        raise _Captured

    handle = model.get_submodule(layout.block_modules[k - 1]).register_forward_hook(capture)
    try:
        model(**batch)
    except _Captured:
        pass
    finally:
        handle.remove()
    return captured["hidden"]


def compute_features(
    model, layout: ModelLayout, k: int, rows, tokenizer, *, batch_size: int, dtype: str, progress: bool = True
):
    """Yield each row's unpadded trunk output as a (tokens, hidden) array, in order. `rows` are tokenized rows.

    Rows are batched by length within chunks, so a batch pads little, and padded on the right, so every row sees
    positions 0..n-1; the whole model is in eval mode."""
    names = [n for n in tokenizer.model_input_names if n in rows.column_names]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunk = batch_size * 16
    try:
        bar = progress_bar(total=len(rows), desc="frozen features", unit="row", disable=not progress)
        with torch.no_grad(), bar:
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                lengths = [len(ids) for ids in part["input_ids"]]
                order = np.argsort(lengths, kind="stable")
                out: list = [None] * len(lengths)
                for b in range(0, len(order), batch_size):
                    idx = order[b : b + batch_size]
                    rows_in = [{n: part[n][i] for n in names} for i in idx]
                    batch = tokenizer.pad(rows_in, padding_side="right", return_tensors="pt")
                    hidden = _trunk_output(model, layout, k, {n: v.to(device) for n, v in batch.items()})
                    hidden = hidden.float().cpu().numpy()
                    if not np.isfinite(hidden).all():  # a broken trunk: caching it would train on NaN
                        raise ConfigError(
                            "the frozen trunk's hidden states hold NaN or inf (its weights, or the model's numerics, "
                            "are broken): check the model; nothing was cached."
                        )
                    if dtype == "float16" and (np.abs(hidden) > np.finfo(np.float16).max).any():
                        raise ConfigError(
                            "the frozen trunk's hidden states overflow float16 storage (|value| > 65504); set "
                            "frozen_features_dtype: float32."
                        )
                    hidden = hidden.astype(dtype)
                    for row, i in zip(hidden, idx, strict=True):
                        out[i] = row[: lengths[i]]
                    bar.update(len(idx))
                yield from out
    finally:
        model.train(was_training)


# --- the cache ------------------------------------------------------------------------------------------------------


def with_frozen_features(
    model,
    layout: ModelLayout,
    k: int,
    train,
    tokenizer,
    *,
    data_fingerprint: str,
    max_seq_length: int,
    dtype: str | None = None,
    cache_dir=None,
    batch_size: int = 64,
    progress: bool = True,
):
    """`train` (tokenized rows) with a `frozen_hidden_states_row` column (the row's number in the cache), the cache
    (built where missing) as `FrozenFeatures`, and the cache's facts for the run record."""
    import datasets

    hidden_size = model.config.hidden_size
    dtype = dtype or DEFAULT_FEATURE_DTYPE
    key = cache_key(
        trunk=trunk_fingerprint(model, layout, k),
        tokenizer=fingerprint_tokenizer(tokenizer),
        data=data_fingerprint,
        max_seq_length=max_seq_length,
        frozen_blocks=k,
        dtype=dtype,
    )
    description = {"frozen_blocks": k, "hidden_size": hidden_size, "max_seq_length": max_seq_length}

    def build():
        arrays = compute_features(
            model, layout, k, train, tokenizer, batch_size=batch_size, dtype=dtype, progress=progress
        )
        return ({FEATURE_COLUMN: array} for array in arrays)

    features = datasets.Features({FEATURE_COLUMN: datasets.Array2D(shape=(None, hidden_size), dtype=dtype)})
    root = cache_dir or default_cache_dir("frozen_features")
    cache, info = load_or_build(root, key, len(train), features, build, what="Frozen-feature", description=description)
    # The trunk runs without the run's autocast: its states are fp32 whatever the precision (stored as `dtype`).
    info.update(dtype=dtype, frozen_blocks=k, hidden_size=hidden_size, computed_in="fp32")
    return train.add_column(FEATURE_ROW, np.arange(len(train), dtype=np.int64)), FrozenFeatures(cache), info


class FrozenFeatures:
    """The cache's states, ready to batch: for each arrow chunk one (tokens, hidden) array viewing the memory-mapped
    file (no copy), and for each row its chunk, first token and length. A batch is gathered with one slice and one
    copy per row, without `datasets`' per-row formatting. Pickled (dataloader workers), it reopens the file."""

    def __init__(self, cache):
        import pyarrow.compute as pc

        self.cache = cache
        self.hidden = cache.features[FEATURE_COLUMN].shape[1]
        self.chunks: list[np.ndarray] = []
        chunk_of, starts, lengths = [], [], []
        for chunk in cache.data.column(FEATURE_COLUMN).chunks:
            rows = getattr(chunk, "storage", chunk)  # list<list<dtype>>: rows of tokens of hidden values
            n_tokens = pc.list_value_length(rows).to_numpy(zero_copy_only=False).astype(np.int64)
            values = rows.flatten().flatten().to_numpy(zero_copy_only=True)
            self.chunks.append(values.reshape(int(n_tokens.sum()), self.hidden))
            chunk_of.append(np.full(len(n_tokens), len(self.chunks) - 1, dtype=np.int64))
            starts.append(np.cumsum(n_tokens) - n_tokens)
            lengths.append(n_tokens)
        self.chunk_of, self.starts, self.lengths = (
            np.concatenate(a) if a else np.zeros(0, dtype=np.int64) for a in (chunk_of, starts, lengths)
        )

    def __len__(self) -> int:
        return len(self.lengths)

    def __getstate__(self):
        return {"cache": self.cache}

    def __setstate__(self, state):
        self.__init__(state["cache"])

    def row(self, i: int) -> np.ndarray:
        start = self.starts[i]
        return self.chunks[self.chunk_of[i]][start : start + self.lengths[i]]

    def batch(self, rows, length: int) -> torch.Tensor:
        """Rows `rows`, each padded with zeros on the right to `length` tokens, as one float32 tensor."""
        out = np.zeros((len(rows), length, self.hidden), dtype=np.float32)
        for i, r in enumerate(rows):
            states = self.row(int(r))
            out[i, : len(states)] = states
        return torch.from_numpy(out)


class FrozenFeatureCollator:
    """Pads the tokens with the tokenizer and the cached hidden states (zeros) to the same length. Batches with cached
    states are padded on the right, as the cache was built, so that absolute positions (GPT-2) agree; batches without
    them (evaluation) are padded as `DataCollatorWithPadding` pads them."""

    def __init__(self, tokenizer, features: FrozenFeatures | None = None):
        self.tokenizer = tokenizer
        self.features = features
        self.plain = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict]) -> dict:
        if FEATURE_ROW not in features[0]:
            return dict(self.plain(features))
        rows = [f[FEATURE_ROW] for f in features]
        batch = dict(
            self.tokenizer.pad(
                [{k: v for k, v in f.items() if k != FEATURE_ROW} for f in features],
                padding_side="right",
                return_tensors="pt",
            )
        )
        for name in ("label", "label_ids"):
            if name in batch:
                batch["labels"] = batch.pop(name)
        batch[FEATURE_COLUMN] = self.features.batch(rows, batch["input_ids"].shape[1])
        return batch
