"""`TransferTrainingArguments`: `TrainingArguments` plus the transfer-learning recipe (what to freeze, when to
unfreeze, how to decay learning rates, the frozen-feature cache)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from hf_transfer.core.arguments import parse_index_list
from hf_transfer.core.runtime import has_accelerator
from hf_transfer.errors import ConfigError


@dataclass
class TransferTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the transfer-learning recipe: what to freeze, when to unfreeze, how to decay LRs."""

    freeze_embeddings: bool = field(default=False, metadata={"help": "Freeze the embedding layers."})
    freeze_layers: int | str | list[int] | None = field(
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
        if not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator():
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
