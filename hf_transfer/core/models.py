"""Resolving and loading pretrained models and tokenizers, with one-line errors for paths and ids that do not work."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from hf_transfer.core.folders import (
    ADAPTER_CONFIG,
    CARD_DATA_FILE,
    ONNX_FILE,
    RUN_RECORD_FILE,
    TOKENIZER_FILES,
    has_tokenizer,
    is_adapter_folder,
    is_onnx_folder,
    looks_local,
    onnx_export_source,
    plain_adapter_advice,
    read_json_file,
    search_folder_hint,
)
from hf_transfer.core.layers import ModelLayout, discover_layers
from hf_transfer.core.load_report import head_restored_later, say_loading
from hf_transfer.core.saved_head import classifier_in_weights
from hf_transfer.core.tasks import names_labels
from hf_transfer.errors import ConfigError, one_line


def check_model_location(name_or_path: str) -> None:
    """A local path names a model folder (one with config.json, not an adapter's), and a path that looks local
    exists; Hub ids pass. Milliseconds, so commands call it before reading any data."""
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        if is_adapter_folder(path):
            base = _adapter_base(path)
            if not any((path / name).is_file() for name in (RUN_RECORD_FILE, CARD_DATA_FILE)) and not (
                base and _names_labels(Path(base).expanduser())
            ):
                raise ConfigError(  # saved by PEFT itself: hf-transfer merge cannot build the model without labels
                    f"model folder {name_or_path!r} holds a PEFT adapter ({ADAPTER_CONFIG}), not a model, saved by "
                    f"PEFT with no label names; {plain_adapter_advice(name_or_path, base)}."
                )
            if base and not any((path / name).is_file() for name in (RUN_RECORD_FILE, CARD_DATA_FILE)):
                raise ConfigError(  # its base's config names the labels: merge builds the full model from the two
                    f"model folder {name_or_path!r} holds a PEFT adapter ({ADAPTER_CONFIG}), not a model; build the "
                    f"full model (with the labels of its base, {base!r}) with `hf-transfer merge --pretrained {base} "
                    f"--finetuned {name_or_path} --alpha 1 --output_dir {name_or_path.rstrip('/')}-merged` and give "
                    "that folder."
                )
            raise ConfigError(
                f"model folder {name_or_path!r} holds a PEFT adapter ({ADAPTER_CONFIG}), not a model; give a full "
                "model: the adapter's run writes one to output_dir/merged with merge_adapter true, or hf-transfer "
                "merge --alpha 1 builds one."
            )
        raise ConfigError(
            f"model folder {name_or_path!r} has no config.json; give a folder written by save_pretrained, or a Hub "
            "id." + search_folder_hint(path)
        )
    if not path.exists() and looks_local(name_or_path):
        raise ConfigError(f"model folder {name_or_path!r} does not exist.")
    if path.is_file() and (path.parent / "config.json").is_file():  # AutoTokenizer took it for a Hub id
        raise ConfigError(
            f"{name_or_path!r} is a file of a model folder; give the folder itself ({str(path.parent)!r})."
        )


def _names_labels(folder: Path) -> bool:
    """Whether a local model folder's config names its labels (transformers' `LABEL_n` placeholders name nothing)."""
    try:
        id2label = json.loads((folder / "config.json").read_bytes()).get("id2label") or {}
        return names_labels(id2label[key] for key in sorted(id2label, key=int))
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def _adapter_base(folder: Path) -> str | None:
    """The base model an adapter_config.json names, or None when it cannot be read."""
    try:
        return json.loads((folder / ADAPTER_CONFIG).read_bytes()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None


def load_config(
    name_or_path: str,
    *,
    revision: str = "main",
    cache_dir=None,
    trust_remote_code=False,
    option: str = "model_name_or_path",
    **overrides,
):
    """`AutoConfig.from_pretrained`, turning every failure into a ConfigError that names the path or id, the option
    that gave it (`option`: a teacher, merge's --pretrained, ...) and a revision other than main."""
    from transformers import AutoConfig

    check_model_location(name_or_path)
    try:
        config = AutoConfig.from_pretrained(
            name_or_path, revision=revision, cache_dir=cache_dir, trust_remote_code=trust_remote_code, **overrides
        )
        if not getattr(config, "architectures", None) and Path(name_or_path).expanduser().is_dir():
            found = classifier_in_weights(Path(name_or_path).expanduser(), getattr(config, "model_type", None))
            config.architectures = [found] if found else config.architectures
        if getattr(config, "id2label", None) and not getattr(config, "label2id", None):
            # A config.json with id2label alone: transformers 5 leaves label2id None, and every folder written from
            # it (merge, export) lacked it.
            config.label2id = {str(name): int(i) for i, name in config.id2label.items()}
        return config
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise ConfigError(
                f"model {name_or_path!r} needs custom code from its repository; pass --trust_remote_code true if "
                "you trust it."
            ) from None
        raise ConfigError(f"cannot read the config of model {name_or_path!r}: {one_line(err)}") from None
    except OSError as err:
        from huggingface_hub import constants

        if "is not a valid JSON file" in str(err):  # a folder whose config.json is cut off: not a missing model
            raise ConfigError(f"{option} {name_or_path!r}: {one_line(err)} Re-save or re-download it.") from None
        # HF_HUB_OFFLINE=0 is online ("is set" had been said for it); online, a private or gated repo needs a token.
        offline = " (HF_HUB_OFFLINE=1 is set: only cached or local models can be used)"
        offline = offline if constants.is_offline_mode() else " (a private or gated repo needs HF_TOKEN)"
        at = f" at revision {revision!r}" if revision not in (None, "main") else ""
        adapter = model_file(name_or_path, ADAPTER_CONFIG, revision=revision, cache_dir=cache_dir)
        if adapter is not None:  # a PEFT adapter's repository: no config.json of its own
            raise ConfigError(
                f"{option} {name_or_path!r}{at} is a PEFT adapter ({ADAPTER_CONFIG}), not a model; give the model it "
                f"adapts ({_adapter_base(adapter.parent) or 'its base_model_name_or_path'}) or a merged model."
            ) from None
        raise ConfigError(
            f"{option} {name_or_path!r}{at} is neither a local model folder nor a reachable Hub model{offline}. "
            + ("Check the revision, or the path or id." if at else "Check the path or id.")
        ) from None


def load_tokenizer(name_or_path: str, *, revision="main", cache_dir=None, trust_remote_code=False):
    from transformers import AutoTokenizer

    folder = Path(name_or_path).expanduser()
    if folder.is_dir() and not has_tokenizer(folder):
        # transformers would build a tokenizer with an empty vocabulary there: every word [UNK], no error.
        raise ConfigError(
            f"model folder {name_or_path!r} holds no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer of the model it came from into it (tokenizer.save_pretrained), or, for train and "
            "distill, set tokenizer_name."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, revision=revision, cache_dir=cache_dir, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"cannot load a tokenizer from {name_or_path!r}: {one_line(err)}") from None
    if tokenizer.pad_token is None:
        # Decoder-only models (GPT-2, Llama, ...) ship without a pad token; batching needs one.
        if tokenizer.eos_token is None:
            raise ConfigError(
                f"tokenizer of {name_or_path!r} has neither a pad nor an eos token to pad with; add one "
                "(tokenizer.add_special_tokens({'pad_token': '[PAD]'}), then save it beside the model) or give "
                "tokenizer_name."
            )
        tokenizer.pad_token = tokenizer.eos_token
    # A sequence classifier finds each row's last real token on either side, but a model of absolute positions
    # (GPT-2) moves a left-padded row's tokens to other positions: many decoder tokenizers ship padding on the left,
    # and a row's score then hung on its batch's longest row and differed from the row alone (pipeline(), a plain
    # forward); training saw the same shift. Right padding leaves every row where it is alone, in every model.
    tokenizer.padding_side = "right"
    return tokenizer


def align_pad_token(model, tokenizer):
    """`model` with its config's `pad_token_id` set to the id its batches are padded with, as `Trainer` aligns them
    before training; returns it. A decoder classifier (GPT-2, Llama) reads each row's last token that is not
    `config.pad_token_id`: with another id in the config than the tokenizer pads with, it read a padded row's
    padding. Types whose positions count from the pad id keep the id they were built with (keep_position_padding)."""
    from hf_transfer.core.inference import keep_position_padding

    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None and getattr(model.config, "pad_token_id", None) != pad:
        model.config.pad_token_id = pad
    return keep_position_padding(model)


def model_file(name_or_path: str, filename: str, *, revision: str = "main", cache_dir=None) -> Path | None:
    """One file of a model: in its local folder, or from the Hub (its cache when offline); None when there is no such
    file, or it cannot be had (not on the Hub, offline and not cached)."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return folder / filename if (folder / filename).is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(name_or_path, filename, revision=revision, cache_dir=cache_dir))
    except Exception:  # not on the Hub, offline and not cached, no such file
        return None


def meta_classifier(config):
    """The classifier `config` describes, built on the meta device: module names and shapes, no weights."""
    import torch
    from transformers import AutoModelForSequenceClassification

    # A config of a repository's own code (--trust_remote_code, granted when the config loaded) names that code's
    # classifier: without the flag again, transformers asked on stdin, then refused the model.
    remote_code = type(config).__module__.startswith("transformers_modules")
    try:
        with torch.device("meta"):
            return AutoModelForSequenceClassification.from_config(config, trust_remote_code=remote_code)
    except ValueError as err:
        raise ConfigError(
            f"model type {config.model_type!r} has no sequence-classification head in transformers: {one_line(err)}"
        ) from None


def meta_layout(config, *, need_blocks: bool = True) -> ModelLayout:
    """The layer layout of the classifier `config` describes, built on the meta device: no weights are loaded."""
    return discover_layers(meta_classifier(config), need_blocks=need_blocks)


def is_sequence_classifier(config) -> bool:
    """Whether a checkpoint's config says it was saved as a sequence classifier (it has a trained head)."""
    return any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or [])


def is_regression(config) -> bool:
    """Whether a checkpoint's config makes its head a regressor: problem_type `regression`, or one output with no
    problem_type, which transformers also scores as a regression (MSE)."""
    problem = getattr(config, "problem_type", None)
    return problem == "regression" or (problem is None and getattr(config, "num_labels", 2) == 1)


def check_not_regression(config, name_or_path: str, command: str, role: str = "") -> None:
    """hf-transfer runs classifiers: a regression model's single output read as one class gave every row that class
    with probability 1.0 (predict), or its scores compared as label ids (evaluate), without a word."""
    if is_regression(config):
        problem = getattr(config, "problem_type", None)
        stated = f"problem_type {problem!r}" if problem else "one output and no problem_type"
        raise ConfigError(
            f"{role}{name_or_path!r} is a regression model ({stated}), and {command} runs classifiers only "
            "(single- or multi-label); give a model fine-tuned for classification (hf-transfer train replaces its "
            "head with --ignore_mismatched_sizes true)."
        )


def check_classifier_head(config, num_labels: int, name_or_path: str, ignore_mismatched_sizes: bool) -> None:
    """A checkpoint that already is a classifier must have as many labels as the data, unless told to re-head it."""
    if is_sequence_classifier(config) and config.num_labels != num_labels and not ignore_mismatched_sizes:
        raise ConfigError(
            f"model {name_or_path!r} is already a classifier with {config.num_labels} labels but the data has "
            f"{num_labels}; pass --ignore_mismatched_sizes true to replace its head."
        )


def load_classifier(
    name_or_path: str,
    config,
    *,
    revision="main",
    cache_dir=None,
    trust_remote_code=False,
    ignore_mismatched_sizes=False,
    head_from_elsewhere=False,
):
    """`name_or_path`'s classifier in float32; `head_from_elsewhere`: its head is replaced after loading (an adapter's
    saved head), so a freshly initialised one is not said."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification

    try:
        # Always fp32 master weights: transformers 5 loads a checkpoint in its stored dtype by default, and training an
        # fp16 checkpoint in fp16 breaks the fp16 grad scaler and loses updates in bf16/fp32 runs alike. Mixed
        # precision comes from autocast.
        with head_restored_later():  # transformers' report table, said in lines of ours below
            model, info = AutoModelForSequenceClassification.from_pretrained(
                name_or_path,
                config=config,
                dtype=torch.float32,
                revision=revision,
                cache_dir=cache_dir,
                trust_remote_code=trust_remote_code,
                ignore_mismatched_sizes=ignore_mismatched_sizes,
                output_loading_info=True,
            )
    except pickle.UnpicklingError:
        # transformers reads .bin checkpoints with torch.load(weights_only=True): it refused to run this pickle.
        raise ConfigError(
            f"cannot load the weights of {name_or_path!r}: its pickle (.bin) checkpoint holds more than tensors, and "
            "running it could execute arbitrary code, so it was refused. Use a safetensors checkpoint."
        ) from None
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise ConfigError(f"cannot load the weights of {name_or_path!r}: {one_line(err)}") from None
    say_loading(model, info, name_or_path, head_from_elsewhere)
    return model


def onnx_export_error(name_or_path: str, role: str = "") -> ConfigError:
    """The error for an ONNX folder given where PyTorch weights are needed (train, distill, export, merge; `role`)."""
    source = onnx_export_source(name_or_path)
    named = f"{role} {name_or_path!r}" if role else repr(name_or_path)
    return ConfigError(
        f"{named} is an ONNX export ({ONNX_FILE}, no PyTorch weights), which only predict and evaluate run; "
        f"give the PyTorch model folder it was exported from{f' ({source!r})' if source else ''} instead."
    )


def check_weights_complete(name_or_path: str) -> None:
    """A local folder holds PyTorch weights, and its safetensors files every byte their headers promise: an ONNX
    export, or a truncated download or copy, is refused in milliseconds, before the data is read and tokenized,
    instead of when the weights load. Reads only each file's header (8 bytes of length, then JSON); Hub ids and .bin
    checkpoints are left to the loader. Commands that run ONNX folders (predict, evaluate) do not call it on them."""
    import json
    import struct

    check_model_location(name_or_path)
    folder = Path(name_or_path).expanduser()
    if not (folder / "config.json").is_file():
        return  # a Hub id
    if is_onnx_folder(folder):
        raise onnx_export_error(name_or_path)
    _check_shards_present(name_or_path, folder)
    for path in sorted(folder.glob("*.safetensors")):
        size = path.stat().st_size
        try:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if 8 + length > size:
                    raise ValueError(f"its header needs {8 + length} bytes")
                header = json.loads(handle.read(length))
            ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
        except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            raise ConfigError(
                f"cannot load the weights of {name_or_path!r}: {path.name} is not a readable safetensors file "
                f"({one_line(err, 120)}); re-download or re-save the model."
            ) from None
        needed = 8 + length + max(ends, default=0)
        if size < needed:
            raise ConfigError(
                f"cannot load the weights of {name_or_path!r}: {path.name} is truncated ({size:,} bytes of the "
                f"{needed:,} its header describes); re-download or re-save the model."
            )


# The index a sharded checkpoint is saved with, each mapping every tensor to the file that holds it.
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _check_shards_present(name_or_path: str, folder: Path) -> None:
    """Every shard a sharded checkpoint's index names is in the folder: a copy or download that missed one failed
    only when the weights loaded, after the data was read and tokenized."""
    for index in SHARD_INDEXES:
        if not (folder / index).is_file():
            continue
        weight_map = read_json_file(folder / index, "shard index").get("weight_map")
        files = sorted({str(f) for f in weight_map.values()}) if isinstance(weight_map, dict) else []
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise ConfigError(
                f"cannot load the weights of {name_or_path!r}: its {index} names {len(files)} shards, but the folder "
                f"lacks {', '.join(missing[:3])}; re-download or re-save the model."
            )


# safetensors' names of the half-precision dtypes a checkpoint is shared in.
_HALF_DTYPES = {"F16": "float16", "BF16": "bfloat16"}


def stored_half_dtype(folder: str | Path, revision: str = "main") -> str | None:
    """`float16` or `bfloat16` when every floating tensor of the checkpoint in `folder` is stored in it (read from
    the safetensors headers, or from config.json's `dtype`/`torch_dtype` for a .bin checkpoint); None for fp32 or a
    mix. A Hub id is read in its snapshot (the cache) at `revision`. Models load in fp32 here (`load_classifier`):
    this is the dtype to save them back in."""
    from safetensors import SafetensorError, safe_open

    if not Path(folder).expanduser().is_dir():
        config_file = model_file(str(folder), "config.json", revision=revision or "main")
        if config_file is None:
            return None
        folder = config_file.parent  # the snapshot folder, beside the weights the model was loaded from
    folder = Path(folder).expanduser()
    index = folder / SHARD_INDEXES[0]
    files = ["model.safetensors"]
    if index.is_file():
        files = sorted({str(f) for f in (read_json_file(index, "shard index").get("weight_map") or {}).values()})
    if not files or not (folder / files[0]).is_file():
        config = read_json_file(folder / "config.json", "config") if (folder / "config.json").is_file() else {}
        stated = config.get("dtype") or config.get("torch_dtype")
        return stated if stated in _HALF_DTYPES.values() else None
    dtypes = set()
    try:
        for name in files:
            with safe_open(str(folder / name), "pt") as weights:
                dtypes |= {weights.get_slice(key).get_dtype() for key in weights.keys()}
    except (SafetensorError, OSError):
        return None
    floating = {d for d in dtypes if d.startswith(("F", "BF"))}
    return _HALF_DTYPES.get(floating.pop()) if len(floating) == 1 else None
