"""`hf-transfer merge`: WiSE-FT weight interpolation between a pretrained model and a classifier fine-tuned from it
(or a PEFT adapter trained on it), at one α or at the α of a sweep that scores best on validation data, with extra
(shifted) sets scored at every α. `output_dir` is written only once every α is evaluated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hf_transfer import __version__
from hf_transfer.core.eval_sets import left_out_warning, reports_markdown, rows_left_out, scalars, score_set
from hf_transfer.core.folders import (
    CARD_DATA_FILE,
    CONFIG_FILE,
    RUN_RECORD_FILE,
    cache_snapshot,
    staged_output_dir,
    write_json,
)
from hf_transfer.core.inference import cap_model_max_length
from hf_transfer.core.markdown import table_row
from hf_transfer.core.models import stored_half_dtype
from hf_transfer.core.run_records import is_hub_id, recorded_config
from hf_transfer.core.runtime import progress_bar
from hf_transfer.core.tasks import METRIC_NAMES
from hf_transfer.merge.arguments import MergeArguments
from hf_transfer.merge.interpolation import SELECTION_RULE, choose_alpha
from hf_transfer.merge.interpolator import Interpolator, _Preflight, _preflight
from hf_transfer.outputs.cards import write_model_card
from hf_transfer.outputs.merge_card import EVAL_JSON, EVAL_MD, SWEEP_JSON, merge_card_data
from hf_transfer.outputs.plots import confusion_paths, pictures_summary, plot_alpha_sweep, write_confusion_matrices
from hf_transfer.outputs.run_folder import resolved_config, write_resolved_config

SWEEP_PNG = "merge_sweep.png"


def _sweep(args: MergeArguments, pre: _Preflight, interpolator: Interpolator) -> dict[float, dict[str, dict]]:

    results = {}
    bar = progress_bar(args.alpha_grid, desc="α sweep", unit="α")
    for alpha in bar:
        model = interpolator.load(alpha)
        results[alpha] = {}
        for data in pre.sets:
            report = score_set(model, pre.tokenizer, data, pre.label_names, args, progress=False)
            results[alpha][data.name] = report | rows_left_out(data)
        bar.set_postfix({args.validation_name: f"{results[alpha][args.validation_name]['accuracy']:.4f}"})
    return results


def sweep_rows(results: dict[float, dict[str, dict]], extra: list[str]) -> list[dict]:
    rows = []
    for alpha, reports in results.items():
        row = {
            "alpha": alpha,
            **{name: {k: r[k] for k in ("accuracy", "f1_macro", "samples")} for name, r in reports.items()},
        }
        for metric in ("accuracy", "f1_macro") if extra else ():
            row[f"mean_extra_{metric}"] = sum(reports[n][metric] for n in extra) / len(extra)
        rows.append(row)
    return rows


def sweep_markdown(
    rows: list[dict], names: list[str], extra: list[str], chosen: float | None, metric: str = "accuracy"
) -> str:
    """The sweep's `metric` (the one α is chosen on) per set and α; other than accuracy, it is named in the header."""
    named = [f"{n} {METRIC_NAMES[metric]}" for n in names] if metric != "accuracy" else names
    columns = [*named] + (["mean of extra sets"] if extra else [])
    lines = [table_row(["α", *columns]), "|---:|" + "---:|" * len(columns)]
    for row in rows:
        mark = " (chosen)" if row["alpha"] == chosen else ""
        cells = [f"{row[n][metric]:.4f}" for n in names]
        cells += [f"{row[f'mean_extra_{metric}']:.4f}"] if extra else []
        lines.append(f"| {row['alpha']:g}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_merge(args: MergeArguments) -> dict:
    pre = _preflight(args)
    interpolator = Interpolator(args, pre)
    results = _sweep(args, pre, interpolator) if pre.sets else {}
    names = [data.name for data in pre.sets]
    extra = names[1:]
    if results and len(args.alpha_grid) > 1:
        scores = {alpha: reports[args.validation_name][args.selection_metric] for alpha, reports in results.items()}
        metric = METRIC_NAMES[args.selection_metric]  # macro-F1, as the sweep table says
        chosen, chosen_by = choose_alpha(scores), SELECTION_RULE.format(metric=metric)
    else:
        only = "given (--alpha)" if args.alpha is not None else "given (the one α of --alphas: nothing to choose from)"
        chosen, chosen_by = args.alpha_grid[0], only
    rows = sweep_rows(results, extra)
    table = sweep_markdown(rows, names, extra, chosen, args.selection_metric) if rows else ""
    model = interpolator.load(chosen)
    out = Path(args.output_dir)
    with staged_output_dir(out, "merge") as building:  # nothing half-written if the writing fails
        _write_folder(args, pre, interpolator, model, results, rows, chosen, chosen_by, out, building)
    summary: dict[str, Any] = {"alpha": chosen, "alphas_evaluated": len(results), "method": interpolator.method}
    for name, report in (results.get(chosen) or {}).items():
        summary[f"{name}_accuracy"] = report["accuracy"]
        summary[f"{name}_f1_macro"] = report["f1_macro"]
    summary["output_dir"] = str(out)
    sets = [None if name == args.validation_name else name for name in (results.get(chosen) or {})]
    shown = [out / SWEEP_PNG, *(confusion_paths(out / EVAL_JSON, name)[1] for name in sets)]
    summary.update(pictures_summary(*shown))
    if table:
        summary["table"] = table
    warning = left_out_warning(pre.sets)  # the rows each set's scores do not count
    if warning:
        summary["warning"] = warning
    return summary


def _base_model(args: MergeArguments) -> str:
    """The pretrained model's Hub id when known: given, or recorded by the fine-tuning run that started from it."""

    if args.base_model_hub_id or is_hub_id(args.pretrained):
        return args.base_model_hub_id or args.pretrained
    if snapshot := cache_snapshot(args.pretrained):  # a Hub model's cache folder: its id
        return snapshot[0]
    # Only when the fine-tuned run started from this very folder: two few-shot models of one base merged, the α = 0
    # end is the other model, not the base the fine-tuned model names.
    started = recorded_config(args.finetuned).get("model_name_or_path")
    if not started or Path(str(started)).expanduser().resolve() != Path(args.pretrained).expanduser().resolve():
        return args.pretrained
    card = Path(args.finetuned) / CARD_DATA_FILE
    recorded = json.loads(card.read_bytes()).get("base_model") if card.is_file() else None
    return recorded if is_hub_id(recorded) else args.pretrained


# How the fine-tuned run read its data, which a model merged from it reads the same way.
TRAINED_READING = ("text_column_name", "label_column_name", "label_mapping")


def _write_folder(args, pre: _Preflight, interpolator, model, results, rows, chosen, chosen_by, out: Path, building):
    """Everything `merge` leaves, written into `building`, the staged folder that becomes `out` at the end."""
    # θ(α) is computed (and scored) in fp32; an fp16 or bf16 fine-tuned model is saved back in its own dtype, which
    # fp32 doubled the size of. An adapter's merge is the pretrained model plus α times the update: saved in the
    # pretrained model's dtype (an fp32 base keeps fp32 whatever the adapter's dtype: nothing to shrink back to).
    adapter = pre.adapter is not None
    dtype_owner, dtype_folder = ("pretrained", args.pretrained) if adapter else ("fine-tuned", args.finetuned)
    saved_dtype = stored_half_dtype(dtype_folder, args.pretrained_revision if adapter else "main")
    if saved_dtype:
        model.to(getattr(torch, saved_dtype))
    model.save_pretrained(building)
    if saved_dtype:  # stored in half, loaded as scored (fp32): with the config's half dtype, which transformers 5
        config = json.loads((building / "config.json").read_bytes())  # loads, pipeline() and AutoModel moved labels
        write_json(building / "config.json", {**config, "dtype": "float32"})
    cap_model_max_length(model.config, pre.tokenizer)
    pre.tokenizer.save_pretrained(building)
    reports = results.get(chosen) or {}
    names = [data.name for data in pre.sets]
    merge = {
        "alpha": chosen,
        "chosen_by": chosen_by,
        "selection_metric": args.selection_metric if len(results) > 1 else None,
        "alphas": args.alpha_grid,
        "pretrained": args.pretrained,
        "pretrained_revision": None if args.pretrained_revision == "main" else args.pretrained_revision,
        "finetuned": args.finetuned,
        "finetuned_kind": "adapter" if pre.adapter is not None else "model",
        "head_init": args.head_init,
        "method": interpolator.method,
        "saved_dtype": f"{saved_dtype} (the {dtype_owner} model's; θ(α) computed in float32)" if saved_dtype else None,
        "head": "interpolated with head_init" if args.head_init else "the fine-tuned head at every α",
        # head_init's label names when its label rows were reordered to the fine-tuned order
        "head_init_labels": pre.head_start.labels if pre.head_start else None,
        "head_init_zero_bias": list(pre.head_start.zero) if pre.head_start else [],
        "unused_head": pre.unused_head,  # why a pretrained classifier's head is not used
        **interpolator.plan.as_record(),
        "validation_set": args.validation_name if names else None,
        "extra_sets": names[1:],
        "sweep": rows,
    }
    if rows:
        sweep = {"rule": chosen_by, "chosen_alpha": chosen, "validation_set": args.validation_name, "rows": rows}
        write_json(building / SWEEP_JSON, {**sweep, "files": {d.name: d.path for d in pre.sets}})
        if len(rows) > 1:
            plot_alpha_sweep(rows, names, args.validation_name, chosen, building / SWEEP_PNG, args.selection_metric)
    if reports:
        write_json(building / EVAL_JSON, reports)
        (building / EVAL_MD).write_text(reports_markdown(reports, pre.label_names, EVAL_JSON), encoding="utf-8")
        titles = {d.name: f"{d.name}: {Path(d.path).name} (α={chosen:g})" for d in pre.sets}
        write_confusion_matrices(reports, pre.label_names, building / EVAL_JSON, args.validation_name, titles)
        main = scalars(reports[args.validation_name])
        write_json(building / "eval_results.json", {f"eval_{k}": v for k, v in main.items()})
    record = {
        "hf_transfer_version": __version__,
        "task": "merge",
        "base_model": _base_model(args),
        "label_names": pre.label_names,
        "problem_type": pre.config.problem_type,
        "merge": merge,
        "eval_sets": reports,
    }
    write_json(building / RUN_RECORD_FILE, record)
    # The fine-tuned run's columns and label_mapping, where this merge set none: `evaluate` and `predict` read them
    # from the folder (a merged model of identical weights had found no label column, and read ratings as label ids).
    trained = recorded_config(args.finetuned)
    unset = [f for f in TRAINED_READING if getattr(args, f, None) is None]
    inherited = {f: trained[f] for f in unset if trained.get(f) is not None}
    write_resolved_config(building / CONFIG_FILE, args, extra=inherited)
    card_data = merge_card_data(record, resolved_config(args), out, pre.sets)  # named after out
    write_model_card(building, card_data)
