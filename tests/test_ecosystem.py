"""What a run writes, used the way a `transformers` user uses it: the card's quick start (pipeline, AutoPeftModel,
ONNX Runtime), run as written against the folder, scores a text as `hf-transfer predict` scores it."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_cli import train_argv, write_csv

from hf_transfer.cli import main

MAX_SEQ_LENGTH = 32
# Longer than the tiny BERT's position table (128) and than MAX_SEQ_LENGTH: scored as `predict` scores it only when
# truncated at the trained length; untruncated, it fails inside the model's embeddings.
LONG_TEXT = " ".join(f"great thing number {i}, not bad at all." for i in range(40))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert_dir) -> dict[str, Path]:
    """A full fine-tune, a LoRA adapter, the fine-tune's ONNX export and its WiSE-FT merge with the base, all at
    max_seq_length 32, from the tiny BERT whose tokenizer states model_max_length 512 over a 128-row position table."""
    root = tmp_path_factory.mktemp("ecosystem")
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    texts = [f"{words[i % 6]} thing number {i}" for i in range(30)]
    labels = ["pos" if i % 6 < 3 else "neg" for i in range(30)]
    train = write_csv(root / "train.csv", texts[:24], labels[:24])
    dev = write_csv(root / "dev.csv", texts[24:], labels[24:])
    length = ["--max_seq_length", str(MAX_SEQ_LENGTH), "--max_steps", "3"]
    folders = {"pipeline": root / "full", "peft": root / "lora", "onnx": root / "onnx", "merge": root / "merged"}
    assert main(train_argv(tiny_bert_dir, train, dev, folders["pipeline"], *length)) == 0
    lora = ["--peft_method", "lora", "--learning_rate", "1e-2", "--merge_adapter", "true"]  # and lora/merged
    assert main(train_argv(tiny_bert_dir, train, dev, folders["peft"], *length, *lora)) == 0
    assert main(["export", str(folders["pipeline"]), "--format", "onnx", "--output_dir", str(folders["onnx"])]) == 0
    merge = ["--pretrained", str(tiny_bert_dir), "--finetuned", str(folders["pipeline"]), "--alpha", "0.5"]
    assert main(["merge", *merge, "--output_dir", str(folders["merge"])]) == 0
    return folders


def predicted(folder: Path, text: str) -> dict[str, float]:
    """{label: score} as `hf-transfer predict` gives them for `text`."""
    source = write_csv(folder.parent / f"{folder.name}-in.csv", [text], ["pos"])
    out = folder.parent / f"{folder.name}-out.jsonl"
    argv = ["predict", "--model_name_or_path", str(folder), "--input_file", str(source), "--output_file", str(out)]
    assert main([*argv, "--top_k", "2"]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    return {row[f"top{k}_label"]: row[f"top{k}_score"] for k in (1, 2)}


def quick_start(folder: Path) -> str:
    """The card's quick start, loading from `folder` where it names the repo."""
    card = (folder / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    name = folder.name
    return snippet.replace(f'snapshot_download("{name}")', f'"{folder}"').replace(f'"{name}"', f'"{folder}"')


@pytest.mark.parametrize("folder", ["onnx", "merged", "merged-onnx"])
def test_the_quick_start_runs_verbatim_beside_an_unpushed_folder(runs, folder, monkeypatch, capsys):
    """Run as written from the run folder's parent: the ONNX card called `snapshot_download` on the folder's name
    (which takes Hub ids only), and a merged adapter's card named `lora-merged`, not its path (lora/merged)."""
    path = runs["onnx"] if folder == "onnx" else runs["peft"] / "merged"
    if folder == "merged-onnx":  # an export of the merged folder names itself, not lora/merged
        path = runs["onnx"].parent / folder
        assert main(["export", str(runs["peft"] / "merged"), "--format", "onnx", "--output_dir", str(path)]) == 0
    monkeypatch.chdir(runs["onnx"].parent)
    snippet = re.search(r"```python\n(.*?)```", (path / "README.md").read_text(), re.S).group(1)
    exec(snippet, {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    scores = predicted(path, "I really enjoyed this!")
    assert max(scores, key=scores.get) in printed, printed
    before = (path / "README.md").read_text()
    assert main(["card", str(path)]) == 0 and (path / "README.md").read_text() == before  # regenerated the same


@pytest.mark.parametrize("quickstart", ["pipeline", "peft", "onnx"])
def test_the_quick_start_scores_a_long_text_as_predict_does(runs, quickstart, capsys):
    """The quick starts tokenized without truncation: a text longer than the model's position table failed inside
    its embeddings, and one longer than max_seq_length was scored on more tokens than `predict` and `evaluate` read
    (and than training saw). They truncate at the folder's recorded length now."""
    folder = runs[quickstart]
    snippet = quick_start(folder)
    assert f"truncation=True, max_length={MAX_SEQ_LENGTH}" in snippet
    namespace = {}
    exec(snippet.replace("I really enjoyed this!", LONG_TEXT), namespace)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    expected = predicted(folder, LONG_TEXT)
    if quickstart != "onnx":
        (got,) = ast.literal_eval(printed)
        assert got["label"] == max(expected, key=expected.get)
        assert got["score"] == pytest.approx(expected[got["label"]], abs=1e-5)
    else:
        logits = np.asarray(namespace["logits"], dtype=np.float64)[0]
        scores = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        labels = namespace["labels"]
        assert dict(zip(labels, scores, strict=True)) == pytest.approx(expected, abs=1e-5)
        assert printed == max(expected, key=expected.get)


@pytest.mark.parametrize("kind", ["pipeline", "onnx", "merge"])
def test_the_saved_tokenizer_truncates_within_the_position_table(runs, kind, tiny_bert_dir):
    """The tokenizer was saved as loaded: one whose model_max_length is above the model's position table (or that
    states none: transformers then uses 1e30) let `pipeline(..., truncation=True)` pass a row the model cannot
    embed, and it failed inside the embeddings. Saved models cap it at what the model can embed."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    assert AutoTokenizer.from_pretrained(tiny_bert_dir).model_max_length == 512  # the base's tokenizer says 512
    folder = runs[kind]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.model_max_length == 128
    assert len(tokenizer(LONG_TEXT, truncation=True)["input_ids"]) == 128
    if kind != "onnx":
        (got,) = pipeline("text-classification", model=str(folder), top_k=None)([LONG_TEXT], truncation=True)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            logits = model(**tokenizer(LONG_TEXT, truncation=True, max_length=128, return_tensors="pt")).logits
        expected = dict(zip(("neg", "pos"), torch.softmax(logits, -1)[0].tolist(), strict=True))
        assert {row["label"]: row["score"] for row in got} == pytest.approx(expected, abs=1e-6)


def test_the_adapter_quick_start_loads_the_real_label_names(runs, capsys):
    """transformers builds an adapter folder's model from the config of the base it names, which has no labels of the
    task: the quick start passed only num_labels, so the model and a pipeline() over it said LABEL_0 and LABEL_1. It
    passes the labels now, and the card says what loading the folder without them gives."""
    from transformers import pipeline

    folder = runs["peft"]
    namespace = {}
    exec(quick_start(folder), namespace)
    (got,) = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["label"] in ("neg", "pos")
    config = namespace["model"].config
    assert (config.id2label, config.label2id, config.num_labels) == ({0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}, 2)
    # What the card's note says of the folder loaded without the labels (transformers 5 reads the base's config).
    assert "`LABEL_0`, `LABEL_1`" in (folder / "README.md").read_text()
    bare = pipeline("text-classification", model=str(folder))
    assert bare.model.config.id2label == {0: "LABEL_0", 1: "LABEL_1"}


def test_a_decoder_adapters_quick_start_pads_as_the_run_did(tmp_path, minilm_path, capsys):
    """A GPT-2 base whose tokenizer has no pad token: the adapter's card loaded the base config (pad_token_id None),
    so the pipeline stopped on a batch ("Cannot handle batch sizes > 1 if no padding token is defined") and pooled
    another token than training and `predict` did. It passes the saved tokenizer's padding id."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    base = tmp_path / "gpt2"
    config = GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=102)
    config.eos_token_id = 102
    GPT2Model(config).save_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.pad_token, tokenizer.eos_token = None, "[SEP]"  # as GPT-2's own tokenizer: an eos, no pad
    tokenizer.save_pretrained(base)
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    texts = [f"{words[i % 6]} thing number {i}" for i in range(24)]
    train = write_csv(tmp_path / "train.csv", texts, ["pos" if i % 6 < 3 else "neg" for i in range(24)])
    out = tmp_path / "lora"
    lora = ["--peft_method", "lora", "--learning_rate", "1e-2", "--max_steps", "3", "--max_seq_length", "32"]
    assert main(train_argv(base, train, train, out, *lora)) == 0
    namespace = {}
    exec(quick_start(out), namespace)
    pair = ["good", "a long and winding sentence about a wonderful film"]
    batch = namespace["classifier"](pair, batch_size=2)  # had stopped: no padding token
    for text, got in zip(pair, batch, strict=True):
        (scores,) = [got] if isinstance(got, dict) else got
        expected = predicted(out, text)
        assert scores["score"] == pytest.approx(expected[scores["label"]], abs=1e-5)
