"""PEFT adapters, before any weight loads: the method and its target modules, checked on a model built on the meta
device, and the head that is always trained and saved with the adapter.

The head is not hard-coded: it is the layout's head (see `core/layers.py`), collapsed to whole modules: `classifier`
for BERT-likes, `pre_classifier` too for DistilBERT, `score` and the final norm for decoders, the pooler where there
is one. All of it goes into `modules_to_save`, so it trains and is saved with the adapter; PEFT on its own adds only
modules named `classifier` or `score`, and a head it misses is re-initialised at random on reload."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import logging
import math
import re
from dataclasses import dataclass

from torch import nn

from hf_transfer.adapters.arguments import AdapterArguments, read_declared_types
from hf_transfer.adapters.method_rules import (
    block_norms,
    check_method_values,
    check_resumable,
    check_supported,
    meta_only_failure,
    takes_past_key_values,
)
from hf_transfer.core.folders import ADAPTER_CONFIG
from hf_transfer.core.layers import ModelLayout, discover_layers
from hf_transfer.core.models import meta_classifier
from hf_transfer.errors import ConfigError, one_line

logger = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_model.safetensors", ADAPTER_CONFIG)


# The base is frozen whole under an adapter, so these freezing options would do nothing.
_FREEZE_OPTIONS = (
    "freeze_embeddings",
    "freeze_layers",
    "freeze_patterns",
    "train_head_only",
    "gradual_unfreezing",
    "cache_frozen_features",
)


_QKV = re.compile(r"^(q|query|k|key|v|value)(_proj|_lin)?$")


def peft_methods() -> list[str]:
    """Every PEFT method name peft knows, lower-case: `adalora`, `ia3`, `lora`, ..."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return sorted(peft_type.value.lower() for peft_type in PEFT_TYPE_TO_CONFIG_MAPPING)


def check_method(name: str) -> str:
    methods = peft_methods()
    if name in methods:
        return name
    close = difflib.get_close_matches(name, methods, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"peft_method {name!r} is not a PEFT method; expected none or one of {', '.join(methods)}.{hint}"
    )


def freeze_conflicts(training_args) -> list[str]:
    """The freezing options set in `training_args` that an adapter makes moot."""
    found = [name for name in _FREEZE_OPTIONS if getattr(training_args, name, None) not in (None, False, 0, [])]
    if getattr(training_args, "layerwise_lr_decay", 1.0) != 1.0:
        found.append("layerwise_lr_decay")
    return found


def check_freeze_conflicts(peft_method: str, training_args) -> None:
    found = freeze_conflicts(training_args)
    if found:
        raise ConfigError(
            f"peft_method {peft_method} freezes the whole base and trains only the adapter and the head, so "
            f"{', '.join(found)} would do nothing; drop {'it' if len(found) == 1 else 'them'} or set peft_method none."
        )


def head_modules(model: nn.Module, layout: ModelLayout) -> list[str]:
    """The largest modules holding only head parameters: what must be trained and saved beside the adapter."""
    head = set(layout.head)
    names = [name for name, _ in model.named_parameters()]

    def all_head(module_name: str) -> bool:
        inside = [name for name in names if name.startswith(module_name + ".")]
        return bool(inside) and all(name in head for name in inside)

    modules: list[str] = []
    for name in layout.head:
        parts = name.split(".")[:-1]
        top = next((".".join(parts[:k]) for k in range(1, len(parts) + 1) if all_head(".".join(parts[:k]))), None)
        if top is not None and top not in modules:
            modules.append(top)
    return modules


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"  # GPT-2's transposed linear


def _features(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    return tuple(module.weight.shape)  # Conv1D stores (in, out)


def block_linears(model: nn.Module, layout: ModelLayout) -> list[str]:
    """Names, relative to a block, of the linear layers in each transformer block (`attention.self.query`, ...)."""
    block = model.get_submodule(layout.block_modules[0])
    return [name for name, module in block.named_modules() if _is_linear(module)]


def _matches(target: str, module_name: str) -> bool:
    # PEFT's rule for a list of target names: the whole name, or a suffix after a dot.
    return module_name == target or module_name.endswith("." + target)


def _outside(heads: list[str]):
    return lambda name: not any(name == h or name.startswith(h + ".") for h in heads)


def _block_roles(model: nn.Module, layout: ModelLayout) -> tuple[list[str], list[str], list[str]]:
    """Block-relative names of the block's linear layers, those inside attention, and the feed-forward
    down-projections (outside attention, more inputs than outputs)."""
    block = model.get_submodule(layout.block_modules[0])
    linears = {name: module for name, module in block.named_modules() if _is_linear(module)}
    attention = [n for n in linears if any("attn" in p or "attention" in p for p in n.lower().split("."))]
    down = [n for n, m in linears.items() if n not in attention and _features(m)[0] > _features(m)[1]]
    return list(linears), attention, down


def _derived_targets(method: str, model: nn.Module, layout: ModelLayout) -> tuple[list[str], list[str]]:
    """Block-relative (targets, feed-forward modules) from the block's structure, for models PEFT has no table for.

    LoRA-style methods adapt the attention query and value projections (all attention projections when they cannot be
    told apart, all linear layers when no module is named like attention); IA3 scales the keys, the values and the
    feed-forward down-projection; LN-tuning tunes the blocks' LayerNorms.
    """
    linears, attention, down = _block_roles(model, layout)
    if not linears:
        raise ConfigError(
            f"{type(model).__name__} has no linear layers in its blocks to put an adapter on; give target_modules."
        )

    def role(name: str) -> str | None:
        match = _QKV.match(name.rsplit(".", 1)[-1].lower())
        return match.group(1)[0] if match else None

    if method == "ia3":
        return ([n for n in attention if role(n) in ("k", "v")] or attention) + down, down
    if method == "ln_tuning":
        return block_norms(model, layout.block_modules[0]), []
    return [n for n in attention if role(n) in ("q", "v")] or attention or linears, []


def _in_blocks(layout: ModelLayout, relative: list[str]) -> set[str]:
    prefix = layout.block_modules[0].rpartition(".")[0]
    return {f"{prefix}.{i}.{rel}" for i in range(layout.depth) for rel in relative}


def _regex(layout: ModelLayout, relative: list[str]) -> str:
    prefix = layout.block_modules[0].rpartition(".")[0]
    return rf"{re.escape(prefix)}\.\d+\.(?:{'|'.join(re.escape(r) for r in relative)})"


def _compact(relative: list[str], model: nn.Module, layout: ModelLayout, heads: list[str]) -> dict[str, str] | None:
    """For each block-relative name, the shortest suffix that names exactly the chosen modules of every block; None
    when one has none (`output.dense` is also the end of `attention.output.dense`), so a regex must do."""
    chosen = _in_blocks(layout, relative)
    others = [name for name, _ in model.named_modules() if name and _outside(heads)(name)]
    suffixes = {}
    for rel in relative:
        parts = rel.split(".")
        candidates = (".".join(parts[-k:]) for k in range(1, len(parts) + 1))
        suffix = next((s for s in candidates if all(n in chosen for n in others if _matches(s, n))), None)
        if suffix is None:
            return None
        suffixes[rel] = suffix
    return suffixes


def check_targets(targets, model: nn.Module, layout: ModelLayout, heads: list[str], field_name: str | None = None):
    """Every name (or the regex) must match a module outside the head, else the error lists the blocks' linears."""
    field_name = field_name or "target_modules"
    names = [name for name, _ in model.named_modules() if name and _outside(heads)(name)]
    candidates = ", ".join(block_linears(model, layout)) or "(none)"
    advice = (
        f"the linear layers in each block are: {candidates}. Give names or dotted suffixes of these, or all-linear."
    )
    if isinstance(targets, str):
        if targets == "all-linear":
            return
        try:
            found = any(re.fullmatch(targets, name) for name in names)
        except re.error as err:
            raise ConfigError(f"{field_name} {targets!r} is not a valid regex ({err}).") from None
        if not found:
            raise ConfigError(f"{field_name} regex {targets!r} matches no module of the model; {advice}")
        return
    for target in targets:
        if not any(_matches(target, name) for name in names):
            raise ConfigError(f"{field_name}: {target!r} matches no module of the model outside its head; {advice}")


@dataclass(frozen=True)
class AdapterPlan:
    """A PEFT config checked against the model's structure, and where its choices came from."""

    method: str
    peft_config: object  # a peft PeftConfig; wrap() copies it, since PEFT edits the one it is given
    head_modules: tuple[str, ...]
    targets_from: str


def _resolve_targets(method: str, args: AdapterArguments, overrides: dict, model, layout, heads):
    """(target_modules, feed-forward modules for IA3, where the targets came from), checked against the model."""
    from peft.utils import constants

    given = overrides.get("target_modules", args.target_modules)
    if given is not None:
        source = "peft_config" if "target_modules" in overrides else "target_modules"
        targets = "all-linear" if given in ("all-linear", ["all-linear"]) else given
        check_targets(targets, model, layout, heads, "peft_config.target_modules" if source == "peft_config" else None)
        # IA3 needs its feed-forward modules among its targets: the given names that reach a down-projection.
        down = _in_blocks(layout, _block_roles(model, layout)[2])
        feedforward = [t for t in targets if any(_matches(t, n) for n in down)] if isinstance(targets, list) else []
        return targets, feedforward, source
    model_type = getattr(model.config, "model_type", None)
    table = getattr(constants, f"TRANSFORMERS_MODELS_TO_{method.upper().replace('_', '')}_TARGET_MODULES_MAPPING", {})
    if model_type in table:
        targets = list(table[model_type])
        feedforward = list(constants.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type, []))
        source = f"PEFT's table for {model_type}"
    else:
        relative, ff_relative = _derived_targets(method, model, layout)
        suffixes = _compact(relative, model, layout, heads)
        if suffixes is None:
            targets, feedforward = _regex(layout, relative), _regex(layout, ff_relative) if ff_relative else []
        else:
            targets = list(dict.fromkeys(suffixes[r] for r in relative))
            feedforward = list(dict.fromkeys(suffixes[r] for r in ff_relative))
        source = "layer discovery"
    check_targets(targets, model, layout, heads)
    return targets, feedforward, source


def plan_adapter(args: AdapterArguments, model: nn.Module) -> AdapterPlan:
    """Build the PEFT config for `model` (best built on the meta device, see `models.meta_classifier`) and check it
    by a dry run of PEFT on a copy: no weights are read. Raises ConfigError on any bad choice."""
    from peft import TaskType, get_peft_model
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils import PeftType

    method = check_method(args.peft_method)
    check_supported(method)
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType(method.upper())]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    overrides = dict(args.peft_config or {})
    for name in overrides:
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Its fields are: {', '.join(sorted(fields))}."
            raise ConfigError(f"peft_config: {config_cls.__name__} has no field {name!r}.{hint}")
    overrides = read_declared_types(config_cls, overrides)
    for name in ("task_type", "total_step"):
        if name in overrides:
            raise ConfigError(
                f"peft_config.{name} is set by hf-transfer (sequence classification; AdaLoRA's total_step is the "
                "run's number of optimizer steps); drop it."
            )
    if "modules_to_save" not in fields:
        raise ConfigError(
            f"peft_method {method} cannot train and save a classification head (its config has no modules_to_save); "
            "use lora, ia3, adalora or another method that has it."
        )
    layout = discover_layers(model)
    heads = head_modules(model, layout)
    kwargs: dict = {}
    # OFT's r and oft_block_size exclude each other: its block size decides, unless lora_r is given
    if "r" in fields and (method != "oft" or "lora_r" in (getattr(args, "chosen_fields", None) or ())):
        kwargs["r"] = args.lora_r
    if method == "adalora":
        # AdaLoRA prunes from init_r down to target_r (PEFT's defaults are 12 and 8); the callback below sets
        # total_step from the trainer once the number of steps is known.
        tinit, tfinal = overrides.get("tinit", 0), overrides.get("tfinal", 0)
        kwargs.update(target_r=args.lora_r, init_r=math.ceil(1.5 * args.lora_r), total_step=tinit + tfinal + 1)
    alpha = next((name for name in ("lora_alpha", "alpha") if name in fields), None)
    if alpha:
        kwargs[alpha] = args.lora_alpha
    if "lora_dropout" in fields:
        kwargs["lora_dropout"] = args.lora_dropout
    targets_from = "none (the method has no target modules)"
    if "target_modules" in fields:
        targets, feedforward, targets_from = _resolve_targets(method, args, overrides, model, layout, heads)
        kwargs["target_modules"] = targets
        if "feedforward_modules" in fields and "feedforward_modules" not in overrides:
            kwargs["feedforward_modules"] = feedforward
    kwargs.update(overrides)
    kwargs["modules_to_save"] = heads + [m for m in overrides.get("modules_to_save") or [] if m not in heads]
    kwargs["task_type"] = TaskType.SEQ_CLS
    check_method_values(method, kwargs)
    if "num_virtual_tokens" in fields and kwargs.get("num_virtual_tokens", config_cls().num_virtual_tokens) is None:
        raise ConfigError(
            f"peft_method {method} needs the number of virtual tokens it learns: set peft_config "
            "{num_virtual_tokens: N}, e.g. 20."
        )
    try:
        peft_config = config_cls(**kwargs)
        # PEFT knows what this check cannot: supported layer types, IA3's feedforward ⊆ targets, rank schedules.
        get_peft_model(copy.deepcopy(model), copy.deepcopy(peft_config))
    except (TypeError, ValueError, KeyError, RuntimeError, NotImplementedError) as err:
        if not meta_only_failure(err):
            raise ConfigError(
                f"peft_method {method}: PEFT rejects the configuration ({one_line(err)}); check the fields given in "
                f"peft_config against {config_cls.__name__}."
            ) from None
        peft_config = config_cls(**kwargs)  # the dry run needs real weights: the run builds it on the loaded ones
    if args.merge_adapter and peft_config.is_prompt_learning:
        raise ConfigError(
            f"merge_adapter: {method} adds virtual tokens, which cannot be merged into the base weights; "
            "drop merge_adapter or use a method such as lora or ia3."
        )
    if peft_config.peft_type == "PREFIX_TUNING" and not takes_past_key_values(model):
        raise ConfigError(
            f"peft_method prefix_tuning: {type(model).__name__} takes no past_key_values, through which prefix "
            "tuning feeds its prefixes; use prompt_tuning (with peft_config {num_virtual_tokens: N}) or lora."
        )
    return AdapterPlan(method, peft_config, tuple(kwargs["modules_to_save"]), targets_from)


def check_adapter_args(adapter_args: AdapterArguments, training_args) -> None:
    """The adapter checks that need no data and no model: the method exists, no freeze option is set with it; and
    a warning for adapter fields set without an adapter."""
    if adapter_args.enabled:
        check_method(adapter_args.peft_method)
        check_freeze_conflicts(adapter_args.peft_method, training_args)
        check_resumable(adapter_args.peft_method, training_args)
        if unused := adapter_args.unused_fields():  # `--peft_method ia3 --lora_r 16`: IA3 has no rank
            logger.warning(
                "%s set but ignored: peft_method %s has no such setting; drop %s, or set the method's own fields in "
                "peft_config.",
                ", ".join(unused),
                adapter_args.peft_method,
                "them" if len(unused) > 1 else "it",
            )
    elif ignored := adapter_args.ignored_fields():
        logger.warning(
            "%s set but ignored: peft_method is none, so the whole model trains without an adapter; set "
            "--peft_method lora to train a LoRA adapter with %s.",
            ", ".join(ignored),
            "them" if len(ignored) > 1 else "it",
        )


# The learning rate of a LoRA run that does not set one: TrainingArguments' 5e-5 suits a full fine-tune, and a few
# freshly initialised adapter weights barely move at it (the README's Adapters section has the sweep behind this).
LORA_LEARNING_RATE = 2e-3


def takes_lora_learning_rate(adapter_args: AdapterArguments, training_args) -> bool:
    """Whether the run trains at LORA_LEARNING_RATE: a LoRA or AdaLoRA run given no learning_rate (config or flag).
    Arguments built in code (no `given_fields`) keep theirs."""
    given = getattr(training_args, "given_fields", None)
    return adapter_args.peft_method in ("lora", "adalora") and given is not None and "learning_rate" not in given


def apply_adapter_learning_rate(adapter_args: AdapterArguments, training_args) -> float | None:
    """LoRA's own learning rate when the user gave none, said in the log; returns it, or None when nothing changed."""
    method = adapter_args.peft_method
    if takes_lora_learning_rate(adapter_args, training_args):
        training_args.learning_rate = LORA_LEARNING_RATE
        logger.warning("learning_rate %g: %s's default, as none was set (TrainingArguments' 5e-5 is a full "
                       "fine-tune's)", LORA_LEARNING_RATE, method)  # fmt: skip
        return LORA_LEARNING_RATE
    given = getattr(training_args, "given_fields", None) or ()
    if method in ("lora", "adalora") and "learning_rate" in given and training_args.learning_rate < 1e-4:
        logger.warning(  # a full fine-tune's config with --peft_method lora added: kept, and said
            "learning_rate %g is a full fine-tune's rate, at which %s's adapter weights barely move; its usual "
            "rates are 1e-4 to 2e-3 (unset, it is %g).", training_args.learning_rate, method, LORA_LEARNING_RATE,
        )  # fmt: skip
    return None


def plan_adapter_on_meta(adapter_args: AdapterArguments, config):
    """The PEFT config, checked on a meta-device model: target modules, head, PEFT's own checks. No weights read."""
    if not adapter_args.enabled:
        return None

    return plan_adapter(adapter_args, meta_classifier(config))
