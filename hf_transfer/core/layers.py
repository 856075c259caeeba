"""Architecture discovery: which parameters are the embeddings, each transformer block, and the head.

The rule is generic rather than a per-model table. Inside the base model (`model.base_model`), the blocks are the
`nn.ModuleList` of modules of one class as long as `config.num_hidden_layers`, else the largest (outermost lists
only; remaining ties go to the first); lists beside it of the same length hold the rest of each layer (XLM's
`ffns`). The base model's other parameters are embeddings when they are registered before the blocks or have "embed"
in their name, or are a relative-position bias that every block reads (MPNet's `encoder.relative_attention_bias`,
LayoutLMv3's `encoder.rel_pos_bias`), and head otherwise (BERT's pooler, GPT-2's `ln_f`, Llama's `norm`, ViT's
`layernorm`). Everything outside the base model (classifier, score, DeBERTa's pooler) is head.

A model with no such list (Jamba, whose layers alternate two classes) gets a layout without blocks when asked for
one (`need_blocks=False`): its embeddings found by name, everything else head. It trains, and takes freeze_embeddings
and freeze_patterns; the options that rank blocks are refused (`freezing.check_blocks_found`).

ALBERT shares weights across layers: its blocks are its layer groups (`num_hidden_groups`, 1 in the released
checkpoints), so an ALBERT model usually has depth 1, not `num_hidden_layers`.

Only names and module structure are read, never tensor data, so models on the meta device work."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from torch import nn
from transformers import PreTrainedModel

from hf_transfer.errors import ConfigError

# Names of body parameters outside the blocks that feed every block, wherever they are registered: embeddings, and
# relative-position biases computed once by the encoder and added to every block's attention scores (not one held by
# a layer of a list, as T5's decoder's first layer holds its own).
_EMBEDDING_NAME = re.compile(r"embed|^\D*(relative_attention_bias|rel_pos)", re.IGNORECASE)

# A pooler runs after the blocks wherever it is registered (GTE and NomicBERT register theirs before their layers).
_HEAD_NAME = re.compile(r"(^|\.)pooler\.")

# Where the generic rule is wrong, by `config.model_type`: parameter-name prefixes relative to the base model, mapped
# to "embeddings", "head" or a block index. DeBERTa-v2's `encoder.LayerNorm` only normalises the relative-position
# embeddings; its optional `encoder.conv` (deberta-v2-xlarge) runs inside the first block. OPT registers its final
# norm and its output projection (opt-350m) before its layers.
_SPECIAL_CASES: dict[str, dict[str, str | int]] = {
    "deberta-v2": {"encoder.LayerNorm.": "embeddings", "encoder.conv.": 0},
    "opt": {"decoder.final_layer_norm.": "head", "decoder.project_out.": "head"},
}


@dataclass(frozen=True)
class ModelLayout:
    """Parameter names, as in `model.named_parameters()`, split into embeddings, blocks (bottom first) and head."""

    embeddings: tuple[str, ...]
    blocks: tuple[tuple[str, ...], ...]
    head: tuple[str, ...]
    block_modules: tuple[str, ...]
    # The layers the model runs (`config.num_hidden_layers`), where known: more than `depth` when blocks are shared
    # across layers (ALBERT runs its one layer group 12 times).
    num_layers: int | None = None
    # An encoder-decoder (BART, T5): the blocks are the encoder's, and the decoder's layers count as head.
    encoder_decoder: bool = False

    @property
    def depth(self) -> int:
        """Number of transformer blocks."""
        return len(self.blocks)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter name, embeddings first, then the blocks bottom to top, then the head."""
        return self.embeddings + tuple(name for block in self.blocks for name in block) + self.head

    @cached_property
    def _groups(self) -> dict[str, tuple[str, int | None]]:
        groups: dict[str, tuple[str, int | None]] = {name: ("embeddings", None) for name in self.embeddings}
        for index, block in enumerate(self.blocks):
            groups.update({name: ("block", index) for name in block})
        groups.update({name: ("head", None) for name in self.head})
        return groups

    def group_of(self, param_name: str) -> tuple[str, int | None]:
        """`("embeddings", None)`, `("block", i)` with 0 the bottom block, or `("head", None)`."""
        try:
            return self._groups[param_name]
        except KeyError:
            raise KeyError(
                f"{param_name!r} is not a parameter of this layout (discovered before it was added?)"
            ) from None


def _find_body(model: nn.Module) -> tuple[str, nn.Module]:
    """The transformers base model inside `model` (also through wrappers such as PEFT) and its qualified name."""
    for name, module in model.named_modules():
        if isinstance(module, PreTrainedModel):
            body = module.base_model
            for body_name, candidate in module.named_modules():
                if candidate is body:
                    return ".".join(part for part in (name, body_name) if part), body
    return "", model


def _find_block_list(body: nn.Module) -> tuple[str, nn.ModuleList] | None:
    candidates: list[tuple[str, nn.ModuleList]] = []
    for name, module in body.named_modules():  # pre-order: an outer list comes before the lists nested in it
        if (
            isinstance(module, nn.ModuleList)
            and len(module) > 0
            and len({type(child) for child in module}) == 1
            and next(module.parameters(), None) is not None
            and not any(name.startswith(outer + ".") for outer, _ in candidates)
        ):
            candidates.append((name, module))
    if not candidates:
        return None
    num_layers = getattr(getattr(body, "config", None), "num_hidden_layers", None)
    # A list as long as `num_hidden_layers` first (MarkupLM's 50 xpath embeddings are a longer list), then the longest;
    # max() keeps the first of equal keys, so remaining ties go to the first list registered.
    return max(candidates, key=lambda item: (len(item[1]) == num_layers, len(item[1])))


def _parallel_lists(body: nn.Module, blocks: str) -> list[str]:
    """Lists beside the block list that hold the other half of each layer (XLM and FlauBERT keep `attentions`,
    `layer_norm1`, `ffns` and `layer_norm2` as four lists): same parent module, same length, one class."""
    parent, _, _ = blocks.rpartition(".")
    size = len(body.get_submodule(blocks))
    siblings = []
    for name, module in body.get_submodule(parent).named_children():
        qualified = f"{parent}.{name}" if parent else name
        if (
            qualified != blocks
            and isinstance(module, nn.ModuleList)
            and len(module) == size
            and len({type(child) for child in module}) == 1
        ):
            siblings.append(qualified)
    return siblings


def _layout_without_blocks(model: nn.Module, body_prefix: str, config) -> ModelLayout:
    """Body parameters named like embeddings are the embeddings, every other parameter is head; no blocks."""
    embeddings, head = [], []
    for name, _ in model.named_parameters():
        inside = name.startswith(body_prefix)
        (embeddings if inside and _EMBEDDING_NAME.search(name[len(body_prefix) :]) else head).append(name)
    return ModelLayout(
        embeddings=tuple(embeddings),
        blocks=(),
        head=tuple(head),
        block_modules=(),
        num_layers=getattr(config, "num_hidden_layers", None),
        encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
    )


def discover_layers(model: nn.Module, *, need_blocks: bool = True) -> ModelLayout:
    """Split the parameters of a transformers model into embeddings, transformer blocks and head. Without blocks to
    find, raise ConfigError, or with `need_blocks=False` return a layout with none (depth 0)."""
    body_name, body = _find_body(model)
    found = _find_block_list(body)
    body_prefix = f"{body_name}." if body_name else ""
    if found is None and not need_blocks:
        return _layout_without_blocks(model, body_prefix, getattr(body, "config", None))
    if found is None:
        raise ConfigError(
            f"Cannot find the transformer blocks of {type(model).__name__}: expected an nn.ModuleList of identical "
            "layers inside its base model. Use freeze_patterns instead of freeze_layers, train_head_only, "
            "gradual_unfreezing or layerwise_lr_decay with this architecture."
        )
    list_prefix = f"{body_prefix}{found[0]}."
    layer_prefixes = (list_prefix, *(f"{body_prefix}{name}." for name in _parallel_lists(body, found[0])))
    special = _SPECIAL_CASES.get(getattr(getattr(body, "config", None), "model_type", None), {})

    embeddings: list[str] = []
    blocks: list[list[str]] = [[] for _ in found[1]]
    head: list[str] = []
    seen_block = False
    for name, _ in model.named_parameters():
        if not name.startswith(body_prefix):
            head.append(name)
            continue
        prefix = next((p for p in layer_prefixes if name.startswith(p)), None)
        if prefix is not None:
            blocks[int(name[len(prefix) :].split(".", 1)[0])].append(name)
            seen_block = True
            continue
        relative = name[len(body_prefix) :]
        target = next((group for prefix, group in special.items() if relative.startswith(prefix)), None)
        if isinstance(target, int):
            blocks[target].append(name)
        elif target == "head" or (target is None and _HEAD_NAME.search(relative)):
            head.append(name)
        elif target == "embeddings" or not seen_block or _EMBEDDING_NAME.search(relative):
            embeddings.append(name)
        else:
            head.append(name)
    return ModelLayout(
        embeddings=tuple(embeddings),
        blocks=tuple(tuple(block) for block in blocks),
        head=tuple(head),
        block_modules=tuple(f"{list_prefix}{index}" for index in range(len(blocks))),
        num_layers=getattr(getattr(body, "config", None), "num_hidden_layers", None),
        encoder_decoder=bool(getattr(getattr(body, "config", None), "is_encoder_decoder", False)),
    )
