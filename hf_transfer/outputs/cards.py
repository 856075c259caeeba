"""Model cards from `CardData`, through `huggingface_hub.ModelCard.from_template`, merged into any README.md the
folder already holds: generated sections sit between `<!-- hf-transfer:begin NAME -->` and `<!-- hf-transfer:end
NAME -->` and are rewritten; everything else, and YAML keys the user added, survive."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hf_transfer.core.folders import CARD_DATA_FILE
from hf_transfer.outputs.card_data import CardData, detect_adapter
from hf_transfer.outputs.export_card import export_fields, export_summary, export_tags
from hf_transfer.outputs.few_shot_card import few_shot_rows
from hf_transfer.outputs.readme import merge_readme

TEMPLATE = "model_card.md.jinja"
EXAMPLE_TEXT = "I really enjoyed this!"
_METRIC_NAMES = {
    "accuracy": "Accuracy",
    "subset_accuracy": "Subset accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
}


def template_path() -> Path:
    """The source tree's template when running from a checkout, else the copy shipped inside the wheel
    (`hf_transfer.model_cards`). The checkout comes first: an editable install maps the package to one checkout
    only, and a second worktree must render its own templates."""
    source = Path(__file__).resolve().parent.parent / "model_cards" / TEMPLATE
    if source.is_file():
        return source
    return Path(str(resources.files("hf_transfer.model_cards").joinpath(TEMPLATE)))


def _fmt(value, digits: int = 4):
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "" if value is None else value


def _count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def _metric_id(key: str) -> tuple[str, str | None, str]:
    """`f1_macro` -> ("f1", "macro", "F1 (macro)"): a Hub metric type, its config and a display name."""
    for base in ("subset_accuracy", "accuracy", "precision", "recall", "f1"):
        if key == base:
            return base, None, _METRIC_NAMES[base]
        if key.startswith(base + "_"):
            config = key[len(base) + 1 :]
            return base, config, f"{_METRIC_NAMES[base]} ({config})"
    return key, None, key


def eval_results(c: CardData) -> list:
    from huggingface_hub import EvalResult

    dataset = c.datasets[0] if c.datasets else c.data_source_name()
    results = []
    for split, metrics in (("validation", c.metrics), ("test", c.test_metrics)):
        for key, value in metrics.items():
            metric_type, metric_config, metric_name = _metric_id(key)
            results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=dataset,
                    dataset_name=dataset,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_config=metric_config,
                    metric_name=metric_name,
                    metric_value=round(float(value), 4),
                )
            )
    return results


def _freeze_text(freeze: dict) -> str:
    parts = []
    if freeze.get("train_head_only"):
        parts.append("only the task head trained")
    if freeze.get("freeze_embeddings"):
        parts.append("embeddings frozen")
    if freeze.get("freeze_layers") not in (None, 0, []):
        parts.append(f"blocks frozen: {freeze['freeze_layers']} (of {freeze.get('depth')})")
    if freeze.get("freeze_patterns"):
        parts.append(f"parameters matching {freeze['freeze_patterns']} frozen")
    if parts:
        return "; ".join(parts)
    return "nothing for good (see gradual unfreezing)" if freeze.get("gradual_unfreezing") else "nothing frozen"


def _freeze_rows(c: CardData) -> list[tuple[str, str]]:
    f = c.freeze
    if c.merge and not f:  # a merge of a model hf-transfer did not train: how it was trained is unknown
        return []
    trainable, frozen = f.get("trainable_parameters_now", 0), f.get("frozen_parameters_now", 0)
    total = trainable + frozen
    rows = [
        ("frozen", _freeze_text(f)),
        (
            "trainable parameters at the end",
            f"{trainable:,} of {total:,} ({100 * trainable / total:.1f}%)" if total else "unknown",
        ),
        ("never trained (frozen throughout)", _count(f.get("permanently_frozen_parameters", 0))),
    ]
    if f.get("gradual_unfreezing"):
        text = f"one more block from the top every {f['gradual_unfreezing']} epoch(s), the embeddings last"
        if c.unfreezing:
            text += "; trainable parameters by epoch: " + ", ".join(
                f"epoch {_fmt(s['epoch'], 2)}: {s['trainable_parameters']:,}" for s in c.unfreezing
            )
        rows.append(("gradual unfreezing", text))
    else:
        rows.append(("gradual unfreezing", "off"))
    gamma = f.get("layerwise_lr_decay", 1.0)
    llrd = "1.0 (off)" if gamma == 1.0 else f"{gamma} (block l from the top gets lr·γ^l)"
    rows.append(("layer-wise LR decay γ", llrd))
    return rows


def _distill_rows(c: CardData) -> tuple[list, list]:
    d = c.distillation
    if not d:
        return [], []
    rows = [
        ("teacher(s)", ", ".join(f"`{t}`" for t in d.get("teachers") or [])),
        ("α (soft-loss weight)", str(d.get("alpha"))),
        ("temperature T", str(d.get("temperature"))),
        ("loss", "α·T²·KL(teacher ‖ student) + (1−α)·CE; terms used: " + ", ".join(d.get("loss_terms") or [])),
    ]
    if d.get("teacher_weights"):
        rows.append(("teacher weights", str(d["teacher_weights"])))
    if d.get("student_layers"):
        rows.append(("student built from teacher blocks", str(d["student_layers"])))
    transfer = d.get("transfer_set") or {}
    if transfer.get("unlabelled") or transfer.get("augmented"):
        augment = transfer.get("augmentation") or {}
        how = f" ({augment['method']}, p={augment['p']}, {augment['factor']} per row)" if augment else ""
        rows.append(
            ("transfer set", f"{transfer['labelled']:,} labelled rows, {transfer.get('unlabelled', 0):,} unlabelled "
             f"rows, {transfer.get('augmented', 0):,} augmented rows{how}; rows without labels get the soft loss only")
        )  # fmt: skip
    if d.get("hidden_loss_weight"):
        pooling = d.get("hidden_loss_pooling") or "tokens"
        kind = "every token" if pooling == "tokens" else f"normalised {pooling} vectors ({d.get('hidden_targets')})"
        rows.append(
            (
                "hidden-state loss",
                f"{d.get('hidden_loss_type')} of {kind} × {d['hidden_loss_weight']}, map {d.get('layer_map')}",
            )  # fmt: skip
        )
    comparison = []
    if d.get("teacher_eval_accuracy") is not None and d.get("student_eval_accuracy") is not None:
        retention = d.get("retention_percent")
        kept = f"retention {retention:.1f}%" if retention else ""
        metric = d.get("teacher_eval_metric", "accuracy")
        comparison.append((metric, _fmt(d["teacher_eval_accuracy"]), _fmt(d["student_eval_accuracy"]), kept))
    if d.get("teacher_parameters"):
        ratio = d["student_parameters"] / d["teacher_parameters"]
        comparison.append(
            ("parameters", _count(d["teacher_parameters"]), _count(d["student_parameters"]), f"{ratio:.2f}×")
        )
    if d.get("teacher_samples_per_second"):
        comparison.append(
            (
                f"samples/s (batch {d.get('speed_batch_size')}, this machine)",
                str(d["teacher_samples_per_second"]),
                str(d["student_samples_per_second"]),
                f"{d['speedup']:.2f}× faster",
            )
        )
    return rows, comparison


def _adapter_rows(c: CardData) -> list[tuple[str, str]]:
    a = c.adapter
    if not a:
        return []
    names = {
        "method": "method",
        "r": "rank r",
        "lora_alpha": "lora_alpha",
        "dropout": "dropout",
        "target_modules": "target modules",
        "modules_to_save": "also trained and saved",
        "trainable_percent": "trainable parameters (%)",
    }
    rows = [(label, str(a[key])) for key, label in names.items() if a.get(key) not in (None, [], "")]
    rows.append(("saved as", "an adapter (load it with PEFT)" if a.get("in_folder") else "merged into the weights"))
    return rows


def _merge_rows(c: CardData) -> list[tuple[str, str]]:
    m = c.merge
    if not m:
        return []
    base = f"`{c.base_model}`" if c.base_model else f"`{m.get('pretrained')}`"
    kind = "a PEFT adapter, merged" if m.get("finetuned_kind") == "adapter" else "a fine-tuned model"
    rows = [
        ("α", f"{m['alpha']:g}"),
        ("α = 0 (pretrained body)", base),
        ("α = 1 (fine-tuned)", f"`{Path(str(m['finetuned'])).name}` ({kind})"),
        ("how α is applied", str(m.get("method"))),
        ("task head", _head_text(m)),
        ("interpolated tensors", _count(m.get("interpolated_tensors"))),
    ]
    if m.get("copied_buffers"):
        rows.append(("integer buffers (from the fine-tuned model)", ", ".join(m["copied_buffers"])))
    if len(m.get("alphas") or []) > 1:
        rows.append(("α grid", ", ".join(f"{a:g}" for a in m["alphas"])))
    rows.append(("α chosen by", str(m.get("chosen_by"))))
    return rows


def _head_text(m: dict) -> str:
    head = ", ".join(f"`{name}`" for name in m.get("head_tensors") or []) or "none"
    if m.get("head_init"):
        return f"{head}: (1 − α)·head of `{Path(str(m['head_init'])).name}` + α·fine-tuned head"
    return f"{head}: the fine-tuned head at every α (the pretrained model has none)"


def _sweep_table(c: CardData) -> tuple[str, list[str], list[list[str]]]:
    m = c.merge or {}
    rows = m.get("sweep") or []
    if not rows:
        return "", [], []
    names = [m["validation_set"], *(m.get("extra_sets") or [])]
    validation = m["validation_set"]
    columns = ["α", *[f"{n} (validation)" if n == validation != "validation" else n for n in names]]
    columns += ["mean of extra sets"] if m.get("extra_sets") else []
    table = []
    for row in rows:
        chosen = " (chosen)" if row["alpha"] == m["alpha"] else ""
        cells = [f"{row['alpha']:g}{chosen}", *[_fmt(row[n]["accuracy"]) for n in names]]
        cells += [_fmt(row["mean_extra_accuracy"])] if m.get("extra_sets") else []
        table.append(cells)
    note = (
        f"Accuracy of the interpolated model at each α. α was picked on the {validation} set alone "
        f"({m.get('chosen_by')}); the other sets played no part in the choice."
    )
    return note, columns, table


def _recipe_rows(c: CardData) -> list[tuple[str, str]]:
    r = c.recipe or {}
    rows = []
    if r.get("class_weights"):
        weights = ", ".join(f"{name}: {w:.3g}" for name, w in r["class_weights"].items())
        rows.append(("class weights (loss Σ wᵢ·ℓᵢ / Σ wᵢ)", weights))
    if r.get("linear_probe"):
        p = r["linear_probe"]
        accuracy = f", validation accuracy after the probe {p['eval_accuracy']:.4f}" if p.get("eval_accuracy") else ""
        rows.append(
            (
                "LP-FT",
                f"head trained alone for {p['epochs']:g} epoch(s) at lr {p['learning_rate']:g}{accuracy}, then "
                f"fine-tuned from it; the probe model is in `{p['saved_to']}/`",
            )  # fmt: skip
        )
    if r.get("early_stopping"):
        e = r["early_stopping"]
        how = "stopped early" if e["stopped_early"] else "ran to the end"
        rows.append(
            (
                "early stopping",
                f"patience {e['patience']} on {e['metric']}: {how} after {e['epochs_trained']:g} "
                f"epoch(s); kept {e['best_checkpoint']} ({e['metric']} {_fmt(e['best_metric'])})",
            )  # fmt: skip
        )
    if r.get("calibration"):
        k = r["calibration"]
        offsets = ", ".join(f"{name}: {v:+.3f}" for name, v in k["offsets"].items())
        before = k["validation_before"].get("f1_macro")
        after = c.metrics.get("f1_macro")
        moved = f"; validation macro-F1 {_fmt(before)} before, {_fmt(after)} after" if before is not None else ""
        rows.append(
            (
                "decision calibration",
                f"{k['kind']} maximising macro-F1 on {k['calibration_rows']:,} calibration rows "
                f"carved from train, folded into `{k['folded_into']}`: {offsets}{moved}",
            )  # fmt: skip
        )
    return rows


def _hyper_rows(c: CardData) -> list[tuple[str, str]]:
    h = c.hyperparameters
    if c.merge and not h:
        return []
    rows = [(k, str(v)) for k, v in h.items()]
    if "per_device_train_batch_size" in h:
        effective = h["per_device_train_batch_size"] * h.get("gradient_accumulation_steps", 1) * c.world_size
        rows.append(("effective batch size", str(effective)))
    rows += [("mixed precision", c.precision), ("processes", str(c.world_size))]
    return rows


def _epoch_table(c: CardData) -> tuple[list[str], list[list]]:
    keys = ["epoch", "step", "train_loss", "eval_loss"]
    keys += [k for k in ("accuracy", "subset_accuracy", "f1_macro", "f1_micro") if any(k in row for row in c.epochs)]
    headers = [k.replace("_", " ") for k in keys]
    return headers, [[_fmt(row.get(k), 2 if k == "epoch" else 4) for k in keys] for row in c.epochs]


def _data_lines(c: CardData) -> list[str]:
    lines = []
    for split, info in c.splits.items():
        dropped = info.get("dropped") or {}
        text = f"**{split}**: {info['rows']:,} rows"
        if dropped:
            text += (
                f" ({sum(dropped.values()):,} dropped: "
                + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in dropped.items())
                + ")"
            )
        else:
            text += ", none dropped"
        lines.append(text)
    if c.validation_carved:
        lines.append(f"The validation split was carved from train ({c.validation_percentage}%, seeded, stratified).")
    return lines


def _summary(c: CardData) -> str:
    n = len(c.label_names)
    kind = "multi-label" if c.multi_label else f"{n}-class"
    train_rows = c.splits.get("train", {}).get("rows")
    data = f" on {train_rows:,} rows of {c.data_source_name()}" if train_rows else ""
    if c.merge:
        text = f"A {kind} text classifier ({', '.join(c.label_names)}): {c.one_line()}, made with hf-transfer merge."
        metric, value = c.headline_metric()
        if metric:
            text += f" Validation {metric.replace('_', ' ')}: {value:.4f}."
        return text
    text = f"A {kind} text classifier ({', '.join(c.label_names)}): {c.one_line()}, trained with hf-transfer{data}."
    d = c.distillation
    if d:
        text += f" Distillation used α={d.get('alpha')} and T={d.get('temperature')}."
        if d.get("retention_percent") is not None and d.get("speedup"):
            text += (
                f" The student keeps {d['retention_percent']:.1f}% of its teacher's validation "
                f"{d.get('teacher_eval_metric', 'accuracy')} and runs {d['speedup']:.2f}× faster."
            )
    if not c.adapter:
        text += f" Freezing: {_freeze_text(c.freeze)}."
    metric, value = c.headline_metric()
    if metric:
        text += f" Validation {metric.replace('_', ' ')}: {value:.4f}."
    processes = "1 process" if c.world_size == 1 else f"{c.world_size} processes"
    return text + f" Precision {c.precision}, {processes}."


def _intended_use(c: CardData) -> str:
    return (
        f"Classifying text into the labels above ({', '.join(c.label_names)}), for text like the training data "
        f"({c.data_source}). The model was evaluated only on {c.eval_dataset}; it was not tested on other data, so "
        "expect lower accuracy on other domains, styles or label definitions, and measure it on your own data "
        "before relying on it. Any biases of the base model and of the training data carry over."
    )


def build_card(c: CardData, folder: str | Path | None = None):
    """The rendered `ModelCard` (not yet merged with an existing README)."""
    from huggingface_hub import ModelCard, ModelCardData

    tags = ["hf-transfer", "transfer-learning", "text-classification"]
    tags += ["distillation"] if c.distillation else []
    tags += ["model-merging", "wise-ft"] if c.merge else []
    if c.adapter:
        tags += ["peft"] + ([c.adapter["method"]] if c.adapter.get("method") else [])
    tags += export_tags(c.export)
    in_folder = bool(c.adapter and c.adapter.get("in_folder"))
    card_data = ModelCardData(
        base_model=c.base_model if c.base_model_is_hub_id else None,
        datasets=c.datasets or None,
        language=c.language,
        license=c.license,
        library_name="peft" if in_folder else "transformers",
        pipeline_tag="text-classification",
        tags=tags,
        model_name=c.model_name,
        eval_results=eval_results(c) or None,
    )
    repo_id = c.repo_id or c.model_name
    folder = Path(folder) if folder else None
    has_tokenizer = folder is None or (folder / "tokenizer_config.json").is_file()
    distill_rows, comparison_rows = _distill_rows(c)
    sweep_note, sweep_columns, sweep_rows = _sweep_table(c)
    epoch_columns, epoch_table = _epoch_table(c)
    splits = ["validation"] + (["test"] if c.test_metrics else [])
    metric_rows = [
        [_metric_id(k)[2], _fmt(v)] + ([_fmt(c.test_metrics.get(k))] if c.test_metrics else [])
        for k, v in c.metrics.items()
    ]
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_name=c.model_name,
        repo_id=repo_id,
        summary=export_summary(c, _summary(c)),
        quickstart="onnx" if c.export else "peft" if in_folder else "pipeline",
        tokenizer_source=repo_id if has_tokenizer else (c.base_model or repo_id),
        example_text=EXAMPLE_TEXT,
        multi_label=c.multi_label,
        label_names=c.label_names,
        data_source=c.data_source,
        data_lines=_data_lines(c),
        distill_rows=distill_rows,
        comparison_rows=comparison_rows,
        adapter_rows=_adapter_rows(c),
        merge_rows=_merge_rows(c),
        sweep_note=sweep_note,
        sweep_columns=sweep_columns,
        sweep_rows=sweep_rows,
        has_sweep_plot=folder is None or (folder / "merge_sweep.png").is_file(),
        freeze_rows=_freeze_rows(c),
        recipe_rows=_recipe_rows(c),
        few_shot_rows=few_shot_rows(c.few_shot),
        hyper_rows=_hyper_rows(c),
        **export_fields(c.export),
        eval_dataset=c.eval_dataset,
        metric_splits=splits,
        metric_rows=metric_rows,
        epoch_columns=epoch_columns,
        epoch_rows=epoch_table,
        has_curves=folder is None or (folder / "training_curves.png").is_file(),
        confusion_matrix=None if c.multi_label else c.confusion_matrix,
        intended_use=_intended_use(c),
        versions=c.versions,
        hf_transfer_version=c.hf_transfer_version or "",
    )


# --- merging with an existing README ---------------------------------------------------------------------------------


def write_model_card(folder: str | Path, card_data: CardData, repo_id: str | None = None) -> Path:
    """Write README.md (merged into an existing one) and save the card data beside it."""
    folder = Path(folder)
    if repo_id:
        card_data.repo_id = repo_id
        card_data.model_name = repo_id.split("/")[-1]
    card_data.adapter = detect_adapter(folder, card_data.adapter)
    path = folder / "README.md"
    text = str(build_card(card_data, folder))
    if path.is_file():
        text = merge_readme(path.read_text(encoding="utf-8"), text)
    path.write_text(text, encoding="utf-8")
    card_data.save(folder / CARD_DATA_FILE)
    return path
