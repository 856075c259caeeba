"""Data preparation: read local files or a Hub dataset, clean them, build the label space, tokenize.

`load_data` does everything that can fail on bad input, so it runs before any model is loaded; `tokenize_data` runs
once the tokenizer exists."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import datasets
import numpy as np
import pandas as pd

from hf_transfer.core.arguments import DataArguments
from hf_transfer.core.cleaning import (
    DROP_REASONS,
    Split,
    check_not_empty,
    clean_split,
    load_frames,
    normalise_scalar,
    resolve_columns,
)
from hf_transfer.core.tasks import MULTI_LABEL, SINGLE_LABEL
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

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


# --- reading --------------------------------------------------------------------------------------------------------


# --- columns and cleaning -------------------------------------------------------------------------------------------


# --- labels ---------------------------------------------------------------------------------------------------------


def _detect_problem_type(args: DataArguments, parts: dict[str, Split], label: str) -> str:
    lists = {s: [v for v in p.labels if isinstance(v, list)] for s, p in parts.items() if p.labels is not None}
    scalars = {s: [v for v in p.labels if not isinstance(v, list)] for s, p in parts.items() if p.labels is not None}
    has_lists, has_scalars = any(lists.values()), any(scalars.values())
    if args.problem_type == MULTI_LABEL and has_scalars or args.problem_type is None and has_lists and has_scalars:
        split, values = next((s, v) for s, v in scalars.items() if v)
        raise DataError(
            f"multi-label data needs a list label in every row, but {len(values)} row(s) of the {split} column "
            f'{label!r} hold single values such as {values[0]!r}; write them as lists like ["a", "b"] (a JSON list '
            "string in csv/tsv), or set problem_type single_label_classification."
        )
    if args.problem_type == SINGLE_LABEL and has_lists:
        split, values = next((s, v) for s, v in lists.items() if v)
        raise DataError(
            f"problem_type is single_label_classification but the {split} column {label!r} holds lists such as "
            f"{values[0]!r}; set problem_type multi_label_classification, or give one label per row."
        )
    return MULTI_LABEL if has_lists else SINGLE_LABEL


def _check_label_types(args: DataArguments, parts: dict[str, Split], label: str) -> None:
    if args.label_mapping is not None:  # values are compared as strings, so any mix of types is fine
        return
    for split, part in parts.items():
        values = [e for v in part.labels or [] for e in (v if isinstance(v, list) else [v])]
        by_type = {t: next(v for v in values if type(v) is t) for t in {type(v) for v in values}}
        if float in by_type:
            raise DataError(
                f"the {split} column {label!r} holds non-integer numbers such as {by_type[float]!r}; classification "
                "needs class labels. Map them to names with label_mapping, or use another label column."
            )
        if int in by_type and str in by_type:
            raise DataError(
                f"the {split} column {label!r} mixes integers and strings (e.g. {by_type[int]!r} and "
                f"{by_type[str]!r}); use one type, or label_mapping to name both."
            )


def _label_space(args: DataArguments, parts: dict[str, Split], class_names: list[str] | None):
    """Label names in id order, a value -> id dict, and whether unknown values are dropped (label_mapping only)."""
    if args.label_mapping is not None:
        names = list(dict.fromkeys(args.label_mapping.values()))
        # Keys are compared as strings of normalised values, so `4`, `"4"` and `4.0` all match rating 4.
        return names, {str(normalise_scalar(k)): names.index(n) for k, n in args.label_mapping.items()}, True
    names = args.class_names or class_names
    if names is not None:
        return list(names), {i: i for i in range(len(names))} | {n: i for i, n in enumerate(names)}, False
    reference = [parts["train"]] if "train" in parts else [p for p in parts.values() if p.labels is not None]
    seen = {e for p in reference for v in p.labels for e in (v if isinstance(v, list) else [v])}
    values = sorted(seen)
    ids = {v: v for v in values} if values == list(range(len(values))) else {v: i for i, v in enumerate(values)}
    return [str(v) for v in values], ids, False


def _apply_label_space(split: str, part: Split, names, ids, drop_unknown: bool, multi: bool, args) -> list:
    lookup = (lambda v: ids.get(str(v))) if drop_unknown else ids.get
    out, keep, unknown = [], [], set()
    for i, value in enumerate(part.labels):
        found = [lookup(e) for e in value] if multi else [lookup(value)]
        if None in found:
            unknown.update(e for e, f in zip(value if multi else [value], found, strict=True) if f is None)
            continue
        keep.append(i)
        out.append([float(k in found) for k in range(len(names))] if multi else found[0])
    if unknown and not drop_unknown:
        shown = sorted(unknown, key=str)[:10]
        if args.class_names:
            raise DataError(
                f"the {split} data has label(s) {shown} that class_names {names} does not cover: integer labels must "
                f"be 0..{len(names) - 1}, string labels one of the names. Fix the data, or use label_mapping."
            )
        raise DataError(
            f"the {split} data has label(s) {shown} never seen in the training data (whose labels are {names}); "
            "a model cannot learn them. Fix the labels, or add such examples to train."
        )
    part.summary["dropped"]["unmapped_label"] = len(part.labels) - len(keep)
    part.summary["rows"] = len(keep)
    part.texts = [part.texts[i] for i in keep]
    part.pairs = [part.pairs[i] for i in keep] if part.pairs is not None else None
    return out


# --- assembling -----------------------------------------------------------------------------------------------------


def _to_dataset(part: Split, ids: list | None, text: str, pair: str | None, names: list[str], multi: bool):
    columns, features = {text: part.texts}, {text: datasets.Value("string")}
    if pair:
        columns[pair], features[pair] = part.pairs, datasets.Value("string")
    if ids is not None:
        columns["labels"] = ids
        features["labels"] = datasets.List(datasets.Value("float32")) if multi else datasets.ClassLabel(names=names)
    features = datasets.Features(features)
    return datasets.Dataset.from_pandas(pd.DataFrame(columns), features=features, preserve_index=False)


def _carve_validation(train: datasets.Dataset, percentage: int, seed: int, multi: bool) -> tuple[list, list]:
    """Seeded, shuffled train/validation indices, stratified by label when every class has two rows or more.

    Done in numpy: `Dataset.train_test_split(stratify_by_column=...)` reads the labels row by row (seconds on SST-2).
    """
    if len(train) < 2:
        raise DataError(
            f"train has {len(train)} usable row(s), too few to carve a validation split; give validation_file."
        )
    rng = np.random.default_rng(seed)
    labels = None if multi else np.asarray(train["labels"][:])
    if labels is None or np.bincount(labels)[np.unique(labels)].min() < 2:
        groups = [np.arange(len(train))]
    else:
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    train_idx, val_idx = [], []
    for group in groups:
        group = rng.permutation(group)
        n_val = min(max(1, round(len(group) * percentage / 100)), len(group) - 1)
        val_idx.extend(group[:n_val])
        train_idx.extend(group[n_val:])
    return rng.permutation(train_idx).tolist(), rng.permutation(val_idx).tolist()


def _truncate(ds: datasets.Dataset, limit: int, split: str, names: list[str], multi: bool) -> datasets.Dataset:
    """The first `limit` rows, as run_glue does; warns when that loses whole classes (files sorted by label)."""
    if len(ds) <= limit:
        return ds
    kept = ds.select(range(limit))
    if not multi:
        lost = sorted(set(ds["labels"][:]) - set(kept["labels"][:]))
        if lost:
            lost_names = [names[i] for i in lost]
            logger.warning(
                f"The first {limit} {split} rows hold no example of {lost_names}; is the file sorted by label?"
            )
    return kept


def _label_counts(ds: datasets.Dataset, names: list[str], multi: bool) -> dict[str, int]:
    if "labels" not in ds.column_names:
        return {}
    labels = np.asarray(ds["labels"][:])
    totals = labels.sum(0) if multi else np.bincount(labels, minlength=len(names))
    return {name: int(count) for name, count in zip(names, totals, strict=True)}


def load_data(data_args: DataArguments, seed: int = 42, require_train: bool = True) -> PreparedData:
    """Read, check and clean the data, build the label space, and carve a validation split if there is none.

    Raises `DataError` with a one-line explanation on any bad input, before a model is loaded.
    """
    args = data_args
    frames, class_names, source = load_frames(args)
    if not frames:
        raise DataError("no data given: set train_file (csv, tsv, json, jsonl, parquet) or dataset_name.")
    if require_train and "train" not in frames:
        raise DataError(
            f"no training data: got splits {list(frames)}; give train_file or a dataset with a train split."
        )
    text, pair, label = resolve_columns(args, frames)
    hub_names = class_names.get(label) if args.class_names is None and args.label_mapping is None else None
    parts = {s: clean_split(df, text, pair, label, hub_names is not None) for s, df in frames.items()}
    for split, part in parts.items():
        if part.labels is None and split != "test":
            raise DataError(f"the {split} data has no labels in column {label!r}; {split} data needs labels.")
        check_not_empty(split, part)
    problem_type = _detect_problem_type(args, parts, label)
    multi = problem_type == MULTI_LABEL
    _check_label_types(args, parts, label)
    names, ids, drop_unknown = _label_space(args, parts, hub_names)
    splits = {}
    for split, part in parts.items():
        label_ids = None
        if part.labels is not None:
            label_ids = _apply_label_space(split, part, names, ids, drop_unknown, multi, args)
            check_not_empty(split, part)
        splits[split] = _to_dataset(part, label_ids, text, pair, names, multi)
    stats = {split: {k: v for k, v in part.summary.items() if k != "rows"} for split, part in parts.items()}
    carved = "train" in splits and "validation" not in splits
    if carved:
        train_idx, val_idx = _carve_validation(splits["train"], args.validation_split_percentage, seed, multi)
        splits["train"], splits["validation"] = splits["train"].select(train_idx), splits["train"].select(val_idx)
        stats["validation"] = {"rows_before_cleaning": len(val_idx), "dropped": dict.fromkeys(DROP_REASONS, 0)}
    for split, limit in (("train", args.max_train_samples), ("validation", args.max_eval_samples)):
        if limit is not None and split in splits:
            splits[split] = _truncate(splits[split], limit, split, names, multi)
    summary = {"source": source, "validation_carved_from_train": carved}
    for split, ds in splits.items():
        summary[split] = {"rows": len(ds), **stats[split], "label_counts": _label_counts(ds, names, multi)}
    return PreparedData(datasets.DatasetDict(splits), names, problem_type, summary, text, pair)


def reorder_labels(prepared: PreparedData, names: list[str]) -> PreparedData:
    """The same data with label ids in the order of `names` (a permutation of `prepared.label_names`), for a model
    whose head already has an order, such as a student copied from its teacher."""
    if list(names) == prepared.label_names:
        return prepared
    if sorted(names) != sorted(prepared.label_names):
        raise DataError(f"cannot reorder labels {prepared.label_names} as {list(names)}: the names differ.")
    multi = prepared.problem_type == MULTI_LABEL
    new_id = [names.index(name) for name in prepared.label_names]  # old id -> new id
    old_id = [prepared.label_names.index(name) for name in names]  # new id -> old id

    def remap(batch):
        if multi:
            return {"labels": [[row[j] for j in old_id] for row in batch["labels"]]}
        return {"labels": [new_id[label] for label in batch["labels"]]}

    splits = {}
    for split, ds in prepared.datasets.items():
        if "labels" not in ds.column_names:
            splits[split] = ds
            continue
        features = ds.features.copy()
        if not multi:
            features["labels"] = datasets.ClassLabel(names=list(names))
        splits[split] = ds.map(remap, batched=True, features=features, desc="Reordering labels")
    summary = dict(prepared.summary)
    for split in splits:
        if isinstance(summary.get(split), dict) and "label_counts" in summary[split]:
            counts = summary[split]["label_counts"]
            summary[split] = {**summary[split], "label_counts": {n: counts[n] for n in names if n in counts}}
    return dataclasses.replace(
        prepared, datasets=datasets.DatasetDict(splits), label_names=list(names), summary=summary
    )


def tokenize_data(
    prepared: PreparedData, tokenizer, max_seq_length: int, num_proc: int | None = None
) -> datasets.DatasetDict:
    """Tokenize every split, truncated to `max_seq_length` and unpadded (the collator pads each batch).

    Keeps `labels` and drops the raw text columns.
    """
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and model_max < max_seq_length:
        logger.warning("max_seq_length %d exceeds the tokenizer's %d; using %d.", max_seq_length, model_max, model_max)
        max_seq_length = model_max
    text, pair = prepared.text_column, prepared.text_pair_column

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
        if truncated:
            logger.info("%d of %d %s rows are longer than %d tokens and were truncated.", truncated, len(ds), split,
                        max_seq_length)  # fmt: skip
    return tokenized


def count_truncated(raw: datasets.Dataset, tokenized: datasets.Dataset, tokenizer, max_seq_length: int, text: str,
                    pair: str | None) -> int:  # fmt: skip
    """Rows whose text was cut to `max_seq_length` tokens: only rows that reached the limit are re-tokenized."""
    lengths = np.fromiter((len(ids) for ids in tokenized["input_ids"]), dtype=np.int64, count=len(tokenized))
    at_limit = np.flatnonzero(lengths >= max_seq_length).tolist()
    if not at_limit:
        return 0
    rows = raw.select(at_limit)
    texts, pairs = list(rows[text]), list(rows[pair]) if pair else None
    full = tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]
    return sum(len(ids) > max_seq_length for ids in full)


def carve_split(prepared: PreparedData, name: str, percentage: int, seed: int) -> PreparedData:
    """The same data with `percentage` of train moved (seeded, stratified where every class has two rows) into a new
    split `name`, such as the calibration split of `calibrate_decision`; the summary says how many rows moved."""
    multi = prepared.problem_type == MULTI_LABEL
    train = prepared.datasets["train"]
    keep, carved = _carve_validation(train, percentage, seed, multi)
    splits = dict(prepared.datasets)
    splits["train"], splits[name] = train.select(keep), train.select(carved)
    summary = dict(prepared.summary)
    summary["train"] = {**summary["train"], "rows": len(keep)}
    summary[name] = {
        "rows": len(carved),
        "carved_from_train_percent": percentage,
        "label_counts": _label_counts(splits[name], prepared.label_names, multi),
    }
    summary["train"]["label_counts"] = _label_counts(splits["train"], prepared.label_names, multi)
    return dataclasses.replace(prepared, datasets=datasets.DatasetDict(splits), summary=summary)
