"""The arguments of `hf-transfer distill`: teachers, the student, the loss and the teacher-logit cache."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

from hf_transfer.core.arguments import check_data_file, data_file_problem, parse_index_list, read_list_field
from hf_transfer.errors import ConfigError


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
    hidden_loss_pooling: Literal["tokens", "cls", "mean"] = field(
        default="tokens",
        metadata={
            "help": "What the hidden-state loss compares at each mapped block: every token (`tokens`, needs the "
            "teacher online), or one L2-normalised vector per row, the first token's (`cls`) or the mean over tokens "
            "(`mean`), as in Patient KD: a few KB per row, so it can live in the teacher cache "
            "(cache_teacher_logits) beside the logits."
        },
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
        metadata={
            "help": "Keep only the teacher's top k (at least 2) logits per row in the cache (large single-label "
            "sets): the soft targets are a softmax over those k, with no probability on the other labels."
        },
    )
    teacher_bf16: bool = field(default=False, metadata={"help": "Run the teacher in bfloat16."})
    teacher_batch_size: int = field(
        default=256,
        metadata={"help": "Batch size of the teacher's cache pass (rows sorted by length; the speed check uses 64)."},
    )

    unlabeled_file: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Rows without labels for the transfer set, one file or a list (csv, tsv, json, jsonl, parquet, "
            "the text ones also as .gz, .bz2 or .xz; the same text_column_name, no label column needed). The teacher "
            "labels them: they get the soft loss only. `none` drops the files a config names."
        },
    )
    augment_factor: int = field(
        default=0,
        metadata={
            "help": "Augmented copies of each labelled row added to the transfer set (TinyBERT-style; 0 = off). They "
            "are generated once (seeded, deduplicated against the originals), stored under a fingerprint, labelled "
            "by the cached teacher pass and get the soft loss only. A text pair's copy perturbs both texts."
        },
    )
    augment_method: Literal["replace", "delete", "swap"] = field(
        default="replace",
        metadata={
            "help": "`replace`: each single-piece word is replaced, with probability augment_p, by one of its "
            "nearest neighbours in the teacher's input-embedding matrix (no extra model); `delete`: each word is "
            "dropped with probability augment_p; `swap`: neighbouring words are swapped with probability augment_p."
        },
    )
    augment_p: float = field(default=0.4, metadata={"help": "The per-word probability of augment_method, in [0, 1]."})
    augment_neighbours: int = field(
        default=15, metadata={"help": "How many nearest embedding neighbours a replaced word is drawn from."}
    )

    def __post_init__(self):
        teachers = self.teacher_model_name_or_path
        if isinstance(teachers, str):
            teachers = read_list_field(teachers)
        if isinstance(teachers, str):
            teachers = [teachers]
        # a mapping passed the item check with its keys, and a number or true/false was "'int' object is not iterable"
        if (
            not isinstance(teachers, list)
            or not teachers
            or not all(isinstance(t, str) and t.strip() for t in teachers)
        ):
            raise ConfigError(
                "teacher_model_name_or_path is required: a fine-tuned classifier's Hub id or folder, or a list "
                f"of them; got {self.teacher_model_name_or_path!r}."
            )
        self.teacher_model_name_or_path = list(teachers)
        seen = {}  # one teacher twice: twice its compute, and a card counting it twice (size, speedup)
        for teacher in teachers:
            key = (
                os.path.realpath(os.path.expanduser(teacher))
                if os.path.exists(os.path.expanduser(teacher))
                else teacher
            )
            if key in seen:
                raise ConfigError(
                    f"teacher_model_name_or_path names the same teacher twice ({seen[key]!r} and {teacher!r}); list "
                    "each once, and weigh them with teacher_weights."
                )
            seen[key] = teacher
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
        if not 0 <= self.hidden_loss_weight < math.inf:  # inf made every step's loss NaN, and a NaN model was saved
            raise ConfigError(f"hidden_loss_weight must be finite and >= 0 (0 = off), got {self.hidden_loss_weight}.")
        for name in ("student_layers", "layer_map"):
            value = parse_index_list(name, getattr(self, name))
            if isinstance(value, int):
                raise ConfigError(f"{name} must be a list of block indices like [0, 2, 4], got {value}.")
            setattr(self, name, value)
        if self.teacher_top_k is not None and self.teacher_top_k < 2:
            # k = 1: a softmax over one logit is 1, so the soft target is the teacher's top label alone, one-hot,
            # the temperature does nothing, and the soft loss became T² times a hard-label cross-entropy.
            raise ConfigError(
                f"teacher_top_k must be at least 2, got {self.teacher_top_k}: the targets are a softmax over the "
                "kept logits, so one logit leaves only the teacher's top label (one-hot; temperature has no effect)."
            )
        if self.teacher_top_k is not None and not self.cache_teacher_logits:
            raise ConfigError("teacher_top_k sets what the logit cache keeps; set cache_teacher_logits: true too.")
        if self.teacher_batch_size <= 0:
            raise ConfigError(f"teacher_batch_size must be > 0, got {self.teacher_batch_size}.")
        if self.hidden_loss_weight > 0 and len(teachers) > 1:
            raise ConfigError(
                "hidden_loss_weight needs a single teacher; an ensemble has no one set of hidden states."
            )
        if self.hidden_loss_weight > 0 and self.cache_teacher_logits and self.hidden_loss_pooling == "tokens":
            raise ConfigError(
                "hidden_loss_pooling tokens compares every token's state, which no cache holds; with "
                "cache_teacher_logits set hidden_loss_pooling to cls or mean (one vector per row), or drop one."
            )
        if self.hidden_loss_pooling != "tokens" and self.hidden_loss_type != "mse":
            raise ConfigError(
                f"hidden_loss_pooling {self.hidden_loss_pooling} compares L2-normalised vectors by MSE (Patient KD); "
                f"drop hidden_loss_type {self.hidden_loss_type}."
            )
        self._check_transfer_set()
        if self.layer_map is not None and self.hidden_loss_weight == 0:
            raise ConfigError("layer_map is used by the hidden-state loss; set hidden_loss_weight > 0 or drop it.")

    def _check_transfer_set(self) -> None:
        files = self.unlabeled_file
        if isinstance(files, str) and files.strip().lower() in ("none", "null"):
            files = None  # `--unlabeled_file none` drops a config's files
        if isinstance(files, str):
            files = read_list_field(files)
        files = [files] if isinstance(files, str) else files
        if files is not None:
            if not isinstance(files, list) or not files or not all(isinstance(f, str) and f.strip() for f in files):
                raise ConfigError(f"unlabeled_file must be a file or a list of files, got {self.unlabeled_file!r}.")
            for path in files:
                check_data_file("unlabeled_file", path)
                if problem := data_file_problem(path):
                    raise ConfigError(
                        f"unlabeled_file {path!r} {problem} (working directory {os.getcwd()!r}); check the path, "
                        "or pass --unlabeled_file none to train on the labelled rows alone."
                    )
            files = list(files)
        self.unlabeled_file = files
        if isinstance(self.augment_factor, bool) or self.augment_factor < 0:
            raise ConfigError(f"augment_factor must be an integer >= 0 (0 = off), got {self.augment_factor}.")
        if not 0.0 <= self.augment_p <= 1.0 or math.isnan(self.augment_p):
            raise ConfigError(f"augment_p must be in [0, 1], got {self.augment_p}.")
        if self.augment_factor and self.augment_p == 0:
            raise ConfigError(
                f"augment_p 0 changes no word, so every one of the augment_factor {self.augment_factor} copies equals "
                "its original and is dropped; set augment_p above 0 (e.g. 0.4), or augment_factor 0."
            )
        if self.augment_neighbours < 1:
            raise ConfigError(f"augment_neighbours must be >= 1, got {self.augment_neighbours}.")
        if (files or self.augment_factor) and self.alpha == 0:
            raise ConfigError(
                "unlabeled_file and augment_factor add rows without labels, which only the soft loss uses, but alpha "
                "is 0 (no soft loss); raise alpha, or drop them (--unlabeled_file none, --augment_factor 0)."
            )

    @property
    def uses_teacher(self) -> bool:
        """Whether training needs the teacher at all: α = 0 without a hidden loss is plain fine-tuning."""
        return self.alpha > 0 or self.hidden_loss_weight > 0
