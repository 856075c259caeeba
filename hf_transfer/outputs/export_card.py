"""The card of a folder written by `hf-transfer export`: the facts of the model it came from (when hf-transfer made
it), how it was exported (exporter, opset, quantization), the parity checks it passed and its measured speed; and the
results of the exported graph itself when it was scored on a validation file."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.core.folders import LINEAR_PROBE_RECORD
from hf_transfer.core.markdown import label_list
from hf_transfer.core.run_records import is_hub_id, recorded_config
from hf_transfer.outputs.card_data import CardData, _scalar_metrics, _versions, load_card_data
from hf_transfer.outputs.provenance import base_model_facts, shown_name

_RUNTIMES = {"pytorch": "PyTorch fp32", "onnx_fp32": "ONNX fp32", "onnx_int8": "ONNX int8"}


def export_tags(export: dict | None) -> list[str]:
    if not export:
        return []
    return ["onnx"] + (["int8"] if export.get("quantization") else [])


def _parity_rows(parity: dict) -> list[tuple[str, str]]:
    rows = [
        (
            "fp32 parity",
            f"max |Δlogit| {parity['fp32_max_abs_logit_diff']:.1e} against PyTorch on {parity['rows']:,} rows of "
            f"{parity['rows_from']} (allowed: {parity['max_abs_logit_diff_allowed']:g})",
        )
    ]
    if "int8_agreement" not in parity:
        return rows
    text = (
        f"max |Δlogit| {parity['int8_max_abs_logit_diff']:.1e}; same prediction as PyTorch on "
        f"{parity['int8_agreement']:.2%} of the rows"
    )
    if parity.get("int8_accuracy_checked"):
        text += (
            f"; accuracy {parity['int8_accuracy']:.4f} vs PyTorch {parity['pytorch_accuracy']:.4f} "
            f"({0.0 - parity['int8_accuracy_drop_points']:+.2f} points; allowed drop: "
            f"{parity['max_accuracy_drop_points']:g})"
        )
    else:
        text += "; accuracy not measured here (`hf-transfer evaluate` scores the graph on labelled rows)"
    return rows + [("int8 parity", text)]


def export_fields(export: dict | None) -> dict:
    """The template's variables for the export section (empty when the folder is not an export)."""
    if not export:
        return {"export_rows": [], "speed_columns": [], "speed_rows": [], "speed_note": "", "onnx_file": ""}
    files = export["files"]
    rows = [
        ("format", f"ONNX, opset {export['opset']}, inputs {', '.join(export['inputs'])}, dynamic batch and sequence"),
        ("exporter", export["exporter"]),
        ("exported from", f"`{shown_name(export['source'])}` ({export['source_kind']})"),
        ("files", ", ".join(f"`{name}` ({kind})" for kind, name in files.items() if name)),
        ("quantization", export.get("quantization") or "none (fp32)"),
        ("max_seq_length", str(export.get("max_seq_length"))),
        *_parity_rows(export["parity"]),
    ]
    speed = export["speed"]
    names = [name for name in _RUNTIMES if name in speed["batch_1"]]
    shipped = "onnx_int8" if "onnx_int8" in names else "onnx_fp32"
    columns = ["batch", *[_RUNTIMES[name] for name in names], f"{_RUNTIMES[shipped]} / PyTorch fp32"]
    speed_rows = []
    for batch in (1, 64):
        row = speed[f"batch_{batch}"]
        ratio = f"{row[shipped] / row['pytorch']:.2f}×"
        speed_rows.append([str(batch), *[f"{row[name]:.1f}" for name in names], ratio])
    distinct = speed.get("distinct_rows")
    repeated = f" (the {distinct} parity rows, repeated)" if distinct and distinct < speed["rows"] else ""
    timed = f"{speed['rows']} rows{repeated}"
    note = f"{speed['threads']} intra-op thread(s) in both runtimes, {timed}, the faster of two passes"
    return {
        "export_rows": rows,
        "speed_columns": columns,
        "speed_rows": speed_rows,
        "speed_note": note,
        "onnx_file": files.get("int8") or files["fp32"],
    }


def export_summary(c: CardData, summary: str) -> str:
    """The card's opening lines: for an export, what the folder holds, after what the source's card said of how the
    model was made (or, for a model hf-transfer did not make, instead of it)."""
    export = c.export
    if not export:
        return summary
    graph = "ONNX with int8 weights" if export.get("quantization") else "ONNX (fp32)"
    kind = "multi-label" if c.multi_label else f"{len(c.label_names)}-class"
    held = f"This folder holds it as {graph}, exported with hf-transfer export and checked against PyTorch."
    if export.get("source_card"):
        metric, value = c.headline_metric()
        if not (metric and export.get("validation_report")):
            return f"{summary} {held}"
        graph_name = "int8" if export.get("quantization") else "fp32"
        return (
            f"{summary} {held} Validation {metric.replace('_', ' ')} of the exported {graph_name} graph: {value:.4f}."
        )
    # An LP-FT run's linear probe keeps no card of its own (the run's folder, above it, has the run's).
    whose = "the linear probe of an LP-FT run, whose card is the run's" if export.get("linear_probe") else None
    text = (
        f"A {kind} text classifier ({label_list(c.label_names)}) as {graph}, exported with hf-transfer export from "
        f"`{shown_name(export['source'])}` ({whose or 'a model hf-transfer did not train'}) and checked against "
        "PyTorch."
    )
    metric, value = c.headline_metric()
    return text + (f" Validation {metric.replace('_', ' ')}: {value:.4f}." if metric else "")


def export_card_data(source: str, record: dict, model_name: str, validation_file: str | None) -> CardData:
    """Card data of an exported folder: what the source's card said about how the model was made, the export, and
    the exported graph's own results on the validation file (the int8 graph's when there is one)."""
    export = record["export"]
    inherited = load_card_data(source) if Path(str(source)).is_dir() else None
    c = inherited or CardData()
    c.model_name, c.repo_id, c.local_path, c.task = model_name, None, None, "export"  # a folder of its own
    probe = inherited is None and (Path(str(source)) / LINEAR_PROBE_RECORD).is_file()
    if inherited is None:
        name = str(export["source"])  # as given: a Hub id read from its cache folder (`source`) stays that id
        trained = recorded_config(source) if probe else {}  # the LP-FT run's settings: its base
        name = str(trained.get("base_model_hub_id") or trained.get("model_name_or_path") or name)
        c.base_model = name if is_hub_id(name) else None
        c.base_model_is_hub_id = c.base_model is not None
        facts = base_model_facts([name])
        c.license, c.language = facts.get("license"), facts.get("language")
        c.data_source = (
            "the LP-FT run's training data (see its card)"
            if probe
            else "not recorded: the exported model was not trained with hf-transfer"
        )
        c.eval_dataset = "no data recorded"
        export = {**export, "linear_probe": True} if probe else export
    c.label_names = list(record["label_names"])
    c.problem_type = record["problem_type"]
    if export.get("text_pair_column_name") and not c.columns.get("text_pair"):  # a source without card data
        c.columns = {**c.columns, "text": export.get("text_column_name"), "text_pair": export["text_pair_column_name"]}
    c.export = {**export, "source_card": inherited is not None}
    c.max_seq_length = export.get("max_seq_length")
    graph = "int8" if export.get("quantization") else "fp32"
    report = export.get("validation_report")
    if report:
        c.metrics, c.test_metrics = _scalar_metrics(report), {}
        c.confusion_matrix = report.get("confusion_matrix")
        name = Path(str(validation_file)).name
        c.eval_hub_dataset, c.eval_files = None, {"validation": name}  # export's own file, not the training data's
        c.eval_dataset = f"{report['samples']:,} rows of `{name}`, scored with the exported {graph} graph"
    elif graph == "int8":
        c.metrics, c.test_metrics, c.confusion_matrix = {}, {}, None
        c.eval_dataset = (
            "no data: the int8 graph's accuracy was not measured at export (`hf-transfer evaluate` scores it)"
        )
    c.versions = {**_versions(), **_runtime_versions()}
    return c


def _runtime_versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("onnx", "onnxruntime"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
