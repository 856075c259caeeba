"""`DistillationTrainer`: a `TransferTrainer` whose loss mixes a teacher's soft targets with the hard labels.

The teacher's outputs come from one of two places, per teacher:
- the batch itself, from the teacher-logit cache (`teacher_logits_{i}`, or `teacher_topk_values_{i}` and
  `teacher_topk_indices_{i}`), so the teacher never runs during training;
- the teacher, run online under `no_grad` on the student's inputs, or on its own tokenization of the same rows
  (`teacher{g}_input_ids`, ... for tokenizer group g) when teacher and student tokenize differently.

The loss is summed over items and normalised like `TransferTrainer`'s, so it is exact under gradient accumulation
and DDP. Evaluation reports the plain hard-label loss, comparable with any fine-tune."""

from __future__ import annotations

import inspect
import logging
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DataCollatorWithPadding, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_transfer.core.losses import item_weights
from hf_transfer.distill.arguments import DistillationArguments
from hf_transfer.distill.losses import (
    distillation_loss,
    hidden_state_loss_sum,
    mix_probabilities,
    pooled_hidden_loss_sum,
    pooled_states,
    teacher_probabilities,
)
from hf_transfer.distill.losses import topk_probabilities as _topk_probabilities
from hf_transfer.train.trainer import REAL_ROWS, TransferTrainer

TEACHER_PREFIX = "teacher"
# The hidden-state projections in each checkpoint: they train with the student but are no part of the saved model.
PROJECTIONS_FILE = "hidden_projections.safetensors"
logger = logging.getLogger(__name__)


def tokenizer_group_prefix(group: int) -> str:
    return f"{TEACHER_PREFIX}{group}_"


class DistillationCollator:
    """Pads the student's inputs with the student's tokenizer, each teacher tokenizer group's inputs with its own,
    and stacks the cached teacher columns."""

    def __init__(self, tokenizer, teacher_tokenizers: dict[str, object] | None = None):
        self.student = DataCollatorWithPadding(tokenizer)
        self.teacher_tokenizers = teacher_tokenizers or {}

    def __call__(self, features: list[dict]) -> dict:
        student, groups, stacked = [], defaultdict(list), defaultdict(list)
        for feature in features:
            own, per_group = {}, defaultdict(dict)
            for key, value in feature.items():
                prefix = next((p for p in self.teacher_tokenizers if key.startswith(p)), None)
                if prefix is not None:
                    per_group[prefix][key[len(prefix) :]] = value
                elif key.startswith(TEACHER_PREFIX):
                    stacked[key].append(value)
                else:
                    own[key] = value
            student.append(own)
            for prefix, row in per_group.items():  # evaluation batches carry no teacher columns
                groups[prefix].append(row)
        batch = dict(self.student(student))
        for prefix, rows in groups.items():
            padded = self.teacher_tokenizers[prefix].pad(rows, return_tensors="pt")
            batch.update({prefix + key: value for key, value in padded.items()})
        for key, values in stacked.items():
            dtype = torch.long if "indices" in key else torch.float32
            batch[key] = torch.as_tensor(
                np.stack(values) if isinstance(values[0], np.ndarray) else values, dtype=dtype
            )
        return batch


def hidden_state_projections(student_config, teacher_config, layer_map: dict[int, int] | None) -> nn.ModuleDict | None:
    """Learned student→teacher maps for the hidden-state loss when the hidden sizes differ (trained, not saved)."""
    if not layer_map or student_config.hidden_size == teacher_config.hidden_size:
        return None
    return nn.ModuleDict(
        {str(i): nn.Linear(student_config.hidden_size, teacher_config.hidden_size) for i in layer_map}
    )


def _several_processes() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


class ProjectionTraining(TrainerCallback):
    """What Trainer and DDP do for the model's parameters, for the projections, which are no part of it: under several
    processes they start equal and their gradients are averaged over the processes; their gradients are clipped to
    `max_grad_norm` before each optimizer step (Trainer clips the model's alone; by then it has unscaled every
    gradient the optimizer holds) and cleared after it (Trainer clears the model's alone: each step used the sum of
    every earlier one's), and they are written into every checkpoint, so that a resumed run goes on with the trained
    ones."""

    def __init__(self, projections: nn.ModuleDict):
        self.projections = projections
        if _several_processes():  # each process built its own: they start from the main process's
            for param in projections.parameters():
                torch.distributed.broadcast(param.data, src=0)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if _several_processes():  # averaged over the processes, as DDP averages the model's gradients
            for param in self.projections.parameters():
                param.grad = torch.zeros_like(param) if param.grad is None else param.grad
                torch.distributed.all_reduce(param.grad)
                param.grad.div_(torch.distributed.get_world_size())
        if args.max_grad_norm and args.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.projections.parameters(), args.max_grad_norm)

    def on_step_end(self, args, state, control, **kwargs):
        self.projections.zero_grad(set_to_none=True)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            weights = {k: v.detach().cpu().contiguous() for k, v in self.projections.state_dict().items()}
            part = folder / f".{PROJECTIONS_FILE}.part"  # whole or absent: a half-written file failed the resume
            save_file(weights, str(part))
            os.replace(part, folder / PROJECTIONS_FILE)


def load_projections(projections: nn.ModuleDict, checkpoint: str) -> None:
    """The trained projections of `checkpoint`, loaded in place (the optimizer already holds these parameters)."""
    path = Path(checkpoint) / PROJECTIONS_FILE
    if not path.is_file():
        logger.warning(f"{checkpoint} holds no {PROJECTIONS_FILE}: the hidden-state projections restart untrained.")
        return
    projections.load_state_dict(load_file(str(path)))


class DistillationTrainer(TransferTrainer):
    """Trains a student on α·T²·KL(teacher ‖ student) + (1 − α)·CE, plus an optional hidden-state loss.

    `teachers` are classifiers already loaded (they may be empty when every teacher output comes from the cache);
    `teacher_permutations[i]` reorders teacher i's logits into the data's label order; `teacher_input_prefixes[i]`
    is None when teacher i reads the student's inputs, else the column prefix of its own tokenization.
    `layer_map` maps student blocks to teacher blocks for the hidden-state loss; `projections` (from
    `hidden_state_projections`) map the student's hidden states to the teacher's size when they differ, and train
    with the student in their own optimizer group.
    """

    own_column_prefixes = (*TransferTrainer.own_column_prefixes, TEACHER_PREFIX)

    def __init__(
        self,
        *args,
        distill_args: DistillationArguments,
        teachers: list[nn.Module] | None = None,
        teacher_permutations: list[list[int] | None] | None = None,
        teacher_input_prefixes: list[str | None] | None = None,
        num_teachers: int | None = None,
        layer_map: dict[int, int] | None = None,
        projections: nn.ModuleDict | None = None,
        **kwargs,
    ):
        super().__init__(*args, extra_trainable=projections, **kwargs)
        self.distill = distill_args
        self.num_teachers = num_teachers if num_teachers is not None else len(teachers or [])
        self.teacher_permutations = teacher_permutations or [None] * self.num_teachers
        self.teacher_input_prefixes = teacher_input_prefixes or [None] * self.num_teachers
        self.teachers = [self._prepare_teacher(t) for t in teachers or []]
        self.layer_map = layer_map or {}
        self.projections = None if projections is None else projections.to(self.args.device)
        if self.projections is not None:
            self.add_callback(ProjectionTraining(self.projections))
            self.checkpoint_files.files.append(PROJECTIONS_FILE)
            if self.args.resume_from_checkpoint:  # resolved to a checkpoint folder by then
                load_projections(self.projections, self.args.resume_from_checkpoint)
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_counts: dict[str, float] = defaultdict(float)

    # --- construction steps -------------------------------------------------------------------------------------

    def _prepare_teacher(self, teacher: nn.Module) -> nn.Module:
        # Placed on the device and never DDP-wrapped: it is only ever run forward, under no_grad.
        teacher = self.accelerator.prepare_model(teacher, evaluation_mode=True)
        teacher.eval()
        teacher.requires_grad_(False)
        teacher._hf_transfer_inputs = set(inspect.signature(teacher.forward).parameters)
        return teacher

    # --- Trainer hooks ------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        teacher_fields = {k: inputs.pop(k) for k in list(inputs) if k.startswith(TEACHER_PREFIX)}
        if not model.training or not self.distill.uses_teacher:
            # Evaluation, and α = 0 without a hidden loss: the plain hard-label loss.
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        real = inputs.pop(REAL_ROWS, len(labels))  # DDP's padding rows (unlabelled already) take no KD term either
        mask = torch.arange(len(labels), device=labels.device) < real if real < len(labels) else None
        want_hidden = self.distill.hidden_loss_weight > 0
        outputs = model(**inputs, output_hidden_states=want_hidden)
        teacher_logits, teacher_probs, teacher_hidden = self._teacher_outputs(inputs, teacher_fields, want_hidden)
        normaliser = self.normaliser_for(labels, num_items_in_batch)
        loss, terms = distillation_loss(
            outputs.logits,
            teacher_logits,
            labels,
            alpha=self.distill.alpha,
            temperature=self.distill.temperature,
            problem_type=self.problem_type,
            teacher_probs=teacher_probs,
            label_smoothing=self.args.label_smoothing_factor,
            class_weights=self.class_weights,
            normaliser=normaliser,
            mask=mask,
        )
        counts = {"kd": labels[:real].numel(), "ce": float(item_weights(labels, self.class_weights).sum())}
        if want_hidden:
            if "teacher_hidden_0" in teacher_fields:  # pooled states from the cache
                teacher_hidden = teacher_fields["teacher_hidden_0"].to(self.args.device)
            hidden = self._hidden_loss(
                *(_first_rows(x, real) for x in (outputs.hidden_states, teacher_hidden, inputs.get("attention_mask")))
            )
            # Summed over rows, like the KD term (for multi-label, `items` counts entries: rows × labels).
            rows = normaliser.items / (labels.shape[-1] if labels.dim() == 2 else 1)
            loss = loss + self.distill.hidden_loss_weight * hidden / rows.clamp(min=1e-12)
            terms["hidden"], counts["hidden"] = hidden.detach(), real
        self._record_terms(terms, counts)
        loss = self.scale_for_processes(loss, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._term_counts:
            # Summed over every process, as the logged loss is: one process's rows alone gave other values than the
            # one-process run's. Every process logs at the same steps, with the same terms.
            names = sorted(self._term_sums)
            totals = [[self._term_sums[n], self._term_counts[n]] for n in names]
            if self.accelerator.num_processes > 1:
                totals = self.accelerator.reduce(torch.tensor(totals, device=self.args.device), "sum").tolist()
            for name, (value, count) in zip(names, totals, strict=True):
                logs[f"loss_{name}"] = round(value / max(count, 1e-12), 4)
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, *args, **kwargs)

    # --- teacher outputs ----------------------------------------------------------------------------------------

    def _teacher_outputs(self, inputs: dict, fields: dict, want_hidden: bool):
        """(logits, None, hidden) for one full-logit teacher; (None, probabilities, hidden) for ensembles and
        top-k caches, whose soft targets are mixed or truncated distributions."""
        num_labels = self.accelerator.unwrap_model(self.model).config.num_labels
        temperature = self.distill.temperature
        logits, probs, hidden = [], [], None
        for i in range(self.num_teachers):
            if f"teacher_logits_{i}" in fields:
                teacher_logits = fields[f"teacher_logits_{i}"].to(self.args.device)
            elif f"teacher_topk_values_{i}" in fields:
                values = fields[f"teacher_topk_values_{i}"].to(self.args.device)
                indices = fields[f"teacher_topk_indices_{i}"].to(self.args.device)
                # The cache stored top-k of the logits already in the data's label order.
                probs.append(_topk_probabilities(values, indices, num_labels, temperature))
                continue
            else:
                teacher_logits, teacher_hidden = self._run_teacher(i, inputs, fields, want_hidden)
                if teacher_hidden is not None:
                    hidden = teacher_hidden
                perm = self.teacher_permutations[i]
                if perm is not None:
                    teacher_logits = teacher_logits[..., perm]
            logits.append(teacher_logits.float())
        if len(logits) == 1 and not probs:
            return logits[0], None, hidden
        probs.extend(teacher_probabilities(t, temperature, self.problem_type) for t in logits)
        return None, mix_probabilities(probs, self.distill.teacher_weights), hidden

    @torch.no_grad()
    def _run_teacher(self, i: int, inputs: dict, fields: dict, want_hidden: bool):
        teacher = self.teachers[i]
        prefix = self.teacher_input_prefixes[i]
        if prefix is None:
            source = inputs
        else:
            source = {k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)}
        accepted = teacher._hf_transfer_inputs
        batch = {k: v.to(self.args.device) for k, v in source.items() if k in accepted}
        outputs = teacher(**batch, output_hidden_states=want_hidden)
        hidden, pooling = (outputs.hidden_states if want_hidden else None), self.distill.hidden_loss_pooling
        if hidden is not None and pooling != "tokens":
            # Pooled over the teacher's own tokens, which are not the student's when it tokenizes otherwise.
            mask = batch.get("attention_mask")
            hidden = torch.stack([pooled_states(hidden[b + 1], mask, pooling) for b in self.layer_map.values()], 1)
        return outputs.logits, hidden

    def _hidden_loss(self, student_hidden, teacher_hidden, attention_mask) -> torch.Tensor:
        """Per-row mean over tokens, averaged over mapped blocks, summed over rows (`hidden_states[i + 1]` is block
        i's output). With pooling (`cls`, `mean`) the teacher side is its normalised pooled states `(rows, blocks,
        hidden)`, from the cache or pooled online over its own tokens, compared as in Patient KD."""
        pooling = self.distill.hidden_loss_pooling
        if pooling != "tokens":
            student = []
            for block in self.layer_map:
                state = student_hidden[block + 1]
                if self.projections is not None:
                    state = self.projections[str(block)](state.to(self.projections[str(block)].weight.dtype))
                student.append(pooled_states(state, attention_mask, pooling))
            return pooled_hidden_loss_sum(torch.stack(student, 1), teacher_hidden)
        total = None
        for student_block, teacher_block in self.layer_map.items():
            projection = None if self.projections is None else self.projections[str(student_block)]
            term = hidden_state_loss_sum(
                student_hidden[student_block + 1],
                teacher_hidden[teacher_block + 1],
                attention_mask,
                kind=self.distill.hidden_loss_type,
                projection=projection,
                per_row=True,
            )
            total = term if total is None else total + term
        return total / max(len(self.layer_map), 1)

    def _record_terms(self, terms: dict, counts: dict) -> None:
        """Each logged term is its sum over the logging window divided by what it was summed over."""
        for name, value in terms.items():
            self._term_sums[name] += float(value)
            self._term_counts[name] += float(counts[name])


def _first_rows(value, rows: int):
    """A batch's tensor, or a tuple of them (hidden states by block), cut to its first `rows` rows."""
    if isinstance(value, (tuple, list)):
        return type(value)(_first_rows(v, rows) for v in value)
    return value if value is None or len(value) == rows else value[:rows]
