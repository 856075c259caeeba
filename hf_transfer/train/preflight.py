"""The checks `train` and `distill` run before any weight is loaded: the data, the model's config with the data's
labels, the tokenizer, and the freeze plan."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hf_transfer.core.arguments import DataArguments, ModelArguments
from hf_transfer.core.column_hints import read_glue_pair
from hf_transfer.core.data import PreparedData, load_data
from hf_transfer.core.freezing import FreezePlan
from hf_transfer.core.inference import (
    cap_model_max_length,
    check_room_for_text,
    check_vocabulary,
    max_length_limit,
)
from hf_transfer.core.label_order import reorder_labels
from hf_transfer.core.models import (
    check_classifier_head,
    check_weights_complete,
    is_sequence_classifier,
    load_config,
    load_tokenizer,
    meta_layout,
)
from hf_transfer.core.reuse import prepared_data
from hf_transfer.core.runtime import launched_world_size
from hf_transfer.core.tables import file_columns
from hf_transfer.core.tasks import names_labels
from hf_transfer.errors import ConfigError
from hf_transfer.outputs.run_folder import check_output_dir_free, resolve_resume_checkpoint
from hf_transfer.train.arguments import TransferTrainingArguments
from hf_transfer.train.checks import (
    check_early_stopping_fields,
    check_label_smoothing,
    check_run_glue_switches,
    check_sharded_launch,
    check_steps_left,
    resume_launch_change,
)
from hf_transfer.train.feature_cache import trunk_depth
from hf_transfer.train.stages import (
    check_best_metric,
    class_weights_for,
    split_seed,
    warn_ignored_quality_fields,
    with_calibration_split,
)
from hf_transfer.train.trainer import freeze_plan_from_arguments

logger = logging.getLogger(__name__)


@dataclass
class TrainPlan:
    """What the pre-flight checks established for `hf-transfer train`, before any weight is loaded."""

    prepared: PreparedData
    config: object
    tokenizer: object
    freeze_plan: FreezePlan
    frozen_trunk_depth: int | None  # k when the frozen trunk's features are cached
    class_weights: list[float] | None = None  # in label order


def preflight(model_args: ModelArguments, data_args: DataArguments, training_args: TransferTrainingArguments):
    """Everything that can be checked without loading weights: data, model config, tokenizer, freeze plan."""
    if not model_args.model_name_or_path:
        raise ConfigError("model_name_or_path is required: a Hub id or a local model folder.")
    warn_ignored_quality_fields(training_args)
    check_weights_complete(model_args.model_name_or_path)  # milliseconds, before the data is read and tokenized
    prepared = load_checked_data(data_args, training_args, [model_args.model_name_or_path])
    check_best_metric(training_args, prepared)
    config, prepared = classifier_config(model_args, prepared)
    tokenizer = load_model_tokenizer(model_args, model_args.model_name_or_path)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    fit_max_seq_length(data_args, [(config, tokenizer)])
    freeze_plan = freeze_plan_from_arguments(meta_layout(config, need_blocks=False), training_args)
    _check_the_body_trains(freeze_plan, training_args)
    depth = None
    if training_args.cache_frozen_features:
        depth = trunk_depth(freeze_plan.layout, freeze_plan.frozen, config.model_type)
    prepared = with_calibration_split(prepared, training_args, config)
    return TrainPlan(prepared, config, tokenizer, freeze_plan, depth, class_weights_for(training_args, prepared))


def _check_the_body_trains(plan, args) -> None:
    """gradual_unfreezing and layerwise_lr_decay act on the body's blocks: where the freeze options leave only the
    head to train (freeze_embeddings with every block frozen; train_head_only with a decay), they were accepted, did
    nothing, and the card described them."""
    idle = [name for name, on in (("gradual_unfreezing", args.gradual_unfreezing),
                                  ("layerwise_lr_decay", args.layerwise_lr_decay != 1.0)) if on]  # fmt: skip
    if idle and plan.layout.blocks and not plan.will_train - set(plan.layout.head):
        raise ConfigError(
            f"the freeze options leave only the head to train, so {' and '.join(idle)} would change nothing; drop "
            f"{'them' if len(idle) > 1 else 'it'}, or freeze fewer blocks."
        )


def fit_max_seq_length(data_args: DataArguments, models: list[tuple], virtual: int = 0) -> None:
    """Lower `max_seq_length` to what every (config, tokenizer) can embed, as `predict`, `evaluate` and `export` do: a
    longer row failed inside the embeddings at the first training step, with a traceback. One too short to hold any
    text is refused (`check_room_for_text`). `virtual`: the positions a prompt-learning adapter takes before the text
    (`core.inference.prompt_positions`), for a list of the adapted model alone."""
    given = data_args.max_seq_length
    usable, limit = max_length_limit(models, given, virtual)
    if usable < given:
        adapter = f" with the adapter's {virtual} virtual tokens before the text" if virtual else ""
        logger.warning("max_seq_length %d is more than %s%s; using %d.", given, limit, adapter, usable)
        data_args.max_seq_length = usable
    for config, tokenizer in models:
        check_vocabulary(config, tokenizer)
        check_room_for_text(tokenizer, data_args.max_seq_length, bool(data_args.text_pair_column_name))
        cap_model_max_length(config, tokenizer, virtual)  # the saved tokenizer's own limit, for pipeline() etc.


def detect_pair_columns(data_args: DataArguments) -> None:
    """GLUE's text pairs in train_file read as pairs, as `run_glue.py` reads them (see `read_glue_pair`)."""
    if data_args.text_pair_column_name or not data_args.train_file:
        return
    columns = file_columns(data_args.train_file, data_args.csv_quoting)
    if columns is not None:
        read_glue_pair(data_args, columns, "train_file")


def load_checked_data(data_args: DataArguments, training_args: TransferTrainingArguments, inputs=()) -> PreparedData:
    """The training data, after the checks that need no model; built once, by the main process first. `inputs`
    are the model folders (or Hub ids) the run reads, which output_dir may not be."""
    if not (data_args.dataset_name or data_args.train_file):
        raise ConfigError("no training data: give train_file (csv, tsv, json, jsonl, parquet) or dataset_name.")
    if training_args.gradual_unfreezing and launched_world_size() > 1:
        # DDP registers only parameters that require grad when it wraps the model, so blocks unfrozen later
        # would never be synchronised across processes.
        raise ConfigError("gradual_unfreezing needs a single process; launch without --num_processes > 1.")
    check_sharded_launch(training_args)
    check_run_glue_switches(training_args, data_args)
    check_early_stopping_fields(training_args)
    detect_pair_columns(data_args)
    resolve_resume_checkpoint(training_args)
    check_steps_left(training_args)
    resume_launch_change(training_args)
    check_output_dir_free(training_args, inputs)
    with training_args.main_process_first(desc="dataset preparation"):
        seed = split_seed(training_args)
        prepared = prepared_data(data_args, seed, lambda: load_data(data_args, seed=seed))  # once in a search
    check_label_smoothing(training_args, prepared.problem_type)
    check_early_stopping_fields(training_args, warn=True)  # after the data's checks: a refusal stays one line
    if prepared.summary["validation_carved_from_train"]:  # recorded: which rows were held out is data + % + seed
        prepared.summary["validation"]["seed"] = split_seed(training_args)
    return prepared


def classifier_config(model_args: ModelArguments, prepared: PreparedData) -> tuple[object, PreparedData]:
    """The model's config, checked, with the data's labels, and the data. A model that already is a classifier of the
    same label names keeps its order (its head's rows are those labels'): the data's ids follow it. The data's own
    order (sorted names) had been written over the model's, so a head saved as positive, negative went on training
    and predicting with its rows swapped, without a word. Other names than the model's are said."""
    m = model_args
    config = load_config(
        m.model_name_or_path, revision=m.model_revision, cache_dir=m.cache_dir, trust_remote_code=m.trust_remote_code
    )
    check_classifier_head(config, len(prepared.label_names), m.model_name_or_path, m.ignore_mismatched_sizes)
    if is_sequence_classifier(config) and config.num_labels == len(prepared.label_names):
        names = [str((config.id2label or {}).get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
        if sorted(names) == sorted(prepared.label_names):
            prepared = reorder_labels(prepared, names)
        elif not m.ignore_mismatched_sizes and names_labels(names):
            logger.warning(
                f"model {m.model_name_or_path!r} is a classifier of other labels than the data's: its head's rows "
                f"are trained on as the data's, in this order: {_pairs(names, prepared.label_names)}; pass "
                "--ignore_mismatched_sizes true for a new head."
            )
    config.num_labels = len(prepared.label_names)
    config.id2label = prepared.id2label
    config.label2id = prepared.label2id
    config.problem_type = prepared.problem_type
    return config, prepared


def _pairs(names: list[str], data_names: list[str], shown: int = 10) -> str:
    pairs = [f"{a!r} -> {b!r}" for a, b in zip(names, data_names, strict=True)]
    return ", ".join(pairs[:shown]) + (f" and {len(pairs) - shown} more" if len(pairs) > shown else "")


def load_model_tokenizer(model_args: ModelArguments, default: str, default_revision: str | None = None):
    """The tokenizer_name's tokenizer (at its main), else `default`'s at `default_revision` (model_revision when None:
    it is model_name_or_path's)."""
    m = model_args
    return load_tokenizer(
        m.tokenizer_name or default,
        revision="main" if m.tokenizer_name else default_revision or m.model_revision,
        cache_dir=m.cache_dir,
        trust_remote_code=m.trust_remote_code,
    )
