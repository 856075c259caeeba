"""Data preparation: read local files or a Hub dataset, clean them, build the label space, tokenize. `load_data` does
everything that can fail on bad input, so it runs before any model is loaded; `tokenize_data` once the tokenizer
exists."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.arrow_writer import ArrowWriter

from hf_transfer.core.arguments import DataArguments
from hf_transfer.core.cleaning import (
    CHUNK_ROWS,
    DROP_REASONS,
    LabelProfile,
    Source,
    check_not_empty,
    clean_frame,
    listed,
    load_sources,
    resolve_columns,
    warn_merged_spellings,
)
from hf_transfer.core.column_hints import read_glue_pair
from hf_transfer.core.label_space import (
    case_variants,
    check_label_types,
    check_trained_classes,
    detect_problem_type,
    label_space,
    unlabel_hidden_test_labels,
    warn_case_variants,
    warn_unmapped,
)
from hf_transfer.core.overlap import record_rows, refresh_rows
from hf_transfer.core.runtime import progress_bars_off
from hf_transfer.core.scratch import scratch_folder
from hf_transfer.core.splits import carve_indices
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.core.vocabulary import note_unknown_tokens, say_truncated
from hf_transfer.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Cleaned splits with integer (or multi-hot) `labels`, and what was done to get them."""

    datasets: datasets.DatasetDict
    label_names: list[str]
    problem_type: str
    summary: dict
    text_column: str
    text_pair_column: str | None = None
    # A validation split carved from train, before `max_eval_samples` cut it (only when it did): a route that puts the
    # carve-out back into training (the few-shot route) puts back every carved row.
    uncut_carved_validation: datasets.Dataset | None = None

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


# --- reading and assembling -----------------------------------------------------------------------------------------

# Columns that live only while a split is prepared: the normalised label as JSON (None: no label), and a keep flag.
_RAW_LABEL, _KEEP = "__hf_transfer_raw_label", "__hf_transfer_keep"


def _read_split(split: str, source: Source, columns: tuple, hub_class_label: bool, folder: Path):
    """One split read frame by frame, cleaned, and written to an Arrow file in `folder` (memory-mapped, so memory
    stays flat in the number of rows): the dataset (text, pair and the raw label), its LabelProfile and its summary."""
    text, pair, label = columns
    features = {text: datasets.Value("string")} | ({pair: datasets.Value("string")} if pair else {})
    features[_RAW_LABEL] = datasets.Value("string")
    path = str(folder / f"{split}.arrow")
    profile, before, empty, second_texts = LabelProfile(), 0, 0, 0
    writer = ArrowWriter(features=datasets.Features(features), path=path, writer_batch_size=CHUNK_ROWS)
    try:
        for frame in source.chunks():
            before += len(frame)
            texts, pairs, labels, dropped, labelled = clean_frame(frame, text, pair, label, hub_class_label)
            empty += dropped
            profile.labelled |= labelled
            profile.add(labels)
            profile.add_spellings(frame[label].tolist() if label in frame.columns else ())
            second_texts += sum(1 for p in pairs if p) if pair else 0
            if texts:
                batch = {text: texts, _RAW_LABEL: [None if v is None else json.dumps(v) for v in labels]}
                writer.write_batch(batch | ({pair: pairs} if pair else {}))
        writer.finalize()
    finally:
        writer.close()
    ds = datasets.Dataset.from_file(path)
    if pair and len(ds) and not second_texts:  # the pairs are (text, ""): the model reads the first text alone
        logger.warning(
            f"the {split} data's second text column {pair!r} is empty in every row: the model reads the first text "
            "alone. Check text_pair_column_name."
        )
    missing = len(ds) - profile.rows if profile.labelled else 0  # an unlabelled split keeps its rows
    dropped = dict.fromkeys(DROP_REASONS, 0) | {"empty_text": empty, "missing_label": missing}
    return ds, profile, {"rows": len(ds) - missing, "rows_before_cleaning": before, "dropped": dropped}


def _apply_label_space(split, ds, profile, summary, space, multi: bool, args) -> datasets.Dataset:
    """`ds` with integer (or multi-hot) `labels` in place of the raw ones; rows without a label, or with a value that
    label_mapping does not name, are dropped and counted. Any other unknown value is an error, found on the profile
    before a row is converted."""
    names, ids, drop_unknown = space
    lookup = (lambda v: ids.get(str(v))) if drop_unknown else ids.get
    unknown = {value for value in profile.values if lookup(value) is None}
    if unknown and not drop_unknown:
        shown = sorted(unknown, key=str)[:10]
        if args.class_names:
            raise DataError(
                f"the {split} data has label(s) {shown} that class_names {listed(names)} does not cover: integer "
                f"labels must be 0..{len(names) - 1}, string labels one of the names. Fix the data, use "
                "label_mapping, or give --class_names null to name the classes as the data does."
            )
        alike = case_variants(shown, names)
        raise DataError(
            f"the {split} data has label(s) {shown} never seen in the training data (whose labels are "
            f"{listed(names)}); "
            "a model cannot learn them. Fix the labels, or add such examples to train."
            + (f" (These differ from training labels only in letter case: {alike}.)" if alike else "")
        )
    width = len(names)

    def convert(batch):
        labels, keep = [], []
        for raw in batch[_RAW_LABEL]:
            value = None if raw is None else json.loads(raw)
            found = None if value is None else [lookup(e) for e in value] if multi else [lookup(value)]
            ok = found is not None and None not in found
            keep.append(ok)
            if multi:
                labels.append([float(k in found) for k in range(width)] if ok else [0.0] * width)
            else:
                labels.append(found[0] if ok else 0)
        return {"labels": labels, _KEEP: keep}

    features = ds.features.copy()
    del features[_RAW_LABEL]
    features["labels"] = datasets.List(datasets.Value("float32")) if multi else datasets.ClassLabel(names=names)
    features[_KEEP] = datasets.Value("bool")
    with progress_bars_off(len(ds) < 100_000):  # quick there: its bar only drew before refusals found after it
        ds = ds.map(convert, batched=True, remove_columns=[_RAW_LABEL], features=features, desc=f"Labels ({split})")
    kept = pc.sum(ds.data.column(_KEEP)).as_py() or 0
    summary["dropped"]["unmapped_label"] = summary["rows"] - kept
    summary["rows"] = kept
    if kept < len(ds):
        ds = ds.filter(lambda keep: keep, input_columns=_KEEP, batched=True, desc=f"Dropping rows ({split})")
    return ds.remove_columns(_KEEP)


def _labels_array(ds: datasets.Dataset) -> np.ndarray:
    """The `labels` column as a numpy array (2-D for multi-hot), gathered in Arrow from that column alone: reading a
    selected dataset through `datasets` gathers every column of the selected rows (the texts too) first."""
    column = ds.data.column("labels")
    indices = getattr(ds, "_indices", None)  # the row selection of `select`/`filter`, if any
    if indices is not None:
        column = column.take(indices.column(0))
    if isinstance(column.type, pa.ListType):  # multi-hot rows, all as wide as the label space
        return pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(len(column), -1)
    return column.to_numpy(zero_copy_only=False).astype(np.int64)


def _carve_validation(train: datasets.Dataset, percentage: int, seed: int):
    """Seeded, shuffled train/validation indices (int64 arrays), stratified by label (`core.splits`; multi-label rows
    too). Done in numpy: `Dataset.train_test_split(stratify_by_column=...)` reads the labels row by row (seconds on
    SST-2), and a Python list of a million indices costs more memory than the rows it selects."""
    if len(train) < 2:
        raise DataError(
            f"train has {len(train)} usable row(s), too few to carve a validation split; give validation_file."
        )
    return carve_indices(_labels_array(train), percentage, seed)


def _truncate(ds: datasets.Dataset, limit: int, split: str, names: list[str], multi: bool) -> datasets.Dataset:
    """The first `limit` rows, as run_glue does; warns when that loses whole classes (files sorted by label)."""
    if len(ds) <= limit:
        return ds
    kept = ds.select(range(limit))
    if not multi:
        held = set(_labels_array(kept).tolist())
        lost = sorted(set(_labels_array(ds).tolist()) - held)
        if lost and (len(held) > 1 or split != "train"):  # one training class left is refused: that line alone
            logger.warning("The first %d %s rows hold no example of %s; is the file sorted by label?", limit, split,
                           [names[i] for i in lost])  # fmt: skip
    return kept


def _label_counts(ds: datasets.Dataset, names: list[str], multi: bool) -> dict:
    """`label_counts`: rows per label; for multi-label also `rows_without_labels`, rows whose list is empty (kept:
    each is a negative example of every label)."""
    if "labels" not in ds.column_names:
        return {"label_counts": {}}
    labels = _labels_array(ds)
    totals = labels.sum(0) if multi else np.bincount(labels, minlength=len(names))
    counts = {"label_counts": {name: int(count) for name, count in zip(names, totals, strict=True)}}
    if multi:
        counts["rows_without_labels"] = int((labels.sum(1) == 0).sum()) if len(labels) else 0
    return counts


def load_data(data_args: DataArguments, seed: int = 42, require_train: bool = True) -> PreparedData:
    """Read, check and clean the data, build the label space, and carve a validation split if there is none.

    Raises `DataError` with a one-line explanation on any bad input, before a model is loaded.
    """
    args, started = data_args, time.perf_counter()
    sources, class_names, source = load_sources(args)
    if not sources:
        raise DataError("no data given: set train_file (csv, tsv, json, jsonl, parquet) or dataset_name.")
    if require_train and "train" not in sources:
        raise DataError(
            f"no training data: got splits {list(sources)}; give train_file or a dataset with a train split."
        )
    if args.dataset_name and "train" in sources:  # train_file's pairs are read before any file is (preflight)
        read_glue_pair(args, sources["train"].columns, "dataset_name")
    text, pair, label = resolve_columns(args, {split: src.columns for split, src in sources.items()})
    hub_names = class_names.get(label) if args.class_names is None and args.label_mapping is None else None
    folder = scratch_folder()
    raw, profiles, summaries = {}, {}, {}
    for split, src in sources.items():
        raw[split], profiles[split], summaries[split] = _read_split(
            split, src, (text, pair, label), hub_names is not None, folder
        )
        if not profiles[split].labelled and split != "test":
            raise DataError(f"the {split} data has no labels in column {label!r}; {split} data needs labels.")
        check_not_empty(split, summaries[split])
    unlabel_hidden_test_labels(profiles)
    problem_type = detect_problem_type(args, profiles, label)
    multi = problem_type == MULTI_LABEL
    check_label_types(args, profiles, label)
    space = label_space(args, profiles, hub_names)
    names = space[0]
    warn_case_variants(names)
    if require_train and multi and not names:  # every list empty: no output to learn (sklearn failed after training)
        raise DataError(
            f"every label list of the training data is empty ({profiles['train'].rows} rows); a multi-label model "
            "needs at least one label name. Check label_column_name, or add rows that carry labels."
        )
    if require_train and not multi and len(names) < 2:  # one output: no choice to learn (and not a classifier)
        raise DataError(
            f"the training data has a single class {names}; a classifier needs at least two. Check "
            "label_column_name and label_mapping, or add examples of the other classes."
        )
    splits = {}
    for split, ds in raw.items():
        if profiles[split].labelled:
            splits[split] = _apply_label_space(split, ds, profiles[split], summaries[split], space, multi, args)
            check_not_empty(split, summaries[split])
        else:
            splits[split] = ds.remove_columns(_RAW_LABEL)
    if "train" in splits and profiles["train"].labelled:
        check_trained_classes(_label_counts(splits["train"], names, multi)["label_counts"], multi, args)
    for split, summary in summaries.items():  # after the refusals: one line where the run stops
        shown = getattr(args, "shown_splits", {}).get(split, split)
        warn_unmapped(shown, summary["dropped"]["unmapped_label"], summary["rows_before_cleaning"], args)
    stats = {split: {k: v for k, v in summary.items() if k != "rows"} for split, summary in summaries.items()}
    carved = "train" in splits and "validation" not in splits
    if carved:
        train_idx, val_idx = _carve_validation(splits["train"], args.validation_split_percentage, seed)
        splits["train"], splits["validation"] = splits["train"].select(train_idx), splits["train"].select(val_idx)
        stats["validation"] = {"rows_before_cleaning": len(val_idx), "dropped": dict.fromkeys(DROP_REASONS, 0)}
        stats["train"]["carved_to_validation"] = len(val_idx)
    uncut = splits["validation"] if carved else None
    for split, limit in (("train", args.max_train_samples), ("validation", args.max_eval_samples)):
        if limit is not None and split in splits:
            whole = len(splits[split])
            splits[split] = _truncate(splits[split], limit, getattr(args, "shown_splits", {}).get(split, split),
                                      names, multi)  # fmt: skip
            stats[split]["cut_by_max_samples"] = whole - len(splits[split])
            if split == "train" and whole > limit and profiles["train"].labelled:
                counts = _label_counts(splits[split], names, multi)["label_counts"]
                check_trained_classes(counts, multi, args, cut=f" kept by max_train_samples {limit}")
    summary = {"source": source, "columns": {"text": text, "text_pair": pair, "label": label}}
    summary["validation_carved_from_train"] = carved
    summary["seconds"] = {"read_and_clean": round(time.perf_counter() - started, 2)}
    for split, ds in splits.items():
        summary[split] = {"rows": len(ds), **stats[split], **_label_counts(ds, names, multi)}
    record_rows(splits, text, pair, summary)
    warn_merged_spellings(profiles, label)  # after every refusal here: a refusal stays one line
    uncut = uncut if uncut is not None and len(uncut) > len(splits["validation"]) else None
    return PreparedData(datasets.DatasetDict(splits), names, problem_type, summary, text, pair, uncut)


def tokenize_data(
    prepared: PreparedData, tokenizer, max_seq_length: int, num_proc: int | None = None
) -> datasets.DatasetDict:
    """Tokenize every split, truncated to `max_seq_length` and unpadded (the collator pads each batch).

    Keeps `labels` and drops the raw text columns. `max_seq_length` is what the model can embed: `train` and
    `distill` lowered it before any weight loaded (`train.preflight.fit_max_seq_length`).
    """
    text, pair, started = prepared.text_column, prepared.text_pair_column, time.perf_counter()

    def encode(batch):
        return tokenizer(batch[text], batch[pair] if pair else None, truncation=True, max_length=max_seq_length)

    tokenized = prepared.datasets.map(
        encode,
        batched=True,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        remove_columns=[c for c in (text, pair) if c],
        desc="Tokenizing",
    )
    for split, ds in tokenized.items():
        truncated = count_truncated(prepared.datasets[split], ds, tokenizer, max_seq_length, text, pair)
        prepared.summary.setdefault(split, {})["rows_truncated"] = truncated
        say_truncated(truncated, len(ds), split, max_seq_length, pair is not None)
    note_unknown_tokens(tokenized, tokenizer, prepared.summary)
    prepared.summary.setdefault("seconds", {})["tokenize"] = round(time.perf_counter() - started, 2)
    return tokenized


def count_truncated(raw: datasets.Dataset, tokenized: datasets.Dataset, tokenizer, max_seq_length: int, text: str,
                    pair: str | None) -> int:  # fmt: skip
    """Rows cut to `max_seq_length` tokens: those at the limit are tokenized again to one more, 1,000 at a time."""
    at_limit = np.flatnonzero(token_lengths(tokenized) >= max_seq_length).tolist()
    cut = 0
    for start in range(0, len(at_limit), 1000):
        rows = raw.select(at_limit[start : start + 1000])
        texts, pairs = list(rows[text]), list(rows[pair]) if pair else None
        ids = tokenizer(texts, pairs, truncation=True, max_length=max_seq_length + 1, verbose=False)["input_ids"]
        cut += sum(len(row) > max_seq_length for row in ids)
    return cut


def token_lengths(tokenized: datasets.Dataset) -> np.ndarray:
    """Each row's number of tokens, read from the Arrow list offsets (no Python list per row)."""
    column = tokenized.with_format("arrow", columns=["input_ids"])[:]["input_ids"]
    return pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)


def carve_split(prepared: PreparedData, name: str, percentage: int, seed: int) -> PreparedData:
    """The same data with `percentage` of train moved (seeded, stratified; a class of one row stays in train) into a
    new split `name`, such as the calibration split of `calibrate_decision`; the summary says how many rows moved."""
    multi = prepared.problem_type == MULTI_LABEL
    train = prepared.datasets["train"]
    keep, carved = _carve_validation(train, percentage, seed)
    splits = dict(prepared.datasets)
    splits["train"], splits[name] = train.select(keep), train.select(carved)
    summary = dict(prepared.summary)
    summary["train"] = {**summary["train"], "rows": len(keep)}
    summary[name] = {
        "rows": len(carved),
        "carved_from_train_percent": percentage,
        **_label_counts(splits[name], prepared.label_names, multi),
    }
    summary["train"].update(_label_counts(splits["train"], prepared.label_names, multi))
    summary = refresh_rows(splits, prepared.text_column, prepared.text_pair_column, summary)
    return dataclasses.replace(prepared, datasets=datasets.DatasetDict(splits), summary=summary)
