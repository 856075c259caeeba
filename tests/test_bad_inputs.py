"""The bad-input matrix, through the real command line in a subprocess: every case exits with status 2, prints one
line on stderr that names the problem (no traceback), and leaves `output_dir` absent or untouched."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_hub import closed_port_url

REPO = Path(__file__).resolve().parent.parent
COMMON = ["--num_train_epochs", "1", "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no"]


def _csv(path, texts, labels, label_column="label"):
    pd.DataFrame({"text": texts, label_column: labels}).to_csv(path, index=False)
    return path


def _classifier(path, tokenizer_dir, labels, **config_extra):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    sizes = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = BertConfig(
        **{**sizes, **config_extra},
        max_position_embeddings=128,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return path


def _albert(path, tokenizer_dir):
    from transformers import AlbertConfig, AlbertModel, AutoTokenizer

    config = AlbertConfig(
        vocab_size=30522, embedding_size=16, hidden_size=32, num_attention_heads=2, intermediate_size=64
    )
    AlbertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return path


def _gpt2(path, tokenizer_dir):
    """A tiny GPT-2 body: its classification head `score` is a Linear without bias."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    config = GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=102)
    config.eos_token_id = 102
    GPT2Model(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return path


def _t5(path, tokenizer_dir):
    """A tiny T5 saved with a BERT tokenizer, which adds no `</s>`: T5 classifies from that token."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=30522, d_model=32, d_ff=37, num_layers=2, num_heads=2, d_kv=16)
    T5ForConditionalGeneration(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert_dir):
    """Files for every case: good data, bad data, good and broken models."""
    root = tmp_path_factory.mktemp("bad-inputs")
    texts = [f"{w} thing {i}" for i, w in enumerate(["good", "bad", "fine", "awful"] * 6)]
    labels = ["pos", "neg", "pos", "neg"] * 6
    w = {"root": root, "model": tiny_bert_dir}
    w["train"] = _csv(root / "train.csv", texts, labels)
    w["dev"] = _csv(root / "dev.csv", texts[:8], labels[:8])
    w["unseen"] = _csv(root / "unseen.csv", ["x"], ["neutral"])
    w["case_dev"] = _csv(root / "case_dev.csv", ["x", "y"], ["Pos", "neg"])
    w["id_outside"] = _csv(root / "id_outside.csv", ["x", "y", "z"], [0, 1, 2])
    w["no_text"] = root / "no_text.csv"
    pd.DataFrame({"body": ["x", "y"]}).to_csv(w["no_text"], index=False)
    w["small"] = _csv(root / "small.csv", ["good a", "bad b", "good c", "bad d"], ["pos", "neg", "pos", "neg"])
    # one "neg" row: it stays in train when a split is carved, so a calibration split never holds that class
    w["lopsided"] = _csv(root / "lopsided.csv", ["good a", "bad b", "good c", "good d"], ["pos", "neg", "pos", "pos"])
    w["blank"] = _csv(root / "blank.csv", ["  ", ""], ["pos", "neg"])
    w["empty"] = root / "empty.csv"
    w["empty"].write_text("")
    w["nan_labels"] = root / "nan.csv"
    w["nan_labels"].write_text("text,label\na,\nb,\n")
    w["mixed"] = root / "mixed.jsonl"
    w["mixed"].write_text("\n".join(json.dumps({"text": f"t{i}", "label": [1, "two"][i % 2]}) for i in range(6)))
    w["not_lists"] = root / "notlists.jsonl"
    rows = [{"text": "a", "label": ["x"]}, {"text": "b", "label": "y"}]
    w["not_lists"].write_text("\n".join(json.dumps(r) for r in rows))
    w["multi"] = root / "multi.jsonl"
    w["multi"].write_text(
        "\n".join(json.dumps({"text": f"t{i}", "label": [["x"], ["y"], ["x", "y"]][i % 3]}) for i in range(6))
    )
    w["nested"] = root / "nested.jsonl"
    w["nested"].write_text(
        "\n".join(json.dumps({"text": f"t{i}", "label": [["x"], [["y"]]][i % 2]}) for i in range(4))
    )
    w["no_labels"] = root / "no_labels.jsonl"
    w["no_labels"].write_text("\n".join(json.dumps({"text": f"t{i}", "label": []}) for i in range(4)))
    w["binary"] = root / "binary.csv"
    w["binary"].write_bytes(bytes(range(256)) * 64)
    w["folder_csv"] = root / "folder.csv"  # a folder with a data file's name
    w["folder_csv"].mkdir()
    w["fifo"] = root / "fifo.csv"  # a named pipe: reading it would block, and rows are read more than once
    os.mkfifo(w["fifo"])
    w["twice"] = root / "twice.csv"  # pandas read the second 'label' as 'label.1'
    w["twice"].write_text("text,label,label\n" + "".join(f"{t},{y},{y}\n" for t, y in zip(texts, labels, strict=True)))
    w["utf16"] = root / "utf16.csv"  # Windows Notepad's "Unicode": read as UTF-8 it was a decode error naming a byte
    w["utf16"].write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(texts, labels, strict=True)), "utf-16")
    w["semicolons"] = root / "semicolons.csv"  # a spreadsheet's export in a European locale: one column 'text;label'
    w["semicolons"].write_text("text;label\n" + "".join(f"{t};{y}\n" for t, y in zip(texts, labels, strict=True)))
    w["twice_parquet"] = root / "twice.parquet"  # a traceback: df["label"] was a frame of two columns
    table = pa.table([pa.array(texts), pa.array(labels), pa.array(labels)], names=["text", "label", "label"])
    pq.write_table(table, w["twice_parquet"])
    w["bare_adapter"] = root / "bare-adapter"  # an adapter saved by PEFT alone: no run record with its labels
    w["bare_adapter"].mkdir()
    (w["bare_adapter"] / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": str(tiny_bert_dir)})
    )
    w["txt"] = root / "train.txt"
    w["txt"].write_text("text,label\na,pos\n")
    w["bad_gz"] = root / "train.csv.gz"  # a name that promises gzip over bytes that are not
    w["bad_gz"].write_bytes(b"text,label\na,pos\n")
    w["parquet_gz"] = root / "train.parquet.gz"  # parquet compresses its own pages
    w["parquet_gz"].write_bytes(b"")
    w["zst"] = root / "rows.csv.zst"  # zstd: needs a package this install lacks
    w["zst"].write_bytes(b"")
    w["bad_yaml"] = root / "bad.yaml"
    w["bad_yaml"].write_text("learning_rate: [1, 2\n")
    w["train_yaml"] = root / "train.yaml"
    w["train_yaml"].write_text("text_column_name: text\nbase_model_hub_id: org/tiny\nlearning_rate: 1.0e-4\n")
    # Config files as users write them (seventeenth review); the folder's name has a space and a non-ASCII letter.
    configs = root / "my configs é"
    configs.mkdir()
    for name, text in {
        "latin1": "text_column_name: caf\xe9\n",
        "dash_twice": "learning_rate: 1.0e-4\nlearning-rate: 2.0e-4\n",
        "env_form": "run_name: ${HF_TRANSFER_UNSET_VAR-x}\n",
        "nested": "training_args:\n  learning_rate: 1.0e-4\n",
        "accelerate": "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\n",
        "tabs": "seed: 3\nlabel_mapping:\n\t1: bad\n",
    }.items():
        w[f"{name}_yaml"] = configs / f"{name}.yaml"
        w[f"{name}_yaml"].write_bytes(text.encode("latin-1"))
    w["no_config"] = root / "no-config"
    w["no_config"].mkdir()
    (w["no_config"] / "model.safetensors").write_bytes(b"")
    w["corrupt"] = root / "corrupt"
    _classifier(w["corrupt"], tiny_bert_dir, ["neg", "pos"])
    (w["corrupt"] / "model.safetensors").write_bytes(b"\x00" * 64)
    w["remote"] = root / "remote-code"
    _classifier(w["remote"], tiny_bert_dir, ["neg", "pos"])
    config = json.loads((w["remote"] / "config.json").read_text())
    config.update(model_type="my-custom-bert", auto_map={"AutoConfig": "modeling_custom.CustomConfig"})
    (w["remote"] / "config.json").write_text(json.dumps(config))
    w["albert"] = _albert(root / "albert", tiny_bert_dir)
    w["gpt2"] = _gpt2(root / "gpt2", tiny_bert_dir)
    w["t5"] = _t5(root / "t5", tiny_bert_dir)
    w["teacher"] = _classifier(root / "teacher", tiny_bert_dir, ["neg", "pos"])
    w["teacher3"] = _classifier(root / "teacher3", tiny_bert_dir, ["a", "b", "c"])
    w["labelled_adapter"] = root / "labelled-adapter"  # saved by PEFT on a base whose config names the labels
    w["labelled_adapter"].mkdir()
    (w["labelled_adapter"] / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": str(w["teacher"])})
    )
    w["wide"] = _bare_bert(root / "wide", intermediate_size=128)
    w["deep"] = _bare_bert(root / "deep", num_hidden_layers=3)
    w["clash"] = root / "clash.csv"
    pd.DataFrame({"text": ["good", "bad"], "score": [1, 2]}).to_csv(w["clash"], index=False)
    w["onnx"] = _onnx_folder(root / "onnx", w["teacher"])
    # What the few-shot route leaves: one encoder block more than its base, and a record saying it added it.
    w["few_shot"] = _classifier(root / "few-shot", tiny_bert_dir, ["neg", "pos"], num_hidden_layers=3)
    head = {"mean_pooling_block": 2, "num_hidden_layers": 3}
    (w["few_shot"] / "hf_transfer_run.json").write_text(json.dumps({"task": "train", "few_shot": {"head": head}}))
    w["pooling"] = _with_mean_pooling_block(root / "pooling", w["teacher"])  # blocks 0, 1 and the pooling block 2
    # 64 embedding rows, saved with a 30522-token tokenizer: another model's (an IndexError once the weights loaded)
    w["small_vocab"] = _classifier(root / "small-vocab", tiny_bert_dir, ["neg", "pos"], vocab_size=64)
    w["small_vocab_base"] = _bare_bert(root / "small-vocab-base", vocab_size=64)
    # Folders other tools write: a regression model, one with a single output and no problem_type (transformers scores
    # it as a regression too), a SetFit model and a sentence-transformers one (a body, no transformers head), and a
    # sharded checkpoint copied without one of its shards.
    w["regression"] = _classifier(root / "regression", tiny_bert_dir, ["score"], problem_type="regression")
    w["one_output"] = _classifier(root / "one-output", tiny_bert_dir, ["LABEL_0"])
    w["setfit"] = _embedding_folder(_bare_bert(root / "setfit"), tiny_bert_dir, setfit=True)
    w["sentence_transformers"] = _embedding_folder(_bare_bert(root / "st"), tiny_bert_dir)
    w["shard_missing"] = _sharded_without_one(root / "shard-missing", w["teacher"])
    return w


def _embedding_folder(path, tokenizer_dir, setfit=False):
    """The files sentence-transformers (and SetFit, with its head) write beside a transformers body."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    (path / "modules.json").write_text(json.dumps(modules))
    if setfit:
        (path / "config_setfit.json").write_text(json.dumps({"labels": ["neg", "pos"], "normalize_embeddings": False}))
        (path / "model_head.pkl").write_bytes(b"a pickled LogisticRegression")
    return path


def _sharded_without_one(path, classifier):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    AutoModelForSequenceClassification.from_pretrained(classifier).save_pretrained(path, max_shard_size="50KB")
    AutoTokenizer.from_pretrained(classifier).save_pretrained(path)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1, shards
    (path / shards[1]).unlink()
    return path


def _with_mean_pooling_block(path, classifier):
    """`classifier` with the few-shot route's mean-pooling block appended, as the route's teachers end."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_transfer.train.few_shot_head import append_mean_pooling_block, head_parts

    model = AutoModelForSequenceClassification.from_pretrained(classifier)
    append_mean_pooling_block(model, head_parts(model))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(classifier).save_pretrained(path)
    return path


def _onnx_folder(path, classifier):
    """What `export` writes, as far as resolving it goes (config, tokenizer, an .onnx file); no real graph."""
    import shutil

    shutil.copytree(classifier, path, ignore=shutil.ignore_patterns("*.safetensors"))
    (path / "model.onnx").write_bytes(b"not a graph")
    return path


def _bare_bert(path, **changes):
    from transformers import BertConfig, BertModel

    config = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(BertConfig(**{**config, "max_position_embeddings": 128, **changes})).save_pretrained(path)
    return path


def _common(extra) -> list[str]:
    """COMMON less the flags a case gives itself (a flag given twice is warned about, a second stderr line)."""
    pairs = zip(COMMON[::2], COMMON[1::2], strict=True)
    return [token for flag, value in pairs if flag not in extra for token in (flag, value)]


def train(w, *extra, train_file=None, dev=None, model=None):
    return [
        "train",
        "--model_name_or_path",
        str(model or w["model"]),
        "--train_file",
        str(train_file or w["train"]),
        "--validation_file",
        str(dev or w["dev"]),
        *_common(extra),
        *extra,
    ]


def distill(w, *extra, teacher=None):
    return [
        "distill",
        "--teacher_model_name_or_path",
        str(teacher or w["teacher"]),
        "--train_file",
        str(w["train"]),
        "--validation_file",
        str(w["dev"]),
        *_common(extra),
        *extra,
    ]


def merge(w, *extra, pretrained=None, finetuned=None):
    return [
        "merge",
        "--pretrained",
        str(pretrained or w["model"]),
        "--finetuned",
        str(finetuned or w["teacher"]),
        *extra,
    ]


def evaluate(w, *extra, model=None, validation=None):
    return [
        "evaluate",
        "--model_name_or_path",
        str(model or w["teacher"]),
        "--validation_file",
        str(validation or w["dev"]),
        *extra,
    ]


def predict(w, *extra, model=None, input_file=None):
    return [
        "predict",
        "--model_name_or_path",
        str(model or w["teacher"]),
        "--input_file",
        str(input_file or w["dev"]),
        *extra,
    ]


def export(w, *extra, model=None):
    return ["export", str(model or w["teacher"]), *extra]


def sweep(w, *extra, **kw):
    alphas = [] if "--alphas" in extra else ["--alphas", "0,0.5,1"]  # a case's own is not given twice
    return merge(w, *alphas, "--validation_file", str(w["dev"]), *extra, **kw)


def search(w, *extra, space=None, **kw):
    trials = [] if "--n_trials" in extra else ["--n_trials", "2"]  # a case's own is not given twice
    return ["search", *train(w, **kw)[1:], *trials, *(["--search_space", space] if space else []), *extra]


CACHE = ["--cache_frozen_features", "true", "--freeze_embeddings", "true"]

# (case, argv builder, words the message must contain)
# The start of what a refusal of an adapter PEFT saved itself says to run.
PEFT_MERGE = 'python -c "from peft import AutoPeftModelForSequenceClassification as A;'

CASES = [
    # config
    ("unknown field", lambda w: train(w, "--freeze_layer", "1"), "did you mean 'freeze_layers'"),
    ("wrong type", lambda w: train(w, "--num_train_epochs", "many"), "num_train_epochs"),
    # Both trained to the end, then crashed at the first metrics with a traceback and a half-written output_dir.
    ("prediction_loss_only", lambda w: train(w, "--prediction_loss_only", "true"), "prediction_loss_only is not"),
    # Trainer cast the model to half for the final evaluation, and it was saved so; the record said fp32.
    ("fp16_full_eval", lambda w: train(w, "--fp16_full_eval", "true"), "fp16_full_eval is not supported: Trainer"),
    ("bf16_full_eval", lambda w: distill(w, "--bf16_full_eval", "true"), "bf16_full_eval is not supported: Trainer"),
    ("label_names", lambda w: train(w, "--label_names", "[foo]"), "label_names ['foo'] is not supported"),
    ("invalid yaml", lambda w: train(w, "--config", str(w["bad_yaml"])), "not valid yaml"),
    # a field of another command: named as such, not "did you mean" a near name of this one
    (
        "a distill field given to train",
        lambda w: train(w, "--alpha", "0.5"),
        "'alpha' is a field of distill and merge",
    ),
    (
        "a train config given to evaluate",
        lambda w: evaluate(w, "--config", str(w["train_yaml"])),
        "'base_model_hub_id' is a field of train, distill and merge, not of evaluate (from",
    ),
    ("a train field given to predict", lambda w: predict(w, "--learning_rate", "1e-4"), "not of predict"),
    ("missing config file", lambda w: train(w, "--config", str(w["root"] / "nope.yaml")), "does not exist"),
    ("config not in UTF-8", lambda w: train(w, "--config", str(w["latin1_yaml"])), "is not utf-8 text (byte 0xe9"),
    (
        "config sets a field with _ and with -",
        lambda w: train(w, "--config", str(w["dash_twice_yaml"])),
        "sets learning_rate twice, as 'learning_rate' and 'learning-rate'",
    ),
    ("config with a ${VAR-x}", lambda w: train(w, "--config", str(w["env_form_yaml"])), "write ${var} or"),
    ("config with a nested section", lambda w: train(w, "--config", str(w["nested_yaml"])), "config files are flat"),
    (
        "accelerate config given to train",
        lambda w: train(w, "--config", str(w["accelerate_yaml"])),
        "a setting of accelerate's own config",
    ),
    ("config indented with tabs", lambda w: distill(w, "--config", str(w["tabs_yaml"])), "spaces, not tabs"),
    (
        "config given twice",
        lambda w: search(w, "--config", str(w["nested_yaml"]), "--config", str(w["tabs_yaml"])),
        "--config is given 2 times",
    ),
    ("head only + freeze_layers", lambda w: train(w, "--train_head_only", "true", "--freeze_layers", "1"), "head"),
    # accepted, idle, and described by the card
    (
        "layer-wise decay with the head alone trained",
        lambda w: train(w, "--train_head_only", "true", "--layerwise_lr_decay", "0.5"),
        "leave only the head to train, so layerwise_lr_decay would change nothing",
    ),
    (
        "gradual unfreezing with both blocks frozen",
        lambda w: train(w, "--freeze_layers", "2", "--freeze_embeddings", "true", "--gradual_unfreezing", "1"),
        "leave only the head to train, so gradual_unfreezing would change nothing",
    ),
    (
        "gradual unfreezing + feature cache",
        lambda w: train(w, "--gradual_unfreezing", "1", "--cache_frozen_features", "true"),
        "cache_frozen_features",
    ),
    ("feature cache + neftune", lambda w: train(w, *CACHE, "--neftune_noise_alpha", "5"), "reads from its cache"),
    ("feature cache, embeddings train", lambda w: train(w, *CACHE[:2], "--freeze_layers", "1"), "freeze_embeddings"),
    ("feature cache, no frozen bottom block", lambda w: train(w, *CACHE), "block 0 trains"),
    (
        "feature cache, non-contiguous freeze_layers",
        lambda w: train(w, *CACHE, "--freeze_layers", "[1]"),
        "block 0 trains",
    ),
    (
        "feature cache, pattern freezes part of a block above the trunk",
        lambda w: train(w, *CACHE, "--freeze_layers", "1", "--freeze_patterns", "[layer.1.attention]"),
        "blocks [1] above it",
    ),
    (
        "feature cache, unsupported architecture",
        lambda w: train(w, *CACHE, "--freeze_patterns", "[albert_layer_groups]", model=w["albert"]),
        "model type 'albert'",
    ),
    (
        "feature cache with an adapter",
        lambda w: train(w, "--peft_method", "lora", *CACHE[:2]),
        "cache_frozen_features",
    ),
    ("feature cache storage without the cache", lambda w: train(w, "--frozen_features_dtype", "float16"), "cache_"),
    ("llrd out of range", lambda w: train(w, "--layerwise_lr_decay", "0"), "layerwise_lr_decay"),
    ("few_shot not auto/true/false", lambda w: train(w, "--few_shot", "maybe"), "few_shot"),
    ("few_shot batch of one", lambda w: train(w, "--few_shot_batch_size", "1"), "few_shot_batch_size"),
    ("few_shot loss unknown", lambda w: train(w, "--few_shot_loss", "triplet"), "few_shot_loss"),
    ("few_shot body mix above 1", lambda w: train(w, "--few_shot_body_mix", "1.5"), "few_shot_body_mix"),
    ("few_shot template without {}", lambda w: train(w, "--few_shot_label_template", "It is good."), "{}"),
    (
        "few_shot template copies < 0",
        lambda w: train(w, "--few_shot_template_copies", "-1"),
        "few_shot_template_copies",
    ),
    ("few_shot with an adapter", lambda w: train(w, "--few_shot", "true", "--peft_method", "lora"), "peft_method"),
    (
        "few_shot on an unsupported architecture",
        lambda w: train(w, "--few_shot", "true", model=w["albert"]),
        "model type 'albert' lacks what the route needs to express its mean-pooled head: BERT-style encoder blocks",
    ),
    # the route tunes the body only (its head is fitted in closed form): a traceback after the weights loaded
    (
        "few_shot with train_head_only",
        lambda w: train(w, "--few_shot", "true", "--train_head_only", "true"),
        "leave no weight of the body to tune",
    ),
    (
        "few_shot with the whole body frozen",
        lambda w: train(w, "--few_shot", "true", "--freeze_embeddings", "true", "--freeze_layers", "[0,1]"),
        "leave no weight of the body to tune",
    ),
    (
        "few_shot on multi-label data",
        lambda w: train(w, "--few_shot", "true", train_file=w["multi"], dev=w["multi"]),
        "multi-label",
    ),
    ("bad max_seq_length", lambda w: train(w, "--max_seq_length", "0"), "max_seq_length"),
    # both precisions on the CPU: the advice was to pass the --bf16 true that was already there
    ("bf16 and fp16 both set", lambda w: train(w, "--bf16", "true", "--fp16", "true"), "bf16 and fp16 are both set"),
    # values that failed only once the weights had loaded (a traceback or a NaN model), or were ignored silently
    ("a blank output_dir", lambda w: [*train(w), "--output_dir", ""], "output_dir is blank"),
    # a rerun into a finished run's (or a model's) folder wrote over it in place, its checkpoints left mixed in
    (
        "output_dir holds a model",
        lambda w: [*train(w), "--output_dir", str(w["teacher3"])],
        "already holds an earlier run or model (config.json, model.safetensors); training again would overwrite it",
    ),
    (
        "distill: output_dir holds a model",
        lambda w: [*distill(w, "--student_layers", "[0]"), "--output_dir", str(w["teacher3"])],
        "or replace it with --overwrite_output_dir true",
    ),
    ("infinite epochs", lambda w: train(w, "--num_train_epochs", "inf"), "num_train_epochs must be a finite number"),
    ("infinite learning rate", lambda w: train(w, "--learning_rate", "inf"), "learning_rate must be > 0 and finite"),
    # a learning rate of 0 trained nothing and saved the model as trained (exit 0)
    ("learning rate 0", lambda w: train(w, "--learning_rate", "0"), "learning_rate must be > 0 and finite"),
    (
        "distill: learning rate 0",
        lambda w: distill(w, "--student_layers", "[0]", "--learning_rate", "0"),
        "learning_rate must be > 0 and finite (typically 1e-5 to 1e-3), got 0.0",
    ),
    (
        "linear probe learning rate 0",
        lambda w: train(w, "--linear_probe_epochs", "1", "--linear_probe_learning_rate", "0"),
        "linear_probe_learning_rate must be > 0 and finite",
    ),
    # a traceback once the weights had loaded: int(nan) in the scheduler, torch's Adam checks
    ("NaN warmup_steps", lambda w: train(w, "--warmup_steps", "nan"), "warmup_steps must be finite and >= 0"),
    ("adam_beta1 above 1", lambda w: train(w, "--adam_beta1", "1.5"), "adam_beta1 must be in [0, 1), got 1.5"),
    ("NaN adam_epsilon", lambda w: train(w, "--adam_epsilon", "nan"), "adam_epsilon must be finite and >= 0"),
    ("negative seed", lambda w: train(w, "--seed", "-1"), "seed must be in [0, 2**32 - 1], got -1"),
    ("seed above 2**32 - 1", lambda w: train(w, "--seed", "4294967296"), "seed must be in [0, 2**32 - 1]"),
    ("NaN weight decay", lambda w: train(w, "--weight_decay", "nan"), "weight_decay must be finite and >= 0"),
    ("NaN max_grad_norm", lambda w: train(w, "--max_grad_norm", "nan"), "max_grad_norm must be a number"),
    ("negative max_steps", lambda w: train(w, "--max_steps", "-5"), "max_steps must be > 0, or -1"),
    ("label smoothing above 1", lambda w: train(w, "--label_smoothing_factor", "2"), "label_smoothing_factor"),
    (
        "NaN early_stopping_threshold",
        lambda w: train(
            w, "--eval_strategy", "epoch", "--early_stopping_patience", "1", "--early_stopping_threshold", "nan"
        ),
        "early_stopping_threshold must be >= 0 and finite",
    ),
    ("infinite linear_probe_epochs", lambda w: train(w, "--linear_probe_epochs", "inf"), "linear_probe_epochs"),
    ("invalid dataset_hub_id", lambda w: train(w, "--dataset_hub_id", "not a/valid id"), "dataset_hub_id"),
    ("stray argument", lambda w: train(w, "oops"), "unexpected argument"),
    # data
    ("missing data file", lambda w: train(w, train_file=w["root"] / "missing.csv"), "missing.csv"),
    ("unsupported extension", lambda w: train(w, train_file=w["txt"]), "unsupported extension"),
    ("compressed parquet", lambda w: train(w, train_file=w["parquet_gz"]), "extension .parquet.gz; expected .csv"),
    ("not the compression it names", lambda w: train(w, train_file=w["bad_gz"]), "as gzip-compressed csv"),
    ("unknown text column", lambda w: train(w, "--text_column_name", "body"), "body"),
    ("unknown label column", lambda w: train(w, "--label_column_name", "stars"), "stars"),
    ("empty file", lambda w: train(w, train_file=w["empty"]), "empty"),
    ("all rows dropped", lambda w: train(w, train_file=w["blank"]), "empty"),
    ("validation label not in train", lambda w: train(w, dev=w["unseen"]), "neutral"),
    ("validation label differing in case", lambda w: train(w, dev=w["case_dev"]), "case: [['Pos', 'pos']]"),
    ("NaN labels only", lambda w: train(w, train_file=w["nan_labels"]), "label"),
    ("multi-label rows not lists", lambda w: train(w, train_file=w["not_lists"], dev=w["not_lists"]), "list"),
    (
        "a list inside a label list",
        lambda w: train(w, train_file=w["nested"], dev=w["multi"]),
        "where a label should be",
    ),
    (
        "every label list empty",
        lambda w: train(w, train_file=w["no_labels"], dev=w["no_labels"]),
        "every label list of the training data is empty",
    ),
    ("binary file as csv", lambda w: train(w, train_file=w["binary"]), "binary.csv"),
    ("a column named twice", lambda w: train(w, train_file=w["twice"]), "names the column 'label' more than once"),
    ("a csv separated by semicolons", lambda w: train(w, train_file=w["semicolons"]), "separated by semicolons"),
    ("a UTF-16 csv", lambda w: train(w, train_file=w["utf16"]), "utf16.csv' is UTF-16 text"),
    ("a folder as train_file", lambda w: train(w, train_file=w["folder_csv"]), "folder.csv' is a folder, not a file"),
    ("a named pipe as validation_file", lambda w: train(w, dev=w["fifo"]), "is a named pipe, socket or device"),
    ("mixed label types", lambda w: train(w, train_file=w["mixed"], dev=w["mixed"]), "label"),
    # model
    ("missing model folder", lambda w: train(w, model=w["root"] / "no-model"), "does not exist"),
    ("folder without config.json", lambda w: train(w, model=w["no_config"]), "config.json"),
    ("corrupt safetensors", lambda w: train(w, model=w["corrupt"]), "cannot load the weights"),
    ("needs trust_remote_code", lambda w: train(w, model=w["remote"]), "trust_remote_code"),
    ("unknown hub id offline", lambda w: train(w, model="nobody/not-a-model"), "nobody/not-a-model"),
    # freezing
    ("freeze index out of range", lambda w: train(w, "--freeze_layers", "[0, 7]"), "freeze_layers"),
    (
        "freeze_layers on ALBERT's shared layer group",
        lambda w: train(w, "--freeze_layers", "1", model=w["albert"]),
        "freezing a block does not freeze the bottom layers asked for",
    ),
    ("freeze pattern matches nothing", lambda w: train(w, "--freeze_patterns", "[nothing_here]"), "nothing_here"),
    ("invalid freeze regex", lambda w: train(w, "--freeze_patterns", "['(']"), "regex"),
    # distillation
    ("alpha outside [0, 1]", lambda w: distill(w, "--student_layers", "[0]", "--alpha", "1.2"), "alpha"),
    ("temperature <= 0", lambda w: distill(w, "--student_layers", "[0]", "--temperature", "-1"), "temperature"),
    ("teacher/student labels differ", lambda w: distill(w, "--student_layers", "[0]", teacher=w["teacher3"]), "'c'"),
    ("invalid student_layers", lambda w: distill(w, "--student_layers", "[0, 2]"), "student_layers"),
    ("teacher not a classifier", lambda w: distill(w, "--student_layers", "[0]", teacher=w["model"]), "classifier"),
    ("no student", lambda w: distill(w), "no student"),
    (
        "feature cache in distill",
        lambda w: distill(w, "--student_layers", "[0]", *CACHE, "--freeze_layers", "1"),
        "hf-transfer train",
    ),
    ("top_k without cache", lambda w: distill(w, "--student_layers", "[0]", "--teacher_top_k", "2"), "cache"),
    (  # augmented, then trained, for ever, with no word
        "augment_factor a typo",
        lambda w: distill(w, "--student_layers", "[0]", "--augment_factor", "1000000000"),
        "augmented rows from",
    ),
    (
        "unlabeled file missing",
        lambda w: distill(w, "--student_layers", "[0]", "--unlabeled_file", "gone.csv"),
        "gone",
    ),
    (
        "unlabeled file without the text column",
        lambda w: distill(w, "--student_layers", "[0]", "--unlabeled_file", str(w["no_text"])),
        "no column 'text'",
    ),
    (
        "augment_factor < 0",
        lambda w: distill(w, "--student_layers", "[0]", "--augment_factor", "-1"),
        "augment_factor",
    ),
    ("augment_p outside [0, 1]", lambda w: distill(w, "--student_layers", "[0]", "--augment_p", "1.5"), "augment_p"),
    ("unknown augment_method", lambda w: distill(w, "--student_layers", "[0]", "--augment_method", "mlm"), "augment"),
    (
        "token-level hidden loss with the cache",
        lambda w: distill(w, "--student_layers", "[0]", "--cache_teacher_logits", "true", "--hidden_loss_weight", "1"),
        "hidden_loss_pooling",
    ),
    ("LP-FT in distill", lambda w: distill(w, "--student_layers", "[0]", "--linear_probe_epochs", "1"), "train"),
    (
        "student cut without a few-shot teacher's pooling block",
        lambda w: distill(w, "--student_layers", "[0, 1]", teacher=w["pooling"]),
        "Keep the block last: student_layers [0, 1, 2]",
    ),
    (
        "layer_map pairs a body block with a few-shot pooling block",
        lambda w: distill(
            w,
            "--model_name_or_path",
            str(w["model"]),
            "--hidden_loss_weight",
            "1",
            "--layer_map",
            "[0, 2]",
            teacher=w["pooling"],
        ),
        "teacher block 2 is the few-shot route's mean-pooling block",
    ),
    # quality options of train
    ("unknown class_weights", lambda w: train(w, "--class_weights", "balance"), "class_weights"),
    ("class weight for an unknown label", lambda w: train(w, "--class_weights", "{neutral: 2}"), "'neutral'"),
    ("non-positive class weight", lambda w: train(w, "--class_weights", "{pos: 0}"), "positive"),
    (
        "calibration split with no room",
        lambda w: train(
            w, "--calibrate_decision", "macro_f1", "--calibration_split_percentage", "1", train_file=w["lopsided"]
        ),
        "holds none of ['neg'] (training rows per label: {'neg': 1};",
    ),
    (
        "calibrate_decision on a head without bias (GPT-2's score)",
        lambda w: train(w, "--calibrate_decision", "macro_f1", "--few_shot", "false", model=w["gpt2"]),
        "has no bias",
    ),
    ("calibration split percentage", lambda w: train(w, "--calibration_split_percentage", "80"), "calibration"),
    ("negative patience", lambda w: train(w, "--early_stopping_patience", "-1"), "early_stopping_patience"),
    ("patience without evaluation", lambda w: train(w, "--early_stopping_patience", "2"), "eval_strategy"),
    (  # set to true in silence, and checkpoints written, where stock Trainer keeps false
        "patience with load_best_model_at_end false",
        lambda w: train(
            w, "--eval_strategy", "epoch", "--early_stopping_patience", "2", "--load_best_model_at_end", "false"
        ),  # fmt: skip
        "but load_best_model_at_end is false",
    ),
    ("negative linear_probe_epochs", lambda w: train(w, "--linear_probe_epochs", "-1"), "linear_probe_epochs"),
    # adapters
    ("unknown peft method", lambda w: train(w, "--peft_method", "lorax"), "lorax"),
    ("adapter + freeze options", lambda w: train(w, "--peft_method", "lora", "--freeze_layers", "1"), "freeze_layers"),
    ("lora targets match nothing", lambda w: train(w, "--peft_method", "lora", "--target_modules", "[nope]"), "nope"),
    ("lora_r <= 0", lambda w: train(w, "--peft_method", "lora", "--lora_r", "0"), "lora_r"),
    (  # YAML 1.2 keeps `on` as text, which PEFT took as true
        "peft_config true/false field given on",
        lambda w: train(w, "--peft_method", "lora", "--peft_config", "{use_rslora: on}"),
        "peft_config.use_rslora expects true or false",
    ),
    # hub
    ("invalid hub repo id", lambda w: train(w, "--push_to_hub", "true", "--hub_model_id", "a/b/c d"), "hub_model_id"),
    ("hub_token in a config", lambda w: train(w, "--hub_token", "hf_x"), "hub_token"),
    # resume
    ("resume without checkpoint", lambda w: train(w, "--resume_from_checkpoint", "true"), "no complete checkpoint"),
    # merge (weight interpolation) and evaluation sets
    ("merge: shapes differ", lambda w: merge(w, "--alpha", "0.5", pretrained=w["wide"]), "intermediate.dense.weight"),
    ("merge: depths differ", lambda w: merge(w, "--alpha", "0.5", pretrained=w["deep"]), "encoder.layer.2."),
    (
        "merge: a few-shot model against its base",
        lambda w: merge(w, "--alpha", "0.5", finetuned=w["few_shot"]),
        "comes from the few-shot route, which appended a mean-pooling encoder block to its base (3 blocks against 2",
    ),
    ("merge: alpha above 1", lambda w: merge(w, "--alpha", "1.5"), "alpha must be a number in [0, 1]"),
    ("merge: alpha below 0", lambda w: merge(w, "--alpha", "-0.1"), "alpha must be a number in [0, 1]"),
    ("merge: alphas outside [0, 1]", lambda w: sweep(w, "--alphas", "0,2"), "alphas must be numbers in [0, 1]"),
    (
        "merge: pretrained is finetuned",
        lambda w: merge(w, "--alpha", "0.5", pretrained=w["teacher"]),
        "pretrained and finetuned are the same folder",
    ),
    ("merge: no alpha", lambda w: merge(w), "no α given"),
    ("merge: alpha and alphas", lambda w: merge(w, "--alpha", "0.5", "--alphas", "0,1"), "not both"),
    ("merge: alphas without validation", lambda w: merge(w, "--alphas", "0,1"), "validation_file"),
    ("merge: bad extra_eval", lambda w: sweep(w, "--extra_eval", str(w["dev"])), "NAME=FILE"),
    ("merge: extra_eval bad extension", lambda w: sweep(w, "--extra_eval", f"x={w['txt']}"), "unsupported extension"),
    ("merge: missing extra_eval file", lambda w: sweep(w, "--extra_eval", "x=nope.csv"), "nope.csv"),
    (
        "merge: unseen validation label",
        lambda w: merge(w, "--alpha", "1", "--validation_file", str(w["unseen"])),
        "neutral",
    ),
    ("merge: finetuned not a classifier", lambda w: merge(w, "--alpha", "0.5", finetuned=w["wide"]), "classifier"),
    (
        "merge: head_init labels differ",
        lambda w: merge(w, "--alpha", "0.5", "--head_init", str(w["teacher3"])),
        "labels",
    ),
    ("merge: missing finetuned", lambda w: merge(w, "--alpha", "0.5", finetuned=w["root"] / "gone"), "not a folder"),
    (
        "merge: head_init not a classifier",
        lambda w: merge(w, "--alpha", "0.5", "--head_init", str(w["model"])),
        "it is not a sequence classifier",
    ),
    # models and folders other tools wrote
    ("evaluate: a regression model", lambda w: evaluate(w, model=w["regression"]), "is a regression model"),
    (
        "predict: one output and no problem_type",
        lambda w: predict(w, model=w["one_output"]),
        "regression model (one output and no problem_type), and predict runs classifiers only",
    ),
    ("export: a regression model", lambda w: export(w, "--format", "onnx", model=w["regression"]), "regression"),
    (
        "merge: a regression model as finetuned",
        lambda w: merge(w, "--alpha", "0.5", finetuned=w["regression"]),
        "is a regression model (problem_type 'regression'), and merge",
    ),
    (
        "distill: a regression teacher",
        lambda w: distill(w, "--student_layers", "[0]", teacher=w["regression"]),
        "regression model (problem_type 'regression'), and distill",
    ),
    ("predict: a SetFit model", lambda w: predict(w, model=w["setfit"]), "SetFit model, whose classifier"),
    (
        "distill: a SetFit teacher",
        lambda w: distill(w, "--student_layers", "[0]", teacher=w["setfit"]),
        "is a SetFit model",
    ),
    (
        "merge: a SetFit model as finetuned",
        lambda w: merge(w, "--alpha", "1", finetuned=w["setfit"]),
        "is a SetFit model",
    ),
    (
        "evaluate: a sentence-transformers model",
        lambda w: evaluate(w, model=w["sentence_transformers"]),
        "sentence-transformers embedding model (modules.json) with no classification head",
    ),
    (
        "evaluate: a sharded checkpoint missing a shard",
        lambda w: evaluate(w, model=w["shard_missing"]),
        "index.json names 3 shards, but the folder lacks model-00002-of-00003.safetensors",
    ),
    (
        "train: a sharded checkpoint missing a shard",
        lambda w: train(w, model=w["shard_missing"]),
        "but the folder lacks model-00002",
    ),
    # evaluate
    ("evaluate: missing file", lambda w: evaluate(w, validation=w["root"] / "gone.csv"), "gone.csv"),
    ("evaluate: unknown text column", lambda w: evaluate(w, "--text_column_name", "body"), "body"),
    ("evaluate: not a classifier", lambda w: evaluate(w, model=w["model"]), "not a sequence classifier"),
    ("evaluate: unseen label", lambda w: evaluate(w, validation=w["unseen"]), "neutral"),
    (
        "evaluate: an integer label outside the model's ids",
        lambda w: evaluate(w, validation=w["id_outside"]),
        "(0 = neg, 1 = pos), but [2] are not among them",
    ),
    ("evaluate: bad extra_eval", lambda w: evaluate(w, "--extra_eval", "nameless"), "NAME=FILE"),
    ("evaluate: empty output_file", lambda w: evaluate(w, "--output_file", ""), "output_file is empty"),
    ("evaluate: no model", lambda w: ["evaluate", "--validation_file", str(w["dev"])], "model_name_or_path"),
    # card and push
    ("card: a file, not a folder", lambda w: ["card", str(w["dev"])], "is not a folder;"),
    ("card: not a run folder", lambda w: ["card", str(w["model"])], "hf_transfer_run.json"),
    ("card: no such folder", lambda w: ["card", str(w["root"] / "gone")], "gone' does not exist;"),
    ("push: a file, not a folder", lambda w: ["push", str(w["dev"]), "--hub_model_id", "a/b"], "is not a folder;"),
    ("push: no repo id", lambda w: ["push", str(w["model"])], "hub_model_id is required"),
    (
        "push: a blank revision",
        lambda w: ["push", str(w["teacher"]), "--hub_model_id", "a/b", "--revision", ""],
        "revision is blank",
    ),
    ("push: no such folder", lambda w: ["push", str(w["root"] / "gone"), "--hub_model_id", "a/b"], "does not exist;"),
    # search
    ("search: n_trials below 1", lambda w: search(w, "--n_trials", "0"), "n_trials must be >= 1"),
    (
        "search: unknown field in the space",
        lambda w: search(w, space="{lerning_rate: {low: 1.0e-5, high: 1.0e-4}}"),
        "unknown field 'lerning_rate'. did you mean 'learning_rate'",
    ),
    (
        "search: empty range",
        lambda w: search(w, space="{learning_rate: {low: 1.0e-4, high: 1.0e-5}}"),
        "the range is empty",
    ),
    ("search: empty choices", lambda w: search(w, space="{per_device_train_batch_size: []}"), "choices is empty"),
    (
        "search: a learning rate range from 0",
        lambda w: search(w, space="{learning_rate: {low: 0, high: 1.0e-4}}"),
        "the value 0.0 is rejected: learning_rate must be > 0",
    ),
    ("search: bound not a number", lambda w: search(w, space="{learning_rate: {low: fast, high: 1}}"), "a number"),
    (
        "search: range on a text field",
        lambda w: search(w, space="{lr_scheduler_type: {low: 1, high: 2}}"),
        "takes a list of choices",
    ),
    (
        "search: value the field rejects",
        lambda w: search(w, space="{layerwise_lr_decay: {low: 0.5, high: 1.5}}"),
        "the value 1.5 is rejected: layerwise_lr_decay must be in (0, 1]",
    ),
    ("search: unknown metric", lambda w: search(w, "--metric", "f2"), "not a validation metric"),
    ("search: bad direction", lambda w: search(w, "--direction", "up"), "direction expects one of maximize"),
    (
        "search: a multi-label metric on single-label data",
        lambda w: search(w, "--metric", "subset_accuracy"),
        "not computed for single-label data",
    ),
    ("search: unknown train field", lambda w: search(w, "--lerning_rate", "0.1"), "did you mean 'learning_rate'"),
    ("search: missing training file", lambda w: search(w, train_file=w["root"] / "gone.csv"), "gone.csv"),
    ("card language not an ISO code", lambda w: train(w, "--language", "English"), "ISO 639 code"),
    # predict
    ("predict: missing input file", lambda w: predict(w, input_file=w["root"] / "gone.csv"), "gone.csv"),
    ("predict: input extension", lambda w: predict(w, input_file=w["txt"]), "unsupported extension"),
    ("predict: zstd input", lambda w: predict(w, input_file=w["zst"]), "extension .zst; expected .csv, .tsv"),
    ("predict: empty input file", lambda w: predict(w, input_file=w["empty"]), "empty"),
    ("predict: binary input", lambda w: predict(w, input_file=w["binary"]), "binary.csv"),
    ("predict: a column named twice", lambda w: predict(w, input_file=w["twice"]), "more than once in its header"),
    ("predict: a csv separated by semicolons", lambda w: predict(w, input_file=w["semicolons"]), "by semicolons"),
    ("predict: a UTF-16 input", lambda w: predict(w, input_file=w["utf16"]), "is UTF-16 text"),
    ("predict: a parquet column named twice", lambda w: predict(w, input_file=w["twice_parquet"]), "'label' more"),
    ("predict: a folder as input", lambda w: predict(w, input_file=w["folder_csv"]), "is a folder, not a file"),
    ("predict: a named pipe as input", lambda w: predict(w, input_file=w["fifo"]), "is a named pipe"),
    (
        "unlabeled file a folder",
        lambda w: distill(w, "--student_layers", "[0]", "--unlabeled_file", str(w["folder_csv"])),
        "folder.csv' is a folder, not a file",
    ),
    ("predict: unknown text column", lambda w: predict(w, "--text_column_name", "body"), "body"),
    ("predict: unknown label column", lambda w: predict(w, "--label_column_name", "stars"), "stars"),
    ("predict: output extension", lambda w: predict(w, "--output_file", str(w["root"] / "p.xlsx")), ".xlsx"),
    ("predict: output to stdout", lambda w: predict(w, "--output_file", "-"), "written to a file, not to stdout"),
    (  # a missing folder is made, as evaluate makes it; a file in the way is refused
        "predict: output under a file",
        lambda w: predict(w, "--output_file", str(Path(w["dev"]) / "p.csv")),
        "which is a file, not a folder",
    ),
    ("predict: output is the input", lambda w: predict(w, "--output_file", str(w["dev"])), "is the input file"),
    ("predict: not a classifier", lambda w: predict(w, model=w["model"]), "not a sequence classifier"),
    ("predict: missing model folder", lambda w: predict(w, model=w["root"] / "no-model"), "does not exist"),
    (  # a traceback after the first step ("Each example must contain at least one <eos> token"), an empty folder
        "train: a T5 whose tokenizer adds no end-of-sequence token",
        lambda w: train(w, "--few_shot", "false", model=w["t5"]),
        "classifies from its end-of-sequence token (id 1)",
    ),
    (  # AutoTokenizer read the file's path as a Hub id: "Repo id must be in the form 'repo_name'..."
        "train: model path is a file of the model folder",
        lambda w: train(w, model=Path(w["model"]) / "config.json"),
        "is a file of a model folder; give the folder itself",
    ),
    ("predict: batch_size 0", lambda w: predict(w, "--batch_size", "0"), "batch_size"),
    ("predict: top_k 0", lambda w: predict(w, "--top_k", "0"), "top_k"),
    ("predict: top_k above the labels", lambda w: predict(w, "--top_k", "3"), "only 2 labels"),
    ("predict: label not the model's", lambda w: predict(w, input_file=w["unseen"]), "neutral"),
    ("predict: lists and single labels", lambda w: predict(w, input_file=w["not_lists"]), "lists"),
    ("predict: output column in the input", lambda w: predict(w, input_file=w["clash"]), "'score'"),
    ("predict: onnx_file for a PyTorch model", lambda w: predict(w, "--onnx_file", "model.onnx"), "onnx_file"),
    ("predict: onnx_file not in the folder", lambda w: predict(w, "--onnx_file", "x.onnx", model=w["onnx"]), "x.onnx"),
    (
        "predict: base model for a full model",
        lambda w: predict(w, "--base_model_name_or_path", str(w["model"])),
        "only for adapter folders",
    ),
    # export
    ("export: no format", lambda w: export(w), "format is required"),
    ("export: unknown format", lambda w: export(w, "--format", "tflite"), "tflite"),
    ("export: unknown quantize", lambda w: export(w, "--format", "onnx", "--quantize", "int4"), "int4"),
    ("export: not a classifier", lambda w: export(w, "--format", "onnx", model=w["model"]), "not a sequence"),
    ("export: missing model folder", lambda w: export(w, "--format", "onnx", model=w["root"] / "gone"), "not exist"),
    (
        "export: an adapter without its labels",
        lambda w: export(w, "--format", "onnx", model=w["bare_adapter"]),
        "records no label names (no hf_transfer_run.json: saved by PEFT, not hf-transfer) nor does its base",
    ),
    # An adapter PEFT saved itself, on a base without labels: every command says how to build the full model with
    # PEFT (the advice was to use an hf-transfer run's adapter, or a merge that refused the same folder).
    ("evaluate: a PEFT-saved adapter", lambda w: evaluate(w, model=w["bare_adapter"]), PEFT_MERGE),
    ("predict: a PEFT-saved adapter", lambda w: predict(w, model=w["bare_adapter"]), PEFT_MERGE),
    ("export: a PEFT-saved adapter", lambda w: export(w, "--format", "onnx", model=w["bare_adapter"]), PEFT_MERGE),
    ("merge: a PEFT-saved adapter", lambda w: merge(w, "--alpha", "0.5", finetuned=w["bare_adapter"]), PEFT_MERGE),
    ("train: a PEFT-saved adapter", lambda w: train(w, model=w["bare_adapter"]), PEFT_MERGE),
    # On a base that names its labels, the full model is one `hf-transfer merge` away (it was "no label names").
    ("train: a PEFT-saved adapter, labelled base", lambda w: train(w, model=w["labelled_adapter"]), "--alpha 1"),
    (
        "distill: a PEFT-saved adapter on a labelled base as teacher",
        lambda w: distill(w, "--student_layers", "[0]", teacher=w["labelled_adapter"]),
        "with the labels of its base",
    ),
    (
        "distill: a PEFT-saved adapter as teacher",
        lambda w: distill(w, "--student_layers", "[0]", teacher=w["bare_adapter"]),
        PEFT_MERGE,
    ),
    ("export: already ONNX", lambda w: export(w, "--format", "onnx", model=w["onnx"]), "is an ONNX export"),
    (
        "export: output_dir holds a model",
        lambda w: export(w, "--format", "onnx", "--output_dir", str(w["teacher3"])),
        "not empty",
    ),
    (
        "export: missing validation file",
        lambda w: export(w, "--format", "onnx", "--validation_file", str(w["root"] / "gone.csv")),
        "gone.csv",
    ),
    (
        "export: validation label not the model's",
        lambda w: export(w, "--format", "onnx", "--validation_file", str(w["unseen"])),
        "neutral",
    ),
    ("export: opset out of range", lambda w: export(w, "--format", "onnx", "--opset", "9"), "opset"),
    ("export: extra_eval", lambda w: export(w, "--format", "onnx", "--extra_eval", f"x={w['dev']}"), "extra_eval"),
    (
        "export: base model for a full model",
        lambda w: export(w, "--format", "onnx", "--base_model_name_or_path", str(w["model"])),
        "only for adapter folders",
    ),
    # a tokenizer with more tokens than the model has embedding rows
    (
        "another model's tokenizer_name",
        lambda w: train(w, "--tokenizer_name", str(w["model"]), model=w["small_vocab"]),
        "has 30522 tokens but model",
    ),
    (
        "distill: a student with another model's tokenizer",
        lambda w: distill(w, "--model_name_or_path", str(w["small_vocab"])),
        "embeds only 64 (its vocab_size)",
    ),
    (
        "distill: a teacher with another model's tokenizer",
        lambda w: distill(w, "--model_name_or_path", str(w["model"]), teacher=w["small_vocab"]),
        "embeds only 64 (its vocab_size)",
    ),
    (
        "merge: another model's tokenizer",
        lambda w: sweep(w, pretrained=w["small_vocab_base"], finetuned=w["small_vocab"]),
        "embeds only 64",
    ),
    ("evaluate: another model's tokenizer", lambda w: evaluate(w, model=w["small_vocab"]), "embeds only 64"),
    ("predict: another model's tokenizer", lambda w: predict(w, model=w["small_vocab"]), "embeds only 64"),
    (
        "export: another model's tokenizer",
        lambda w: export(w, "--format", "onnx", model=w["small_vocab"]),
        "embeds only 64",
    ),
    (
        "train: save_strategy best without a metric",
        lambda w: train(w, "--save_strategy", "best", "--eval_strategy", "epoch"),
        "metric_for_best_model is not set",
    ),
    ("train: batch_eval_metrics", lambda w: train(w, "--batch_eval_metrics", "true"), "batch_eval_metrics is not"),
    ("train: an optim whose package is missing", lambda w: train(w, "--optim", "adamw_8bit"), "needs bitsandbytes"),
    ("merge: an empty α between commas", lambda w: sweep(w, "--alphas", "0,,1"), "empty item between commas"),
    (
        "predict: onnx_file outside the model folder",
        lambda w: predict(w, "--onnx_file", f"../{w['onnx'].name}/model.onnx", model=w["onnx"]),
        "is not a .onnx file in",
    ),
    (  # a column decides the rows every trial is scored on: not searchable (a rejected value had failed each trial)
        "search: a searched text column",
        lambda w: search(w, space="{text_column_name: [text, label]}"),
        "search_space.text_column_name: every trial is scored on the same validation rows",
    ),
]


# Where each command would write: the matrix checks nothing appears there.
OUTPUT_FLAG = {
    "train": "--output_dir",
    "distill": "--output_dir",
    "merge": "--output_dir",
    "evaluate": "--output_file",
    "predict": "--output_file",
    "export": "--output_dir",
    "search": "--output_dir",
}


def _argv(case_argv: list[str], out: Path) -> list[str]:
    flag = OUTPUT_FLAG.get(case_argv[0])
    if flag is None or flag in case_argv:  # a case about the output itself names its own
        return case_argv
    if case_argv[0] == "predict":  # predictions go into an existing folder, beside `out`
        return [*case_argv, flag, str(out.parent / "predictions.csv")]
    return [*case_argv, flag, str(out / "metrics.json" if flag == "--output_file" else out)]


def _run_cli(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    env = env or {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "hf_transfer", *argv], capture_output=True, text=True, timeout=300, env=env, cwd=REPO
    )


# Loaded by every matrix case's Python at start-up (`sitecustomize` on PYTHONPATH): once transformers' modeling_utils
# is imported, `PreTrainedModel.from_pretrained` notes each call in the file $WEIGHTS_MARKER before loading, so a
# case can show that it was refused before any model's weights were loaded, as the README promises.
WEIGHTS_TRAP = """
import importlib.abc, importlib.machinery, os, sys

class _WeightsTrap(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "transformers.modeling_utils":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            load = module.PreTrainedModel.from_pretrained.__func__

            def from_pretrained(cls, *args, **kwargs):
                with open(os.environ["WEIGHTS_MARKER"], "a") as marker:
                    marker.write(cls.__name__ + "\\n")
                return load(cls, *args, **kwargs)

            module.PreTrainedModel.from_pretrained = classmethod(from_pretrained)

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _WeightsTrap())
"""


def _trapped_env(trap: Path, marker: Path) -> dict:
    """The environment of a matrix case: offline, with the weights trap first on PYTHONPATH."""
    path = os.pathsep.join(filter(None, [str(trap), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": path,
            "WEIGHTS_MARKER": str(marker)}  # fmt: skip


@pytest.fixture(scope="module")
def matrix(world, tmp_path_factory, request):
    """Every selected case (all, unless `-k` picks some) started at once on a pool as wide as the machine (each is a
    fresh `python -m hf_transfer`, whose start-up dominates); each test then waits for its own case."""
    from concurrent.futures import ThreadPoolExecutor

    selected = {getattr(item, "callspec", None) and item.callspec.params.get("case") for item in request.session.items}
    trap = tmp_path_factory.mktemp("weights-trap")
    (trap / "sitecustomize.py").write_text(WEIGHTS_TRAP)
    pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))
    runs = {}
    for case, build, _ in CASES:
        if case not in selected:
            continue
        out = tmp_path_factory.mktemp("bad") / "out"
        marker = trap / f"{len(runs)}.loaded"
        runs[case] = (out, marker, pool.submit(_run_cli, _argv(build(world), out), _trapped_env(trap, marker)))
    yield runs
    pool.shutdown(wait=True)


@pytest.mark.parametrize("case,build,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, build, needle, matrix):
    out, marker, future = matrix[case]
    proc = future.result()
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if os.environ.get("BAD_INPUT_REPORT"):  # the matrix as a table for humans: scripts/bad_input_table.py
        row = {"case": case, "exit": proc.returncode, "message": lines[-1] if lines else "", "lines": len(lines),
               "output_ok": not out.exists()}  # fmt: skip
        with open(os.environ["BAD_INPUT_REPORT"], "a") as handle:
            handle.write(json.dumps(row) + "\n")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr[-2000:]
    assert needle.lower() in lines[0].lower(), lines[0]
    assert lines[0].startswith("hf-transfer ")
    assert not out.exists() and not any(out.parent.iterdir())  # nothing written, not even beside output_dir
    assert not marker.exists(), f"weights were loaded first: {marker.read_text().split()}"


def test_the_weights_trap_of_the_matrix_sees_a_model_load(world, tmp_path):
    """The trap above must fire when a command does load a model: a good `predict` on the world's classifier."""
    (tmp_path / "trap").mkdir()
    (tmp_path / "trap" / "sitecustomize.py").write_text(WEIGHTS_TRAP)
    marker = tmp_path / "loaded"
    argv = predict(world, model=world["teacher"])
    proc = _run_cli([*argv, "--output_file", str(tmp_path / "p.csv")], _trapped_env(tmp_path / "trap", marker))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.read_text().split() == ["BertForSequenceClassification"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", ["push without a token", "push to an unreachable endpoint"])
def test_bad_hub_input(case, world, tmp_path):
    """The Hub cases need the Hub switched on (HF_HUB_OFFLINE=0) and pointed at a closed local port, so that nothing
    can leave the machine; the token store is an empty HF_HOME."""
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": closed_port_url(), "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_TOKEN", None)
    if case == "push without a token":
        out = tmp_path / "out"
        argv = [*train(world, "--push_to_hub", "true", "--hub_model_id", "tester/model"), "--output_dir", str(out)]
        needle, before = "HF_TOKEN", None
    else:  # a finished folder whose push cannot reach the endpoint: retried with backoff, then one line
        out = tmp_path / "ready"
        out.mkdir()
        (out / "config.json").write_text('{"model_type": "bert"}')
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "README.md").write_text("---\nlicense: mit\n---\n# ready\n")
        env["HF_TOKEN"] = "hf_matrixtoken"
        argv = ["push", str(out), "--hub_model_id", "tester/model"]
        needle, before = f"hf-transfer push {out} --hub_model_id tester/model", _files(out)
    proc = _run_cli(argv, env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "retrying in" not in line]  # retry notices are progress, not errors
    untouched = not out.exists() if before is None else _files(out) == before
    if os.environ.get("BAD_INPUT_REPORT"):
        row = {"case": case, "exit": proc.returncode, "message": errors[-1] if errors else "", "lines": len(errors),
               "output_ok": untouched}  # fmt: skip
        with open(os.environ["BAD_INPUT_REPORT"], "a") as handle:
            handle.write(json.dumps(row) + "\n")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr[-2000:]
    assert errors[0].startswith("hf-transfer ") and needle in errors[0], errors[0]
    assert "hf_matrixtoken" not in proc.stderr + proc.stdout
    assert untouched
    if before is not None:
        assert len(lines) == 4  # three retries, with waits of 2, 4 and 8 s, then the error


def test_an_existing_output_dir_is_left_untouched(world, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = [*train(world, "--freeze_layers", "9"), "--output_dir", str(out)]
    proc = subprocess.run([sys.executable, "-m", "hf_transfer", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_every_command_has_bad_input_cases(world, tmp_path):
    """A command added to the CLI without cases in the matrix fails here."""
    from hf_transfer.cli import COMMANDS

    covered = {build(world)[0] for _, build, _ in CASES}
    assert covered == set(COMMANDS), f"no bad-input case for {sorted(set(COMMANDS) - covered)}"
