"""Batched inference for classifiers: length-sorted batches, no gradient, a progress bar. The same loop runs a PyTorch
model or an ONNX Runtime session (`core.onnx_model.OnnxClassifier`), so every command scores both alike."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch

from hf_transfer.core.runtime import progress_bar
from hf_transfer.errors import ConfigError

# Rows tokenized and length-sorted together: memory stays bounded on any number of rows, and a window this large
# pads almost as little as sorting every row would.
SORT_WINDOW_ROWS = 65_536


def usable_max_length(model, tokenizer, max_length: int) -> int:
    """`max_length`, lowered to what the model can embed (its position table less the positions a prompt-learning
    adapter takes, and the tokenizer's own limit): a longer input would fail inside the model's embeddings."""
    return max_length_for_config(model.config, tokenizer, max_length, virtual_tokens(model))


def virtual_tokens(model) -> int:
    """`prompt_positions` of the model's active PEFT config; 0 for a model without an adapter."""
    return prompt_positions(getattr(model, "active_peft_config", None))


def prompt_positions(peft_config) -> int:
    """Positions a PEFT prompt-learning adapter (prompt tuning, p-tuning, prefix tuning) puts before the text, each
    taking a row of the position table; 0 for any other PEFT config, or None."""
    learning = getattr(peft_config, "is_prompt_learning", False)
    return int(getattr(peft_config, "num_virtual_tokens", None) or 0) if learning else 0


# Model types whose position ids start after the padding index (RoBERTa's `create_position_ids_from_input_ids`): the
# first pad_token_id + 1 rows of the position table are never a real position. Found by running every sequence
# classification type at its `max_position_embeddings`.
PADDING_OFFSET_POSITIONS = frozenset(
    ("camembert", "data2vec-text", "esm", "ibert", "layoutlmv3", "lilt", "longformer", "luke", "markuplm", "mpnet",
     "roberta", "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "xmod")
)  # fmt: skip


def keep_position_padding(model):
    """`model` with `config.pad_token_id` back at the padding index its position embeddings were built with, for the
    types above (their classifiers read no pad id, their positions count from it); returns it. Trainer, and
    `align_pad_token`, set it to the tokenizer's pad id: where that differed (another model's tokenizer), the saved
    folder rebuilt its embeddings with the tokenizer's id and read every position one place off on reload."""
    if getattr(getattr(model, "config", None), "model_type", None) in PADDING_OFFSET_POSITIONS:
        for module in model.modules():
            if isinstance(getattr(module, "padding_idx", None), int) and hasattr(module, "position_embeddings"):
                model.config.pad_token_id = module.padding_idx
                break
    return model


def max_length_for_config(config, tokenizer, max_length: int, virtual: int = 0) -> int:
    """`usable_max_length` from the model's config alone, before any weight loads (`train`, `distill`); `virtual`: the
    positions a prompt-learning adapter takes before the text."""
    positions = getattr(config, "max_position_embeddings", None)
    pad = getattr(config, "pad_token_id", None)
    if isinstance(positions, int) and getattr(config, "model_type", None) in PADDING_OFFSET_POSITIONS:
        positions -= (pad if isinstance(pad, int) and pad >= 0 else 0) + 1
    if isinstance(positions, int):
        positions -= virtual
    limits = [positions, getattr(tokenizer, "model_max_length", None)]
    return min([max_length, *(n for n in limits if isinstance(n, int) and n > 0)])


def max_length_limit(models: list[tuple], given: int, virtual: int = 0) -> tuple[int, str]:
    """What every (config, tokenizer) of `models` can embed, at most `given`, and what limits it where it is lower:
    the position table, or a tokenizer's own model_max_length below it (for the warning that says so)."""
    usable = min(max_length_for_config(config, tokenizer, given, virtual) for config, tokenizer in models)
    by_model = min(max_length_for_config(config, None, given, virtual) for config, _ in models)
    return usable, "the model can embed" if by_model == usable else "the tokenizer's model_max_length allows"


def cap_model_max_length(config, tokenizer, virtual: int = 0) -> None:
    """Lower the tokenizer's `model_max_length` to what the model can embed, before it is saved with the model. A
    tokenizer that states no limit (transformers then uses 1e30) or one above the position table let
    `pipeline(..., truncation=True)` and `tokenizer(text, truncation=True)` pass a longer row, which failed inside the
    model's embeddings, wherever the folder went."""
    tokenizer.model_max_length = max_length_for_config(config, tokenizer, tokenizer.model_max_length, virtual)


def check_room_for_text(tokenizer, max_length: int, pair: bool) -> None:
    """ConfigError when `max_length` leaves no token of the text (of each text of a pair) once the tokenizer's special
    tokens are in. Below their count a tokenizer truncates nothing at all (it logs an error and returns the whole
    row, which then failed inside the model's embeddings); at it, every row is special tokens alone."""
    special = tokenizer.num_special_tokens_to_add(pair=pair)
    needed = special + (2 if pair else 1)
    if max_length < needed:
        raise ConfigError(
            f"max_seq_length {max_length} leaves no room for the text: the tokenizer adds {special} special tokens to "
            f"a {'text pair' if pair else 'text'}, and each text needs one more; set max_seq_length to at least "
            f"{needed} (such as the usual 128)."
        )


def check_vocabulary(config, tokenizer) -> None:
    """ConfigError when the tokenizer has more tokens than the model's embedding table has rows: another model's
    tokenizer (`tokenizer_name`, or one saved into the wrong folder) fed ids the table lacks, and the run failed with
    an IndexError inside the embeddings once the weights had loaded. A model whose config states no int
    `vocab_size` is not checked. Also when an encoder-decoder classifier (T5, BART), which classifies from its
    end-of-sequence token, has a tokenizer that does not add that token."""
    rows, tokens = getattr(config, "vocab_size", None), len(tokenizer)
    if isinstance(rows, int) and not isinstance(rows, bool) and 0 < rows < tokens:
        model = getattr(config, "_name_or_path", "") or config.model_type
        raise ConfigError(
            f"tokenizer {tokenizer.name_or_path!r} has {tokens} tokens but model {model!r} embeds only {rows} (its "
            "vocab_size): it is not this model's tokenizer, and its higher ids would fail inside the embeddings. Use "
            "the model's own tokenizer (tokenizer_name, or the one saved in the model folder)."
        )
    eos = getattr(config, "eos_token_id", None)
    seq2seq = getattr(config, "is_encoder_decoder", False) and isinstance(eos, int)
    if seq2seq and eos not in tokenizer("a")["input_ids"]:
        # T5 and BART classify from the end-of-sequence token: "Each example must contain at least one <eos> token."
        model = getattr(config, "_name_or_path", "") or config.model_type
        raise ConfigError(
            f"model {model!r} classifies from its end-of-sequence token (id {eos}), which tokenizer "
            f"{tokenizer.name_or_path!r} does not add; use the model's own tokenizer."
        )


def length_sorted_batches(
    tokenizer,
    texts: list[str],
    text_pairs: list[str] | None = None,
    *,
    batch_size: int,
    max_length: int,
    return_tensors: str = "pt",
) -> Iterator[tuple[np.ndarray, dict]]:
    """(row indices, padded batch) pairs, longest rows first within each window of SORT_WINDOW_ROWS rows.

    Sorting by length lets each batch pad only to its own longest member; on short-text data this is several times
    cheaper than padding every batch to `max_length`. Each window's texts are tokenized in one call (the fast
    tokenizers do that in parallel Rust), then each batch is padded with numpy (`tokenizer.pad` builds the same arrays
    through a dict per row, a measurable share of a small model's inference time)."""
    for offset in range(0, len(texts), SORT_WINDOW_ROWS):
        window = slice(offset, offset + SORT_WINDOW_ROWS)
        pairs = text_pairs[window] if text_pairs is not None else None
        for idx, batch in _sorted_window(tokenizer, texts[window], pairs, batch_size, max_length, return_tensors):
            yield idx + offset, batch


def _sorted_window(tokenizer, texts, text_pairs, batch_size: int, max_length: int, return_tensors: str):
    encodings = tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None, truncation=True,
                          max_length=max_length)  # fmt: skip
    lengths = np.fromiter((len(ids) for ids in encodings["input_ids"]), dtype=np.int64, count=len(texts))
    order = np.argsort(-lengths, kind="stable")
    keys = list(encodings.keys())
    pad_values = _pad_values(tokenizer, keys)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        if pad_values is None:  # a key or a tokenizer without a known pad value: let the tokenizer pad (or refuse)
            features = [{k: encodings[k][i] for k in keys} for i in idx]
            yield idx, tokenizer.pad(features, return_tensors=return_tensors)
            continue
        width = int(lengths[idx].max())
        batch = {}
        for key in keys:
            column, array = encodings[key], np.full((len(idx), width), pad_values[key], dtype=np.int64)
            for row, i in enumerate(idx):
                values = column[i]
                if left:
                    array[row, width - len(values) :] = values
                else:
                    array[row, : len(values)] = values
            batch[key] = torch.from_numpy(array) if return_tensors == "pt" else array
        yield idx, batch


def _pad_values(tokenizer, keys: list[str]) -> dict | None:
    """The value each encoding key is padded with, as `tokenizer.pad` pads it; None when one is not known."""
    known = {
        "input_ids": getattr(tokenizer, "pad_token_id", None),
        "attention_mask": 0,
        "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
        "special_tokens_mask": 1,
    }
    if any(known.get(k) is None for k in keys):
        return None
    return {k: known[k] for k in keys}


def _torch_forward(model):
    device = next(model.parameters()).device

    def forward(batch: dict) -> np.ndarray:
        return model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()

    return forward


def predict_logits(
    model,
    tokenizer,
    texts: list[str],
    text_pairs: list[str] | None = None,
    *,
    batch_size: int = 64,
    max_length: int = 128,
    progress: bool = True,
    desc: str = "predict",
    bar=None,
    unknown_only: list | None = None,
) -> np.ndarray:
    """Logits for `texts` (and optional pairs), in input order, as float32.

    `model` is a PyTorch classifier (run in eval mode under `inference_mode`, its mode restored afterwards) or an
    `OnnxClassifier`. `bar`, when given, is advanced by the rows of each batch instead of a bar of its own.
    `unknown_only`, when given, gets the indices of the rows whose text is unknown tokens alone (emoji, a script the
    vocabulary lacks): the model saw nothing of them."""
    onnx = hasattr(model, "run_batch")
    num_labels = model.config.num_labels
    out = np.zeros((len(texts), num_labels), dtype=np.float32)
    if not texts:
        return out
    tensors = "np" if onnx else "pt"
    max_length = usable_max_length(model, tokenizer, max_length)
    check_room_for_text(tokenizer, max_length, text_pairs is not None)
    batches = length_sorted_batches(
        tokenizer, texts, text_pairs, batch_size=batch_size, max_length=max_length, return_tensors=tensors
    )
    own_bar = None
    if bar is None and progress:
        own_bar = bar = progress_bar(total=len(texts), desc=desc, unit="row")
    if onnx:
        forward, context, was_training = model.run_batch, contextlib.nullcontext(), None
    else:
        forward, context, was_training = _torch_forward(model), torch.inference_mode(), model.training
        model.eval()
    try:
        with context:
            for idx, batch in batches:
                out[idx] = forward(batch)
                if unknown_only is not None:
                    unknown_only.extend(idx[_unknown_alone(tokenizer, batch)].tolist())
                if bar is not None:
                    bar.update(len(idx))
    finally:
        if was_training is not None:
            model.train(was_training)
        if own_bar is not None:
            own_bar.close()
    return out


def _unknown_alone(tokenizer, batch: dict) -> np.ndarray:
    """Which rows of a padded batch hold tokens, every one of them the unknown token, besides special ones."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    ids = np.asarray(batch["input_ids"])
    if unknown is None:
        return np.zeros(len(ids), dtype=bool)
    mask = np.asarray(batch["attention_mask"], dtype=bool) if "attention_mask" in batch else np.ones_like(ids, bool)
    content = mask & ~np.isin(ids, [i for i in tokenizer.all_special_ids if i != unknown])
    return content.any(1) & ((ids == unknown) | ~content).all(1)


MIN_TIMED_SECONDS = 0.5  # of timed passes per model, before measure_speed keeps the fastest


def measure_speed(
    models: dict, texts: list[str], pairs: list[str] | None, *, batch_size: int, max_length: int, on_pass=None
):
    """Inference throughput (samples/s) of each `name: (model, tokenizer)` on the same texts.

    The models take turns after a warm-up batch, at least twice and until each has run for `MIN_TIMED_SECONDS` (a
    few rows of a small model take milliseconds, where one burst of load on a shared machine decided the ratio: up
    to 20 turns); each keeps its fastest pass, so load hurts neither side alone. Also returns each model's logits.
    `on_pass()`, if given, is called after each timed pass (a progress bar's update).
    """
    best = dict.fromkeys(models, float("inf"))
    spent = dict.fromkeys(models, 0.0)
    logits = {}
    for model, tokenizer in models.values():
        predict_logits(model, tokenizer, texts[:batch_size], None if pairs is None else pairs[:batch_size],
                       batch_size=batch_size, max_length=max_length, progress=False)  # fmt: skip
    turns = 0
    while turns < 2 or (turns < 20 and min(spent.values()) < MIN_TIMED_SECONDS):
        turns += 1
        for name, (model, tokenizer) in models.items():
            started = time.perf_counter()
            logits[name] = predict_logits(
                model, tokenizer, texts, pairs, batch_size=batch_size, max_length=max_length, progress=False
            )
            seconds = time.perf_counter() - started
            best[name], spent[name] = min(best[name], seconds), spent[name] + seconds
            if on_pass is not None:
                on_pass()
    return {name: len(texts) / seconds for name, seconds in best.items()}, logits
