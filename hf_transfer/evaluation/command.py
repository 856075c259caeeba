"""`hf-transfer evaluate`: score a classifier (a model folder, a Hub id, an adapter folder or an exported ONNX
folder) on a labelled file and on any number of extra sets, every set read and label-aligned before the model
loads."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.adapters.inference import (
    check_input_length,
    default_trained_columns,
    load_inference_model,
    resolve_inference_model,
    resolve_max_seq_length,
)
from hf_transfer.core.eval_sets import (
    headline_accuracy,
    left_out_warning,
    prepare_eval_sets,
    reports_markdown,
    rows_left_out,
    scalars,
    score_set,
)
from hf_transfer.core.folders import write_json, write_text_atomic, written_together
from hf_transfer.evaluation.arguments import EvaluateArguments
from hf_transfer.outputs.plots import (
    confusion_paths,
    label_f1_path,
    pictures_summary,
    save_label_f1,
    write_confusion_matrices,
)


def run_evaluate(args: EvaluateArguments) -> dict:
    """Score the model on validation_file and every extra_eval set; every set is read before the model is loaded."""

    source = resolve_inference_model(
        args.model_name_or_path,
        args.base_model_name_or_path,
        onnx_file=args.onnx_file,
        command="evaluate",
        revision=args.model_revision,
    )
    # The columns the model was trained with, when the file has them; a pair model's checked.
    default_trained_columns(source, args, args.validation_file, check_as=args.model_name_or_path)
    args.max_seq_length = resolve_max_seq_length(source, args.max_seq_length)  # the trained length by default
    model_names = source.label_names
    sets = prepare_eval_sets(args, model_names, source.problem_type)
    check_input_length(source, args.max_seq_length, any(data.pairs is not None for data in sets))
    model, tokenizer = load_inference_model(source, on_gpu=True)
    reports = {data.name: score_set(model, tokenizer, data, model_names, args) | rows_left_out(data) for data in sets}
    main = reports[args.validation_name]
    table = reports_markdown(reports, model_names, args.output_file and Path(args.output_file).name)
    if args.output_file:
        out = Path(args.output_file)
        pictures = [label_f1_path(out, name, args.validation_name) for name in reports]
        with written_together(args.written_files() + pictures):
            _write(args, out, reports, table, sets, model_names)
    result = {"model": f"{args.model_name_or_path} ({source.describe()})", **scalars(main)}  # which graph, for ONNX
    accuracy = "accuracy" if "accuracy" in main else "subset_accuracy"
    for name, report in list(reports.items())[1:]:
        result.update({f"{name}_{accuracy}": headline_accuracy(report), f"{name}_f1_macro": report["f1_macro"]})
    if args.output_file:
        result["metrics_file"] = str(out)
        shown = [confusion_paths(out, None if name == args.validation_name else name)[1] for name in reports]
        shown += [label_f1_path(out, name, args.validation_name) for name in reports]
        result.update(pictures_summary(*shown))
    if len(reports) > 1:
        result["table"] = table
    warning = left_out_warning(sets)  # the rows each set's scores do not count
    if warning:
        result["warning"] = warning
    return result


def _write(args: EvaluateArguments, out: Path, reports: dict, table: str, sets, model_names: list[str]) -> None:
    """The metrics JSON, the Markdown table beside it, and each set's confusion matrix (or F1 per label)."""
    main = reports[args.validation_name]
    # The main set's report stays at the top level, as before extra sets existed; every set is under `sets`.
    write_json(out, {**main, "sets": reports} if len(reports) > 1 else main)
    write_text_atomic(out.with_suffix(".md"), table)
    titles = {data.name: f"{data.name}: {Path(data.path).name}" for data in sets}
    titles[args.validation_name] = Path(args.validation_file).name
    if "confusion_matrix" in main:  # single-label; a multi-label report has F1 per label instead
        write_confusion_matrices(reports, model_names, out, args.validation_name, titles)
    else:
        for name, report in reports.items():
            save_label_f1(report, model_names, label_f1_path(out, name, args.validation_name), titles[name])
