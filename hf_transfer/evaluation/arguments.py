"""The arguments of `hf-transfer evaluate`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hf_transfer.core.arguments import INFERENCE_REVISION_HELP, ONNX_FILE_HELP, EvalDataArguments
from hf_transfer.core.folders import ADAPTER_CONFIG, CARD_DATA_FILE, RUN_RECORD_FILE, TOKENIZER_FILES, check_writable
from hf_transfer.errors import ConfigError
from hf_transfer.outputs.plots import confusion_paths

# What a model folder holds that its loading or its card reads: evaluate's outputs may not replace them.
MODEL_FOLDER_FILES = {
    "config.json", "README.md", "special_tokens_map.json", "model.safetensors.index.json", ADAPTER_CONFIG,
    RUN_RECORD_FILE, CARD_DATA_FILE, "train_results.json", "eval_results.json", "all_results.json",
    "trainer_state.json", *TOKENIZER_FILES,
}  # fmt: skip


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
    model_revision: str = field(default="main", metadata={"help": INFERENCE_REVISION_HELP})
    base_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "For an adapter folder: the base model to load it onto, a Hub id or folder (default: the base "
            "its adapter_config.json names)."
        },
    )
    onnx_file: str | None = field(default=None, metadata={"help": ONNX_FILE_HELP})
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
        if self.output_file is not None and not self.output_file.strip():  # an unset shell variable: wrote nothing
            raise ConfigError("output_file is empty; give a file such as metrics.json, or leave the flag out.")
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
        blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:  # the first write would fail, after the whole evaluation
            raise ConfigError(
                f"output_file {self.output_file!r} lies under {str(blocking)!r}, which is a file, not a folder; "
                "write the metrics elsewhere."
            )
        check_writable(out, "output_file", is_file=True)
        inputs = [Path(s.path) for s in self.eval_sets() if Path(s.path).exists()]
        model = Path(self.model_name_or_path)
        for path in self.written_files():
            # Absent or not, such a name is read as the model's own file: a README.md became its card, an
            # adapter_config.json made a full model an adapter folder.
            if (
                model.is_dir()
                and path.parent.is_dir()
                and path.parent.samefile(model)
                and path.name in MODEL_FOLDER_FILES
            ):
                raise ConfigError(
                    f"output_file {self.output_file!r} would {'overwrite' if path.exists() else 'add'} {path.name} "
                    f"{'of' if path.exists() else 'to'} the model folder {self.model_name_or_path!r}, where that name "
                    "is the model's own file; write the metrics elsewhere, such as metrics.json in that folder."
                )
            if path.is_file() and any(path.samefile(p) for p in inputs):
                raise ConfigError(
                    f"output_file {self.output_file!r} would overwrite {str(path)!r}, which is an input data file; "
                    "write the metrics elsewhere."
                )

    def written_files(self) -> list[Path]:
        """Every file `output_file` stands for: the metrics, the Markdown table, and each set's confusion matrix."""
        out = Path(self.output_file)
        files = [out, out.with_suffix(".md")]
        for eval_set in self.eval_sets():
            files += confusion_paths(out, None if eval_set.name == self.validation_name else eval_set.name)
        return files
