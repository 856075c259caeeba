"""The weights of `hf-transfer merge`: the checks that need no weights (configs, the parameter plan on the meta
device, the evaluation sets, the tokenizer), then `Interpolator`, which gives θ(α) for any α, in weight space or,
for a LoRA adapter, through PEFT's scaling."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hf_transfer.adapters.adapter_fit import check_adapter_fits
from hf_transfer.adapters.inference import (
    PAIR_COLUMN,
    check_given_pair,
    default_trained_columns,
    resolve_max_seq_length,
    trained_pair_column,
)
from hf_transfer.adapters.peft_model import (
    adapter_labels,
    check_mergeable,
    load_adapter_classifier,
    merge_into_base,
    with_labels,
)
from hf_transfer.core.eval_sets import prepare_eval_sets
from hf_transfer.core.folders import (
    ADAPTER_CONFIG,
    RUN_RECORD_FILE,
    embedding_model_hint,
    is_onnx_folder,
    read_json_file,
)
from hf_transfer.core.inference import check_room_for_text, check_vocabulary, max_length_for_config
from hf_transfer.core.layers import discover_layers
from hf_transfer.core.load_report import head_restored_later
from hf_transfer.core.models import (
    align_pad_token,
    check_not_regression,
    is_sequence_classifier,
    load_classifier,
    load_config,
    load_tokenizer,
    meta_classifier,
    onnx_export_error,
)
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.errors import ConfigError, one_line
from hf_transfer.merge.arguments import MergeArguments
from hf_transfer.merge.head import HeadMisfit, HeadStart, check_head_start
from hf_transfer.merge.head import label_names as _label_names
from hf_transfer.merge.interpolation import InterpolationPlan, interpolate_state_dicts, mix, plan_interpolation, specs


@dataclass
class _Preflight:
    """What the checks found, before any weights were read."""

    config: Any  # the fine-tuned classifier's config, with its labels
    pretrained_config: Any  # the pretrained model's config with the fine-tuned labels: the same classifier class
    label_names: list[str]
    adapter: dict | None
    body_prefix: str
    head_names: set[str]
    plan: InterpolationPlan
    sets: list
    tokenizer: Any
    tokenizer_source: str
    head_start: HeadStart | None = None  # how head_init's head fits the fine-tuned one
    unused_head: str | None = None  # why a pretrained classifier's head is not used, when it is not


def _finetuned(args: MergeArguments, pretrained_config):
    """The fine-tuned classifier's config and, for an adapter folder, its adapter_config.json."""
    folder = Path(args.finetuned)
    if not folder.is_dir():
        raise ConfigError(
            f"finetuned {args.finetuned!r} is not a folder; give the output_dir of a fine-tuning run (a model or a "
            "PEFT adapter)."
        )
    if (folder / ADAPTER_CONFIG).is_file():
        adapter = read_json_file(folder / ADAPTER_CONFIG, "adapter config")
        check_mergeable(folder, "merge")
        labels, problem_type = adapter_labels(folder, "merge", pretrained_config, args.pretrained)
        return with_labels(pretrained_config, labels, problem_type), adapter
    config = load_config(args.finetuned, option="finetuned")
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        hint = embedding_model_hint(folder)
        advice = (
            f".{hint}" if hint else ("; give a model fine-tuned for text classification, or a PEFT adapter folder.")
        )
        raise ConfigError(
            f"finetuned {args.finetuned!r} is not a sequence classifier (architectures {architectures}){advice}"
        )
    check_not_regression(config, args.finetuned, "merge", role="finetuned ")
    return config, None


def _body_prefix(model) -> str:
    """`bert.` for BertForSequenceClassification: where the base model sits in the classifier's state dict."""
    body = model.base_model
    name = next((n for n, m in model.named_modules() if m is body), "")
    return f"{name}." if name else ""


def _head_names(model, prefix: str) -> set[str]:
    """Tensors the pretrained checkpoint may lack: everything outside the base model, and the layout's head inside it
    (a pooler, a final norm)."""

    names = {k for k in model.state_dict() if not k.startswith(prefix)}
    try:
        names |= set(discover_layers(model).head)
    except ConfigError:  # no transformer blocks found: only what lies outside the base model is head
        pass
    return names


def _check_not_few_shot_against_its_base(args: MergeArguments, pretrained_config, config) -> None:
    """A few-shot route model carries one encoder block more than the base it was tuned from (the mean-pooling block
    that feeds its head): it has no weight-for-weight partner there, and the generic shape error would say to use the
    model it was fine-tuned from, which the user did."""
    record = Path(args.finetuned) / RUN_RECORD_FILE
    head = ((read_json_file(record, "the run record") if record.is_file() else {}).get("few_shot") or {}).get("head")
    extra = getattr(config, "num_hidden_layers", None), getattr(pretrained_config, "num_hidden_layers", None)
    if isinstance(head, dict) and "mean_pooling_block" in head and None not in extra and extra[0] == extra[1] + 1:
        raise ConfigError(
            f"finetuned {args.finetuned!r} comes from the few-shot route, which appended a mean-pooling encoder block "
            f"to its base ({extra[0]} blocks against {extra[1]} in {args.pretrained!r}), so the two cannot be "
            "interpolated weight for weight; merge two models of one architecture (two few-shot models of this "
            "base, or two ordinary fine-tunes)."
        )


def _preflight(args: MergeArguments) -> _Preflight:
    for name in ("pretrained", "finetuned", "head_init"):
        value = getattr(args, name)
        if value and is_onnx_folder(value):
            raise onnx_export_error(value, name)
    pretrained_config = load_config(args.pretrained, revision=args.pretrained_revision, option="pretrained")
    config, adapter = _finetuned(args, pretrained_config)
    if pretrained_config.model_type != config.model_type:
        raise ConfigError(
            f"architectures differ: pretrained {args.pretrained!r} is a {pretrained_config.model_type!r} model and "
            f"finetuned {args.finetuned!r} a {config.model_type!r} one; interpolate a fine-tuned model with the model "
            "it was fine-tuned from."
        )
    _check_not_few_shot_against_its_base(args, pretrained_config, config)
    label_names = _label_names(config)
    pretrained_classifier = pretrained_config if is_sequence_classifier(pretrained_config) else None
    pretrained_config = with_labels(pretrained_config, label_names, config.problem_type)
    # The same classifier class built from both configs, on the meta device: any difference in depth, width or
    # vocabulary shows up as a parameter whose shape or presence differs.
    finetuned_meta = meta_classifier(config)
    if adapter is not None:  # its config is the pretrained one with the adapter's labels: that model, on meta
        check_adapter_fits(args.finetuned, adapter, finetuned_meta, args.pretrained)
    prefix = _body_prefix(finetuned_meta)
    head_names = _head_names(finetuned_meta, prefix)
    body = {k: v for k, v in specs(meta_classifier(pretrained_config).state_dict()).items() if k.startswith(prefix)}
    wanted = specs(finetuned_meta.state_dict())
    plan = plan_interpolation(body, wanted, head_names, *_names(args))
    head_start, unused_head = None, None
    if args.head_init:
        role, head_config = f"head_init {args.head_init!r}", load_config(args.head_init, option="head_init")
        head_start = check_head_start(role, head_config, label_names, config.problem_type, wanted, plan.head)
    elif pretrained_classifier is not None:
        # A classifier with the fine-tuned labels at α = 0, such as the linear probe of an LP-FT run: WiSE-FT blends
        # between two real classifiers, heads included (label rows matched by name when in another order).
        try:
            role = f"pretrained {args.pretrained!r}"
            head_start = check_head_start(
                role, pretrained_classifier, label_names, config.problem_type, wanted, plan.head
            )
            args.head_init = args.pretrained
            args.head_init_revision = args.pretrained_revision  # its head at the revision its labels were read at
        except HeadMisfit as misfit:
            unused_head = misfit.reason
    if config.problem_type == MULTI_LABEL and args.eval_sets():
        raise ConfigError(
            f"finetuned {args.finetuned!r} is a multi-label model, and merge's α sweep scores single-label models "
            "only; merge it with --alpha and no validation_file, then score it with hf-transfer evaluate."
        )
    _pair_column(args)
    args.max_seq_length = resolve_max_seq_length(args.finetuned, args.max_seq_length)  # the trained one by default
    sets = prepare_eval_sets(args, label_names)
    tokenizer_source = (
        args.finetuned if (Path(args.finetuned) / "tokenizer_config.json").is_file() else args.pretrained
    )
    revision = "main" if tokenizer_source == args.finetuned else args.pretrained_revision
    tokenizer = load_tokenizer(tokenizer_source, revision=revision)
    check_vocabulary(config, tokenizer)
    if sets:
        usable = max_length_for_config(config, tokenizer, args.max_seq_length)
        check_room_for_text(tokenizer, usable, any(data.pairs is not None for data in sets))
    return _Preflight(
        config, pretrained_config, label_names, adapter, prefix, head_names, plan, sets, tokenizer, tokenizer_source,
        head_start, unused_head,
    )  # fmt: skip


def _pair_column(args: MergeArguments) -> None:
    """A fine-tuned model that reads text pairs is scored on pairs, as `evaluate` scores it (the sweep scored the
    first texts alone, and picked α on that), and the merged folder records its second text column, so `predict`
    and `evaluate` ask for it there too (they refused it, the merge having recorded none)."""
    default_trained_columns(
        args.finetuned, args, args.validation_file
    )  # the trained pair columns, if the file has them
    trained = trained_pair_column(args.finetuned)
    if args.eval_sets() or args.text_pair_column_name:
        check_given_pair(trained, args.text_pair_column_name, args.finetuned)
    else:  # nothing is scored: the fine-tuned run's own column is the merged model's
        args.text_pair_column_name = trained.get(PAIR_COLUMN)


def _names(args: MergeArguments) -> tuple[str, str]:
    return f"pretrained {args.pretrained!r}", f"finetuned {args.finetuned!r}"


def _pretrained_body(args: MergeArguments, pre: _Preflight) -> dict[str, torch.Tensor]:
    """The pretrained checkpoint's base-model tensors in the classifier's key space: only tensors it really holds
    (a pooler or a head that a bare checkpoint lacks would be freshly initialised: those are left out)."""
    from transformers import AutoModelForSequenceClassification

    try:
        with head_restored_later():  # the fine-tuned head (or head_init's) is the one used: no "newly initialized"
            model, info = AutoModelForSequenceClassification.from_pretrained(
                args.pretrained,
                revision=args.pretrained_revision,
                config=pre.pretrained_config,
                dtype=torch.float32,
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # a pretrained classifier with another label count: its head is unused
            )
    except (OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot load the weights of pretrained {args.pretrained!r}: {one_line(err)}") from None
    missing = set(info["missing_keys"]) | {k for k, *_ in info.get("mismatched_keys") or []}
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.startswith(pre.body_prefix) and k not in missing
    }


def _under(name: str, modules: list[str]) -> bool:
    """Whether tensor `name` lies in a module named in PEFT's `modules_to_save` (a dotted suffix, as PEFT matches)."""
    parts = name.split(".")[:-1]
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(p == m or p.endswith("." + m) for p in prefixes for m in modules)


class Interpolator:
    """θ(α) as a state dict of the fine-tuned classifier, for any α in [0, 1], plus a model to load it into."""

    def __init__(self, args: MergeArguments, pre: _Preflight):
        self.pretrained = _pretrained_body(args, pre)
        # Planned again on the loaded tensors: a pooler the checkpoint lacks is head now, not interpolated.
        finetuned_specs = specs(meta_classifier(pre.config).state_dict())
        self.plan = plan_interpolation(specs(self.pretrained), finetuned_specs, pre.head_names, *_names(args))
        self.method = "weight space"
        self.lora = None
        self.adapter_head: list[str] = []
        if pre.adapter is not None:
            self._load_adapter(args, pre)
        else:
            self.model = align_pad_token(load_classifier(args.finetuned, pre.config), pre.tokenizer)
            self.finetuned = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.head_init = self._head_init(args, pre) if args.head_init else None

    def _head_init(self, args, pre) -> dict[str, torch.Tensor]:
        from transformers import AutoModelForSequenceClassification

        revision = getattr(args, "head_init_revision", "main")
        model, info = AutoModelForSequenceClassification.from_pretrained(
            args.head_init, config=load_config(args.head_init, revision=revision), revision=revision,
            dtype=torch.float32, output_loading_info=True,
        )  # fmt: skip
        fresh = [k for k in self.plan.head if k in set(info["missing_keys"]) and k not in pre.head_start.zero]
        if fresh:  # not in its checkpoint: freshly initialised, not a trained head
            raise ConfigError(f"head_init {args.head_init!r} holds no weights for head tensor {fresh[0]!r}.")
        return pre.head_start.tensors(model.state_dict(), self.finetuned, self.plan.head, pre.label_names)

    def _load_adapter(self, args: MergeArguments, pre: _Preflight) -> None:

        base = load_classifier(
            args.pretrained, pre.config, revision=args.pretrained_revision, head_from_elsewhere=True
        )
        base = align_pad_token(base, pre.tokenizer)
        try:
            peft_model = load_adapter_classifier(args.finetuned, base)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise ConfigError(
                f"cannot load adapter {args.finetuned!r} onto pretrained {args.pretrained!r}: {one_line(err)}"
            ) from None
        config = peft_model.peft_config[peft_model.active_adapter]
        self.adapter_head = list(getattr(config, "modules_to_save", None) or [])
        peft_type = str(getattr(config, "peft_type", "")).split(".")[-1].lower()
        # An adapter that also trained the base's biases (`bias: all` / `lora_only`, `lora_bias`) holds tensors its
        # scaling does not reach (α = 0 kept the trained biases): it mixes in weight space, as DoRA does.
        plain = getattr(config, "bias", "none") == "none" and not getattr(config, "lora_bias", False)
        if peft_type == "lora" and not getattr(config, "use_dora", False) and plain:
            # LoRA's update is linear in its scaling: θ(α) = W + α·s·BA, so α scales the adapter inside PEFT.
            self.lora = peft_model
            self.method = "LoRA scaling (PEFT set_scale(α), then merge_and_unload)"
        self.model = merge_into_base(copy.deepcopy(peft_model))
        self.finetuned = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _lora_state(self, alpha: float) -> dict[str, torch.Tensor]:
        from peft.tuners.lora import LoraLayer

        model = copy.deepcopy(self.lora)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for name in list(module.scaling):
                    module.set_scale(name, alpha)
        return merge_into_base(model).state_dict()

    def state_dict(self, alpha: float) -> dict[str, torch.Tensor]:
        if self.lora is not None:
            # The LoRA targets are already at θ(α); the saved modules (pooler, head) mix in weight space.
            current = self._lora_state(alpha)
            keys = [k for k in self.plan.interpolated if _under(k, self.adapter_head)]
        else:
            current, keys = self.finetuned, self.plan.interpolated
        state = interpolate_state_dicts(self.pretrained, current, alpha, keys=keys)
        if self.head_init is not None:
            for name in self.plan.head:
                state[name] = mix(self.head_init[name], current[name], alpha)
        return state

    def load(self, alpha: float):
        self.model.load_state_dict(self.state_dict(alpha), strict=True)
        return self.model.eval()
