"""An exported classifier run by ONNX Runtime on the CPU, behind the interface `core.inference.predict_logits` needs
(`config`, and logits for one padded batch), so commands score an ONNX folder exactly as they score a PyTorch one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hf_transfer.errors import ConfigError, one_line


def import_onnxruntime():
    """ONNX Runtime, imported with its telemetry off unless the user set `ORT_DISABLE_TELEMETRY` (read once, at its
    import): each export, ONNX predict and ONNX evaluate had written a device id and an event database under
    `~/.cache/Microsoft/DeveloperTools`, and a session id in the temporary folder, outside HF_HOME."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def default_threads() -> int:
    """As many intra-op threads as PyTorch uses here, so the two runtimes are compared on equal terms."""
    import torch

    return torch.get_num_threads()


class OnnxClassifier:
    """`path` (an ONNX graph with a `logits` output) in an ONNX Runtime CPU session; `config` gives the labels."""

    def __init__(self, path: str | Path, config, threads: int | None = None):
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own unrelated classes for a bad file
            raise ConfigError(f"cannot load the ONNX model {str(path)!r}: {one_line(err)}") from None
        self.path = Path(path)
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.output_name = "logits" if "logits" in outputs else next(iter(outputs))
        shape = outputs[self.output_name].shape or [None]
        # A symbolic width (a name, or None) is known only from a batch's logits: `run_batch` checks the first.
        self._width_checked = False
        if isinstance(shape[-1], int):
            self._check_width(shape[-1])

    def _check_width(self, width: int) -> None:
        """ConfigError when the graph gives another number of logits than the config has labels: it is another
        model's graph, whose outputs would be written under these labels (or fail to fit them)."""
        labels = self.config.num_labels
        if width != labels:
            raise ConfigError(
                f"the ONNX model {str(self.path)!r} gives {width} logits per row, but the config it runs with has "
                f"{labels} labels: it is another model's graph. Run the graph hf-transfer export wrote beside this "
                "config."
            )
        self._width_checked = True

    def run_batch(self, batch: dict) -> np.ndarray:
        """Logits (float32) of one padded batch of numpy arrays from the tokenizer."""
        missing = [name for name in self.input_names if name not in batch]
        if missing:
            raise ConfigError(
                f"the ONNX model {str(self.path)!r} needs inputs {missing} that its tokenizer does not produce; "
                "export it again with hf-transfer export."
            )
        feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self.input_names}
        logits = self.session.run([self.output_name], feed)[0]
        if not self._width_checked:
            self._check_width(logits.shape[-1])
        return logits.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"OnnxClassifier({str(self.path)!r})"
