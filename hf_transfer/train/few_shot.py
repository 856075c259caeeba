"""The few-shot route of `hf-transfer train`: for training sets of tens of rows per class.

1. Body tuning on sentence pairs, as SetFit does, but every pair of a batch counts: each step embeds a batch of
   training sentences (masked mean pooling, the embedding sentence-transformers bodies are trained for) and moves the
   cosine similarity of every pair in it towards 1 (same label) or 0 (different labels), the positive and negative
   pairs weighing equally. A batch of B sentences gives B(B-1)/2 pairs for B forward passes, where a pair loader pays
   two forward passes per pair.
2. A logistic-regression head fitted in closed form (scikit-learn) on the tuned body's mean-pooled embeddings.
3. The head expressed in the standard classifier: one extra encoder block folds the mean pooling into the first
   position (see `few_shot_head.py`), so the output is an ordinary `AutoModelForSequenceClassification` folder.

Nothing in the route is chosen on validation data (its recipe is fixed), so when no validation file is given it
trains on every labelled row instead of carving a validation split, and the run reports no held-out score.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from hf_transfer.core.overlap import say_overlap
from hf_transfer.core.runtime import score_in_fp32
from hf_transfer.train.few_shot_choice import (
    FewShotDecision,
    add_label_template_rows,
    decide_few_shot,
    keep_every_labelled_row,
    warn_replaced_fields,
)
from hf_transfer.train.few_shot_head import fit_head, mean_pool
from hf_transfer.train.trainer import TransferTrainer

__all__ = ["decide_few_shot", "run_few_shot", "pair_loss", "supcon_loss", "FewShotTrainer", "FewShotHead"]

logger = logging.getLogger(__name__)

PAIR_LOSS = (
    "(cos − 1)² over same-label pairs and cos² over different-label pairs of every batch, the two means averaged "
    "(cosine similarity of masked-mean-pooled embeddings)"
)


# --- body tuning -----------------------------------------------------------------------------------------------------


def pair_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cosine-similarity loss over every pair of a batch (see PAIR_LOSS); a batch of one class has no negative
    pairs and is scored on its positive pairs alone (and the reverse)."""
    unit = F.normalize(embeddings.float(), dim=-1)
    cosine = unit @ unit.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    terms = []
    positive, negative = same & off_diagonal, ~same
    if positive.any():
        terms.append((cosine[positive] - 1).pow(2).mean())
    if negative.any():
        terms.append(cosine[negative].pow(2).mean())
    if not terms:  # a batch of one row
        return cosine.sum() * 0.0
    return torch.stack(terms).mean()


SUPCON_LOSS = (
    "supervised contrastive loss over every batch (Khosla et al. 2020): for each row, −log of the softmax share of "
    "each same-label row among all other rows, cosine similarity / temperature, averaged over positives and rows"
)


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """The supervised contrastive loss of a batch (see SUPCON_LOSS); rows with no same-label partner in the batch are
    anchors for nothing but still serve as negatives."""
    unit = F.normalize(embeddings.float(), dim=-1)
    n = len(labels)
    eye = torch.eye(n, dtype=torch.bool, device=labels.device)
    logits = (unit @ unit.T / temperature).masked_fill(eye, float("-inf"))
    log_share = logits.log_softmax(dim=-1).masked_fill(eye, 0.0)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    count = positive.sum(1)
    anchors = count > 0
    if not anchors.any():  # no two rows share a label: nothing to pull together
        return unit.sum() * 0.0
    per_row = -(log_share * positive).sum(1)[anchors] / count[anchors]
    return per_row.mean()


def body_loss(args, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if args.few_shot_loss == "supcon":
        return supcon_loss(embeddings, labels, args.few_shot_temperature)
    return pair_loss(embeddings, labels)


def mix_bodies(body: torch.nn.Module, pretrained: dict[str, torch.Tensor], share: float) -> None:
    """WiSE-FT of the body: each floating-point weight becomes share·tuned + (1 − share)·pretrained."""
    with torch.no_grad():
        for name, tensor in body.state_dict().items():
            if tensor.is_floating_point() and name in pretrained:
                tensor.mul_(share).add_(pretrained[name].to(tensor.device, tensor.dtype), alpha=1 - share)


BODY_WARMUP = 0.1  # the body tuning's learning-rate warmup, as a share of its steps


def labelled_steps(args, rows: int) -> int:
    """The optimizer steps of `few_shot_body_epochs` over `rows`, as Trainer counts an epoch-based run's: batches of
    `few_shot_batch_size` on every process (the last one short, or dropped), grouped by gradient accumulation."""
    per_batch = args.few_shot_batch_size * max(args.world_size, 1)
    batches = rows // per_batch if args.dataloader_drop_last else math.ceil(rows / per_batch)
    per_epoch = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return math.ceil(args.few_shot_body_epochs * per_epoch)


def body_training_arguments(args, labelled_rows: int | None = None, all_rows: int | None = None):
    """The run's arguments with the route's knobs in Trainer's fields: steps, batch, learning rate, and no
    evaluation or checkpoint while the body tunes (the head does not exist yet). The budget counts the labelled rows:
    with template rows added (`all_rows` > `labelled_rows`) the passes shrink so the steps stay the same. `max_steps`,
    when set, is the budget instead of `few_shot_body_epochs`, as it overrides Trainer's epochs."""
    share = labelled_rows / all_rows if labelled_rows and all_rows else 1.0
    max_steps = args.max_steps if args.max_steps > 0 else -1
    drop_last = args.dataloader_drop_last
    if drop_last and all_rows and all_rows < args.few_shot_batch_size * max(args.world_size, 1):
        # every batch would be dropped: Trainer stopped with a traceback on an empty loader, after the weights loaded
        logger.warning(f"dataloader_drop_last ignored: the {all_rows} training rows are fewer than one body batch.")
        drop_last = False
    if share < 1 and max_steps < 0:  # the labelled rows' steps, as Trainer counts them: shrunk passes over all rows
        max_steps = labelled_steps(args, labelled_rows)  # rounded up under accumulation could add one (4 became 5)
    body = dataclasses.replace(
        args,
        num_train_epochs=args.few_shot_body_epochs * share,
        max_steps=max_steps,
        per_device_train_batch_size=args.few_shot_batch_size,
        learning_rate=args.few_shot_learning_rate,
        warmup_steps=BODY_WARMUP,  # a share of the steps (below 1)
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        dataloader_drop_last=drop_last,
        label_smoothing_factor=0.0,  # a pair loss, then a head in closed form: no smoothed targets (warned)
        logging_steps=0.02,  # about 50 loss lines whatever the budget (every step printed 558 for 100 classes)
    )
    body.few_shot_body = True  # the card's hyperparameters leave these knobs to its few-shot table (callbacks.py)
    body.user_max_steps = args.max_steps  # the budget set above is the route's: no `max_steps` the user gave
    return body


class FewShotTrainer(TransferTrainer):
    """`TransferTrainer` whose training loss is the pair loss on the body's mean-pooled embeddings; evaluation (once
    the head is built) is the ordinary classification loss."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        body = self.accelerator.unwrap_model(model).base_model
        with self.accelerator.autocast():  # the body alone skips the autocast that wraps the model's forward
            hidden = body(**inputs).last_hidden_state
        loss = body_loss(self.args, mean_pool(hidden, inputs["attention_mask"]), labels)
        # Trainer leaves the scaling for gradient accumulation to us (see TransferTrainer): the mean over the
        # window's batches, which the last window of an epoch may have fewer of than gradient_accumulation_steps.
        if num_items_in_batch is None:
            return loss
        return loss / getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)


# --- the head ------------------------------------------------------------------------------------------------------


class FewShotHead(TrainerCallback):
    """Fits and builds the head when body tuning ends, inside `Trainer.train` (so its time counts as training)."""

    def __init__(self, rows, collator, num_labels: int, c: float, batch_size: int, body_mix: float = 1.0,
                 labelled_share: float = 1.0, body_epochs: float | None = None):  # fmt: skip
        self.rows, self.collator, self.num_labels, self.c, self.batch_size = rows, collator, num_labels, c, batch_size
        self.body_mix, self.labelled_share = body_mix, labelled_share
        self.body_epochs = body_epochs  # when the steps are the labelled rows' (`labelled_steps`)
        self.pretrained: dict[str, torch.Tensor] | None = None
        self.facts: dict = {}
        self.body_started: float | None = None
        self.body_seconds: float | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.body_started = time.perf_counter()
        if self.body_mix < 1 and model is not None:
            self.pretrained = {k: v.detach().clone() for k, v in model.base_model.state_dict().items()}

    def on_step_end(self, args, state, control, **kwargs):
        # Epochs over the labelled rows, as few_shot_body_epochs counts them: Trainer's passes also count the label
        # template's rows (16 epochs were logged and reported as 14.55). Trainer sets it afresh each step.
        if state.epoch is not None and self.labelled_share < 1:
            if self.body_epochs is not None and state.max_steps > 0:  # under accumulation passes and steps differ
                state.epoch = self.body_epochs * state.global_step / state.max_steps  # (2.5 read where 3 ran)
            else:
                state.epoch = state.epoch / self.labelled_share

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.body_seconds = round(time.perf_counter() - (self.body_started or time.perf_counter()), 2)
        # Fitted on the features the saved float32 model computes, not on those of the run's bf16/fp16 autocast.
        score_in_fp32(model)
        if self.pretrained is not None:
            mix_bodies(model.base_model, self.pretrained, self.body_mix)
            self.pretrained = None
        facts = fit_head(model, self.rows, self.collator, self.num_labels, self.c, self.batch_size)
        facts.pop("logits")
        self.facts = facts


# --- the route -------------------------------------------------------------------------------------------------------


def run_few_shot(
    model_args, data_args, adapter_args, training_args, plan, push, decision: FewShotDecision, callbacks=None
) -> dict:
    """`hf-transfer train` on the few-shot route: body tuning, then the head, then the usual outputs; `callbacks` as
    for `run_train`."""
    from transformers import DataCollatorWithPadding

    from hf_transfer.core.data import tokenize_data
    from hf_transfer.core.memory import memory_kib
    from hf_transfer.core.metrics import make_compute_metrics
    from hf_transfer.core.models import load_classifier
    from hf_transfer.train.fit import fit_and_report

    logger.warning("hf-transfer train: few-shot route %s", decision.line())
    warn_replaced_fields(training_args)
    prepared, validation = keep_every_labelled_row(plan.prepared, data_args.max_train_samples)
    say_overlap(prepared.summary)  # after: a carved validation split is put back, so its repeats are no concern
    prepared, templated = add_label_template_rows(
        prepared, training_args.few_shot_label_template, training_args.few_shot_template_copies
    )
    with training_args.main_process_first(desc="tokenization"):
        tokenized = tokenize_data(
            prepared, plan.tokenizer, data_args.max_seq_length, num_proc=data_args.preprocessing_num_workers
        )
    m = model_args
    model = load_classifier(
        m.model_name_or_path,
        plan.config,
        revision=m.model_revision,
        cache_dir=m.cache_dir,
        trust_remote_code=m.trust_remote_code,
        ignore_mismatched_sizes=m.ignore_mismatched_sizes,
    )
    memory_at_load = memory_kib()
    collator = DataCollatorWithPadding(plan.tokenizer)
    a = training_args
    labelled, rows = len(tokenized["train"]) - templated.get("rows", 0), len(tokenized["train"])
    epochs = a.few_shot_body_epochs if rows > labelled and a.max_steps <= 0 else None  # a budget of labelled steps
    head = FewShotHead(tokenized["train"], collator, len(prepared.label_names), a.few_shot_head_c,
                       a.per_device_eval_batch_size, a.few_shot_body_mix, labelled / rows, epochs)  # fmt: skip
    trainer = FewShotTrainer(
        model=model,
        args=body_training_arguments(a, labelled, rows),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("validation"),
        processing_class=plan.tokenizer,
        data_collator=collator,
        compute_metrics=make_compute_metrics(prepared.label_names, prepared.problem_type),
        problem_type=prepared.problem_type,
        freeze_plan=plan.freeze_plan,
        callbacks=[head, *(callbacks or [])],
    )

    def record(trainer, eval_metrics) -> dict:
        batch = min(a.few_shot_batch_size, len(tokenized["train"]))
        body = {
            "loss": SUPCON_LOSS if a.few_shot_loss == "supcon" else PAIR_LOSS,
            **({"temperature": a.few_shot_temperature} if a.few_shot_loss == "supcon" else {}),
            "body_mix": a.few_shot_body_mix,
            "epochs": None if a.max_steps > 0 else a.few_shot_body_epochs,
            **({"max_steps": a.max_steps} if a.max_steps > 0 else {}),
            "steps": trainer.state.global_step,
            "batch_size": a.few_shot_batch_size,
            # Under gradient accumulation a step sums several batches; pairs are formed within a batch only.
            **({"batches_per_step": a.gradient_accumulation_steps} if a.gradient_accumulation_steps > 1 else {}),
            "pairs_per_step": a.gradient_accumulation_steps * (batch * (batch - 1) // 2),
            "learning_rate": a.few_shot_learning_rate,
            # the route's own warmup (body_training_arguments); the schedule's kind is the run's lr_scheduler_type
            "warmup_ratio": BODY_WARMUP,
            "lr_scheduler_type": getattr(a.lr_scheduler_type, "value", a.lr_scheduler_type),
            "seconds": head.body_seconds,
        }
        facts = {"decision": decision.line(), "rows_per_class": round(decision.rows_per_class, 2)}
        templated_rows = {"label_template": templated} if templated else {}
        return {"few_shot": {**facts, **templated_rows, "body": body, "head": head.facts, "validation": validation}}

    summary = fit_and_report(
        trainer,
        tokenized,
        prepared,
        (model_args, data_args, adapter_args, training_args),
        task="train",
        after_eval=record,
        memory_at_load=memory_at_load,
        push=push,
    )
    return {"few_shot": decision.line(), **summary}
