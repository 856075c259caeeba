"""`hf-transfer merge`: WiSE-FT weight interpolation between a pretrained model and a classifier fine-tuned from it (or
a PEFT adapter trained on it), at one α or at the α of a sweep that scores best on validation data, with any number of
extra (shifted) sets scored at every α.

Order of work: every check that needs no weights (arguments, configs, the parameter plan on the meta device, the
evaluation files and their labels, the tokenizer), then the weights, then the sweep, and only then `output_dir`.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import __version__
from .adapters import ADAPTER_CONFIG, adapter_labels, read_json_file, with_labels
from .config import ConfigError, MergeArguments
from .merging import (
    SELECTION_RULE,
    InterpolationPlan,
    choose_alpha,
    interpolate_state_dicts,
    mix,
    plan_interpolation,
    specs,
)
from .models import load_classifier, load_config, load_tokenizer, meta_classifier

logger = logging.getLogger(__name__)

SWEEP_JSON, SWEEP_PNG = "merge_sweep.json", "merge_sweep.png"
EVAL_JSON, EVAL_MD = "merge_eval.json", "merge_eval.md"


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


# --- checks that need no weights ------------------------------------------------------------------------------------


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
        labels, problem_type = adapter_labels(folder, "merge")
        return with_labels(pretrained_config, labels, problem_type), adapter
    config = load_config(args.finetuned)
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ConfigError(
            f"finetuned {args.finetuned!r} is not a sequence classifier (architectures {architectures}); give a "
            "model fine-tuned for text classification, or a PEFT adapter folder."
        )
    return config, None


def _label_names(config) -> list[str]:
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def _body_prefix(model) -> str:
    """`bert.` for BertForSequenceClassification: where the base model sits in the classifier's state dict."""
    body = model.base_model
    name = next((n for n, m in model.named_modules() if m is body), "")
    return f"{name}." if name else ""


def _head_names(model, prefix: str) -> set[str]:
    """Tensors the pretrained checkpoint may lack: everything outside the base model, and the layout's head inside it
    (a pooler, a final norm)."""
    from .layers import discover_layers

    names = {k for k in model.state_dict() if not k.startswith(prefix)}
    try:
        names |= set(discover_layers(model).head)
    except ConfigError:  # no transformer blocks found: only what lies outside the base model is head
        pass
    return names


def _preflight(args: MergeArguments) -> _Preflight:
    from .eval_sets import prepare_eval_sets

    pretrained_config = load_config(args.pretrained)
    config, adapter = _finetuned(args, pretrained_config)
    if pretrained_config.model_type != config.model_type:
        raise ConfigError(
            f"architectures differ: pretrained {args.pretrained!r} is a {pretrained_config.model_type!r} model and "
            f"finetuned {args.finetuned!r} a {config.model_type!r} one; interpolate a fine-tuned model with the model "
            "it was fine-tuned from."
        )
    label_names = _label_names(config)
    pretrained_config = with_labels(pretrained_config, label_names, config.problem_type)
    # The same classifier class built from both configs, on the meta device: any difference in depth, width or
    # vocabulary shows up as a parameter whose shape or presence differs.
    finetuned_meta = meta_classifier(config)
    prefix = _body_prefix(finetuned_meta)
    head_names = _head_names(finetuned_meta, prefix)
    body = {k: v for k, v in specs(meta_classifier(pretrained_config).state_dict()).items() if k.startswith(prefix)}
    plan = plan_interpolation(body, specs(finetuned_meta.state_dict()), head_names, *_names(args))
    if args.head_init:
        _check_head_init(args, label_names, finetuned_meta, plan)
    sets = prepare_eval_sets(args, label_names)
    tokenizer_source = (
        args.finetuned if (Path(args.finetuned) / "tokenizer_config.json").is_file() else args.pretrained
    )
    tokenizer = load_tokenizer(tokenizer_source)
    return _Preflight(
        config, pretrained_config, label_names, adapter, prefix, head_names, plan, sets, tokenizer, tokenizer_source
    )


def _names(args: MergeArguments) -> tuple[str, str]:
    return f"pretrained {args.pretrained!r}", f"finetuned {args.finetuned!r}"


def _check_head_init(args: MergeArguments, label_names: list[str], finetuned_meta, plan: InterpolationPlan) -> None:
    config = load_config(args.head_init)
    if _label_names(config) != label_names:
        raise ConfigError(
            f"head_init {args.head_init!r} has labels {_label_names(config)} but the fine-tuned model has "
            f"{label_names} (in this order); give a head trained for the same labels."
        )
    if not plan.head:
        raise ConfigError(
            f"head_init {args.head_init!r} given, but every fine-tuned tensor is in the pretrained model."
        )
    head_specs = specs(meta_classifier(config).state_dict())
    wanted = specs(finetuned_meta.state_dict())
    for name in plan.head:
        if name not in head_specs or head_specs[name].shape != wanted[name].shape:
            found = head_specs[name].shape if name in head_specs else "missing"
            raise ConfigError(
                f"head_init {args.head_init!r} does not fit the fine-tuned head: parameter {name!r} is {found} there "
                f"but {wanted[name].shape} in the fine-tuned model."
            )


# --- the weights ----------------------------------------------------------------------------------------------------


def _pretrained_body(args: MergeArguments, pre: _Preflight) -> dict[str, torch.Tensor]:
    """The pretrained checkpoint's base-model tensors in the classifier's key space: only tensors it really holds
    (a pooler or a head that a bare checkpoint lacks would be freshly initialised: those are left out)."""
    from transformers import AutoModelForSequenceClassification

    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            args.pretrained,
            config=pre.pretrained_config,
            dtype=torch.float32,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # a pretrained classifier with another label count: its head is not used
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot load the weights of pretrained {args.pretrained!r}: {_one_line(err)}") from None
    missing = set(info["missing_keys"]) | {k for k, *_ in info.get("mismatched_keys") or []}
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.startswith(pre.body_prefix) and k not in missing
    }


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


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
        self.head_init = self._head_init(args, pre) if args.head_init else None
        self.method = "weight space"
        self.lora = None
        self.adapter_head: list[str] = []
        if pre.adapter is not None:
            self._load_adapter(args, pre)
        else:
            self.model = load_classifier(args.finetuned, pre.config)
            self.finetuned = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _head_init(self, args, pre) -> dict[str, torch.Tensor]:
        model = load_classifier(args.head_init, load_config(args.head_init))
        state = model.state_dict()
        return {k: state[k].detach().clone() for k in self.plan.head}

    def _load_adapter(self, args: MergeArguments, pre: _Preflight) -> None:
        from .adapters import load_adapter_classifier, merge_into_base

        base = load_classifier(args.pretrained, pre.config)
        try:
            peft_model = load_adapter_classifier(args.finetuned, base)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise ConfigError(
                f"cannot load adapter {args.finetuned!r} onto pretrained {args.pretrained!r}: {_one_line(err)}"
            ) from None
        config = peft_model.peft_config[peft_model.active_adapter]
        self.adapter_head = list(getattr(config, "modules_to_save", None) or [])
        peft_type = str(getattr(config, "peft_type", "")).split(".")[-1].lower()
        if peft_type == "lora" and not getattr(config, "use_dora", False):
            # LoRA's update is linear in its scaling: θ(α) = W + α·s·BA, so α scales the adapter inside PEFT.
            self.lora = peft_model
            self.method = "LoRA scaling (PEFT set_scale(α), then merge_and_unload)"
        self.model = merge_into_base(copy.deepcopy(peft_model))
        self.finetuned = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _lora_state(self, alpha: float) -> dict[str, torch.Tensor]:
        from peft.tuners.lora import LoraLayer

        from .adapters import merge_into_base

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


# --- the sweep and the outputs --------------------------------------------------------------------------------------


def _sweep(args: MergeArguments, pre: _Preflight, interpolator: Interpolator) -> dict[float, dict[str, dict]]:
    from .eval_sets import score_set

    results = {}
    bar = tqdm(args.alpha_grid, desc="α sweep", unit="α")
    for alpha in bar:
        model = interpolator.load(alpha)
        results[alpha] = {
            data.name: score_set(model, pre.tokenizer, data, pre.label_names, args, progress=False)
            for data in pre.sets
        }
        bar.set_postfix({args.validation_name: f"{results[alpha][args.validation_name]['accuracy']:.4f}"})
    return results


def sweep_rows(results: dict[float, dict[str, dict]], extra: list[str]) -> list[dict]:
    rows = []
    for alpha, reports in results.items():
        row = {
            "alpha": alpha,
            **{name: {k: r[k] for k in ("accuracy", "f1_macro", "samples")} for name, r in reports.items()},
        }
        if extra:
            row["mean_extra_accuracy"] = sum(reports[n]["accuracy"] for n in extra) / len(extra)
        rows.append(row)
    return rows


def sweep_markdown(rows: list[dict], names: list[str], extra: list[str], chosen: float | None) -> str:
    columns = [*names] + (["mean of extra sets"] if extra else [])
    lines = ["| α | " + " | ".join(columns) + " |", "|---:|" + "---:|" * len(columns)]
    for row in rows:
        mark = " (chosen)" if row["alpha"] == chosen else ""
        cells = [f"{row[n]['accuracy']:.4f}" for n in names]
        cells += [f"{row['mean_extra_accuracy']:.4f}"] if extra else []
        lines.append(f"| {row['alpha']:g}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_merge(args: MergeArguments) -> dict:
    pre = _preflight(args)
    interpolator = Interpolator(args, pre)
    results = _sweep(args, pre, interpolator) if pre.sets else {}
    names = [data.name for data in pre.sets]
    extra = names[1:]
    if results and len(args.alpha_grid) > 1:
        scores = {alpha: reports[args.validation_name][args.selection_metric] for alpha, reports in results.items()}
        chosen, chosen_by = choose_alpha(scores), SELECTION_RULE.format(metric=args.selection_metric)
    else:
        chosen, chosen_by = args.alpha_grid[0], "given (--alpha)"
    rows = sweep_rows(results, extra)
    table = sweep_markdown(rows, names, extra, chosen) if rows else ""
    model = interpolator.load(chosen)
    out = _write_outputs(args, pre, interpolator, model, results, rows, table, chosen, chosen_by)
    summary: dict[str, Any] = {"alpha": chosen, "alphas_evaluated": len(results), "method": interpolator.method}
    for name, report in (results.get(chosen) or {}).items():
        summary[f"{name}_accuracy"] = report["accuracy"]
        summary[f"{name}_f1_macro"] = report["f1_macro"]
    summary["output_dir"] = str(out)
    if table:
        summary["table"] = table
    return summary


def _base_model(args: MergeArguments) -> str:
    """The pretrained model's Hub id when known: given, or recorded by the fine-tuning run that started from it."""
    from .card_data import CARD_DATA_FILE, is_hub_id

    if args.base_model_hub_id or is_hub_id(args.pretrained):
        return args.base_model_hub_id or args.pretrained
    card = Path(args.finetuned) / CARD_DATA_FILE
    recorded = json.loads(card.read_text()).get("base_model") if card.is_file() else None
    return recorded if is_hub_id(recorded) else args.pretrained


def _write_outputs(args, pre: _Preflight, interpolator, model, results, rows, table, chosen, chosen_by) -> Path:
    from .card_data import merge_card_data
    from .cards import write_model_card
    from .eval_sets import reports_markdown, scalars, write_confusion_matrices, write_json
    from .evaluation import plot_alpha_sweep
    from .workflows import resolved_config, write_resolved_config

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    pre.tokenizer.save_pretrained(out)
    reports = results.get(chosen) or {}
    names = [data.name for data in pre.sets]
    merge = {
        "alpha": chosen,
        "chosen_by": chosen_by,
        "selection_metric": args.selection_metric if len(results) > 1 else None,
        "alphas": args.alpha_grid,
        "pretrained": args.pretrained,
        "finetuned": args.finetuned,
        "finetuned_kind": "adapter" if pre.adapter is not None else "model",
        "head_init": args.head_init,
        "method": interpolator.method,
        "head": "interpolated with head_init" if args.head_init else "the fine-tuned head at every α",
        **interpolator.plan.as_record(),
        "validation_set": args.validation_name if names else None,
        "extra_sets": names[1:],
        "sweep": rows,
    }
    if rows:
        sweep = {"rule": chosen_by, "chosen_alpha": chosen, "validation_set": args.validation_name, "rows": rows}
        write_json(out / SWEEP_JSON, {**sweep, "files": {d.name: d.path for d in pre.sets}})
        if len(rows) > 1:
            plot_alpha_sweep(rows, names, args.validation_name, chosen, out / SWEEP_PNG)
    if reports:
        write_json(out / EVAL_JSON, reports)
        (out / EVAL_MD).write_text(reports_markdown(reports, pre.label_names))
        titles = {d.name: f"{d.name}: {Path(d.path).name} (α={chosen:g})" for d in pre.sets}
        write_confusion_matrices(reports, pre.label_names, out / EVAL_JSON, args.validation_name, titles)
        main = scalars(reports[args.validation_name])
        write_json(out / "eval_results.json", {f"eval_{k}": v for k, v in main.items()})
    record = {
        "hf_transfer_version": __version__,
        "task": "merge",
        "base_model": _base_model(args),
        "label_names": pre.label_names,
        "problem_type": pre.config.problem_type,
        "merge": merge,
        "eval_sets": reports,
    }
    write_json(out / "hf_transfer_run.json", record)
    write_resolved_config(out / "hf_transfer_config.yaml", args)
    card_data = merge_card_data(record, resolved_config(args), out, pre.sets)
    write_model_card(out, card_data)
    return out
