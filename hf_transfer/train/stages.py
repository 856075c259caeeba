"""What a training run may add around its main fine-tune: class weights from the training rows, LP-FT's linear probe
before it (on the cached trunk, so it costs about one inference pass), early stopping, and decision calibration after
it. Each returns the facts the run record and the card state."""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

from transformers import EarlyStoppingCallback

from hf_transfer.core.caching import fingerprint_texts
from hf_transfer.core.data import PreparedData, carve_split
from hf_transfer.core.folders import LINEAR_PROBE_DIR, LINEAR_PROBE_RECORD, json_text, write_text_atomic
from hf_transfer.core.freezing import FreezePlan
from hf_transfer.core.losses import resolve_class_weights
from hf_transfer.core.metrics import classification_metrics, metric_names
from hf_transfer.core.models import meta_layout
from hf_transfer.core.runtime import score_in_fp32
from hf_transfer.core.tasks import MULTI_LABEL, predicted_labels
from hf_transfer.errors import ConfigError
from hf_transfer.train.calibration import fit_offsets, fold_into_bias, macro_f1, output_layer
from hf_transfer.train.evaluation_memory import kept_checkpoint_step
from hf_transfer.train.feature_cache import (
    SUPPORTED_MODEL_TYPES,
    FrozenFeatureCollator,
    trunk_depth,
    with_frozen_features,
)
from hf_transfer.train.trainer import TransferTrainer

CALIBRATION_SPLIT = "calibration"
logger = logging.getLogger(__name__)

# Fields that tune a quality option and do nothing without it: {field: (the option, whether it is on)}.
QUALITY_SUBFIELDS = {
    "early_stopping_threshold": ("early_stopping_patience", lambda a: a.early_stopping_patience is not None),
    "linear_probe_learning_rate": ("linear_probe_epochs", lambda a: bool(a.linear_probe_epochs)),
    "calibration_split_percentage": ("calibrate_decision", lambda a: a.calibrate_decision is not None),
}


# --- before any weights load ----------------------------------------------------------------------------------------


def warn_ignored_quality_fields(args) -> None:
    """A one-line warning for each field of a quality option given (config or flag) while the option is off: it was
    accepted and ignored, silently. Not refused: a config's option switched off by a flag is fine."""
    given = getattr(args, "chosen_fields", None)  # set by the command-line parser
    for name, (option, on) in QUALITY_SUBFIELDS.items():
        if given is not None and name in given and not on(args):
            logger.warning("%s set but ignored: %s is not set, and %s only tunes it.", name, option, name)


def class_weights_for(args, prepared: PreparedData) -> list[float] | None:
    """`class_weights` resolved against the training rows' label counts (one-line errors for bad label names)."""
    if args.class_weights is None:
        return None
    train = prepared.summary.get("train", {})
    rows = train.get("rows") if prepared.problem_type == MULTI_LABEL else None
    return resolve_class_weights(args.class_weights, prepared.label_names, train.get("label_counts") or {}, rows)


def check_best_metric(args, prepared: PreparedData) -> None:
    """`metric_for_best_model` names a metric the evaluations compute (Trainer raised a KeyError at the first
    evaluation, after training steps were spent)."""
    wanted = args.metric_for_best_model
    if wanted is None:
        return
    name = wanted[len("eval_") :] if wanted.startswith("eval_") else wanted
    computed = ["loss", *metric_names(prepared.label_names, prepared.problem_type)]
    if name not in computed:
        kind = "multi-label" if prepared.problem_type == MULTI_LABEL else "single-label"
        raise ConfigError(
            f"metric_for_best_model {wanted!r} is not computed for this {kind} data; use one of {', '.join(computed)}."
        )


def split_seed(args) -> int:
    """The seed of the validation and calibration carve-outs: `data_seed` when set (as `Trainer`'s sampler takes
    it), so runs that vary `seed` alone hold out the same rows; else `seed`."""
    return args.data_seed if args.data_seed is not None else args.seed


def with_calibration_split(prepared: PreparedData, args, config) -> PreparedData:
    """Train with `calibration_split_percentage` carved out for `calibrate_decision`, checked to hold every class,
    and the model's output layer checked to have a bias to fold the offsets into."""
    if not args.calibrate_decision:
        return prepared
    output_layer(_meta_model(config), config.num_labels, meta_layout(config, need_blocks=False).head)
    carved = carve_split(prepared, CALIBRATION_SPLIT, args.calibration_split_percentage, split_seed(args))
    carved.summary[CALIBRATION_SPLIT]["seed"] = split_seed(args)
    counts = carved.summary[CALIBRATION_SPLIT]["label_counts"]
    empty = [name for name in prepared.label_names if not counts.get(name)]
    if empty:  # stratified (core.splits): a label of under 2 training rows misses it (multi-label: rarely, more)
        rows = {name: carved.summary["train"]["label_counts"].get(name, 0) for name in empty}
        raise ConfigError(
            f"calibrate_decision needs rows of every label in its calibration split, but it holds none of {empty} "
            f"(training rows per label: {rows}; a label's only row stays in train); add training rows of them, or "
            "drop calibrate_decision."
        )
    return carved


def _meta_model(config):
    from hf_transfer.core.models import meta_classifier

    return meta_classifier(config)


def early_stopping_callbacks(args) -> list:
    """Early stopping with this run's patience and threshold. A resumed run goes on counting the evaluations without
    improvement that its checkpoint recorded: Trainer restores callback state only with
    `restore_callback_states_from_checkpoint`, which would also bring back the checkpoint's patience and threshold,
    so the count started again at 0 and the run trained `patience` evaluations longer than the one never stopped."""
    if args.early_stopping_patience is None:
        return []
    callback = EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold)
    callback.early_stopping_patience_counter = _saved_patience_count(args.resume_from_checkpoint)
    return [callback]


def _saved_patience_count(checkpoint: str | None) -> int:
    """The count of evaluations without improvement that `checkpoint`'s `trainer_state.json` holds (0 without one)."""
    if not checkpoint:
        return 0
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_bytes())
    except (OSError, ValueError):
        return 0
    saved = (state.get("stateful_callbacks") or {}).get(EarlyStoppingCallback.__name__) or {}
    saved = saved[0] if isinstance(saved, list) and saved else saved
    count = (saved.get("attributes") or {}).get("early_stopping_patience_counter") if isinstance(saved, dict) else 0
    return count if isinstance(count, int) else 0


# --- LP-FT: the linear probe ----------------------------------------------------------------------------------------


def _probe_arguments(args):
    """The run's arguments for the probe stage: its epochs and learning rate, no evaluation, no checkpoints."""
    probe = copy.copy(args)
    probe.num_train_epochs = args.linear_probe_epochs
    probe.learning_rate = args.linear_probe_learning_rate
    probe.eval_strategy = probe.save_strategy = "no"
    probe.load_best_model_at_end = False
    probe.remove_unused_columns = False
    probe.report_to = []
    probe.max_steps = -1
    return probe


def run_linear_probe(model, plan, tokenized, data_args, args, class_weights, compute_metrics) -> dict:
    """Train the head alone on the frozen trunk's cached output (the trunk runs once over the training rows), then
    score it on validation and save it to `output_dir/linear_probe`: the LP end for `hf-transfer merge`. A resumed
    run does not train it again: the checkpoint holds the weights after it, and its figures are read back."""
    folder = Path(args.output_dir) / LINEAR_PROBE_DIR
    if args.resume_from_checkpoint and (folder / LINEAR_PROBE_RECORD).is_file():
        return {"linear_probe": {**json.loads((folder / LINEAR_PROBE_RECORD).read_bytes()), "resumed": True}}
    started = time.perf_counter()
    layout = plan.freeze_plan.layout
    # The user's freeze_patterns hold in the probe too (a frozen pooler trained there, recorded as never trained).
    probe_plan = FreezePlan.resolve(layout, train_head_only=True, freeze_patterns=args.freeze_patterns)
    probe_args = _probe_arguments(args)
    train, collator, depth, cache = tokenized["train"], None, None, None
    if model.config.model_type in SUPPORTED_MODEL_TYPES:
        depth = trunk_depth(layout, probe_plan.frozen)
        split = plan.prepared.datasets["train"]
        pairs = split[plan.prepared.text_pair_column] if plan.prepared.text_pair_column else None
        with args.main_process_first(desc="linear-probe features"):
            train, features, cache = with_frozen_features(
                model.to(args.device),
                layout,
                depth,
                tokenized["train"],
                plan.tokenizer,
                data_fingerprint=fingerprint_texts(split[plan.prepared.text_column], pairs),
                max_seq_length=data_args.max_seq_length,
                dtype=args.frozen_features_dtype,
                cache_dir=args.frozen_features_cache_dir,
                batch_size=args.per_device_eval_batch_size,
                progress=not args.disable_tqdm,
            )
        collator = FrozenFeatureCollator(plan.tokenizer, features)
    trainer = TransferTrainer(
        model=model,
        args=probe_args,
        train_dataset=train,
        eval_dataset=tokenized["validation"],
        processing_class=plan.tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        problem_type=plan.prepared.problem_type,
        freeze_plan=probe_plan,
        frozen_trunk_depth=depth,
        class_weights=class_weights,
    )
    trainer.train()
    score_in_fp32(trainer.model)  # the probe saved below is scored as its float32 weights load
    trainer.args.dataloader_drop_last = False  # every validation row is scored (the flag is for training batches)
    metrics = trainer.evaluate(tokenized["validation"])
    record = {
        "epochs": args.linear_probe_epochs,
        "learning_rate": args.linear_probe_learning_rate,
        "on_cached_trunk": depth is not None,
        "feature_cache": cache,
        "eval_accuracy": metrics.get("eval_accuracy"),
        **({"eval_subset_accuracy": metrics["eval_subset_accuracy"]} if "eval_subset_accuracy" in metrics else {}),
        "eval_f1_macro": metrics.get("eval_f1_macro"),
        "seconds": round(time.perf_counter() - started, 2),
        "saved_to": LINEAR_PROBE_DIR,
    }
    if trainer.is_world_process_zero():
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(folder)
        plan.tokenizer.save_pretrained(folder)
        write_text_atomic(folder / LINEAR_PROBE_RECORD, json_text(record, indent=2))
    return {"linear_probe": record}


# --- after training -------------------------------------------------------------------------------------------------


def calibrate(trainer, tokenized, prepared: PreparedData) -> dict:
    """Fit the offsets (thresholds) on the calibration split and fold them into the output layer's bias; the
    validation scores before are recorded here, those after are the run's final evaluation."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    names, problem_type = prepared.label_names, prepared.problem_type
    calibration = trainer.predict(tokenized[CALIBRATION_SPLIT], metric_key_prefix="calibration")
    # The trained weights' validation scores: those of the last evaluation during training when it scored them, else
    # the final evaluation's less the offsets (`say_calibration_cost`): a pass over validation of its own was spared.
    memory = getattr(trainer, "evaluation_memory", None)
    before = memory.final_prediction(tokenized["validation"]) if memory is not None else None
    before = before.metrics if before is not None else {}
    logits = calibration.predictions[0] if isinstance(calibration.predictions, tuple) else calibration.predictions
    offsets = fit_offsets(logits, calibration.label_ids, problem_type)
    _say_few_calibration_rows(calibration.label_ids, names, trainer.args.calibration_split_percentage)
    name, layer = output_layer(model, len(names), trainer.layout.head)
    fold_into_bias(layer, offsets)
    refs = calibration.label_ids

    def f1(values):  # macro over the classes present, as `core.metrics` averages (one multi-label label: its F1)
        return macro_f1(values, refs, problem_type)

    scalar = {k[len("eval_") :]: v for k, v in before.items() if k.startswith("eval_") and isinstance(v, float)}
    return {
        "calibration": {
            "method": trainer.args.calibrate_decision,
            "kind": "per-label thresholds" if problem_type == MULTI_LABEL else "per-class logit offsets",
            "offsets": {label: round(float(v), 6) for label, v in zip(names, offsets, strict=True)},
            "folded_into": f"{name}.bias",
            "calibration_rows": len(tokenized[CALIBRATION_SPLIT]),
            "calibration_f1_macro_before": f1(logits),
            "calibration_f1_macro_after": f1(logits + offsets),
            "validation_before": _before_scores(scalar) if scalar else None,
        }
    }


def _before_scores(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k in ("accuracy", "f1_macro") or "recall_" in k}


# Below this many rows of a class (positive rows of a label) in the calibration split, its offset rests on a handful
# of decisions: said, since the saved model carries it.
FEW_CALIBRATION_ROWS = 10


def _say_few_calibration_rows(label_ids, names: list[str], percentage: int) -> None:
    import numpy as np

    ids = np.asarray(label_ids)
    counts = ids.sum(axis=0) if ids.ndim == 2 else np.bincount(ids.astype(int), minlength=len(names))
    fewest = int(np.argmin(counts))
    if counts[fewest] < FEW_CALIBRATION_ROWS:
        logger.warning(
            f"calibrate_decision fitted its offsets on {len(ids)} carved rows, {int(counts[fewest])} of them "
            f"{names[fewest]!r}: offsets from so few rows are noisy; a larger calibration_split_percentage (now "
            f"{percentage}) steadies them."
        )


def training_steps(args, tokenized, prepared: PreparedData, class_weights, before: dict | None = None):
    """The `after_train` step of `fit_and_report`: the facts of the stages around the main fine-tune (`before`: those
    of the stages before it, LP-FT's probe or the few-shot route passed over), and the calibration, which changes the
    model before its final evaluation."""

    def after_train(trainer) -> dict:
        facts = dict(before or {})
        if "linear_probe" in facts:  # 0 when num_train_epochs is 0: the saved model is the probe itself
            facts["linear_probe"] = {**facts["linear_probe"], "fine_tune_steps": trainer.state.global_step}
        if class_weights is not None:
            facts["class_weights"] = dict(zip(prepared.label_names, class_weights, strict=True))
        facts.update(stopping_facts(trainer))
        if args.calibrate_decision:
            facts.update(calibrate(trainer, tokenized, prepared))
        return facts

    return after_train


def stopping_facts(trainer) -> dict:
    """Where early stopping stopped, and which checkpoint `load_best_model_at_end` kept (the saved model is that
    checkpoint's, not the last step's)."""
    args, state = trainer.args, trainer.state
    facts = {}
    best = state.best_model_checkpoint
    if args.load_best_model_at_end and best:
        # The checkpoint's own step and score: the best evaluation may have fallen on a step with no checkpoint
        # (save_steps a multiple of eval_steps), and Trainer then loads the last best checkpoint it saved.
        step = kept_checkpoint_step(state) or state.best_global_step
        logged = next((e for e in state.log_history if "eval_loss" in e and e.get("step") == step), {})
        metric = args.metric_for_best_model or "loss"
        value = logged.get(metric if metric.startswith("eval_") else f"eval_{metric}", state.best_metric)
        facts["best_model"] = {
            "checkpoint": Path(best).name,
            "step": step,
            "epoch": logged.get("epoch"),
            "metric": args.metric_for_best_model,
            "greater_is_better": args.greater_is_better,
            "value": value,
            "last_step": state.global_step,
        }
        if state.best_global_step is not None and state.best_global_step != step:
            unsaved = {"step": state.best_global_step, "value": state.best_metric}
            facts["best_model"]["best_evaluation_unsaved"] = unsaved
            logger.warning(
                f"The best {metric} ({state.best_metric:.4g}) was at step {state.best_global_step}, which saved no "
                f"checkpoint (save_steps {args.save_steps}, eval_steps {args.eval_steps}): the model kept is "
                f"{Path(best).name}'s; equal save_steps and eval_steps keep the best evaluation's."
            )
    if args.early_stopping_patience is None:
        return facts
    return {
        **facts,
        "early_stopping": {
            "patience": args.early_stopping_patience,
            "threshold": args.early_stopping_threshold,
            "metric": args.metric_for_best_model,
            "stopped_early": state.global_step < state.max_steps,
            "epochs_trained": round(state.epoch or 0.0, 2),
            "steps_trained": state.global_step,
            "max_steps": state.max_steps,
            "best_checkpoint": Path(best).name if best else None,
            "best_metric": state.best_metric,
        },
    }


def say_calibration_cost(calibration: dict | None, eval_metrics: dict, prediction, prepared: PreparedData) -> None:
    """Offsets fitted on a few carved rows can lower validation macro-F1; the calibrated model is still the one
    saved (choosing by the validation rows would tune on what is reported), but not without a word. The validation
    scores before the offsets, when no evaluation during training gave them, are the final prediction's logits less
    the offsets (equal to the trained weights' up to float rounding of the folded bias)."""
    if calibration and calibration.get("validation_before") is None and prediction is not None:
        import numpy as np

        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        offsets = np.asarray(list(calibration["offsets"].values()), dtype=np.float64)
        predicted = predicted_labels(np.asarray(logits, dtype=np.float64) - offsets, prepared.problem_type)
        scores = classification_metrics(predicted, prediction.label_ids, prepared.label_names, prepared.problem_type)
        calibration["validation_before"] = _before_scores({k: v for k, v in scores.items() if isinstance(v, float)})
    before = ((calibration or {}).get("validation_before") or {}).get("f1_macro")
    after = eval_metrics.get("eval_f1_macro")
    if before is not None and after is not None and after < before:
        logger.warning(
            f"calibrate_decision lowered validation macro-F1 from {before:.4f} to {after:.4f} (offsets fitted on "
            f"{calibration['calibration_rows']} carved rows); the calibrated model is saved. A larger "
            "calibration_split_percentage steadies the offsets; without calibrate_decision nothing is changed."
        )
