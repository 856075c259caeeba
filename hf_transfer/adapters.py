"""PEFT adapters as light task heads: the method and its target modules, the head always trained and saved, an adapter
folder that names its base by Hub id, and the merged export.

`plan_adapter` works on a model built on the meta device, so an unknown method, a target that matches nothing or a bad
PEFT field stops the run before any weights are loaded. The head is not hard-coded: it is the layout's head (see
`layers.py`), collapsed to whole modules: `classifier` for BERT-likes, `pre_classifier` too for DistilBERT, `score`
and the final norm for decoders, the pooler where there is one. All of it goes into `modules_to_save`, so it trains and
is saved with the adapter; PEFT on its own adds only modules named `classifier` or `score`, and a head it misses is
re-initialised at random on reload.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import logging
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from transformers import TrainerCallback

from hf_transfer.config import AdapterArguments, ConfigError
from hf_transfer.layers import ModelLayout, discover_layers

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = ("adapter_model.safetensors", ADAPTER_CONFIG)
MERGED_DIR = "merged"
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
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_HF_CACHE = re.compile(r"/models--([\w.-]+?)--([\w.-]+)/snapshots/")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


# --- checks that need no model --------------------------------------------------------------------------------------


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


# --- the model's head and candidate target modules ------------------------------------------------------------------


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
    feed-forward down-projection.
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


# --- the plan: a checked PEFT config --------------------------------------------------------------------------------


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
    table = getattr(constants, f"TRANSFORMERS_MODELS_TO_{method.upper()}_TARGET_MODULES_MAPPING", {})
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
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType(method.upper())]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    overrides = dict(args.peft_config or {})
    for name in overrides:
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Its fields are: {', '.join(sorted(fields))}."
            raise ConfigError(f"peft_config: {config_cls.__name__} has no field {name!r}.{hint}")
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
    if "r" in fields:
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
    try:
        peft_config = config_cls(**kwargs)
        # PEFT knows what this check cannot: supported layer types, IA3's feedforward ⊆ targets, rank schedules.
        get_peft_model(copy.deepcopy(model), copy.deepcopy(peft_config))
    except (TypeError, ValueError, KeyError, RuntimeError, NotImplementedError) as err:
        raise ConfigError(
            f"peft_method {method}: PEFT rejects the configuration ({_one_line(err)}); check the fields given in "
            f"peft_config against {config_cls.__name__}."
        ) from None
    if args.merge_adapter and peft_config.is_prompt_learning:
        raise ConfigError(
            f"merge_adapter: {method} adds virtual tokens, which cannot be merged into the base weights; "
            "drop merge_adapter or use a method such as lora or ia3."
        )
    return AdapterPlan(method, peft_config, tuple(kwargs["modules_to_save"]), targets_from)


# --- training -------------------------------------------------------------------------------------------------------


def wrap(model: nn.Module, plan: AdapterPlan):
    """`model` (weights loaded) with the planned adapter: only the adapter and the head train."""
    from peft import get_peft_model

    return get_peft_model(model, copy.deepcopy(plan.peft_config))


def is_peft_model(model) -> bool:
    peft = sys.modules.get("peft")  # a model cannot be a PeftModel unless peft is imported
    return peft is not None and isinstance(model, peft.PeftModel)


class AdaLoraCallback(TrainerCallback):
    """AdaLoRA re-allocates ranks after every optimizer step, on a schedule that needs the total number of steps.

    AdaLoRA's orthogonality regulariser is not added: it rides on `outputs.loss`, which our trainers compute
    themselves.
    """

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        config = model.peft_config[model.active_adapter]
        if state.max_steps <= config.tinit + config.tfinal:
            raise ConfigError(
                f"AdaLoRA: the run has {state.max_steps} optimizer steps, not more than tinit + tfinal = "
                f"{config.tinit + config.tfinal}; lower tinit/tfinal in peft_config or train longer."
            )
        config.total_step = state.max_steps

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)


def adapter_callbacks(model) -> list[TrainerCallback]:
    config = model.peft_config[model.active_adapter]
    return [AdaLoraCallback()] if getattr(config, "peft_type", None) == "ADALORA" else []


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) elements, where total is the base plus the adapter: the frozen original copies that PEFT
    keeps of the saved head modules are not counted twice."""
    trainable = total = 0
    for name, param in model.named_parameters():
        if ".original_module." in f".{name}":
            continue
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


# --- saving, reloading, merging -------------------------------------------------------------------------------------


def base_model_reference(model_name_or_path: str, base_model_hub_id: str | None = None) -> tuple[str, str]:
    """What `adapter_config.json` should call the base, and where that came from: the Hub id when it is known
    (`base_model_hub_id`, a Hub id given as the model, a Hugging Face cache folder, or a config `_name_or_path` that
    looks like `owner/name`), else the absolute local path."""
    if base_model_hub_id:
        return base_model_hub_id, "base_model_hub_id"
    path = Path(model_name_or_path).expanduser()
    if not path.is_dir():
        return model_name_or_path, "model_name_or_path"
    resolved = path.resolve()
    cached = _HF_CACHE.search(resolved.as_posix())
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}", "Hugging Face cache folder"
    try:
        recorded = json.loads((path / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError):
        recorded = None
    if isinstance(recorded, str) and _HUB_ID.fullmatch(recorded) and not Path(recorded).exists():
        # A config's `_name_or_path` is the id the weights were loaded from before they were last saved, which for a
        # derived model is its parent: say so, since a wrong base would reload silently with other weights.
        logger.warning(
            "adapter_config.json will name the base %r, read from %s/config.json (_name_or_path); if the folder holds "
            "a different model, set base_model_hub_id.",
            recorded,
            path,
        )
        return recorded, "config _name_or_path"
    return str(resolved), "local path"


def set_base_model_reference(adapter_dir: str | Path, reference: str) -> None:
    path = Path(adapter_dir) / "adapter_config.json"
    data = json.loads(path.read_text())
    data["base_model_name_or_path"] = reference
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def adapter_size_bytes(adapter_dir: str | Path) -> int:
    """Bytes on disk of the saved adapter: its weights (adapter and head) and its config."""
    paths = [Path(adapter_dir) / name for name in ADAPTER_FILES]
    return sum(path.stat().st_size for path in paths if path.exists())


def read_json_file(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {err}") from None


def with_labels(config, label_names: list[str], problem_type: str | None):
    """A copy of `config` for a classifier with these labels."""
    config = copy.deepcopy(config)
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    config.problem_type = problem_type
    return config


def adapter_labels(folder: Path, needed_for: str) -> tuple[list[str], str | None]:
    """An adapter folder has no config.json: its labels are in the run record (or the card data) hf-transfer wrote."""
    for name in ("hf_transfer_run.json", "hf_transfer_card_data.json"):
        if (folder / name).is_file():
            record = read_json_file(folder / name, "run record")
            if record.get("label_names"):
                return [str(n) for n in record["label_names"]], record.get("problem_type")
    raise ConfigError(
        f"adapter folder {str(folder)!r} records no label names (hf_transfer_run.json); {needed_for} needs them to "
        "rebuild the classifier. Use an adapter trained with hf-transfer train, or its merged model (merge_adapter: "
        "true)."
    )


def adapter_base_config(folder: Path, base: str | None = None):
    """The config of the base an adapter folder goes onto (`base`, else the one its adapter_config.json names), with
    the adapter run's labels; `config._name_or_path` is that base. Raises ConfigError before any weights load."""
    from .models import load_config

    label_names, problem_type = adapter_labels(folder, "evaluate")
    given = base
    base = base or read_json_file(folder / ADAPTER_CONFIG, "adapter config").get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"adapter {str(folder)!r} names no base model; pass --base_model_name_or_path DIR_OR_ID.")
    try:
        config = load_config(base)
    except ConfigError as err:
        if given:
            raise
        raise ConfigError(f"{err} The adapter's base is {base!r}: pass --base_model_name_or_path DIR_OR_ID.") from None
    config = with_labels(config, label_names, problem_type)
    config._name_or_path = base
    return config


def load_adapter_for_inference(folder: Path, config):
    """The adapter in `folder` on a fresh copy of the base `config` describes (see `adapter_base_config`)."""
    from .models import load_classifier

    base = load_classifier(config._name_or_path, config)
    try:
        return load_adapter_classifier(folder, base)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ConfigError(
            f"cannot load adapter {str(folder)!r} onto {config._name_or_path!r}: {_one_line(err)}"
        ) from None


def load_adapter_classifier(adapter_dir: str | Path, base_model):
    """The saved adapter on `base_model`, a freshly loaded `AutoModelForSequenceClassification` with the run's labels
    (its `num_labels` must match the saved head), ready for inference."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(adapter_dir)).eval()


def reload_max_abs_diff(model, adapter_dir: str | Path, base_model, batch: dict) -> float:
    """Largest |logit| difference on `batch` between `model` and its saved adapter reloaded onto `base_model`."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    reloaded = load_adapter_classifier(adapter_dir, base_model).to(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.no_grad():
        before, after = model(**batch).logits, reloaded(**batch).logits
    model.train(was_training)
    return float((before.float() - after.float()).abs().max())


def merge_into_base(model):
    """The adapter merged into the base weights, as a plain transformers model, with the trained copies of the saved
    modules (the head) in place. `model` is unwrapped in place: use it no more as a PEFT model afterwards."""
    from peft.utils import ModulesToSaveWrapper

    # Put the trained copies of the saved modules in place first: PEFT 0.21's IA3 unloading assumes every wrapped
    # module has a `.weight`, and fails on containers such as BERT's pooler or RoBERTa's classification head.
    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.modules_to_save[module.active_adapter])
    return model.merge_and_unload()


def write_merged(model, tokenizer, output_dir: str | Path) -> Path:
    """Merge the adapter into the base weights and save a plain model (with the tokenizer) to `output_dir/merged`.

    `model` is unwrapped in place: use it no more as a PEFT model afterwards."""
    merged = merge_into_base(model)
    path = Path(output_dir) / MERGED_DIR
    merged.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def adapter_record(model, plan: AdapterPlan, adapter_dir: str | Path, reference: tuple[str, str]) -> dict:
    """Plain facts about the trained adapter, for the run record and the card."""
    config = model.peft_config[model.active_adapter]
    targets = getattr(config, "target_modules", None)
    trainable, total = trainable_parameters(model)
    return {
        "method": plan.method,
        "r": getattr(config, "target_r", None) or getattr(config, "r", None),
        "alpha": getattr(config, "lora_alpha", getattr(config, "alpha", None)),
        "dropout": getattr(config, "lora_dropout", None),
        "target_modules": sorted(targets) if isinstance(targets, (set, list, tuple)) else targets,
        "feedforward_modules": _plain(getattr(config, "feedforward_modules", None)),
        "targets_from": plan.targets_from,
        "modules_to_save": list(plan.head_modules),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_percent": round(100 * trainable / total, 4) if total else 0.0,
        "size_on_disk_bytes": adapter_size_bytes(adapter_dir),
        "base_model_name_or_path": reference[0],
        "base_model_reference_from": reference[1],
    }


def _plain(value):
    return sorted(value) if isinstance(value, (set, frozenset, list, tuple)) else value
