"""`hf-transfer train`: check everything cheap first, then tokenize, load the model, add the adapter or the
frozen-feature cache, train with `TransferTrainer`, and write the run folder."""

from __future__ import annotations

import logging

from hf_transfer.adapters.arguments import AdapterArguments
from hf_transfer.adapters.peft_model import adapter_finisher, check_pushable_base, wrap
from hf_transfer.adapters.plan import apply_adapter_learning_rate, check_adapter_args, plan_adapter_on_meta
from hf_transfer.core.arguments import DataArguments, ModelArguments
from hf_transfer.core.caching import fingerprint_texts
from hf_transfer.core.data import tokenize_data
from hf_transfer.core.inference import prompt_positions
from hf_transfer.core.memory import memory_kib, release_freed_memory
from hf_transfer.core.metrics import make_compute_metrics
from hf_transfer.core.models import load_classifier
from hf_transfer.core.overlap import say_overlap
from hf_transfer.core.recipe_overrides import settle_recipe_fields
from hf_transfer.core.reuse import tokenized_data
from hf_transfer.outputs.hub import plan_push
from hf_transfer.outputs.run_folder import check_resume_fits
from hf_transfer.train.arguments import TransferTrainingArguments
from hf_transfer.train.checks import check_adapter_checkpoint_fits, check_resume_settings
from hf_transfer.train.feature_cache import FrozenFeatureCollator, with_frozen_features
from hf_transfer.train.few_shot import decide_few_shot, run_few_shot
from hf_transfer.train.fit import fit_and_report
from hf_transfer.train.preflight import TrainPlan, fit_max_seq_length, preflight
from hf_transfer.train.stages import early_stopping_callbacks, run_linear_probe, training_steps
from hf_transfer.train.trainer import TransferTrainer

logger = logging.getLogger(__name__)

# The argument dataclasses of `hf-transfer train`, in the order `run_train` takes them.
TRAIN_ARGUMENTS = (ModelArguments, DataArguments, AdapterArguments, TransferTrainingArguments)


def run_train(
    model_args: ModelArguments,
    data_args: DataArguments,
    adapter_args: AdapterArguments,
    training_args: TransferTrainingArguments,
    callbacks: list | None = None,
) -> dict:
    """`callbacks`: extra `TrainerCallback`s (`hf-transfer search` prunes trials with one)."""
    from transformers import DataCollatorWithPadding, set_seed

    set_seed(training_args.seed)
    check_adapter_args(adapter_args, training_args)
    described = settle_recipe_fields("train", model_args, data_args)
    push = plan_push(training_args)
    check_pushable_base(push, adapter_args, model_args)
    plan = preflight(model_args, data_args, training_args)
    for line in described:  # once the input has passed its checks: a refusal stays one line
        logger.warning(line)
    if training_args.release_freed_memory:
        release_freed_memory()
    # --- few-shot route (issue 21): chosen on the checked data, before any weight loads (train/few_shot.py) ---
    few_shot = decide_few_shot(plan, model_args, adapter_args, training_args, data_args.max_train_samples)
    if few_shot.on:
        return run_few_shot(model_args, data_args, adapter_args, training_args, plan, push, few_shot, callbacks)
    prepared, config, tokenizer = plan.prepared, plan.config, plan.tokenizer
    adapter_plan = plan_adapter_on_meta(adapter_args, config)
    if virtual := prompt_positions(adapter_plan and adapter_plan.peft_config):
        fit_max_seq_length(data_args, [(config, tokenizer)], virtual)
    check_resume_fits(training_args, config, adapter_args)
    check_adapter_checkpoint_fits(training_args, config, model_args.model_name_or_path)
    check_resume_settings(training_args, adapter_args, adapter_plan)
    apply_adapter_learning_rate(adapter_args, training_args)  # after every check, so an error stays one line
    say_overlap(prepared.summary)
    with training_args.main_process_first(desc="tokenization"):
        workers, length = data_args.preprocessing_num_workers, data_args.max_seq_length
        tokenized = tokenized_data(  # once in a search, for the trials that share the data
            prepared, tokenizer, length, lambda: tokenize_data(prepared, tokenizer, length, num_proc=workers)
        )
    m = model_args
    model = load_classifier(
        m.model_name_or_path,
        config,
        revision=m.model_revision,
        cache_dir=m.cache_dir,
        trust_remote_code=m.trust_remote_code,
        ignore_mismatched_sizes=m.ignore_mismatched_sizes,
    )
    memory_at_load = memory_kib()
    compute_metrics = make_compute_metrics(prepared.label_names, prepared.problem_type)
    probe = {}
    if training_args.linear_probe_epochs:
        probe = run_linear_probe(model, plan, tokenized, data_args, training_args, plan.class_weights, compute_metrics)
    if adapter_plan is not None:
        model = wrap(model, adapter_plan)
    train_dataset, collator, after_eval = tokenized["train"], DataCollatorWithPadding(tokenizer), None
    if training_args.cache_frozen_features:
        train_dataset, collator, after_eval = _frozen_features(model, plan, tokenized, data_args, training_args)
    trainer = TransferTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        problem_type=prepared.problem_type,
        freeze_plan=plan.freeze_plan,
        frozen_trunk_depth=plan.frozen_trunk_depth if adapter_plan is None else None,
        class_weights=plan.class_weights,
        lora_b_lr_ratio=adapter_args.loraplus_lr_ratio,
        callbacks=[*early_stopping_callbacks(training_args), *(callbacks or [])],
    )
    if few_shot.worth_saying(training_args.few_shot_max_rows_per_class):  # after every check: bad input is one line
        logger.warning("hf-transfer train: few-shot route %s; the ordinary fine-tune runs.", few_shot.line())
    return fit_and_report(
        trainer,
        tokenized,
        prepared,
        (model_args, data_args, adapter_args, training_args),
        task="train",
        after_train=training_steps(
            training_args, tokenized, prepared, plan.class_weights, {**probe, **few_shot.passed_over_facts()}
        ),
        after_eval=after_eval,
        memory_at_load=memory_at_load,
        after_save=adapter_finisher(adapter_plan, adapter_args, model_args, config, tokenized),
        push=push,
    )


def _frozen_features(model, plan: TrainPlan, tokenized, data_args, training_args):
    """The training rows with their cached frozen-trunk features (built once, by the main process first), the
    collator that pads them, and the `after_eval` step that puts the cache's facts in the run record."""
    a, prepared = training_args, plan.prepared
    split = prepared.datasets["train"]
    pairs = split[prepared.text_pair_column] if prepared.text_pair_column else None
    # The cached column is not a model input: Trainer must not drop it (nothing else is in the rows).
    a.remove_unused_columns = False
    with a.main_process_first(desc="frozen features"):
        train, features, info = with_frozen_features(
            model.to(a.device),
            plan.freeze_plan.layout,
            plan.frozen_trunk_depth,
            tokenized["train"],
            plan.tokenizer,
            data_fingerprint=fingerprint_texts(split[prepared.text_column], pairs),
            max_seq_length=data_args.max_seq_length,
            dtype=a.frozen_features_dtype,
            cache_dir=a.frozen_features_cache_dir,
            batch_size=a.per_device_eval_batch_size,
            progress=not a.disable_tqdm,
        )
    return train, FrozenFeatureCollator(plan.tokenizer, features), lambda trainer, metrics: {"frozen_features": info}
