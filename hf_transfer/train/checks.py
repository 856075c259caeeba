"""Trainer fields that stock `Trainer` checks only once the weights have loaded (a traceback then), checked by
`TransferTrainingArguments.__post_init__`, so that `train`, `distill` and `search` refuse them in one line first."""

from __future__ import annotations

import re

from hf_transfer.errors import ConfigError


def check_trainer_fields(args) -> None:
    """One-line refusals of `batch_eval_metrics`, `save_strategy: best` without a metric, and an `optim` whose package
    is not installed."""
    if args.batch_eval_metrics:
        # Trainer would call compute_metrics batch by batch (with compute_result), but macro-F1, per-class scores and
        # the confusion matrix are computed over the whole evaluation set.
        raise ConfigError(
            "batch_eval_metrics is not supported: hf-transfer computes its metrics over the whole evaluation set at "
            "once; drop it (eval_accumulation_steps bounds the memory evaluation holds)."
        )
    if _value(args.save_strategy) == "best" and args.metric_for_best_model is None:
        # As transformers refuses it (Trainer._validate_args): which checkpoint is best depends on the metric.
        raise ConfigError(
            "save_strategy best saves a checkpoint whenever metric_for_best_model improves, but metric_for_best_model "
            "is not set; set it (e.g. f1_macro, accuracy or loss), or use save_strategy epoch or steps."
        )
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
        return f"optim {_value(args.optim)} cannot be used: {text} Or choose another optim, e.g. adamw_torch."
    return (
        f"optim {_value(args.optim)} needs {name}, which is not installed: {command.group(1)}, or choose another "
        "optim, e.g. adamw_torch."
    )


def _value(choice) -> str:
    return str(getattr(choice, "value", choice))
