"""The pre-flight of `hf-transfer distill` (every check on the teachers, the student and the data before any weight
loads) and the construction steps that follow it: loading each teacher once and building or loading the student."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields

from hf_transfer.adapters.inference import check_teacher_texts, default_trained_columns
from hf_transfer.core.arguments import DataArguments, ModelArguments
from hf_transfer.core.caching import fingerprint_tokenizer
from hf_transfer.core.cleaning import label_name_keys
from hf_transfer.core.data import PreparedData
from hf_transfer.core.freezing import FreezePlan
from hf_transfer.core.label_order import reorder_labels
from hf_transfer.core.models import check_weights_complete, load_classifier, load_config, load_tokenizer, meta_layout
from hf_transfer.core.runtime import deepspeed_launch, launched_world_size
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.distill.arguments import DistillationArguments
from hf_transfer.distill.students import (
    body_layer_map,
    build_student_from_teacher,
    check_final_norm_pairs,
    check_layer_map,
    check_pooling_block_pairs,
    check_student_layers,
    default_layer_map,
)
from hf_transfer.distill.teachers import check_teacher_is_classifier, teacher_label_permutation
from hf_transfer.distill.trainer import tokenizer_group_prefix
from hf_transfer.distill.transfer_set import TransferRows, read_unlabeled
from hf_transfer.errors import ConfigError
from hf_transfer.train.arguments import TransferTrainingArguments
from hf_transfer.train.few_shot_head import mean_pooling_block, saved_mean_pooling_block
from hf_transfer.train.preflight import (
    classifier_config,
    fit_max_seq_length,
    load_checked_data,
    load_model_tokenizer,
)
from hf_transfer.train.stages import (
    check_best_metric,
    class_weights_for,
    warn_ignored_quality_fields,
    with_calibration_split,
)
from hf_transfer.train.trainer import freeze_plan_from_arguments


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
    freeze_plan: FreezePlan
    prefix_tokenizers: dict = field(default_factory=dict)
    layer_map: dict[int, int] | None = None
    class_weights: list[float] | None = None
    unlabeled: TransferRows = field(default_factory=TransferRows)
    # The first teacher's few-shot mean-pooling block, read from its weights, where student_layers or the hidden loss
    # need it (False: not looked for).
    teacher_pooling_block: int | None | bool = False


# The most augmented rows a distillation makes: SST-2's 67k sentences at augment_factor 20 make 1.3M.
MAX_AUGMENTED_ROWS = 20_000_000


def preflight(
    model_args: ModelArguments,
    data_args: DataArguments,
    d: DistillationArguments,
    training_args: TransferTrainingArguments,
) -> DistillPlan:

    m = model_args
    if training_args.linear_probe_epochs:
        raise ConfigError(
            "linear_probe_epochs (LP-FT) is for hf-transfer train; a student starts from its teacher's head, or train "
            "the student model with LP-FT first and give it as model_name_or_path."
        )
    if training_args.cache_frozen_features:
        raise ConfigError(
            "cache_frozen_features is for hf-transfer train; distil with cache_teacher_logits instead, or drop it."
        )
    _check_train_only_options(d, training_args)
    warn_ignored_quality_fields(training_args)
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
    for name in [*d.teacher_model_name_or_path, *([m.model_name_or_path] if m.model_name_or_path else [])]:
        check_weights_complete(name)  # milliseconds, before the data is read and tokenized
    # model_revision is the student's: a teacher is read at its repository's main (it was applied to every teacher).
    load_kwargs = {"cache_dir": m.cache_dir, "trust_remote_code": m.trust_remote_code}
    teacher_names = d.teacher_model_name_or_path
    teacher_configs = []
    for name in teacher_names:
        config = load_config(name, **load_kwargs, option="teacher_model_name_or_path")
        check_teacher_is_classifier(config, name)
        teacher_configs.append(config)
    teacher_layout = meta_layout(teacher_configs[0])
    _check_teacher_shape(d, teacher_names[0], teacher_configs[0], teacher_layout.depth)  # configs alone: before data
    default_trained_columns(teacher_names[0], data_args, data_args.train_file)  # unset: the teacher's, as predict's
    prepared = load_checked_data(data_args, training_args, [*teacher_names, m.model_name_or_path])
    check_teacher_texts(teacher_names, prepared.text_pair_column)
    check_best_metric(training_args, prepared)
    copies = len(prepared.datasets["train"]) * d.augment_factor
    if copies > MAX_AUGMENTED_ROWS:  # a typo (1e9) augmented, then trained, for ever, with no word
        raise ConfigError(
            f"augment_factor {d.augment_factor} would make {copies:,} augmented rows from "
            f"{len(prepared.datasets['train']):,} labelled ones, over {MAX_AUGMENTED_ROWS:,}; factors of 10 to 30 are "
            "usual (TinyBERT uses 20)."
        )
    if d.teacher_top_k is not None and prepared.problem_type == MULTI_LABEL:
        # The top-k targets are a softmax over the k kept logits, not each label's own sigmoid.
        raise ConfigError(
            f"teacher_top_k {d.teacher_top_k} keeps a softmax over the teacher's top logits, but the data is "
            "multi-label, whose soft targets are each label's own sigmoid; drop teacher_top_k (the cache then keeps "
            "every label's logit)."
        )

    if d.student_layers is not None:
        first = teacher_configs[0]
        teacher_label_permutation(first, prepared.label_names, teacher_names[0])
        # As the data spells them (`true` is True): raw true/false kept the data's order, and the copied head swapped.
        names = label_name_keys([str(first.id2label[i]) for i in range(first.num_labels)])
        if sorted(names) == sorted(prepared.label_names):
            # The student copies the teacher's head, so the data takes the teacher's label order.
            prepared = reorder_labels(prepared, names)
        student_config = copy.deepcopy(first)
        student_config.num_hidden_layers = len(d.student_layers)
        student_config.id2label, student_config.label2id = prepared.id2label, prepared.label2id
        student_config.problem_type = prepared.problem_type
        student_tokenizer = load_model_tokenizer(model_args, d.teacher_tokenizer_name or teacher_names[0], "main")
    else:
        student_config, prepared = classifier_config(model_args, prepared)
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
    if d.student_layers is not None and getattr(student_config, "is_encoder_decoder", False):
        raise ConfigError(
            f"student_layers cuts a student from teacher {teacher_names[0]!r}'s blocks, but it is an encoder-decoder "
            f"({student_config.model_type}): the cut takes encoder blocks and leaves the decoder whole; give a "
            "separate student as model_name_or_path."
        )
    if d.student_layers is not None and student_layout.depth != len(d.student_layers):
        raise ConfigError(
            f"a student cut from teacher {teacher_names[0]!r} ({student_config.model_type}) would have "
            f"{student_layout.depth} blocks, not the {len(d.student_layers)} of student_layers: this architecture "
            "does not size its blocks by num_hidden_layers alone (an encoder-decoder?); give a separate student as "
            "model_name_or_path."
        )
    freeze_plan = freeze_plan_from_arguments(student_layout, training_args)
    teacher_pooling, student_pooling = False, None
    if d.student_layers is not None or d.hidden_loss_weight > 0:
        where = {"cache_dir": m.cache_dir}
        teacher_pooling = saved_mean_pooling_block(teacher_names[0], teacher_configs[0], **where)
        if d.student_layers is not None:
            _check_keeps_mean_pooling_block(teacher_pooling, teacher_names[0], d.student_layers)
            student_pooling = None if teacher_pooling is None else len(d.student_layers) - 1
        else:
            student_pooling = saved_mean_pooling_block(
                m.model_name_or_path, student_config, revision=m.model_revision, **where
            )

    student_fp = fingerprint_tokenizer(student_tokenizer)
    teacher_tokenizers, input_prefixes, prefix_tokenizers, group_of = [], [], {}, {}
    for name, config in zip(teacher_names, teacher_configs, strict=True):
        tokenizer = load_tokenizer(d.teacher_tokenizer_name or name, **load_kwargs)
        if getattr(config, "pad_token_id", None) is None:
            # A decoder classifier (GPT-2) finds each row's last token by its pad id: without one it refuses batches.
            config.pad_token_id = tokenizer.pad_token_id
        fp = fingerprint_tokenizer(tokenizer)
        teacher_tokenizers.append(tokenizer)
        if fp == student_fp:
            input_prefixes.append(None)
            continue
        prefix = group_of.setdefault(fp, tokenizer_group_prefix(len(group_of)))
        prefix_tokenizers[prefix] = tokenizer
        input_prefixes.append(prefix)
    if d.student_layers is not None and input_prefixes[0] is not None:
        # The student's embedding rows are the teacher's: another tokenizer's ids pick the wrong rows, silently.
        raise ConfigError(
            f"student_layers builds the student from teacher {teacher_names[0]!r}'s embeddings, so it reads that "
            f"teacher's tokenizer, but tokenizer_name {m.tokenizer_name!r} tokenizes otherwise; drop tokenizer_name "
            "(teacher_tokenizer_name sets the tokenizer of both)."
        )

    layer_map = None
    if d.hidden_loss_weight > 0:
        for who, config in ((f"teacher {teacher_names[0]!r}", teacher_configs[0]), ("the student", student_config)):
            if getattr(config, "is_encoder_decoder", False):  # its classifier's output has no hidden_states
                raise ConfigError(
                    f"the hidden-state loss reads a model's hidden_states, but {who} is an encoder-decoder "
                    f"({config.model_type}), whose classifier returns none; set hidden_loss_weight: 0."
                )
        for who, config in ((f"teacher {teacher_names[0]!r}", teacher_configs[0]), ("the student", student_config)):
            if d.hidden_loss_pooling == "cls" and _is_decoder_only(config):
                raise ConfigError(
                    f"hidden_loss_pooling cls compares the first token's state, but {who} is a decoder-only model "
                    f"({config.model_type}), whose first token sees only itself: every row would give nearly one "
                    "target. Set hidden_loss_pooling: mean."
                )
        tokens = d.hidden_loss_pooling == "tokens"  # pooled states are one vector per row, whatever the tokens
        if (
            tokens
            and input_prefixes[0] is not None
            and not _same_token_positions(student_tokenizer, teacher_tokenizers[0])
        ):
            raise ConfigError(
                "the hidden-state loss with hidden_loss_pooling tokens compares token by token, so teacher and "
                "student must share a tokenizer; theirs differ. Set hidden_loss_pooling to mean or cls (one vector "
                "per row), or hidden_loss_weight: 0, or use a student with the teacher's tokenizer."
            )
        # The loss reads hidden_states, one per layer run: ALBERT runs its one shared block num_hidden_layers times.
        student_depth, teacher_depth = student_config.num_hidden_layers, teacher_configs[0].num_hidden_layers
        if d.layer_map is not None:
            layer_map = check_layer_map(d.layer_map, student_depth, teacher_depth)
        elif d.student_layers is not None:
            layer_map = default_layer_map(d.student_layers, teacher_depth)
        else:
            layer_map = body_layer_map(student_depth, teacher_depth, student_pooling, teacher_pooling)
        check_pooling_block_pairs(layer_map, student_pooling, teacher_pooling)
        check_final_norm_pairs(layer_map, (student_layout, student_depth), (teacher_layout, teacher_depth))
        if student_config.hidden_size != teacher_configs[0].hidden_size:
            check_projection_launch(training_args, student_config.hidden_size, teacher_configs[0].hidden_size)
    fit_max_seq_length(
        data_args, [(student_config, student_tokenizer), *zip(teacher_configs, teacher_tokenizers, strict=True)]
    )
    unlabeled = TransferRows()
    if d.unlabeled_file:
        label = prepared.summary.get("columns", {}).get("label")
        unlabeled = read_unlabeled(
            d.unlabeled_file, prepared.text_column, prepared.text_pair_column, data_args.csv_quoting, label
        )
    prepared = with_calibration_split(prepared, training_args, student_config)
    return DistillPlan(
        prepared,
        student_config,
        student_tokenizer,
        teacher_configs,
        teacher_tokenizers,
        permutations,
        input_prefixes,
        freeze_plan,
        prefix_tokenizers,
        layer_map,
        class_weights_for(training_args, prepared),
        unlabeled,
        teacher_pooling,
    )


def _is_decoder_only(config) -> bool:
    """A left-to-right model (GPT-2, Llama, ...): a causal LM architecture and no masked-LM one (BERT has both)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _same_token_positions(student_tokenizer, teacher_tokenizer) -> bool:
    """Whether both tokenizers put the same ids at the same positions of every text, padded alike, though they name
    other inputs (BERT's and DistilBERT's: the teacher then reads its own tokenization, token_type_ids included)."""
    backends = [getattr(t, "backend_tokenizer", None) for t in (student_tokenizer, teacher_tokenizer)]
    if None in backends:
        return False
    # Without the truncation and padding a saved tokenizer.json may hold: transformers sets both on every call.
    definitions = [{**json.loads(b.to_str()), "truncation": None, "padding": None} for b in backends]
    if definitions[0] != definitions[1]:
        return False
    padding = [(t.padding_side, t.truncation_side, t.pad_token_id) for t in (student_tokenizer, teacher_tokenizer)]
    return padding[0] == padding[1]


def _check_train_only_options(d: DistillationArguments, training_args: TransferTrainingArguments) -> None:
    """Fields distill would accept and ignore: the few-shot route (train's), and class weights or label smoothing with
    no CE term."""
    defaults = {f.name: f.default for f in fields(TransferTrainingArguments)}
    few_shot = [
        n for n, default in defaults.items() if n.startswith("few_shot_") and getattr(training_args, n) != default
    ]
    if str(training_args.few_shot) == "true" or few_shot:
        named = "few_shot is true" if str(training_args.few_shot) == "true" else f"{few_shot[0]} is set"
        raise ConfigError(
            f"{named}, but the few-shot route is hf-transfer train's; distill never takes it. Train the few-shot "
            "model with hf-transfer train and give it as teacher_model_name_or_path, or drop the few_shot fields."
        )
    for name, does in (("class_weights", "weigh"), ("label_smoothing_factor", "smooths")):  # nothing to act on
        if getattr(training_args, name) and d.alpha == 1:
            raise ConfigError(f"{name} {does} the hard-label (CE) term, but alpha is 1, so the loss has none and it "
                              f"would change nothing; lower alpha, or drop {name}.")  # fmt: skip


def _check_teacher_shape(d: DistillationArguments, name: str, config, depth: int) -> None:
    """What the first teacher's config alone decides: the blocks a student can keep, and how many logits there are."""
    if d.student_layers is not None:
        check_student_layers(d.student_layers, depth)
        if depth != config.num_hidden_layers:
            raise ConfigError(
                f"teacher {name!r} shares weights across its {config.num_hidden_layers} layers (ALBERT?), so no "
                "student can be cut from its blocks; give a separate student as model_name_or_path."
            )
    if d.teacher_top_k is not None and d.teacher_top_k > config.num_labels:
        raise ConfigError(
            f"teacher_top_k is {d.teacher_top_k} but teacher {name!r} has only {config.num_labels} labels, so the "
            "cache would keep every logit anyway; "
            + (
                f"set teacher_top_k from 2 to {config.num_labels - 1}, or drop it."
                if config.num_labels > 2
                else "drop it (2 labels leave nothing to cut)."
            )  # fmt: skip
        )


def load_teacher(name: str, config, model_args: ModelArguments):
    m = model_args
    teacher = load_classifier(name, config, cache_dir=m.cache_dir, trust_remote_code=m.trust_remote_code)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def build_student(plan: DistillPlan, teachers: list, model_args: ModelArguments, d: DistillationArguments):

    m = model_args
    found = mean_pooling_block(teachers[0])
    if plan.teacher_pooling_block is not False and found != plan.teacher_pooling_block:
        raise ConfigError(
            f"teacher {d.teacher_model_name_or_path[0]!r} ends with the few-shot route's mean-pooling block (block "
            f"{found}), which student_layers and the hidden-state loss must know of, but its weights could not be "
            "read before loading (no safetensors file); save it with save_pretrained (safetensors) and run again."
        )
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


def _check_keeps_mean_pooling_block(block: int | None, name: str, student_layers: list[int]) -> None:
    """A few-shot route teacher's head reads the mean-pooled embedding that its last block (`block`) puts at the first
    token: a student cut without that block feeds the head the first token's own state, and starts at chance (SST-2,
    MiniLM: 0.51 against 0.70 with the block, 0.51 against 0.75 after an epoch of distillation)."""
    if block is not None and block not in student_layers:
        raise ConfigError(
            f"teacher {name!r} ends with the few-shot route's mean-pooling block (block {block}), whose output its "
            f"head was fitted on; a student of blocks {list(student_layers)} would feed that head the first token's "
            f"state and start at chance. Keep the block last: student_layers {[*student_layers, block]}."
        )


def check_projection_launch(training_args, student_size: int, teacher_size: int) -> None:
    """The learned projection between hidden sizes is no part of the DDP-wrapped student: its gradients are averaged
    over the processes before each optimizer step, after fp16's GradScaler has looked for overflow in each process's
    own (so one process could skip a step the other takes); DeepSpeed's engine holds the student alone."""
    deepspeed = deepspeed_launch()
    if launched_world_size() > 1 and (training_args.fp16 or deepspeed):
        engine = "DeepSpeed" if deepspeed else "fp16 over several processes"
        raise ConfigError(
            f"student hidden size {student_size} differs from the teacher's {teacher_size}, and the projection "
            f"learned between them cannot train under {engine}; use bf16 (or fp32) with DDP, one process, or a "
            "student of the teacher's width (student_layers)."
        )
