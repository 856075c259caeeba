"""The few-shot route's head, expressed in the standard classifier architecture.

The route fits its head on the *mean-pooled* sentence embedding (what sentence-transformers bodies are trained for),
but `BertForSequenceClassification` reads only the first token, through `tanh(dense(h_CLS))`, before its final linear
layer. One extra encoder block of the model's own class folds the pooling in, with no new code: its queries and keys
are zero, so every position attends uniformly to every unmasked position, and with an identity value projection the
first token receives exactly the masked mean of the body's last hidden states. The attention output projection
scales that mean by `MEAN_SCALE`, so the residual (the first token's own state) is negligible before the LayerNorm;
the feed-forward part is zeroed, so the block's output at the first token is `LayerNorm(mean)`. The dense layer before
the final linear becomes `POOLER_SCALE`·identity (tanh is close to linear there), and the final linear layer holds the
fitted head, rescaled. The features the head is fitted on are read from the finished model itself (the input of its
final linear layer), so the saved model's logits are the fitted head's logits by construction.

Supported: encoders whose blocks are BERT-style (`attention.self.{query,key,value}`, `attention.output`,
`intermediate`, `output`: BERT, RoBERTa, XLM-R, ELECTRA, CamemBERT, ...) with a BERT pooler or a RoBERTa-style
classification head (`classifier.dense`, `classifier.out_proj`; ELECTRA's applies GELU where the others apply tanh,
and the features are divided by the activation's slope, `HeadParts.slope`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

MEAN_SCALE = 1000.0  # the residual's share of the pooled block's input is about 1/MEAN_SCALE (fp16 still in range)
POOLER_SCALE = 0.01  # tanh(0.01·z) = 0.01·z to within 0.2% for the unit-variance features a LayerNorm gives
HEAD = "logistic regression (scikit-learn, L2) on the mean-pooled embedding, LayerNorm-centred, unit norm"


@dataclass
class HeadParts:
    """Where the mean-pooling block goes and which two layers make the head."""

    blocks: nn.ModuleList  # the encoder's blocks; the pooling block is appended here
    dense: nn.Linear  # d -> d, followed by tanh (ELECTRA: GELU): BERT's pooler, RoBERTa's classifier.dense
    final: nn.Linear  # d -> num_labels: the logits
    # The activation's slope at POOLER_SCALE·z (1 for tanh; 0.5 for ELECTRA's GELU): the features are divided by it,
    # so they are the unit-norm embedding the head is described as fitted on, whatever the activation.
    slope: float = 1.0
    # The two layers' names and the activation between them, as the record and card state them (RoBERTa and ELECTRA
    # have no pooler: the card called their classifier.dense one).
    dense_name: str = "bert.pooler.dense"
    final_name: str = "classifier"
    activation: str = "tanh"


# What the route needs of an architecture, for the message that refuses another one.
SUPPORTED_HEADS = (
    "BERT-style encoder blocks (attention.self.query/key/value, attention.output, intermediate, output) and a square "
    "dense layer before the final linear one: a BERT pooler (pooler.dense, then tanh) with classifier, or a "
    "RoBERTa-style classifier.dense (then tanh, or GELU in ELECTRA) with classifier.out_proj"
)


def _is_bert_block(block: nn.Module) -> bool:
    names = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")  # fmt: skip
    modules = dict(block.named_modules())
    return all(name in modules for name in names)


def head_parts(model: nn.Module) -> HeadParts | None:
    """The parts of a sequence classifier the construction needs, or None when its architecture is not supported.
    Works on a meta-device model too (the route's pre-flight check)."""
    base = getattr(model, "base_model", None)
    blocks = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(blocks, nn.ModuleList) or not len(blocks) or not _is_bert_block(blocks[0]):
        return None
    classifier = getattr(model, "classifier", None)
    pooler = getattr(base, "pooler", None)
    prefix = getattr(model, "base_model_prefix", "") or "base_model"
    if isinstance(classifier, nn.Linear) and isinstance(getattr(pooler, "dense", None), nn.Linear):
        dense, final, names = pooler.dense, classifier, (f"{prefix}.pooler.dense", "classifier")
    elif isinstance(getattr(classifier, "dense", None), nn.Linear) and isinstance(
        getattr(classifier, "out_proj", None), nn.Linear
    ):
        dense, final, names = classifier.dense, classifier.out_proj, ("classifier.dense", "classifier.out_proj")
    else:
        return None
    if dense.in_features != dense.out_features:
        return None
    owner = pooler if dense is getattr(pooler, "dense", None) else classifier
    activation = getattr(owner, "activation", None)  # RoBERTa's head calls torch.tanh inline: slope 1
    step = torch.tensor([POOLER_SCALE, -POOLER_SCALE])
    slope = float((activation(step) @ torch.tensor([1.0, -1.0])) / (2 * POOLER_SCALE)) if callable(activation) else 1.0
    named = "tanh" if activation is None or isinstance(activation, nn.Tanh) else type(activation).__name__
    return HeadParts(blocks, dense, final, slope, *names, named.removesuffix("Activation"))


def mean_pooling_block(model: nn.Module) -> int | None:
    """The index of the route's mean-pooling block when `model` ends with one, else None. Told by its zero queries,
    keys and feed-forward input: their gradients are zero there, so a model fine-tuned, merged or distilled from a
    few-shot one (its record says nothing of the route) still has them zero, where no trained block does."""
    zero = _pooling_block_weights(model)
    if zero is None:
        return None
    return len(head_parts(model).blocks) - 1 if not any(torch.count_nonzero(w) for w in zero) else None


def _pooling_block_weights(model: nn.Module) -> list[nn.Parameter] | None:
    """The weights that are zero in the route's mean-pooling block and in no trained one (see `mean_pooling_block`)."""
    parts = head_parts(model)
    if parts is None:
        return None
    block = parts.blocks[-1]
    return [block.attention.self.query.weight, block.attention.self.key.weight, block.intermediate.dense.weight]


def saved_mean_pooling_block(name_or_path: str, config, *, revision: str = "main", cache_dir=None) -> int | None:
    """`mean_pooling_block` of the model `config` describes, told from its saved safetensors weights (a local folder
    or the Hub cache) before any model loads: only the last block's queries, keys and feed-forward input are read.
    None also when they cannot be read so (a .bin checkpoint): check the loaded model with `mean_pooling_block`."""
    from hf_transfer.core.models import meta_classifier

    model = meta_classifier(config)
    weights = _pooling_block_weights(model)
    if weights is None:
        return None
    names = {id(p): name for name, p in model.named_parameters()}
    prefix = f"{model.base_model_prefix}."
    # A checkpoint saved from the bare encoder (BertModel) names its weights without the classifier's prefix.
    wanted = [(names[id(w)], names[id(w)].removeprefix(prefix)) for w in weights]
    tensors = _read_saved_tensors(name_or_path, wanted, revision, cache_dir)
    if tensors is None or any(torch.count_nonzero(t) for t in tensors):
        return None
    return len(head_parts(model).blocks) - 1


def _read_saved_tensors(name_or_path: str, wanted: list[tuple[str, str]], revision: str, cache_dir):
    """Each `(name, other name)`'s tensor from the safetensors weights of a folder or a cached Hub model; None when
    there are no such files or a tensor is missing."""
    import json

    from safetensors import SafetensorError, safe_open

    from hf_transfer.core.models import model_file

    def locate(filename: str):
        return model_file(name_or_path, filename, revision=revision, cache_dir=cache_dir)

    index = locate("model.safetensors.index.json")
    try:
        weight_map = json.loads(index.read_bytes())["weight_map"] if index else None
        tensors = []
        for names in wanted:
            if weight_map is None:
                filename = "model.safetensors"
            else:
                filename = next((weight_map[k] for k in names if k in weight_map), None)
            path = locate(filename) if filename else None
            if path is None:
                return None
            with safe_open(str(path), "pt") as handle:
                key = next((k for k in names if k in handle.keys()), None)
                if key is None:
                    return None
                tensors.append(handle.get_tensor(key))
        return tensors
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The masked mean over positions, as sentence-transformers' mean pooling computes it."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _set(linear: nn.Linear, weight: torch.Tensor | float, bias: float = 0.0) -> None:
    if isinstance(weight, float):
        linear.weight.fill_(weight)
    else:
        linear.weight.copy_(weight)
    if linear.bias is not None:
        linear.bias.fill_(bias)


def _set_norm(norm: nn.LayerNorm) -> None:
    norm.weight.fill_(1.0)
    if norm.bias is not None:
        norm.bias.zero_()


@torch.no_grad()
def append_mean_pooling_block(model: nn.Module, parts: HeadParts) -> None:
    """Append the block that puts LayerNorm(masked mean of the last hidden states) at the first position, and make
    the head's dense layer POOLER_SCALE·identity; `config.num_hidden_layers` grows by one."""
    block = copy.deepcopy(parts.blocks[-1])
    width = parts.dense.in_features
    eye = torch.eye(width, dtype=parts.dense.weight.dtype, device=parts.dense.weight.device)
    attention = block.attention
    _set(attention.self.query, 0.0)
    _set(attention.self.key, 0.0)
    _set(attention.self.value, eye)
    _set(attention.output.dense, eye * MEAN_SCALE)
    _set_norm(attention.output.LayerNorm)
    _set(block.intermediate.dense, 0.0)
    _set(block.output.dense, 0.0)
    _set_norm(block.output.LayerNorm)
    for module in block.modules():  # the block's position, where the class keeps one (KV-cache bookkeeping)
        if isinstance(getattr(module, "layer_idx", None), int):
            module.layer_idx = len(parts.blocks)
    parts.blocks.append(block)
    model.config.num_hidden_layers = len(parts.blocks)
    _set(parts.dense, eye * POOLER_SCALE)


def feature_scale(width: int, slope: float = 1.0) -> float:
    """What the final layer's input is divided by to give the head's features: POOLER_SCALE·sqrt(width)·slope makes
    them the centred, unit-norm mean embedding (LayerNorm output has norm sqrt(width); `slope`: see HeadParts)."""
    return POOLER_SCALE * math.sqrt(width) * slope


@torch.no_grad()
def classifier_inputs(model: nn.Module, parts: HeadParts, batches) -> torch.Tensor:
    """The input of the final linear layer for each row of `batches` (dicts of model inputs), in eval mode."""
    captured: list[torch.Tensor] = []
    handle = parts.final.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(**batch)
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured)


@torch.no_grad()
def set_final_layer(parts: HeadParts, coef, intercept, width: int) -> None:
    """Write a linear head fitted on `classifier_inputs / feature_scale(width)` into the final layer."""
    weight = torch.as_tensor(coef, dtype=torch.float64) / feature_scale(width, parts.slope)
    parts.final.weight.copy_(weight.to(parts.final.weight.dtype))
    parts.final.bias.copy_(torch.as_tensor(intercept, dtype=parts.final.bias.dtype))


# --- fitting the head -------------------------------------------------------------------------------------------


def binary_as_two_logits(coef, intercept):
    """scikit-learn's binary head (one score s) as two logits (−s/2, s/2): the same softmax probabilities."""
    import numpy as np

    coef, intercept = np.asarray(coef, dtype=np.float64), np.asarray(intercept, dtype=np.float64)
    if coef.shape[0] == 1:
        return np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    return coef, intercept


def fit_head(model, rows, collator, num_labels: int, c: float, batch_size: int = 64) -> dict:
    """Build the mean-pooling block on the tuned body, fit the logistic-regression head on the features the finished
    model feeds its final layer, and write it there. Returns the facts, with the head's own logits on `rows`."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    parts = head_parts(model)
    append_mean_pooling_block(model, parts)
    device = next(model.parameters()).device
    labels = np.asarray(rows["labels"][:])
    inputs = rows.remove_columns("labels")
    batches = (
        {k: v.to(device) for k, v in collator([inputs[j] for j in range(i, min(i + batch_size, len(inputs)))]).items()}
        for i in range(0, len(inputs), batch_size)
    )
    width = parts.dense.in_features
    features = (classifier_inputs(model, parts, batches) / feature_scale(width, parts.slope)).numpy()
    present = np.unique(labels)
    head = LogisticRegression(C=c, max_iter=1000).fit(features, labels)
    coef, intercept = binary_as_two_logits(head.coef_, head.intercept_)
    if len(present) < num_labels:  # classes with no training row can never be predicted
        full_coef, full_intercept = np.zeros((num_labels, width)), np.full(num_labels, -1e4)
        full_coef[present], full_intercept[present] = coef, intercept
        coef, intercept = full_coef, full_intercept
    set_final_layer(parts, coef, intercept, width)
    logits = features @ coef.T + intercept
    return {
        "kind": HEAD,
        "C": c,
        "training_rows": len(labels),
        "training_accuracy": round(float((logits.argmax(1) == labels).mean()), 4),
        "mean_pooling_block": len(parts.blocks) - 1,
        "num_hidden_layers": len(parts.blocks),
        "mean_scale": MEAN_SCALE,
        "pooler_scale": POOLER_SCALE,
        "dense_layer": parts.dense_name,
        "final_layer": parts.final_name,
        "activation": parts.activation,
        "seconds": round(time.perf_counter() - started, 2),
        "logits": logits,
    }
