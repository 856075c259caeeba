"""What some PEFT methods need beyond their config class, checked before any weight loads: methods a sequence
classifier cannot train, values their configs accept but that cannot train (zero virtual tokens, AdaLoRA's initial
rank below its target), LN-tuning's targets (the blocks' LayerNorms), and what the meta-device dry run cannot judge."""

from __future__ import annotations

import inspect

from torch import nn

from hf_transfer.errors import ConfigError

# Methods PEFT lists that a sequence classifier cannot train; each had failed with a traceback, in planning or at the
# first training step (after the weights had loaded, leaving an empty output_dir).
NOT_FOR_CLASSIFIERS = {
    "cpt": "it adapts causal language models only",
    "poly": "it routes each row by a task id (task_ids), which classification rows do not carry",
    "multitask_prompt_tuning": "it picks each row's prompt by a task id (task_ids), which classification rows do not "
    "carry",
    "shadow": "its adapted layers do not run inside a sequence classifier (training failed at the first step)",
}


def check_supported(method: str) -> None:
    if method in NOT_FOR_CLASSIFIERS:
        raise ConfigError(
            f"peft_method {method} cannot train a sequence classifier here: {NOT_FOR_CLASSIFIERS[method]}; use lora, "
            "ia3, loha or another method."
        )


def check_method_values(method: str, kwargs: dict) -> None:
    """Values a method's config takes, but with which it cannot train."""
    tokens = kwargs.get("num_virtual_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        # 0 trained the head alone under the method's name; negative failed inside PEFT's tensors
        raise ConfigError(f"peft_config.num_virtual_tokens must be a whole number >= 1, got {tokens!r}.")
    if method == "adalora" and kwargs.get("init_r", 1) < kwargs.get("target_r", 0):
        # AdaLoRA prunes ranks down from init_r to target_r: below it, the pruning step failed (kthvalue out of range)
        raise ConfigError(
            f"peft_config: AdaLoRA prunes ranks from init_r down to target_r, so init_r ({kwargs['init_r']}) must be "
            f">= target_r ({kwargs['target_r']}; lora_r sets it)."
        )


def check_resumable(method: str, training_args) -> None:
    if method == "adalora" and training_args.resume_from_checkpoint:
        # Its checkpoints hold ranks already pruned, which a fresh AdaLoRA model cannot load (a traceback).
        raise ConfigError(
            "resume_from_checkpoint: an AdaLoRA checkpoint holds ranks already pruned, which PEFT cannot load into a "
            "fresh AdaLoRA model; train again from the start, or use lora or loha, which resume."
        )


def block_norms(model: nn.Module, block_name: str) -> list[str]:
    """Names, relative to a block, of its normalisation layers (LayerNorm, RMSNorm): LN-tuning's targets for models
    PEFT has no table for (it had fallen back to the query and value projections, trained at full rank)."""
    block = model.get_submodule(block_name)
    norms = ("layernorm", "rmsnorm")
    return [name for name, m in block.named_modules() if name and type(m).__name__.lower().endswith(norms)]


def meta_only_failure(err: Exception) -> bool:
    """Whether PEFT's dry run failed for want of real tensors (SHiRA, AdaMSS, FRoD initialise from the weights),
    not over the configuration: the run then goes on, and builds the adapter on the loaded weights."""
    text = str(err).lower()
    return "meta" in text and ("tensor" in text or "register_meta" in text)


def takes_past_key_values(model) -> bool:
    """PEFT's prefix-tuning forward needs the model's forward, or its backbone's (its first child model), to take
    past_key_values; it finds out only at the first training step."""
    from transformers import PreTrainedModel

    backbone = next((m for _, m in model.named_children() if isinstance(m, PreTrainedModel)), None)
    models = [m for m in (model, backbone) if m is not None]
    return any("past_key_values" in inspect.signature(m.forward).parameters for m in models)
