"""The search space: its YAML syntax (`{low, high, log, step}` ranges and lists of choices), its check against the
fields of the route's arguments, and the default space of each route. Pure functions of plain values."""

from __future__ import annotations

import argparse
import contextlib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

from hf_transfer.errors import ConfigError

RANGE_KEYS = ("low", "high", "log", "step")
# Fields the search owns: trials write to folders of their own under output_dir.
NOT_SEARCHABLE = ("output_dir", "logging_dir", "resume_from_checkpoint", "push_to_hub", "hub_model_id")
# Fields that decide which rows every trial is scored on: trials scored on different rows cannot be compared (and a
# trial could be scored on its own training rows).
FIXED_DATA = (
    "validation_file", "max_eval_samples", "validation_split_percentage", "dataset_name", "dataset_config_name",
    "text_column_name", "text_pair_column_name", "label_column_name", "label_mapping", "problem_type",
)  # fmt: skip
# With no validation_file, the validation rows are carved from the training data by the seed (data_seed, else seed):
# searching these scored each trial on other rows.
CARVE_FIELDS = ("seed", "data_seed", "train_file", "dataset_name", "dataset_config_name")


def check_carved_validation(params: list, carved: bool) -> None:
    searched = [p.name for p in params if p.name in CARVE_FIELDS]
    if carved and searched:
        raise ConfigError(
            f"search_space.{searched[0]}: with no validation_file the validation rows are carved from the training "
            f"data by {searched[0] if searched[0] in ('seed', 'data_seed') else 'it'}, so each trial would be scored "
            "on other rows; give validation_file, or leave it out of search_space."
        )


# What a field left unset means, where that is a value a range can hold: no block frozen.
UNSET_MEANS = {"freeze_layers": 0}


def config_value(objects: tuple, name: str):
    """The value of field `name` in a parsed config's dataclasses (an Enum as its value), or None."""
    import enum

    for args in objects:
        if name in getattr(type(args), "__dataclass_fields__", {}):
            value = getattr(args, name)
            return value.value if isinstance(value, enum.Enum) else value
    return None


def own_value(p, objects: tuple, reparse) -> Any:
    """The config's own value of the searched field `p`, as its trials draw it: unset as what that means, and a
    list (`student_layers: [0, 1]`, which a space lists as text) as the choice a trial reads as that list
    (`reparse(choice)`: the config parsed with it); it had matched no choice, so no trial ran the config's own."""
    value = config_value(objects, p.name)
    if value is None:
        return UNSET_MEANS.get(p.name)
    if isinstance(value, list) and not p.is_range:
        same = (c for c in p.choices if isinstance(c, str) and config_value(reparse(c), p.name) == value)
        return next(same, value)
    return value


SYNTAX = "give a range {low: L, high: H} (with log: true or step: S if wanted) or a non-empty list of choices"


@dataclass(frozen=True)
class Param:
    """One searched field: a numeric range (`integer` once the field's type is known) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.choices is None

    def bounds_to_check(self) -> list:
        """The values every trial's config must accept: both ends of a range, or every choice."""
        if not self.is_range:
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.integer else [self.low, self.high]

    def contains(self, value: Any) -> bool:
        if not self.is_range:
            return any(value == c and type(value) is type(c) for c in self.choices) or (
                isinstance(value, float) and value in self.choices
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.integer and value != int(value):
            return False
        if self.step is not None:
            steps = (value - self.low) / self.step
            return math.isclose(steps, round(steps), abs_tol=1e-9)
        return True

    def suggest(self, trial):
        """This field's value for an Optuna trial."""
        if not self.is_range:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if not self.is_range:
            return "[" + ", ".join(map(str, self.choices)) + "]"
        extra = ", log" if self.log else f", step {self.step:g}" if self.step else ""
        return f"{self.low:g}..{self.high:g}{extra}"


def _number(name: str, key: str, value: Any) -> float | int:
    """A bound read from YAML, where `1e-5` (no dot) arrives as text."""
    if isinstance(value, bool):
        raise ConfigError(f"search_space.{name}: {key} must be a number, got {value!r}; {SYNTAX}.")
    if isinstance(value, str):
        try:
            value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            raise ConfigError(f"search_space.{name}: {key} must be a number, got {value!r}; {SYNTAX}.") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"search_space.{name}: {key} must be a finite number, got {value!r}; {SYNTAX}.")
    return value


def _range(name: str, spec: dict) -> Param:
    unknown = sorted(set(map(str, spec)) - set(RANGE_KEYS))
    if unknown or "low" not in spec or "high" not in spec:
        what = f"unknown key {unknown[0]!r}" if unknown else "low and high are both needed"
        raise ConfigError(f"search_space.{name}: {what} in {spec!r}; {SYNTAX}.")
    low, high = _number(name, "low", spec["low"]), _number(name, "high", spec["high"])
    if not low < high:
        raise ConfigError(f"search_space.{name}: the range is empty (low {low} >= high {high}); give low < high.")
    log = spec.get("log", False)
    if isinstance(log, str):  # `log: yes`, read as HfArgumentParser reads a flag's true/false
        from transformers.hf_argparser import string_to_bool

        with contextlib.suppress(argparse.ArgumentTypeError):
            log = string_to_bool(log.strip())
    if not isinstance(log, bool):
        raise ConfigError(f"search_space.{name}: log must be true or false, got {log!r}.")
    step = spec.get("step")
    if step is not None:
        step = _number(name, "step", step)
        if not 0 < step <= high - low:
            raise ConfigError(f"search_space.{name}: step must be > 0 and at most high - low, got {step}.")
        if log:
            raise ConfigError(f"search_space.{name}: a range takes log or step, not both.")
    if log and low <= 0:
        raise ConfigError(f"search_space.{name}: a log range needs low > 0, got {low}.")
    return Param(name, low=low, high=high, log=log, step=step)


def _choices(name: str, values: list) -> Param:
    if not values:
        raise ConfigError(f"search_space.{name}: the list of choices is empty; {SYNTAX}.")
    for value in values:
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ConfigError(
                f"search_space.{name}: a choice must be a number, text, true/false or null, got {value!r}."
            )
    if len({(type(v), v) for v in values}) != len(values):
        raise ConfigError(f"search_space.{name}: the choices {values!r} repeat a value.")
    return Param(name, choices=tuple(values))


def parse_space(space: Any) -> list[Param]:
    """The syntax of `search_space`: {field: {low, high[, log | step]}} or {field: [choice, ...]}."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search_space must be a non-empty mapping of field: range or choices, got {space!r}.")
    params = []
    for name, spec in space.items():
        name = str(name).replace("-", "_")
        if name in NOT_SEARCHABLE:
            raise ConfigError(f"search_space.{name}: the search sets {name} itself; leave it out of search_space.")
        if name in FIXED_DATA:
            raise ConfigError(
                f"search_space.{name}: every trial is scored on the same validation rows, or the trials cannot be "
                f"compared; set {name} in the config, not in search_space."
            )
        if isinstance(spec, dict):
            params.append(_range(name, spec))
        elif isinstance(spec, (list, tuple)):
            params.append(_choices(name, list(spec)))
        else:
            raise ConfigError(f"search_space.{name}: got {spec!r}; {SYNTAX} (a fixed value goes in the config).")
    return params


def _options(hint: Any) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)


# Float fields that Trainer reads as a share of the training steps below 1 and as a count of steps from 1 up.
SHARE_OR_COUNT = ("warmup_steps", "eval_steps", "save_steps", "logging_steps")


def _share_or_count(p: Param) -> tuple:
    """The kind of a range of a SHARE_OR_COUNT field: shares (float) when it stays below 1, whole counts (int) from 1
    up (from 0 for warmup_steps); one across 1 would draw counts such as 3.12 (`eval_steps` refused them, every
    trial failed) or mix 0.5 (half the steps) with 5 (five steps)."""
    if p.high < 1:  # 1 is one step (logging every step), not the whole run
        return (float,)
    if p.low >= 1 or (p.low == 0 and p.name == "warmup_steps"):  # 0 warmup steps: none, as a share or a count
        return (int,)
    raise ConfigError(
        f"search_space.{p.name}: the range {p.describe()} crosses 1, where {p.name} turns from a share of the "
        f"training steps (below 1) into a number of steps; search one or the other, e.g. {{low: 0.0, high: 0.2}} or "
        f"{{low: 10, high: 100}}."
    )


def check_fields(params: list[Param], hints: dict[str, Any], command: str) -> list[Param]:
    """Each param names a field of the trials' arguments, and a range only a numeric one; ranges of int fields
    become integer ranges (so do ranges of `int | list` fields such as freeze_layers), of float fields float ones."""
    import difflib

    checked = []
    for p in params:
        if p.name not in hints:
            close = difflib.get_close_matches(p.name, list(hints), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else f" See `hf-transfer {command} --help` for the fields."
            raise ConfigError(f"search_space: unknown field {p.name!r}.{hint}")
        if p.is_range:
            options = _options(hints[p.name])
            if p.name in SHARE_OR_COUNT:
                options = _share_or_count(p)
            if float in options:
                p = Param(p.name, float(p.low), float(p.high), p.log, p.step)
            elif int in options:
                if any(v is not None and v != int(v) for v in (p.low, p.high, p.step)):
                    raise ConfigError(
                        f"search_space.{p.name}: {p.name} takes whole numbers, got the range {p.describe()}."
                    )
                step = None if p.step is None else int(p.step)
                p = Param(p.name, int(p.low), int(p.high), p.log, step, integer=True)
            else:
                raise ConfigError(
                    f"search_space.{p.name}: {p.name} is not a number, so it takes a list of choices, not a range."
                )
        checked.append(p)
    return checked


# Fields that change what the validation loss measures, not only how the model trains.
LOSS_SHAPING = ("label_smoothing_factor", "class_weights")


def check_loss_comparable(metric: str, params: list[Param]) -> None:
    """`metric: loss` needs one loss for every trial: with smoothing or class weights searched, each trial's
    validation loss was its own smoothed or weighted one (the same weights scored 0.004 and 1.67)."""
    if metric == "loss" and (shaping := [p.name for p in params if p.name in LOSS_SHAPING]):
        raise ConfigError(
            f"metric loss with {' and '.join(shaping)} in the search space: each trial's validation loss is "
            f"computed with its own {' and '.join(shaping)}, so the losses of two trials do not compare (the least "
            "smoothing or weighting wins); search on accuracy or f1_macro, or fix the field in the config."
        )


# --- the default space of each route -------------------------------------------------------------------------------

ROUTES = ("full", "frozen", "adapter", "distill", "few_shot")
_COMMON = {
    "num_train_epochs": {"low": 1, "high": 3, "step": 1},
    "per_device_train_batch_size": [16, 32],
}


def default_space(route: str, *, num_layers: int | None = None, peft_method: str = "none",
                  train_head_only: bool = False) -> dict:  # fmt: skip
    """The space searched when the config gives none, in the `search_space` syntax (docs/search.md shows them)."""
    if route == "full":
        return {
            "learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
            **_COMMON,
            "warmup_steps": {"low": 0.0, "high": 0.2},
            "weight_decay": {"low": 0.0, "high": 0.1},
            "layerwise_lr_decay": {"low": 0.8, "high": 1.0},
        }
    if route == "frozen":
        space = {"learning_rate": {"low": 2e-5, "high": 5e-4, "log": True}, **_COMMON}
        if num_layers and num_layers > 1 and not train_head_only:
            # Freeze at least a third of the blocks, never all of them (that is train_head_only).
            space["freeze_layers"] = {"low": max(1, num_layers // 3), "high": num_layers - 1}
        return space
    if route == "adapter":
        space = {"learning_rate": {"low": 1e-4, "high": 2e-3, "log": True}, **_COMMON}
        if peft_method == "lora":
            space["lora_r"] = [4, 8, 16]
        return space
    if route == "distill":
        return {
            "learning_rate": {"low": 2e-5, "high": 2e-4, "log": True},
            **_COMMON,
            "alpha": {"low": 0.1, "high": 0.9},
            "temperature": {"low": 1.0, "high": 4.0},
        }
    if route == "few_shot":  # the body tuning's own budget; the head's C barely moves it (docs/few_shot.md)
        return {
            "few_shot_learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
            "few_shot_body_epochs": {"low": 8, "high": 32, "step": 8},
            "few_shot_batch_size": [8, 16, 32],
        }
    raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")


def without_fixed_fields(space: dict, flags: frozenset, max_steps_set: bool) -> dict:
    """The default space less the fields the user fixed: those given as flags on the command line (every trial ran
    at the space's batch 16 or 32 where `--per_device_train_batch_size 4` was given), and the epochs when max_steps
    overrides them."""
    fixed = set(flags) | ({"num_train_epochs", "few_shot_body_epochs"} if max_steps_set else set())
    left = {name: values for name, values in space.items() if name not in fixed}
    if not left:
        raise ConfigError(
            f"every field of the default search space ({', '.join(space)}) is fixed by a flag or by max_steps; give "
            "search_space with the fields to search."
        )
    return left


def route_of(is_distill: bool, adapter_enabled: bool, freezes_anything: bool) -> str:
    """Which default space fits a config: distillation first, then an adapter, then frozen layers, else full."""
    return "distill" if is_distill else "adapter" if adapter_enabled else "frozen" if freezes_anything else "full"
