"""Argument dataclasses for hf-transfer, and the errors that bad input raises.

Every field's `help` is the documentation of the YAML config and of the matching command-line flag.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import TrainingArguments

SUPPORTED_EXTENSIONS = ("csv", "tsv", "json", "jsonl", "parquet")
# Fields that take "a value or a list" (or, for resume_from_checkpoint, "true or a path"): HfArgumentParser has no
# type for that, so they are declared `str | ...` for it, passed through unconverted by the CLI, and normalised later.
INT_OR_LIST_FIELDS = frozenset(
    {
        "freeze_layers",
        "student_layers",
        "layer_map",
        "teacher_model_name_or_path",
        "resume_from_checkpoint",
        "alphas",
        "extra_eval",
    }
)
# Fields that may be given more than once on the command line: `--extra_eval a=F --extra_eval b=G` makes a list.
REPEATABLE_FIELDS = frozenset({"extra_eval"})


def _has_accelerator() -> bool:
    import torch

    return torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()


class HfTransferError(ValueError):
    """A problem with the user's input: the CLI prints its message as one line and exits with status 2."""


class ConfigError(HfTransferError):
    """A configuration value is invalid or conflicts with another one."""


class DataError(HfTransferError):
    """A data file or dataset cannot be used as given."""


class DiskFullError(RuntimeError):
    """The disk filled up during a run: the CLI prints one line and exits with status 1."""


def parse_index_list(name: str, value: Any) -> int | list[int] | None:
    """Normalise `freeze_layers`-style values: an int, a list of ints, or a string holding either (YAML syntax)."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{name} must be an int or a list of ints like [0, 1, 2], got {value!r}.") from None
        return parse_index_list(name, value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    raise ConfigError(f"{name} must be an int or a list of ints like [0, 1, 2], got {value!r}.")


@dataclass
class ModelArguments:
    """Which pretrained model to start from."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub id (e.g. `bert-base-uncased`) or local folder of the pretrained model. Required."},
    )
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


@dataclass
class DataArguments:
    """Which data to train and evaluate on, and how to read it."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id, loaded with `datasets`."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of the Hub dataset."})
    dataset_hub_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the dataset that local files come from (e.g. `stanfordnlp/sst2`), for the card's "
            "`datasets` metadata and model-index; with dataset_name the card uses that."
        },
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Training data: a csv, tsv, json, jsonl or parquet file."}
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
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N validation rows."})
    validation_split_percentage: int = field(
        default=10,
        metadata={"help": "Percent of train carved out (seeded, stratified) as validation when there is none."},
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
        if self.max_seq_length <= 0:
            raise ConfigError(f"max_seq_length must be > 0, got {self.max_seq_length}.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}.")
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
        if self.label_mapping is not None:
            self.label_mapping = {str(k): str(v) for k, v in self.label_mapping.items()}
        if self.class_names is not None:
            self.class_names = [str(n) for n in self.class_names]
            if len(set(self.class_names)) != len(self.class_names):
                raise ConfigError(f"class_names must be distinct, got {self.class_names}.")
        if self.class_names is not None and self.label_mapping is not None:
            raise ConfigError("Give either class_names or label_mapping, not both.")
        for name in ("train_file", "validation_file", "test_file"):
            path = getattr(self, name)
            if path is not None:
                ext = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
                if ext not in SUPPORTED_EXTENSIONS:
                    raise ConfigError(
                        f"{name} {path!r} has an unsupported extension {('.' + ext) if ext else '(none)'}; "
                        f"expected one of {', '.join('.' + e for e in SUPPORTED_EXTENSIONS)}."
                    )

    @property
    def has_local_files(self) -> bool:
        return any((self.train_file, self.validation_file, self.test_file))


@dataclass
class TransferTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the transfer-learning recipe: what to freeze, when to unfreeze, how to decay LRs."""

    freeze_embeddings: bool = field(default=False, metadata={"help": "Freeze the embedding layers."})
    freeze_layers: str | int | None = field(
        default=None,
        metadata={
            "help": "Transformer blocks to freeze: an int N for the bottom N blocks, or a list of block indices "
            "such as [0, 1, 2] (0 is the block nearest the embeddings)."
        },
    )
    freeze_patterns: list[str] | None = field(
        default=None,
        metadata={"help": "Regexes; every parameter whose name matches one (re.search) is frozen."},
    )
    train_head_only: bool = field(
        default=False,
        metadata={"help": "Train only the task head (and pooler/final norm above the last block): a linear probe."},
    )
    gradual_unfreezing: int = field(
        default=0,
        metadata={
            "help": "ULMFiT gradual unfreezing: start with the head only and unfreeze one more block from the top "
            "every K epochs (the embeddings last). 0 turns it off."
        },
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise LR decay γ in (0, 1]: the head gets `learning_rate`, block l from the top gets "
            "learning_rate·γ^l, the embeddings the lowest. 1 turns it off."
        },
    )
    cache_frozen_features: bool = field(
        default=False,
        metadata={
            "help": "Compute the frozen trunk's output (the hidden states entering the first trainable block) once, "
            "store it on disk, and train the blocks above and the head on it. Needs freeze_embeddings and a bottom "
            "range of freeze_layers (or train_head_only); `hf-transfer train` only."
        },
    )
    frozen_features_dtype: Literal["float32", "float16"] = field(
        default="float32",
        metadata={"help": "Storage dtype of the frozen-feature cache; float16 halves its size on disk."},
    )
    frozen_features_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where frozen-feature caches live. Default: hf_transfer/frozen_features under HF_HOME."},
    )

    def __post_init__(self):
        self.freeze_layers = parse_index_list("freeze_layers", self.freeze_layers)
        if isinstance(self.freeze_layers, int) and self.freeze_layers < 0:
            raise ConfigError(f"freeze_layers must be >= 0, got {self.freeze_layers}.")
        if isinstance(self.freeze_patterns, str):
            self.freeze_patterns = [self.freeze_patterns]
        if self.freeze_patterns:
            import re

            for pattern in self.freeze_patterns:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ConfigError(f"freeze_patterns: {pattern!r} is not a valid regex ({err}).") from None
        if not (0.0 < self.layerwise_lr_decay <= 1.0) or math.isnan(self.layerwise_lr_decay):
            raise ConfigError(
                f"layerwise_lr_decay must be in (0, 1] (1 = off), got {self.layerwise_lr_decay}. "
                "Typical values are 0.8-0.95."
            )
        if self.gradual_unfreezing < 0:
            raise ConfigError(f"gradual_unfreezing must be >= 0 epochs (0 = off), got {self.gradual_unfreezing}.")
        if self.train_head_only and (self.freeze_layers is not None or self.freeze_embeddings):
            raise ConfigError(
                "train_head_only already freezes everything below the head; drop freeze_layers/freeze_embeddings, "
                "or drop train_head_only."
            )
        if self.train_head_only and self.gradual_unfreezing:
            raise ConfigError("train_head_only keeps the body frozen, so gradual_unfreezing would never unfreeze it.")
        if self.gradual_unfreezing and self.cache_frozen_features:
            raise ConfigError(
                "gradual_unfreezing changes which layers are frozen, so their features cannot be cached; "
                "drop cache_frozen_features or gradual_unfreezing."
            )
        if not self.cache_frozen_features and (
            self.frozen_features_dtype != "float32" or self.frozen_features_cache_dir is not None
        ):
            raise ConfigError(
                "frozen_features_dtype and frozen_features_cache_dir set how the frozen-feature cache is stored; "
                "set cache_frozen_features: true too, or drop them."
            )
        if not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _has_accelerator():
            # Launched as several processes on a machine without GPUs: accelerate joins CPU processes into one gloo
            # group only when asked for the CPU; otherwise each process silently trains alone on all the data.
            self.use_cpu = True
        super().__post_init__()

    @property
    def freezes_anything(self) -> bool:
        return bool(
            self.freeze_embeddings
            or self.freeze_layers
            or self.freeze_patterns
            or self.train_head_only
            or self.gradual_unfreezing
        )


@dataclass
class DistillationArguments:
    """`hf-transfer distill`: which teacher(s) to distil from, into which student, with which loss."""

    teacher_model_name_or_path: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Fine-tuned classifier to distil from: a Hub id or folder, or a list of them for an ensemble "
            "(averaged probabilities). Required."
        },
    )
    teacher_weights: list[float] | None = field(
        default=None, metadata={"help": "Ensemble weights, one per teacher (default: equal)."}
    )
    teacher_tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer of the teacher(s), when it is not the one saved with the teacher."},
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the soft (KD) loss in [0, 1]: loss = α·T²·KL + (1−α)·CE. 0 is plain fine-tuning."
        },
    )
    temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature T > 0 for the KD term (sigmoid for multi-label)."}
    )
    student_layers: list[int] | str | None = field(
        default=None,
        metadata={
            "help": "Build the student from the (first) teacher, keeping these teacher blocks, e.g. [0, 2, 4] of 6; "
            "the embeddings and the head are copied too. Leave model_name_or_path unset then."
        },
    )
    hidden_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a hidden-state matching loss between mapped student and teacher blocks; 0 = off."
        },
    )
    hidden_loss_type: Literal["mse", "cosine"] = field(
        default="mse", metadata={"help": "Distance for the hidden-state loss: per-token MSE or 1 − cosine."}
    )
    layer_map: list[int] | str | None = field(
        default=None,
        metadata={
            "help": "Teacher block matched by each student block, as a list ([1, 3, 5] maps student block i to "
            "teacher block layer_map[i]). Default: the student's origins when built from the teacher, else "
            "evenly spaced blocks."
        },
    )
    cache_teacher_logits: bool = field(
        default=False,
        metadata={
            "help": "Run the teacher once over the training set and reuse its logits (stored with `datasets` on "
            "disk, keyed by teacher weights, tokenizer, max_seq_length and data) instead of every step."
        },
    )
    teacher_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where teacher-logit caches live. Default: hf_transfer/teacher_logits under HF_HOME."},
    )
    teacher_top_k: int | None = field(
        default=None,
        metadata={"help": "Keep only the teacher's top k logits per row in the cache (large label sets)."},
    )
    teacher_bf16: bool = field(default=False, metadata={"help": "Run the teacher in bfloat16."})
    teacher_batch_size: int = field(
        default=256,
        metadata={"help": "Batch size of the teacher's cache pass (rows sorted by length; the speed check uses 64)."},
    )

    def __post_init__(self):
        teachers = self.teacher_model_name_or_path
        if isinstance(teachers, str):
            teachers = _read_list_field(teachers)
        if isinstance(teachers, str):
            teachers = [teachers]
        if not teachers or not all(isinstance(t, str) and t.strip() for t in teachers):
            raise ConfigError(
                "teacher_model_name_or_path is required: a fine-tuned classifier's Hub id or folder, or a list "
                f"of them; got {self.teacher_model_name_or_path!r}."
            )
        self.teacher_model_name_or_path = list(teachers)
        if self.teacher_weights is not None:
            if len(self.teacher_weights) != len(teachers):
                raise ConfigError(
                    f"teacher_weights has {len(self.teacher_weights)} values for {len(teachers)} teachers; give one "
                    "per teacher."
                )
            if not all(0 < w < math.inf for w in self.teacher_weights):
                raise ConfigError(f"teacher_weights must be positive, got {self.teacher_weights}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1] (the weight of the KD loss), got {self.alpha}.")
        if not self.temperature > 0 or math.isinf(self.temperature):
            raise ConfigError(f"temperature must be > 0, got {self.temperature}; 1 leaves the logits as they are.")
        if not self.hidden_loss_weight >= 0:
            raise ConfigError(f"hidden_loss_weight must be >= 0 (0 = off), got {self.hidden_loss_weight}.")
        for name in ("student_layers", "layer_map"):
            value = parse_index_list(name, getattr(self, name))
            if isinstance(value, int):
                raise ConfigError(f"{name} must be a list of block indices like [0, 2, 4], got {value}.")
            setattr(self, name, value)
        if self.teacher_top_k is not None and self.teacher_top_k <= 0:
            raise ConfigError(f"teacher_top_k must be > 0, got {self.teacher_top_k}.")
        if self.teacher_top_k is not None and not self.cache_teacher_logits:
            raise ConfigError("teacher_top_k sets what the logit cache keeps; set cache_teacher_logits: true too.")
        if self.teacher_batch_size <= 0:
            raise ConfigError(f"teacher_batch_size must be > 0, got {self.teacher_batch_size}.")
        if self.hidden_loss_weight > 0 and len(teachers) > 1:
            raise ConfigError(
                "hidden_loss_weight needs a single teacher; an ensemble has no one set of hidden states."
            )
        if self.hidden_loss_weight > 0 and self.cache_teacher_logits:
            raise ConfigError(
                "hidden_loss_weight needs the teacher's hidden states at every step, so cache_teacher_logits would "
                "save nothing; drop one of them."
            )
        if self.layer_map is not None and self.hidden_loss_weight == 0:
            raise ConfigError("layer_map is used by the hidden-state loss; set hidden_loss_weight > 0 or drop it.")

    @property
    def uses_teacher(self) -> bool:
        """Whether training needs the teacher at all: α = 0 without a hidden loss is plain fine-tuning."""
        return self.alpha > 0 or self.hidden_loss_weight > 0


def _read_list_field(value: str):
    """A string given for a list field may hold a YAML list: `[a, b]`."""
    if value.strip().startswith("["):
        import yaml

        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"cannot read {value!r} as a list; write it as [first, second].") from None
    return value


@dataclass(frozen=True)
class EvalSet:
    """A labelled file to evaluate on, under a name; `label_mapping` overrides the command's for this file."""

    name: str
    path: str
    label_mapping: dict[str, str] | None = None


_SET_NAME = re.compile(r"^[A-Za-z0-9][\w.+-]*$")
_EXTRA_EVAL_SYNTAX = (
    "extra_eval takes NAME=FILE (repeat the flag for more sets), a list of NAME=FILE, or a mapping "
    "{NAME: FILE} or {NAME: {file: FILE, label_mapping: {...}}}"
)


def _check_data_file(option: str, path: str) -> None:
    ext = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    if ext not in SUPPORTED_EXTENSIONS:
        raise ConfigError(
            f"{option} {path!r} has an unsupported extension {('.' + ext) if ext else '(none)'}; "
            f"expected one of {', '.join('.' + e for e in SUPPORTED_EXTENSIONS)}."
        )


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
        _check_data_file(f"extra_eval {name!r}:", spec)
        sets.append(EvalSet(name, spec.strip(), mapping))
    names = [s.name for s in sets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"extra_eval names must be distinct; {duplicates[0]!r} is given more than once.")
    return sets


@dataclass
class EvalDataArguments:
    """Labelled evaluation data and how to read it (shared by `evaluate` and `merge`)."""

    validation_file: str | None = field(
        default=None, metadata={"help": "Labelled evaluation data: csv, tsv, json, jsonl or parquet."}
    )
    validation_name: str = field(
        default="validation", metadata={"help": "Name of the validation_file set in tables and file names."}
    )
    extra_eval: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "More labelled sets to evaluate on, e.g. shifted domains: `--extra_eval dvd=FILE` (repeat the "
            "flag for more), or in YAML a list of NAME=FILE or a mapping {NAME: FILE}; a set may carry its own "
            "label_mapping as {NAME: {file: FILE, label_mapping: {...}}}. Columns are read as for validation_file."
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
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated to this many tokens."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Inference batch size."})
    csv_quoting: Literal["auto", "minimal", "none"] = field(
        default="auto", metadata={"help": "Quoting of csv/tsv files, as for `train`."}
    )

    def _check_eval_data(self) -> None:
        if self.max_seq_length <= 0 or self.per_device_eval_batch_size <= 0:
            raise ConfigError(
                f"max_seq_length and per_device_eval_batch_size must be > 0, got {self.max_seq_length} and "
                f"{self.per_device_eval_batch_size}."
            )
        if self.label_mapping is not None:
            self.label_mapping = {str(k): str(v) for k, v in self.label_mapping.items()}
        if self.validation_file is not None:
            _check_data_file("validation_file", self.validation_file)
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


@dataclass
class EvaluateArguments(EvalDataArguments):
    """`hf-transfer evaluate`: score a trained classifier on a labelled file, and optionally on more sets."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Trained model folder or Hub id, or the folder of a PEFT adapter written by `train`."},
    )
    base_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "For an adapter folder: the base model to load it onto, a Hub id or folder (default: the base "
            "its adapter_config.json names)."
        },
    )
    output_file: str | None = field(
        default=None,
        metadata={
            "help": "Write the metrics here as JSON; the confusion matrix goes beside it (.json and .png), and a "
            "Markdown table of every set to <output_file stem>.md. With extra_eval, the JSON also holds every "
            "set's report under `sets`, and each extra set gets its own confusion matrix (.NAME.confusion_matrix)."
        },
    )

    def __post_init__(self):
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path is required: a trained model folder or Hub id.")
        if not self.validation_file:
            raise ConfigError("validation_file is required: a labelled csv, tsv, json, jsonl or parquet file.")
        self._check_eval_data()


@dataclass
class MergeArguments(EvalDataArguments):
    """`hf-transfer merge`: interpolate weights, θ(α) = (1 − α)·θ_pretrained + α·θ_finetuned (WiSE-FT)."""

    pretrained: str | None = field(
        default=None,
        metadata={
            "help": "The model that was fine-tuned: Hub id or folder (a bare AutoModel checkpoint works). Required."
        },
    )
    finetuned: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the fine-tuned classifier, or of a PEFT adapter trained on `pretrained` (then α "
            "scales the adapter: LoRA through PEFT's scaling). Required."
        },
    )
    alpha: float | None = field(
        default=None, metadata={"help": "One α in [0, 1]: 0 is the pretrained body, 1 the fine-tuned model."}
    )
    alphas: str | None = field(
        default=None,
        metadata={
            "help": "Several α to sweep, e.g. `0,0.25,0.5,0.75,1` or a YAML list; needs validation_file. Each α is "
            "evaluated on validation_file and every extra_eval set; the α with the best validation score is saved "
            "(ties: the largest α, the one closest to the fine-tuned model)."
        },
    )
    head_init: str | None = field(
        default=None,
        metadata={
            "help": "A classifier folder with the same labels whose head (e.g. a zero-shot or linear-probe head) is "
            "interpolated with the fine-tuned head: head(α) = (1 − α)·head_init + α·head_finetuned. Default: the "
            "fine-tuned head at every α, since the pretrained model has none."
        },
    )
    selection_metric: Literal["accuracy", "f1_macro"] = field(
        default="accuracy", metadata={"help": "Validation metric that picks α in a sweep."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the interpolated model (at the chosen α) and its report go. Required."}
    )
    base_model_hub_id: str | None = field(
        default=None,
        metadata={"help": "Hub id of `pretrained` when it is a local folder, for the card (as in `train`)."},
    )

    def __post_init__(self):
        from .merging import check_alpha, parse_alphas

        for name in ("pretrained", "finetuned", "output_dir"):
            if not getattr(self, name) or not str(getattr(self, name)).strip():
                raise ConfigError(
                    f"{name} is required: hf-transfer merge --pretrained DIR_OR_ID --finetuned DIR "
                    "[--alpha A | --alphas 0,0.25,0.5,0.75,1 --validation_file FILE] --output_dir DIR."
                )
        if self.alpha is not None and self.alphas is not None:
            raise ConfigError(f"give either alpha ({self.alpha}) or alphas ({self.alphas!r}), not both.")
        if self.alpha is None and self.alphas is None:
            raise ConfigError(
                "no α given: pass --alpha A (0 = pretrained, 1 = fine-tuned), or --alphas 0,0.25,0.5,0.75,1 with "
                "--validation_file FILE to pick α on validation data."
            )
        if self.alpha is not None:
            self.alpha = check_alpha(self.alpha)
        else:
            self.alphas = parse_alphas(self.alphas)
            if not self.validation_file:
                raise ConfigError(
                    "alphas sweeps α and keeps the best on validation data: give --validation_file FILE, or a "
                    "single --alpha."
                )
        self._check_eval_data()
        out = os.path.realpath(self.output_dir)
        for name in ("pretrained", "finetuned", "head_init"):
            value = getattr(self, name)
            if value and os.path.exists(value) and os.path.realpath(value) == out:
                raise ConfigError(f"output_dir {self.output_dir!r} is the {name} folder; write the result elsewhere.")

    @property
    def alpha_grid(self) -> list[float]:
        return [self.alpha] if self.alpha is not None else list(self.alphas)


@dataclass
class AdapterArguments:
    """A PEFT adapter as a light task head: the base model stays frozen, the adapter and the classifier train."""

    peft_method: str = field(
        default="none",
        metadata={
            "help": "`none` (full model, with the freezing options), `lora`, `ia3`, `adalora`, or any other PEFT "
            "method name (`loha`, `lokr`, ...); case-insensitive."
        },
    )
    peft_config: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": "Fields of the method's PEFT config (e.g. `{r: 16, target_modules: [query, key, value]}` for "
            "LoRA); they win over the short fields below. The task type and the saved head are set by hf-transfer."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "Adapter rank `r` (LoRA and methods that have a rank)."})
    lora_alpha: int = field(default=16, metadata={"help": "Scaling α (`lora_alpha`, or `alpha` for LoHa/LoKr)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the adapter's input, in [0, 1)."})
    target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules that get an adapter: names or dotted suffixes such as `[query, value]`, or `all-linear`. "
            "Default: PEFT's choice for the architecture, else the attention projections found in the blocks."
        },
    )
    merge_adapter: bool = field(
        default=False,
        metadata={"help": "Also write the adapter merged into the base as a plain model, to `output_dir/merged`."},
    )

    def __post_init__(self):
        self.peft_method = str(self.peft_method or "none").strip().lower().replace("-", "_")
        if self.lora_r <= 0:
            raise ConfigError(f"lora_r must be > 0, got {self.lora_r}. Typical ranks are 4-64.")
        if self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha must be > 0, got {self.lora_alpha}. A common choice is 2 × lora_r.")
        if not 0.0 <= self.lora_dropout < 1.0 or math.isnan(self.lora_dropout):
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if self.target_modules is not None:
            # `--target_modules query,value` arrives as one string.
            names = [part.strip() for item in self.target_modules for part in str(item).split(",")]
            self.target_modules = [name for name in names if name]
            if not self.target_modules:
                raise ConfigError("target_modules is empty; give module names like [query, value], or drop it.")
        if self.peft_config is not None and not isinstance(self.peft_config, dict):
            raise ConfigError(f"peft_config must be a mapping of PEFT config fields, got {self.peft_config!r}.")
        if self.peft_method == "none":
            used = [name for name in ("peft_config", "target_modules") if getattr(self, name)]
            used += ["merge_adapter"] if self.merge_adapter else []
            if used:
                raise ConfigError(
                    f"{', '.join(used)} given but peft_method is none; set peft_method (e.g. lora) or drop them."
                )

    @property
    def enabled(self) -> bool:
        return self.peft_method != "none"


@dataclass
class CardArguments:
    """`hf-transfer card DIR`: write DIR/README.md again from the card data and run record DIR holds."""

    model_dir: str | None = field(
        default=None, metadata={"help": "Output folder of a finished run (positional: `hf-transfer card DIR`)."}
    )
    hub_model_id: str | None = field(
        default=None,
        metadata={"help": "Hub repo id the card's quick-start loads from. Default: the id it was pushed to, if any."},
    )

    def __post_init__(self):
        _check_model_dir(self.model_dir, "card")


@dataclass
class PushArguments:
    """`hf-transfer push DIR --hub_model_id NAME`: upload a finished run folder to the Hub, card refreshed first.

    The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT is honoured."""

    model_dir: str | None = field(
        default=None, metadata={"help": "Output folder of a finished run (positional: `hf-transfer push DIR`)."}
    )
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Hub repo id, `namespace/name` (or `name` for your own namespace). Required."}
    )
    private: bool = field(
        default=False, metadata={"help": "Create the repo private (an existing repo keeps its visibility)."}
    )
    revision: str | None = field(
        default=None, metadata={"help": "Branch to push to; created from main when missing. Default: main."}
    )
    commit_message: str | None = field(
        default=None, metadata={"help": "Default: how the model was made and its validation score."}
    )

    def __post_init__(self):
        _check_model_dir(self.model_dir, "push")
        if not self.hub_model_id:
            raise ConfigError("hub_model_id is required: `hf-transfer push DIR --hub_model_id namespace/name`.")


def _check_model_dir(path: str | None, command: str) -> None:
    if not path:
        raise ConfigError(f"no folder given: `hf-transfer {command} DIR`, DIR being a run's output_dir.")
    if not os.path.isdir(path):
        raise ConfigError(f"{path!r} is not a folder; `hf-transfer {command} DIR` takes a run's output_dir.")
