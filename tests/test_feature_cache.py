"""Frozen-trunk feature caching: the cached forward is the model's own, training on the cache matches naive freezing,
the cache is hit, rebuilt when corrupted, and refused where it cannot apply."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from hf_transfer.cli import main
from hf_transfer.core.caching import DATA_FILE
from hf_transfer.core.layers import ModelLayout, discover_layers
from hf_transfer.errors import ConfigError
from hf_transfer.train.feature_cache import (
    FEATURE_COLUMN,
    FEATURE_ROW,
    SUPPORTED_MODEL_TYPES,
    FrozenFeatureCollator,
    FrozenFeatures,
    _trunk_output,
    cached_trunk,
    embeddings_module,
    trunk_depth,
    trunk_fingerprint,
)

WORDS = "good great fine bad awful poor nice meh thing number very".split()
TINY = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 37}
CONFIGS = {
    "bert": TINY,
    "roberta": {**TINY, "pad_token_id": 1},
    "xlm-roberta": {**TINY, "pad_token_id": 1},
    "electra": {**TINY, "embedding_size": 32},
    "distilbert": {"dim": 32, "n_layers": 3, "n_heads": 2, "hidden_dim": 37},
    "gpt2": {"n_embd": 32, "n_layer": 3, "n_head": 2},
    "llama": {**TINY, "num_key_value_heads": 2},
    "qwen2": {**TINY, "num_key_value_heads": 2},
}


def tiny_classifier(model_type, seed=0, **extra):
    torch.manual_seed(seed)
    kwargs = {"vocab_size": 99, "pad_token_id": 0, **CONFIGS[model_type], **extra}
    return AutoModelForSequenceClassification.from_config(AutoConfig.for_model(model_type, **kwargs))


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_cached_forward_is_the_models_forward(model_type):
    model = tiny_classifier(model_type).eval()
    pad = model.config.pad_token_id
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, pad, pad, pad]])
    mask = (ids != pad).long()
    layout = discover_layers(model)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        for k in range(1, layout.depth + 1):
            # Padded positions hold zeros, as FrozenFeatureCollator pads them.
            hidden = _trunk_output(model, layout, k, {"input_ids": ids, "attention_mask": mask}) * mask[..., None]
            with cached_trunk(model, layout, k, hidden):
                torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, full)
            with cached_trunk(model, layout, k, hidden + torch.randn_like(hidden)):
                assert not torch.allclose(model(input_ids=ids, attention_mask=mask).logits, full, atol=1e-4)
        # The context leaves the model as it was.
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, full, rtol=0, atol=0)


SKIPPED_EMBEDDINGS = {
    "bert": "bert.embeddings",
    "roberta": "roberta.embeddings",
    "xlm-roberta": "roberta.embeddings",
    "distilbert": "distilbert.embeddings",
    "llama": "model.embed_tokens",
    "qwen2": "model.embed_tokens",
    "electra": None,  # a projection can sit between the embeddings and block 0
    "gpt2": None,  # token and position embeddings are summed inside GPT2Model.forward
}


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_a_cached_step_does_not_run_embeddings_whose_output_it_throws_away(model_type, monkeypatch):
    model = tiny_classifier(model_type).eval()
    layout = discover_layers(model)
    name = embeddings_module(model, layout)
    assert name == SKIPPED_EMBEDDINGS[model_type]
    if name is None:
        return
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    calls = []
    embeddings_class = type(model.get_submodule(name))
    original = embeddings_class.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(embeddings_class, "forward", counting)
    with torch.no_grad():
        full = model(input_ids=ids).logits
        hidden = _trunk_output(model, layout, 2, {"input_ids": ids})
        calls.clear()
        with cached_trunk(model, layout, 2, hidden):
            torch.testing.assert_close(model(input_ids=ids).logits, full)
        assert calls == []
        model(input_ids=ids)
        assert calls == [1]  # and the context restored it


def test_trunk_fingerprint_covers_the_trunk_only():
    model = tiny_classifier("bert")
    layout = discover_layers(model)
    key = trunk_fingerprint(model, layout, 2)
    with torch.no_grad():
        model.bert.encoder.layer[2].output.dense.weight.add_(1.0)
        model.classifier.weight.add_(1.0)
        model.config.id2label = {0: "x", 1: "y"}
    assert trunk_fingerprint(model, layout, 2) == key  # blocks above the trunk, the head, the labels: same cache
    assert trunk_fingerprint(model, layout, 3) != key
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight.add_(1e-6)
    assert trunk_fingerprint(model, layout, 2) != key
    model = tiny_classifier("bert", hidden_act="relu")
    assert trunk_fingerprint(model, discover_layers(model), 2) != trunk_fingerprint(tiny_classifier("bert"), layout, 2)


LAYOUT = ModelLayout(
    embeddings=("emb",),
    blocks=(("b0.w", "b0.v"), ("b1.w",), ("b2.w",)),
    head=("head",),
    block_modules=("b0", "b1", "b2"),
)


@pytest.mark.parametrize(
    "frozen, k",
    [({"emb", "b0.w", "b0.v"}, 1), ({"emb", "b0.w", "b0.v", "b1.w", "b2.w"}, 3), ({"emb", "b0.w", "b0.v", "head"}, 1)],
)
def test_trunk_depth(frozen, k):
    assert trunk_depth(LAYOUT, frozen) == k


@pytest.mark.parametrize(
    "frozen, model_type, message",
    [
        ({"b0.w", "b0.v"}, None, "embeddings train"),
        ({"emb"}, None, "block 0 trains"),
        ({"emb", "b0.w"}, None, "block 0 trains"),  # a pattern that freezes block 0 partly
        ({"emb", "b1.w"}, None, "block 0 trains"),  # non-contiguous
        ({"emb", "b0.w", "b0.v", "b2.w"}, None, r"blocks \[2\] above it"),  # non-contiguous
        ({"emb", "b0.w", "b0.v"}, "albert", "model type 'albert'"),
    ],
)
def test_trunk_depth_refuses(frozen, model_type, message):
    with pytest.raises(ConfigError, match=message):
        trunk_depth(LAYOUT, frozen, model_type)


def feature_store(arrays, dtype="float16", rows_per_chunk=None):
    """A `FrozenFeatures` over a cache dataset holding `arrays`, split into several arrow chunks when asked."""
    import datasets

    hidden = arrays[0].shape[1]
    features = datasets.Features({FEATURE_COLUMN: datasets.Array2D(shape=(None, hidden), dtype=dtype)})
    parts = (
        [arrays]
        if rows_per_chunk is None
        else [arrays[i : i + rows_per_chunk] for i in range(0, len(arrays), rows_per_chunk)]
    )
    cache = datasets.concatenate_datasets(
        [
            datasets.Dataset.from_dict({FEATURE_COLUMN: [a.astype(dtype) for a in part]}, features=features)
            for part in parts
        ]
    )
    return FrozenFeatures(cache)


def test_collator_pads_features_like_tokens_on_the_right():
    import numpy as np

    tokenizer = word_tokenizer()
    tokenizer.padding_side = "left"
    rows = [{"input_ids": [4, 5], "labels": 1}, {"input_ids": [6], "labels": 0}]
    plain = FrozenFeatureCollator(tokenizer)(rows)
    assert plain["input_ids"].tolist() == [[4, 5], [0, 6]] and FEATURE_COLUMN not in plain  # evaluation: as given
    store = feature_store([np.full((1, 3), 7.0), np.ones((2, 3)), np.ones((1, 3))])
    for row, cache_row in zip(rows, (1, 2), strict=True):
        row[FEATURE_ROW] = cache_row
    batch = FrozenFeatureCollator(tokenizer, store)(rows)
    assert batch["input_ids"].tolist() == [[4, 5], [6, 0]] and batch["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert batch["labels"].tolist() == [1, 0] and FEATURE_ROW not in batch
    assert batch[FEATURE_COLUMN].dtype == torch.float32 and batch[FEATURE_COLUMN].shape == (2, 2, 3)
    assert batch[FEATURE_COLUMN][1].sum(-1).tolist() == [3, 0]


def test_frozen_features_read_every_chunk_without_copying_the_cache():
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 4)).astype(np.float32) for n in (3, 1, 5, 2, 4)]
    store = feature_store(arrays, dtype="float32", rows_per_chunk=2)
    assert len(store.chunks) == 3 and len(store) == 5
    for i, array in enumerate(arrays):
        assert np.array_equal(store.row(i), array)
    assert not any(chunk.flags.owndata for chunk in store.chunks)  # views of the arrow buffers
    batch = store.batch([4, 1, 2], 6)
    assert batch.shape == (3, 6, 4)
    assert torch.equal(batch[0, :4], torch.from_numpy(arrays[4])) and not batch[0, 4:].any()
    assert torch.equal(batch[2, :5], torch.from_numpy(arrays[2])) and not batch[1, 1:].any()
    reopened = pickle.loads(pickle.dumps(store))  # a dataloader worker's copy
    assert np.array_equal(reopened.row(3), arrays[3])


# --- end to end through the CLI --------------------------------------------------------------------------------------


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *WORDS, *map(str, range(40))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import pandas as pd

    root = tmp_path_factory.mktemp("feature-cache-data")
    texts = [f"{WORDS[i % 8]} thing " + "very " * (i % 5) + f"number {i}" for i in range(40)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(40)]
    pd.DataFrame({"text": texts[:32], "label": labels[:32]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"text": texts[32:], "label": labels[32:]}).to_csv(root / "dev.csv", index=False)
    return root


def model_dir(root, model_type):
    """A tiny classifier with dropout 0.1 everywhere, GPT-2's embedding dropout (`transformer.drop`, outside its
    embedding modules, between them and block 0) included: naive freezing keeps it off with the embeddings frozen,
    as the cache computes the trunk."""
    path = root / model_type
    if not path.exists():
        tokenizer = word_tokenizer()
        extra = {"embd_pdrop": 0.1, "resid_pdrop": 0.1} if model_type == "gpt2" else {"hidden_dropout_prob": 0.1}
        model = tiny_classifier(model_type, vocab_size=len(tokenizer), num_labels=2, **extra)
        model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return path


def train(model, data, out, *extra):
    argv = ["train", "--model_name_or_path", str(model), "--train_file", str(data / "train.csv")]
    argv += ["--validation_file", str(data / "dev.csv"), "--output_dir", str(out), "--num_train_epochs", "2"]
    argv += ["--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--logging_steps", "1"]
    argv += ["--eval_strategy", "epoch", "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no"]
    assert main([*argv, "--disable_tqdm", "true", "--seed", "7", *extra]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(out)
    return record, dict(model.named_parameters())


def losses(record):
    return [(e["step"], e[key]) for e in record["log_history"] for key in ("loss", "eval_loss") if key in e]


def assert_same_training(a, b, atol=1e-5):
    (record_a, params_a), (record_b, params_b) = a, b
    steps_a, steps_b = losses(record_a), losses(record_b)
    assert [s for s, _ in steps_a] == [s for s, _ in steps_b] and len(steps_a) > 8
    torch.testing.assert_close([v for _, v in steps_a], [v for _, v in steps_b], rtol=1e-4, atol=atol)
    for name in params_a:
        torch.testing.assert_close(params_a[name], params_b[name], rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize(
    "model_type, freeze",
    [
        ("bert", ["--freeze_embeddings", "true", "--freeze_layers", "2"]),
        ("gpt2", ["--freeze_embeddings", "true", "--freeze_layers", "1"]),
        ("gpt2", ["--train_head_only", "true"]),
    ],
)
def test_training_on_the_cache_matches_naive_freezing(tmp_path, data, model_type, freeze, monkeypatch, capsys):
    import hf_transfer.train.trainer

    model = model_dir(tmp_path, model_type)
    cache = tmp_path / "cache"
    naive = train(model, data, tmp_path / "naive", *freeze)
    assert "frozen_features" not in capsys.readouterr().out
    calls = []

    def counting(*args):
        calls.append(args[-1].shape)
        return cached_trunk(*args)

    monkeypatch.setattr(hf_transfer.train.trainer, "cached_trunk", counting)
    cached = train(
        model,
        data,
        tmp_path / "cached",
        *freeze,
        "--cache_frozen_features",
        "true",
        "--frozen_features_cache_dir",
        str(cache),
        "--frozen_features_dtype",  # float32 storage: the cached states are the naive run's, to float precision
        "float32",
    )
    assert_same_training(naive, cached)
    assert len(calls) == 16  # every training step ran on cached states (2 epochs of 8 batches); evaluation did not

    info = cached[0]["frozen_features"]
    assert info["hit"] is False and info["rows"] == 32 and info["disk_bytes"] > 32 * 32 * 4
    assert info["computed_in"] == "fp32"  # the trunk runs outside the run's autocast, whatever its precision
    summary = capsys.readouterr().out  # the end-of-run summary names the cache's footprint
    assert "frozen_features_disk_mib" in summary and str(cache) in summary
    assert info["path"].startswith(str(cache)) and info["frozen_blocks"] == (
        3 if "--train_head_only" in freeze else 2 if model_type == "bert" else 1
    )

    # Frozen parameters are bit-identical to the checkpoint's, the others moved.
    before = dict(AutoModelForSequenceClassification.from_pretrained(model).named_parameters())
    layout = discover_layers(AutoModelForSequenceClassification.from_pretrained(model))
    trunk = set(layout.embeddings).union(*layout.blocks[: info["frozen_blocks"]])
    for name, param in cached[1].items():
        assert torch.equal(param, before[name]) == (name in trunk), name


def test_cache_hit_and_corrupted_cache_rebuilt(tmp_path, data):
    model = model_dir(tmp_path, "bert")
    args = ["--freeze_embeddings", "true", "--freeze_layers", "1", "--cache_frozen_features", "true"]
    args += ["--frozen_features_cache_dir", str(tmp_path / "cache"), "--num_train_epochs", "1"]
    first = train(model, data, tmp_path / "first", *args, "--frozen_features_dtype", "float32")
    second = train(model, data, tmp_path / "second", *args, "--frozen_features_dtype", "float32")
    assert first[0]["frozen_features"]["hit"] is False and second[0]["frozen_features"]["hit"] is True
    assert second[0]["frozen_features"]["path"] == first[0]["frozen_features"]["path"]
    assert_same_training(first, second, atol=0)

    arrow = tmp_path / "cache" / first[0]["frozen_features"]["key"] / DATA_FILE
    raw = bytearray(arrow.read_bytes())
    raw[-100:-90] = b"\x7f" * 10
    arrow.write_bytes(bytes(raw))
    third = train(model, data, tmp_path / "third", *args, "--frozen_features_dtype", "float32")
    assert third[0]["frozen_features"]["hit"] is False
    assert_same_training(first, third, atol=0)

    # Another storage dtype is another cache; float16 storage (the default) halves the features on disk.
    half = train(model, data, tmp_path / "half", *args)
    assert half[0]["frozen_features"]["dtype"] == "float16"
    assert half[0]["frozen_features"]["key"] != first[0]["frozen_features"]["key"]
    assert half[0]["frozen_features"]["disk_bytes"] < 0.7 * first[0]["frozen_features"]["disk_bytes"]
    assert_same_training(first, half, atol=1e-2)


def test_linear_probe_on_the_cache_matches_training_the_head_alone(tmp_path, data):
    # LP-FT's probe trains on the cached trunk: with float32 storage in a cache folder of the user's choosing (both
    # were refused without cache_frozen_features), it is train_head_only to float precision, GPT-2's embedding
    # dropout included.
    model = model_dir(tmp_path, "gpt2")
    common = ["--eval_strategy", "no", "--num_train_epochs"]
    probe = ["--linear_probe_epochs", "2", "--linear_probe_learning_rate", "1e-2"]
    probe += ["--frozen_features_dtype", "float32"]
    probe += ["--frozen_features_cache_dir", str(tmp_path / "cache"), *common, "0"]
    record, _ = train(model, data, tmp_path / "lp", *probe)
    assert record["linear_probe"]["on_cached_trunk"] and record["linear_probe"]["feature_cache"]["dtype"] == "float32"
    assert record["linear_probe"]["feature_cache"]["path"].startswith(str(tmp_path / "cache"))
    _, head_only = train(
        model, data, tmp_path / "head", "--train_head_only", "true", "--learning_rate", "1e-2", *common, "2"
    )
    lp = dict(AutoModelForSequenceClassification.from_pretrained(tmp_path / "lp" / "linear_probe").named_parameters())
    assert not torch.equal(lp["score.weight"], AutoModelForSequenceClassification.from_pretrained(model).score.weight)
    for name, param in head_only.items():
        torch.testing.assert_close(lp[name], param, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("value", [1e6, float("nan")], ids=["overflow", "nan"])
def test_a_trunk_that_overflows_float16_storage_is_one_line_and_leaves_no_cache(tmp_path, data, capsys, value):
    """States beyond ±65504 cannot be stored as float16 (the default): the build stopped with a traceback ending in
    the advice to store float32. Now that advice is the one line (exit 2), and no half-built cache entry stays."""
    source = model_dir(tmp_path, "bert")
    model = AutoModelForSequenceClassification.from_pretrained(source)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.LayerNorm.weight.fill_(value)  # NaN: a broken trunk, not cached either
    model.save_pretrained(tmp_path / "loud")
    (tmp_path / "loud" / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            (tmp_path / "loud" / name).write_bytes((source / name).read_bytes())
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["train", "--model_name_or_path", str(tmp_path / "loud"), "--train_file", str(data / "train.csv")]
    argv += ["--validation_file", str(data / "dev.csv"), "--output_dir", str(out), "--freeze_embeddings", "true"]
    argv += ["--freeze_layers", "1", "--cache_frozen_features", "true", "--frozen_features_cache_dir", str(cache)]
    capsys.readouterr()
    assert main([*argv, "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "hf-transfer train: error: the frozen trunk's hidden states overflow float16 storage (|value| > 65504); set "
        "frozen_features_dtype: float32."
        if value == 1e6
        else "hf-transfer train: error: the frozen trunk's hidden states hold NaN or inf (its weights, or the model's "
        "numerics, are broken): check the model; nothing was cached."
    ]
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing, or only empty folders
    assert not out.exists()
