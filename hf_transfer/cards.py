"""Model cards from the run record, through `huggingface_hub.ModelCard.from_template`."""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

TEMPLATE = "model_card.md.jinja"
_PACKAGES = ("hf-transfer-learning", "transformers", "torch", "datasets", "accelerate", "peft", "huggingface_hub")


def template_path() -> Path:
    """The card template shipped inside the wheel (`hf_transfer.model_cards`), or the source tree's copy."""
    try:
        return Path(str(resources.files("hf_transfer.model_cards").joinpath(TEMPLATE)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "model_cards" / TEMPLATE


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
    card_data = ModelCardData(
        base_model=record.get("base_model"),
        datasets=[config["dataset_name"]] if config.get("dataset_name") else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=tags,
        model_name=name,
        eval_results=eval_results or None,
    )
    freeze = record.get("freeze", {})
    trainable = freeze.get("trainable_parameters_now", 0)
    total = trainable + freeze.get("frozen_parameters_now", 0)
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
    summary = (
        f"A {len(labels)}-class text classifier fine-tuned from `{record.get('base_model')}` with hf-transfer. "
        f"Freezing: {_freeze_text(freeze)}. Precision: {record.get('precision', 'fp32')}."
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
        freeze_text=_freeze_text(freeze),
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
    )


def write_model_card(output_dir: Path, record: dict, config: dict, repo_id: str | None = None) -> Path:
    path = Path(output_dir) / "README.md"
    build_card(record, config, repo_id).save(path)
    return path
