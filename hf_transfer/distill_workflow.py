"""`hf-transfer distill`: check everything cheap first, load each teacher once, build or load the student, fill the
teacher-logit cache, train with `DistillationTrainer`, then measure the student against its teacher(s)."""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field

from .config import (
    AdapterArguments,
    ConfigError,
    DataArguments,
    DistillationArguments,
    ModelArguments,
    TransferTrainingArguments,
)
from .data import PreparedData, reorder_labels, tokenize_data
from .distillation import (
    check_layer_map,
    check_student_layers,
    default_layer_map,
    evenly_spaced_layer_map,
)
from .models import load_classifier, load_config, load_tokenizer, meta_layout
from .teachers import (
    cache_key,
    check_teacher_is_classifier,
    default_cache_dir,
    fingerprint_model,
    fingerprint_texts,
    fingerprint_tokenizer,
    load_or_build_logit_cache,
    measure_speed,
    teacher_label_permutation,
)
from .workflows import (
    adapter_finisher,
    check_adapter_args,
    check_freeze_plan,
    classifier_config,
    fit_and_report,
    load_checked_data,
    load_model_tokenizer,
    memory_kib,
    plan_adapter_on_meta,
    plan_push,
)

logger = logging.getLogger(__name__)

SPEED_BATCH_SIZE = 64


@dataclass
class DistillPlan:
    """What the pre-flight checks established, before any weight is loaded."""

    prepared: PreparedData
    student_config: object
    student_tokenizer: object
    teacher_configs: list
    teacher_tokenizers: list
    permutations: list[list[int] | None]
    input_prefixes: list[str | None]  # None: the teacher reads the student's tokens
    prefix_tokenizers: dict = field(default_factory=dict)
    layer_map: dict[int, int] | None = None


# --- pre-flight -----------------------------------------------------------------------------------------------------


def _preflight(
    model_args: ModelArguments,
    data_args: DataArguments,
    d: DistillationArguments,
    training_args: TransferTrainingArguments,
) -> DistillPlan:
    from .distillation_trainer import tokenizer_group_prefix

    m = model_args
    if training_args.cache_frozen_features:
        raise ConfigError(
            "cache_frozen_features is for hf-transfer train; distil with cache_teacher_logits instead, or drop it."
        )
    if d.student_layers is not None and m.model_name_or_path:
        raise ConfigError(
            "give either model_name_or_path (a separate student) or student_layers (a student built from the "
            f"teacher's blocks), not both; got {m.model_name_or_path!r} and {d.student_layers}."
        )
    if d.student_layers is None and not m.model_name_or_path:
        raise ConfigError(
            "no student: set model_name_or_path to a student model, or student_layers (e.g. [0, 2, 4]) to build "
            "one from the teacher's blocks."
        )
    prepared = load_checked_data(data_args, training_args)
    load_kwargs = {"revision": m.model_revision, "cache_dir": m.cache_dir, "trust_remote_code": m.trust_remote_code}
    teacher_names = d.teacher_model_name_or_path
    teacher_configs = []
    for name in teacher_names:
        config = load_config(name, **load_kwargs)
        check_teacher_is_classifier(config, name)
        teacher_configs.append(config)
    teacher_layout = meta_layout(teacher_configs[0])

    if d.student_layers is not None:
        first = teacher_configs[0]
        check_student_layers(d.student_layers, teacher_layout.depth)
        if teacher_layout.depth != first.num_hidden_layers:
            raise ConfigError(
                f"teacher {teacher_names[0]!r} shares weights across its {first.num_hidden_layers} layers (ALBERT?), "
                "so no student can be cut from its blocks; give a separate student as model_name_or_path."
            )
        teacher_label_permutation(first, prepared.label_names, teacher_names[0])
        names = [str(first.id2label[i]) for i in range(first.num_labels)]
        if sorted(names) == sorted(prepared.label_names):
            # The student copies the teacher's head, so the data takes the teacher's label order.
            prepared = reorder_labels(prepared, names)
        student_config = copy.deepcopy(first)
        student_config.num_hidden_layers = len(d.student_layers)
        student_config.id2label, student_config.label2id = prepared.id2label, prepared.label2id
        student_config.problem_type = prepared.problem_type
        student_tokenizer = load_model_tokenizer(model_args, d.teacher_tokenizer_name or teacher_names[0])
    else:
        student_config = classifier_config(model_args, prepared)
        student_tokenizer = load_model_tokenizer(model_args, m.model_name_or_path)
    if getattr(student_config, "pad_token_id", None) is None:
        student_config.pad_token_id = student_tokenizer.pad_token_id

    permutations = []
    for name, config in zip(teacher_names, teacher_configs, strict=True):
        permutations.append(teacher_label_permutation(config, prepared.label_names, name))
        teacher_problem = getattr(config, "problem_type", None)
        if teacher_problem and teacher_problem != prepared.problem_type:
            raise ConfigError(
                f"teacher {name!r} was trained for {teacher_problem} but the data is {prepared.problem_type}."
            )
    student_layout = meta_layout(student_config)
    check_freeze_plan(student_layout, training_args)

    student_fp = fingerprint_tokenizer(student_tokenizer)
    teacher_tokenizers, input_prefixes, prefix_tokenizers, group_of = [], [], {}, {}
    for name in teacher_names:
        tokenizer = load_tokenizer(d.teacher_tokenizer_name or name, **load_kwargs)
        fp = fingerprint_tokenizer(tokenizer)
        teacher_tokenizers.append(tokenizer)
        if fp == student_fp:
            input_prefixes.append(None)
            continue
        prefix = group_of.setdefault(fp, tokenizer_group_prefix(len(group_of)))
        prefix_tokenizers[prefix] = tokenizer
        input_prefixes.append(prefix)

    layer_map = None
    if d.hidden_loss_weight > 0:
        if input_prefixes[0] is not None:
            raise ConfigError(
                "the hidden-state loss compares token by token, so teacher and student must share a tokenizer; "
                "theirs differ. Set hidden_loss_weight: 0, or use a student with the teacher's tokenizer."
            )
        if d.layer_map is not None:
            layer_map = check_layer_map(d.layer_map, student_layout.depth, teacher_layout.depth)
        elif d.student_layers is not None:
            layer_map = default_layer_map(d.student_layers, teacher_layout.depth)
        else:
            layer_map = evenly_spaced_layer_map(student_layout.depth, teacher_layout.depth)
        sizes_differ = student_config.hidden_size != teacher_configs[0].hidden_size
        if sizes_differ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(
                f"student hidden size {student_config.hidden_size} differs from the teacher's "
                f"{teacher_configs[0].hidden_size}: the learned projection is trained in a single process only."
            )
    return DistillPlan(
        prepared,
        student_config,
        student_tokenizer,
        teacher_configs,
        teacher_tokenizers,
        permutations,
        input_prefixes,
        prefix_tokenizers,
        layer_map,
    )


# --- construction steps ---------------------------------------------------------------------------------------------


def _load_teacher(name: str, config, model_args: ModelArguments):
    m = model_args
    teacher = load_classifier(
        name, config, revision=m.model_revision, cache_dir=m.cache_dir, trust_remote_code=m.trust_remote_code
    )
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def _build_student(plan: DistillPlan, teachers: list, model_args: ModelArguments, d: DistillationArguments):
    from .distillation import build_student_from_teacher

    m = model_args
    if d.student_layers is None:
        return load_classifier(
            m.model_name_or_path,
            plan.student_config,
            revision=m.model_revision,
            cache_dir=m.cache_dir,
            trust_remote_code=m.trust_remote_code,
            ignore_mismatched_sizes=m.ignore_mismatched_sizes,
        )
    student = build_student_from_teacher(teachers[0], d.student_layers)
    student.config.id2label, student.config.label2id = plan.student_config.id2label, plan.student_config.label2id
    student.config.problem_type = plan.student_config.problem_type
    student.config.pad_token_id = plan.student_config.pad_token_id
    return student


def _add_cached_logits(train, plan: DistillPlan, teachers: list, d: DistillationArguments, max_length: int, device):
    """Columns `teacher_logits_{i}` (or top-k ones) from each teacher's cache, built where missing."""
    import datasets

    from .inference import predict_logits

    split = plan.prepared.datasets["train"]
    texts = list(split[plan.prepared.text_column])
    pairs = list(split[plan.prepared.text_pair_column]) if plan.prepared.text_pair_column else None
    data_fp = fingerprint_texts(texts, pairs)
    root = d.teacher_cache_dir or default_cache_dir()
    columns, infos = [train], []
    for i, teacher in enumerate(teachers):
        tokenizer, perm = plan.teacher_tokenizers[i], plan.permutations[i]
        key = cache_key(
            teacher=fingerprint_model(teacher),
            tokenizer=fingerprint_tokenizer(tokenizer),
            max_seq_length=max_length,
            data=data_fp,
            dtype=str(teacher.dtype),
            permutation=perm,
            top_k=d.teacher_top_k,
        )

        def build(teacher=teacher, tokenizer=tokenizer, perm=perm, i=i):
            logits = predict_logits(
                teacher.to(device),
                tokenizer,
                texts,
                pairs,
                batch_size=d.teacher_batch_size,
                max_length=max_length,
                desc=f"teacher logits ({i + 1}/{len(teachers)})",
            )
            return logits if perm is None else logits[:, perm]

        description = {"teacher": d.teacher_model_name_or_path[i], "rows": len(texts), "max_seq_length": max_length}
        cache, info = load_or_build_logit_cache(root, key, len(texts), build, top_k=d.teacher_top_k,
                                                description=description)  # fmt: skip
        columns.append(cache.rename_columns({c: f"{c}_{i}" for c in cache.column_names}))
        infos.append(info)
    return datasets.concatenate_datasets(columns, axis=1), infos


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


def _compare_with_teachers(
    trainer, eval_metrics: dict, plan: DistillPlan, teachers: list, d: DistillationArguments, max_length: int
):
    """Teacher dev accuracy, retention and the inference speed ratio, measured on the validation set."""
    import numpy as np
    import torch

    from .distillation import mix_probabilities, teacher_probabilities
    from .evaluation import classification_metrics
    from .losses import MULTI_LABEL

    if not trainer.is_world_process_zero():
        return {}
    device = trainer.args.device
    student = trainer.accelerator.unwrap_model(trainer.model)
    split = plan.prepared.datasets["validation"]
    texts = list(split[plan.prepared.text_column])
    pairs = list(split[plan.prepared.text_pair_column]) if plan.prepared.text_pair_column else None
    models = {"student": (student, plan.student_tokenizer)}
    for i, teacher in enumerate(teachers):
        models[f"teacher_{i}"] = (teacher.to(device), plan.teacher_tokenizers[i])
    speeds, logits = measure_speed(models, texts, pairs, batch_size=SPEED_BATCH_SIZE, max_length=max_length)

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
        "speed_rows": len(texts),
        "teacher_parameters": sum(sum(p.numel() for p in t.parameters()) for t in teachers),
        "student_parameters": sum(p.numel() for p in student.parameters()),
    }


# --- the command ----------------------------------------------------------------------------------------------------


def run_distill(
    model_args: ModelArguments,
    data_args: DataArguments,
    distill_args: DistillationArguments,
    adapter_args: AdapterArguments,
    training_args: TransferTrainingArguments,
) -> dict:
    import torch
    from transformers import set_seed

    from .distillation_trainer import DistillationCollator, DistillationTrainer
    from .evaluation import make_compute_metrics

    d = distill_args
    set_seed(training_args.seed)
    push = plan_push(training_args)
    check_adapter_args(adapter_args, training_args)
    if adapter_args.enabled and d.student_layers is not None:
        raise ConfigError(
            "an adapter on a student built from teacher blocks is not supported yet: that student exists only in "
            "this run, so the adapter would have no base to load onto. Give a student model as "
            "model_name_or_path, or drop peft_method."
        )
    plan = _preflight(model_args, data_args, d, training_args)
    adapter_plan = plan_adapter_on_meta(adapter_args, plan.student_config)
    max_length = data_args.max_seq_length
    with training_args.main_process_first(desc="tokenization"):
        tokenized = tokenize_data(
            plan.prepared, plan.student_tokenizer, max_length, num_proc=data_args.preprocessing_num_workers
        )
    teachers = [
        _load_teacher(name, config, model_args)
        for name, config in zip(d.teacher_model_name_or_path, plan.teacher_configs, strict=True)
    ]
    student = _build_student(plan, teachers, model_args, d)
    memory_at_load = memory_kib()
    if adapter_plan is not None:
        from .adapters import wrap

        student = wrap(student, adapter_plan)
    if d.teacher_bf16:
        teachers = [t.to(torch.bfloat16) for t in teachers]

    train, cache_infos, online = tokenized["train"], [], []
    if d.uses_teacher and d.cache_teacher_logits:
        with training_args.main_process_first(desc="teacher logits"):
            train, cache_infos = _add_cached_logits(train, plan, teachers, d, max_length, training_args.device)
    elif d.uses_teacher:
        online = teachers
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
            "layer_map": plan.layer_map,
            "student_layers": d.student_layers,
            "teacher_dtype": "bf16" if d.teacher_bf16 else "fp32",
            "teacher_logit_cache": cache_infos or None,
            "prepared_teacher_classes": [type(t).__name__ for t in trainer.teachers] or None,
            **comparison,
        }
        base = model_args.base_model_hub_id or model_args.model_name_or_path or d.teacher_model_name_or_path[0]
        return {"distillation": facts, "base_model": base}

    return fit_and_report(
        trainer,
        {**tokenized, "train": train},
        plan.prepared,
        (model_args, data_args, distill_args, adapter_args, training_args),
        task="distill",
        after_eval=after_eval,
        after_save=adapter_finisher(adapter_plan, adapter_args, model_args, plan.student_config, tokenized),
        memory_at_load=memory_at_load,
        push=push,
    )
