"""`TransferTrainer`: `Trainer` with a freeze plan, gradual unfreezing, layer-wise LR decay and an exact loss."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn
from transformers import Trainer

from hf_transfer.adapters.peft_model import adapter_callbacks, is_peft_model, trainable_parameters
from hf_transfer.adapters.plan import check_freeze_conflicts
from hf_transfer.core.freezing import (
    FreezePlan,
    check_blocks_found,
    check_one_block_stack,
    count_parameters,
    layerwise_lr_groups,
    stages_reached,
    unreached_unfreezing,
    warn_shared_blocks,
)
from hf_transfer.core.layers import discover_layers
from hf_transfer.core.losses import LossNormaliser, classification_loss_sum, mean_row_weight
from hf_transfer.core.runtime import launched_world_size
from hf_transfer.core.tasks import SINGLE_LABEL
from hf_transfer.errors import ConfigError
from hf_transfer.train.arguments import TransferTrainingArguments
from hf_transfer.train.callbacks import (
    EvaluationKeepsEveryRow,
    EvaluationKeepsRandomState,
    GradualUnfreezingCallback,
    KeepPositionPadding,
    StopWhenSignalled,
    TrainLossOverProcesses,
    TrimMemoryCallback,
)
from hf_transfer.train.feature_cache import FEATURE_COLUMN, cached_trunk
from hf_transfer.train.resume_order import ORDER_FILE, CheckpointFiles, ResumeOrder

logger = logging.getLogger(__name__)
# In a training batch, how many leading rows are the epoch's own where the rest are accelerate's padding (DDP).
REAL_ROWS = "_hf_transfer_real_rows"


def freeze_plan_from_arguments(layout, args: TransferTrainingArguments) -> FreezePlan:
    """The freeze plan `args` ask for, on `layout` (best resolved on a meta-device model, before weights load)."""
    check_blocks_found(
        layout,
        {
            "freeze_embeddings": args.freeze_embeddings and not layout.embeddings,
            "freeze_layers": args.freeze_layers not in (None, 0, []),
            "train_head_only": args.train_head_only,
            "gradual_unfreezing": bool(args.gradual_unfreezing),
            "layerwise_lr_decay": args.layerwise_lr_decay != 1.0,
            "linear_probe_epochs": bool(args.linear_probe_epochs),
            "cache_frozen_features": args.cache_frozen_features,
        },
    )
    warn_shared_blocks(
        layout,
        {"gradual_unfreezing": bool(args.gradual_unfreezing), "layerwise_lr_decay": args.layerwise_lr_decay != 1.0},
    )
    check_one_block_stack(
        layout,
        {
            "train_head_only": args.train_head_only,
            "gradual_unfreezing": bool(args.gradual_unfreezing),
            "layerwise_lr_decay": args.layerwise_lr_decay != 1.0,
            "linear_probe_epochs": bool(args.linear_probe_epochs),
        },
    )
    plan = FreezePlan.resolve(
        layout,
        freeze_embeddings=args.freeze_embeddings,
        freeze_layers=args.freeze_layers,
        freeze_patterns=args.freeze_patterns,
        train_head_only=args.train_head_only,
        gradual_unfreezing=args.gradual_unfreezing,
    )
    # Said before any weight loads when the epochs are given; with max_steps, once Trainer counts them (callbacks.py).
    if args.max_steps <= 0 and (line := unreached_unfreezing(plan, args.gradual_unfreezing, args.num_train_epochs)):
        logger.warning(line)
    return plan


# LoRA's B matrices (PEFT's names), which LoRA+ trains at a higher learning rate than the rest.
LORA_B_PARTS = (".lora_B.", ".lora_embedding_B.")


def parameter_groups(
    model: nn.Module,
    args: TransferTrainingArguments,
    plan: FreezePlan,
    decay_names,
    extra: nn.Module | None = None,
    lora_b_lr_ratio: float = 1.0,
) -> list[dict]:
    """Optimizer groups with layer-wise LR decay over what will train at some point of the run, plus `extra`'s
    parameters (e.g. a distillation projection) at the base LR. With `lora_b_lr_ratio` (LoRA+), LoRA's B matrices
    get their group's LR times the ratio.

    Parameters that gradual unfreezing releases later are in the optimizer from the start: while frozen they get no
    gradient, so AdamW skips them (no step, no weight decay) and they stay bit-identical."""
    named = dict(model.named_parameters())
    will_train = plan.will_train
    names = [n for n, p in named.items() if p.requires_grad or n in will_train]
    decay = set(decay_names)
    groups = layerwise_lr_groups(
        plan.layout,
        names,
        base_lr=args.learning_rate,
        gamma=args.layerwise_lr_decay,
        weight_decay=args.weight_decay,
        no_decay={n for n in names if n not in decay},
    )
    param_groups = []
    for g in groups:
        b = [n for n in g["names"] if lora_b_lr_ratio != 1.0 and any(part in n for part in LORA_B_PARTS)]
        rest = [n for n in g["names"] if n not in b]
        for names_, lr in ((rest, g["lr"]), (b, g["lr"] * lora_b_lr_ratio)):
            if names_:
                param_groups.append(
                    {"params": [named[n] for n in names_], "lr": lr, "weight_decay": g["weight_decay"]}
                )
    if extra is not None:  # its matrices decay; its biases (and any norm's weights), 1-d, do not, as Trainer has it
        for decays in (True, False):
            params = [p for p in extra.parameters() if (p.ndim >= 2) is decays]
            if params:
                decay = args.weight_decay if decays else 0.0
                param_groups.append({"params": params, "lr": args.learning_rate, "weight_decay": decay})
    return param_groups


def _check_own_columns_kept(dataset, args, prefixes: tuple[str, ...]) -> None:
    """Trainer drops the columns its model's forward does not take when `remove_unused_columns` is on; ours must stay
    (the commands switch it off; a caller building the trainer directly is told to)."""
    columns = getattr(dataset, "column_names", None) or []
    ours = [c for c in columns if c.startswith(prefixes)]
    if ours and args.remove_unused_columns:
        raise ConfigError(
            f"the training set carries {ours[:3]}, which the model's forward does not take, and Trainer would drop "
            "them: build the arguments with remove_unused_columns=False."
        )


class TransferTrainer(Trainer):
    """A `Trainer` for transfer learning on sequence classification.

    `freeze_plan` (from `freeze_plan_from_arguments`, resolved once before the weights load) says what stays frozen
    and, with gradual unfreezing, what each stage trains; without it the plan is resolved here from the arguments.
    A PEFT model brings its own plan: what PEFT froze. `frozen_trunk_depth` is k when the training rows carry the
    cached output of the frozen embeddings and blocks 0..k-1 (see `feature_cache.py`).

    Layer-wise LR decay and gradual unfreezing need their own optimizer groups: they are built in the constructor and
    handed to `Trainer` through `optimizer_cls_and_kwargs`. The loss is Σ wᵢ·ℓᵢ / Σ wᵢ over the whole accumulated
    batch (across all processes when `average_tokens_across_devices`, the default), wᵢ being the class weight of item
    i (`class_weights`, in label order; 1 without): `_get_num_items_in_batch`, the one other hook overridden, counts
    Σ wᵢ there. So batch 8 × accumulation 1 and batch 4 × accumulation 2 give the same gradients, where stock
    `Trainer` scales BERT's mean loss by the accumulation steps twice over.
    """

    args: TransferTrainingArguments
    # Training columns that are not model inputs but ours (the frozen trunk's cached output): Trainer must keep them.
    own_column_prefixes: tuple[str, ...] = (FEATURE_COLUMN,)

    def __init__(
        self,
        *args,
        problem_type: str | None = None,
        freeze_plan: FreezePlan | None = None,
        frozen_trunk_depth: int | None = None,
        extra_trainable: nn.Module | None = None,
        class_weights: Sequence[float] | None = None,
        lora_b_lr_ratio: float = 1.0,
        **kwargs,
    ):
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        model = kwargs.get("model", args[0] if args else None)
        if not isinstance(training_args, TransferTrainingArguments):
            raise TypeError(f"TransferTrainer needs TransferTrainingArguments, got {type(training_args).__name__}.")
        if is_peft_model(model):
            if freeze_plan is None:  # built directly, not by a command (whose pre-flight checked this already)
                check_freeze_conflicts(model.peft_config[model.active_adapter].peft_type.value.lower(), training_args)
            # PEFT froze the base and left the adapter and the saved head trainable: that is the whole plan.
            freeze_plan = FreezePlan.of_model(model, discover_layers(model, need_blocks=False))
        elif freeze_plan is None:
            freeze_plan = freeze_plan_from_arguments(discover_layers(model, need_blocks=False), training_args)
        self.freeze_plan = freeze_plan
        self.frozen_trunk_depth = frozen_trunk_depth
        self.class_weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        self._eval_row_weight: tuple = (None, None)
        if not is_peft_model(model):
            freeze_plan.apply(model)
        _check_own_columns_kept(kwargs.get("train_dataset"), training_args, self.own_column_prefixes)
        super().__init__(*args, **kwargs)
        wants_groups = self.args.layerwise_lr_decay != 1.0 or freeze_plan.stages or extra_trainable is not None
        wants_groups = wants_groups or lora_b_lr_ratio != 1.0
        if lora_b_lr_ratio != 1.0 and not any(
            any(part in name for part in LORA_B_PARTS) for name, _ in self.model.named_parameters()
        ):
            raise ConfigError(f"lora_b_lr_ratio {lora_b_lr_ratio} given, but the model has no LoRA B matrices.")
        if wants_groups and self.optimizer_cls_and_kwargs is None and self.optimizer is None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            decay_names = self.get_decay_parameter_names(self.model)
            groups = parameter_groups(
                self.model, self.args, freeze_plan, decay_names, extra_trainable, lora_b_lr_ratio
            )
            self.optimizer_cls_and_kwargs = (optimizer_cls, {**optimizer_kwargs, "params": groups})
        launched = launched_world_size()
        if launched > 1 and self.accelerator.num_processes != launched:
            raise ConfigError(
                f"{launched} processes were launched but accelerate joined {self.accelerator.num_processes}; each "
                "would train alone on all the data. On CPU pass --use_cpu true (or launch with the shipped "
                "scripts/accelerate/ddp_cpu.yaml)."
            )
        unwrapped = self.accelerator.unwrap_model(self.model)
        self.problem_type = problem_type or getattr(unwrapped.config, "problem_type", None) or SINGLE_LABEL
        # Our compute_loss normalises by num_items_in_batch itself: have Trainer count the items (it does so only
        # for models that "accept loss kwargs") and not divide by the accumulation steps again.
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        if freeze_plan.stages:
            self.add_callback(GradualUnfreezingCallback(self))
        for callback in adapter_callbacks(unwrapped) if is_peft_model(unwrapped) else ():
            self.add_callback(callback)
        if self.args.trim_memory_each_step:
            self.add_callback(TrimMemoryCallback())
        self.add_callback(EvaluationKeepsRandomState())
        self.add_callback(EvaluationKeepsEveryRow())
        self.add_callback(KeepPositionPadding())
        self.add_callback(StopWhenSignalled())
        self.add_callback(ResumeOrder(self))
        self.checkpoint_files = CheckpointFiles([ORDER_FILE])  # a distillation's projections join them
        self.add_callback(self.checkpoint_files)
        if self.args.world_size > 1:  # before Trainer's printer, which prints the line it mends
            self.callback_handler.callbacks.insert(0, TrainLossOverProcesses(self.accelerator))

    @property
    def layout(self):
        return self.freeze_plan.layout

    def freeze_summary(self, epochs: float | None = None) -> dict:
        """Plain facts about the freeze plan, for the run record and the card; the stages are those of `epochs` (the
        kept checkpoint's, when an earlier one is the saved model), by default the epochs run."""
        model, plan = self.accelerator.unwrap_model(self.model), self.freeze_plan
        epochs = (self.state.epoch or 0.0) if epochs is None else epochs
        stages = {}
        if plan.stages and self.args.gradual_unfreezing:  # how far the epochs run so far got
            reached = stages_reached(len(plan.stages), self.args.gradual_unfreezing, epochs)
            stages = {"unfreezing_stages": len(plan.stages), "unfreezing_stages_reached": reached}
        if is_peft_model(model):
            # Counted as the adapter record counts them (PEFT's frozen copies of the saved head are not the model's);
            # the base is frozen for the whole run.
            trainable, total = trainable_parameters(model)
            frozen = never_trained = total - trainable
        else:
            trainable, frozen = count_parameters(model)
            never = plan.frozen | plan.never_unfrozen(self.args.gradual_unfreezing, epochs)  # or in stages not reached
            never_trained = sum(p.numel() for n, p in model.named_parameters() if n in never)
        return {
            "depth": self.layout.depth,
            "num_layers": self.layout.num_layers,
            "freeze_embeddings": self.args.freeze_embeddings,
            "freeze_layers": self.args.freeze_layers,
            "freeze_patterns": self.args.freeze_patterns,
            "train_head_only": self.args.train_head_only,
            "gradual_unfreezing": self.args.gradual_unfreezing,
            "layerwise_lr_decay": self.args.layerwise_lr_decay,
            "permanently_frozen_parameters": never_trained,
            "trainable_parameters_now": trainable,
            "frozen_parameters_now": frozen,
            **stages,
        }

    # --- the two Trainer hooks ----------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        inputs.pop(REAL_ROWS, None)  # its padding rows are unlabelled already
        labels = inputs.pop("labels")
        outputs = self.forward_student(model, inputs)
        logits = outputs.logits
        if not model.training:
            # Evaluation: this batch's own loss over its real rows. Trainer weighs it by the rows that
            # `gather_for_metrics` keeps of it, so the evaluation loss is the one-process run's under DDP too.
            rows = self._real_rows(len(labels))
            logits, labels, num_items_in_batch = logits[:rows], labels[:rows], None
        loss_sum = classification_loss_sum(
            logits,
            labels,
            self.problem_type,
            label_smoothing=self.args.label_smoothing_factor,
            class_weights=self.class_weights,
        )
        normaliser = self.normaliser_for(labels, num_items_in_batch).labelled
        if not model.training and (row_weight := self._evaluation_row_weight()) is not None:
            normaliser = torch.tensor(len(labels) * row_weight, device=loss_sum.device)
        loss = self.scale_for_processes(loss_sum / normaliser.clamp(min=1e-12), num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _unlabel_padding(self, batch) -> None:
        """A process's last batch of an epoch with accelerate's padding (`even_batches` fills it with rows from the
        start of the epoch) marked: those rows lose their labels and `REAL_ROWS` says how many come first. In
        training they counted twice in that step's loss and normaliser, so DDP 2 × 4 differed from 1 × 8 (by 8e-5 in
        the weights after one epoch of 61 rows); an evaluation batch's padding is cut from its loss and metrics."""
        rows = len(batch["labels"])
        real = self._real_rows(rows)
        if real < rows:
            labels = batch["labels"].clone()
            labels[real:] = -100
            batch["labels"], batch[REAL_ROWS] = labels, real

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> LossNormaliser | None:
        """What the accumulated batch's summed losses are divided by (see `losses.LossNormaliser`), over every
        process when `average_tokens_across_devices`: Trainer's own count knows neither class weights nor rows
        without labels."""
        if not batch_samples or "labels" not in batch_samples[0]:
            return None
        if self.accelerator.num_processes > 1:  # Trainer's one look at a step's batches before they train
            self._unlabel_padding(batch_samples[-1])
        labels = [b["labels"][: b.get(REAL_ROWS, len(b["labels"]))] for b in batch_samples]  # padding: no row
        normaliser = LossNormaliser.of(labels, self.class_weights).as_tensor()
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            normaliser = self.accelerator.gather(normaliser.to(device))
        return LossNormaliser.from_tensor(normaliser.to(device))

    # --- helpers ------------------------------------------------------------------------------------------------

    def forward_student(self, model, inputs: dict, **kwargs):
        """The model's forward on a batch; training rows that carry the frozen trunk's output run only the blocks
        above it (see feature_cache.py)."""
        cached = inputs.pop(FEATURE_COLUMN, None)
        if cached is None:
            return model(**inputs, **kwargs)
        unwrapped = self.accelerator.unwrap_model(model)
        cached = cached.to(next(unwrapped.parameters()).dtype)
        with cached_trunk(unwrapped, self.layout, self.frozen_trunk_depth, cached):
            return model(**inputs, **kwargs)

    def _evaluation_row_weight(self) -> float | None:
        """With class weights, the evaluated set's `mean_row_weight` (read once per set from its labels), so that
        `eval_loss` is the set's weighted mean; None without class weights or labels to read."""
        dataset = getattr(self.accelerator.gradient_state.active_dataloader, "dataset", None)
        if self.class_weights is None or dataset is None:
            return None
        if self._eval_row_weight[0] is not dataset:  # the object itself is kept, so an id is never reused
            try:
                weight = mean_row_weight(torch.as_tensor(dataset["labels"]), self.class_weights)
            except (KeyError, TypeError, ValueError, IndexError, NotImplementedError):
                weight = None
            self._eval_row_weight = (dataset, weight)
        return self._eval_row_weight[1]

    def _real_rows(self, batch_rows: int) -> int:
        state = self.accelerator.gradient_state
        if self.accelerator.num_processes == 1 or not state.end_of_dataloader:
            return batch_rows
        return rows_before_padding(batch_rows, self.accelerator.process_index, state.remainder)

    def normaliser_for(self, labels, num_items_in_batch) -> LossNormaliser:
        """The normaliser Trainer counted for the accumulated batch, or, for a caller that did not count, this
        batch's own."""
        if isinstance(num_items_in_batch, LossNormaliser):
            return num_items_in_batch
        return LossNormaliser.of([labels], self.class_weights)

    def scale_for_processes(self, loss, num_items_in_batch):
        """A loss normalised over every process's items is multiplied back by the number of processes, since DDP
        averages the gradients over them."""
        counted_everywhere = isinstance(num_items_in_batch, LossNormaliser) and self.args.average_tokens_across_devices
        if counted_everywhere and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes
        return loss


def rows_before_padding(batch_rows: int, process_index: int, remainder: int) -> int:
    """How many leading rows of a process's last batch of a set are its own rows rather than accelerate's padding.

    In the last round of batches (`remainder`, the set's rows modulo batch × processes, above 0), the processes
    before the short batch hold full ones, the process holding it fills its end with rows from the start of the set
    (`even_batches`), and later processes hold those rows alone; `gather_for_metrics` keeps the first `remainder`
    rows gathered. A batch mean taken over the padding too counted some rows twice in the evaluation loss."""
    if remainder <= 0:
        return batch_rows
    return max(0, min(batch_rows, remainder - process_index * batch_rows))
