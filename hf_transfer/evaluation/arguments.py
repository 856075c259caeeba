"""The arguments of `hf-transfer evaluate`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
        if self.output_file:
            self._check_output_file()

    def _check_output_file(self) -> None:
        # The table and confusion matrices are written beside it under its stem: metrics.md would be overwritten.
        out = Path(self.output_file)
        if out.is_dir():
            raise ConfigError(f"output_file {self.output_file!r} is a folder; give a file such as metrics.json.")
        if out.suffix.lower() != ".json":
            raise ConfigError(
                f"output_file {self.output_file!r} must end in .json (the metrics are written as JSON, with a "
                "Markdown table and the confusion matrix beside it); give a file such as metrics.json."
            )
        if out.exists() and any(Path(s.path).exists() and out.samefile(s.path) for s in self.eval_sets()):
            raise ConfigError(f"output_file {self.output_file!r} is an input data file; write the metrics elsewhere.")
