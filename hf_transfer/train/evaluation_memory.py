"""The validation predictions of Trainer's evaluations during training, kept so that the run's final evaluation does
not run the model over the validation set again when one of them already scored the very weights being saved (the
last epoch's evaluation of an fp32 run, or the best checkpoint's that `load_best_model_at_end` brought back)."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PredictionOutput

EVAL_PREFIX = "eval_"


def kept_checkpoint_step(state) -> int | None:
    """The step of the checkpoint `load_best_model_at_end` loads (`checkpoint-N`). It can differ from
    `state.best_global_step`: with `save_steps` a multiple of `eval_steps`, the best evaluation may fall on a step
    with no checkpoint, and Trainer then keeps the last best one it saved."""
    name = Path(state.best_model_checkpoint or "").name
    prefix, _, step = name.rpartition("-")
    return int(step) if prefix == "checkpoint" and step.isdigit() else None


def kept_checkpoint_epoch(state, args) -> float | None:
    """The epoch of the checkpoint `load_best_model_at_end` loaded, which is the saved model (None when none was):
    gradual unfreezing's stages and the never-trained parameters are that checkpoint's, not the whole run's."""
    step = kept_checkpoint_step(state) if args.load_best_model_at_end else None
    epochs = [e["epoch"] for e in state.log_history if e.get("step") == step and "epoch" in e]
    return epochs[0] if step is not None and epochs else None


def weight_versions(model) -> tuple[int, ...]:
    """The in-place modification counters of the model's parameters: an optimizer step, a loaded checkpoint or a
    bias folded in by calibration changes them, a forward pass does not."""
    return tuple(p._version for p in model.parameters())


class EvaluationMemory(TrainerCallback):
    """Wraps `trainer.compute_metrics` to see each evaluation's predictions, and keeps those of the newest evaluation
    and of the best one so far (and of the best checkpoint saved, where the best evaluation fell between
    checkpoints), by step, with the weights' versions when they were scored and the metrics."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.compute_metrics = trainer.compute_metrics
        self.pending = None
        self.by_step: dict[int, tuple] = {}
        self.versions_after_training: tuple[int, ...] | None = None
        trainer.evaluation_memory = self  # calibration, run after training, looks its validation scores up here too
        if self.compute_metrics is not None:
            trainer.compute_metrics = self
            trainer.add_callback(self)

    def __call__(self, eval_prediction):
        self.pending = eval_prediction
        return self.compute_metrics(eval_prediction)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        pending, self.pending = self.pending, None
        if pending is None or not metrics or f"{EVAL_PREFIX}loss" not in metrics:
            return  # another set (its keys are eval_<name>_...), or no predictions kept
        best = {state.best_global_step, kept_checkpoint_step(state)}  # the same step unless a best went unsaved
        self.by_step = {s: kept for s, kept in self.by_step.items() if s in best}
        scores = {k: v for k, v in metrics.items() if k.startswith(EVAL_PREFIX)}  # not the epoch that log added
        self.by_step[state.global_step] = (pending, scores, weight_versions(self.trainer.model))

    def training_ended(self) -> None:
        """Called once `trainer.train()` returned: a step after it that changes the model (calibration folding its
        offsets into a bias) changes the weights' versions, and no kept evaluation scored those weights."""
        self.versions_after_training = weight_versions(self.trainer.model)

    def final_prediction(self, validation) -> PredictionOutput | None:
        """What `trainer.predict(validation, metric_key_prefix="eval")` would return now, when an evaluation during
        training already scored these weights on this set in fp32; None when the model must be run."""
        trainer = self.trainer
        args, state = trainer.args, trainer.state
        versions_after_training = self.versions_after_training
        if versions_after_training is None or trainer.eval_dataset is not validation:
            return None
        if weight_versions(trainer.model) != versions_after_training:
            return None
        # Evaluations during training run under the run's bf16/fp16 autocast; the final one runs in fp32.
        if args.bf16 or args.fp16 or args.bf16_full_eval or args.fp16_full_eval:
            return None
        loaded_best = bool(args.load_best_model_at_end and state.best_model_checkpoint)
        kept = self.by_step.get(kept_checkpoint_step(state) if loaded_best else state.global_step)
        if kept is None:
            return None
        prediction, scores, versions = kept
        if not loaded_best and versions != versions_after_training:
            return None
        if len(prediction.label_ids) != len(validation):
            return None
        return PredictionOutput(prediction.predictions, prediction.label_ids, dict(scores))
