"""Freeze plans: which parameters to freeze, ULMFiT gradual unfreezing, layer-wise LR decay.

Everything but `apply_freeze` and `count_parameters` works on parameter names only, so it is testable without a
model, and a plan resolved on a model built on the meta device holds for the loaded one."""

from __future__ import annotations

import functools
import logging
import math
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from hf_transfer.core.layers import ModelLayout
from hf_transfer.errors import ConfigError

_HOOKS_ATTR = "_hf_transfer_freeze_hooks"
logger = logging.getLogger(__name__)


def _examples(layout: ModelLayout) -> str:
    """A few parameter names from the bottom, the middle and the top of the model, for error messages."""
    picks = [layout.embeddings[:1], layout.blocks[0][:2] if layout.blocks else (), layout.head[-2:]]
    return ", ".join(repr(name) for part in picks for name in part)


def _check_blocks_are_layers(layout: ModelLayout, freeze_layers: int | Sequence[int]) -> None:
    """freeze_layers counts layers; a model whose blocks each hold several layers (Funnel) or are shared by several
    layers (ALBERT) cannot freeze the bottom N of them."""
    layers, depth = layout.num_layers, layout.depth
    if layers in (None, depth) or not freeze_layers:  # 0 or [] freezes nothing
        return
    blocks = layout.block_modules[0].rpartition(".")[0].rpartition(".")[2]
    raise ConfigError(
        f"freeze_layers={freeze_layers!r}, but this model runs {layers} layers (num_hidden_layers) on {depth} "
        f"block(s) of weights ({blocks!r}), each holding several layers or shared by several (ALBERT's layer "
        f"groups, Funnel's blocks): freezing a block does not freeze the bottom layers asked for. Freeze blocks by "
        f"name with freeze_patterns: [{blocks}] for all of them or [{blocks}\\.0\\.] for the first (or "
        f"train_head_only), or drop freeze_layers."
    )


def _blocks_to_freeze(layout: ModelLayout, freeze_layers: int | Sequence[int]) -> list[int]:
    _check_blocks_are_layers(layout, freeze_layers)
    depth = layout.depth
    if isinstance(freeze_layers, int) and not isinstance(freeze_layers, bool):
        if not 0 <= freeze_layers <= depth:
            raise ConfigError(
                f"freeze_layers={freeze_layers}, but the model has {depth} blocks; give 0 to {depth} "
                f"({depth} freezes every block), or a list of block indices in [0, {depth - 1}]."
            )
        return list(range(freeze_layers))
    indices = list(freeze_layers)
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < depth:
            raise ConfigError(
                f"freeze_layers contains {index!r}, but the model has {depth} blocks: indices must be in "
                f"[0, {depth - 1}] (0 is the block nearest the embeddings)."
            )
    return indices


def resolve_frozen_parameters(
    layout: ModelLayout,
    *,
    freeze_embeddings: bool = False,
    freeze_layers: int | Sequence[int] | None = None,
    freeze_patterns: Sequence[str] | None = None,
    train_head_only: bool = False,
) -> set[str]:
    """Names of the parameters to freeze for good; everything else is trainable.

    `freeze_layers` is a count of bottom blocks or a list of block indices; `freeze_patterns` are regexes searched in
    parameter names. Raises ConfigError for an index out of range or a pattern that matches nothing.
    """
    frozen: set[str] = set()
    if freeze_embeddings or train_head_only:
        frozen.update(layout.embeddings)
    if train_head_only:
        frozen.update(name for block in layout.blocks for name in block)
    if freeze_layers is not None:
        for index in _blocks_to_freeze(layout, freeze_layers):
            frozen.update(layout.blocks[index])
    for pattern in freeze_patterns or ():
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ConfigError(f"freeze_patterns: {pattern!r} is not a valid regex ({err}).") from None
        matches = {name for name in layout.param_names if regex.search(name)}
        if not matches:
            raise ConfigError(
                f"freeze_patterns: {pattern!r} matches no parameter of the model; parameter names look like "
                f"{_examples(layout)}. Fix the pattern or drop it."
            )
        frozen.update(matches)
    return frozen


def check_one_block_stack(layout: ModelLayout, options: dict[str, bool]) -> None:
    """Refuse the `options` that are on and rank the blocks below the head, on an encoder-decoder (BART, T5): its
    blocks are the encoder's, so the whole decoder would count as head (trained by train_head_only and the first stage
    of gradual unfreezing, at the undecayed learning rate with layerwise_lr_decay)."""
    used = [name for name, on in options.items() if on]
    if not layout.encoder_decoder or not used:
        return
    blocks = re.escape(layout.block_modules[0].rpartition(".")[0])
    raise ConfigError(
        f"{', '.join(used)} cannot apply to an encoder-decoder model: its {layout.depth} blocks are the encoder's, so "
        "its whole decoder would count as head (trained with it, at the head's learning rate). Freeze by name "
        f"instead: freeze_embeddings, freeze_layers (encoder blocks) or freeze_patterns, e.g. ['{blocks}\\.[0-3]\\.']."
    )


def check_blocks_found(layout: ModelLayout, options: dict[str, bool]) -> None:
    """Refuse the `options` that are on and need the transformer blocks, on a layout where none were found (a hybrid
    such as Jamba, whose layers are of two classes): they would freeze or rank nothing, or the whole body as head."""
    used = [name for name, on in options.items() if on]
    if layout.blocks or not used:
        return
    raise ConfigError(
        f"{', '.join(used)} {'needs' if len(used) == 1 else 'need'} the model's transformer blocks, but none were "
        "found (no nn.ModuleList of identical layers inside its base model); freeze by name with freeze_patterns "
        f"instead (parameter names look like {_examples(layout)}), or drop {'it' if len(used) == 1 else 'them'}."
    )


def warn_shared_blocks(layout: ModelLayout, options: dict[str, bool]) -> None:
    """A warning for the `options` that are on and work block by block, on a model whose blocks are not its
    layers (ALBERT's one layer group, run 12 times): a block is released, or its LR decayed, with all its layers."""
    used = [name for name, on in options.items() if on]
    if used and layout.blocks and layout.num_layers not in (None, layout.depth):
        logger.warning(
            "%s: this model runs %d layers on %d block(s) of weights (ALBERT shares its layer groups): each block is "
            "released and decayed as one, all its layers together.",
            " and ".join(used),
            layout.num_layers,
            layout.depth,
        )


def unfreezing_stages(layout: ModelLayout, permanently_frozen: set[str]) -> list[set[str]]:
    """ULMFiT gradual unfreezing: the trainable parameter names of each stage, cumulative.

    Stage 0 trains the head, each later stage adds the next block from the top, the last adds the embeddings.
    Names in `permanently_frozen` are never trainable, and stages that would add nothing are dropped (so there is
    always at least one stage, possibly empty when everything is frozen).
    """
    additions = [layout.head, *reversed(layout.blocks), layout.embeddings]
    stages: list[set[str]] = []
    trainable: set[str] = set()
    for names in additions:
        new = set(names) - permanently_frozen - trainable
        if new:
            trainable = trainable | new
            stages.append(trainable)
    return stages or [set()]


def trainable_at_epoch(stages: list[set[str]], epoch: float, every: int) -> set[str]:
    """The stage in force at `epoch` (0-based; fractional epochs are fine) when a stage lasts `every` epochs."""
    if every < 1:
        raise ValueError(f"every must be >= 1 epoch, got {every}.")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}.")
    return set(stages[min(int(epoch // every), len(stages) - 1)])


def stages_reached(stage_count: int, every: int, epochs: float) -> int:
    """How many unfreezing stages a run of `epochs` epochs trains: each epoch takes its stage at its start, so a stage
    is reached when some epoch starts in it (a fractional last epoch included)."""
    started = max(1, math.ceil(epochs - 1e-6))
    return min(stage_count, (started - 1) // every + 1)


def unreached_unfreezing(plan: FreezePlan, every: int, epochs: float) -> str | None:
    """One line saying what gradual unfreezing never releases in a run of `epochs` epochs, and the epochs that reach
    every stage; None when the run reaches them all."""
    never = plan.never_unfrozen(every, epochs)
    if not never:
        return None
    layout, count = plan.layout, len(plan.stages)
    blocks = sum(1 for block in layout.blocks if never & set(block))
    parts = [f"{blocks} of {layout.depth} block(s)"] if blocks else []
    parts += ["the embeddings"] if never & set(layout.embeddings) else []
    return (
        f"gradual_unfreezing {every}: the run's {epochs:g} epoch(s) reach {stages_reached(count, every, epochs)} of "
        f"its {count} unfreezing stages, so {' and '.join(parts) or 'part of the body'} will never be unfrozen (never "
        f"trained); more than {(count - 1) * every} epochs reach every stage ({count * every} give each its {every})."
    )


def unfreezing_schedule(stages: list[set[str]], every: int, epochs_run: float, sizes: dict[str, int]) -> list[dict]:
    """The whole run's gradual unfreezing: the trainable-parameter count from each epoch that changed it, as
    `trainable_at_epoch` sets it at each epoch's start, over epochs 0 to `epochs_run` (a resumed run's epochs before
    the resume included). `sizes`: each parameter's element count, by name."""
    schedule: list[dict] = []
    for epoch in range(max(1, math.ceil(epochs_run - 1e-6))):
        count = sum(sizes.get(name, 0) for name in trainable_at_epoch(stages, epoch, every))
        if not schedule or schedule[-1]["trainable_parameters"] != count:
            schedule.append({"epoch": float(epoch), "trainable_parameters": count})
    return schedule


@dataclass(frozen=True)
class FreezePlan:
    """A run's freeze plan, resolved once from the layout before any weights load: the parameters frozen for the
    whole run and, with gradual unfreezing, the trainable names of each stage (empty otherwise)."""

    layout: ModelLayout
    frozen: frozenset[str]
    stages: tuple[frozenset[str], ...] = ()

    @classmethod
    def resolve(
        cls,
        layout: ModelLayout,
        *,
        freeze_embeddings: bool = False,
        freeze_layers: int | Sequence[int] | None = None,
        freeze_patterns: Sequence[str] | None = None,
        train_head_only: bool = False,
        gradual_unfreezing: int = 0,
    ) -> FreezePlan:
        frozen = resolve_frozen_parameters(
            layout,
            freeze_embeddings=freeze_embeddings,
            freeze_layers=freeze_layers,
            freeze_patterns=freeze_patterns,
            train_head_only=train_head_only,
        )
        if layout.param_names and frozen >= set(layout.param_names):
            # Trainer then failed after the weights loaded: a backward through no trainable tensor, or an optimizer
            # with an empty parameter list.
            raise ConfigError(
                f"the freeze options freeze all {len(layout.param_names)} parameters of the model, the head's "
                f"({', '.join(repr(name) for name in layout.head[-2:])}) included, so nothing would train; narrow "
                f"freeze_patterns {list(freeze_patterns or [])} so that the head (at least) stays trainable."
            )
        stages = unfreezing_stages(layout, frozen) if gradual_unfreezing else []
        return cls(layout, frozenset(frozen), tuple(frozenset(stage) for stage in stages))

    @classmethod
    def of_model(cls, model: nn.Module, layout: ModelLayout) -> FreezePlan:
        """The plan a model already carries (a PEFT model, whose base PEFT froze): its frozen parameters now."""
        return cls(layout, frozenset(name for name, p in model.named_parameters() if not p.requires_grad))

    @property
    def will_train(self) -> frozenset[str]:
        """Names that train at some point of the run (later unfreezing stages included)."""
        return frozenset().union(*self.stages) if self.stages else frozenset(self.layout.param_names) - self.frozen

    def never_unfrozen(self, every: int, epochs: float) -> frozenset[str]:
        """Names of later unfreezing stages that a run of `epochs` epochs never reaches (empty without stages)."""
        if not self.stages or every < 1:
            return frozenset()
        return self.will_train - self.stages[stages_reached(len(self.stages), every, epochs) - 1]

    def apply(self, model: nn.Module) -> None:
        """Freeze what the first epoch freezes: the permanent plan, or everything outside stage 0."""
        if self.stages:
            apply_freeze(model, {name for name, _ in model.named_parameters()} - self.stages[0], self.layout)
        else:
            apply_freeze(model, self.frozen, self.layout)


def _keep_eval(model_ref, module: nn.Module, args: tuple) -> None:
    # A forward pre-hook that returned the module would replace the inputs, so this returns None. An embedding table
    # has no dropout: its mode is read only by hooks, NEFTune's (noise on its output in training), which a frozen
    # table in eval mode silently lost (LoRA, freeze_embeddings). It follows the whole model's mode instead.
    module.eval()
    model = model_ref()
    if model is not None and model.training:
        for child in module.modules():
            if isinstance(child, nn.Embedding):
                child.train()


def _frozen_subtrees(model: nn.Module) -> list[str]:
    """Names of the largest modules that have parameters, all frozen (ancestors before descendants).

    Containers (`nn.ModuleList`, `nn.ModuleDict`) are never roots: they are not called, so a forward pre-hook on one
    never runs and `Trainer`'s `model.train()` would switch their blocks back to train mode (GPT-2's `transformer.h`,
    Llama's `model.layers` when every block is frozen). Their children are roots instead."""
    roots: list[str] = []
    for name, module in model.named_modules():
        if any(name == root or name.startswith(f"{root}.") or root == "" for root in roots):
            continue
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            roots.append(name)
    return roots


def _dropouts_before_blocks(model: nn.Module, layout: ModelLayout) -> list[str]:
    """Dropout modules that run between the embeddings and block 0 outside any embedding module (GPT-2's
    `transformer.drop`): the children of the block list's ancestors registered before the child leading to it."""
    if not layout.block_modules:
        return []
    path = layout.block_modules[0].split(".")[:-1]  # the block list's, e.g. ["transformer", "h"]
    found = []
    for depth, leading in enumerate(path):
        ancestor = ".".join(path[:depth])
        for name, child in model.get_submodule(ancestor).named_children():
            if name == leading:
                break
            if isinstance(child, nn.Dropout):
                found.append(f"{ancestor}.{name}" if ancestor else name)
    return found


def apply_freeze(model: nn.Module, frozen: Iterable[str], layout: ModelLayout | None = None) -> None:
    """Freeze exactly the parameters named in `frozen` and unfreeze all others.

    Modules whose parameters are all frozen (the largest such, e.g. a whole block or the embeddings) are kept in eval
    mode, so their dropout is off, even though `Trainer` calls `model.train()` every step: a forward pre-hook puts them
    back in eval mode. With the model's `layout` and its embeddings frozen, so is a dropout on the embeddings' output
    that lives outside their module (GPT-2's `transformer.drop`; BERT's is inside its frozen `embeddings`): frozen
    embeddings are a fixed function of the input on every architecture, which the frozen-feature cache relies on.
    Calling this again replaces the previous plan, hooks included.
    """
    frozen = set(frozen)
    params = dict(model.named_parameters())
    unknown = sorted(frozen - params.keys())
    if unknown:
        raise ValueError(f"apply_freeze: {len(unknown)} names are not parameters of the model, e.g. {unknown[:3]}.")
    for handle_name, handle in getattr(model, _HOOKS_ATTR, {}).items():
        handle.remove()
        model.get_submodule(handle_name).train(model.training)
    for name, param in params.items():
        param.requires_grad_(name not in frozen)
    hooks = {}
    roots = _frozen_subtrees(model)
    if layout is not None and layout.embeddings and frozen >= set(layout.embeddings):
        roots += _dropouts_before_blocks(model, layout)
    for name in roots:
        module = model.get_submodule(name)
        module.eval()
        hooks[name] = module.register_forward_pre_hook(functools.partial(_keep_eval, weakref.ref(model)))
    setattr(model, _HOOKS_ATTR, hooks)


def layerwise_lr_groups(
    layout: ModelLayout,
    param_names: list[str],
    *,
    base_lr: float,
    gamma: float,
    weight_decay: float,
    no_decay: set[str],
) -> list[dict]:
    """Optimizer groups `{"names", "lr", "weight_decay"}` with layer-wise LR decay, head first.

    The head gets `base_lr`, block i of L (0 at the bottom) `base_lr * gamma ** (L - i)`, the embeddings
    `base_lr * gamma ** (L + 1)`. Names in `no_decay` get weight decay 0. Groups with equal settings are merged, so
    `gamma=1` gives at most two groups.
    """
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}.")

    def level(name: str) -> int:
        group, index = layout.group_of(name)
        if group == "head":
            return 0
        return layout.depth - index if group == "block" else layout.depth + 1

    groups: dict[tuple[float, float], list[str]] = {}
    for name in sorted(param_names, key=level):  # stable: names keep their order within a group
        lr = base_lr * gamma ** level(name)
        decay = 0.0 if name in no_decay else weight_decay
        groups.setdefault((lr, decay), []).append(name)
    return [{"names": names, "lr": lr, "weight_decay": decay} for (lr, decay), names in groups.items()]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) numbers of elements; tied weights count once."""
    trainable = frozen = 0
    for param in model.parameters():
        if param.requires_grad:
            trainable += param.numel()
        else:
            frozen += param.numel()
    return trainable, frozen
