"""The arguments of `hf-transfer predict`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hf_transfer.core.arguments import (
    INFERENCE_MAX_SEQ_LENGTH_HELP,
    INFERENCE_REVISION_HELP,
    ONNX_FILE_HELP,
    check_data_file,
    data_file_problem,
)
from hf_transfer.core.folders import check_writable
from hf_transfer.errors import ConfigError

OUTPUT_EXTENSIONS = ("csv", "jsonl", "parquet")


def output_extension(path: str | Path) -> str:
    """The format a file name asks for, lower case: what follows its last dot, so `.csv` (a name that is only the
    extension) is csv too, as `PredictionWriter` writes it; "" for a name without a dot."""
    name = Path(path).name
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


@dataclass
class PredictArguments:
    """`hf-transfer predict`: label every row of a file with a trained classifier and write the predictions beside the
    input columns. The file is read and written in chunks, so its size is bounded only by the disk."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Trained model folder or Hub id (fine-tuned, merged or distilled; single- or multi-label), the "
            "folder of a PEFT adapter written by `train`, or a folder written by `export` (ONNX). Required."
        },
    )
    input_file: str | None = field(
        default=None,
        metadata={
            "help": "Rows to label: a csv, tsv, json, jsonl or parquet file (the text formats may be compressed: .gz, "
            ".bz2, .xz). Required."
        },
    )
    output_file: str | None = field(
        default=None,
        metadata={
            "help": "Where the predictions go, in the format its extension names: .csv, .jsonl or .parquet. The input "
            "columns, then `predicted_label`, `score` and a `prob_<label>` column per label (or, with top_k, "
            "`top<i>_label` and `top<i>_score`). Written to a temporary file that replaces it only once complete. "
            "Required."
        },
    )
    text_column_name: str | None = field(
        default=None,
        metadata={"help": "Column holding the text. Default: the first of `text`, `sentence`, `review`, `content`."},
    )
    text_pair_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Second text column, for sentence-pair models; required when the model's run folder records that "
            "it was trained on pairs."
        },
    )
    label_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Column of true labels, if the file has one: the metrics are then printed, computed as "
            "`evaluate` computes them. Default: `label` or `labels` when present."
        },
    )
    label_mapping: dict[str, str] | None = field(
        default=None,
        metadata={"help": "Maps the file's label values to the model's label names, as for `evaluate`."},
    )
    model_revision: str = field(default="main", metadata={"help": INFERENCE_REVISION_HELP})
    base_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "For an adapter folder: the base model to load it onto (default: the one it names)."},
    )
    onnx_file: str | None = field(default=None, metadata={"help": ONNX_FILE_HELP})
    batch_size: int = field(default=64, metadata={"help": "Rows per forward pass (batches are length-sorted)."})
    top_k: int | None = field(
        default=None,
        metadata={"help": "Write the k most probable labels and their probabilities instead of one column per label."},
    )
    threshold: float | None = field(
        default=None,
        metadata={
            "help": "Multi-label models: predict each label whose probability is above this, in (0, 1) (default 0.5; "
            "a run's calibrated thresholds are already folded into the model, so 0.5 applies them)."
        },
    )
    max_seq_length: int | None = field(default=None, metadata={"help": INFERENCE_MAX_SEQ_LENGTH_HELP})
    chunk_rows: int = field(
        default=8192,
        metadata={
            "help": "Rows read, sorted by length, predicted and written at a time; bounds the memory used whatever "
            "the file's size."
        },
    )
    csv_quoting: Literal["auto", "minimal", "none"] = field(
        default="auto",
        metadata={"help": "Quoting of a csv/tsv input, as for `train` (auto: detected on the first MiB)."},
    )

    def __post_init__(self):
        for name in ("model_name_or_path", "input_file", "output_file"):
            if not getattr(self, name) or not str(getattr(self, name)).strip():
                raise ConfigError(f"{name} is required: hf-transfer predict --model_name_or_path DIR_OR_ID "
                                  "--input_file FILE --output_file OUT.csv|.jsonl|.parquet")  # fmt: skip
        check_data_file("input_file", self.input_file)
        if problem := data_file_problem(self.input_file):
            raise ConfigError(f"input_file {self.input_file!r} {problem} (working directory {os.getcwd()!r}).")
        ext = output_extension(self.output_file)
        if self.output_file.strip() == "-":
            raise ConfigError(
                "output_file '-': predictions are written to a file, not to stdout; give a path ending in "
                f"{', '.join('.' + e for e in OUTPUT_EXTENSIONS)}."
            )
        if ext not in OUTPUT_EXTENSIONS:
            raise ConfigError(
                f"output_file {self.output_file!r} has an unsupported extension {('.' + ext) if ext else '(none)'}; "
                f"predictions are written as {', '.join('.' + e for e in OUTPUT_EXTENSIONS)}."
            )
        out = Path(self.output_file)
        blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:  # a missing folder is made, as evaluate's; a file in the way fails only at the end
            raise ConfigError(
                f"output_file {self.output_file!r} lies under {str(blocking)!r}, which is a file, not a folder; "
                "write the predictions elsewhere."
            )
        check_writable(out, "output_file", is_file=True)
        if out.is_dir():
            raise ConfigError(f"output_file {self.output_file!r} is a folder; give a file name such as out.csv.")
        if out.exists() and out.resolve() == Path(self.input_file).resolve():
            raise ConfigError(f"output_file {self.output_file!r} is the input file; write the predictions elsewhere.")
        for name in ("batch_size", "max_seq_length", "chunk_rows"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise ConfigError(f"threshold must be between 0 and 1 (a probability), got {self.threshold}.")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}.")
        if self.label_mapping is not None:
            self.label_mapping = {str(k): str(v) for k, v in self.label_mapping.items()}
