"""The argument dataclasses that several commands share: which model, which training data and how to read it, and
which labelled sets to evaluate on. Every field's `help` is the documentation of the YAML config and of its flag."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hf_transfer.core.language import check_language
from hf_transfer.core.yaml_config import expand_home, read_yaml
from hf_transfer.errors import ConfigError

SUPPORTED_EXTENSIONS = ("csv", "tsv", "json", "jsonl", "parquet")
# Compressions the standard library reads (gzip, bz2, lzma), of the text formats: parquet compresses its own pages.
COMPRESSIONS = ("gz", "bz2", "xz")
ACCEPTED_DATA_FILES = (
    f"{', '.join('.' + e for e in SUPPORTED_EXTENSIONS)}, the text ones optionally compressed as "
    f"{', '.join('.' + c for c in COMPRESSIONS)} (e.g. train.csv.gz)"
)

DEFAULT_MAX_SEQ_LENGTH = 128  # train's truncation length, and inference's when a model records none
INFERENCE_MAX_SEQ_LENGTH_HELP = (
    "Longer inputs are truncated to this many tokens. Default: the length the model was trained (or exported) with, "
    "as its run folder records it, else 128, so the scores are those of the run's own evaluation."
)


def parse_index_list(name: str, value: Any) -> int | list[int] | None:
    """Normalise `freeze_layers`-style values: an int, a list of ints, or a string holding either (YAML syntax)."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        parsed = read_yaml(value)
        if isinstance(parsed, str):  # not YAML, or YAML text (`abc`): recursing would never end
            raise ConfigError(f"{name} must be an int or a list of ints like [0, 1, 2], got {value!r}.")
        return parse_index_list(name, parsed)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    raise ConfigError(f"{name} must be an int or a list of ints like [0, 1, 2], got {value!r}.")


# `model_revision` of the inference commands (evaluate, predict, export), as train's is model_name_or_path's.
ONNX_FILE_HELP = ("For an ONNX folder: which graph to run, e.g. `model.onnx` (default: `model_quantized.onnx` when "
                  "the export made one, else `model.onnx`).")  # fmt: skip
INFERENCE_REVISION_HELP = "Branch, tag or commit of the model when it is a Hub id (a folder has none)."


@dataclass
class ModelArguments:
    """Which pretrained model to start from."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub id or folder of the pretrained model. Required (for distill the student, unless "
                          "student_layers is set)."},
    )  # fmt: skip
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer Hub id or folder, when it differs from `model_name_or_path`."}
    )
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the Hub model."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are cached."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modelling code from the Hub. Only for repositories you trust."}
    )
    base_model_hub_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the base model when `model_name_or_path` is a local folder; recorded in the card and "
            "in adapter configs instead of the machine path."
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Replace an existing classification head whose number of labels differs from the data's."},
    )

    def __post_init__(self):
        if self.model_name_or_path is not None and not str(self.model_name_or_path).strip():
            raise ConfigError("model_name_or_path is empty: give a Hub id or a local model folder.")
        if self.model_revision not in (None, "main"):  # it was ignored without a word in both cases
            if not self.model_name_or_path:
                raise ConfigError(
                    f"model_revision {self.model_revision!r} is model_name_or_path's, and none is given (a student "
                    "cut from a teacher's blocks comes from the teacher at its main); drop model_revision."
                )
            if Path(self.model_name_or_path).expanduser().exists():
                raise ConfigError(
                    f"model_revision {self.model_revision!r} is for a Hub id, and {self.model_name_or_path!r} is a "
                    "local folder."
                )


@dataclass
class DataArguments:
    """Which data to train and evaluate on, and how to read it."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id, loaded with `datasets`."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of the Hub dataset."})
    dataset_hub_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the dataset that local files come from (e.g. `stanfordnlp/sst2`), for the card's "
            "`datasets` metadata and model-index, or of a local dataset_name folder; without it the card names a "
            "dataset_name that is a Hub id (a folder's path never reaches the metadata)."
        },
    )
    language: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Language of the text, as ISO 639 codes (`zh`, or a list such as `[en, fr]`), for the card's "
            "`language`. Default: detected from the writing system of the training text (and for Latin script from "
            "its commonest words), else the base model's card's."
        },
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training data: a csv, tsv, json, jsonl or parquet file; the text formats may be gzip, bz2 or xz "
            "compressed (`train.csv.gz`)."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "Validation data, same formats."})
    test_file: str | None = field(default=None, metadata={"help": "Test data, same formats; labels optional."})
    text_column_name: str | None = field(
        default=None,
        metadata={"help": "Column holding the text. Default: the first of `text`, `sentence`, `review`, `content`."},
    )
    text_pair_column_name: str | None = field(
        default=None, metadata={"help": "Optional second text column, for sentence-pair tasks."}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "Column holding the label. Default: `label` or `labels`."}
    )
    label_mapping: dict[str, str] | None = field(
        default=None,
        metadata={
            "help": "Maps raw label values to label names, e.g. `{1: bad, 2: bad, 3: neutral, 4: good, 5: good}`. "
            "Label ids follow the order of first appearance among the names. Rows whose label is not a key are "
            "dropped and counted."
        },
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={"help": "Names for integer labels 0..K-1, in id order, e.g. `[negative, positive]`."},
    )
    problem_type: Literal["single_label_classification", "multi_label_classification"] | None = field(
        default=None,
        metadata={"help": "Default: multi-label when labels are lists, single-label otherwise."},
    )
    max_seq_length: int = field(
        default=DEFAULT_MAX_SEQ_LENGTH, metadata={"help": "Longer inputs are truncated to this many tokens."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N validation rows."})
    validation_split_percentage: int = field(
        default=10,
        metadata={"help": "Percent of train held out (stratified; data_seed else seed) as validation if none given."},
    )
    csv_quoting: Literal["auto", "minimal", "none"] = field(
        default="auto",
        metadata={
            "help": "How quotes in csv/tsv files are read: `minimal` (standard CSV quoting, fields may span lines), "
            "`none` (quotes are ordinary characters, as in GLUE's SST-2), or `auto` (detected per file)."
        },
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})

    def __post_init__(self):
        self.language = check_language(self.language)
        if self.max_seq_length <= 0:
            raise ConfigError(f"max_seq_length must be > 0, got {self.max_seq_length}.")
        check_row_limits(self, "max_train_samples", "max_eval_samples")
        if not 0 < self.validation_split_percentage < 100:
            raise ConfigError(
                f"validation_split_percentage must be between 1 and 99, got {self.validation_split_percentage}."
            )
        if self.dataset_hub_id is not None:
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(str(self.dataset_hub_id))
            except HFValidationError:
                raise ConfigError(
                    f"dataset_hub_id {self.dataset_hub_id!r} is not a Hub dataset id (like 'stanfordnlp/sst2')."
                ) from None
        if self.dataset_config_name is not None and not self.dataset_name:
            raise ConfigError(
                f"dataset_config_name {self.dataset_config_name!r} is a configuration of a dataset_name, and none is "
                "given; set dataset_name, or drop dataset_config_name for local files."
            )
        if self.label_mapping is not None:
            self.label_mapping = {str(k): str(v) for k, v in self.label_mapping.items()}
        if self.class_names is not None:
            self.class_names = [str(n) for n in self.class_names]
            if len(set(self.class_names)) != len(self.class_names):
                raise ConfigError(f"class_names must be distinct, got {self.class_names}.")
        if self.class_names is not None and self.label_mapping is not None:
            raise ConfigError("Give either class_names or label_mapping, not both.")
        for name in ("train_file", "validation_file", "test_file"):
            if getattr(self, name) is not None:
                check_data_file(name, getattr(self, name))

    @property
    def has_local_files(self) -> bool:
        return any((self.train_file, self.validation_file, self.test_file))


def read_list_field(value: str):
    """A string given for a list field may hold a YAML list: `[a, b]`."""
    if value.strip().startswith("["):
        parsed = read_yaml(value)
        if isinstance(parsed, str):  # not valid YAML
            raise ConfigError(f"cannot read {value!r} as a list; write it as [first, second].")
        return parsed
    return value


@dataclass(frozen=True)
class EvalSet:
    """A labelled file to evaluate on, under a name; `label_mapping` overrides the command's for this file."""

    name: str
    path: str
    label_mapping: dict[str, str] | None = None


_SET_NAME = re.compile(r"^[^\W_][\w.+-]*$")  # letters of any script: `日本語=ja.csv`


_EXTRA_EVAL_SYNTAX = (
    "extra_eval takes NAME=FILE (repeat the flag for more sets), a list of NAME=FILE, or a mapping "
    "{NAME: FILE} or {NAME: {file: FILE, label_mapping: {...}}}"
)


def data_format(path: str) -> tuple[str, str | None]:
    """A data file's format and compression from its name, the format being the extension before the compression's:
    `train.CSV.gz` -> ("csv", "gz"), `dev.tsv` -> ("tsv", None), `notes` -> ("", None)."""
    stem, dot, ext = os.path.basename(str(path)).lower().rpartition(".")
    if dot and ext in COMPRESSIONS:
        stem, dot, inner = stem.rpartition(".")
        return (inner if dot else ""), ext
    return (ext if dot else ""), None


def check_data_file(option: str, path: str) -> None:
    fmt, compression = data_format(path)
    if fmt in SUPPORTED_EXTENSIONS and not (compression and fmt == "parquet"):
        return
    name = os.path.basename(str(path)).lower()
    if compression:
        ext = f".{fmt}.{compression}" if fmt else f".{compression}"
    else:
        ext = f".{name.rpartition('.')[2]}" if "." in name else "(none)"
    raise ConfigError(f"{option} {path!r} has an unsupported extension {ext}; expected {ACCEPTED_DATA_FILES}.")


def data_file_problem(path: str) -> str | None:
    """Why `path` cannot be read as a data file, or None: it is missing, a folder, or no regular file (a named pipe
    would be read more than once, or block)."""
    if os.path.isfile(path):
        return None
    if os.path.isdir(path):
        return "is a folder, not a file"
    return "is a named pipe, socket or device, not a regular file" if os.path.exists(path) else "does not exist"


def parse_extra_eval(value: Any) -> list[EvalSet]:
    """Normalise `extra_eval` (see `_EXTRA_EVAL_SYNTAX`) to named sets, checking the syntax and the names."""
    if value is None:
        return []
    entries: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        entries = list(value.items())
    elif isinstance(value, (str, list, tuple)):
        for item in [value] if isinstance(value, str) else value:
            if isinstance(item, dict) and len(item) == 1:
                entries.append(next(iter(item.items())))
                continue
            name, eq, path = str(item).partition("=") if isinstance(item, str) else ("", "", "")
            if not eq:
                raise ConfigError(f"{_EXTRA_EVAL_SYNTAX}; got {item!r}.")
            entries.append((name.strip(), path.strip()))
    else:
        raise ConfigError(f"{_EXTRA_EVAL_SYNTAX}; got {value!r}.")
    sets = []
    for name, spec in entries:
        mapping = None
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - {"file", "label_mapping"})
            if "file" not in spec or unknown:
                raise ConfigError(f"{_EXTRA_EVAL_SYNTAX}; the entry for {name!r} is {spec!r}.")
            mapping = spec.get("label_mapping")
            if mapping is not None and not isinstance(mapping, dict):
                raise ConfigError(f"extra_eval {name!r}: label_mapping must be a mapping, got {mapping!r}.")
            mapping = None if mapping is None else {str(k): str(v) for k, v in mapping.items()}
            spec = spec["file"]
        name = str(name).strip()
        if not _SET_NAME.match(name) or not isinstance(spec, str) or not spec.strip():
            raise ConfigError(
                f"{_EXTRA_EVAL_SYNTAX}, NAME being letters, digits, '.', '_', '+' or '-'; got {name!r}={spec!r}."
            )
        spec = expand_home("extra_eval_file", spec.strip())  # `~/x.csv` in any of the forms
        check_data_file(f"extra_eval {name!r}:", spec)
        sets.append(EvalSet(name, spec, mapping))
    names = [s.name for s in sets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"extra_eval names must be distinct; {duplicates[0]!r} is given more than once.")
    return sets


def check_row_limits(args, *names: str) -> None:
    """Row limits (`max_train_samples`, ...) are unset or positive."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}.")


@dataclass
class EvalDataArguments:
    """Labelled evaluation data and how to read it (shared by `evaluate` and `merge`)."""

    validation_file: str | None = field(
        default=None,
        metadata={
            "help": "Labelled evaluation data: csv, tsv, json, jsonl or parquet (the text formats may also be "
            "compressed: .gz, .bz2, .xz)."
        },
    )
    validation_name: str = field(
        default="validation", metadata={"help": "Name of the validation_file set in tables and file names."}
    )
    extra_eval: list[str] | str | None = field(
        default=None,
        metadata={
            "action": "append",  # `--extra_eval a=F --extra_eval b=G` makes a list
            "help": "More labelled sets to evaluate on, e.g. shifted domains: `--extra_eval dvd=FILE` (repeat the "
            "flag for more), or in YAML a list of NAME=FILE or a mapping {NAME: FILE}; a set may carry its own "
            "label_mapping as {NAME: {file: FILE, label_mapping: {...}}}. Columns are read as for validation_file.",
        },
    )
    text_column_name: str | None = field(default=None, metadata={"help": "Text column (default: auto-detected)."})
    text_pair_column_name: str | None = field(default=None, metadata={"help": "Optional second text column."})
    label_column_name: str | None = field(default=None, metadata={"help": "Label column (default: label/labels)."})
    label_mapping: dict[str, str] | None = field(
        default=None,
        metadata={
            "help": "Maps the files' label values to the model's label names, e.g. `{1: positive, 0: negative}`; "
            "applies to every set that has no label_mapping of its own. Integer labels that are not names are "
            "taken as label ids."
        },
    )
    max_seq_length: int | None = field(default=None, metadata={"help": INFERENCE_MAX_SEQ_LENGTH_HELP})
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Score only the first N rows of each set (validation_file and every extra_eval set)."},
    )
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Inference batch size."})
    csv_quoting: Literal["auto", "minimal", "none"] = field(
        default="auto", metadata={"help": "Quoting of csv/tsv files, as for `train`."}
    )

    def _check_eval_data(self) -> None:
        for name in ("max_seq_length", "per_device_eval_batch_size"):  # the one given, by name
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}.")
        check_row_limits(self, "max_eval_samples")
        if self.label_mapping is not None:
            self.label_mapping = {str(k): str(v) for k, v in self.label_mapping.items()}
        if self.validation_file is not None:
            check_data_file("validation_file", self.validation_file)
        self.validation_name = str(self.validation_name).strip()
        if not _SET_NAME.match(self.validation_name):
            raise ConfigError(
                f"validation_name must be letters, digits, '.', '_', '+' or '-', got {self.validation_name!r}."
            )
        sets = parse_extra_eval(self.extra_eval)
        if sets and not self.validation_file:
            raise ConfigError("extra_eval sets are evaluated beside validation_file; give validation_file too.")
        if any(s.name == self.validation_name for s in sets):
            raise ConfigError(
                f"extra_eval set {self.validation_name!r} has the name of the validation set; rename it, or set "
                "validation_name."
            )
        # Stored normalised (a mapping) so the resolved config reads back the same.
        self.extra_eval = {
            s.name: s.path if s.label_mapping is None else {"file": s.path, "label_mapping": s.label_mapping}
            for s in sets
        } or None

    def eval_sets(self) -> list[EvalSet]:
        """The validation set first, then the extra sets, in the order given."""
        if not self.validation_file:
            return []
        return [EvalSet(self.validation_name, self.validation_file), *parse_extra_eval(self.extra_eval)]
