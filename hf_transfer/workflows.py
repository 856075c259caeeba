"""What each command does, in order: validate everything cheap first, then load weights, train, and write outputs."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import time
from pathlib import Path

import yaml

from . import __version__
from .config import (
    AdapterArguments,
    CardArguments,
    ConfigError,
    DataArguments,
    DiskFullError,
    EvaluateArguments,
    ModelArguments,
    PushArguments,
    TransferTrainingArguments,
)
from .data import PreparedData, load_data, tokenize_data
from .freezing import resolve_frozen_parameters
from .models import check_classifier_head, load_classifier, load_config, load_tokenizer, meta_layout


def precision_name(args) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


# --- train ----------------------------------------------------------------------------------------------------------


def _preflight(model_args: ModelArguments, data_args: DataArguments, training_args: TransferTrainingArguments):
    """Everything that can be checked without loading weights: data, model config, tokenizer, freeze plan."""
    if not model_args.model_name_or_path:
        raise ConfigError("model_name_or_path is required: a Hub id or a local model folder.")
    prepared = load_checked_data(data_args, training_args)
    config = classifier_config(model_args, prepared)
    tokenizer = load_model_tokenizer(model_args, model_args.model_name_or_path)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    layout = meta_layout(config)
    frozen = check_freeze_plan(layout, training_args)
    if training_args.cache_frozen_features:
        from .feature_cache import trunk_depth

        trunk_depth(layout, frozen, config.model_type)
    return prepared, config, tokenizer


def load_checked_data(data_args: DataArguments, training_args: TransferTrainingArguments) -> PreparedData:
    """The training data, after the checks that need no model; built once, by the main process first."""
    if not (data_args.dataset_name or data_args.train_file):
        raise ConfigError("no training data: give train_file (csv, tsv, json, jsonl, parquet) or dataset_name.")
    if training_args.gradual_unfreezing and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # DDP registers only parameters that require grad when it wraps the model, so blocks unfrozen later
        # would never be synchronised across processes.
        raise ConfigError("gradual_unfreezing needs a single process; launch without --num_processes > 1.")
    resolve_resume_checkpoint(training_args)
    with training_args.main_process_first(desc="dataset preparation"):
        return load_data(data_args, seed=training_args.seed)


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """`checkpoint-N` folders that a save finished, oldest first. Trainer writes `trainer_state.json` last, so a
    folder without a readable one was cut off mid-save (a crash or a kill) and must not be resumed from."""
    folders = []
    for path in Path(output_dir).glob("checkpoint-*"):
        step = path.name.split("-", 1)[1]
        state = path / "trainer_state.json"
        if not (step.isdigit() and path.is_dir() and state.is_file()):
            continue
        try:
            json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        folders.append((int(step), path))
    return [path for _, path in sorted(folders)]


# How torch (a wrapped OSError) and safetensors (a Rust io::Error, Display or Debug form) spell a full disk.
_DISK_FULL_TEXT = re.compile(r"no space left on device|disk quota exceeded|os error 28\b|code: 28\b|StorageFull", re.I)


def is_disk_full(err: BaseException) -> bool:
    """True when `err`, or an error it was raised from, is "no space left on device" (or a full quota). torch and
    safetensors wrap the OSError in their own exceptions, so their messages are read too."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _DISK_FULL_TEXT.search(str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False


@contextlib.contextmanager
def stop_cleanly_when_disk_full(output_dir: str, is_main: bool):
    """Turn a full disk during training or saving into one `DiskFullError` line. A checkpoint cut off mid-save is
    removed (it holds no `trainer_state.json` and would never be resumed from) to give back its space; complete
    checkpoints are left as they are."""
    try:
        yield
    except Exception as err:
        if not is_disk_full(err):
            raise
        complete = complete_checkpoints(output_dir)
        if is_main:
            for path in Path(output_dir).glob("checkpoint-*"):
                if path.is_dir() and path not in complete:
                    shutil.rmtree(path, ignore_errors=True)
        last = f"the last complete checkpoint, {complete[-1]}, is intact" if complete else "no checkpoint was complete"
        raise DiskFullError(
            f"no space left on device while writing to {output_dir!r}; {last}. Free some space, then rerun with "
            "--resume_from_checkpoint true (or save less: save_total_limit, save_strategy no)."
        ) from None


def resolve_resume_checkpoint(training_args) -> None:
    """`resume_from_checkpoint: true` becomes the newest complete checkpoint in `output_dir`; a path is checked."""
    value = training_args.resume_from_checkpoint
    if value is None or str(value).strip().lower() in ("", "false", "none"):
        training_args.resume_from_checkpoint = None
        return
    if str(value).strip().lower() == "true":
        found = complete_checkpoints(training_args.output_dir)
        if not found:
            raise ConfigError(
                f"resume_from_checkpoint is true but {training_args.output_dir!r} holds no complete checkpoint-N "
                "folder; train with save_strategy steps/epoch first, or give a checkpoint path."
            )
        training_args.resume_from_checkpoint = str(found[-1])
        return
    path = Path(str(value))
    if not path.is_dir() or path not in complete_checkpoints(path.parent):
        raise ConfigError(
            f"resume_from_checkpoint {str(value)!r} is not a complete checkpoint folder (one with a readable "
            "trainer_state.json); pass true to pick the newest complete one in output_dir."
        )


def classifier_config(model_args: ModelArguments, prepared: PreparedData):
    """The model's config, checked, with the data's labels."""
    m = model_args
    config = load_config(
        m.model_name_or_path, revision=m.model_revision, cache_dir=m.cache_dir, trust_remote_code=m.trust_remote_code
    )
    check_classifier_head(config, len(prepared.label_names), m.model_name_or_path, m.ignore_mismatched_sizes)
    config.num_labels = len(prepared.label_names)
    config.id2label = prepared.id2label
    config.label2id = prepared.label2id
    config.problem_type = prepared.problem_type
    return config


def load_model_tokenizer(model_args: ModelArguments, default: str):
    m = model_args
    return load_tokenizer(
        m.tokenizer_name or default,
        revision=m.model_revision,
        cache_dir=m.cache_dir,
        trust_remote_code=m.trust_remote_code,
    )


def check_freeze_plan(layout, training_args: TransferTrainingArguments) -> set[str]:
    a = training_args
    return resolve_frozen_parameters(
        layout,
        freeze_embeddings=a.freeze_embeddings,
        freeze_layers=a.freeze_layers,
        freeze_patterns=a.freeze_patterns,
        train_head_only=a.train_head_only,
    )


def run_train(
    model_args: ModelArguments,
    data_args: DataArguments,
    adapter_args: AdapterArguments,
    training_args: TransferTrainingArguments,
) -> dict:
    from transformers import DataCollatorWithPadding, set_seed

    from .evaluation import make_compute_metrics
    from .trainers import TransferTrainer

    set_seed(training_args.seed)
    check_adapter_args(adapter_args, training_args)
    push = plan_push(training_args)
    prepared, config, tokenizer = _preflight(model_args, data_args, training_args)
    adapter_plan = plan_adapter_on_meta(adapter_args, config)
    with training_args.main_process_first(desc="tokenization"):
        tokenized = tokenize_data(
            prepared, tokenizer, data_args.max_seq_length, num_proc=data_args.preprocessing_num_workers
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
    if adapter_plan is not None:
        from .adapters import wrap

        model = wrap(model, adapter_plan)
    train_dataset, collator, after_eval = tokenized["train"], DataCollatorWithPadding(tokenizer), None
    if training_args.cache_frozen_features:
        train_dataset, collator, after_eval = _frozen_features(
            model, tokenizer, tokenized, prepared, data_args, training_args
        )
    trainer = TransferTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=make_compute_metrics(prepared.label_names, prepared.problem_type),
        problem_type=prepared.problem_type,
    )
    return fit_and_report(
        trainer,
        tokenized,
        prepared,
        (model_args, data_args, adapter_args, training_args),
        task="train",
        after_eval=after_eval,
        memory_at_load=memory_at_load,
        after_save=adapter_finisher(adapter_plan, adapter_args, model_args, config, tokenized),
        push=push,
    )


def _frozen_features(model, tokenizer, tokenized, prepared: PreparedData, data_args, training_args):
    """The training rows with their cached frozen-trunk features (built once, by the main process first), the
    collator that pads them, and the `after_eval` step that puts the cache's facts in the run record."""
    from .feature_cache import FrozenFeatureCollator, trunk_depth, with_frozen_features
    from .layers import discover_layers
    from .teachers import fingerprint_texts

    a = training_args
    layout = discover_layers(model)
    frozen = check_freeze_plan(layout, a)
    split = prepared.datasets["train"]
    pairs = list(split[prepared.text_pair_column]) if prepared.text_pair_column else None
    with a.main_process_first(desc="frozen features"):
        train, info = with_frozen_features(
            model.to(a.device),
            layout,
            trunk_depth(layout, frozen),
            tokenized["train"],
            tokenizer,
            data_fingerprint=fingerprint_texts(list(split[prepared.text_column]), pairs),
            max_seq_length=data_args.max_seq_length,
            dtype=a.frozen_features_dtype,
            cache_dir=a.frozen_features_cache_dir,
            batch_size=a.per_device_eval_batch_size,
            progress=not a.disable_tqdm,
        )
    return train, FrozenFeatureCollator(tokenizer), lambda trainer, metrics: {"frozen_features": info}


def plan_push(training_args):
    """Check a push_to_hub request (repo id, token) before anything is loaded; see `hub.plan_push`."""
    from .hub import plan_push as _plan_push

    return _plan_push(training_args)


def fit_and_report(
    trainer,
    tokenized,
    prepared: PreparedData,
    arg_objects: tuple,
    *,
    task: str,
    after_eval=None,
    after_save=None,
    memory_at_load: dict | None = None,
    push=None,
):
    """Train, evaluate, save, and (on the main process) write every output DESIGN.md lists, then push if asked;
    return the summary.

    `arg_objects` are the run's argument dataclasses, model arguments first and training arguments last.
    `after_eval(trainer, eval_metrics)`, if given, returns extra facts for the run record (run on every process);
    `after_save(trainer)` does the same on the main process once the model is saved (adapters use it).
    `push` is the `hub.PushTarget` from `plan_push`, or None.
    """
    from .card_data import CardDataCallback

    model_args, training_args = arg_objects[0], arg_objects[-1]
    card_callback = CardDataCallback()
    trainer.add_callback(card_callback)
    freeze_at_start = trainer.freeze_summary()
    started = time.perf_counter()
    with stop_cleanly_when_disk_full(training_args.output_dir, trainer.is_world_process_zero()):
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        memory_after_training = memory_kib()
        train_metrics = dict(train_result.metrics)
        train_metrics["train_samples"] = len(tokenized["train"])
        train_metrics["train_wall_seconds"] = round(time.perf_counter() - started, 2)
        prediction = trainer.predict(tokenized["validation"], metric_key_prefix="eval")
        eval_metrics = {k: v for k, v in prediction.metrics.items() if not isinstance(v, (list, dict))}
        eval_metrics["eval_samples"] = len(tokenized["validation"])
        test_metrics = None
        if "test" in tokenized and "labels" in tokenized["test"].column_names:
            test_metrics = trainer.predict(tokenized["test"], metric_key_prefix="test").metrics
        extra = after_eval(trainer, eval_metrics) if after_eval else {}
        if memory_at_load is not None:
            extra["memory"] = _memory_record(memory_at_load, memory_after_training, memory_kib())
        trainer.save_model()
        if trainer.is_world_process_zero():
            if after_save is not None:
                extra.update(after_save(trainer))
            record = {
                "hf_transfer_version": __version__,
                "task": task,
                "base_model": model_args.base_model_hub_id or model_args.model_name_or_path,
                "label_names": prepared.label_names,
                "problem_type": prepared.problem_type,
                "data": prepared.summary,
                "freeze": {**freeze_at_start, **trainer.freeze_summary()},
                "precision": precision_name(training_args),
                "world_size": training_args.world_size,
                # Custom code from a model repository ran in this process only when the user allowed it.
                "trust_remote_code": bool(model_args.trust_remote_code),
                "train_metrics": train_metrics,
                "eval_metrics": eval_metrics,
                "test_metrics": test_metrics,
                **extra,
            }
            _write_run_outputs(trainer, prediction, prepared, record, arg_objects, card_callback.card_data, push)
            hub_result = _push_run(training_args.output_dir, push) if push else {}
        else:
            hub_result = {}
    summary_keys = ("teacher_eval_accuracy", "retention_percent", "speedup")
    return {
        **_row_counts(prepared),
        **eval_metrics,
        **{k: v for k, v in (extra.get("distillation") or {}).items() if k in summary_keys},
        **_frozen_features_summary(extra.get("frozen_features")),
        "train_samples_per_second": train_metrics.get("train_samples_per_second"),
        "train_wall_seconds": train_metrics["train_wall_seconds"],
        "output_dir": training_args.output_dir,
        **hub_result,
    }


def _frozen_features_summary(info: dict | None) -> dict:
    """The feature cache's footprint for the end-of-run summary (the run record has every detail)."""
    if not info:
        return {}
    return {
        "frozen_features_disk_mib": round(info["disk_bytes"] / 2**20, 1),
        "frozen_features_build_s": info["build_seconds"],
        "frozen_features_cache": info["path"],
    }


def _push_run(output_dir: str, push) -> dict:
    """Push the finished folder. Offline or unreachable, the run still succeeds and says how to push later."""
    from .hub import HubUnreachable, push_folder

    try:
        return {"pushed_to": push_folder(output_dir, push)}
    except HubUnreachable as err:
        return {"warning": f"not pushed to the Hub: {err}"}


def _row_counts(prepared: PreparedData) -> dict[str, int]:
    """Rows used and rows dropped per split, so the user sees what cleaning removed."""
    counts = {}
    for split in prepared.datasets:
        info = prepared.summary.get(split, {})
        counts[f"{split}_rows"] = info.get("rows", len(prepared.datasets[split]))
        counts[f"{split}_rows_dropped"] = sum((info.get("dropped") or {}).values())
    return counts


def _write_run_outputs(
    trainer, prediction, prepared: PreparedData, record: dict, arg_objects: tuple, card_data, push=None
) -> None:
    from .cards import complete_card_data, write_model_card
    from .evaluation import plot_training_curves, save_confusion_matrix
    from .losses import MULTI_LABEL

    out = Path(arg_objects[-1].output_dir)
    trainer.save_metrics("train", record["train_metrics"])
    trainer.save_metrics("eval", record["eval_metrics"])
    if record["test_metrics"]:
        trainer.save_metrics("test", record["test_metrics"])
    trainer.save_state()
    full = _validation_report(prediction, prepared)
    if prepared.problem_type != MULTI_LABEL:
        save_confusion_matrix(
            full["confusion_matrix"],
            prepared.label_names,
            out / "confusion_matrix.json",
            out / "confusion_matrix.png",
            title="validation",
        )
    plot_training_curves(trainer.state.log_history, out / "training_curves.png")
    record = {**record, "validation_report": full, "log_history": trainer.state.log_history}
    (out / "hf_transfer_run.json").write_text(json.dumps(record, indent=2, default=str))
    extra = {"distillation_results": record["distillation"]} if "distillation" in record else {}
    if push:  # `plan_push` switched it off for Trainer's sake; the run did ask for it
        extra.update(push_to_hub=True, hub_model_id=push.repo_id)
    write_resolved_config(out / "hf_transfer_config.yaml", *arg_objects, extra=extra)
    card_data = complete_card_data(card_data, record, resolved_config(*arg_objects), out)
    write_model_card(out, card_data, repo_id=push.repo_id if push else None)


def _validation_report(prediction, prepared: PreparedData) -> dict:
    import numpy as np

    from .evaluation import classification_metrics
    from .losses import MULTI_LABEL

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    if prepared.problem_type == MULTI_LABEL:
        preds = (1 / (1 + np.exp(-logits)) > 0.5).astype(int)
        refs = np.asarray(prediction.label_ids).astype(int)
    else:
        preds, refs = logits.argmax(-1), np.asarray(prediction.label_ids)
    return classification_metrics(preds, refs, prepared.label_names, prepared.problem_type)


_SECRET_KEYS = ("token", "password", "secret", "api_key")


def resolved_config(*arg_objects) -> dict:
    """Every field of the run's argument dataclasses (TrainingArguments last), as YAML-ready plain values, with
    anything secret removed."""
    values: dict = {}
    for args in arg_objects:
        if hasattr(args, "to_dict"):
            training = args.to_dict()
            values.update({k: training[k] for k in sorted(training)})
        else:
            values.update(dataclasses.asdict(args))
    clean = {k: v for k, v in values.items() if not any(s in k.lower() for s in _SECRET_KEYS)}
    return json.loads(json.dumps(clean, default=str))


def write_resolved_config(path: Path, *arg_objects, extra: dict | None = None) -> None:
    values = resolved_config(*arg_objects)
    if extra:
        values.update(json.loads(json.dumps(extra, default=str)))
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def run_distill(model_args, data_args, distill_args, adapter_args, training_args) -> dict:
    from .distill_workflow import run_distill as _run_distill

    return _run_distill(model_args, data_args, distill_args, adapter_args, training_args)


# --- train: adapter and memory hooks (the adapter logic lives in adapters.py) -------------------------------------


def check_adapter_args(adapter_args: AdapterArguments, training_args: TransferTrainingArguments) -> None:
    """The adapter checks that need no data and no model: the method exists, no freeze option is set with it."""
    if adapter_args.enabled:
        from .adapters import check_freeze_conflicts, check_method

        check_method(adapter_args.peft_method)
        check_freeze_conflicts(adapter_args.peft_method, training_args)


def plan_adapter_on_meta(adapter_args: AdapterArguments, config):
    """The PEFT config, checked on a meta-device model: target modules, head, PEFT's own checks. No weights read."""
    if not adapter_args.enabled:
        return None
    from .adapters import plan_adapter
    from .models import meta_classifier

    return plan_adapter(adapter_args, meta_classifier(config))


def adapter_finisher(plan, adapter_args: AdapterArguments, model_args: ModelArguments, config, tokenized):
    """The `after_save` step of an adapter run (None without an adapter)."""
    if plan is None:
        return None

    def finish(trainer) -> dict:
        record = _finish_adapter(trainer, plan, adapter_args, model_args, config, tokenized)
        if adapter_args.merge_adapter:
            from .adapters import write_merged

            model = trainer.accelerator.unwrap_model(trainer.model)
            write_merged(model, trainer.processing_class, trainer.args.output_dir)
        return {"adapter": record}

    return finish


def _finish_adapter(trainer, plan, adapter_args, model_args: ModelArguments, config, tokenized) -> dict:
    """After `save_model`: name the base by its Hub id in adapter_config.json, reload the saved adapter onto a fresh
    base and compare logits on a validation batch (the guard against a head lost on reload), describe the adapter."""
    from .adapters import (
        MERGED_DIR,
        adapter_record,
        base_model_reference,
        reload_max_abs_diff,
        set_base_model_reference,
    )

    out = trainer.args.output_dir
    model = trainer.accelerator.unwrap_model(trainer.model)
    reference = base_model_reference(model_args.model_name_or_path, model_args.base_model_hub_id)
    set_base_model_reference(out, reference[0])
    record = adapter_record(model, plan, out, reference)
    # Collated by hand, not through an accelerate-prepared dataloader: only the main process gets here.
    rows = tokenized["validation"].select(range(min(16, len(tokenized["validation"]))))
    inputs = [c for c in rows.column_names if c in trainer.processing_class.model_input_names]
    batch = trainer.data_collator([{c: row[c] for c in inputs} for row in rows])
    m = model_args
    base = load_classifier(
        m.model_name_or_path,
        config,
        revision=m.model_revision,
        cache_dir=m.cache_dir,
        trust_remote_code=m.trust_remote_code,
    )
    record["reload_max_abs_logit_diff"] = reload_max_abs_diff(model, out, base, batch)
    record["merged_model"] = MERGED_DIR if adapter_args.merge_adapter else None
    return record


def memory_kib() -> dict:
    """This process's resident set size now and its peak so far, in KiB (Linux: /proc and ru_maxrss)."""
    import resource

    try:
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        rss = None
    return {"rss_kib": rss, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _memory_record(at_load: dict, after_training: dict, at_end: dict) -> dict:
    """Peak RSS after training (evaluations during training included) and after the final evaluation, against the RSS
    right after the model was loaded (before any adapter was added)."""
    baseline = at_load["rss_kib"]
    return {
        "rss_after_model_load_kib": baseline,
        "peak_rss_at_model_load_kib": at_load["peak_rss_kib"],
        "peak_rss_after_training_kib": after_training["peak_rss_kib"],
        "peak_rss_kib": at_end["peak_rss_kib"],
        "peak_above_loaded_model_kib": None if baseline is None else at_end["peak_rss_kib"] - baseline,
        "training_peak_above_loaded_model_kib": None
        if baseline is None
        else after_training["peak_rss_kib"] - baseline,
    }


# --- card and push -------------------------------------------------------------------------------------------------


def run_card(args: CardArguments) -> dict:
    from .cards import load_card_data, write_model_card

    card_data = load_card_data(args.model_dir)
    if card_data is None:
        raise ConfigError(
            f"{args.model_dir!r} holds neither hf_transfer_card_data.json nor hf_transfer_run.json; give the "
            "output_dir of a run made by hf-transfer train or distill."
        )
    repo_id = None
    if args.hub_model_id:
        from .hub import check_repo_id

        repo_id = check_repo_id(args.hub_model_id)
    return {"card": str(write_model_card(args.model_dir, card_data, repo_id=repo_id))}


def run_push(args: PushArguments) -> dict:
    from .hub import PushTarget, check_repo_id, push_folder

    target = PushTarget(check_repo_id(args.hub_model_id), True if args.private else None, args.revision)
    return {"pushed_to": push_folder(args.model_dir, target, args.commit_message), "repo_id": target.repo_id}


# --- evaluate -------------------------------------------------------------------------------------------------------


def run_evaluate(args: EvaluateArguments) -> dict:
    """Score the model on validation_file and every extra_eval set; every set is read before the model is loaded."""
    from .adapters import ADAPTER_CONFIG, adapter_base_config, load_adapter_for_inference
    from .eval_sets import (
        prepare_eval_sets,
        reports_markdown,
        scalars,
        score_set,
        write_confusion_matrices,
        write_json,
    )
    from .models import load_classifier

    folder = Path(args.model_name_or_path)
    adapter = (folder / ADAPTER_CONFIG).is_file()
    if args.base_model_name_or_path and not adapter:
        raise ConfigError(
            f"base_model_name_or_path is only for adapter folders, and {args.model_name_or_path!r} holds no "
            "adapter_config.json."
        )
    if adapter:
        config = adapter_base_config(folder, args.base_model_name_or_path)
    else:
        config = load_config(args.model_name_or_path)
    model_names = [config.id2label[i] for i in range(config.num_labels)]
    sets = prepare_eval_sets(args, model_names)
    tokenizer = load_tokenizer(args.model_name_or_path if _has_tokenizer(folder) else config._name_or_path)
    model = load_adapter_for_inference(folder, config) if adapter else load_classifier(args.model_name_or_path, config)
    reports = {data.name: score_set(model, tokenizer, data, model_names, args) for data in sets}
    main = reports[args.validation_name]
    table = reports_markdown(reports, model_names)
    if args.output_file:
        out = Path(args.output_file)
        # The main set's report stays at the top level, as before extra sets existed; every set is under `sets`.
        write_json(out, {**main, "sets": reports} if len(reports) > 1 else main)
        out.with_suffix(".md").write_text(table)
        titles = {data.name: f"{data.name}: {Path(data.path).name}" for data in sets}
        titles[args.validation_name] = Path(args.validation_file).name
        write_confusion_matrices(reports, model_names, out, args.validation_name, titles)
    result = scalars(main)
    for name, report in list(reports.items())[1:]:
        result.update({f"{name}_accuracy": report["accuracy"], f"{name}_f1_macro": report["f1_macro"]})
    if len(reports) > 1:
        result["table"] = table
    return result


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))


def run_merge(args) -> dict:
    from .merge_workflow import run_merge as _run_merge

    return _run_merge(args)
