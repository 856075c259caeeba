"""TrainingArguments values that `Trainer` takes apart only inside `train()`, after the weights have loaded (a
traceback then, and an empty output_dir): the schedule's `lr_scheduler_kwargs`, `optim_args`,
`eval_do_concat_batches` and `use_liger_kernel`. Refused here in one line, from `check_trainer_fields`."""

from __future__ import annotations

import importlib.util
import inspect

from hf_transfer.core.column_hints import closest_hint
from hf_transfer.errors import ConfigError

# What Trainer passes a schedule itself: not lr_scheduler_kwargs' to give.
SCHEDULE_OWN = frozenset({"optimizer", "num_warmup_steps", "num_training_steps", "last_epoch"})
MIN_LR_SCHEDULES = ("cosine_with_min_lr", "cosine_warmup_with_min_lr")


def choice_text(choice) -> str:
    """A TrainingArguments choice (an Enum) or number as its config text."""
    value = getattr(choice, "value", choice)
    if isinstance(value, float) and value.is_integer() and value >= 1:
        return str(int(value))  # TrainingArguments keeps a step count it was given as 3 as 3.0 in the resolved config
    return str(value)


def _schedule_function(lr_scheduler_type):
    """transformers' function for a schedule (torch's ReduceLROnPlateau for reduce_lr_on_plateau), or None."""
    import torch
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION

    kind = choice_text(lr_scheduler_type)
    if kind == "reduce_lr_on_plateau":  # its kwargs go to torch's ReduceLROnPlateau
        return torch.optim.lr_scheduler.ReduceLROnPlateau
    return next((f for k, f in TYPE_TO_SCHEDULER_FUNCTION.items() if choice_text(k) == kind), None)


def check_scheduler_kwargs(args) -> None:
    """`lr_scheduler_kwargs` that the schedule does not take (`{num_cycle: 2}`), or without one it needs
    (`warmup_stable_decay`'s num_decay_steps; min_lr or min_lr_rate for the min-LR cosines)."""
    kind, given = choice_text(args.lr_scheduler_type), dict(args.lr_scheduler_kwargs or {})
    function = _schedule_function(kind)
    if function is None:
        return
    params = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # takes anything (greedy)
    takes = [name for name in params if name not in SCHEDULE_OWN]
    unknown = sorted(set(map(str, given)) - set(takes))
    if unknown:
        raise ConfigError(
            f"lr_scheduler_kwargs {unknown[0]!r} is not an argument of the {kind} schedule, which takes "
            f"{', '.join(takes) or 'none'}.{closest_hint(unknown[0], takes)}"
        )
    needed = [name for name in takes if params[name].default is inspect.Parameter.empty and name not in given]
    if kind in MIN_LR_SCHEDULES and given.get("min_lr") is None and given.get("min_lr_rate") is None:
        needed.append("min_lr or min_lr_rate")
    if needed:
        raise ConfigError(
            f"the {kind} schedule needs {needed[0]} in lr_scheduler_kwargs, e.g. lr_scheduler_kwargs: "
            f"{{{needed[0].split()[0]}: ...}}."
        )


def check_inside_train_fields(args) -> None:
    """The refusals of this module's docstring."""
    check_scheduler_kwargs(args)
    if args.optim_args:  # Trainer splits it at each comma, then each item at its `=`
        bad = next((item for item in str(args.optim_args).replace(" ", "").split(",") if item.count("=") != 1), None)
        if bad is not None:
            raise ConfigError(
                f"optim_args {args.optim_args!r} is read as key=value pairs separated by commas, and {bad!r} is not "
                "one; give one value per key (e.g. optim_args: beta1=0.8,beta2=0.9)."
            )
    if not args.eval_do_concat_batches:
        raise ConfigError(
            "eval_do_concat_batches false keeps each evaluation batch apart, but hf-transfer scores (and predicts) "
            "the whole evaluation set at once; drop it."
        )
    if args.use_liger_kernel and importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError(
            "use_liger_kernel needs liger-kernel, which is not installed: pip install liger-kernel, or drop "
            "use_liger_kernel."
        )


def schedule_takes_warmup(lr_scheduler_type) -> bool:
    """Whether a learning-rate schedule warms up at all (`constant` and `reduce_lr_on_plateau` ignore warmup_steps)."""
    function = _schedule_function(lr_scheduler_type)
    return function is None or "num_warmup_steps" in inspect.signature(function).parameters
