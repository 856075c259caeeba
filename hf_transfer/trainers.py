"""`TransferTrainer`: `Trainer` with a freeze plan, gradual unfreezing, layer-wise LR decay and an exact loss."""

from __future__ import annotations

import math
import os

from transformers import Trainer, TrainerCallback

from .adapters import adapter_callbacks, check_freeze_conflicts, is_peft_model
from .config import ConfigError, TransferTrainingArguments
from .feature_cache import FEATURE_COLUMN, cached_trunk, trunk_depth
from .freezing import (
    apply_freeze,
    count_parameters,
    layerwise_lr_groups,
    resolve_frozen_parameters,
    trainable_at_epoch,
    unfreezing_stages,
)
from .layers import discover_layers
from .losses import SINGLE_LABEL, classification_loss_sum, count_loss_items


class TransferTrainer(Trainer):
    """A `Trainer` for transfer learning on sequence classification.

    It freezes what `TransferTrainingArguments` asks, unfreezes on the ULMFiT schedule, builds layer-wise LR groups,
    and computes its own loss: the sum of per-item losses divided by the number of labelled items in the whole
    accumulated batch (across all processes when `average_tokens_across_devices`, the default). So batch 8 ×
    accumulation 1 and batch 4 × accumulation 2 give the same gradients, where stock `Trainer` scales BERT's mean
    loss by the accumulation steps twice over.
    """

    args: TransferTrainingArguments

    def __init__(self, *args, problem_type: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, TransferTrainingArguments):
            raise TypeError(f"TransferTrainer needs TransferTrainingArguments, got {type(self.args).__name__}.")
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1 and self.accelerator.num_processes != launched:
            raise ConfigError(
                f"{launched} processes were launched but accelerate joined {self.accelerator.num_processes}; each "
                "would train alone on all the data. On CPU pass --use_cpu true (or launch with the shipped "
                "scripts/accelerate/ddp_cpu.yaml)."
            )
        model = self.accelerator.unwrap_model(self.model)
        self.problem_type = problem_type or getattr(model.config, "problem_type", None) or SINGLE_LABEL
        # Our compute_loss normalises by num_items_in_batch itself: have Trainer count the items (it does so only
        # for models that "accept loss kwargs") and not divide by the accumulation steps again.
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self.layout = discover_layers(model)
        self._apply_freeze_plan(model)
        self.frozen_trunk_depth = None
        if self.args.cache_frozen_features and not is_peft_model(model):
            self.frozen_trunk_depth = trunk_depth(self.layout, self.permanently_frozen)
        if self.args.gradual_unfreezing:
            self.add_callback(GradualUnfreezingCallback(self))
        for callback in adapter_callbacks(model) if is_peft_model(model) else ():
            self.add_callback(callback)

    # --- construction steps -------------------------------------------------------------------------------------

    def _apply_freeze_plan(self, model) -> None:
        a = self.args
        if is_peft_model(model):
            # PEFT froze the base and left the adapter and the saved head trainable: that is the whole plan.
            check_freeze_conflicts(model.peft_config[model.active_adapter].peft_type.value.lower(), a)
            self.permanently_frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
            self.unfreeze_stages = []
            return
        self.permanently_frozen = resolve_frozen_parameters(
            self.layout,
            freeze_embeddings=a.freeze_embeddings,
            freeze_layers=a.freeze_layers,
            freeze_patterns=a.freeze_patterns,
            train_head_only=a.train_head_only,
        )
        all_names = {name for name, _ in model.named_parameters()}
        self.unfreeze_stages = unfreezing_stages(self.layout, self.permanently_frozen) if a.gradual_unfreezing else []
        if self.unfreeze_stages:
            apply_freeze(model, all_names - self.unfreeze_stages[0])
        else:
            apply_freeze(model, self.permanently_frozen)

    def freeze_summary(self) -> dict:
        """Plain facts about the freeze plan, for the run record and the card."""
        model = self.accelerator.unwrap_model(self.model)
        trainable, frozen = count_parameters(model)
        return {
            "depth": self.layout.depth,
            "freeze_embeddings": self.args.freeze_embeddings,
            "freeze_layers": self.args.freeze_layers,
            "freeze_patterns": self.args.freeze_patterns,
            "train_head_only": self.args.train_head_only,
            "gradual_unfreezing": self.args.gradual_unfreezing,
            "layerwise_lr_decay": self.args.layerwise_lr_decay,
            "permanently_frozen_parameters": sum(
                p.numel() for n, p in model.named_parameters() if n in self.permanently_frozen
            ),
            "trainable_parameters_now": trainable,
            "frozen_parameters_now": frozen,
        }

    # --- Trainer hooks ------------------------------------------------------------------------------------------

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if getattr(self, "frozen_trunk_depth", None) and FEATURE_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, FEATURE_COLUMN]

    def create_optimizer(self, model=None):
        a = self.args
        if self.optimizer is not None or (a.layerwise_lr_decay == 1.0 and not a.gradual_unfreezing):
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        named = dict(opt_model.named_parameters())
        # Parameters that gradual unfreezing will release later must already be in the optimizer: stock Trainer
        # only registers `requires_grad` ones, so blocks unfrozen later would never be updated. Frozen ones have no
        # gradient and AdamW skips them (no step, no weight decay), so they stay bit-identical while frozen.
        will_train = set().union(*self.unfreeze_stages) if self.unfreeze_stages else set()
        names = [n for n, p in named.items() if p.requires_grad or n in will_train]
        decay = set(self.get_decay_parameter_names(opt_model))
        groups = layerwise_lr_groups(
            self.layout,
            names,
            base_lr=a.learning_rate,
            gamma=a.layerwise_lr_decay,
            weight_decay=a.weight_decay,
            no_decay={n for n in names if n not in decay},
        )
        param_groups = [
            {"params": [named[n] for n in g["names"]], "lr": g["lr"], "weight_decay": g["weight_decay"]}
            for g in groups
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(a, opt_model)
        optimizer_kwargs.pop("params", None)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        cached = inputs.pop(FEATURE_COLUMN, None)
        if cached is None:
            outputs = model(**inputs)
        else:
            # Training rows carry the frozen trunk's output: run only the blocks above it (see feature_cache.py).
            unwrapped = self.accelerator.unwrap_model(model)
            cached = cached.to(next(unwrapped.parameters()).dtype)
            with cached_trunk(unwrapped, self.layout, self.frozen_trunk_depth, cached):
                outputs = model(**inputs)
        loss_sum = classification_loss_sum(
            outputs.logits, labels, self.problem_type, label_smoothing=self.args.label_smoothing_factor
        )
        loss = self.normalise_loss(loss_sum, labels, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def normalise_loss(self, loss_sum, labels, num_items_in_batch):
        """A summed loss divided so that its gradient is the mean over the whole accumulated, all-device batch."""
        if num_items_in_batch is None:
            # Evaluation, or a caller that did not count: the mean over this batch.
            return loss_sum / count_loss_items(labels).clamp(min=1)
        loss = loss_sum / num_items_in_batch
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            # num_items_in_batch counts every process's items; DDP averages gradients over processes.
            loss = loss * self.accelerator.num_processes
        return loss


class GradualUnfreezingCallback(TrainerCallback):
    """Releases one more block from the top every `gradual_unfreezing` epochs (ULMFiT)."""

    def __init__(self, trainer: TransferTrainer):
        self.trainer = trainer
        self.history: list[tuple[int, int]] = []  # (epoch, number of trainable parameter tensors)

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = math.floor((state.epoch or 0.0) + 1e-6)
        trainer = self.trainer
        model = trainer.accelerator.unwrap_model(trainer.model)
        trainable = trainable_at_epoch(trainer.unfreeze_stages, epoch, args.gradual_unfreezing)
        apply_freeze(model, {n for n, _ in model.named_parameters()} - trainable)
        self.history.append((epoch, len(trainable)))
