"""`hf-transfer distill`: check everything cheap first, load each teacher once, build or load the student, fill the
teacher-logit cache, train with `DistillationTrainer`, then measure the student against its teacher(s)."""

from __future__ import annotations

import logging

from hf_transfer.adapters.arguments import AdapterArguments
from hf_transfer.adapters.peft_model import adapter_finisher, check_pushable_base, wrap
from hf_transfer.adapters.plan import apply_adapter_learning_rate, check_adapter_args, plan_adapter_on_meta
from hf_transfer.core.arguments import DataArguments, ModelArguments
from hf_transfer.core.caching import (
    cache_key,
    computing_config,
    default_cache_dir,
    fingerprint_model,
    fingerprint_texts,
    fingerprint_tokenizer,
)
from hf_transfer.core.data import tokenize_data
from hf_transfer.core.folders import hub_origin
from hf_transfer.core.inference import measure_speed, predict_logits, prompt_positions
from hf_transfer.core.memory import memory_kib, release_freed_memory
from hf_transfer.core.metrics import classification_metrics, make_compute_metrics
from hf_transfer.core.models import align_pad_token
from hf_transfer.core.overlap import say_overlap
from hf_transfer.core.recipe_overrides import settle_recipe_fields
from hf_transfer.core.run_records import folder_hub_lineage
from hf_transfer.core.runtime import (
    FINAL_METRICS_PRECISION,
    precision_name,
    run_autocast,
    score_in_fp32,
    sharded_weights,
)
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.distill.arguments import DistillationArguments
from hf_transfer.distill.losses import mix_probabilities, teacher_probabilities
from hf_transfer.distill.plan import DistillPlan, build_student, load_teacher, preflight
from hf_transfer.distill.teachers import load_or_build_logit_cache, teacher_outputs
from hf_transfer.distill.trainer import DistillationCollator, DistillationTrainer, hidden_state_projections
from hf_transfer.distill.transfer_set import TransferRows, augmented_rows, with_transfer_rows
from hf_transfer.errors import ConfigError
from hf_transfer.outputs.hub import plan_push
from hf_transfer.outputs.run_folder import check_resume_fits
from hf_transfer.train.arguments import TransferTrainingArguments
from hf_transfer.train.checks import check_resume_settings
from hf_transfer.train.fit import fit_and_report
from hf_transfer.train.preflight import fit_max_seq_length
from hf_transfer.train.stages import early_stopping_callbacks, training_steps

logger = logging.getLogger(__name__)

SPEED_BATCH_SIZE = 64
SPEED_ROWS = 256  # the validation rows timed for the speedup (export's default speed_samples too)
# The argument dataclasses of `hf-transfer distill`, in the order `run_distill` takes them.
DISTILL_ARGUMENTS = (ModelArguments, DataArguments, DistillationArguments, AdapterArguments, TransferTrainingArguments)


def _add_cached_logits(train, plan: DistillPlan, teachers: list, d: DistillationArguments, max_length: int, args):
    """Columns `teacher_logits_{i}` (or top-k ones) from each teacher's cache, built where missing, and for the
    first teacher `teacher_hidden_0`, its pooled states at the mapped blocks, when the hidden-state loss pools.
    Built under the run's autocast, as the online teacher runs (accelerate wraps its forward), and keyed by it: a
    bf16 run's logits are not an fp32 run's."""
    import datasets

    split = plan.prepared.datasets["train"]
    # Lazy columns: the fingerprint and the teacher pass read them a window at a time.
    texts = split[plan.prepared.text_column]
    pairs = split[plan.prepared.text_pair_column] if plan.prepared.text_pair_column else None
    data_fp = fingerprint_texts(texts, pairs)
    root = d.teacher_cache_dir or default_cache_dir("teacher_logits")
    pooled = d.hidden_loss_weight > 0 and d.hidden_loss_pooling != "tokens"
    columns, infos = [train], []
    for i, teacher in enumerate(teachers):
        tokenizer, perm = plan.teacher_tokenizers[i], plan.permutations[i]
        blocks = list(plan.layer_map.values()) if pooled and i == 0 else None
        key = cache_key(
            teacher=fingerprint_model(teacher),
            teacher_config=computing_config(teacher.config),  # the same weights with another hidden_act, say
            tokenizer=fingerprint_tokenizer(tokenizer),
            max_seq_length=max_length,
            data=data_fp,
            dtype=str(teacher.dtype),
            precision=precision_name(args),
            permutation=perm,
            top_k=d.teacher_top_k,
            hidden_blocks=blocks,
            pooling=d.hidden_loss_pooling if blocks else None,
        )

        def build(teacher=teacher, tokenizer=tokenizer, perm=perm, i=i, blocks=blocks):
            with run_autocast(args):
                logits, hidden = teacher_outputs(
                    teacher.to(args.device),
                    tokenizer,
                    texts,
                    pairs,
                    batch_size=d.teacher_batch_size,
                    max_length=max_length,
                    blocks=blocks,
                    pooling=d.hidden_loss_pooling,
                    desc=f"teacher pass ({i + 1}/{len(teachers)})",
                )
            logits = logits if perm is None else logits[:, perm]
            return logits if hidden is None else (logits, hidden)

        description = {"teacher": d.teacher_model_name_or_path[i], "rows": len(texts), "max_seq_length": max_length}
        cache, info = load_or_build_logit_cache(root, key, len(texts), build, top_k=d.teacher_top_k,
                                                description=description)  # fmt: skip
        columns.append(cache.rename_columns({c: f"{c}_{i}" for c in cache.column_names}))
        infos.append({**info, "precision": precision_name(args)})
    merged = datasets.concatenate_datasets(columns, axis=1)
    teacher_columns = [c for c in merged.column_names if c.startswith("teacher")]
    merged.set_format("numpy", columns=teacher_columns, output_all_columns=True)
    return merged, infos


def _add_teacher_tokens(train, plan: DistillPlan, max_length: int, num_proc: int | None):
    """Each teacher tokenizer group's own tokenization of the training rows, as prefixed columns."""
    import datasets

    split = plan.prepared.datasets["train"]
    text, pair = plan.prepared.text_column, plan.prepared.text_pair_column
    columns = [train]
    for prefix, tokenizer in plan.prefix_tokenizers.items():

        def encode(batch, tokenizer=tokenizer, prefix=prefix):
            encoded = tokenizer(batch[text], batch[pair] if pair else None, truncation=True, max_length=max_length)
            return {prefix + k: v for k, v in encoded.items()}

        encoded = split.map(
            encode,
            batched=True,
            remove_columns=split.column_names,
            num_proc=num_proc if num_proc and num_proc > 1 else None,
            desc="Tokenizing for the teacher",
        )
        columns.append(encoded)
    return datasets.concatenate_datasets(columns, axis=1)


def _projection_sizes(projections) -> dict | None:
    """The learned maps from the student's hidden size to the teacher's: trained with it, saved in checkpoints only."""
    if projections is None:
        return None
    first = next(iter(projections.values()))
    return {"student_blocks": sorted(map(int, projections)), "from": first.in_features, "to": first.out_features}


def _compare_with_teachers(
    trainer, eval_metrics: dict, plan: DistillPlan, teachers: list, d: DistillationArguments, max_length: int
):
    """Teacher dev accuracy, retention and the inference speed ratio, measured on the validation set: the speed at
    the run's precision, the accuracy without autocast (the student in fp32, as saved and as `eval_metrics` were
    measured; each teacher in its `teacher_dtype`)."""
    import numpy as np
    import torch

    if not trainer.is_world_process_zero():
        return {}
    if engine := sharded_weights():  # the student's forward would wait for the other processes' shards
        logger.warning(f"the teacher comparison (accuracy, retention, speed) is not measured under {engine}; score "
                       "both folders with hf-transfer evaluate.")  # fmt: skip
        return {"teacher_comparison": f"not measured: {engine} shards the student's weights"}
    device = trainer.args.device
    student = trainer.accelerator.unwrap_model(trainer.model)
    split = plan.prepared.datasets["validation"]
    texts = list(split[plan.prepared.text_column])
    pairs = list(split[plan.prepared.text_pair_column]) if plan.prepared.text_pair_column else None
    models = {"student": (student, plan.student_tokenizer)}
    for i, teacher in enumerate(teachers):
        models[f"teacher_{i}"] = (teacher.to(device), plan.teacher_tokenizers[i])
    # Timed on the first SPEED_ROWS rows (each model ran every validation row at least twice, most of a small run's
    # time), at the run's precision: the prepared student's forward carries the mixed-precision autocast, so the
    # teachers run under the same one (else a bf16 run would time a bf16 student against an fp32 teacher).
    timed = slice(0, SPEED_ROWS)
    with trainer.accelerator.autocast():
        speeds, _ = measure_speed(models, texts[timed], pairs and pairs[timed], batch_size=SPEED_BATCH_SIZE,
                                  max_length=max_length)  # fmt: skip
    for teacher in teachers:  # scored once on every row, in fp32 (an online teacher's forward carries the autocast)
        score_in_fp32(teacher)
    logits = {name: predict_logits(model, tokenizer, texts, pairs, batch_size=SPEED_BATCH_SIZE,
                                   max_length=max_length, progress=False)
              for name, (model, tokenizer) in models.items() if name != "student"}  # fmt: skip

    multi = plan.prepared.problem_type == MULTI_LABEL
    probs = []
    for i in range(len(teachers)):
        teacher_logits = torch.from_numpy(logits[f"teacher_{i}"])
        if plan.permutations[i] is not None:
            teacher_logits = teacher_logits[..., plan.permutations[i]]
        probs.append(teacher_probabilities(teacher_logits, 1.0, plan.prepared.problem_type))
    mixed = mix_probabilities(probs, d.teacher_weights).numpy()
    refs = np.asarray(split["labels"][:])
    preds = (mixed > 0.5).astype(int) if multi else mixed.argmax(-1)
    report = classification_metrics(preds, refs.astype(int) if multi else refs, plan.prepared.label_names,
                                    plan.prepared.problem_type)  # fmt: skip
    metric = "subset_accuracy" if multi else "accuracy"
    student_score = eval_metrics.get(f"eval_{metric}")
    teacher_score = report.get(metric)
    # An ensemble runs its teachers one after another.
    teacher_speed = 1.0 / sum(1.0 / speeds[f"teacher_{i}"] for i in range(len(teachers)))
    return {
        "teacher_eval_metric": metric,
        "teacher_eval_accuracy": teacher_score,
        "teacher_eval_f1_macro": report.get("f1_macro"),
        "student_eval_accuracy": student_score,
        "retention_percent": 100.0 * student_score / teacher_score if teacher_score else None,
        "teacher_samples_per_second": round(teacher_speed, 1),
        "student_samples_per_second": round(speeds["student"], 1),
        "speedup": speeds["student"] / teacher_speed,
        "speed_batch_size": SPEED_BATCH_SIZE,
        "speed_precision": precision_name(trainer.args),  # what the timed forward passes ran in
        "accuracy_precision": FINAL_METRICS_PRECISION,
        "speed_rows": len(texts[timed]),
        "teacher_parameters": sum(sum(p.numel() for p in t.parameters()) for t in teachers),
        "student_parameters": sum(p.numel() for p in student.parameters()),
    }


def run_distill(
    model_args: ModelArguments,
    data_args: DataArguments,
    distill_args: DistillationArguments,
    adapter_args: AdapterArguments,
    training_args: TransferTrainingArguments,
    callbacks: list | None = None,
) -> dict:
    """`callbacks`: extra `TrainerCallback`s (`hf-transfer search` prunes trials with one)."""
    import torch
    from transformers import set_seed

    d = distill_args
    set_seed(training_args.seed)
    push = plan_push(training_args)
    check_adapter_args(adapter_args, training_args)
    described = settle_recipe_fields("distill", model_args, data_args, distill_args)
    check_pushable_base(push, adapter_args, model_args)
    if adapter_args.enabled and d.student_layers is not None:
        raise ConfigError(
            "an adapter on a student built from teacher blocks is not supported yet: that student exists only in "
            "this run, so the adapter would have no base to load onto. Give a student model as "
            "model_name_or_path, or drop peft_method."
        )
    plan = preflight(model_args, data_args, d, training_args)
    for line in described:  # once the input has passed its checks: a refusal stays one line
        logger.warning(line)
    if training_args.release_freed_memory:
        release_freed_memory()
    adapter_plan = plan_adapter_on_meta(adapter_args, plan.student_config)
    if virtual := prompt_positions(adapter_plan and adapter_plan.peft_config):
        fit_max_seq_length(data_args, [(plan.student_config, plan.student_tokenizer)], virtual)
    check_resume_fits(training_args, plan.student_config, adapter_args)
    check_resume_settings(training_args, adapter_args, adapter_plan)
    apply_adapter_learning_rate(adapter_args, training_args)  # after every check, so an error stays one line
    say_overlap(plan.prepared.summary)
    max_length = data_args.max_seq_length
    teachers = [
        align_pad_token(load_teacher(name, config, model_args), tokenizer)
        for name, config, tokenizer in zip(
            d.teacher_model_name_or_path, plan.teacher_configs, plan.teacher_tokenizers, strict=True
        )
    ]
    student = build_student(plan, teachers, model_args, d)
    # The transfer set: the labelled rows, then the unlabelled and augmented ones (labelled -100: soft loss only).
    augmented = TransferRows()
    if d.augment_factor:
        with training_args.main_process_first(desc="augmentation"):
            augmented = augmented_rows(plan.prepared, d, teachers[0], plan.teacher_tokenizers[0], training_args.seed)
    plan.prepared = with_transfer_rows(plan.prepared, {"unlabelled": plan.unlabeled, "augmented": augmented})
    with training_args.main_process_first(desc="tokenization"):
        tokenized = tokenize_data(
            plan.prepared, plan.student_tokenizer, max_length, num_proc=data_args.preprocessing_num_workers
        )
    memory_at_load = memory_kib()
    if adapter_plan is not None:
        student = wrap(student, adapter_plan)
    if d.teacher_bf16:
        teachers = [t.to(torch.bfloat16) for t in teachers]

    train, cache_infos, online = tokenized["train"], [], []
    if d.uses_teacher and d.cache_teacher_logits:
        training_args.remove_unused_columns = False  # the cached teacher columns are not student inputs
        with training_args.main_process_first(desc="teacher logits"):
            train, cache_infos = _add_cached_logits(train, plan, teachers, d, max_length, training_args)
    elif d.uses_teacher:
        online = teachers
        training_args.remove_unused_columns = False  # the teacher's own token columns are not student inputs
        with training_args.main_process_first(desc="teacher tokenization"):
            train = _add_teacher_tokens(train, plan, max_length, data_args.preprocessing_num_workers)
    elif d.cache_teacher_logits:
        logger.info("alpha = 0 and no hidden-state loss: the teacher is not needed during training, no cache built.")

    trainer = DistillationTrainer(
        model=student,
        args=training_args,
        train_dataset=train,
        eval_dataset=tokenized["validation"],
        processing_class=plan.student_tokenizer,
        data_collator=DistillationCollator(plan.student_tokenizer, plan.prefix_tokenizers if online else {}),
        compute_metrics=make_compute_metrics(plan.prepared.label_names, plan.prepared.problem_type),
        problem_type=plan.prepared.problem_type,
        distill_args=d,
        teachers=online,
        teacher_permutations=plan.permutations,
        teacher_input_prefixes=plan.input_prefixes,
        num_teachers=len(teachers),
        layer_map=plan.layer_map,
        projections=hidden_state_projections(student.config, plan.teacher_configs[0], plan.layer_map),
        freeze_plan=plan.freeze_plan,
        class_weights=plan.class_weights,
        lora_b_lr_ratio=adapter_args.loraplus_lr_ratio,
        callbacks=[*early_stopping_callbacks(training_args), *(callbacks or [])],
    )

    def after_eval(trainer, eval_metrics):
        comparison = _compare_with_teachers(trainer, eval_metrics, plan, teachers, d, max_length)
        loss_terms = ["kd" if d.alpha > 0 else None, "ce" if d.alpha < 1 else None]
        loss_terms.append("hidden" if d.hidden_loss_weight > 0 else None)
        facts = {
            "teachers": d.teacher_model_name_or_path,
            "teacher_weights": d.teacher_weights,
            "alpha": d.alpha,
            "temperature": d.temperature,
            "loss_terms": [t for t in loss_terms if t],
            "hidden_loss_weight": d.hidden_loss_weight,
            "hidden_loss_type": d.hidden_loss_type if d.hidden_loss_weight else None,
            "hidden_loss_pooling": d.hidden_loss_pooling if d.hidden_loss_weight else None,
            "hidden_targets": ("cached" if cache_infos else "online") if d.hidden_loss_weight else None,
            "transfer_set": {
                **plan.prepared.summary["transfer_set"],
                "unlabelled_files": plan.unlabeled.summary or None,
                "augmentation": augmented.summary or None,
            },  # fmt: skip
            "layer_map": plan.layer_map,
            "hidden_projections": _projection_sizes(trainer.projections),
            "student_layers": d.student_layers,
            "teacher_dtype": "bf16" if d.teacher_bf16 else "fp32",
            "teacher_logit_cache": cache_infos or None,
            "prepared_teacher_classes": [type(t).__name__ for t in trainer.teachers] or None,
            **comparison,
        }
        m = model_args  # a student cut from the teacher's blocks comes from the (first) teacher, read at main
        origin = m.model_name_or_path or d.teacher_model_name_or_path[0]
        base, revision = hub_origin(origin, m.base_model_hub_id, m.model_revision if m.model_name_or_path else None)
        if d.student_layers and base == origin:  # a local teacher's blocks: the Hub model it stands for, if known
            base = folder_hub_lineage(origin) or base
        return {"distillation": facts, "base_model": base, "base_model_revision": revision}

    return fit_and_report(
        trainer,
        {**tokenized, "train": train},
        plan.prepared,
        (model_args, data_args, distill_args, adapter_args, training_args),
        task="distill",
        after_train=training_steps(training_args, tokenized, plan.prepared, plan.class_weights),
        after_eval=after_eval,
        after_save=adapter_finisher(adapter_plan, adapter_args, model_args, plan.student_config, tokenized),
        memory_at_load=memory_at_load,
        push=push,
    )
