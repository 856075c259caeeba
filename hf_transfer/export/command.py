"""`hf-transfer export DIR --format onnx [--quantize int8]`: the classifier in DIR (an adapter through its merged
model) as an ONNX graph, checked against PyTorch before anything is kept: every logit within `max_abs_logit_diff`
(fp32), accuracy within `max_accuracy_drop` points on the validation file (int8). The folder is built under a
temporary name beside `output_dir` and renamed only once it is complete; a failed check leaves nothing behind."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from hf_transfer import __version__
from hf_transfer.adapters.inference import (
    PAIR_COLUMN,
    InferenceSource,
    check_given_pair,
    check_input_length,
    default_trained_columns,
    load_inference_model,
    resolve_inference_model,
    resolve_max_seq_length,
    trained_pair_column,
    trained_text_column,
)
from hf_transfer.adapters.peft_model import check_mergeable, merge_into_base
from hf_transfer.core.arguments import EvalSet
from hf_transfer.core.eval_sets import PreparedEvalSet, prepare_eval_set
from hf_transfer.core.folders import ONNX_FILE, ONNX_INT8_FILE, RUN_RECORD_FILE, staged_output_dir, write_json
from hf_transfer.core.inference import cap_model_max_length
from hf_transfer.core.metrics import classification_metrics
from hf_transfer.core.models import onnx_export_error
from hf_transfer.core.onnx_model import OnnxClassifier
from hf_transfer.core.runtime import check_installed
from hf_transfer.core.tasks import MULTI_LABEL, predicted_labels
from hf_transfer.errors import ConfigError, HfTransferError, one_line
from hf_transfer.export.arguments import ExportArguments
from hf_transfer.export.onnx import (
    EXPORTER,
    QUANTIZER,
    SAMPLE_PAIRS,
    SAMPLE_TEXTS,
    accuracy,
    agreement,
    export_onnx,
    logits_of,
    quantize_int8,
    speed_table,
)
from hf_transfer.outputs.cards import write_model_card
from hf_transfer.outputs.export_card import export_card_data
from hf_transfer.outputs.plots import pictures_summary, save_confusion_matrix

logger = logging.getLogger(__name__)


class ParityError(HfTransferError):
    """The exported graph does not compute what the PyTorch model computes closely enough: nothing is written."""


def _preflight(args: ExportArguments) -> tuple[InferenceSource, PreparedEvalSet | None, dict]:
    check_installed("hf-transfer export", "export", "onnx", "onnxruntime")
    source = resolve_inference_model(
        args.model_dir, args.base_model_name_or_path, command="export", revision=args.model_revision
    )
    if source.kind == "onnx":
        raise onnx_export_error(args.model_dir)
    if source.kind == "adapter":
        check_mergeable(source.name_or_path, "export")  # a Hub id: its snapshot folder
    args.max_seq_length = resolve_max_seq_length(source, args.max_seq_length)  # the trained length by default
    # A pair model's parity and accuracy are measured on pairs (they were measured on the first texts alone), and the
    # exported folder records its pair column, so predict and evaluate ask for it wherever the folder goes.
    default_trained_columns(source, args, args.validation_file)  # the trained pair columns, when the file has them
    trained = trained_pair_column(source)
    text_column = trained_text_column(source) if trained.get(PAIR_COLUMN) else None
    if text_column:  # for the card's predict line and refusals
        trained = {**trained, "text_column_name": text_column}
    if args.validation_file or args.text_pair_column_name:
        check_given_pair(trained, args.text_pair_column_name, args.model_dir)
    data = None
    if args.validation_file and source.problem_type == MULTI_LABEL:
        raise ConfigError(
            f"{args.model_dir!r} is a multi-label model and export checks accuracy on single-label data only; leave "
            "validation_file out (the logits are then checked on built-in sample texts)."
        )
    if args.validation_file:
        data = prepare_eval_set(EvalSet(args.validation_name, args.validation_file), args, source.label_names)
    pair = data.pairs is not None if data else bool(trained.get(PAIR_COLUMN))
    # The length the graph is checked, timed and recorded at is what the model can embed, as `train` lowers it: the
    # given one went into the run record and the card's quick start, whose `max_length` then failed in ONNX Runtime.
    usable, limit = check_input_length(source, args.max_seq_length, pair)
    if usable < args.max_seq_length:
        logger.warning("max_seq_length %d is more than %s; exporting with %d.", args.max_seq_length, limit, usable)
        args.max_seq_length = usable
    return source, data, trained


def _pytorch_model(source: InferenceSource):
    model, tokenizer = load_inference_model(source)
    if source.kind == "adapter":
        try:
            model = merge_into_base(model).eval()
        except (ValueError, RuntimeError, TypeError, AttributeError, NotImplementedError) as err:
            raise ConfigError(
                f"cannot merge the adapter in {source.name_or_path!r} into its base, which export needs: "
                f"{one_line(err)}. Export a model trained without an adapter, or one saved with merge_adapter: true."
            ) from None
    model.config.architectures = [type(model).__name__]
    return model, tokenizer


def _check_fp32(args, ref, got, rows: int, where: str) -> float:
    diff = float(abs(ref - got).max()) if rows else 0.0
    if diff > args.max_abs_logit_diff:
        raise ParityError(
            f"the ONNX graph's logits differ from PyTorch's by up to {diff:.2e} on {rows} rows of {where.strip('`')}, "
            "more than "
            f"max_abs_logit_diff {args.max_abs_logit_diff:g}; nothing was written. Try another --opset."
        )
    return diff


def _check_int8(args, data: PreparedEvalSet | None, ref, got, problem_type: str) -> dict:
    parity = {
        "int8_max_abs_logit_diff": float(abs(ref - got).max()),
        "int8_agreement": agreement(ref, got, problem_type),
    }
    if data is None:
        parity["int8_accuracy_checked"] = False
        return parity
    before, after = accuracy(ref, data.references, problem_type), accuracy(got, data.references, problem_type)
    drop = 100 * (before - after)
    parity.update(pytorch_accuracy=before, int8_accuracy=after, int8_accuracy_drop_points=drop)
    parity.update(int8_accuracy_checked=True, max_accuracy_drop_points=args.max_accuracy_drop)
    if drop > args.max_accuracy_drop:
        rows = len(data.references)
        right = (
            f"{round(after * rows)} of {rows} rows right against {round(before * rows)}; one row is {100 / rows:.2f}"
        )
        raise ParityError(
            f"the int8 graph's accuracy on {args.validation_file!r} is {after:.4f}, {drop:.2f} points below PyTorch's "
            f"{before:.4f} ({right} points) and max_accuracy_drop is {args.max_accuracy_drop:g}; nothing was written. "
            f"Export without --quantize, or accept this drop with --max_accuracy_drop {math.ceil(drop * 10) / 10:g} "
            "(checked on a larger validation file if this one is small)."
        )
    return parity


def _build(args: ExportArguments, source: InferenceSource, data: PreparedEvalSet | None, trained: dict,
           folder: Path) -> dict:  # fmt: skip
    model, tokenizer = _pytorch_model(source)
    problem_type = source.problem_type
    if data:
        texts, pairs, where = data.texts, data.pairs, f"`{Path(args.validation_file).name}`"
    elif trained.get(PAIR_COLUMN):
        texts, pairs, where = SAMPLE_TEXTS, SAMPLE_PAIRS, "built-in sample text pairs"
    else:
        texts, pairs, where = SAMPLE_TEXTS, None, "built-in sample texts"
    input_names = export_onnx(model, tokenizer, folder / ONNX_FILE, args.opset)
    fp32 = OnnxClassifier(folder / ONNX_FILE, model.config)
    ref = logits_of(model, tokenizer, texts, pairs, args, "parity: pytorch")
    got = logits_of(fp32, tokenizer, texts, pairs, args, "parity: onnx fp32")
    parity = {"rows": len(texts), "rows_from": where, "max_abs_logit_diff_allowed": args.max_abs_logit_diff}
    parity["fp32_max_abs_logit_diff"] = _check_fp32(args, ref, got, len(texts), where)
    models = {"pytorch": model, "onnx_fp32": fp32}
    deployed = got
    if args.quantize == "int8":
        quantize_int8(folder / ONNX_FILE, folder / ONNX_INT8_FILE)
        models["onnx_int8"] = OnnxClassifier(folder / ONNX_INT8_FILE, model.config)
        deployed = logits_of(models["onnx_int8"], tokenizer, texts, pairs, args, "parity: onnx int8")
        parity.update(_check_int8(args, data, ref, deployed, problem_type))
    speed_texts = [texts[i % len(texts)] for i in range(args.speed_samples)]
    speed_pairs = None if pairs is None else [pairs[i % len(pairs)] for i in range(args.speed_samples)]
    speed = speed_table(models, tokenizer, speed_texts, speed_pairs, args.max_seq_length)
    speed["distinct_rows"] = min(len(texts), args.speed_samples)  # the parity rows, repeated up to speed_samples
    model.config.save_pretrained(folder)
    cap_model_max_length(model.config, tokenizer)
    tokenizer.save_pretrained(folder)
    report = None
    if data is not None and problem_type != MULTI_LABEL:
        report = classification_metrics(predicted_labels(deployed, problem_type), data.references, source.label_names)
        report["samples"] = len(data.references)
    return {
        "format": args.format,
        "exporter": EXPORTER,
        "opset": args.opset,
        "inputs": input_names,
        "dynamic_axes": ["batch", "sequence"],
        "files": {"fp32": ONNX_FILE, "int8": ONNX_INT8_FILE if args.quantize else None},
        "quantization": QUANTIZER if args.quantize else None,
        "source": str(args.model_dir),
        "source_kind": "adapter, merged into its base" if source.kind == "adapter" else "model",
        "max_seq_length": args.max_seq_length,
        **trained,
        "parity": parity,
        "speed": speed,
        "validation_report": report,
    }


def run_export(args: ExportArguments) -> dict:
    source, data, trained = _preflight(args)
    out = Path(args.output_dir)
    with staged_output_dir(out, "export") as building:
        export = _build(args, source, data, trained, building)
        record = {
            "hf_transfer_version": __version__,
            "task": "export",
            "label_names": source.label_names,
            "problem_type": source.problem_type,
            "export": export,
        }
        write_json(building / RUN_RECORD_FILE, record)
        report = export["validation_report"]
        if report is not None:  # the deployed graph's decisions on validation_file, as train and evaluate draw them
            title = f"{'ONNX int8' if args.quantize else 'ONNX fp32'}, {Path(args.validation_file).name}"
            paths = building / "confusion_matrix.json", building / "confusion_matrix.png"
            save_confusion_matrix(report["confusion_matrix"], source.label_names, *paths, title=title)
        write_model_card(building, export_card_data(source.name_or_path, record, out.name, args.validation_file))
    return _summary(export, out, source.problem_type)


def _summary(export: dict, out: Path, problem_type: str | None) -> dict:
    parity, speed = export["parity"], export["speed"]
    summary = {"output_dir": str(out), "files": ", ".join(f for f in export["files"].values() if f)}
    summary["parity_rows"] = f"{parity['rows']} ({parity['rows_from']})"
    summary["fp32_max_abs_logit_diff"] = f"{parity['fp32_max_abs_logit_diff']:.2e}"
    for key in ("pytorch_accuracy", "int8_accuracy", "int8_accuracy_drop_points", "int8_agreement"):
        if key in parity:
            summary[key] = parity[key]
    fastest = "onnx_int8" if "onnx_int8" in speed["batch_1"] else "onnx_fp32"
    for batch in (1, 64):
        row = speed[f"batch_{batch}"]
        summary[f"samples_per_s_batch_{batch}"] = ", ".join(f"{name} {value:.1f}" for name, value in row.items())
        speedup = f"{row[fastest] / row['pytorch']:.2f}x ({fastest} vs pytorch fp32)"
        if fastest == "onnx_int8" and "onnx_fp32" in row:  # what quantizing itself gained, not only leaving PyTorch
            speedup += f"; {row['onnx_int8'] / row['onnx_fp32']:.2f}x (onnx_int8 vs onnx_fp32)"
        summary[f"speedup_batch_{batch}"] = speedup
    summary.update(pictures_summary(out / "confusion_matrix.png"))
    if export["quantization"] and not parity.get("int8_accuracy_checked"):
        how = (  # export checks single-label data only: a multi-label graph is scored by evaluate
            f"score it with hf-transfer evaluate --model_name_or_path {out} --validation_file FILE"
            if problem_type == MULTI_LABEL
            else "give --validation_file (labelled rows) to measure it"
        )
        summary["warning"] = (
            f"the int8 graph's accuracy was not checked: {how}; only its agreement with PyTorch on "
            f"{parity['rows_from']} was ({parity['int8_agreement']:.2%})."
        )
    return summary
