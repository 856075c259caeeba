"""What a model card says, as plain data: filled during training by `train.callbacks.CardDataCallback` (as SetFit's
model-card callback does), completed from the run record, and saved as `hf_transfer_card_data.json` beside the
model so that `hf-transfer card DIR` can write the card again later from what DIR holds."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from hf_transfer.core.folders import (
    CARD_DATA_FILE,
    CONFIG_FILE,
    RUN_RECORD_FILE,
    json_text,
    read_json_object,
    write_text_atomic,
)
from hf_transfer.errors import ConfigError, one_line
from hf_transfer.outputs.provenance import base_model_facts, detect_adapter, is_hub_id, parent_may_be_shown, shown_name

_PACKAGES = ("hf-transfer-learning", "transformers", "torch", "datasets", "accelerate", "peft", "huggingface_hub")
# `max_steps` is shown when set (> 0), in place of num_train_epochs, which Trainer then ignores; `data_seed` when set:
# it draws the validation and calibration carve-outs (and Trainer's sampler).
_HYPERPARAMETERS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "weight_decay", "warmup_steps", "warmup_ratio", "lr_scheduler_type", "optim", "max_grad_norm",
    "label_smoothing_factor", "max_seq_length", "seed", "data_seed",
)  # fmt: skip
# Shown when not at their default (the value here): a reader reproducing the run needs them then.
_HYPERPARAMETERS_WHEN_SET = {
    "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8, "lr_scheduler_kwargs": {}, "optim_args": None,
    "neftune_noise_alpha": None, "max_train_samples": None, "max_eval_samples": None, "dataloader_drop_last": False,
    "cache_frozen_features": False, "frozen_features_dtype": None,  # the cache's dtype rounds the frozen states
}  # fmt: skip
NO_HELD_OUT = "no held-out data"  # what a few-shot run without validation or test data was evaluated on
# Scalar metrics worth a card (and a model-index entry); runtimes, sample counts and the loss are not.
_METRIC_BASES = ("subset_accuracy", "accuracy", "precision", "recall", "f1")
# Run-record sections that describe the training recipe beyond the freeze plan (the checkpoint kept as the best, and
# the one a resumed run went on from, or the one whose weights a fresh run started from).
RECIPE_KEYS = (
    "class_weights", "linear_probe", "early_stopping", "best_model", "calibration", "resumed_from",
    "started_from_checkpoint", "few_shot_passed_over", "chosen_by_search",
)  # fmt: skip


@dataclass
class CardData:
    """Every fact the card states. Plain JSON values only, so the file can be read without this package."""

    model_name: str = "model"
    repo_id: str | None = None
    repo_revision: str | None = None  # the branch it was pushed to, when not main
    local_path: str | None = None  # what the quick start loads before a push, when not the folder's name
    task: str = "train"
    base_model: str | None = None
    base_model_is_hub_id: bool = False
    base_model_revision: str | None = None  # the Hub revision it was read at, when not main
    license: str | None = None
    language: str | list[str] | None = None
    language_source: str | None = None  # config, detected (from the training text), or base model
    datasets: list[str] = field(default_factory=list)
    data_name: str = "local data"
    # Where the metrics were measured, for the model-index: the Hub dataset (dataset_name or dataset_hub_id), or None
    # for local files, named per split (`dev.tsv`) without a Hub id. merge and export measure on files of their own.
    eval_hub_dataset: str | None = None
    eval_hub_dataset_config: str | None = None  # its configuration (dataset_config_name), when it has one
    eval_files: dict[str, str] = field(default_factory=dict)
    eval_splits: dict[str, str] = field(default_factory=dict)  # the model-index's split, when not the whole one
    eval_dataset: str = "validation data"
    data_source: str = "local data"
    label_names: list[str] = field(default_factory=list)
    problem_type: str = "single_label_classification"
    splits: dict[str, dict] = field(default_factory=dict)
    validation_carved: bool = False
    validation_percentage: int | None = None
    columns: dict[str, str | None] = field(default_factory=dict)  # the text, text pair and label columns read
    freeze: dict = field(default_factory=dict)
    unfreezing: list[dict] = field(default_factory=list)
    distillation: dict | None = None
    few_shot: dict | None = None  # the few-shot route of train: body tuning, head, validation policy
    adapter: dict | None = None
    merge: dict | None = None  # weight interpolation: α, both sources, the sweep (hf-transfer merge)
    export: dict | None = None  # an ONNX export: exporter, opset, quantization, parity, speed (hf-transfer export)
    # The truncation length `predict` and `evaluate` use for this folder (the one it was trained, merged or exported
    # at): the quick start truncates there too, so it scores a long text as they do.
    max_seq_length: int | None = None
    recipe: dict = field(default_factory=dict)  # class_weights, linear_probe, ..., resumed_from
    hyperparameters: dict = field(default_factory=dict)
    precision: str = "fp32"
    metrics_precision: str | None = None  # what the saved model's scores were measured in (final_metrics_precision)
    world_size: int = 1
    metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    epochs: list[dict] = field(default_factory=list)
    confusion_matrix: list[list[int]] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    hf_transfer_version: str | None = None

    def save(self, path: str | Path, **notes) -> None:  # notes: keys beside the fields (`readme.README_HASH`)
        write_text_atomic(path, json_text({**dataclasses.asdict(self), **notes}, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CardData:
        values = read_json_object(path)
        if "eval_hub_dataset" not in values and values.get("task") in ("train", "distill") and values.get("datasets"):
            values["eval_hub_dataset"] = values["datasets"][0]  # saved before the field: train measured on it
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def multi_label(self) -> bool:
        return self.problem_type == "multi_label_classification"

    def data_source_name(self) -> str:
        return self.datasets[0] if self.datasets else self.data_name

    def headline_metric(self) -> tuple[str | None, float | None]:
        for key in ("accuracy", "subset_accuracy", "f1_macro"):
            if key in self.metrics:
                return key, self.metrics[key]
        return None, None

    def one_line(self) -> str:
        """How the model was made, in a few words (the commit message and the card's summary start with it)."""
        base = f"`{shown_name(self.base_model)}`" if self.base_model else "a pretrained model"
        base += f" (revision `{self.base_model_revision}`)" if self.base_model_revision else ""
        if self.merge:
            m = self.merge
            kind = "adapter" if m.get("finetuned_kind") == "adapter" else "model"
            return (
                f"WiSE-FT weight interpolation at α = {m['alpha']:g} between {base} and the fine-tuned {kind} "
                f"`{Path(str(m['finetuned'])).name}`"
            )
        if self.adapter:
            method = str(self.adapter.get("method") or "PEFT")
            rank = f" (r={self.adapter['r']})" if self.adapter.get("r") else ""
            return f"{'LoRA' if method.lower() == 'lora' else method} adapter{rank} on {base}"
        d = self.distillation
        if d:
            student = f"{self.freeze['depth']}-layer student" if self.freeze.get("depth") else "student"
            teachers = ", ".join(f"`{shown_name(t)}`" for t in d.get("teachers") or [])
            if d.get("student_layers"):  # cut from the (first) teacher: its base, not where it started
                first = f" of `{shown_name(d['teachers'][0])}`" if len(d.get("teachers") or []) > 1 else ""
                blocks = f"built from {'the' if first else 'its'} blocks {d['student_layers']}{first}"
                return f"distilled {student} of {teachers or 'its teacher'}, {blocks}"
            own = self.base_model and f"`{shown_name(self.base_model)}`" not in teachers  # a separate student
            return f"distilled {student} of {teachers or 'its teacher'}" + (f", started from {base}" if own else "")
        if self.few_shot:
            return f"few-shot classifier on {base} (pair-tuned body, head fitted on mean-pooled embeddings)"
        frozen = _frozen_blocks(self.freeze)
        return f"fine-tuned {base}" + (f" ({frozen})" if frozen else "")


def _frozen_blocks(freeze: dict) -> str:
    if freeze.get("train_head_only"):
        return "head only"
    layers, depth = freeze.get("freeze_layers"), freeze.get("depth")
    if isinstance(layers, int) and layers:
        return f"{layers} of {depth} blocks frozen"
    if isinstance(layers, list) and layers:
        return f"{len(layers)} of {depth} blocks frozen"
    return ""


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _scalar_metrics(values: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in (values or {}).items():
        if not key.startswith(prefix) or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key[len(prefix) :]
        if any(name == b or name.startswith(b + "_") for b in _METRIC_BASES) and math.isfinite(value):
            out[name] = float(value)
    return out


def epoch_row(epoch, step, train_loss, metrics: dict) -> dict:
    row = {"epoch": epoch, "step": step, "train_loss": train_loss, "eval_loss": metrics.get("eval_loss")}
    scores = _scalar_metrics(metrics, "eval_")
    row.update({k: scores[k] for k in ("accuracy", "subset_accuracy", "f1_macro", "f1_micro") if k in scores})
    return row


def _same_scores(row: dict, other: dict) -> bool:
    keys = [k for k in row if k not in ("epoch", "step", "train_loss")]
    return keys == [k for k in other if k not in ("epoch", "step", "train_loss")] and all(
        row[k] is not None and other[k] is not None and math.isclose(row[k], other[k], rel_tol=1e-6) for k in keys
    )


def epoch_rows(log_history: list[dict]) -> list[dict]:
    rows, train_loss = [], None
    for entry in log_history or []:
        if "loss" in entry:
            train_loss = entry["loss"]
        if "eval_loss" in entry:
            rows.append(epoch_row(entry.get("epoch"), entry.get("step"), train_loss, entry))
    return rows


def hyperparameters_of(values: dict) -> dict:
    """The card's hyperparameters among `values` (TrainingArguments or the resolved config); `data_seed` when set, and
    `max_steps` when set, in place of the epoch count it overrides."""
    capped = isinstance(values.get("max_steps"), int) and values["max_steps"] > 0
    hidden = {"data_seed"} if values.get("data_seed") is None else set()
    hidden.add("num_train_epochs" if capped else "max_steps")
    shown = {k: values[k] for k in _HYPERPARAMETERS if k in values and k not in hidden}
    unset = (None, {})  # never set (transformers 5's lr_scheduler_kwargs is None when unset)
    return shown | {k: values[k] for k, d in _HYPERPARAMETERS_WHEN_SET.items() if values.get(k, d) not in (d, *unset)}


# --- completing the card data from the run record ------------------------------------------------------------------


def _source_text(source, fallback: str) -> str:
    """The data files by name (`train file `train.csv``), never by their path on this machine."""
    if isinstance(source, dict):
        named = {
            k: ", ".join(f"`{shown_name(f)}`" for f in (v if isinstance(v, list) else [v]))
            for k, v in source.items()
            if v
        }
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in named.items()) or fallback
    return str(source or fallback)


def _hub_splits(config: dict, carved: bool, rows: int | None) -> dict[str, str]:
    """The Hub split the validation metrics were measured on (a leaderboard reads `validation` as the whole split)."""
    split = "validation"
    if carved:
        seed = config.get("data_seed") if config.get("data_seed") is not None else config.get("seed")  # split_seed
        split = f"train ({config.get('validation_split_percentage')}% carved for validation, seed {seed})"
    if (limit := config.get("max_eval_samples")) is not None and rows is not None and rows >= limit:  # cut there
        split = f"{split}[:{limit}]" if not carved else f"{split}, its first {limit} rows"
    return {} if split == "validation" else {"validation": split}


def _data_name(path: str) -> str:
    """`../data/sst2/train.tsv` -> `` `sst2/train.tsv` ``: the file with its folder (the folder alone: `tmp`...)."""
    p = Path(path)
    return f"`{p.parent.name}/{p.name}`" if parent_may_be_shown(p) else f"`{p.name}`"


SPLIT_CUTS = ("carved_to_validation", "cut_by_max_samples")  # rows a split gave up, after its cleaning
# The run record's row counts of a split that its card tells (the record's key: the card data's).
SPLIT_COUNTS = {"rows_without_labels": "without_labels", "rows_sharing_train_input": "sharing_train_input",
                "rows_sharing_validation_input": "sharing_validation_input", **{k: k for k in SPLIT_CUTS},
                "unknown_token_percent": "unknown_token_percent"}  # fmt: skip


def complete_card_data(card_data: CardData, record: dict, config: dict, folder: str | Path) -> CardData:
    """Fill in everything the run record and the resolved config know; the callback's findings are kept."""
    c = card_data
    folder = Path(folder)
    data = record.get("data") or {}
    dataset_name = config.get("dataset_name")
    source = data.get("source") or {}
    eval_file = source.get("validation_file") if isinstance(source, dict) else None
    evaluated_on = Path(eval_file).name if eval_file else shown_name(dataset_name) if dataset_name else None
    eval_from = f"`{evaluated_on}`" if evaluated_on else "the data"
    c.model_name = folder.resolve().name
    c.task = record.get("task", c.task)
    c.base_model = record.get("base_model")
    c.base_model_is_hub_id = is_hub_id(c.base_model)
    c.base_model_revision = record.get("base_model_revision")
    teachers = (record.get("distillation") or {}).get("teachers") or []
    facts = base_model_facts(
        [config.get("base_model_hub_id"), config.get("model_name_or_path"), c.base_model, *teachers]
    )
    c.license = facts.get("license")
    c.language, c.language_source = _language(record.get("language"), facts)
    # dataset_hub_id names a local dataset_name folder on the Hub; a folder's path never reaches the metadata.
    hub_dataset = config.get("dataset_hub_id") or (dataset_name if is_hub_id(dataset_name) else None)
    c.datasets = [hub_dataset] if hub_dataset else []
    train_file = config.get("train_file") or (source.get("train_file") if isinstance(source, dict) else None)
    c.data_name = shown_name(dataset_name) if dataset_name else _data_name(train_file) if train_file else "local data"
    carved = bool(data.get("validation_carved_from_train"))
    test_file = source.get("test_file") if isinstance(source, dict) else None
    c.eval_hub_dataset = hub_dataset
    c.eval_hub_dataset_config = config.get("dataset_config_name") if hub_dataset == dataset_name else None
    named = {"validation": eval_file or (train_file if carved else None), "test": test_file}
    c.eval_files = {split: Path(str(path)).name for split, path in named.items() if path}
    splits = data.get("splits") or data
    c.splits = {
        split: {"rows": info["rows"], "dropped": {k: v for k, v in (info.get("dropped") or {}).items() if v}}
        | {short: info[key] for key, short in SPLIT_COUNTS.items() if info.get(key)}
        for split, info in splits.items()
        if isinstance(info, dict) and "rows" in info
    }
    rows = c.splits.get("validation", {}).get("rows")
    c.eval_splits = _hub_splits(config, carved, rows) if hub_dataset else {}
    eval_what = "a split carved from the training data" if carved else f"validation data from {eval_from}"
    c.eval_dataset = f"{rows:,} rows of {eval_what}" if rows else eval_what
    test_rows = c.splits.get("test", {}).get("rows") if record.get("test_metrics") else None  # unlabelled: no score
    test_file = c.eval_files.get("test")
    test = (f"{test_rows:,} test rows" + (f" ({test_file})" if test_file else "")) if test_rows else ""
    c.eval_dataset += f" and {test}" if test else ""  # scored there too: not "evaluated only on" validation
    c.data_source = _source_text(source, dataset_name or "local data")
    c.label_names = list(record.get("label_names") or [])
    c.problem_type = record.get("problem_type") or c.problem_type
    c.validation_carved = carved
    c.columns = dict(data.get("columns") or {})
    c.validation_percentage = config.get("validation_split_percentage")
    c.freeze = dict(record.get("freeze") or {})
    c.distillation = record.get("distillation")
    c.few_shot = record.get("few_shot")
    if c.few_shot and not (c.few_shot.get("validation") or {}).get("held_out", True):
        c.eval_dataset = f"{test or NO_HELD_OUT} (no validation_file: the route trained on every labelled row)"
    c.recipe = {k: record[k] for k in RECIPE_KEYS if record.get(k)}
    if "calibration" in c.recipe:  # its "after" is the final evaluation, kept with it for a merge card's recipe
        after = _scalar_metrics(record.get("eval_metrics"), "eval_").get("f1_macro")
        c.recipe["calibration"] = {**c.recipe["calibration"], "validation_after": {"f1_macro": after}}
    c.adapter = detect_adapter(folder, record.get("adapter"))
    if not c.hyperparameters:
        c.hyperparameters = hyperparameters_of(config)
    else:  # filled from TrainingArguments while training: the data fields come from the config
        data_fields = ("max_seq_length", "max_train_samples", "max_eval_samples")
        c.hyperparameters |= {k: v for k, v in hyperparameters_of(config).items() if k in data_fields}
    c.max_seq_length = config.get("max_seq_length")
    c.precision = record.get("precision", c.precision)
    c.metrics_precision = record.get("final_metrics_precision")
    c.world_size = record.get("world_size", c.world_size)
    report = record.get("validation_report") or {}
    c.metrics = _scalar_metrics(report) or _scalar_metrics(record.get("eval_metrics"), "eval_")
    c.test_metrics = _scalar_metrics(record.get("test_metrics"), "test_")
    logged = epoch_rows(record.get("log_history"))
    if len(logged) > len(c.epochs):  # a resumed run: the log holds the epochs before the resume too
        c.epochs = logged
    # The evaluation after training closes the table (and is its only row when eval_strategy was "no").
    history = record.get("log_history") or []
    last = next((e["step"] for e in reversed(history) if "step" in e), None)
    train = record.get("train_metrics") or {}
    last_loss = next((e["loss"] for e in reversed(history) if "loss" in e), train.get("train_loss"))
    kept = (c.recipe.get("best_model") or {}).get("step", last)  # load_best_model_at_end: the saved model's step
    final = epoch_row(train.get("epoch"), kept, last_loss, record.get("eval_metrics") or {})
    at_step = [row for row in c.epochs if row.get("step") == kept]
    if final["eval_loss"] is not None and not at_step:
        calibrated = "calibration" in c.recipe  # it scored the calibrated model, not the last epoch's weights
        c.epochs.append({**final, "epoch": "saved model", "train_loss": None} if calibrated else final)
    elif final["eval_loss"] is not None and (kept != last or not _same_scores(at_step[-1], final)):
        # The saved model is not the one last evaluated: load_best_model_at_end kept an earlier checkpoint,
        # decision calibration moved the decision, or (a bf16/fp16 run) the epochs were scored under autocast and the
        # saved weights in fp32. Its own row closes the table, named as such.
        c.epochs.append({**final, "epoch": "saved model", "train_loss": None})
    c.confusion_matrix = report.get("confusion_matrix")
    c.versions = c.versions or _versions()
    c.hf_transfer_version = record.get("hf_transfer_version")
    return c


def _language(recorded: dict | None, facts: dict) -> tuple:
    """The language field wins, then the one detected from the training text, then the base model's card."""
    recorded = recorded or {}
    if recorded.get("value"):
        return recorded["value"], recorded.get("source")
    return facts.get("language"), "base model" if facts.get("language") else None


def load_card_data(folder: str | Path) -> CardData | None:
    """The card data saved with a run; for runs from before it was saved, rebuilt from the run record and config."""
    folder = Path(folder)
    if (folder / CARD_DATA_FILE).is_file():
        card_data = CardData.load(folder / CARD_DATA_FILE)
        card_data.adapter = detect_adapter(folder, card_data.adapter)
        source = _recorded_source(folder)
        if source:  # card data saved before the files were shown by name held their paths
            card_data.data_source = _source_text(source, card_data.data_source)
        return card_data
    if not (folder / RUN_RECORD_FILE).is_file():
        return None
    record = read_json_object(folder / RUN_RECORD_FILE)
    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_bytes()) if (folder / CONFIG_FILE).is_file() else {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{str(folder / CONFIG_FILE)!r} is not valid YAML ({one_line(err, 120)}).") from None
    card_data = complete_card_data(CardData(), record, config if isinstance(config, dict) else {}, folder)
    card_data.versions = {}  # today's versions are not the ones the run used
    return card_data


def _recorded_source(folder: Path) -> dict | None:
    """The data source the run record of `folder` names (its files, or its dataset), if it names one."""
    if not (folder / RUN_RECORD_FILE).is_file():
        return None
    source = (read_json_object(folder / RUN_RECORD_FILE).get("data") or {}).get("source")
    return source if isinstance(source, dict) and source else None
