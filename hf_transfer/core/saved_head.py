"""Whether a model folder's saved weights hold a sequence-classification head, read from their names alone (no tensor
is loaded): for a config.json without `architectures` (a config saved by `config.save_pretrained` beside weights
saved by hand), which `AutoModelForSequenceClassification` loads, and which had been called "not a classifier"."""

from __future__ import annotations

import json
from pathlib import Path

# The heads' first name part in transformers' classifiers: BERT, RoBERTa, ELECTRA, DeBERTa, DistilBERT (`classifier`,
# `classifier.dense`, `classifier.out_proj`), GPT-2, Llama, Qwen (`score`).
_HEAD_NAMES = ("classifier", "score")


def weight_names(folder: Path) -> list[str]:
    """The tensor names of a local folder's weights (safetensors, its shard index, or a torch zip file), or []."""
    try:
        if (folder / "model.safetensors").is_file():
            with (folder / "model.safetensors").open("rb") as file:
                size = int.from_bytes(file.read(8), "little")
                return [k for k in json.loads(file.read(size)) if k != "__metadata__"]
        if (folder / "model.safetensors.index.json").is_file():
            return list(json.loads((folder / "model.safetensors.index.json").read_bytes()).get("weight_map") or {})
        if (folder / "pytorch_model.bin").is_file():
            import torch

            return list(torch.load(folder / "pytorch_model.bin", map_location="meta", weights_only=True, mmap=True))
    except Exception:  # unreadable or not a mapping: the weights' own check says so when they load
        return []
    return []


def classifier_in_weights(folder: Path, model_type: str | None) -> str | None:
    """The `*ForSequenceClassification` class of `model_type` when the folder's weights hold its head, else None."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as NAMES

    name = NAMES.get(model_type or "")
    if not name or not any(key.split(".", 1)[0] in _HEAD_NAMES for key in weight_names(folder)):
        return None
    return name
