"""Model cards from the run record, through `huggingface_hub.ModelCard.from_template`."""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

TEMPLATE = "model_card.md.jinja"
_PACKAGES = ("hf-transfer-learning", "transformers", "torch", "datasets", "accelerate", "peft", "huggingface_hub")


def template_path() -> Path:
    """The source tree's card template when this package is imported from a checkout, else the one shipped inside
    the wheel (`hf_transfer.model_cards`)."""
    # A checkout on PYTHONPATH must not render the template of another checkout that is installed editable.
    source = Path(__file__).resolve().parent.parent / "model_cards" / TEMPLATE
    if source.is_file():
        return source
    try:
        return Path(str(resources.files("hf_transfer.model_cards").joinpath(TEMPLATE)))
    except ModuleNotFoundError:
        return source


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else value


def _source_text(source, fallback: str) -> str:
    if isinstance(source, dict):
        return ", ".join(f"{k.replace('_', ' ')} `{v}`" for k, v in source.items() if v) or fallback
    return str(source or fallback)


def _freeze_text(freeze: dict) -> str:
    parts = []
    if freeze.get("train_head_only"):
        parts.append("only the task head trained")
    if freeze.get("freeze_embeddings"):
        parts.append("embeddings frozen")
    if freeze.get("freeze_layers") not in (None, 0, []):
        parts.append(f"blocks frozen: {freeze['freeze_layers']} (of {freeze['depth']})")
    if freeze.get("freeze_patterns"):
        parts.append(f"parameters matching {freeze['freeze_patterns']} frozen")
    if freeze.get("gradual_unfreezing"):
        parts.append(f"gradual unfreezing, one block every {freeze['gradual_unfreezing']} epoch(s)")
    if freeze.get("layerwise_lr_decay", 1.0) != 1.0:
        parts.append(f"layer-wise LR decay γ={freeze['layerwise_lr_decay']}")
    return "; ".join(parts) or "none (full fine-tuning)"


def _adapter_facts(adapter: dict) -> dict:
    """The adapter's description for the card, in plain words."""
    targets = adapter.get("target_modules")
    return {
        "method": adapter["method"],
        "settings": ", ".join(
            f"{name}={adapter[key]}"
            for name, key in (("r", "r"), ("α", "alpha"), ("dropout", "dropout"))
            if adapter.get(key)
        ),
        "targets": ", ".join(targets) if isinstance(targets, list) else str(targets),
        "targets_from": adapter.get("targets_from"),
        "head": ", ".join(adapter.get("modules_to_save") or []),
        "size_kb": f"{adapter.get('size_on_disk_bytes', 0) / 1024:,.0f}",
        "reload_diff": adapter.get("reload_max_abs_logit_diff"),
        "merged": adapter.get("merged_model"),
        "base": adapter.get("base_model_name_or_path"),
    }


def build_card(record: dict, config: dict, repo_id: str | None = None):
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    report = record.get("validation_report") or {}
    dataset_name = config.get("dataset_name") or Path(str(config.get("train_file") or "local data")).parent.name
    eval_results = [
        EvalResult(
            task_type="text-classification",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split="validation",
            metric_type=key,
            metric_value=float(report[key]),
        )
        for key in ("accuracy", "f1_macro", "f1_micro", "subset_accuracy")
        if key in report
    ]
    name = Path(config.get("output_dir") or "model").name
    tags = ["hf-transfer", "transfer-learning", "text-classification"]
    distillation = record.get("distillation")
    if distillation:
        tags.append("distillation")
    adapter = _adapter_facts(record["adapter"]) if record.get("adapter") else None
    if adapter:
        tags += ["peft", adapter["method"]]
    card_data = ModelCardData(
        base_model=adapter["base"] if adapter else record.get("base_model"),
        datasets=[config["dataset_name"]] if config.get("dataset_name") else None,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-classification",
        tags=tags,
        model_name=name,
        eval_results=eval_results or None,
    )
    freeze = record.get("freeze", {})
    trainable = freeze.get("trainable_parameters_now", 0)
    total = trainable + freeze.get("frozen_parameters_now", 0)
    if adapter:  # PEFT keeps a frozen copy of each saved head module: count the base plus the adapter once
        trainable, total = record["adapter"]["trainable_parameters"], record["adapter"]["total_parameters"]
    splits = {}
    for split, info in (record.get("data", {}).get("splits") or record.get("data", {})).items():
        if isinstance(info, dict) and "rows" in info:
            dropped = {k: v for k, v in (info.get("dropped") or {}).items() if v}
            splits[split] = {
                "rows": info["rows"],
                "dropped_total": sum(dropped.values()),
                "dropped_text": ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()),
            }
    epoch_rows = [
        {
            "epoch": _fmt(e.get("epoch")),
            "step": e.get("step"),
            "loss": _fmt(e.get("eval_loss")),
            "accuracy": _fmt(e.get("eval_accuracy", "")),
            "f1": _fmt(e.get("eval_f1_macro", "")),
        }
        for e in record.get("log_history", [])
        if "eval_loss" in e
    ]
    hyper_keys = (
        "learning_rate",
        "num_train_epochs",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "weight_decay",
        "warmup_steps",
        "lr_scheduler_type",
        "max_seq_length",
        "seed",
    )
    labels = record.get("label_names", [])
    if distillation:
        teachers = ", ".join(f"`{t}`" for t in distillation["teachers"])
        student = (
            f"a student built from teacher blocks {distillation['student_layers']}"
            if distillation.get("student_layers")
            else f"the student `{record.get('base_model')}`"
        )
        summary = (
            f"A {len(labels)}-class text classifier distilled with hf-transfer from {teachers} into {student}, "
            f"with α={distillation['alpha']} and T={distillation['temperature']} "
            f"(loss terms: {', '.join(distillation['loss_terms'])}). Freezing: {_freeze_text(freeze)}. "
            f"Precision: {record.get('precision', 'fp32')}."
        )
    else:
        summary = (
            f"A {len(labels)}-class text classifier fine-tuned from `{record.get('base_model')}` with hf-transfer. "
            f"Freezing: {_freeze_text(freeze)}. Precision: {record.get('precision', 'fp32')}."
        )
    if adapter:
        summary = (
            f"A {len(labels)}-class text classifier: a {adapter['method']} adapter ({adapter['settings']}) on "
            f"`{adapter['base']}`, trained with hf-transfer. The base stays frozen; the adapter and the "
            f"classification head ({adapter['head']}) are trained and saved together ({adapter['size_kb']} KB). "
            f"Precision: {record.get('precision', 'fp32')}."
        )
        if distillation:
            summary += (
                f" The adapter was trained by distillation from {teachers} (α={distillation['alpha']}, "
                f"T={distillation['temperature']})."
            )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_name=name,
        repo_id=repo_id or name,
        summary=summary,
        example_text="I really enjoyed this!",
        label_names=labels,
        data_splits=splits,
        validation_carved=record.get("data", {}).get("validation_carved_from_train", False),
        validation_pct=config.get("validation_split_percentage"),
        data_source=_source_text(record.get("data", {}).get("source"), dataset_name),
        freeze_text="the whole base (a PEFT adapter trains)" if adapter else _freeze_text(freeze),
        adapter=adapter,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        multi_label=record.get("problem_type") == "multi_label_classification",
        trainable=f"{trainable:,}",
        total=f"{total:,}",
        trainable_pct=f"{100 * trainable / total:.1f}" if total else "0",
        precision=record.get("precision", "fp32"),
        world_size=record.get("world_size", 1),
        hyperparameters={k: config[k] for k in hyper_keys if k in config},
        headline_metrics={k: _fmt(v) for k, v in report.items() if isinstance(v, (int, float))},
        epoch_rows=epoch_rows,
        confusion_matrix=report.get("confusion_matrix"),
        versions=_versions(),
        hf_transfer_version=record.get("hf_transfer_version"),
        distillation=_distillation_rows(distillation),
    )


def _distillation_rows(d: dict | None) -> list[tuple[str, str]] | None:
    """The teacher-vs-student facts as (name, value) rows for the card."""
    if not d:
        return None
    rows = [
        ("teacher(s)", ", ".join(f"`{t}`" for t in d["teachers"])),
        ("α (soft-loss weight)", str(d["alpha"])),
        ("temperature T", str(d["temperature"])),
        ("loss terms", ", ".join(d["loss_terms"])),
    ]
    if d.get("student_layers"):
        rows.append(("student built from teacher blocks", str(d["student_layers"])))
    if d.get("hidden_loss_weight"):
        rows.append(
            ("hidden-state loss", f"{d['hidden_loss_type']} × {d['hidden_loss_weight']}, map {d['layer_map']}")
        )
    if d.get("teacher_parameters"):
        rows.append(("parameters (teacher → student)", f"{d['teacher_parameters']:,} → {d['student_parameters']:,}"))
    if d.get("teacher_eval_accuracy") is not None:
        rows.append(
            (
                f"dev {d['teacher_eval_metric']} (teacher → student)",
                f"{d['teacher_eval_accuracy']:.4f} → {d['student_eval_accuracy']:.4f} "
                f"(retention {d['retention_percent']:.1f}%)",
            )
        )
        rows.append(
            (
                f"inference speed, batch {d['speed_batch_size']} (teacher → student)",
                f"{d['teacher_samples_per_second']} → {d['student_samples_per_second']} samples/s "
                f"({d['speedup']:.2f}×)",
            )
        )
    return rows


def write_model_card(output_dir: Path, record: dict, config: dict, repo_id: str | None = None) -> Path:
    path = Path(output_dir) / "README.md"
    build_card(record, config, repo_id).save(path)
    return path
