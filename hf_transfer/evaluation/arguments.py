"""The arguments of `hf-transfer evaluate`."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_transfer.core.arguments import EvalDataArguments
from hf_transfer.errors import ConfigError


@dataclass
class EvaluateArguments(EvalDataArguments):
    """`hf-transfer evaluate`: score a trained classifier on a labelled file, and optionally on more sets."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Trained model folder or Hub id, the folder of a PEFT adapter written by `train`, or a folder "
            "written by `export` (ONNX)."
        },
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
