"""The arguments of `hf-transfer export`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hf_transfer.core.arguments import INFERENCE_REVISION_HELP, EvalDataArguments
from hf_transfer.core.folders import check_new_output_dir
from hf_transfer.errors import ConfigError

# The opsets the TorchScript exporter writes that hold everything a transformer classifier needs.
OPSETS = range(14, 21)


@dataclass
class ExportArguments(EvalDataArguments):
    """`hf-transfer export DIR --format onnx [--quantize int8]`: write the classifier in DIR as an ONNX graph (and an
    int8 one) with its tokenizer, config and card, after checking it against the PyTorch model. A graph that fails the
    check is not written."""

    model_dir: str | None = field(
        default=None,
        metadata={
            "help": "The classifier to export (positional): a trained, merged or distilled model folder or Hub id, "
            "or an adapter folder, which is exported through its merged model."
        },
    )
    format: Literal["onnx"] | None = field(default=None, metadata={"help": "Export format: onnx. Required."})
    quantize: Literal["int8"] | None = field(
        default=None,
        metadata={
            "help": "Also write an int8 graph (`model_quantized.onnx`) by ONNX Runtime dynamic quantization; its "
            "accuracy is checked on validation_file."
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the exported folder goes: a new or empty folder. Default: `<model_dir>-onnx` "
            "(`<name>-onnx` for a Hub id)."
        },
    )
    model_revision: str = field(default="main", metadata={"help": INFERENCE_REVISION_HELP})
    # Shared with evaluate, but export checks parity on validation_file alone: kept out of --help, refused if given.
    extra_eval: list[str] | str | None = field(default=None, metadata={"action": "append", "help": argparse.SUPPRESS})
    base_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "For an adapter folder: the base model to merge it into (default: the one it names)."},
    )
    opset: int = field(default=17, metadata={"help": f"ONNX opset, {OPSETS.start} to {OPSETS.stop - 1}."})
    max_abs_logit_diff: float = field(
        default=1e-4,
        metadata={"help": "The fp32 graph is refused if any logit differs from PyTorch's by more than this."},
    )
    max_accuracy_drop: float = field(
        default=1.0,
        metadata={
            "help": "The int8 graph is refused if its accuracy on validation_file is more than this many points "
            "below the PyTorch model's."
        },
    )
    speed_samples: int = field(
        default=256, metadata={"help": "Rows timed at batch 1 and batch 64 for the card's speed table."}
    )

    def __post_init__(self):
        if not self.model_dir or not str(self.model_dir).strip():
            raise ConfigError("no model given: `hf-transfer export DIR --format onnx`, DIR being a trained model.")
        if self.format is None:
            raise ConfigError("format is required: `hf-transfer export DIR --format onnx`.")
        if self.extra_eval:
            raise ConfigError("export checks parity on validation_file alone; extra_eval is for hf-transfer evaluate.")
        self._check_eval_data()
        if self.opset not in OPSETS:
            raise ConfigError(f"opset must be between {OPSETS.start} and {OPSETS.stop - 1}, got {self.opset}.")
        if not self.max_abs_logit_diff > 0 or not self.max_accuracy_drop >= 0 or self.speed_samples < 1:
            raise ConfigError(
                "max_abs_logit_diff must be > 0, max_accuracy_drop >= 0 and speed_samples >= 1; got "
                f"{self.max_abs_logit_diff}, {self.max_accuracy_drop} and {self.speed_samples}."
            )
        if self.output_dir is None:
            source = Path(self.model_dir.rstrip("/\\") or "/")
            if source.name in ("", ".", "..") and source.is_dir():  # `export .`: beside the folder, not `.-onnx` in it
                source = source.resolve()
            elif not source.exists() and self.model_dir.count("/") == 1:  # a Hub id: `./name-onnx`, not `./owner/...`
                source = Path(source.name)
            self.output_dir = str(source) + "-onnx"
        check_new_output_dir(self.output_dir, "export")
