"""The adapter fields of `train` and `distill`."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from hf_transfer.core.runtime import sharded_weights
from hf_transfer.errors import ConfigError

# The fields only an adapter reads: with peft_method none they change nothing.
ADAPTER_ONLY_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "peft_config", "loraplus_lr_ratio")


def read_declared_types(config_cls, overrides: dict) -> dict:
    """`overrides` with each true/false and number field of the PEFT config class read as hf-transfer's own fields
    read one. YAML 1.2 keeps `peft_config: {use_rslora: no}` as the text "no", which PEFT took as set (any non-empty
    text is true), so rsLoRA was switched on by `no`; `{r: "8"}` or `{r: 8.0}`, which `lora_r` takes, failed inside
    PEFT ("'<=' not supported between instances of 'str' and 'int'"). A value of another kind is refused in one
    line, naming the field."""
    from transformers.hf_argparser import string_to_bool

    from hf_transfer.core.value_reader import BOOL_SPELLINGS

    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # an annotation PEFT's own module cannot resolve: pass the values on as they are
        hints = {}
    read = dict(overrides)
    for name, value in overrides.items():
        hint = hints.get(name)
        if isinstance(value, bool) or value is None:
            continue
        if hint in (int, int | None, float, float | None):
            read[name] = _number(name, value, int if hint in (int, int | None) else float)
            continue
        if hint not in (bool, bool | None):
            continue
        try:
            read[name] = string_to_bool(str(value).strip()) if isinstance(value, (str, int)) else None
        except Exception:  # argparse.ArgumentTypeError
            read[name] = None
        if read[name] is None:
            raise ConfigError(f"peft_config.{name} expects {BOOL_SPELLINGS}, got {value!r}.")
    return read


def _number(name: str, value, kind: type):
    """`value` as the int or float a PEFT config field declares: a number's text, or a whole float for an int (a
    fractional one is left to PEFT, which takes `lora_alpha: 16.5`)."""
    try:
        number = float(value.strip()) if isinstance(value, str) else value
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return kind(number) if kind is float or float(number).is_integer() else number
    except (ValueError, OverflowError):
        pass
    expects = "a whole number" if kind is int else "a number"
    raise ConfigError(f"peft_config.{name} expects {expects}, got {value!r}.")


# The short fields and the PEFT config fields they set: a method whose config has none of them ignores the field.
SHORT_FIELDS = {
    "lora_r": ("r",),
    "lora_alpha": ("lora_alpha", "alpha"),
    "lora_dropout": ("lora_dropout",),
    "target_modules": ("target_modules",),
}


@dataclass
class AdapterArguments:
    """A PEFT adapter as a light task head: the base model stays frozen, the adapter and the classifier train."""

    peft_method: str = field(
        default="none",
        metadata={
            "help": "`none` (full model, with the freezing options), `lora`, `ia3`, `adalora`, or any other PEFT "
            "method name (`loha`, `lokr`, ...); case-insensitive."
        },
    )
    peft_config: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": "Fields of the method's PEFT config (e.g. `{r: 16, target_modules: [query, key, value]}` for "
            "LoRA); they win over the short fields below. The task type and the saved head are set by hf-transfer."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "Adapter rank `r` (LoRA and methods that have a rank)."})
    lora_alpha: int = field(default=16, metadata={"help": "Scaling α (`lora_alpha`, or `alpha` for LoHa/LoKr)."})
    lora_dropout: float = field(
        default=0.0,
        metadata={
            "help": "Dropout on the adapter's input, in [0, 1). Off by default: above 0 it keeps a copy of every "
            "adapted input for the backward pass, and on SST-2 it did not help (README, Adapters)."
        },
    )
    target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules that get an adapter: names or dotted suffixes such as `[query, value]`, or `all-linear`. "
            "Default: PEFT's choice for the architecture, else the attention projections found in the blocks."
        },
    )
    loraplus_lr_ratio: float = field(
        default=1.0,
        metadata={
            "help": "LoRA+ (Hayou et al. 2024): the learning rate of LoRA's B matrices is learning_rate × this ratio "
            "(A, the head and the rest keep learning_rate); 1 = off, the paper suggests 2-16. LoRA only."
        },
    )
    merge_adapter: bool = field(
        default=False,
        metadata={"help": "Also write the adapter merged into the base as a plain model, to `output_dir/merged`."},
    )

    def __post_init__(self):
        self.peft_method = str(self.peft_method or "none").strip().lower().replace("-", "_")
        if self.lora_r <= 0:
            raise ConfigError(f"lora_r must be > 0, got {self.lora_r}. Typical ranks are 4-64.")
        if self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha must be > 0, got {self.lora_alpha}. A common choice is 2 × lora_r.")
        if not 0.0 <= self.lora_dropout < 1.0 or math.isnan(self.lora_dropout):
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if not self.loraplus_lr_ratio > 0 or math.isinf(self.loraplus_lr_ratio):
            raise ConfigError(f"loraplus_lr_ratio must be a number > 0 (1 = off), got {self.loraplus_lr_ratio}.")
        if self.loraplus_lr_ratio != 1.0 and self.peft_method != "lora":
            raise ConfigError(
                f"loraplus_lr_ratio is LoRA+'s ratio for LoRA's B matrices; peft_method {self.peft_method} has none. "
                "Set --peft_method lora, or drop loraplus_lr_ratio."
            )
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if self.target_modules is not None:
            # `--target_modules query,value` arrives as one string.
            names = [part.strip() for item in self.target_modules for part in str(item).split(",")]
            self.target_modules = [name for name in names if name]
            if not self.target_modules:
                raise ConfigError("target_modules is empty; give module names like [query, value], or drop it.")
        if self.peft_config is not None and not isinstance(self.peft_config, dict):
            raise ConfigError(f"peft_config must be a mapping of PEFT config fields, got {self.peft_config!r}.")
        if self.peft_method == "none" and self.merge_adapter:
            # The adapter's fields are only ignored (see `ignored_fields`), but merging asks for an adapter.
            raise ConfigError("merge_adapter given but peft_method is none; set peft_method (e.g. lora) or drop it.")
        if self.merge_adapter and (engine := sharded_weights()):  # merged in the main process, on its shard alone
            raise ConfigError(
                f"merge_adapter merges in one process, but {engine} shards the weights over the processes launched; "
                "drop it and merge afterwards: hf-transfer merge --pretrained BASE --finetuned OUTPUT_DIR --alpha 1 "
                "--output_dir MERGED."
            )

    @property
    def enabled(self) -> bool:
        return self.peft_method != "none"

    def ignored_fields(self) -> list[str]:
        """The adapter-only fields set, in a config or as flags, while peft_method is none (for arguments built in
        code: those not at their defaults). Not refused: a LoRA config overridden by `--peft_method none` is fine."""
        return [] if self.enabled else self.set_fields(ADAPTER_ONLY_FIELDS)

    def unused_fields(self) -> list[str]:
        """The short fields set that the method's PEFT config has no field for (IA3 has no rank, LoHa no
        lora_dropout); the method must be a known one."""
        if not self.enabled:
            return []
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
        from peft.utils import PeftType

        config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType(self.peft_method.upper())]
        config_fields = {f.name for f in fields(config_cls)}
        return [name for name in self.set_fields(SHORT_FIELDS) if not config_fields.intersection(SHORT_FIELDS[name])]

    def set_fields(self, names) -> list[str]:
        """Those of `names` set in a config or as flags (for arguments built in code: those not at their defaults)."""
        given = getattr(self, "chosen_fields", None)  # set by the command-line parser
        if given is None:
            defaults = {f.name: f.default for f in fields(self)}
            return [name for name in names if getattr(self, name) != defaults[name]]
        return [name for name in names if name in given]
