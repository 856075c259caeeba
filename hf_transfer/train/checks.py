"""Trainer fields that stock `Trainer` checks only once the weights have loaded (a traceback then), checked by
`TransferTrainingArguments.__post_init__`, so that `train`, `distill` and `search` refuse them in one line first;
and, once training ends, weights that went NaN or inf."""

from __future__ import annotations

import logging
import math
import platform
import re
from pathlib import Path

from hf_transfer.adapters.plan import LORA_LEARNING_RATE, takes_lora_learning_rate
from hf_transfer.core.folders import ADAPTER_CONFIG, RUN_RECORD_FILE, read_json_file
from hf_transfer.core.memory import can_release_freed_memory
from hf_transfer.core.run_records import recorded_config
from hf_transfer.core.runtime import launched_world_size, one_gpu_per_process, sharded_weights
from hf_transfer.errors import ConfigError, TrainingDivergedError
from hf_transfer.outputs.checkpoints import checkpoint_launch, finished_at, saved_training_arguments
from hf_transfer.outputs.plots import plot_training_curves
from hf_transfer.train.field_checks import check_inside_train_fields, choice_text

logger = logging.getLogger(__name__)


def check_half_evaluation(args) -> None:
    """`fp16_full_eval` / `bf16_full_eval` only act on evaluations outside training: there Trainer casts the model to
    half precision in place, so the final evaluation ran in it and the weights were saved in it, while the record and
    card said fp32."""
    if half := [f for f in ("fp16_full_eval", "bf16_full_eval") if getattr(args, f, False)]:
        raise ConfigError(
            f"{half[0]} is not supported: Trainer would cast the trained model to half precision for the final "
            "evaluation, and the saved weights with it; runs are scored and saved in fp32, as `hf-transfer evaluate` "
            "loads them. Drop it (--bf16 true, or --fp16 true on a GPU, trains in mixed precision)."
        )


def check_trainer_fields(args) -> None:
    """One-line refusals of `batch_eval_metrics`, `save_strategy: best` without a metric, an `optim` whose package is
    not installed, and memory release without glibc; one GPU per process (`one_gpu_per_process`), never
    `nn.DataParallel`."""
    one_gpu_per_process(args)
    for name in ("release_freed_memory", "trim_memory_each_step"):
        if getattr(args, name) and not can_release_freed_memory():
            raise ConfigError(
                f"{name} needs glibc (Linux); this process runs on {platform.system()} "
                f"{platform.libc_ver()[0] or 'without glibc'}. Drop it."
            )
    if args.prediction_loss_only:  # Trainer then keeps no predictions: the run crashed at its first metrics, trained
        raise ConfigError(
            "prediction_loss_only is not supported: the run's metrics are computed from the predictions; drop it."
        )
    if args.label_names not in (None, ["labels"]):  # the prepared label column is `labels`, whatever the data's name
        raise ConfigError(
            f"label_names {args.label_names} is not supported: the model reads the labels as `labels`; name the "
            "data's label column with label_column_name, and drop label_names."
        )
    if args.batch_eval_metrics:
        # Trainer would call compute_metrics batch by batch (with compute_result), but macro-F1, per-class scores and
        # the confusion matrix are computed over the whole evaluation set.
        raise ConfigError(
            "batch_eval_metrics is not supported: hf-transfer computes its metrics over the whole evaluation set at "
            "once; drop it (eval_accumulation_steps bounds the memory evaluation holds)."
        )
    if choice_text(args.save_strategy) == "best" and args.metric_for_best_model is None:
        # As transformers refuses it (Trainer._validate_args): which checkpoint is best depends on the metric.
        raise ConfigError(
            "save_strategy best saves a checkpoint whenever metric_for_best_model improves, but metric_for_best_model "
            "is not set; set it (e.g. f1_macro, accuracy or loss), or use save_strategy epoch or steps."
        )
    check_inside_train_fields(args)
    check_optimizer_installed(args)


def check_optimizer_installed(args) -> None:
    """Refuse an `optim` whose package (bitsandbytes, galore_torch, torchao, lomo_optim, apollo_torch, ...) is not
    installed: Trainer raised ImportError when it built the optimizer, after the weights had loaded. Any other
    error (GaLore and LOMO need the model, a bad optim_args) is left to Trainer, where it arose before."""
    from transformers import Trainer

    try:
        Trainer.get_optimizer_cls_and_kwargs(args)
    except ImportError as err:
        raise ConfigError(_missing_package(args, err)) from None
    except ValueError as err:  # GrokAdamW and torchdistx's AnyPrecisionAdamW raise ValueError("Please install ...")
        if "install" in str(err).lower():
            raise ConfigError(_missing_package(args, err)) from None
    except Exception:  # not ours to judge here: Trainer reports it as before
        return


def _missing_package(args, err: Exception) -> str:
    text = " ".join(str(err).split())
    package = re.search(r"(?:install|have) `([^`]+)`|install (\S+?) with", text)
    command = re.search(r"`(pip install [^`]+?)\.?`", text)
    name = next((g for g in package.groups() if g), None) if package else None
    if name is None or command is None:
        return f"optim {choice_text(args.optim)} cannot be used: {text} Or choose another optim, e.g. adamw_torch."
    return (
        f"optim {choice_text(args.optim)} needs {name}, which is not installed: {command.group(1)}, or choose another "
        "optim, e.g. adamw_torch."
    )


def keep_best_checkpoint(args) -> None:
    """With early stopping the best checkpoint must exist to be kept: save at every evaluation (Trainer evaluates
    every `logging_steps` when `eval_steps` is unset) and load the best at the end. What this replaced is kept in
    `early_stopping_replaced`, for `check_early_stopping_fields` to refuse or name what the user had given."""
    plain = {name: choice_text(getattr(args, name)) for name in ("eval_strategy", "save_strategy")}
    if plain["eval_strategy"] == "steps":
        args.eval_steps = args.eval_steps or args.logging_steps
    needed = {"load_best_model_at_end": True, "save_strategy": plain["eval_strategy"]}
    needed |= {"save_steps": args.eval_steps} if plain["eval_strategy"] == "steps" else {}
    before = {**vars(args), **plain}
    replaced = {name: before[name] for name, value in needed.items() if before[name] != value}
    object.__setattr__(args, "early_stopping_replaced", replaced)  # not a field: never saved
    for name, value in needed.items():
        setattr(args, name, value)


def check_early_stopping_fields(args, warn: bool = False) -> None:
    """Stock Trainer keeps `load_best_model_at_end: false` beside early stopping (and warns); ours set it true, and the
    checkpoint schedule, in silence, whatever the user had given. A `load_best_model_at_end: false` given is refused;
    a save schedule given (often a config's `save_strategy: no`) is replaced, and with `warn` said in one line."""
    chosen = getattr(args, "chosen_fields", None) or frozenset()  # set by the command-line parser
    replaced = {k: v for k, v in (getattr(args, "early_stopping_replaced", None) or {}).items() if k in chosen}
    if "load_best_model_at_end" in replaced:
        raise ConfigError(
            "early_stopping_patience keeps the best checkpoint (load_best_model_at_end true), but "
            "load_best_model_at_end is false; drop one of them."
        )
    if warn and replaced:
        was = ", ".join(f"{name} {choice_text(value)}" for name, value in sorted(replaced.items()))
        now = ", ".join(f"{name} {choice_text(getattr(args, name))}" for name in sorted(replaced))
        logger.warning(
            "%s replaced by %s: early_stopping_patience keeps the best checkpoint, so one is saved at every "
            "evaluation.", was, now,
        )  # fmt: skip


def check_run_glue_switches(args, data_args) -> None:
    """`do_train`, `do_eval` and `do_predict` as `run_glue.py` users set them: true is what the command does anyway;
    false on the command line (or do_predict without a test file) asked for something it does not do, and was
    silently ignored (Trainer itself never reads them). In a config file their false is TrainingArguments' default,
    which every resolved config (`hf_transfer_config.yaml`, copied and edited) holds: not a request."""
    flags = getattr(args, "flag_fields", None) or frozenset()  # set by the command-line parser
    if "do_train" in flags and not args.do_train:
        raise ConfigError(
            "do_train is false, but this command always trains; to score a trained model use hf-transfer evaluate, "
            "and hf-transfer predict for rows without labels."
        )
    if "do_eval" in flags and not args.do_eval:
        raise ConfigError(
            "do_eval is false, but a run always scores its validation data once at the end (its card reports it); "
            "with eval_strategy no there are no evaluations during training: drop do_eval."
        )
    chosen = getattr(args, "chosen_fields", None) or frozenset()
    asked = "do_predict" in (chosen if args.do_predict else flags)  # true is never a resolved config's default
    if asked and bool(args.do_predict) != bool(data_args.test_file):
        raise ConfigError(
            "do_predict is true but no test_file is given: set test_file (with labels it is scored, without them "
            "predict_results.csv is written)."
            if args.do_predict
            else "do_predict is false but test_file is given: a test_file is always scored (or, without labels, "
            "predicted); drop test_file."
        )


def check_label_smoothing(args, problem_type: str) -> None:
    """transformers switches label smoothing off for multi-label models with a warning alone, while the card and the
    saved config still showed the factor."""
    if args.label_smoothing_factor and problem_type == "multi_label_classification":
        raise ConfigError(
            f"label_smoothing_factor {args.label_smoothing_factor} applies to single-label classification; for a "
            "multi-label model transformers switches it off, so drop it."
        )


def check_steps_left(training_args) -> None:
    """Resuming from a finished run's last checkpoint trained nothing and wrote a train loss of 0 over "steps 20 to
    19": refused when this run asks for no more than that run did, as its resolved config says (trainer_state.json
    rounds a fraction of an epoch up, so it cannot tell). A run stopped after its last checkpoint but before its
    outputs (no run record beside it) may resume to write them."""
    if not training_args.resume_from_checkpoint:
        return
    checkpoint = Path(training_args.resume_from_checkpoint)
    finished = finished_at(checkpoint)
    done = recorded_config(checkpoint.parent)
    if finished is None or not (checkpoint.parent / RUN_RECORD_FILE).is_file() or not done:
        return
    step, by_steps = finished[0], (done.get("max_steps") or -1) > 0
    if training_args.max_steps > 0:
        more = training_args.max_steps > step
    else:  # epochs against epochs; after a run capped by max_steps, the steps an epoch count means are unknown here
        more = by_steps or training_args.num_train_epochs > float(done.get("num_train_epochs") or 0)
    if not more:
        length = f"{done['max_steps']} steps" if by_steps else f"{float(done.get('num_train_epochs') or 0):g} epoch(s)"
        raise ConfigError(
            f"{str(checkpoint)!r} is the last step ({step}) of a finished run of {length}: nothing is left to train. "
            "To train longer, resume with more num_train_epochs (or max_steps); to score the model, use "
            "hf-transfer evaluate."
        )


def resume_launch_change(training_args, warn: bool = True) -> str | None:
    """How the run that saved the checkpoint to resume was launched, when that differs from this run (processes or
    rows per device), said in one line: Trainer skips the batches of the steps done at this run's batch size, so
    rows are trained twice or skipped, and the batch changes mid-run. Allowed, as Trainer allows it (fewer devices
    may be all there is); the record and the card keep it."""
    if not training_args.resume_from_checkpoint:
        return None
    processes, batch = checkpoint_launch(Path(training_args.resume_from_checkpoint))
    now = (launched_world_size(), training_args.train_batch_size)  # per device × the GPUs of one process
    if training_args.auto_find_batch_size:  # Trainer takes the checkpoint's (found) batch back on resume
        batch = now[1]
    if (processes or now[0], batch or now[1]) == now:  # what the checkpoint cannot tell is taken as unchanged
        return None
    then = f"{processes or '?'} process(es) × {batch or '?'} rows per device"
    if not warn:
        return then
    logger.warning(
        "resume_from_checkpoint %r was saved by a run of %s; this run is %d × %d: the data order skips the steps "
        "done at this run's batch, so some rows are trained twice or skipped, and the batch changes mid-run; "
        "resume with the same launch to go on exactly.",
        str(training_args.resume_from_checkpoint), then, *now,
    )  # fmt: skip
    return then


# What a resumed run takes back from the checkpoint, not from its arguments: the optimizer's hyperparameters (its
# state's param groups) and the schedule's base rates (layer-wise decay's included).
OPTIMIZER_FIELDS = ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "layerwise_lr_decay")


def check_adapter_checkpoint_fits(training_args, config, model_name_or_path: str) -> None:
    """A LoRA checkpoint resumed onto a model its weights do not fit (another depth) is one line, not PEFT's warning
    followed by the optimizer's traceback once the model has loaded."""
    from hf_transfer.adapters.adapter_fit import check_adapter_fits
    from hf_transfer.core.models import meta_classifier

    folder = Path(str(training_args.resume_from_checkpoint or ""))
    if training_args.resume_from_checkpoint and (folder / ADAPTER_CONFIG).is_file():
        saved = read_json_file(folder / ADAPTER_CONFIG, "adapter config")
        check_adapter_fits(
            str(folder), saved, meta_classifier(config), model_name_or_path, "this run's model", "resumed on"
        )


# What decides which parameters train and on what loss: a resume that changes one goes on from an optimizer state
# matched by position to other parameters (or a traceback once the model has loaded), mixes two losses, or trains a
# linear probe and then throws it away, while the record and card describe the whole run with the new value.
TRAINING_FIELDS = ("freeze_embeddings", "freeze_layers", "freeze_patterns", "train_head_only", "gradual_unfreezing",
                   "class_weights", "label_smoothing_factor", "linear_probe_epochs")  # fmt: skip


_MISSING = object()


def _resume_changes(training_args, then, adapter_plan) -> tuple[str, object, object] | None:
    """(field, the checkpoint's value, this run's) for the first field of TRAINING_FIELDS a resume changes, or the
    LoRA targets when both are lists of module names; None when nothing changes."""
    for name in TRAINING_FIELDS:
        old, now = getattr(then, name, _MISSING), getattr(training_args, name, None)
        if old is not _MISSING and old != now and not (old in (None, 0) and now in (None, 0)):
            return name, old, now
    saved = Path(str(training_args.resume_from_checkpoint)) / ADAPTER_CONFIG
    targets = getattr(getattr(adapter_plan, "peft_config", None), "target_modules", None)
    if saved.is_file() and isinstance(targets, (list, set, tuple)):
        old = read_json_file(saved, "adapter config").get("target_modules")
        if isinstance(old, list) and set(old) != set(targets):
            return "target_modules", sorted(old), sorted(targets)
    return None


def check_resume_settings(training_args, adapter_args, adapter_plan=None) -> None:
    """Refuse a resume whose optimizer fields differ from the checkpoint's: Trainer loads the optimizer and scheduler
    states back, so `--learning_rate 0.01` went on at the checkpoint's 0.001 in silence, while the resolved config
    and the card said 0.01. Read from the checkpoint's `training_args.bin`; nothing is compared when it is missing
    or unreadable. A changed schedule is taken up from the resume on: said here, and recorded
    (`resume_schedule_changes`)."""
    then = _checkpoint_arguments(training_args)
    if then is None:
        return
    checkpoint = str(training_args.resume_from_checkpoint)
    lora_default = takes_lora_learning_rate(adapter_args, training_args)
    for name in OPTIMIZER_FIELDS:
        now = LORA_LEARNING_RATE if name == "learning_rate" and lora_default else getattr(training_args, name, None)
        old = getattr(then, name, None)
        if isinstance(old, (int, float)) and isinstance(now, (int, float)) and abs(old - now) > 1e-12 * abs(old):
            raise ConfigError(
                f"resume_from_checkpoint {checkpoint!r} goes on with the optimizer and schedule it saved, "
                f"where {name} is {old:g}; this run's {name} {now:g} would not be used, though the record and card "
                f"would say it was. Resume with {name} {old:g}, or start a new run in another output_dir."
            )
    if changed := _resume_changes(training_args, then, adapter_plan):
        name, old, now = changed
        raise ConfigError(
            f"resume_from_checkpoint {checkpoint!r} was trained with {name} {old}; this run's {now} would go on from "
            "its saved optimizer state with other parameters or another loss, though the record and card would say "
            f"the whole run used it. Resume with {name} {old}, or start a new run in another output_dir."
        )
    for name, (old, new) in resume_schedule_changes(training_args, then).items():
        logger.warning(
            f"resume_from_checkpoint {checkpoint!r} trained its steps on a learning-rate schedule with {name} {old}; "
            f"this run's {new} takes over from the resume on, so the rate moves there at once onto the new curve. "
            "The record and card say so."
        )


def _checkpoint_arguments(training_args):
    """The fields of the `TrainingArguments` a resumed checkpoint saved (`training_args.bin`, read without running
    anything from it); None when not resuming, or when the file is missing or unreadable (the resume goes on
    unchecked, as before)."""
    if not training_args.resume_from_checkpoint:
        return None
    return saved_training_arguments(Path(training_args.resume_from_checkpoint))


def resume_schedule_changes(training_args, then=None) -> dict:
    """{field: [the checkpoint's, this run's]} of the learning-rate schedule's fields that a resume changes. Trainer
    builds the schedule from this run's arguments and takes only the step from the checkpoint, so the steps before
    the resume ran on the old curve and those after on the new one (the rate jumps between them). The length is not
    compared under a constant rate, nor the epochs where max_steps sets the length."""
    then = then if then is not None else _checkpoint_arguments(training_args)
    if then is None:
        return {}

    def plain(value):  # an enum's value: SchedulerType.LINEAR -> "linear"
        return getattr(value, "value", value)

    names = ["lr_scheduler_type", "warmup_steps", "lr_scheduler_kwargs"]
    if plain(training_args.lr_scheduler_type) != "constant":
        names += ["max_steps"] + (["num_train_epochs"] if training_args.max_steps <= 0 else [])
    changes = {}
    for name in names:
        old, new = (plain(getattr(args, name, None)) for args in (then, training_args))
        if name == "lr_scheduler_kwargs":  # None and {} are the same: no extra arguments
            old, new = old or {}, new or {}
        if old != new:
            changes[name] = [old, new]
    return changes


def check_sharded_launch(args) -> None:
    """Options that run or edit the trained model in one process (the linear probe's own trainer and saved probe,
    the frozen trunk's patched forward, the offsets folded into the output layer's bias) cannot work on weights an
    FSDP or ZeRO-3 launch has sharded over the processes: there they would hang or fail after training."""
    engine = sharded_weights()
    given = [
        name for name in ("calibrate_decision", "linear_probe_epochs", "cache_frozen_features") if getattr(args, name)
    ]
    if engine and given:
        raise ConfigError(
            f"{given[0]} runs or edits the model in one process, but {engine} shards its weights over the "
            f"{launched_world_size()} processes launched; launch with DDP (scripts/accelerate/ddp_gpu.yaml), whose "
            f"processes each hold the whole model, or drop {given[0]}."
        )


def check_weights_finite(trainer) -> None:
    """Refuse to save or score a model whose trained weights hold NaN or inf: stock `Trainer` saves it and the
    command ends with status 0, so a diverged run looked like a finished one."""
    import torch

    bad = [name for name, p in trainer.model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if not bad:
        return
    args, step = trainer.args, trainer.state.global_step
    fp16 = ", or train in fp32 or bf16 instead of fp16" if args.fp16 else ""
    # Trainer logs a NaN step's loss as 0 (`logging_nan_inf_filter`): drawn so, the loss seemed to fall to nothing.
    history = [_drop_filtered_loss(entry) for entry in trainer.state.log_history]
    first = next((e["step"] for e in trainer.state.log_history if _nonfinite(e.get("grad_norm"))), None)
    when = f"; the gradient norm was first NaN or inf at logged step {first}" if first is not None else ""
    curves = Path(args.output_dir) / "training_curves.png"  # where the loss went: the record of it was lost too
    if trainer.is_world_process_zero():
        name = Path(args.output_dir).resolve().name
        plot_training_curves(history, curves, title=f"{name} (diverged)", saved={"diverged": first})
    raise TrainingDivergedError(
        f"training diverged: {len(bad)} trained weight tensor(s) hold NaN or inf after step {step} (first: "
        f"{bad[0]}{when}), so no final model was saved and nothing was scored (the logged losses: {curves}); "
        f"lower learning_rate (now {args.learning_rate:g}) or keep max_grad_norm set (now "
        f"{args.max_grad_norm:g}){fp16}."
    )


def _nonfinite(value) -> bool:
    return isinstance(value, (int, float)) and not math.isfinite(value)


def _drop_filtered_loss(entry: dict) -> dict:
    """A logged step whose gradient norm is NaN or inf, with its loss as unknown (NaN) rather than Trainer's 0."""
    return {**entry, "loss": math.nan} if "loss" in entry and _nonfinite(entry.get("grad_norm")) else entry
