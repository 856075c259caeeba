"""Batched inference for classifiers: length-sorted batches, no gradient, a progress bar."""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm


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
) -> np.ndarray:
    """Logits for `texts` (and optional pairs), in input order, as float32.

    Inputs are sorted by length so each batch pads only to its own longest member; on short-text data this is
    several times cheaper than padding every batch to `max_length`.
    """
    encodings = tokenizer(texts, text_pairs, truncation=True, max_length=max_length)
    lengths = np.array([len(ids) for ids in encodings["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs: list[np.ndarray] = [None] * len(texts)
    batches = range(0, len(texts), batch_size)
    with torch.inference_mode():
        for start in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
            idx = order[start : start + batch_size]
            features = [{k: encodings[k][i] for k in encodings.keys()} for i in idx]
            batch = tokenizer.pad(features, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(**batch).logits.float().cpu().numpy()
            for row, i in zip(logits, idx, strict=True):
                outputs[i] = row
    model.train(was_training)
    return np.stack(outputs) if outputs else np.zeros((0, model.config.num_labels), dtype=np.float32)


def measure_speed(models: dict, texts: list[str], pairs: list[str] | None, *, batch_size: int, max_length: int):
    """Inference throughput (samples/s) of each `name: (model, tokenizer)` on the same texts.

    The models take turns, twice, after a warm-up batch; each keeps its faster pass, so a burst of load on a shared
    machine hurts neither side alone. Also returns each model's logits.
    """
    from hf_transfer.core.inference import predict_logits

    best = dict.fromkeys(models, float("inf"))
    logits = {}
    for model, tokenizer in models.values():
        predict_logits(model, tokenizer, texts[:batch_size], None if pairs is None else pairs[:batch_size],
                       batch_size=batch_size, max_length=max_length, progress=False)  # fmt: skip
    for _ in range(2):
        for name, (model, tokenizer) in models.items():
            started = time.perf_counter()
            logits[name] = predict_logits(
                model, tokenizer, texts, pairs, batch_size=batch_size, max_length=max_length, progress=False
            )
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: len(texts) / seconds for name, seconds in best.items()}, logits
