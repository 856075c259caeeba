"""When `hf-transfer train` takes the few-shot route (train/few_shot.py), decided on the checked data before any weight
loads, and what the route does about validation data: it makes no choice on it, so without a validation file it puts
back the split `load_data` carved from train and trains on every labelled row."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass

from hf_transfer.core.data import PreparedData
from hf_transfer.core.models import meta_classifier
from hf_transfer.core.overlap import refresh_rows
from hf_transfer.core.runtime import launched_world_size
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.errors import ConfigError
from hf_transfer.outputs.few_shot_card import FEW_SHOT_REPLACES
from hf_transfer.train.few_shot_head import SUPPORTED_HEADS, head_parts, saved_mean_pooling_block
from hf_transfer.train.field_checks import choice_text

logger = logging.getLogger(__name__)


@dataclass
class FewShotDecision:
    on: bool
    requested: str  # the few_shot field: auto, true or false
    reason: str
    rows_per_class: float
    # `auto` on data and a base the route is for, ruled out by an option or by a multi-process launch: the run trains
    # otherwise than the same command would alone, so it says so.
    passed_over: bool = False

    def line(self) -> str:
        return f"{'on' if self.on else 'off'} ({self.requested}: {self.reason})"

    def passed_over_facts(self) -> dict:
        """The run record's note of the decision when the route did not run: `few_shot_passed_over` for a route
        passed over (see `passed_over`), else `few_shot_decision` (`auto` on too many rows, or on another base)."""
        return {"few_shot_passed_over" if self.passed_over else "few_shot_decision": self.line()}

    def worth_saying(self, threshold: float) -> bool:
        """`auto` left the route on small data (another base, an option, several processes): printed, since the
        user may have meant it. Runs on more rows per class than the threshold are the ordinary case: not printed."""
        return not self.on and self.requested == "auto" and self.rows_per_class < threshold


def sentence_embedding_pooling(name_or_path: str, revision: str = "main", cache_dir=None) -> str | None:
    """The pooling a sentence-transformers model declares (`mean_tokens`, `cls_token`, ...; from modules.json and its
    Pooling module's config), or None for a model that is not one (or whose files cannot be read)."""
    modules = _model_json(name_or_path, "modules.json", revision, cache_dir)
    pooling = next((m for m in modules or [] if str(m.get("type", "")).endswith("Pooling")), None)
    if pooling is None:
        return None
    config = _model_json(name_or_path, f"{pooling.get('path') or ''}/config.json".lstrip("/"), revision, cache_dir)
    modes = [k[len("pooling_mode_") :] for k, v in (config or {}).items() if k.startswith("pooling_mode_") and v]
    # sentence-transformers 6 writes one key, `pooling_mode`: a mode ("mean") or a list of them, in shorter names.
    declared = (config or {}).get("pooling_mode")
    modes += [declared] if isinstance(declared, str) else declared if isinstance(declared, list) else []
    modes = list(dict.fromkeys(_POOLING_NAMES.get(mode, mode) for mode in modes))  # a config may write both forms
    return modes[0] if len(modes) == 1 else None


# sentence-transformers 6's pooling_mode names -> the pooling_mode_* keys' names earlier versions write.
_POOLING_NAMES = {
    "cls": "cls_token",
    "max": "max_tokens",
    "mean": "mean_tokens",
    "weightedmean": "weightedmean_tokens",
}


def _model_json(name_or_path: str, filename: str, revision: str, cache_dir):
    import json

    from hf_transfer.core.models import model_file

    path = model_file(name_or_path, filename, revision=revision, cache_dir=cache_dir)
    try:
        return json.loads(path.read_bytes()) if path else None
    except (OSError, ValueError):
        return None


def _conflicts(plan, adapter_args, args) -> list[str]:
    """Why the route cannot run with these options and this model (empty when it can)."""
    found = []
    if plan.prepared.problem_type == MULTI_LABEL:
        found.append("the data is multi-label (the route fits a single-label head)")
    if getattr(adapter_args, "peft_method", "none") != "none":
        found.append(f"peft_method is {adapter_args.peft_method} (the route tunes the whole body)")
    if launched_world_size() > 1:
        found.append(
            "several processes were launched (the route's pair loss runs in one process: start it without "
            "`accelerate launch`, or with --num_processes 1)"
        )
    options = {
        "cache_frozen_features": args.cache_frozen_features,
        "gradual_unfreezing": args.gradual_unfreezing,
        "linear_probe_epochs": getattr(args, "linear_probe_epochs", 0),
        "calibrate_decision": getattr(args, "calibrate_decision", None),
        "early_stopping_patience": getattr(args, "early_stopping_patience", None),
        "class_weights": getattr(args, "class_weights", None),
    }
    if args.early_stopping_patience is None:
        options["load_best_model_at_end"] = args.load_best_model_at_end  # the route keeps no checkpoints to choose
    found += [f"{name} is set (an option of the ordinary fine-tune)" for name, value in options.items() if value]
    if args.resume_from_checkpoint:
        found.append(
            f"resume_from_checkpoint is set ({args.resume_from_checkpoint}): the route saves no checkpoint, so one "
            "comes from the ordinary fine-tune"
        )
    layout = plan.freeze_plan.layout
    body = set(layout.embeddings).union(*layout.blocks)
    if body and body <= plan.freeze_plan.frozen:
        found.append(
            "the freezing options leave no weight of the body to tune (the route tunes the body on pairs and fits "
            "its head in closed form, so there is nothing to train; train_head_only is the ordinary fine-tune's)"
        )
    if head_parts(meta_classifier(plan.config)) is None:
        found.append(
            f"model type {plan.config.model_type!r} lacks what the route needs to express its mean-pooled head: "
            f"{SUPPORTED_HEADS}"
        )
    return found


def _ordinary_recipe(args) -> list[str]:
    """Options that ask for the ordinary fine-tune's recipe: `auto` leaves such runs on it (`true` keeps them, for
    the body tuning)."""
    options = {
        "freeze_embeddings": args.freeze_embeddings,
        "freeze_layers": args.freeze_layers,
        "freeze_patterns": args.freeze_patterns,
        "train_head_only": args.train_head_only,
        "layerwise_lr_decay": args.layerwise_lr_decay != 1.0,
    }
    return [name for name, value in options.items() if value]


def warn_replaced_fields(args) -> None:
    """A one-line warning for each Trainer field given (config or flag) that the route replaces by its own, and for
    `few_shot_template_copies` with no template: they were accepted and ignored, silently."""
    given = getattr(args, "chosen_fields", None)  # set by the command-line parser
    if given is None:
        return
    for name in sorted(given & set(FEW_SHOT_REPLACES)):
        logger.warning(
            "%s set but ignored: the few-shot route uses %s instead (few_shot: false keeps the ordinary fine-tune).",
            name,
            FEW_SHOT_REPLACES[name],
        )
    idle = {
        "eval_strategy": "it evaluates once, when its head is built",
        "save_strategy": "it saves no checkpoint, only the final model",
        "label_smoothing_factor": "it tunes the body on a pair loss and fits its head in closed form",
    }
    for name in sorted(given & set(idle)):
        if choice_text(getattr(args, name)) not in ("no", "0", "0.0"):
            logger.warning("%s set but ignored on the few-shot route: %s.", name, idle[name])
    if "few_shot_template_copies" in given and args.few_shot_template_copies and not args.few_shot_label_template:
        logger.warning("few_shot_template_copies set but ignored: few_shot_label_template is none.")


def _rows(per_class: float) -> str:
    """Rows per class as said: 80 (a mean over classes, 80.5, keeps its decimal)."""
    return f"{per_class:.0f}" if float(per_class).is_integer() else f"{per_class:.1f}"


def labelled_rows_per_class(prepared: PreparedData, limit: int | None = None) -> float:
    """Training rows per class, counting a validation split carved from them (the route would train on it), at most
    `limit` (`max_train_samples`) rows in all."""
    rows = len(prepared.datasets["train"])
    if prepared.summary.get("validation_carved_from_train"):
        rows += len(_carved_rows(prepared))
    return (rows if limit is None else min(rows, limit)) / max(len(prepared.label_names), 1)


def _carved_rows(prepared: PreparedData):
    """The validation split carved from train, every row of it (before `max_eval_samples` cut it)."""
    uncut = prepared.uncut_carved_validation
    return uncut if uncut is not None else prepared.datasets["validation"]


def decide_few_shot(plan, model_args, adapter_args, args, max_train_samples: int | None = None) -> FewShotDecision:
    """Whether `hf-transfer train` takes the few-shot route (on at most `max_train_samples` rows); `few_shot: true`
    with a conflict is a ConfigError.

    `auto` takes it for single-label data under `few_shot_max_rows_per_class` rows per class on a sentence-transformers
    model with mean pooling (what the route's head reads), unless an option of the ordinary fine-tune is set."""
    requested = str(args.few_shot)
    per_class = labelled_rows_per_class(plan.prepared, max_train_samples)
    if requested == "false":
        return FewShotDecision(False, requested, "switched off", per_class)
    conflicts = _conflicts(plan, adapter_args, args)
    threshold, m = args.few_shot_max_rows_per_class, model_args

    def already_routed() -> list[str]:  # a second route run appended another block, pooling the first one's output
        block = saved_mean_pooling_block(m.model_name_or_path, plan.config, revision=m.model_revision,
                                         cache_dir=m.cache_dir)  # fmt: skip
        return [] if block is None else [f"the model came out of the few-shot route (block {block} is its "
                                         "mean-pooling block): train it with few_shot false, or run the route "
                                         "from its base"]  # fmt: skip

    if requested == "true":
        conflicts += already_routed()
        if conflicts:
            raise ConfigError(
                f"few_shot is true but {'; '.join(conflicts)}. Drop few_shot, or the conflicting option."
            )
        return FewShotDecision(True, requested, f"asked for; {_rows(per_class)} training rows per class", per_class)
    if per_class >= threshold:
        reason = f"{_rows(per_class)} training rows per class, not under few_shot_max_rows_per_class {threshold:g}"
        return FewShotDecision(False, requested, reason, per_class)
    pooling = sentence_embedding_pooling(m.model_name_or_path, m.model_revision, m.cache_dir)
    if pooling != "mean_tokens":
        conflicts.append(
            "the base is not a sentence-transformers model with mean pooling"
            + (f" (it pools by {pooling})" if pooling else "")
        )
    else:  # the weights are read only where the route would run (a Hub model's download otherwise)
        conflicts = already_routed() + conflicts
    conflicts += [f"{name} is set (an option of the ordinary fine-tune)" for name in _ordinary_recipe(args)]
    if conflicts:
        reason = f"{_rows(per_class)} rows per class, but {conflicts[0]}"
        return FewShotDecision(False, requested, reason, per_class, passed_over=pooling == "mean_tokens")
    reason = f"{_rows(per_class)} training rows per class < few_shot_max_rows_per_class {threshold:g}"
    cut = (plan.prepared.summary.get("train") or {}).get("cut_by_max_samples") or 0
    whole = per_class + cut / max(len(plan.prepared.label_names), 1)
    if cut and whole >= threshold:  # a smoke run's size flag changed the method: said, with the way back
        reason += (
            f", under max_train_samples {max_train_samples} (the file has {whole:.0f} rows per class on average; "
            "--few_shot false keeps the ordinary fine-tune)"
        )
    return FewShotDecision(True, requested, reason, per_class)


def keep_every_labelled_row(prepared: PreparedData, limit: int | None = None) -> tuple[PreparedData, dict]:
    """The data with a validation split carved from train put back (the route makes no choice on validation data, so
    a carve-out would only cost training rows), still at most `limit` (`max_train_samples`) rows, and the record of
    what was done."""
    if not prepared.summary.get("validation_carved_from_train"):
        return prepared, {
            "held_out": True,
            "policy": "validation data was given: reported only, no choice of the route is made on it",
        }
    import datasets

    splits = dict(prepared.datasets)
    splits.pop("validation")
    splits["train"] = datasets.concatenate_datasets([splits["train"], _carved_rows(prepared)])
    if limit is not None and len(splits["train"]) > limit:  # the train split was cut to it before the put-back
        splits["train"] = splits["train"].select(range(limit))
    summary = {k: v for k, v in prepared.summary.items() if k != "validation"}
    summary["validation_carved_from_train"] = False
    counts = dict.fromkeys(prepared.label_names, 0)
    for label in splits["train"]["labels"]:
        counts[prepared.label_names[label]] += 1
    train = {k: v for k, v in summary["train"].items() if k != "carved_to_validation"}  # nothing moved, in the end
    summary["train"] = {**train, "rows": len(splits["train"]), "label_counts": counts}
    text, pair = prepared.text_column, prepared.text_pair_column
    summary = refresh_rows(splits, text, pair, summary)  # the rows that train, in their order
    record = {
        "held_out": False,
        "policy": "no validation_file: no carve-out, every labelled row trains; the route's recipe is fixed (no "
        "choice is made on validation data), so the run has no held-out score; measure one with "
        "`hf-transfer evaluate` on labelled data",
    }
    prepared = dataclasses.replace(prepared, datasets=datasets.DatasetDict(splits), summary=summary,
                                   uncut_carved_validation=None)  # fmt: skip
    return prepared, record


def add_label_template_rows(prepared: PreparedData, template: str | None, copies: int) -> tuple[PreparedData, dict]:
    """The training split with `copies` rows per class of `template` filled with the label's name ("This sentence is
    {}." -> "This sentence is positive."), as SetFit's templated dataset makes them: the label names' meaning enters
    the body tuning and the head. Only when every label name is a word: with names such as 0/1 or LABEL_0, or with
    sentence pairs, nothing is added (and the record says why)."""
    if not template or not copies:  # switched off: the record says so
        off = "few_shot_label_template none" if not template else "few_shot_template_copies 0"
        return prepared, {"template": template, "rows": 0, "skipped": off}
    import datasets

    def meaningless(name: str) -> bool:  # "This sentence is False." says nothing of the class either
        words = name.strip().lower()
        return not any(c.isalpha() for c in name) or re.fullmatch(r"label[_ -]?\d+|true|false", words) is not None

    skipped = None
    if prepared.text_pair_column:
        skipped = "sentence-pair data: a template sentence has no pair"
    elif any(meaningless(name) for name in prepared.label_names):
        skipped = "a label name is not a word (digits, true/false or LABEL_n)"
    if skipped:
        return prepared, {"template": template, "rows": 0, "skipped": skipped}
    named = list(enumerate(prepared.label_names))
    rows = {prepared.text_column: [], "labels": []}
    for label, name in named:
        rows[prepared.text_column] += [template.format(name.replace("_", " "))] * copies
        rows["labels"] += [label] * copies
    train = prepared.datasets["train"]
    for column in train.column_names:  # any other column of the split: empty for the added rows
        rows.setdefault(column, [None] * len(rows["labels"]))
    extra = datasets.Dataset.from_dict(rows, features=train.features)
    splits = dict(prepared.datasets)
    splits["train"] = datasets.concatenate_datasets([train, extra])
    record = {"template": template, "copies_per_class": copies, "rows": len(extra),
              "labels": [name for _, name in named]}  # fmt: skip
    summary = refresh_rows(splits, prepared.text_column, None, prepared.summary)  # the added rows train too
    return dataclasses.replace(prepared, datasets=datasets.DatasetDict(splits), summary=summary), record
