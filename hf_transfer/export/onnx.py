"""Exporting a PyTorch classifier to ONNX and quantizing it to int8, and the checks that decide whether the result may
be written: logits against PyTorch, accuracy, throughput.

Exporter: `torch.onnx.export` with the TorchScript tracer (`dynamo=False`) and dynamic batch and sequence axes.
Optimum's exporter is the usual route, but optimum-onnx (0.1.0, the newest) requires transformers < 4.58 and this
stack is transformers 5; the dynamo exporter needs `onnxscript`, which the stack does not ship. The tracer follows
transformers 5's mask code, which keeps the padding mask symbolic while tracing, so one trace serves every batch
size and sequence length (checked here on rows of many lengths). Quantization: ONNX Runtime's `quantize_dynamic`
(int8 weights, activations quantized per batch at run time), as Optimum's ORTQuantizer does for CPUs."""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hf_transfer.core.inference import measure_speed, predict_logits
from hf_transfer.core.onnx_model import import_onnxruntime
from hf_transfer.core.runtime import progress_bar
from hf_transfer.core.tasks import predicted_labels

EXPORTER = "torch.onnx.export (TorchScript tracer, dynamo=False)"
QUANTIZER = "onnxruntime.quantization.quantize_dynamic (int8 weights, dynamic uint8 activations)"
# Rows for the parity check when no validation file is given: short and long, plain and odd, so that the check sees
# many sequence lengths (the graph must not have kept the traced ones) and truncation at max_seq_length.
SAMPLE_TEXTS = [
    "Great!",
    "I really enjoyed this.",
    "Terrible, a waste of money.",
    "ok",
    "The plot was predictable, but the acting carried it and I would watch it again.",
    "Not bad at all, though the second half drags on for far too long.",
    "Worst purchase I have made this year; it broke after two days and support never answered.",
    "¿Qué tal? Ça va très bien, merci — 素晴らしい!",
    "1234 5678 !!! ???",
    "A" * 40,
    "It was fine. " * 12,
    " ".join(f"word{i}" for i in range(300)),
    "neutral text about nothing in particular",
    "An absolute masterpiece of modern cinema, with a score that stays with you for days.",
    "meh",
    "I would not recommend it to anyone, not even my worst enemy.",
]
# Second texts for a model trained on pairs, so the check sees the second segment (token_type_ids 1): the samples in
# reverse order, no row paired with itself, the long row with a short one (truncation of the longer segment).
SAMPLE_PAIRS = SAMPLE_TEXTS[::-1]


class _LogitsOnly(nn.Module):
    """The classifier as a function of its input tensors, in a fixed order, returning the logits alone."""

    def __init__(self, model: nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.input_names, inputs, strict=True))).logits


def graph_input_names(model: nn.Module, tokenizer) -> list[str]:
    """What the tokenizer produces that the model's forward takes (input_ids, attention_mask, token_type_ids...)."""
    accepted = inspect.signature(model.forward).parameters
    return [name for name in tokenizer.model_input_names if name in accepted]


def export_onnx(model: nn.Module, tokenizer, path: Path, opset: int) -> list[str]:
    """Trace `model` into the ONNX file `path`, with dynamic batch and sequence axes; returns the input names."""
    import onnx

    names = graph_input_names(model, tokenizer)
    sample = tokenizer(SAMPLE_TEXTS[:2], padding=True, return_tensors="pt")
    # The wrapper must be in eval mode too: the exporter restores the training flag of the module it is given,
    # recursively, so a wrapper left in training mode would switch dropout on in `model`.
    wrapper = _LogitsOnly(model.eval(), names).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with warnings.catch_warnings():
        # The tracer's notes about Python conditions on tensor values, and the deprecation notice of the TorchScript
        # exporter: the parity check below is what tells whether the graph is right.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                tuple(sample[name] for name in names),
                str(path),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    onnx.checker.check_model(str(path))
    model.eval()
    return names


def quantize_int8(source: Path, target: Path) -> None:
    # ONNX Runtime logs advice to run its pre-processing first on the root logger; the accuracy check below is what
    # decides whether the graph is good enough, so the advice is kept off the command's output. Its `logging.warning`
    # also gave the root logger a handler for the rest of the process (`basicConfig`): every later warning of every
    # library, and the user's own loggers in a notebook, then printed as `WARNING:name:...`. The root is put back.
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        import_onnxruntime()  # its telemetry off, before the quantizer imports it
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def logits_of(model, tokenizer, texts, pairs, args, desc: str) -> np.ndarray:
    """The parity check's logits, with a bar: on a whole validation file each pass takes minutes on a CPU."""
    return predict_logits(
        model, tokenizer, texts, pairs, batch_size=args.per_device_eval_batch_size, max_length=args.max_seq_length,
        desc=desc,
    )  # fmt: skip


def accuracy(logits: np.ndarray, references: list[int], problem_type: str) -> float:
    return float(np.mean(predicted_labels(logits, problem_type) == np.asarray(references)))


def agreement(a: np.ndarray, b: np.ndarray, problem_type: str) -> float:
    """Share of rows on which two sets of logits predict the same label(s)."""
    same = predicted_labels(a, problem_type) == predicted_labels(b, problem_type)
    return float(np.mean(same.all(axis=-1) if same.ndim > 1 else same))


def speed_table(models: dict, tokenizer, texts: list[str], pairs, max_length: int) -> dict:
    """samples/s of each model at batch 1 and batch 64 on the same rows (`measure_speed`: alternating passes, the
    faster of two kept), plus the thread count both runtimes used."""
    from hf_transfer.core.onnx_model import default_threads

    table = {"threads": default_threads(), "rows": len(texts)}
    # Tens of seconds at batch 1 that printed nothing: a bar counts the timed passes (each model twice or more).
    with progress_bar(desc=f"timing at batch 1 and 64 ({len(texts)} rows)", unit="pass") as bar:
        for batch in (1, 64):
            speeds, _ = measure_speed(
                {name: (model, tokenizer) for name, model in models.items()},
                texts,
                pairs,
                batch_size=batch,
                max_length=max_length,
                on_pass=bar.update,
            )
            table[f"batch_{batch}"] = {name: round(value, 2) for name, value in speeds.items()}
    return table
