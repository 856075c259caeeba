"""Does a LoRA adapter fit the model it goes onto (`merge`'s `--pretrained`, the base `evaluate`, `predict` and
`export` load it onto, the model a run resumes it on)? Read from the adapter file's header and that classifier built
on the meta device, before any weight loads.

PEFT loads an adapter onto any model whose module names match its `target_modules`: onto a deeper model the extra
blocks get fresh LoRA weights whose product is zero, so the merge is silently the pretrained model there; onto a model
with the same shapes but other weights nothing can tell from the files alone, so a base named differently from the one
the adapter records is said in the log."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from hf_transfer.core.run_records import recorded_config
from hf_transfer.errors import ConfigError

logger = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_PARTS = {".lora_A.weight": "A", ".lora_B.weight": "B", ".lora_embedding_A": "A", ".lora_embedding_B": "B"}


def _lora_modules(path: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """Module name (in the classifier's key space) -> {"A": shape, "B": shape} of the LoRA weights the file holds."""
    from safetensors import safe_open

    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    with safe_open(str(path), "pt") as f:
        for key in f.keys():
            name = key.removeprefix(_PREFIX)
            for suffix, part in _PARTS.items():
                if name.endswith(suffix):
                    modules.setdefault(name.removesuffix(suffix), {})[part] = tuple(f.get_slice(key).get_shape())
    return modules


def _run_record_base(folder: str) -> str | None:
    from hf_transfer.core.folders import RUN_RECORD_FILE

    try:
        base = json.loads((Path(folder) / RUN_RECORD_FILE).read_bytes()).get("base_model")
    except (OSError, ValueError, AttributeError):
        return None
    return base if isinstance(base, str) else None


def check_adapter_fits(
    folder: str, adapter: dict, pretrained_meta, pretrained: str, role: str = "pretrained", use: str = "merged onto"
) -> None:
    """Refuse (one line) a LoRA adapter whose weights name modules `pretrained` lacks, whose shapes differ from its
    layers, or that leaves some of the modules its own `target_modules` pick out in `pretrained` without weights (a
    deeper model than the one it was trained on); log when the adapter records another base by name. `role` names
    `pretrained` in the messages, `use` what is done with the adapter: PEFT loads it anyway, with a warning."""
    import torch
    from transformers.pytorch_utils import Conv1D

    path = Path(folder) / ADAPTER_WEIGHTS
    if str(adapter.get("peft_type", "")).upper() != "LORA" or not path.is_file():
        return  # other methods, and .bin adapters: PEFT's own load error names what does not fit
    saved = _lora_modules(path)
    modules = dict(pretrained_meta.named_modules())
    recorded = adapter.get("base_model_name_or_path")
    advice = f"give the base model the adapter was trained on (adapter_config.json names {recorded!r})"
    for name, shapes in saved.items():
        module = modules.get(name)
        if module is None:
            raise ConfigError(
                f"adapter {folder!r} holds LoRA weights for {name!r}, which {role} {pretrained!r} lacks; {advice}."
            )
        if isinstance(module, torch.nn.Linear):
            want = {"A": module.in_features, "B": module.out_features}
            got = {"A": shapes.get("A", (0, want["A"]))[-1], "B": shapes.get("B", (want["B"], 0))[0]}
            if got != want:
                raise ConfigError(
                    f"adapter {folder!r} was trained on a layer {name!r} of {got['A']} inputs and {got['B']} outputs; "
                    f"in {role} {pretrained!r} it has {want['A']} and {want['B']}; {advice}."
                )
    if not adapter.get("layers_to_transform") and not adapter.get("layers_pattern"):
        from peft import LoraConfig
        from peft.tuners.tuners_utils import check_target_module_exists

        config = LoraConfig.from_pretrained(folder)
        # `all-linear` is saved as the full names of the layers it took, which pick out no layer of an extra block:
        # the same layer in another block (its index aside) is one the adapter's targets take too.
        same_layer = {re.sub(r"\.\d+\.", ".N.", n) for n in saved}
        targeted = [
            n
            for n, m in modules.items()
            if isinstance(m, (torch.nn.Linear, Conv1D, torch.nn.Embedding))
            and (check_target_module_exists(config, n) or re.sub(r"\.\d+\.", ".N.", n) in same_layer)
        ]
        kept = adapter.get("modules_to_save") or []  # trained whole, so no LoRA weights in them
        bare = [n for n in targeted if n not in saved and not any(f".{t}." in f".{n}." for t in kept)]
        if saved and bare:
            raise ConfigError(
                f"adapter {folder!r} holds LoRA weights for {len(saved)} layers, but its target_modules pick out "
                f"{len(targeted)} in {role} {pretrained!r} (none for {bare[0]!r}): a model deeper or otherwise "
                f"unlike the one it was trained on; {advice}."
            )
    # The record keeps the path the run was given; its config, the folder it was trained from (loaded offline in
    # place of the Hub id the adapter names, by `adapter_base_config`).
    names = {recorded, _run_record_base(folder), recorded_config(folder).get("model_name_or_path")} - {None, ""}
    if names and not any(n == pretrained or Path(n).resolve() == Path(pretrained).resolve() for n in names):
        logger.warning(
            "adapter %s records its base as %r and is %s %r, which has the same layers: the result is only "
            "meaningful if that is the same model.",
            folder, recorded, use, pretrained,
        )  # fmt: skip
