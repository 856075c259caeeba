"""PEFT adapters once the weights are loaded: wrapping, AdaLoRA's schedule, saving an adapter folder that names its
base by Hub id, reloading it (and checking the reload), merging it into the base, and its record."""

from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path

from torch import nn
from transformers import TrainerCallback

from hf_transfer.adapters.arguments import AdapterArguments
from hf_transfer.adapters.plan import ADAPTER_FILES, AdapterPlan
from hf_transfer.core.arguments import ModelArguments
from hf_transfer.core.folders import (
    ADAPTER_CONFIG,
    CARD_DATA_FILE,
    MERGED_DIR,
    RUN_RECORD_FILE,
    cache_snapshot,
    plain_adapter_advice,
    read_json_file,
    write_text_atomic,
)
from hf_transfer.core.models import is_sequence_classifier, load_classifier, load_config
from hf_transfer.core.run_records import recorded_config
from hf_transfer.core.runtime import sharded_weights
from hf_transfer.core.tasks import names_labels
from hf_transfer.errors import ConfigError, one_line

logger = logging.getLogger(__name__)


def wrap(model: nn.Module, plan: AdapterPlan):
    """`model` (weights loaded) with the planned adapter: only the adapter and the head train."""
    from peft import get_peft_model

    wrapped = get_peft_model(model, copy.deepcopy(plan.peft_config))
    for config in wrapped.peft_config.values():
        # PEFT's sequence-classification wrapper appends "classifier" and "score" to the planned list, which names
        # the head already: the saved adapter_config.json listed "classifier" twice.
        if config.modules_to_save:
            config.modules_to_save = list(dict.fromkeys(config.modules_to_save))
    return wrapped


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
        # An fp16 step that the GradScaler skipped had inf or NaN gradients: the importance scores built from them
        # would hold NaN for good. The step is left out of them, as the optimizer left it out.
        import torch

        if args.fp16 and not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
            return
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


def base_model_reference(model_name_or_path: str, base_model_hub_id: str | None = None) -> tuple[str, str]:
    """What `adapter_config.json` should call the base, and where that came from: the Hub id when it is known
    (`base_model_hub_id`, a Hub id given as the model, or a Hugging Face cache folder), else the absolute local path.
    A config's `_name_or_path` is not read: it names the weights a model was loaded from before it was last saved,
    for a derived model its parent (all-MiniLM-L6-v2's says nreimers/MiniLM-L6-H384-uncased), and an adapter pushed
    onto that name reloads silently onto other weights of the same shapes."""
    if base_model_hub_id:
        return base_model_hub_id, "base_model_hub_id"
    path = Path(model_name_or_path).expanduser()
    if not path.is_dir():
        return model_name_or_path, "model_name_or_path"
    cached = cache_snapshot(path)
    if cached:
        return cached[0], "Hugging Face cache folder"
    return str(path.resolve()), "local path"


def check_pushable_base(push, adapter_args: AdapterArguments, model_args: ModelArguments) -> None:
    """Before any compute: an adapter run that pushes must be able to name its base by a Hub id, or the pushed
    adapter_config.json would point at a folder on this machine that no one who downloads it has."""
    if push is None or not adapter_args.enabled:
        return
    reference, source = base_model_reference(model_args.model_name_or_path, model_args.base_model_hub_id)
    if source == "local path":
        raise ConfigError(
            f"push_to_hub with a {adapter_args.peft_method} adapter needs the base model's Hub id, since "
            f"adapter_config.json would name the local folder {reference!r}, which no one who downloads the adapter "
            "can load; set base_model_hub_id (e.g. sentence-transformers/all-MiniLM-L6-v2)."
        )


def set_base_model_reference(adapter_dir: str | Path, reference: str, revision: str | None = None) -> None:
    """Name the base in adapter_config.json by `reference`, and its Hub `revision` (PEFT's `revision` field, which
    `AutoPeftModel*` reads) when it is not main: without it every reload took main, another base."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    data = json.loads(path.read_bytes())
    data["base_model_name_or_path"] = reference
    if revision and revision != "main":
        data["revision"] = revision
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def adapter_size_bytes(adapter_dir: str | Path) -> int:
    """Bytes on disk of the saved adapter: its weights (adapter and head) and its config."""
    paths = [Path(adapter_dir) / name for name in ADAPTER_FILES]
    return sum(path.stat().st_size for path in paths if path.exists())


def with_labels(config, label_names: list[str], problem_type: str | None):
    """A copy of `config` for a classifier with these labels."""
    config = copy.deepcopy(config)
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    config.problem_type = problem_type
    return config


def adapter_labels(
    folder: Path, needed_for: str, base_config=None, base: str | None = None
) -> tuple[list[str], str | None]:
    """An adapter folder has no config.json: its labels are in the run record (or the card data) hf-transfer wrote,
    or, for an adapter PEFT saved itself, in its base's config when that base is a classifier with named labels."""
    for name in (RUN_RECORD_FILE, CARD_DATA_FILE):
        if (folder / name).is_file():
            record = read_json_file(folder / name, "run record")
            if record.get("label_names"):
                return [str(n) for n in record["label_names"]], record.get("problem_type")
    if base_config is not None and is_sequence_classifier(base_config):
        names = [str(base_config.id2label[i]) for i in range(base_config.num_labels)]
        if names_labels(names):
            return names, getattr(base_config, "problem_type", None)
    whose = f"nor does its base {base!r}" if base else "and it names no base"
    advice = plain_adapter_advice(folder, base)
    raise ConfigError(
        f"adapter folder {str(folder)!r} records no label names (no {RUN_RECORD_FILE}: saved by PEFT, not "
        f"hf-transfer) {whose}; {needed_for} needs them to rebuild the classifier: {advice}."
    )


def adapter_base_config(folder: Path, base: str | None = None, command: str = "evaluate"):
    """The config of the base an adapter folder goes onto (`base`, else the one its adapter_config.json names), with
    the adapter run's labels; `config._name_or_path` is that base. Raises ConfigError before any weights load."""

    given = base
    saved = read_json_file(folder / ADAPTER_CONFIG, "adapter config")
    base = base or saved.get("base_model_name_or_path")
    if not base:
        adapter_labels(folder, command)  # a PEFT-saved folder without a base: what to do with it
        raise ConfigError(f"adapter {str(folder)!r} names no base model; pass --base_model_name_or_path DIR_OR_ID.")
    revision = _base_revision(folder, base)  # the base's Hub revision, as AutoPeftModel reads it
    try:
        config = load_config(base, revision=revision, option="the adapter's base")
    except ConfigError as err:
        if given:
            raise
        trained_from = str(recorded_config(folder).get("model_name_or_path") or "")
        if trained_from not in ("", base) and Path(trained_from).expanduser().is_dir():
            # Trained offline from a local copy with base_model_hub_id set: the id the adapter names for the Hub is
            # not reachable here, but the folder it was trained from is the very base.
            logger.warning(f"the adapter's base {base!r} cannot be loaded here; loading the adapter onto "
                           f"{trained_from!r}, the folder it was trained from.")  # fmt: skip
            return adapter_base_config(folder, trained_from, command)
        named = "" if "the adapter's base" in str(err) else f" {base!r} is the base the adapter's config names."
        raise ConfigError(f"{err}{named} To load it onto a copy, pass --base_model_name_or_path DIR_OR_ID.") from None
    label_names, problem_type = adapter_labels(folder, command, config, base)
    config = with_labels(config, label_names, problem_type)
    config._name_or_path = base
    return config


def _base_revision(folder: Path, base: str) -> str:
    """The Hub revision adapter_config.json gives its base (PEFT's `revision`), when `base` is that base; else main."""
    saved = read_json_file(folder / ADAPTER_CONFIG, "adapter config")
    return saved.get("revision") or "main" if saved.get("base_model_name_or_path") == base else "main"


def load_adapter_for_inference(folder: Path, config):
    """The adapter in `folder` on a fresh copy of the base `config` describes (see `adapter_base_config`)."""

    revision = _base_revision(folder, config._name_or_path)
    base = load_classifier(config._name_or_path, config, revision=revision, head_from_elsewhere=True)
    try:
        return load_adapter_classifier(folder, base)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ConfigError(
            f"cannot load adapter {str(folder)!r} onto {config._name_or_path!r}: {one_line(err)}"
        ) from None


def load_adapter_classifier(adapter_dir: str | Path, base_model):
    """The saved adapter on `base_model`, a freshly loaded `AutoModelForSequenceClassification` with the run's labels
    (its `num_labels` must match the saved head), ready for inference."""
    import pickle

    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base_model, str(adapter_dir)).eval()
    except pickle.UnpicklingError:  # PEFT reads adapter_model.bin with torch.load(weights_only=True)
        with (Path(adapter_dir) / "adapter_model.bin").open("rb") as file:
            head = file.read(4)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # no pickle: a Git LFS pointer, damage
            raise ValueError("its adapter_model.bin is not a readable torch file (a Git LFS pointer?)") from None
        raise ValueError(
            "its pickle weights (adapter_model.bin) hold more than tensors, and running them could execute arbitrary "
            "code, so they were refused; use a safetensors adapter"
        ) from None


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


def check_mergeable(folder: str | Path, needed_for: str) -> None:
    """A prompt-learning adapter (prompt, prefix or p-tuning) adds virtual tokens to the input and changes no base
    weight, so there is nothing to merge: say so from adapter_config.json, before any weights load."""
    from peft.config import PromptLearningConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    peft_type = read_json_file(Path(folder) / ADAPTER_CONFIG, "adapter config").get("peft_type")
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type) if isinstance(peft_type, str) else None
    if config_cls is not None and issubclass(config_cls, PromptLearningConfig):
        raise ConfigError(
            f"{str(folder)!r} holds a {peft_type.lower()} adapter, which adds virtual tokens to the input and changes "
            f"no base weight, so it cannot be merged into the base as {needed_for} needs; evaluate and predict take "
            "the adapter folder as it is, or train with lora or ia3 instead."
        )


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


# The fields that shape a method beyond rank and α, shown on the card: AdaLoRA's rank schedule, the virtual tokens of
# prompt learning, OFT's and BOFT's blocks.
METHOD_SETTINGS = ("init_r", "target_r", "num_virtual_tokens", "oft_block_size", "boft_block_size", "boft_block_num")


def adapter_record(
    model, plan: AdapterPlan, adapter_dir: str | Path, reference: tuple[str, str], loraplus_lr_ratio: float = 1.0
) -> dict:
    """Plain facts about the trained adapter, for the run record and the card."""
    config = model.peft_config[model.active_adapter]
    targets = getattr(config, "target_modules", None)
    trainable, total = trainable_parameters(model)
    return {
        "method": plan.method,
        "r": getattr(config, "target_r", None) or getattr(config, "r", None),
        "lora_alpha": getattr(config, "lora_alpha", getattr(config, "alpha", None)),
        "alpha_field": "lora_alpha" if hasattr(config, "lora_alpha") else "alpha",  # LoHa's and LoKr's is `alpha`
        "settings": {k: _plain(getattr(config, k)) for k in METHOD_SETTINGS if getattr(config, k, None) is not None},
        "dropout": getattr(config, "lora_dropout", None),
        "loraplus_lr_ratio": loraplus_lr_ratio if loraplus_lr_ratio != 1.0 else None,
        "target_modules": _adapted(model, targets) if isinstance(targets, (set, list, tuple)) else targets,
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


def _adapted(model, targets) -> list[str]:
    """The target names that reached an adapter layer: PEFT expands all-linear to head layers too (RoBERTa's
    `classifier.dense`, DistilBERT's `pre_classifier`), which, saved whole, get none."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapted = [name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]
    return sorted(t for t in targets if any(name == t or name.endswith("." + t) for name in adapted))


def _plain(value):
    return sorted(value) if isinstance(value, (set, frozenset, list, tuple)) else value


def adapter_finisher(plan, adapter_args: AdapterArguments, model_args: ModelArguments, config, tokenized):
    """The `after_save` step of an adapter run (None without an adapter)."""
    if plan is None:
        return None

    def finish(trainer) -> dict:
        record = _finish_adapter(trainer, plan, adapter_args, model_args, config, tokenized)
        if adapter_args.merge_adapter:
            model = trainer.accelerator.unwrap_model(trainer.model)
            write_merged(model, trainer.processing_class, trainer.args.output_dir)
        return {"adapter": record}

    return finish


def _finish_adapter(trainer, plan, adapter_args, model_args: ModelArguments, config, tokenized) -> dict:
    """After `save_model`: name the base by its Hub id in adapter_config.json, reload the saved adapter onto a fresh
    base and compare logits on a validation batch (the guard against a head lost on reload), describe the adapter."""

    out = trainer.args.output_dir
    # fit_and_report took accelerate's mixed-precision wrapper off once training ended (`score_in_fp32`), so the
    # check compares fp32 logits with the fp32 reload: a bf16 run's rounding gap is no reload error.
    model = trainer.accelerator.unwrap_model(trainer.model)
    reference = base_model_reference(model_args.model_name_or_path, model_args.base_model_hub_id)
    revision = {"model_name_or_path": model_args.model_revision}.get(reference[1])  # the Hub id's, as it was read
    if reference[1] == "Hugging Face cache folder":
        revision = cache_snapshot(model_args.model_name_or_path)[1]  # that snapshot's commit
    set_base_model_reference(out, reference[0], revision)
    record = adapter_record(model, plan, out, reference, adapter_args.loraplus_lr_ratio)
    record["reload_max_abs_logit_diff"] = None
    if sharded_weights():  # the trained model's forward needs every process's shard, and only this one is here
        return record | {"merged_model": None}
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
        head_from_elsewhere=True,  # the saved adapter's head replaces it
    )
    record["reload_max_abs_logit_diff"] = reload_max_abs_diff(model, out, base, batch)
    record["merged_model"] = MERGED_DIR if adapter_args.merge_adapter else None
    return record
