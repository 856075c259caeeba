"""Reading the data and cleaning it: local files or a Hub dataset as frames, the text and label columns resolved
(with a hint for a misspelt name), values normalised, and rows with empty text or no label dropped and counted."""

from __future__ import annotations

import ast
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hf_transfer.core.arguments import DataArguments
from hf_transfer.core.column_hints import TEXT_COLUMN_CANDIDATES, closest_hint, pair_hint, separator_hint
from hf_transfer.core.named_dataset import ids_as_names, load_named_dataset, other_class_names, reference_class_names
from hf_transfer.core.tables import check_readable, iter_table
from hf_transfer.errors import DataError

logger = logging.getLogger(__name__)


LABEL_COLUMN_CANDIDATES = ("label", "labels")


PAIR_OPTION = "text_pair_column_name"


DROP_REASONS = ("empty_text", "missing_label", "unmapped_label")


# Splits that may come without labels: a test file, and the input of `hf-transfer predict`.
UNLABELLED_SPLITS = ("test", "input")


_HUB_SPLITS = {"train": "train", "validation": "validation", "dev": "validation", "test": "test"}


_INT = re.compile(r"^[+-]?\d+$")


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Source:
    """One split's raw rows: its column names, and a reader that yields them as frames of at most CHUNK_ROWS rows."""

    columns: list[str]
    chunks: Callable[[], Iterator[pd.DataFrame]]


# Rows per frame when reading a split: memory stays flat in the file's size (issue 23), and pandas stays fast.
CHUNK_ROWS = 50_000


def _file_source(path: str, csv_quoting: str) -> Source:
    """A local file as a Source; reading its first rows finds read errors, an empty file and the columns now. JSON
    names its columns row by row: they are the keys of the first CHUNK_ROWS rows, which every frame then has (a first
    line without a label is one unlabelled row, not a file without a label column)."""
    json_rows = check_readable(path, csv_quoting) in ("json", "jsonl")
    columns = [str(c) for c in next(iter_table(path, CHUNK_ROWS if json_rows else 1, csv_quoting)).columns]
    if not json_rows:
        return Source(columns, lambda: iter_table(path, CHUNK_ROWS, csv_quoting))
    return Source(columns, lambda: (f.reindex(columns=columns) for f in iter_table(path, CHUNK_ROWS, csv_quoting)))


def load_sources(args: DataArguments) -> tuple[dict[str, Source], dict[str, list[str]], Any]:
    """Each split's raw rows as a Source, ClassLabel names found in Hub features, and the source for the summary."""
    if args.dataset_name and args.has_local_files:
        raise DataError(f"got both dataset_name {args.dataset_name!r} and local files; give one source, not both.")
    if not args.dataset_name:
        paths = {s: getattr(args, f"{s}_file") for s in ("train", "validation", "test") if getattr(args, f"{s}_file")}
        sources = {split: _file_source(path, args.csv_quoting) for split, path in paths.items()}
        return sources, {}, {f"{split}_file": path for split, path in paths.items()}
    loaded = load_named_dataset(args.dataset_name, args.dataset_config_name)
    # Each split read from one source: `validation` over `dev` where a dataset has both (dev first, then overwritten).
    read = {_HUB_SPLITS[n]: n for n in sorted(loaded, key=lambda n: n != "dev") if n in _HUB_SPLITS}
    unread = [name for name in loaded if name not in read.values()]
    if unread:  # MNLI's validation_matched, or dev beside validation: left out, which was without a word
        logger.warning(
            f"dataset {args.dataset_name!r} has split(s) {unread} that are not read: hf-transfer reads the splits "
            f"named {sorted(_HUB_SPLITS)} (dev is validation where there is none); to use one, rename it (e.g. save "
            "the DatasetDict again with it as 'validation'), or write it to a file and give train_file and "
            "validation_file."
        )
    sources, class_names = {}, reference_class_names({split: loaded[name].features for split, name in read.items()})
    for split, name in read.items():
        ds, own = loaded[name], other_class_names(loaded[name].features, class_names)  # ids of other names: as names
        frames = lambda ds=ds, own=own: ids_as_names(ds.to_pandas(batch_size=CHUNK_ROWS, batched=True), own)  # noqa: E731
        sources[split] = Source(list(ds.column_names), frames)
    source = {"dataset_name": args.dataset_name, "dataset_config_name": args.dataset_config_name}
    return sources, class_names, source


def _require_column(
    option: str, name: str, columns: list[str], split: str, defaults: tuple = (), taken: tuple = ()
) -> None:
    """`defaults`: the default names, when `name` was found among them in another split (not set by the user);
    `taken`: the columns read for the other roles, never offered as the near name (a text column named `sentence`
    was "Did you mean 'intent'?", the label column)."""
    other = next((c for c in defaults if c in columns), None)
    if name not in columns and other is not None:  # `text` in train, `sentence` here: "Did you mean 'target'?"
        raise DataError(
            f"the {split} data has no column {name!r}, read by default in another split, but has {other!r}, another "
            f"default name; give every split the same column names (rename {other!r} to {name!r})."
        )
    if name not in columns:
        hint = pair_hint(option, name, columns) or closest_hint(name, [c for c in columns if c not in taken])
        raise DataError(
            f"{option} {name!r} is not a column of the {split} data, whose columns are {columns}."
            f"{hint}{separator_hint(columns)} Set {option} to one of them."
        )


def _default_column(kind: str, candidates: tuple[str, ...], columns: list[str], split: str) -> str:
    found = next((c for c in candidates if c in columns), None)
    if found is None and (kind == "text" or split not in UNLABELLED_SPLITS):
        raise DataError(
            f"no {kind} column in the {split} data: its columns are {columns}, none of the defaults "
            f"{list(candidates)}.{separator_hint(columns)} Set {kind}_column_name."
        )
    return found or candidates[0]


def resolve_columns(args: DataArguments, split_columns: dict[str, list[str]]) -> tuple[str, str | None, str]:
    """The text, pair and label columns, checked in every split (`split_columns`: each split's column names)."""
    split, columns = next((split, list(names)) for split, names in split_columns.items())
    text = args.text_column_name or _default_column("text", TEXT_COLUMN_CANDIDATES, columns, split)
    label = args.label_column_name or _default_column("label", LABEL_COLUMN_CANDIDATES, columns, split)
    pair = args.text_pair_column_name
    if len({text, pair, label} - {None}) != len([c for c in (text, pair, label) if c]) or "labels" in (text, pair):
        raise DataError(
            f"text {text!r}, text pair {pair!r} and label {label!r} must be different columns, and the "
            "text columns cannot be named 'labels' (the name of the prepared label column)."
        )
    text_defaults = () if args.text_column_name else TEXT_COLUMN_CANDIDATES
    label_defaults = () if args.label_column_name else LABEL_COLUMN_CANDIDATES
    for split, names in split_columns.items():
        _require_column("text_column_name", text, list(names), split, text_defaults, taken=(pair, label))
        if pair:
            _require_column("text_pair_column_name", pair, list(names), split, taken=(text, label))
        if split not in UNLABELLED_SPLITS:
            _require_column("label_column_name", label, list(names), split, label_defaults, taken=(text, pair))
    return text, pair, label


# Cell values that are structures, not text or a label: jsonl and parquet can hold them (predict writes them as JSON).
STRUCTURED_CELLS = (dict, list, tuple, np.ndarray)


def _is_missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and pd.isna(value))


def check_text_cells(values, column: str, option: str = "text_column_name") -> None:
    """A one-line error when a text cell holds a structure (a JSON object or array, as jsonl and parquet can), which
    `str()` would silently turn into its Python spelling. Numbers and booleans are read as their text. `option`: the
    field that named `column` (`text_pair_column_name` for the second text)."""
    for value in values:
        if isinstance(value, (*STRUCTURED_CELLS, bytes)):  # bytes: a parquet BINARY column that is not UTF-8
            shown = repr(value if not isinstance(value, np.ndarray) else value.tolist())
            raise DataError(
                f"text column {column!r} holds a {type(value).__name__} ({shown[:60]}), not text; give "
                f"{option} a column of strings (flatten the field first, or decode its bytes)."
            )


# One spelling for a boolean label, whatever the file wrote: a JSON/parquet boolean, or csv text true/TRUE/false.
_BOOLEANS = {"true": "True", "false": "False"}


def normalise_scalar(value: Any) -> Any:
    """None if missing; int for integral numbers (also "4" and 4.0, as pandas reads ints next to NaN); "True" or
    "False" for a boolean in any spelling (true, TRUE, a JSON boolean); else str."""
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, str):
        value = tidy_text_label(value)
        if not value:
            return None
        if value.lower() in _BOOLEANS:
            return _BOOLEANS[value.lower()]
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


# Space-like marks no one sees at a label's ends: zero-width space, joiners, word joiner, a byte-order mark.
_EDGES = re.compile(r"^[\s\u200b-\u200d\u2060\ufeff]+|[\s\u200b-\u200d\u2060\ufeff]+$")


def tidy_text_label(value: str) -> str:
    """A text label as it is read: in Unicode's composed form (NFC), without spaces or invisible marks at its ends.
    `négatif` typed with a combining accent, or `好评` with a zero-width space pasted after it, looked like the other
    spelling and was a class of its own."""
    return _EDGES.sub("", unicodedata.normalize("NFC", value))


def label_name_keys(names: Sequence[str]) -> list[str]:
    """A model's label names read as the data's labels are read (`normalise_scalar`: `false` is `False`, as it is
    for a model trained before booleans had one spelling), or the names as they are if that would merge two."""
    keys = [str(normalise_scalar(name)) for name in names]
    return keys if len(set(keys)) == len(keys) else [str(name) for name in names]


def _flow_list(text: str) -> Any:
    """A YAML flow list with unquoted names, `[positive, long]` (how flags spell lists), its items all text."""
    import yaml

    try:
        value = yaml.load(text, Loader=yaml.BaseLoader)  # BaseLoader: every item stays a string, `no` too
    except yaml.YAMLError:
        return text
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else text


def _refuse_structure(value: Any, column: str, row: Any = None) -> None:
    def shown(v):
        return repr(v.tolist() if isinstance(v, np.ndarray) else v)[:60]

    where = f" in {shown(row)}" if row is not None else ""
    raise DataError(
        f"the label column {column!r} holds a {type(value).__name__} where a label should be: {shown(value)}{where}; "
        'a label is a name or an integer, and a multi-label row a flat list of them such as ["a", "b"].'
    )


def normalise_label(value: Any, column: str) -> Any:
    """Scalars as in `normalise_scalar`; lists (also JSON, Python or YAML-flow list literals in a text cell, such as
    a csv's) for multi-label. A mapping, or a list inside a list, is a DataError naming `column` (str() would make a
    class of its Python spelling)."""
    if isinstance(value, str) and value.strip().startswith("["):
        for parse in (json.loads, ast.literal_eval, _flow_list):
            try:
                value = parse(value)
                break
            except (ValueError, SyntaxError):
                continue
    if isinstance(value, (list, tuple, np.ndarray)):
        for element in value:
            if isinstance(element, STRUCTURED_CELLS):
                _refuse_structure(element, column, value)
        return [v for v in map(normalise_scalar, value) if v is not None]
    if isinstance(value, (dict, bytes)):  # bytes: a parquet BINARY column that is not UTF-8
        _refuse_structure(value, column)
    return normalise_scalar(value)


@dataclass
class LabelProfile:
    """What the label checks need from one split's labels, gathered frame by frame in bounded memory: how many rows
    hold a list or a single value (and the first of each), the first element of each type, and the distinct ones."""

    rows: int = 0  # rows with text and a label
    labelled: bool = False  # any row has a label (then rows without one are dropped; else the split is unlabelled)
    lists: int = 0
    scalars: int = 0
    first_list: Any = None
    first_scalar: Any = None
    first_of_type: dict = field(default_factory=dict)
    values: set = field(default_factory=set)
    first_repeated: list | None = None  # a list naming a label twice: a multi-hot row ([0, 0, 1]) read as ids
    spellings: dict = field(default_factory=dict)  # label -> the written forms read as it, where they differ

    def add_spellings(self, cells) -> None:
        """The distinct written forms of the label cells, by the label each is read as: `01`, `1` and `001` are all
        1, ` a` and `a` are both `a`, and so are a JSON number 1 and a JSON string "1" (list cells are left out)."""
        for cell in {cell for cell in cells if isinstance(cell, (str, int, float)) and not isinstance(cell, bool)}:
            read = normalise_scalar(cell)
            if read is not None and str(read) not in _BOOLEANS.values():  # booleans: any spelling, as documented
                form = cell if isinstance(cell, str) else f"{read} (a number)"  # 1 and 1.0 are one number
                self.spellings.setdefault(read, set()).add(form)

    def add(self, labels: list) -> None:
        for value in labels:
            if value is None:
                continue
            self.rows += 1
            if isinstance(value, list):
                self.first_list = value if self.lists == 0 else self.first_list
                self.lists += 1
                if self.first_repeated is None and len({repr(v) for v in value}) < len(value):
                    self.first_repeated = value
            else:
                self.first_scalar = value if self.scalars == 0 else self.first_scalar
                self.scalars += 1
            for element in value if isinstance(value, list) else (value,):
                if element not in self.values:
                    self.values.add(element)
                    self.first_of_type.setdefault(type(element), element)


def clean_frame(df: pd.DataFrame, text: str, pair: str | None, label: str, hub_class_label: bool):
    """The rows of one frame whose text is not empty: (texts, pairs or None, normalised labels with None where a row
    has none, the number of rows dropped for empty text, whether any row of the frame has a label)."""
    n = len(df)
    raw = [normalise_label(v, label) for v in df[label].tolist()] if label in df.columns else [None] * n
    if hub_class_label:  # -1 marks an unlabelled row in a Hub ClassLabel column (GLUE test splits)
        raw = [None if v == -1 else v for v in raw]
    raw_pairs = (df[pair].tolist() if pair in df.columns else [None] * n) if pair else None
    texts, pairs, labels, empty = [], [] if pair else None, [], 0
    values = df[text].tolist() if text in df.columns else [None] * n
    check_text_cells(values, text)
    if pair:
        check_text_cells(raw_pairs, pair, PAIR_OPTION)
    for i, value in enumerate(values):
        if _is_missing(value) or not str(value).strip():
            empty += 1
            continue
        texts.append(str(value))
        labels.append(raw[i])
        if pair:
            pairs.append("" if _is_missing(raw_pairs[i]) else str(raw_pairs[i]))
    return texts, pairs, labels, empty, any(v is not None for v in raw)


def check_not_empty(split: str, summary: dict) -> None:
    """`summary`: a split's cleaning summary (rows, rows_before_cleaning, dropped)."""
    if summary["rows"] == 0:
        d = summary["dropped"]
        raise DataError(
            f"the {split} data has no usable rows: of {summary['rows_before_cleaning']} rows, {d['empty_text']} "
            f"have empty text, {d['missing_label']} have no label and {d['unmapped_label']} have a label that is not "
            "a key of label_mapping. Check text_column_name, label_column_name and label_mapping."
        )


def warn_merged_spellings(profiles: dict[str, LabelProfile], label: str) -> None:
    """Label cells written differently but read as one label (numbers by value, text without its surrounding
    spaces) join one class; said, since `01` and `1` may well be different codes."""
    merged: dict = {}
    for profile in profiles.values():
        for read, forms in profile.spellings.items():
            merged.setdefault(read, set()).update(forms)
    same = {read: {re.sub(r"\.0+$", "", f) for f in forms} for read, forms in merged.items()}  # 1.0 is 1 (pandas)
    seen = {read: forms for read, forms in merged.items() if len(same[read]) > 1}
    groups = [f"[{', '.join(map(_visible, sorted(forms)))}] as {read!r}" for read, forms in list(seen.items())[:3]]
    if groups:
        logger.warning(
            f"in column {label!r}, values written differently are read as one label: {'; '.join(groups)}"
            f"{' (and more)' if len(seen) > 3 else ''} (numbers by their value, text without the spaces or invisible "
            "marks around it and in Unicode's composed form), "
            "so each group is one class; if they are different labels, rename them in the data (label_mapping "
            "reads its keys the same way)."
        )


def _visible(form: str) -> str:
    """A written form quoted so the user can tell it from the others: combining and invisible marks escaped (two
    spellings of `négatif` printed alike), every other character as it is."""
    hidden = ("Mn", "Me", "Cf", "Cc", "Zl", "Zp")
    shown = "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in hidden or (c.isspace() and c != " ") else c for c in form
    )
    return f"'{shown}'"


def listed(values, limit: int = 20) -> str:
    """A list as Python prints it, cut after `limit` items (120 labels made a one-line error of 2,600 characters)."""
    values = list(values)
    return str(values) if len(values) <= limit else str(values[:limit])[:-1] + f", ... ({len(values)} in all)]"
