"""Reading the data and cleaning it: local files or a Hub dataset as frames, the text and label columns resolved
(with a hint for a misspelt name), values normalised, and rows with empty text or no label dropped and counted."""

from __future__ import annotations

import ast
import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pandas as pd

from hf_transfer.core.arguments import DataArguments
from hf_transfer.core.tables import error_reason, read_table
from hf_transfer.errors import DataError

TEXT_COLUMN_CANDIDATES = ("text", "sentence", "review", "content")


LABEL_COLUMN_CANDIDATES = ("label", "labels")


DROP_REASONS = ("empty_text", "missing_label", "unmapped_label")


# Splits that may come without labels: a test file, and the input of `hf-transfer predict`.
UNLABELLED_SPLITS = ("test", "input")


_HUB_SPLITS = {"train": "train", "validation": "validation", "dev": "validation", "test": "test"}


_INT = re.compile(r"^[+-]?\d+$")


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Split:
    texts: list[str]
    pairs: list[str] | None
    labels: list[Any] | None  # normalised raw labels (None when the split is unlabelled)
    summary: dict


def load_frames(args: DataArguments) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]], Any]:
    """Raw frames per split, ClassLabel names found in Hub features, and the source for the summary."""
    if args.dataset_name and args.has_local_files:
        raise DataError(f"got both dataset_name {args.dataset_name!r} and local files; give one source, not both.")
    if not args.dataset_name:
        paths = {s: getattr(args, f"{s}_file") for s in ("train", "validation", "test") if getattr(args, f"{s}_file")}
        frames = {split: read_table(path, args.csv_quoting) for split, path in paths.items()}
        return frames, {}, {f"{split}_file": path for split, path in paths.items()}
    try:
        loaded = datasets.load_dataset(args.dataset_name, args.dataset_config_name)
    except Exception as err:  # noqa: BLE001 - any loader failure is a user-facing data problem
        config = f" (config {args.dataset_config_name!r})" if args.dataset_config_name else ""
        raise DataError(
            f"could not load dataset {args.dataset_name!r}{config}: {error_reason(err)}. Offline "
            "(HF_HUB_OFFLINE=1) only cached datasets load; use train_file/validation_file for local files."
        ) from None
    frames, class_names = {}, {}
    for name, ds in loaded.items():
        split = _HUB_SPLITS.get(name)
        if split and split not in frames:
            frames[split] = ds.to_pandas()
            for column, feature in ds.features.items():
                feature = getattr(feature, "feature", feature)  # List(ClassLabel) for multi-label
                if isinstance(feature, datasets.ClassLabel):
                    class_names[column] = feature.names
    source = {"dataset_name": args.dataset_name, "dataset_config_name": args.dataset_config_name}
    return frames, class_names, source


def closest_hint(name: str, columns: list[str]) -> str:
    lowered = {str(c).lower(): c for c in columns}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return f" Did you mean {lowered[match[0]]!r}?" if match else ""


def _require_column(option: str, name: str, columns: list[str], split: str) -> None:
    if name not in columns:
        raise DataError(
            f"{option} {name!r} is not a column of the {split} data, whose columns are {columns}."
            f"{closest_hint(name, columns)} Set {option} to one of them."
        )


def _default_column(kind: str, candidates: tuple[str, ...], columns: list[str], split: str) -> str:
    found = next((c for c in candidates if c in columns), None)
    if found is None and (kind == "text" or split not in UNLABELLED_SPLITS):
        raise DataError(
            f"no {kind} column in the {split} data: its columns are {columns}, none of the defaults "
            f"{list(candidates)}. Set {kind}_column_name."
        )
    return found or candidates[0]


def resolve_columns(args: DataArguments, frames: dict[str, pd.DataFrame]) -> tuple[str, str | None, str]:
    split, columns = next((split, list(df.columns)) for split, df in frames.items())
    text = args.text_column_name or _default_column("text", TEXT_COLUMN_CANDIDATES, columns, split)
    label = args.label_column_name or _default_column("label", LABEL_COLUMN_CANDIDATES, columns, split)
    pair = args.text_pair_column_name
    if len({text, pair, label} - {None}) != len([c for c in (text, pair, label) if c]) or "labels" in (text, pair):
        raise DataError(
            f"text {text!r}, text pair {pair!r} and label {label!r} must be different columns, and the "
            "text columns cannot be named 'labels' (the name of the prepared label column)."
        )
    for split, df in frames.items():
        _require_column("text_column_name", text, list(df.columns), split)
        if pair:
            _require_column("text_pair_column_name", pair, list(df.columns), split)
        if split not in UNLABELLED_SPLITS:
            _require_column("label_column_name", label, list(df.columns), split)
    return text, pair, label


def _is_missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and pd.isna(value))


def normalise_scalar(value: Any) -> Any:
    """None if missing; int for integral numbers (also "4" and 4.0, as pandas reads ints next to NaN); else str."""
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        if _INT.match(value):
            return int(value)
        if not _NUMBER.match(value):
            return value
        value = float(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def normalise_label(value: Any) -> Any:
    """Scalars as in `normalise_scalar`; lists (also JSON or Python list literals in a text cell) for multi-label."""
    if isinstance(value, str) and value.strip().startswith("["):
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(value)
                break
            except (ValueError, SyntaxError):
                continue
    if isinstance(value, (list, tuple, np.ndarray)):
        return [v for v in map(normalise_scalar, value) if v is not None]
    return normalise_scalar(value)


def clean_split(df: pd.DataFrame, text: str, pair: str | None, label: str, hub_class_label: bool) -> Split:
    """Drop rows with empty text, then rows with no label. An unlabelled split (a test file) gets `labels` None."""
    raw = [normalise_label(v) for v in df[label].tolist()] if label in df.columns else [None] * len(df)
    if hub_class_label:  # -1 marks an unlabelled row in a Hub ClassLabel column (GLUE test splits)
        raw = [None if v == -1 else v for v in raw]
    labelled = any(v is not None for v in raw)
    raw_pairs = df[pair].tolist() if pair else None
    texts, pairs, labels = [], [] if pair else None, [] if labelled else None
    dropped = dict.fromkeys(DROP_REASONS, 0)
    for i, value in enumerate(df[text].tolist()):
        if _is_missing(value) or not str(value).strip():
            dropped["empty_text"] += 1
        elif labelled and raw[i] is None:
            dropped["missing_label"] += 1
        else:
            texts.append(str(value))
            if labelled:
                labels.append(raw[i])
            if pair:
                pairs.append("" if _is_missing(raw_pairs[i]) else str(raw_pairs[i]))
    return Split(texts, pairs, labels, {"rows": len(texts), "rows_before_cleaning": len(df), "dropped": dropped})


def check_not_empty(split: str, part: Split) -> None:
    if part.summary["rows"] == 0:
        d = part.summary["dropped"]
        raise DataError(
            f"the {split} data has no usable rows: of {part.summary['rows_before_cleaning']} rows, {d['empty_text']} "
            f"have empty text, {d['missing_label']} have no label and {d['unmapped_label']} have a label that is not "
            "a key of label_mapping. Check text_column_name, label_column_name and label_mapping."
        )
