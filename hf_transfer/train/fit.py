"""The end of every training command: train, evaluate, save, then write every output DESIGN.md lists (results, run
record, resolved config, curves, confusion matrix, card) and push if asked."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import numpy as np

from hf_transfer import __version__
from hf_transfer.core.data import PreparedData
from hf_transfer.core.folders import (
    CONFIG_FILE,
    RUN_RECORD_FILE,
    hub_origin,
    json_safe,
    json_text,
    read_json_file,
    write_text_atomic,
)
from hf_transfer.core.freezing import unfreezing_schedule
from hf_transfer.core.language import SAMPLE_ROWS, language_record
from hf_transfer.core.memory import memory_kib
from hf_transfer.core.metrics import classification_metrics, say_one_class
from hf_transfer.core.runtime import FINAL_METRICS_PRECISION, effective_batch_size, precision_name, score_in_fp32
from hf_transfer.core.tasks import MULTI_LABEL, predicted_labels
from hf_transfer.outputs.card_data import complete_card_data
from hf_transfer.outputs.cards import write_model_card
from hf_transfer.outputs.checkpoints import stop_cleanly
from hf_transfer.outputs.hub import HubUnreachable, push_folder
from hf_transfer.outputs.plots import (
    RUN_PICTURES,
    RUN_REPORT_FILES,
    pictures_summary,
    plot_training_curves,
    save_report_pictures,
)
from hf_transfer.outputs.run_folder import (
    _memory_record,
    _row_counts,
    clear_earlier_run,
    read_paths,
    resolved_config,
    started_from_checkpoint,
    write_resolved_config,
)
from hf_transfer.outputs.search_note import retrained_from_search
from hf_transfer.outputs.test_predictions import write_test_predictions
from hf_transfer.train.callbacks import CardDataCallback
from hf_transfer.train.checks import check_weights_finite, resume_launch_change, resume_schedule_changes
from hf_transfer.train.evaluation_memory import EvaluationMemory, kept_checkpoint_epoch
from hf_transfer.train.run_notes import run_notes
from hf_transfer.train.stages import say_calibration_cost


def fit_and_report(
    trainer,
    tokenized,
    prepared: PreparedData,
    arg_objects: tuple,
    *,
    task: str,
    after_train=None,
    after_eval=None,
    after_save=None,
    memory_at_load: dict | None = None,
    push=None,
):
    """Train, evaluate, save, and (on the main process) write every output DESIGN.md lists, then push if asked;
    return the summary.

    `arg_objects` are the run's argument dataclasses, model arguments first and training arguments last.
    `after_train(trainer)`, if given, runs on every process once training ends (the model in fp32 from then on) and
    before the final evaluation (it may change the model, as decision calibration does); it returns facts for the run
    record.
    `after_eval(trainer, eval_metrics)`, if given, returns extra facts for the run record (run on every process);
    `after_save(trainer)` does the same on the main process once the model is saved (adapters use it).
    `push` is the `hub.PushTarget` from `plan_push`, or None.
    """

    model_args, training_args = arg_objects[0], arg_objects[-1]
    card_callback = CardDataCallback()
    trainer.add_callback(card_callback)
    evaluations = EvaluationMemory(trainer)
    freeze_at_start = trainer.freeze_summary()
    resumed = resumed_from(training_args)  # before the run's saves rotate the checkpoint away
    # Said once, after every check, just before training: a Trainer checkpoint given as the model to train.
    resumed |= started_from_checkpoint(model_args.model_name_or_path, warn=trainer.is_world_process_zero())
    resumed |= retrained_from_search(training_args, prepared.summary)  # a search's best_config.yaml, on its rows
    with training_args.main_process_first(local=False, desc="removing the earlier run"):
        if trainer.is_world_process_zero():  # every check has passed: an overwritten run's leftovers go now
            clear_earlier_run(training_args, read_paths(*arg_objects))
    started = time.perf_counter()
    with stop_cleanly(training_args.output_dir, trainer.is_world_process_zero()):
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        check_weights_finite(trainer)
        # Every row is scored (calibration, validation, test), whatever dataloader_drop_last did to training batches.
        trainer.args.dataloader_drop_last, drop_last = False, trainer.args.dataloader_drop_last
        memory_after_training = memory_kib()
        train_metrics = dict(train_result.metrics)
        if "resumed_from" in resumed:
            _train_loss_over_the_whole_run(trainer, train_metrics, resumed["resumed_from"])
        _unfreezing_schedule(trainer, card_callback.card_data)
        train_metrics["train_samples"] = len(tokenized["train"])
        train_metrics.setdefault("total_flos", trainer.state.total_flos)  # transformers' PrinterCallback pops it
        train_metrics["optimizer_steps"] = trainer.state.global_step
        train_metrics["train_wall_seconds"] = round(time.perf_counter() - started, 2)
        # The saved weights are float32: from here on (calibration, final evaluation, test, the teacher comparison)
        # the model runs in fp32, as `hf-transfer evaluate` runs it, and not under the run's bf16/fp16 autocast.
        score_in_fp32(trainer.model)
        evaluations.training_ended()
        trained = after_train(trainer) if after_train else {}
        # No validation split: the few-shot route trains on every labelled row when no validation file is given.
        prediction = None
        eval_metrics = {}
        if "validation" in tokenized:
            # The last (or best) evaluation during training may have scored these very weights on this set already.
            prediction = evaluations.final_prediction(tokenized["validation"])
            if prediction is None:
                prediction = trainer.predict(tokenized["validation"], metric_key_prefix="eval")
            eval_metrics = {k: v for k, v in prediction.metrics.items() if not isinstance(v, (list, dict))}
            if trainer.is_world_process_zero():
                say_one_class(
                    prediction.predictions, prediction.label_ids, prepared.label_names, prepared.problem_type
                )
            eval_metrics["eval_samples"] = len(tokenized["validation"])
            if trainer.state.epoch is not None:  # as Trainer.evaluate's metrics carry it (run_glue's eval_results)
                eval_metrics.setdefault("epoch", trainer.state.epoch)
            say_calibration_cost(trained.get("calibration"), eval_metrics, prediction, prepared)
        test_metrics = test_logits = None
        scored = {"validation": prediction}  # the sets whose confusion matrix (or F1 per label) is drawn
        output_notes = {}  # what the summary says of the outputs: the predictions file, the push
        if "test" in tokenized:  # scored when labelled; else its predictions are written, as run_glue's do_predict
            tested = trainer.predict(tokenized["test"], metric_key_prefix="test")
            if "labels" in tokenized["test"].column_names:
                test_metrics, scored["test"] = tested.metrics, tested
            else:
                test_logits = tested.predictions
        extra = {**trained, **(after_eval(trainer, eval_metrics) if after_eval else {})}
        trainer.args.dataloader_drop_last = drop_last
        if memory_at_load is not None:
            extra["memory"] = _memory_record(memory_at_load, memory_after_training, memory_kib())
        trainer.save_model()
        if trainer.is_world_process_zero():
            # Before after_save, which may merge the adapter in place; the stages of the checkpoint kept, if one was.
            freeze_at_end = trainer.freeze_summary(kept_checkpoint_epoch(trainer.state, trainer.args))
            if after_save is not None:
                extra.update(after_save(trainer))
            record = {
                "hf_transfer_version": __version__,
                "task": task,
                **dict(zip(("base_model", "base_model_revision"), _origin(model_args), strict=True)),
                "label_names": prepared.label_names,
                "problem_type": prepared.problem_type,
                "data": prepared.summary,
                "language": _language(arg_objects[1], prepared),
                "freeze": {**freeze_at_start, **freeze_at_end},
                "precision": precision_name(training_args),
                "final_metrics_precision": FINAL_METRICS_PRECISION,
                "world_size": training_args.world_size,
                # Of the arguments the trainer ran with (the few-shot route's body tuning brings its own batch).
                "effective_train_batch_size": effective_batch_size(
                    trainer.args.per_device_train_batch_size,
                    trainer.args.gradient_accumulation_steps,
                    trainer.args.world_size,
                ),
                # Custom code from a model repository ran in this process only when the user allowed it.
                "trust_remote_code": bool(model_args.trust_remote_code),
                "train_metrics": train_metrics,
                "eval_metrics": eval_metrics,
                "test_metrics": test_metrics,
                **resumed,
                **extra,
            }
            if test_logits is not None:
                path = write_test_predictions(Path(training_args.output_dir), test_logits, prepared,
                                              *_test_file(arg_objects))  # fmt: skip
                record["test_predictions"] = {"file": path.name, "rows": len(prepared.datasets["test"])}
                output_notes["test_predictions"] = str(path)
            _write_run_outputs(trainer, scored, prepared, record, arg_objects, card_callback.card_data, push)
            output_notes.update(_push_run(training_args.output_dir, push) if push else {})
    d = extra.get("distillation") or {}
    distilled = {k: d[k] for k in ("retention_percent", "speedup") if k in d}
    if d.get("teacher_eval_accuracy") is not None:  # the teacher's score by its metric (multi-label: subset accuracy)
        distilled = {
            f"teacher_eval_{d.get('teacher_eval_metric', 'accuracy')}": d["teacher_eval_accuracy"],
            **distilled,
        }
    return {
        **_row_counts(prepared),
        **run_notes({**resumed, **extra}),
        **eval_metrics,
        **{k: v for k, v in (test_metrics or {}).items() if not isinstance(v, (list, dict))},
        **distilled,
        **_frozen_features_summary(extra.get("frozen_features")),
        "train_loss": train_metrics.get("train_loss"),
        "train_samples_per_second": train_metrics.get("train_samples_per_second"),
        "train_wall_seconds": train_metrics["train_wall_seconds"],
        "output_dir": training_args.output_dir,
        **pictures_summary(*(Path(training_args.output_dir) / name for name in RUN_PICTURES)),
        **output_notes,
    }


def _origin(model_args) -> tuple:
    """(base model, its Hub revision or None) for the run record: a cache snapshot folder is named by its Hub id."""
    m = model_args
    return hub_origin(m.model_name_or_path, m.base_model_hub_id, m.model_revision)


def resumed_from(training_args) -> dict:
    """The checkpoint a resumed run went on from, by its folder name and step (no machine path: the card shows it),
    and how its run was launched when that differs from this one."""
    checkpoint = training_args.resume_from_checkpoint
    if not checkpoint:
        return {}
    state = read_json_file(Path(checkpoint) / "trainer_state.json", "the checkpoint's trainer state")
    step = state.get("global_step") if isinstance(state, dict) else None
    entry = {"checkpoint": Path(checkpoint).name, "step": step}
    entry |= {"launched_as": then} if (then := resume_launch_change(training_args, warn=False)) else {}
    return {"resumed_from": entry | ({"schedule_changed": c} if (c := resume_schedule_changes(training_args)) else {})}


def whole_run_train_loss(log_history: list[dict], resumed_step: int, last_step: int, since_resume: float):
    """A resumed run's mean train loss and the first step it covers. Trainer's figure (`since_resume`) is the mean over
    the steps run after the resume; the checkpoint's log (the entries up to `resumed_step`) holds each logged window's
    mean, so when its last window ends at the resume, the whole run's mean is theirs weighted by their lengths with
    Trainer's. Otherwise the loss of the steps between the last log and the resume was never kept: Trainer's figure
    stays, over the steps after the resume."""
    logged = sorted(
        (e["step"], e["loss"]) for e in log_history if "loss" in e and 0 < e.get("step", 0) <= resumed_step
    )
    if not logged or logged[-1][0] != resumed_step or last_step < resumed_step:
        return since_resume, resumed_step + 1
    total, previous = 0.0, 0
    for step, loss in logged:
        total, previous = total + loss * (step - previous), step
    return (total + since_resume * (last_step - resumed_step)) / last_step, 1


def _train_loss_over_the_whole_run(trainer, train_metrics: dict, resumed: dict) -> None:
    """`train_loss` of a resumed run over every step when the log allows it (`whole_run_train_loss`); the steps it
    covers go into the record's `resumed_from` (the card says them), and the figure into the log's final entry."""
    step, last = resumed.get("step") or 0, trainer.state.global_step
    if train_metrics.get("train_loss") is None or not step:
        return
    loss, first = whole_run_train_loss(trainer.state.log_history, step, last, float(train_metrics["train_loss"]))
    train_metrics["train_loss"] = loss
    resumed["train_loss_steps"] = [first, last]
    for entry in reversed(trainer.state.log_history):
        if "train_loss" in entry:
            entry["train_loss"] = loss
            break


def _unfreezing_schedule(trainer, card_data) -> None:
    """The card's gradual-unfreezing schedule, for the whole run: a resumed run's epochs before the resume too."""
    plan = getattr(trainer, "freeze_plan", None)
    if plan is None or not plan.stages or not trainer.args.gradual_unfreezing:
        return
    sizes = {name: p.numel() for name, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}
    epochs = kept_checkpoint_epoch(trainer.state, trainer.args)  # the saved model's, when a best checkpoint is kept
    epochs = (trainer.state.epoch or 0.0) if epochs is None else epochs
    card_data.unfreezing = unfreezing_schedule(list(plan.stages), trainer.args.gradual_unfreezing, epochs, sizes)


def _language(data_args, prepared: PreparedData) -> dict:
    """The card's language: the `language` field, else detected from the training text (see `core.language`)."""
    train = prepared.datasets["train"] if "train" in prepared.datasets else None
    if train is not None and len(train) > 2 * SAMPLE_ROWS:  # evenly spread rows, not every text read (500k: 2 s)
        train = train.select(np.linspace(0, len(train) - 1, 2 * SAMPLE_ROWS).astype(int).tolist())
    texts = list(train[prepared.text_column]) if train is not None else []
    return language_record(getattr(data_args, "language", None), texts)


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

    try:
        return {"pushed_to": push_folder(output_dir, push)["pushed_to"]}
    except HubUnreachable as err:
        return {"warning": f"not pushed to the Hub: {err}"}


def _write_run_outputs(
    trainer, scored: dict, prepared: PreparedData, record: dict, arg_objects: tuple, card_data, push=None
) -> None:

    out = Path(arg_objects[-1].output_dir)
    # Trainer writes these with json.dump: a diverged run's NaN loss would make them invalid JSON.
    trainer.save_metrics("train", json_safe(record["train_metrics"]))
    trainer.save_metrics("eval", json_safe(record["eval_metrics"]))
    if record["test_metrics"]:
        trainer.save_metrics("test", json_safe(record["test_metrics"]))
    trainer.save_state()
    # Each scored set's report, and its confusion matrix (or F1 per label): the test set's files start with `test_`.
    reports = {name: _validation_report(p, prepared) for name, p in scored.items() if p is not None}
    for name, report in reports.items():
        prefix = "" if name == "validation" else f"{name}_"
        save_report_pictures(report, prepared.label_names, out, prefix, name, prepared.problem_type == MULTI_LABEL)
    # The few-shot route's logged loss is its body tuning's (cosine or supcon on sentence pairs), not the classifier's.
    loss_name = "body-tuning pair loss" if isinstance(record.get("few_shot"), dict) else "train loss"
    hidden = " + w·hidden" if (record.get("distillation") or {}).get("hidden_loss_weight") else ""
    loss_name = f"train loss (α·T²·KL + (1−α)·CE{hidden})" if "distillation" in record else loss_name
    best, resumed = record.get("best_model") or {}, record.get("resumed_from") or {}
    saved = {"step": best.get("step"), "resumed": resumed.get("step"),
             "note": "after calibration" if record.get("calibration") else None}  # fmt: skip
    plot_training_curves(trainer.state.log_history, out / "training_curves.png", title=out.resolve().name,
                         final_metrics=record["eval_metrics"], loss_name=loss_name, saved=saved)  # fmt: skip
    record = {**record, "validation_report": reports.get("validation"), "log_history": trainer.state.log_history}
    record.update({"test_report": reports["test"]} if "test" in reports else {})
    write_text_atomic(out / RUN_RECORD_FILE, json_text(record, indent=2, default=str))
    extra = {"distillation_results": record["distillation"]} if "distillation" in record else {}
    if push:  # `plan_push` switched it off for Trainer's sake; the run did ask for it
        extra.update(push_to_hub=True, hub_model_id=push.repo_id)
    write_resolved_config(out / CONFIG_FILE, *arg_objects, extra=extra)
    probe = (record.get("linear_probe") or {}).get("saved_to")
    if probe and (out / probe).is_dir():  # its inputs (text and pair columns, length) go with it: evaluate reads them
        shutil.copy2(out / CONFIG_FILE, out / probe / CONFIG_FILE)
    card_data = complete_card_data(card_data, record, resolved_config(*arg_objects), out)
    write_model_card(out, card_data, repo_id=push.repo_id if push else None)
    merged = (record.get("adapter") or {}).get("merged_model")
    if merged:
        _card_merged_model(out, out / merged, card_data)


# What a merged model's folder gets of its run's files beside its card: the record, settings, scores and plots.
RUN_FILES_FOR_MERGED = (
    RUN_RECORD_FILE, CONFIG_FILE, "all_results.json", "train_results.json", "eval_results.json", "test_results.json",
    "training_curves.png", *RUN_REPORT_FILES,
)  # fmt: skip


def _card_merged_model(out: Path, merged: Path, card_data) -> None:
    """`merge_adapter`'s plain model is a model of its own, to evaluate, card and push alone: its folder gets the run's
    record and a card of its own, which says the adapter was merged into the weights and loads it without PEFT."""
    for name in RUN_FILES_FOR_MERGED:
        if (out / name).is_file():
            shutil.copy2(out / name, merged / name)
    card_data = copy.deepcopy(card_data)
    card_data.repo_id, card_data.model_name = None, f"{out.resolve().name}-{merged.name}"
    card_data.local_path = f"{out.resolve().name}/{merged.name}"  # from the run folder's parent, as the others
    write_model_card(merged, card_data)


def _test_file(arg_objects) -> tuple[str | None, str]:
    """The local test file of the run's data arguments (None for a Hub dataset), and how its csv is quoted."""
    data = next(a for a in arg_objects if hasattr(a, "test_file"))
    return (None if data.dataset_name else data.test_file), data.csv_quoting


def _validation_report(prediction, prepared: PreparedData) -> dict:
    import numpy as np

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    refs = np.asarray(prediction.label_ids)
    refs = refs.astype(int) if prepared.problem_type == MULTI_LABEL else refs
    preds = predicted_labels(logits, prepared.problem_type)
    return classification_metrics(preds, refs, prepared.label_names, prepared.problem_type)
