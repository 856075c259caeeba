"""The transfer set of `hf-transfer distill` beyond the labelled rows: rows read from `unlabeled_file`, and augmented
copies of the labelled rows (TinyBERT-style word replacement by nearest neighbours in the teacher's own
input-embedding matrix, or word deletion, or swaps of neighbouring words), generated once, seeded, deduplicated
against the originals and stored under a fingerprint. Such rows carry the label -100: the teacher labels them, and
they get the soft loss only. An input enters the transfer set once: unlabelled rows that repeat a labelled row or
one another are dropped and counted."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch

from hf_transfer.core.caching import (
    cache_key,
    default_cache_dir,
    fingerprint_model,
    fingerprint_texts,
    fingerprint_tokenizer,
    load_or_build,
)
from hf_transfer.core.cleaning import PAIR_OPTION, check_text_cells
from hf_transfer.core.column_hints import closest_hint
from hf_transfer.core.data import PreparedData
from hf_transfer.core.overlap import count_overlap, input_key, inputs_of
from hf_transfer.core.tables import read_table
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.errors import DataError

logger = logging.getLogger(__name__)
NO_LABEL = -100


@dataclass
class TransferRows:
    """Rows without labels for the transfer set, and where they came from."""

    texts: list[str] = field(default_factory=list)
    pairs: list[str] | None = None
    summary: dict = field(default_factory=dict)


# --- unlabelled files -----------------------------------------------------------------------------------------------


def read_unlabeled(
    files: list[str], text_column: str, pair_column: str | None, csv_quoting: str, label_column: str | None = None
) -> TransferRows:
    """The texts of every `unlabeled_file` (checked before any model loads); empty texts are dropped and counted. A
    file that carries the training data's `label_column` too is warned about and recorded: its labels are not read."""
    rows = TransferRows(pairs=[] if pair_column else None, summary={"files": [], "rows": 0, "dropped_empty": 0})
    for path in files:
        frame = read_table(path, csv_quoting)
        for column, option in ((text_column, "text_column_name"), (pair_column, PAIR_OPTION)):
            if column is None:
                continue
            why = ": the model reads text pairs, so every row needs both texts." if column == pair_column else "."
            if column not in frame.columns:
                raise DataError(
                    f"unlabeled_file {path!r} has no column {column!r} (its columns are {list(frame.columns)})."
                    f"{closest_hint(column, list(frame.columns))} It is read with the training data's {option}{why}"
                )
            try:  # a JSON object would reach the teacher as its Python spelling
                check_text_cells(frame[column], column, option)
            except DataError as err:
                raise DataError(f"unlabeled_file {path!r}: {err}") from None
        texts = frame[text_column].astype("string").fillna("").tolist()
        keep = [i for i, text in enumerate(texts) if text.strip()]
        if not keep:  # it added nothing, silently
            raise DataError(
                f"unlabeled_file {path!r} has no row with text in column {text_column!r} (all {len(texts)} are "
                "empty); point it at a file of texts, or leave it out."
            )
        rows.texts += [texts[i] for i in keep]
        if pair_column:
            pairs = frame[pair_column].astype("string").fillna("").tolist()
            rows.pairs += [pairs[i] for i in keep]
        entry = {"file": path, "rows": len(keep), "dropped_empty": len(texts) - len(keep)}
        if label_column in frame.columns and frame[label_column].notna().any():
            logger.warning(
                f"unlabeled_file {path!r} has a {label_column!r} column too: its rows get the teacher's soft labels "
                "only, and that column is not read; put rows whose labels should count in train_file."
            )
            entry["label_column_ignored"] = label_column
        rows.summary["files"].append(entry)
        rows.summary["rows"] += len(keep)
        rows.summary["dropped_empty"] += len(texts) - len(keep)
    return rows


# --- augmentation ---------------------------------------------------------------------------------------------------


def _surface(tokenizer, token_id: int) -> str:
    return tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(token_id)]).strip()


def in_text_word_ids(tokenizer, words: list[str]) -> list[int | None]:
    """Each word's id where it stands after a space inside a text, as an augmented copy places it (BERT's `good`,
    RoBERTa's and GPT-2's `Ġgood`, SentencePiece's `▁good`), or None when the tokenizer splits it there."""
    lead = tokenizer("a", add_special_tokens=False)["input_ids"]
    encoded = tokenizer([f"a {word}" for word in words], add_special_tokens=False)["input_ids"] if words else []
    n = len(lead)
    return [ids[n] if len(ids) == n + 1 and ids[:n] == lead else None for ids in encoded]


def embedding_neighbours(embeddings: torch.Tensor, tokenizer, word_ids: list[int], k: int) -> dict[int, list[int]]:
    """For each id in `word_ids`, the `k` vocabulary entries nearest to it by cosine similarity in `embeddings` (the
    teacher's input-embedding matrix), among entries that are whole alphabetic words (no sub-word pieces, no special
    tokens), itself excluded. A whole word is an entry that its own text, placed in a text after a space, tokenizes
    to: not BERT's `##ing`, nor a byte-level BPE's or SentencePiece's `ing` without its word-start mark."""
    special = set(tokenizer.all_special_ids)
    vocab = range(embeddings.shape[0])
    pieces = tokenizer.convert_ids_to_tokens(list(vocab))
    whole = [i for i in vocab if i not in special and pieces[i] and not pieces[i].startswith("##")]
    words = [(i, text) for i in whole if (text := _surface(tokenizer, i)).isalpha()]
    found = in_text_word_ids(tokenizer, [text for _, text in words])
    whole = [i for (i, _), found_id in zip(words, found, strict=True) if found_id == i]
    candidates = torch.tensor(whole)
    normed = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1)
    pool = normed[candidates]
    found = {}
    for start in range(0, len(word_ids), 1024):
        chunk = torch.tensor(word_ids[start : start + 1024])
        scores = normed[chunk] @ pool.T
        scores[candidates.unsqueeze(0) == chunk.unsqueeze(1)] = -2.0  # never a word's own neighbour
        top = scores.topk(min(k, len(whole) - 1), dim=-1).indices
        found.update({int(w): candidates[row].tolist() for w, row in zip(chunk, top, strict=True)})
    return found


def _augment_one(words: list[str], method: str, p: float, rng, replacements: dict[str, list[str]]) -> list[str]:
    if method == "delete":
        kept = [w for w in words if rng.random() >= p]
        return kept or words[:1]
    if method == "swap":
        out, i = list(words), 0
        while i < len(out) - 1:
            if rng.random() < p:
                out[i], out[i + 1] = out[i + 1], out[i]
                i += 1
            i += 1
        return out
    out = []
    for word in words:
        options = replacements.get(word.lower())
        out.append(options[rng.integers(len(options))] if options and rng.random() < p else word)
    return out


def augment_texts(
    texts: list[str],
    *,
    method: str,
    p: float,
    factor: int,
    seed: int,
    replacements: dict | None = None,
    pairs: list[str] | None = None,
) -> list[tuple]:
    """Up to `factor` augmented copies of each row, as (source row, text), or (source row, text, pair) when `pairs`
    are given, in row order: seeded, and deduplicated against every original row (whatever its spacing) and every
    earlier copy (a copy equal to one is dropped, not retried). A pair's copy perturbs both texts, each on draws of
    its own, and is compared as a pair: rows that share a first text (a premise with several hypotheses) each keep
    their copies."""
    rng = np.random.default_rng(seed)
    rows = [(text,) for text in texts] if pairs is None else list(zip(texts, pairs, strict=True))
    # Copies are joined with single spaces: a copy that changed no word of 'a  great film ' is that row, spaced anew
    # (it tokenizes to the same ids, and took the soft loss a second time).
    seen = {tuple(" ".join(segment.split()) for segment in row) for row in rows}
    out = []
    for row, segments in enumerate(rows):
        words = [segment.split() for segment in segments]
        for _ in range(factor):
            copy = tuple(" ".join(_augment_one(w, method, p, rng, replacements or {})) for w in words)
            if copy not in seen:
                seen.add(copy)
                out.append((row, *copy))
    return out


def word_replacements(texts: list[str], tokenizer, embeddings: torch.Tensor, k: int) -> dict[str, list[str]]:
    """For every word of `texts` that the tokenizer keeps as one piece, the surface forms of its `k` nearest
    embedding neighbours (TinyBERT draws its single-piece replacements from a masked LM; the embedding matrix the
    teacher already holds gives neighbours with no extra model)."""
    words = sorted({w.lower() for text in texts for w in text.split() if w.isalpha()})
    # As the word stands in a text: alone, a byte-level BPE reads `good`, a rare sentence-start piece, not `Ġgood`.
    ids = {word: i for word, i in zip(words, in_text_word_ids(tokenizer, words), strict=True) if i is not None}
    neighbours = embedding_neighbours(embeddings, tokenizer, sorted(set(ids.values())), k)
    return {word: [_surface(tokenizer, n) for n in neighbours[i]] for word, i in ids.items()}


def augmented_rows(prepared: PreparedData, d, teacher, tokenizer, seed: int) -> TransferRows:
    """The augmented copies of the labelled training rows, from the cache when the same rows, settings and teacher
    embeddings made them before (they are stored with `datasets`, keyed by a fingerprint of all of those)."""
    train = prepared.datasets["train"]
    texts = list(train[prepared.text_column])
    pairs = list(train[prepared.text_pair_column]) if prepared.text_pair_column else None
    embeddings = teacher.get_input_embeddings()
    settings = {"method": d.augment_method, "p": d.augment_p, "factor": d.augment_factor, "seed": seed}
    key = cache_key(
        rows=fingerprint_texts(texts, pairs),
        embeddings=fingerprint_model(embeddings) if d.augment_method == "replace" else None,
        # The neighbours are read back as the tokenizer's words: the same embeddings under another vocabulary differ.
        tokenizer=fingerprint_tokenizer(tokenizer) if d.augment_method == "replace" else None,
        neighbours=d.augment_neighbours if d.augment_method == "replace" else None,
        words="in-text" if d.augment_method == "replace" else None,  # copies made by the older word rule are stale
        segments="both" if pairs else None,  # a pair's copies once perturbed its first text alone
        originals="spacing-normalised",  # copies equal to a row but for its spacing were kept before
        **settings,
    )

    def build():
        replacements = None
        if d.augment_method == "replace":
            replacements = word_replacements(texts + (pairs or []), tokenizer, embeddings.weight, d.augment_neighbours)
        for row, *copy in augment_texts(texts, replacements=replacements, pairs=pairs, **settings):
            yield {"text": copy[0], **({"pair": copy[1]} if pairs else {}), "source_row": row}

    columns = {"text": datasets.Value("string"), "source_row": datasets.Value("int64")}
    features = datasets.Features({**columns, **({"pair": datasets.Value("string")} if pairs else {})})
    cache, info = load_or_build(
        default_cache_dir("augmented"), key, None, features, build, what="Augmented transfer set", description=settings
    )
    summary = {**settings, "rows": len(cache), "cache": info["path"], "hit": info["hit"]}
    summary.update(build_seconds=info["build_seconds"], disk_bytes=info["disk_bytes"])
    summary["neighbours"] = d.augment_neighbours if d.augment_method == "replace" else None
    return TransferRows(list(cache["text"]), list(cache["pair"]) if pairs else None, summary)


# --- into the training split ----------------------------------------------------------------------------------------


def with_transfer_rows(prepared: PreparedData, parts: dict[str, TransferRows]) -> PreparedData:
    """The training split followed by every part's rows that repeat no earlier input, labelled -100 (so the
    hard-label loss skips them), and the transfer set's counts (rows kept, `repeats_dropped`) in the summary."""
    train = prepared.datasets["train"]
    text, pair = prepared.text_column, prepared.text_pair_column
    extra, dropped = _without_repeats(train, text, pair, [(name, part) for name, part in parts.items() if part.texts])
    kept = dict(extra)
    counts = {"labelled": len(train), **{name: len(kept[name].texts) if name in kept else 0 for name in parts}}
    summary = {**prepared.summary, "transfer_set": {**counts, "repeats_dropped": dropped} if dropped else counts}
    if not extra:
        return dataclasses.replace(prepared, summary=summary)
    multi = prepared.problem_type == MULTI_LABEL
    features = train.features.copy()
    if not multi:  # a ClassLabel cannot hold -100
        features["labels"] = datasets.Value("int64")
        train = train.cast(features)
    no_label = [float(NO_LABEL)] * len(prepared.label_names) if multi else NO_LABEL
    pieces = [train]
    for _, part in extra:
        columns = {text: part.texts, "labels": [no_label] * len(part.texts)}
        if pair:
            columns[pair] = part.pairs or [""] * len(part.texts)
        pieces.append(datasets.Dataset.from_dict({k: columns[k] for k in train.column_names}, features=features))
    splits = dict(prepared.datasets)
    splits["train"] = datasets.concatenate_datasets(pieces)
    summary = _count_transfer_overlap(splits, text, pair, summary)
    return dataclasses.replace(prepared, datasets=datasets.DatasetDict(splits), summary=summary)


def _without_repeats(train, text: str, pair: str | None, parts: list[tuple[str, TransferRows]]):
    """Each part's rows less those whose input (text, and pair) is a labelled row's or an earlier row's: a repeat
    would add nothing the teacher says but weight, and an unlabelled copy of a labelled row took the soft loss twice.
    Returns the parts kept and, per part, how many rows were dropped (only the parts that lost any)."""
    seen = set(inputs_of(train, text, pair).to_pylist())
    kept, dropped = [], {}
    for name, part in parts:
        pairs = part.pairs or [None] * len(part.texts)
        keys = [input_key(t, p) for t, p in zip(part.texts, pairs, strict=True)]
        keep = []
        for i, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                keep.append(i)
        if len(keep) < len(keys):
            dropped[name] = len(keys) - len(keep)
            logger.warning(
                f"{dropped[name]} of the {len(keys)} {name} rows repeat a labelled row or an earlier row (same "
                "input): each input enters the transfer set once, so they were dropped."
            )
            pairs = None if part.pairs is None else [part.pairs[i] for i in keep]
            part = dataclasses.replace(part, texts=[part.texts[i] for i in keep], pairs=pairs)
        if part.texts:
            kept.append((name, part))
    return kept, dropped


def _count_transfer_overlap(splits: dict, text: str, pair: str | None, summary: dict) -> dict:
    """Evaluation rows whose input is also an unlabelled or augmented row: the student learnt the teacher's labels
    for them, so their scores (and the retention figure) read high. They were counted against the labelled rows
    only; the count (`rows_sharing_train_input`) now covers the whole transfer set, and the rows it adds are said."""
    counted = {s: dict(summary[s]) for s in splits if s != "train" and isinstance(summary.get(s), dict)}
    before = {split: info.get("rows_sharing_train_input", 0) for split, info in counted.items()}
    count_overlap(splits, text, pair, counted)
    for split, info in counted.items():
        if added := info.get("rows_sharing_train_input", 0) - before[split]:
            logger.warning(
                f"{added} of the {info['rows']} {split} rows have the same input as an unlabelled or augmented row: "
                "the student learnt the teacher's labels for them, so their scores read high. Drop them from "
                "unlabeled_file."
            )
    return {**summary, **counted}
