"""The callbacks `TransferTrainer` adds: gradual unfreezing, heap trimming, and evaluations that leave the random
state as they found it; and the one that fills the model card's data while training runs."""

from __future__ import annotations

import logging
import math

import torch
from transformers import Trainer, TrainerCallback

from hf_transfer.core.freezing import apply_freeze, trainable_at_epoch, unreached_unfreezing
from hf_transfer.core.inference import keep_position_padding
from hf_transfer.core.memory import trim_freed_memory
from hf_transfer.core.runtime import precision_name, raise_if_signalled
from hf_transfer.outputs.card_data import CardData, epoch_row, hyperparameters_of
from hf_transfer.train.few_shot_choice import FEW_SHOT_REPLACES

logger = logging.getLogger(__name__)


class TrimMemoryCallback(TrainerCallback):
    """`trim_memory_each_step`: trim the heap after every optimizer step and every accumulated micro-batch."""

    def on_substep_end(self, args, state, control, **kwargs):
        trim_freed_memory()

    def on_step_end(self, args, state, control, **kwargs):
        trim_freed_memory()


class StopWhenSignalled(TrainerCallback):
    """Ctrl-C or SIGTERM stops the run at the next step (or micro-batch) also when the interrupt raised by the signal
    was swallowed: raised inside a weakref callback, Python prints "Exception ignored" and training went on."""

    def on_substep_end(self, args, state, control, **kwargs):
        raise_if_signalled()

    def on_step_end(self, args, state, control, **kwargs):
        raise_if_signalled()


class KeepPositionPadding(TrainerCallback):
    """`Trainer.train()` sets the config's pad id to the tokenizer's before the loop; for models whose positions
    count from the pad id their embeddings were built with, every save (checkpoints too) keeps that one instead
    (`core.inference.keep_position_padding`: a folder saved with the tokenizer's read every position one place off)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            keep_position_padding(model)


class TrainLossOverProcesses(TrainerCallback):
    """The end-of-training figures carry `train_loss`, which under DDP Trainer adds up over the steps since the last
    log from this process's rows alone (its logged losses are means over processes): 2 processes printed 0.6971 where
    one process with the same global batch gives 0.6950. Each process's figure holds the same logged part and its own
    unlogged part, so their mean is the run's. Put first among the callbacks, it mends the figure before Trainer's
    printer shows it; `train()`'s metrics are the same dict, and the log's entry is mended too."""

    def __init__(self, accelerator):
        self.accelerator = accelerator

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or logs.get("train_loss") is None:
            return
        local = torch.tensor(float(logs["train_loss"]), dtype=torch.float64, device=args.device)
        logs["train_loss"] = self.accelerator.reduce(local, reduction="mean").item()
        if state.log_history and "train_loss" in state.log_history[-1]:
            state.log_history[-1]["train_loss"] = logs["train_loss"]


class EvaluationKeepsRandomState(TrainerCallback):
    """An evaluation during training leaves torch's random state as it found it (each evaluation's data loader draws
    a seed from it), so training goes on as it would have without the evaluation: turning evaluation on does not change
    the trained weights, and a run resumed from a checkpoint saved just before an evaluation (a step checkpoint at the
    end of an epoch that `eval_strategy: epoch` then evaluates) continues exactly as the uninterrupted run."""

    def __init__(self):
        self.saved = None

    def _remember(self, control) -> None:
        if control.should_evaluate:
            cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
            self.saved = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None)

    def on_step_end(self, args, state, control, **kwargs):
        self._remember(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._remember(control)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.saved is not None:  # every evaluation of the step (one per validation set) is undone
            torch.set_rng_state(self.saved[0])
            if self.saved[1] is not None:
                torch.cuda.set_rng_state_all(self.saved[1])

    def on_step_begin(self, args, state, control, **kwargs):
        self.saved = None

    def on_train_end(self, args, state, control, **kwargs):
        self.saved = None


class EvaluationKeepsEveryRow(TrainerCallback):
    """`dataloader_drop_last` drops the last incomplete batch of training; Trainer dropped it from every evaluation
    too, so the metrics counted fewer rows than eval_samples said. Evaluations during training read every row (the
    training batches are drawn by then); after training, `fit_and_report` scores every row the same way."""

    def __init__(self):
        self.dropping = False

    def _evaluating(self, args, evaluates: bool) -> None:
        if evaluates and args.dataloader_drop_last:
            args.dataloader_drop_last, self.dropping = False, True

    def _back(self, args) -> None:
        if self.dropping:
            args.dataloader_drop_last, self.dropping = True, False

    def on_train_begin(self, args, state, control, **kwargs):
        self._evaluating(args, args.eval_on_start)

    def on_step_end(self, args, state, control, **kwargs):
        self._evaluating(args, control.should_evaluate)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._evaluating(args, control.should_evaluate)

    def on_step_begin(self, args, state, control, **kwargs):
        self._back(args)

    def on_train_end(self, args, state, control, **kwargs):
        self._back(args)


class GradualUnfreezingCallback(TrainerCallback):
    """Releases one more block from the top every `gradual_unfreezing` epochs (ULMFiT)."""

    def __init__(self, trainer: Trainer):  # a TransferTrainer
        self.trainer = trainer
        self.history: list[tuple[int, int]] = []  # (epoch, number of trainable parameter tensors)

    def on_train_begin(self, args, state, control, **kwargs):
        # With max_steps the epochs are known only now (the pre-flight said it for num_train_epochs).
        epochs = state.num_train_epochs
        if args.max_steps > 0 and (
            line := unreached_unfreezing(self.trainer.freeze_plan, args.gradual_unfreezing, epochs)
        ):
            logger.warning("%s (max_steps %d spans %d epoch(s) of this data.)", line, args.max_steps, epochs)

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = math.floor((state.epoch or 0.0) + 1e-6)
        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        trainable = trainable_at_epoch(list(trainer.freeze_plan.stages), epoch, args.gradual_unfreezing)
        apply_freeze(model, {n for n, _ in model.named_parameters()} - trainable, trainer.layout)
        self.history.append((epoch, len(trainable)))


class CardDataCallback(TrainerCallback):
    """Fills `CardData` while `Trainer` runs: the hyperparameters when training starts and a row per evaluation (the
    unfreezing schedule is the freeze plan's, set after training: see `core.freezing.unfreezing_schedule`)."""

    def __init__(self, card_data: CardData | None = None):
        self.card_data = card_data or CardData()
        self._train_loss = None

    def on_train_begin(self, args, state, control, **kwargs):
        values = args.to_dict()
        if getattr(args, "few_shot_body", False):  # passes over labelled + template rows, a warmup ratio: the
            values = {k: v for k, v in values.items() if k not in FEW_SHOT_REPLACES}  # route's table says them
            values["max_steps"] = getattr(args, "user_max_steps", values["max_steps"])
        self.card_data.hyperparameters = hyperparameters_of(values)
        self.card_data.precision = precision_name(args)
        self.card_data.world_size = args.world_size

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._train_loss = logs["loss"]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics:
            self.card_data.epochs.append(epoch_row(state.epoch, state.global_step, self._train_loss, metrics))
