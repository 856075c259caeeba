"""Weight interpolation (hf-transfer merge) and evaluation on several sets: the pure functions on small tensors, whole
merges of tiny BERT, DistilBERT and GPT-2 models and of a LoRA adapter, and one run on the real MiniLM and data."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import assert_picture

from hf_transfer.cli import main, parse_command_args
from hf_transfer.errors import ConfigError
from hf_transfer.merge.interpolation import (
    TensorSpec,
    choose_alpha,
    interpolate_state_dicts,
    parse_alphas,
    plan_interpolation,
)

REPO = Path(__file__).resolve().parent.parent
LABELS = ["neg", "pos"]


# --- pure functions ------------------------------------------------------------------------------------------------


def _pair():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g), "ids": torch.arange(5)}
    b = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g), "ids": torch.arange(5) + 7}
    b["head"] = torch.randn(2, 3, generator=g)
    return a, b


def test_interpolation_endpoints_are_exact_and_the_middle_is_the_mean():
    a, b = _pair()
    at0, at1, mid = (interpolate_state_dicts(a, b, alpha) for alpha in (0.0, 1.0, 0.5))
    assert torch.equal(at0["w"], a["w"]) and torch.equal(at0["b"], a["b"])
    assert torch.equal(at1["w"], b["w"]) and torch.equal(at1["b"], b["b"])
    torch.testing.assert_close(mid["w"], (a["w"] + b["w"]) / 2)
    # Integer buffers and tensors only the fine-tuned side has come from the fine-tuned model at every α.
    for state in (at0, mid, at1):
        assert torch.equal(state["ids"], b["ids"]) and torch.equal(state["head"], b["head"])
    # The inputs are not modified, and the result shares no storage with them.
    at1["w"].add_(1.0)
    assert not torch.equal(at1["w"], b["w"])


def test_interpolation_keeps_dtype_and_respects_keys():
    a = {"w": torch.ones(3, dtype=torch.float16), "v": torch.zeros(2)}
    b = {"w": torch.full((3,), 3.0, dtype=torch.float16), "v": torch.ones(2)}
    out = interpolate_state_dicts(a, b, 0.25, keys=["w"])
    assert out["w"].dtype == torch.float16 and torch.equal(out["w"], torch.full((3,), 1.5, dtype=torch.float16))
    assert torch.equal(out["v"], b["v"])  # not in keys: the fine-tuned value


def test_interpolation_rejects_a_shape_mismatch_and_a_bad_alpha():
    with pytest.raises(ConfigError, match=r"'w'.*\(2, 3\).*\(4, 3\)"):
        interpolate_state_dicts({"w": torch.zeros(2, 3)}, {"w": torch.zeros(4, 3)}, 0.5)
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="alpha must be"):
            interpolate_state_dicts({}, {}, alpha)


def test_plan_names_the_first_mismatch():
    f = TensorSpec((3, 3), True)
    finetuned = {"body.a": f, "body.b": f, "body.c": TensorSpec((5,), False), "head.w": TensorSpec((2, 3), True)}
    plan = plan_interpolation({"body.a": f, "body.b": f, "body.c": TensorSpec((5,), False)}, finetuned, ["head.w"])
    assert plan.interpolated == ("body.a", "body.b") and plan.copied == ("body.c",) and plan.head == ("head.w",)
    with pytest.raises(ConfigError, match=r"shapes differ at parameter 'body.b': \(4, 3\).*\(3, 3\)"):
        plan_interpolation({"body.a": f, "body.b": TensorSpec((4, 3), True)}, finetuned, ["head.w", "body.c"])
    with pytest.raises(ConfigError, match="'body.b'.*lacks"):
        plan_interpolation({"body.a": f}, finetuned, ["head.w", "body.c"])
    with pytest.raises(ConfigError, match="'body.z'.*lacks"):
        plan_interpolation({"body.a": f, "body.b": f, "body.z": f}, finetuned, ["head.w", "body.c"])


def test_alpha_grid_and_the_selection_rule():
    assert parse_alphas("0,0.25,0.5,0.75,1") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_alphas([1, 0, 0.5, 0.5]) == [0.0, 0.5, 1.0] and parse_alphas("[0.2, 0.1]") == [0.1, 0.2]
    for bad in ("0,1.5", "a,b", [], "[]", [True], "0,,1", "0,1,"):
        with pytest.raises(ConfigError, match="alphas"):
            parse_alphas(bad)
    assert choose_alpha({0.0: 0.5, 0.5: 0.8, 1.0: 0.7}) == 0.5
    assert choose_alpha({0.0: 0.8, 0.3: 0.8, 0.7: 0.8, 1.0: 0.6}) == 0.7  # ties: the largest α


# --- tiny models ---------------------------------------------------------------------------------------------------


def _tiny_config(kind: str):
    from transformers import BertConfig, DistilBertConfig, GPT2Config

    if kind == "bert":
        return BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    if kind == "distilbert":
        return DistilBertConfig(
            vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128
        )
    return GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=128, pad_token_id=0)


def make_pair(root: Path, kind: str, tokenizer_dir, seed: int = 0, labels=LABELS, **config_changes):
    """A bare pretrained model and a classifier 'fine-tuned' from it (its body moved, a random head), as folders."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = _tiny_config(kind)
    for key, value in config_changes.items():
        setattr(config, key, value)
    pretrained = AutoModel.from_config(config)
    config.id2label, config.label2id = dict(enumerate(labels)), {n: i for i, n in enumerate(labels)}
    finetuned = AutoModelForSequenceClassification.from_config(config)
    finetuned.base_model.load_state_dict(pretrained.state_dict())
    with torch.no_grad():
        for param in finetuned.parameters():
            param.add_(0.05 * torch.randn_like(param))
    paths = root / f"{kind}-pretrained", root / f"{kind}-finetuned"
    for model, path in zip((pretrained, finetuned), paths, strict=True):
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return paths


def _state(path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path).state_dict()


def _bare(path):
    from transformers import AutoModel

    return AutoModel.from_pretrained(path).state_dict()


def _csv(path, texts, labels):
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


@pytest.fixture
def dev_sets(tmp_path):
    words = ["good", "great", "bad", "awful", "fine", "poor"]
    texts = [f"{words[i % 6]} thing {i}" for i in range(18)]
    labels = ["pos" if i % 6 in (0, 1, 4) else "neg" for i in range(18)]
    dev = _csv(tmp_path / "dev.csv", texts[:12], labels[:12])
    shifted = _csv(tmp_path / "shifted.csv", texts[6:], [1 if lab == "pos" else 0 for lab in labels[6:]])
    return dev, shifted


@pytest.mark.parametrize("kind", ["bert", "distilbert", "gpt2"])
def test_merge_at_fixed_alphas(kind, tmp_path, tiny_bert_dir):
    pretrained, finetuned = make_pair(tmp_path, kind, tiny_bert_dir)
    pre, ft = _bare(pretrained), _state(finetuned)
    outputs = {}
    for alpha in ("0", "0.5", "1"):
        out = tmp_path / f"merged-{alpha}"
        argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alpha", alpha]
        assert main([*argv, "--output_dir", str(out)]) == 0
        outputs[alpha] = _state(out)
    prefix = next(k for k in ft if k.endswith(next(iter(pre)))).removesuffix(next(iter(pre)))
    head = [k for k in ft if not k.startswith(prefix)]
    assert head, "the classifier head is outside the base model"
    for name, value in pre.items():
        assert torch.equal(outputs["0"][prefix + name], value), name
        torch.testing.assert_close(outputs["0.5"][prefix + name], (value + ft[prefix + name]) / 2)
    for name in ft:
        assert torch.equal(outputs["1"][name], ft[name]), name
    for name in head:  # the pretrained model has no head: the fine-tuned one at every α
        assert torch.equal(outputs["0"][name], ft[name]) and torch.equal(outputs["0.5"][name], ft[name])
    out = tmp_path / "merged-0.5"
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["merge"]["alpha"] == 0.5 and record["merge"]["head"] == "the fine-tuned head at every α"
    assert record["merge"]["head_tensors"] and record["merge"]["sweep"] == []
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert "wise-ft" in header["tags"] and "model-index" not in header  # nothing was evaluated
    assert "α = 0.5" in (out / "README.md").read_text()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_fine_tuned_model_merges_into_its_own_dtype(dtype, tmp_path, tiny_bert_dir):
    """An fp16 (bf16) fine-tuned model was merged into fp32 weights, twice its size, with config dtype float32.
    θ(α) is still computed in fp32 from the fp32-loaded weights, then saved in the fine-tuned model's dtype."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    AutoModelForSequenceClassification.from_pretrained(finetuned, dtype=dtype).save_pretrained(finetuned)
    pre, ft = _bare(pretrained), AutoModelForSequenceClassification.from_pretrained(finetuned, dtype=torch.float32)
    ft = ft.state_dict()
    out = tmp_path / "merged"
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alpha", "0.3"]
    assert main([*argv, "--output_dir", str(out)]) == 0
    saved = load_file(out / "model.safetensors")
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {dtype}
    # Loaded as it was scored: in fp32 (with the half dtype in its config, pipeline() ran it in half and moved labels).
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert AutoModelForSequenceClassification.from_pretrained(out).dtype == torch.float32
    name = "bert.encoder.layer.0.attention.self.query.weight"
    expected = (0.7 * pre[name.removeprefix("bert.")] + 0.3 * ft[name]).to(dtype)
    assert torch.equal(saved[name], expected)
    assert (out / "model.safetensors").stat().st_size < 0.6 * 4 * sum(v.numel() for v in saved.values())
    record = json.loads((out / "hf_transfer_run.json").read_text())["merge"]
    assert record["saved_dtype"].startswith(str(dtype).removeprefix("torch.") + " (the fine-tuned model's")


def test_sweep_with_extra_sets_writes_table_plot_and_card(tmp_path, tiny_bert_dir, dev_sets, capsys):
    from transformers import pipeline

    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    dev, shifted = dev_sets
    out = tmp_path / "sweep"
    argv = [
        "merge",
        "--pretrained",
        str(pretrained),
        "--finetuned",
        str(finetuned),
        "--alphas",
        "0,0.5,1",
        "--validation_file",
        str(dev),
        "--validation_name",
        "indomain",
        "--extra_eval",
        f"shifted={shifted}",
        "--extra_eval",
        f"again={dev}",
        "--output_dir",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| α | indomain | shifted | again | mean of extra sets |" in printed
    pictures = next(line.split(None, 1)[1] for line in printed.splitlines() if line.startswith("  pictures "))
    assert pictures.split(", ") == [str(out / name) for name in ("merge_sweep.png", "merge_eval.confusion_matrix.png",
        "merge_eval.shifted.confusion_matrix.png", "merge_eval.again.confusion_matrix.png")]  # fmt: skip
    sweep = json.loads((out / "merge_sweep.json").read_text())
    assert [row["alpha"] for row in sweep["rows"]] == [0.0, 0.5, 1.0]
    scores = {row["alpha"]: row["indomain"]["accuracy"] for row in sweep["rows"]}
    best = max(scores.values())
    assert sweep["chosen_alpha"] == max(a for a, s in scores.items() if s == best)
    for row in sweep["rows"]:
        assert row["shifted"]["samples"] == 12 and row["indomain"]["samples"] == 12
        assert row["again"]["accuracy"] == row["indomain"]["accuracy"]
        assert row["mean_extra_accuracy"] == pytest.approx((row["shifted"]["accuracy"] + row["again"]["accuracy"]) / 2)
    assert_picture(out / "merge_sweep.png")
    for name in ("merge_eval.confusion_matrix.json", "merge_eval.shifted.confusion_matrix.png", "merge_eval.md"):
        assert (out / name).is_file(), name
    chosen = [row for row in sweep["rows"] if row["alpha"] == sweep["chosen_alpha"]][0]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_accuracy"] == chosen["indomain"]["accuracy"] and results["eval_samples"] == 12
    # The saved model is θ at the chosen α.
    pre, ft, saved = _bare(pretrained), _state(finetuned), _state(out)
    alpha = sweep["chosen_alpha"]
    for name, value in pre.items():
        expected = interpolate_state_dicts({name: value}, {name: ft["bert." + name]}, alpha)[name]
        assert torch.equal(saved["bert." + name], expected), name
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["model-index"][0]["results"][0]["metrics"][0]["value"] == round(chosen["indomain"]["accuracy"], 4)
    assert "### α sweep" in card and "merge_sweep.png" in card and "Weight interpolation (WiSE-FT)" in card
    # The validation score chose α: the card says it reads high there, and that the extra sets' scores do not.
    assert "Its score there is therefore optimistic; the other sets played no part in the choice." in card
    assert (
        "(α was chosen by its validation score, which is therefore optimistic; the extra sets' scores are not)" in card
    )
    # `hf-transfer card DIR` writes the same card again from what the folder holds.
    (out / "README.md").unlink()
    assert main(["card", str(out)]) == 0
    assert (out / "README.md").read_text() == card
    # Without its card data, the same card but for the versions (unknown then): it had been carded as a training
    # run, titled "fine-tuned", without its scores or the merge's tags.
    (out / "hf_transfer_card_data.json").unlink()
    assert main(["card", str(out)]) == 0
    versions = re.compile(r"<!-- hf-transfer:begin versions -->.*?<!-- hf-transfer:end versions -->", re.S)
    assert versions.sub("", (out / "README.md").read_text()) == versions.sub("", card)
    assert pipeline("text-classification", model=str(out))("good thing")[0]["label"] in LABELS


def test_a_sweep_on_macro_f1_shows_macro_f1(tmp_path, tiny_bert_dir, dev_sets, capsys, monkeypatch):
    """--selection_metric f1_macro chose α on macro-F1, but the printed table, the card's sweep table and the sweep
    plot showed accuracy, so the figures that chose α were nowhere to be seen."""
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    dev, shifted = dev_sets
    out = tmp_path / "sweep"
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alphas", "0,1"]
    argv += ["--validation_file", str(dev), "--extra_eval", f"shifted={shifted}", "--selection_metric", "f1_macro"]
    from hf_transfer.merge import command

    plotted = []
    plot = command.plot_alpha_sweep
    monkeypatch.setattr(command, "plot_alpha_sweep", lambda *a, **k: plotted.append(a[5:] or k) or plot(*a, **k))
    capsys.readouterr()
    assert main([*argv, "--output_dir", str(out)]) == 0
    assert plotted == [("f1_macro",)]
    printed = capsys.readouterr().out
    rows = json.loads((out / "merge_sweep.json").read_text())["rows"]
    assert any(row["validation"]["f1_macro"] != row["validation"]["accuracy"] for row in rows)
    assert "| α | validation macro-F1 | shifted macro-F1 | mean of extra sets |" in printed
    card = (out / "README.md").read_text()
    assert "Macro-F1 of the interpolated model at each α" in card
    for row in rows:
        f1 = f"{row['validation']['f1_macro']:.4f} | {row['shifted']['f1_macro']:.4f}"
        assert f"| {f1} | {row['mean_extra_f1_macro']:.4f} |" in printed
        assert f"| {f1} | {row['shifted']['f1_macro']:.4f} |" in card  # the one extra set is its mean


def test_alphas_with_one_value_says_that_alpha_was_given_by_alphas(tmp_path, tiny_bert_dir, dev_sets):
    # The card said "α chosen by | given (--alpha)" for --alphas 0.7, a flag the user had not given.
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alphas", "0.7"]
    assert main([*argv, "--validation_file", str(dev_sets[0]), "--output_dir", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert (
        "| α chosen by | given (the one α of --alphas: nothing to choose from) |" in card and "(--alpha)" not in card
    )
    # Nothing was chosen on the validation set: the card says neither "picked on the validation set" nor optimistic.
    assert "interpolated model at α = 0.7, given (the one α of --alphas: nothing to choose from)." in card
    assert "picked on the validation" not in card and "optimistic" not in card


def test_a_sweep_counts_and_names_the_rows_left_out_of_the_scores(tmp_path, tiny_bert_dir, capsys):
    # Rows with empty text or no label were dropped from every α's scores with nothing said: the sweep table and
    # merge_eval.json named only the rows scored.
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    texts = ["good thing", "", "bad thing", "great thing", "awful thing", "fine thing"]
    labels = ["pos", "neg", None, "pos", "neg", "pos"]
    dev = _csv(tmp_path / "dev.csv", texts, labels)
    out = tmp_path / "sweep"
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alphas", "0,1"]
    assert main([*argv, "--validation_file", str(dev), "--output_dir", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 row(s) with empty text and 1 with no label" in captured.out + captured.err
    reports = json.loads((out / "merge_eval.json").read_text())
    (report,) = reports.values()
    assert report["samples"] == 4 and report["rows_empty_text"] == 1 and report["rows_missing_label"] == 1


def test_an_output_dir_that_holds_files_or_is_a_file_is_refused_before_any_weight_loads(tmp_path, capsys):
    # A merge into an earlier run folder (an adapter's, say) used to write model.safetensors beside its
    # adapter_config.json: the folder then loaded as the old adapter, with the old eval_results.json beside it. An
    # output_dir under a file failed with a traceback after the whole sweep.
    earlier = tmp_path / "earlier-run"
    earlier.mkdir()
    (earlier / "adapter_config.json").write_text("{}")
    (tmp_path / "taken").write_text("a file")
    cases = ((earlier, "is not empty"), (tmp_path / "taken", "is a file"), (tmp_path / "taken" / "m", "lies under"))
    for out, needle in cases:
        argv = ["merge", "--pretrained", str(tmp_path / "none"), "--finetuned", str(tmp_path / "none2")]
        assert main([*argv, "--alpha", "0.5", "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("hf-transfer merge: error: output_dir"), err
        assert needle in err
    assert sorted(p.name for p in earlier.iterdir()) == ["adapter_config.json"]
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_multi_label_model_merges_without_a_sweep_and_its_sweep_is_refused(tmp_path, tiny_bert_dir, capsys):
    """The α sweep scores by accuracy (argmax), which is wrong for a multi-label model: asked for one, merge says so
    before any weight loads; with --alpha alone it merges."""
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir, problem_type="multi_label_classification")
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"text": "good film", "label": ["pos"]}\n{"text": "bad film", "label": ["neg", "pos"]}\n')
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned)]
    capsys.readouterr()
    assert main([*argv, "--alphas", "0,1", "--validation_file", str(dev), "--output_dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is a multi-label model, and merge's α sweep scores single-label" in err, err
    assert not (tmp_path / "a").exists()
    assert main([*argv, "--alpha", "0.5", "--output_dir", str(tmp_path / "b")]) == 0
    record = json.loads((tmp_path / "b" / "hf_transfer_run.json").read_text())
    assert record["problem_type"] == "multi_label_classification"


def test_a_merge_that_fails_while_writing_leaves_nothing(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """The folder is built beside output_dir and renamed at the end: a failure in the middle of writing (here a full
    disk at the card, after the weights and the run record) leaves neither output_dir nor the staging folder, and is
    one line, status 1; a merge that finishes moves every file into output_dir."""
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alpha", "0.5"]
    before = set(tmp_path.iterdir())

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("hf_transfer.merge.command.write_model_card", broken)
    assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("hf-transfer merge: error: no space left")
    assert set(tmp_path.iterdir()) == before  # no out, no hidden .out.merge-*.tmp
    monkeypatch.undo()
    assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    assert {"model.safetensors", "hf_transfer_run.json", "README.md"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert set(tmp_path.iterdir()) == before | {tmp_path / "out"}


def test_a_merge_into_the_empty_working_directory_fills_it(tmp_path, tiny_bert_dir, monkeypatch):
    # `--output_dir .` in an empty folder: the staging folder was named "..merge-N.tmp" and the final rename of it
    # onto "." failed with a raw OSError after the merge.
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alpha", "0.5"]
    assert main([*argv, "--output_dir", "."]) == 0
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in here.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert main([*argv, "--output_dir", "."]) == 2  # no longer empty: refused, as any other folder


def test_an_onnx_export_at_either_end_is_named_before_any_weight_loads(tmp_path, tiny_bert_dir, capsys):
    # It failed only after the pretrained weights had loaded, with "no file named model.safetensors".
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    onnx = tmp_path / "exported"
    onnx.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (onnx / name).write_bytes((finetuned / name).read_bytes())
    (onnx / "model.onnx").write_bytes(b"graph")
    for role, ends in (("finetuned", (pretrained, onnx)), ("pretrained", (onnx, finetuned))):
        argv = ["merge", "--pretrained", str(ends[0]), "--finetuned", str(ends[1]), "--alpha", "0.5"]
        capsys.readouterr()  # make_pair's saving bars
        assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{role} '{onnx}' is an ONNX export" in err, err
    assert not (tmp_path / "out").exists()


def test_head_init_interpolates_the_head(tmp_path, tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    probe = AutoModelForSequenceClassification.from_pretrained(finetuned)
    probe.bert.load_state_dict(_bare(pretrained))
    torch.manual_seed(3)
    with torch.no_grad():
        probe.classifier.weight.normal_()
    probe.save_pretrained(tmp_path / "probe")
    argv = [
        "merge",
        "--pretrained",
        str(pretrained),
        "--finetuned",
        str(finetuned),
        "--head_init",
        str(tmp_path / "probe"),
    ]
    assert main([*argv, "--alpha", "0", "--output_dir", str(tmp_path / "at0")]) == 0
    assert main([*argv, "--alpha", "0.5", "--output_dir", str(tmp_path / "at05")]) == 0
    at0, at05, probe_state, ft = (
        _state(tmp_path / "at0"),
        _state(tmp_path / "at05"),
        probe.state_dict(),
        _state(finetuned),
    )
    for name, value in probe_state.items():  # α = 0 is the linear probe exactly: pretrained body, its head
        assert torch.equal(at0[name], value), name
    torch.testing.assert_close(
        at05["classifier.weight"], (probe_state["classifier.weight"] + ft["classifier.weight"]) / 2
    )

    (tmp_path / "other").mkdir()
    other = AutoModelForSequenceClassification.from_pretrained(
        finetuned, id2label={0: "pos", 1: "neutral"}, label2id={"pos": 0, "neutral": 1}
    )
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match="it is for labels pos, neutral, not neg, pos"):
        parse_and_run(
            [
                "merge",
                "--pretrained",
                str(pretrained),
                "--finetuned",
                str(finetuned),
                "--head_init",
                str(tmp_path / "other"),
                "--alpha",
                "0.5",
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )
    assert not (tmp_path / "x").exists()


def _probs(path, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        probs = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.softmax(-1)
    return {model.config.id2label[i]: probs[:, i] for i in range(probs.shape[1])}


@pytest.mark.parametrize("kind", ["bert", "distilbert", "gpt2"])
def test_a_head_with_the_labels_in_another_order_is_matched_by_name(kind, tmp_path, tiny_bert_dir, capsys):
    """A linear-probe end (or head_init) whose labels are the fine-tuned ones in another order: its head was dropped
    without a word (the card said the pretrained model "has none"), and as head_init it was refused as trained for
    other labels. Its label rows are now reordered by name: α = 0 is that classifier exactly, label for label."""
    probe = make_pair(tmp_path / "probe", kind, tiny_bert_dir, labels=["neg", "pos"])[1]
    pretrained, finetuned = make_pair(tmp_path / "ft", kind, tiny_bert_dir, labels=["pos", "neg"])
    texts = ["good thing", "an awful, poor thing indeed"]
    argv = ["merge", "--pretrained", str(probe), "--finetuned", str(finetuned), "--output_dir"]
    assert main([*argv, str(tmp_path / "at0"), "--alpha", "0"]) == 0
    expected, merged = _probs(probe, texts), _probs(tmp_path / "at0", texts)
    assert not torch.allclose(expected["pos"], _probs(finetuned, texts)["pos"])  # the two heads differ
    for name in ("neg", "pos"):
        torch.testing.assert_close(merged[name], expected[name])
    card = (tmp_path / "at0" / "README.md").read_text()
    assert "(its label rows reordered from neg, pos) + α·fine-tuned head" in card and "has none" not in card
    # head_init given: the same matching, on a bare pretrained body.
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--head_init", str(probe)]
    assert main([*argv, "--alpha", "0.5", "--output_dir", str(tmp_path / "mid")]) == 0
    rows = [k for k in _state(finetuned) if k.split(".")[0] in ("classifier", "score") and "dense" not in k]
    rows = [k for k in rows if _state(finetuned)[k].shape[0] == 2]
    assert rows
    for name in rows:
        torch.testing.assert_close(
            _state(tmp_path / "mid")[name], (_state(probe)[name].flip(0) + _state(finetuned)[name]) / 2
        )


def test_a_head_init_or_pretrained_head_that_cannot_be_used_is_said(tmp_path, tiny_bert_dir, capsys):
    """head_init that is no classifier (a bare body) mixed a freshly initialised head into the result, called
    head_init's; a pretrained classifier with other labels had its head dropped while the card said it "has none"."""
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alpha", "0.5"]
    capsys.readouterr()
    assert main([*argv, "--head_init", str(pretrained), "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a sequence classifier (architectures ['BertModel'])" in err, err
    assert not (tmp_path / "x").exists()
    three = make_pair(tmp_path / "three", "bert", tiny_bert_dir, labels=["neg", "neu", "pos"])[1]
    argv = ["merge", "--pretrained", str(three), "--finetuned", str(finetuned), "--alpha", "0.5"]
    assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "at every α (the pretrained model's head is not used: it is for labels neg, neu, pos, not neg, pos)" in card


def test_a_head_of_the_other_problem_type_does_not_start_the_interpolated_head(tmp_path, tiny_bert_dir, capsys):
    """A single-label (softmax) probe with the labels of a multi-label (sigmoid) fine-tuned model started its head:
    at α = 0 the softmax-trained logits were read through sigmoids, as if a trained multi-label classifier."""
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir, problem_type="multi_label_classification")
    probe = make_pair(tmp_path / "probe", "bert", tiny_bert_dir)[1]  # single-label, the same labels
    argv = ["merge", "--finetuned", str(finetuned), "--alpha", "0.5"]
    capsys.readouterr()
    assert (
        main([*argv, "--pretrained", str(pretrained), "--head_init", str(probe), "--output_dir", str(tmp_path / "x")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "it is single-label, and the fine-tuned model multi-label" in err, err
    assert not (tmp_path / "x").exists()
    assert main([*argv, "--pretrained", str(probe), "--output_dir", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert (
        "(the pretrained model's head is not used: it is single-label, and the fine-tuned model multi-label)" in card
    )
    merge = json.loads((tmp_path / "out" / "hf_transfer_run.json").read_text())["merge"]
    assert merge["head_init"] is None and merge["head"] == "the fine-tuned head at every α"


def _modernbert_classifier(path, base, bias: bool, tokenizer_dir, seed: int):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, ModernBertConfig

    config = ModernBertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, classifier_bias=bias, pad_token_id=0, global_attn_every_n_layers=1,
        local_attention=16, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
    )  # fmt: skip
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    if base is not None:
        model.model.load_state_dict(base.model.state_dict())
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return model


def test_a_probe_head_without_the_fine_tuned_bias_starts_from_zeros_and_one_with_a_bias_is_not_dropped(
    tmp_path, tiny_bert_dir, capsys
):
    """ModernBERT's head has a bias or not (classifier_bias). A linear probe without the bias the fine-tuned head has
    was refused with "head_init ... does not fit", though no head_init was given; it now starts that bias from zeros
    (what its bias-free layer computes), so α = 0 is the probe. A probe with a bias the fine-tuned head lacks had it
    dropped without a word, so α = 0 was not the probe: now its head is not used, and the card says why."""
    probe = _modernbert_classifier(tmp_path / "probe", None, False, tiny_bert_dir, 0)
    _modernbert_classifier(tmp_path / "finetuned", probe, True, tiny_bert_dir, 1)
    argv = ["merge", "--pretrained", str(tmp_path / "probe"), "--finetuned", str(tmp_path / "finetuned")]
    assert main([*argv, "--alpha", "0", "--output_dir", str(tmp_path / "at0")]) == 0
    texts = ["good thing", "an awful, poor thing indeed"]
    for name, value in _probs(tmp_path / "probe", texts).items():
        torch.testing.assert_close(_probs(tmp_path / "at0", texts)[name], value)
    assert main([*argv, "--alpha", "0.5", "--output_dir", str(tmp_path / "mid")]) == 0
    mid, ft = _state(tmp_path / "mid"), _state(tmp_path / "finetuned")
    torch.testing.assert_close(mid["head.dense.bias"], ft["head.dense.bias"] / 2)
    record = json.loads((tmp_path / "mid" / "hf_transfer_run.json").read_text())["merge"]
    assert record["head_init_zero_bias"] == ["head.dense.bias"]

    _modernbert_classifier(tmp_path / "probe_bias", probe, True, tiny_bert_dir, 2)
    _modernbert_classifier(tmp_path / "ft_no_bias", probe, False, tiny_bert_dir, 3)
    argv = ["merge", "--pretrained", str(tmp_path / "probe_bias"), "--finetuned", str(tmp_path / "ft_no_bias")]
    assert main([*argv, "--alpha", "0", "--output_dir", str(tmp_path / "dropped")]) == 0
    assert torch.equal(
        _state(tmp_path / "dropped")["head.dense.weight"], _state(tmp_path / "ft_no_bias")["head.dense.weight"]
    )
    card = (tmp_path / "dropped" / "README.md").read_text()
    assert (
        "(the pretrained model's head is not used: its 'head.dense.bias' has no place in the fine-tuned head)" in card
    )
    capsys.readouterr()
    argv += ["--head_init", str(tmp_path / "probe_bias"), "--alpha", "0", "--output_dir", str(tmp_path / "x")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'head.dense.bias' has no place in the fine-tuned head" in err, err
    assert not (tmp_path / "x").exists()


def parse_and_run(argv):
    from hf_transfer.merge.command import run_merge

    return run_merge(parse_command_args(argv[0], argv[1:])[0])


def test_a_pretrained_checkpoint_without_pooler_keeps_the_fine_tuned_pooler(tmp_path, tiny_bert_dir):
    from transformers import BertModel

    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    bare = BertModel.from_pretrained(pretrained, add_pooling_layer=False)
    bare.save_pretrained(tmp_path / "no-pooler")
    out = tmp_path / "merged"
    argv = ["merge", "--pretrained", str(tmp_path / "no-pooler"), "--finetuned", str(finetuned), "--alpha", "0"]
    assert main([*argv, "--output_dir", str(out)]) == 0
    saved, ft = _state(out), _state(finetuned)
    assert torch.equal(saved["bert.pooler.dense.weight"], ft["bert.pooler.dense.weight"])
    assert torch.equal(
        saved["bert.encoder.layer.0.output.dense.weight"], bare.state_dict()["encoder.layer.0.output.dense.weight"]
    )
    head = json.loads((out / "hf_transfer_run.json").read_text())["merge"]["head"]
    assert head == "the fine-tuned head at every α"
    assert (
        "bert.pooler.dense.weight" in json.loads((out / "hf_transfer_run.json").read_text())["merge"]["head_tensors"]
    )


# --- adapters ------------------------------------------------------------------------------------------------------


@pytest.fixture
def lora_adapter(tmp_path, tiny_bert_dir):
    """A LoRA adapter on the tiny BERT, with non-zero updates and trained head copies, saved as hf-transfer does."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, **labels)
    config = LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["bert.pooler"]
    )
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.add_(0.1 * torch.randn_like(param))
    out = tmp_path / "adapter"
    model.save_pretrained(out)
    (out / "hf_transfer_run.json").write_text(json.dumps({"label_names": LABELS, "problem_type": None}))
    return out, labels


def _merged_adapter(tiny_bert_dir, adapter_dir, labels):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from hf_transfer.adapters.peft_model import merge_into_base

    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, **labels)
    return merge_into_base(PeftModel.from_pretrained(base, adapter_dir)).state_dict()


def test_lora_adapter_alpha_scales_the_adapter(tmp_path, tiny_bert_dir, lora_adapter):
    adapter_dir, labels = lora_adapter
    merged = _merged_adapter(tiny_bert_dir, adapter_dir, labels)
    base = _bare(tiny_bert_dir)
    states = {}
    for alpha in ("0", "0.5", "1"):
        out = tmp_path / f"lora-{alpha}"
        argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(adapter_dir), "--alpha", alpha]
        assert main([*argv, "--output_dir", str(out)]) == 0
        states[alpha] = _state(out)
    for name in merged:  # α = 1 is the merged adapter
        assert torch.equal(states["1"][name], merged[name]), name
    for name, value in base.items():  # α = 0 is the base body, the saved pooler included
        assert torch.equal(states["0"]["bert." + name], value), name
    for name in ("classifier.weight", "classifier.bias"):  # the head only the adapter has, at every α
        assert torch.equal(states["0"][name], merged[name]) and torch.equal(states["0.5"][name], merged[name])
    # Scaling LoRA by α is the same as interpolating the weights: the update is linear in its scale.
    query = "bert.encoder.layer.1.attention.self.query.weight"
    assert not torch.equal(merged[query], base[query.removeprefix("bert.")])
    for name, value in base.items():
        torch.testing.assert_close(states["0.5"]["bert." + name], (value + merged["bert." + name]) / 2)
    record = json.loads((tmp_path / "lora-0.5" / "hf_transfer_run.json").read_text())["merge"]
    assert record["finetuned_kind"] == "adapter" and record["method"].startswith("LoRA scaling")
    assert record["head_tensors"] == ["classifier.weight", "classifier.bias"]
    header = yaml.safe_load((tmp_path / "lora-0.5" / "README.md").read_text().split("---")[1])
    assert header["library_name"] == "transformers"


def test_a_lora_adapter_that_trained_the_biases_merges_in_weight_space(tmp_path, tiny_bert_dir):
    """PEFT's `bias="all"` saves trained copies of the base's biases, which LoRA's scaling does not reach: α = 0 kept
    them (3.06 from the pretrained body), and every α had them at their trained values."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(2)
    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"], bias="all")
    model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, **labels), config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and (name.endswith("bias") or "lora_B" in name):
                param.add_(0.1 * torch.randn_like(param))
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    (adapter / "hf_transfer_run.json").write_text(json.dumps({"label_names": LABELS, "problem_type": None}))
    merged, base = _merged_adapter(tiny_bert_dir, adapter, labels), _bare(tiny_bert_dir)
    states = {}
    for alpha in ("0", "0.5"):
        out = tmp_path / f"merged-{alpha}"
        argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(adapter), "--alpha", alpha]
        assert main([*argv, "--output_dir", str(out)]) == 0
        states[alpha] = _state(out)
    bias = "bert.encoder.layer.0.attention.output.dense.bias"
    assert not torch.equal(merged[bias], base[bias.removeprefix("bert.")])  # the adapter trained it
    for name, value in base.items():  # α = 0 is the pretrained body; α = 0.5 halfway, the biases too
        assert torch.equal(states["0"]["bert." + name], value), name
        torch.testing.assert_close(states["0.5"]["bert." + name], (value + merged["bert." + name]) / 2)
    assert (
        json.loads((tmp_path / "merged-0" / "hf_transfer_run.json").read_text())["merge"]["method"] == "weight space"
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_an_adapter_merged_onto_a_half_precision_base_is_saved_in_the_bases_dtype(dtype, tmp_path, lora_adapter):
    """The full-model merge kept an fp16 (bf16) fine-tuned model's dtype, but an adapter's merge was saved in fp32,
    twice the size of its fp16 (bf16) base. θ(α) is still computed in fp32, then saved in the base's dtype."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    adapter_dir, labels = lora_adapter
    base = tmp_path / "half-base"
    tiny = Path(json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"])
    AutoModel.from_pretrained(tiny, dtype=dtype).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(base)
    merged = _merged_adapter(base, adapter_dir, labels)  # the half base read in fp32, as merge reads it
    out = tmp_path / "merged"
    argv = ["merge", "--pretrained", str(base), "--finetuned", str(adapter_dir), "--alpha", "1"]
    assert main([*argv, "--output_dir", str(out)]) == 0
    saved = load_file(out / "model.safetensors")
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {dtype}
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"  # loaded as scored
    query = "bert.encoder.layer.1.attention.self.query.weight"
    assert torch.equal(saved[query], merged[query].to(dtype))
    record = json.loads((out / "hf_transfer_run.json").read_text())["merge"]
    assert record["saved_dtype"].startswith(str(dtype).removeprefix("torch.") + " (the pretrained model's")


def test_a_hub_ids_stored_dtype_is_read_in_its_cached_snapshot(tmp_path, monkeypatch):
    """A base given as a Hub id was always taken for fp32 (its dtype was read only in a local folder)."""
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from hf_transfer.core.models import stored_half_dtype

    snapshot = tmp_path / "models--org--half" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "models--org--half" / "refs").mkdir()
    (tmp_path / "models--org--half" / "refs" / "main").write_text("a" * 40)
    (snapshot / "config.json").write_text("{}")
    save_file({"w": torch.zeros(2, dtype=torch.bfloat16)}, snapshot / "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert stored_half_dtype("org/half") == "bfloat16"
    assert stored_half_dtype("org/not-cached") is None


def test_an_adapter_onto_a_base_it_does_not_fit_is_refused_before_any_weight_loads(
    tmp_path, tiny_bert_dir, lora_adapter, capsys, caplog
):
    """PEFT loaded a LoRA adapter onto a deeper model without a word (the extra block got a zero update) and onto a
    wider one with a traceback-length error after the weights loaded. Both are now one line from the adapter file's
    header and the meta model; a base of the same shape under another name is said in the log."""
    from transformers import AutoModel, AutoTokenizer

    adapter_dir, _ = lora_adapter
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    for name, change in (("deep", {"num_hidden_layers": 3}), ("wide", {"hidden_size": 64}), ("same", {})):
        config = _tiny_config("bert")
        for key, value in change.items():
            setattr(config, key, value)
        AutoModel.from_config(config).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    capsys.readouterr()  # the saves' progress bars
    expected = {
        "deep": "holds LoRA weights for 4 layers, but its target_modules pick out 6",
        "wide": "was trained on a layer 'bert.encoder.layer.0.attention.self.query' of 32 inputs and 32 outputs",
    }
    rows = tmp_path / "rows.csv"
    rows.write_text("text,label\n" + "".join(f"row {i},{LABELS[i % len(LABELS)]}\n" for i in range(8)))
    for name, needle in expected.items():
        out = tmp_path / f"merged-{name}"
        argv = ["merge", "--pretrained", str(tmp_path / name), "--finetuned", str(adapter_dir), "--alpha", "1"]
        assert main([*argv, "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1 and not out.exists()
        # predict, evaluate and export loaded it all the same, with PEFT's warning, and scored another model.
        base = ["--model_name_or_path", str(adapter_dir), "--base_model_name_or_path", str(tmp_path / name)]
        for argv in (["predict", *base, "--input_file", str(rows), "--output_file", str(tmp_path / "p.csv")],
                     ["evaluate", *base, "--validation_file", str(rows)],
                     ["export", str(adapter_dir), "--base_model_name_or_path", str(tmp_path / name), "--format",
                      "onnx", "--output_dir", str(tmp_path / "onnx")]):  # fmt: skip
            assert main(argv) == 2, argv[0]
            err = capsys.readouterr().err
            assert needle.replace("pretrained", "the base") in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "p.csv").exists() and not (tmp_path / "onnx").exists()
    # `target_modules: all-linear` is saved as the full names of the layers it took: none of them is in the extra
    # block, so the deeper base passed with the warning that it "has the same layers".
    full = tmp_path / "all-linear"
    shutil.copytree(adapter_dir, full)
    saved = json.loads((full / "adapter_config.json").read_text())
    names = [f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "value")]
    (full / "adapter_config.json").write_text(json.dumps({**saved, "target_modules": names}))
    argv = ["evaluate", "--model_name_or_path", str(full), "--base_model_name_or_path", str(tmp_path / "deep")]
    assert main([*argv, "--validation_file", str(rows)]) == 2
    assert expected["deep"] in capsys.readouterr().err
    argv = ["merge", "--pretrained", str(tmp_path / "same"), "--finetuned", str(adapter_dir), "--alpha", "1"]
    with caplog.at_level("WARNING"):
        assert main([*argv, "--output_dir", str(tmp_path / "merged-same")]) == 0
    assert "records its base as" in caplog.text and "only meaningful if that is the same model" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # onto the base it was trained on: no word
        argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(adapter_dir), "--alpha", "1"]
        assert main([*argv, "--output_dir", str(tmp_path / "merged-own")]) == 0
    assert "records its base as" not in caplog.text
    # Named by a Hub id it was pushed under, trained from a local folder (its config says which): loaded onto that
    # folder, it is the very base, and no warning says otherwise.
    named = tmp_path / "hub-named"
    shutil.copytree(adapter_dir, named)
    saved = json.loads((named / "adapter_config.json").read_text())
    (named / "adapter_config.json").write_text(json.dumps({**saved, "base_model_name_or_path": "org/tiny"}))
    (named / "hf_transfer_config.yaml").write_text(f"model_name_or_path: {tiny_bert_dir}\n")
    caplog.clear()
    with caplog.at_level("WARNING"):
        argv = ["evaluate", "--model_name_or_path", str(named), "--base_model_name_or_path", str(tiny_bert_dir)]
        assert main([*argv, "--validation_file", str(rows)]) == 0
    assert "records its base as" not in caplog.text


# --- evaluate on several sets --------------------------------------------------------------------------------------


def test_evaluate_on_several_sets(tmp_path, tiny_bert_dir, dev_sets, capsys):
    _, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    dev, shifted = dev_sets
    words = _csv(tmp_path / "words.csv", ["good one", "bad one", "awful one"], ["yes", "no", "no"])
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extra_eval": {
                    "shifted": str(shifted),
                    "words": {"file": str(words), "label_mapping": {"yes": "pos", "no": "neg"}},
                }
            }
        )
    )
    single = tmp_path / "single.json"
    base = ["evaluate", "--model_name_or_path", str(finetuned), "--validation_file", str(dev)]
    assert main([*base, "--output_file", str(single)]) == 0
    metrics = tmp_path / "metrics.json"
    assert main([*base, "--config", str(config), "--output_file", str(metrics)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(metrics.read_text())
    # The main set's report is where it always was; every set's is under `sets`.
    assert {k: v for k, v in report.items() if k != "sets"} == json.loads(single.read_text())
    assert list(report["sets"]) == ["validation", "shifted", "words"]
    assert report["sets"]["words"]["samples"] == 3 and sum(map(sum, report["sets"]["words"]["confusion_matrix"])) == 3
    assert {"precision_neg", "recall_pos", "f1_macro"} <= set(report["sets"]["shifted"])
    table = (tmp_path / "metrics.md").read_text()
    assert table.splitlines()[0] == "| set | rows | accuracy | macro-F1 | P neg | R neg | P pos | R pos |"
    assert "| words | 3 |" in table and "| words | 3 |" in printed
    for name in (
        "metrics.confusion_matrix.png",
        "metrics.shifted.confusion_matrix.json",
        "metrics.words.confusion_matrix.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert "shifted_accuracy" in printed


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--extra_eval", "[a, b]"], "NAME=FILE"),
        (["--extra_eval", "bad name=x.csv"], "NAME being"),
        (["--extra_eval", "validation=x.csv"], "name of the validation set"),
        (["--extra_eval", "a=x.csv", "--extra_eval", "a=y.csv"], "'a' is given more than once"),
        (["--extra_eval", "{a: {path: x.csv}}"], "NAME=FILE"),
    ],
)
def test_evaluate_rejects_bad_extra_eval(extra, needle, tmp_path, tiny_bert_dir, capsys):
    argv = ["evaluate", "--model_name_or_path", str(tiny_bert_dir), "--validation_file", "dev.csv", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize(
    "sets",
    [["--extra_eval", "alpha={dev}"], ["--validation_name", "alpha"], ["--extra_eval", "mean_extra_f1_macro={dev}"]],
)
def test_merge_refuses_a_set_named_as_a_sweep_column(sets, tmp_path, tiny_bert_dir, capsys):
    """Thirty-seventh review: a set named `alpha` or `mean_extra_accuracy` overwrote that key of the α sweep's rows,
    and merge died with a traceback after scoring every α. It is refused in one line, before any weights load."""
    (tmp_path / "dev.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(tiny_bert_dir / "missing"),
            "--alphas", "0,1", "--validation_file", str(tmp_path / "dev.csv"),
            *(s.format(dev=tmp_path / "dev.csv") for s in sets),
            "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "would overwrite the α sweep's own" in err, err
    assert not (tmp_path / "out").exists()


def test_a_merge_reruns_from_its_own_resolved_config(tmp_path, tiny_bert_dir, dev_sets):
    """Thirty-seventh review: every merge wrote `resume_from_checkpoint: null` into its hf_transfer_config.yaml, a
    field merge does not have, so `--config merged/hf_transfer_config.yaml` was refused as "a config for train"."""
    dev, shifted = dev_sets
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alphas", "0,1",
            "--validation_file", str(dev), "--extra_eval", f"shifted={shifted}",
            "--output_dir", str(tmp_path / "m")]  # fmt: skip
    assert main(argv) == 0
    config = tmp_path / "m" / "hf_transfer_config.yaml"
    assert "resume_from_checkpoint" not in config.read_text()
    assert main(["merge", "--config", str(config), "--output_dir", str(tmp_path / "again")]) == 0
    first, again = (json.loads((tmp_path / d / "merge_sweep.json").read_text()) for d in ("m", "again"))
    assert first["rows"] == again["rows"]


def test_a_bad_extra_set_is_named_in_the_error(tmp_path, tiny_bert_dir, dev_sets, capsys):
    """The data checks speak of "the validation data"; for an extra set the error names the set and its file."""
    dev, _ = dev_sets
    _, model = make_pair(tmp_path, "bert", tiny_bert_dir)
    (tmp_path / "nolabel.csv").write_text("text\ngood\nbad\n")
    argv = ["evaluate", "--model_name_or_path", str(model), "--validation_file", str(dev),
            "--extra_eval", f"shifted={tmp_path / 'nolabel.csv'}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"hf-transfer evaluate: error: extra_eval shifted={tmp_path / 'nolabel.csv'}: no label"), err


# --- the real model and data ---------------------------------------------------------------------------------------


def test_merge_real_minilm_through_the_cli(tmp_path, minilm_path, data_root):
    """The command line in a subprocess on the real MiniLM: a classifier made from it (its body moved a little, a
    random head) merged back at two α, scored on real Blitzer rows; the output loads with AutoModel and pipeline."""
    from transformers import AutoModelForSequenceClassification, pipeline

    from hf_transfer.core.tables import read_table

    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path, **labels)
    with torch.no_grad():
        for param in model.bert.encoder.layer[5].parameters():
            param.add_(0.01 * torch.randn_like(param))
    finetuned = tmp_path / "finetuned"
    model.save_pretrained(finetuned)
    files = {}
    for domain in ("books", "kitchen"):  # a few real rows, in the temporary folder only
        rows = read_table(str(data_root / "blitzer" / domain / "dev.tsv")).groupby("label").head(6)
        files[domain] = tmp_path / f"{domain}.jsonl"
        rows.to_json(files[domain], orient="records", lines=True)
    out = tmp_path / "merged"
    argv = ["merge", "--pretrained", minilm_path, "--finetuned", str(finetuned), "--alphas", "[0, 1]"]
    argv += ["--validation_file", str(files["books"]), "--validation_name", "books"]
    argv += ["--base_model_hub_id", "sentence-transformers/all-MiniLM-L6-v2"]
    argv += ["--extra_eval", f"kitchen={files['kitchen']}", "--text_column_name", "sentence", "--output_dir", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "hf_transfer", *argv], capture_output=True, text=True, timeout=600, env=env, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| α | books | kitchen | mean of extra sets |" in proc.stdout
    sweep = json.loads((out / "merge_sweep.json").read_text())
    assert [row["kitchen"]["samples"] for row in sweep["rows"]] == [12, 12]
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    assert merged.config.id2label == labels["id2label"]
    # The tokenizer came from the pretrained folder (the fine-tuned folder has none).
    prediction = pipeline("text-classification", model=str(out))("This blender is great, I use it every day.")[0]
    assert prediction["label"] in {"negative", "positive"}
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert header["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and "wise-ft" in header["tags"]


def test_domain_transfer_script_is_valid_bash():
    script = REPO / "scripts" / "domain_transfer.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "set -euo pipefail" in text
    for config in ("blitzer_books.yaml", "blitzer_books_merge.yaml", "sst2_merge.yaml"):
        assert (REPO / "scripts" / "configs" / config).is_file() and config in text


def test_the_card_names_a_linear_probe_end_as_a_classifier_not_the_pretrained_body():
    from hf_transfer.outputs.card_rows import zero_end

    probe = {"pretrained": "runs/books-lpft/linear_probe", "head_init": "runs/books-lpft/linear_probe"}
    assert zero_end(probe, "`base`") == ("α = 0 (a classifier: its body and head)", "`linear_probe`")
    body = {"pretrained": "minilm", "head_init": "runs/probe"}  # a body from one model, the head's start from another
    assert zero_end(body, "`minilm`") == ("α = 0 (pretrained body)", "`minilm`")
    assert zero_end({"pretrained": "minilm"}, "`minilm`") == ("α = 0 (pretrained body)", "`minilm`")


def test_a_pair_model_is_swept_on_pairs_and_its_merge_records_the_pair_column(tmp_path, tiny_bert_dir, capsys):
    """A model fine-tuned on text pairs was swept on its first texts alone when --text_pair_column_name was not given
    (α picked on the wrong scores), and the merged folder recorded no pair column, so `predict` on it then refused the
    pair column the model reads ("trained on single texts ... drop it")."""
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    record = {"text_column_name": "premise", "text_pair_column_name": "hypothesis", "label_column_name": "label"}
    (finetuned / "hf_transfer_config.yaml").write_text(yaml.safe_dump(record))
    texts = ["good thing", "bad thing", "great thing", "awful thing"]
    rows = pd.DataFrame({"premise": texts, "hypothesis": texts[::-1], "label": ["pos", "neg", "pos", "neg"]})
    rows.to_csv(tmp_path / "dev.csv", index=False)
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned)]
    sweep = ["--alphas", "0,1", "--validation_file", str(tmp_path / "dev.csv"), "--text_column_name", "premise"]
    rows.drop(columns="hypothesis").to_csv(tmp_path / "first.csv", index=False)
    capsys.readouterr()
    first = ["--alphas", "0,1", "--validation_file", str(tmp_path / "first.csv"), "--text_column_name", "premise"]
    assert main([*argv, *first, "--output_dir", str(tmp_path / "swept")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was trained on text pairs (second text column 'hypothesis')" in err, err
    assert not (tmp_path / "swept").exists()
    assert main([*argv, *sweep, "--text_pair_column_name", "hypothesis", "--output_dir", str(tmp_path / "swept")]) == 0
    assert main([*argv, *sweep, "--output_dir", str(tmp_path / "swept-read")]) == 0  # the file has the pair columns

    out = tmp_path / "merged"
    assert main([*argv, "--alpha", "0.5", "--output_dir", str(out)]) == 0
    assert yaml.safe_load((out / "hf_transfer_config.yaml").read_text())["text_pair_column_name"] == "hypothesis"
    rows.drop(columns="label").to_csv(tmp_path / "in.csv", index=False)
    predict = ["predict", "--model_name_or_path", str(out), "--input_file", str(tmp_path / "in.csv"),
               "--text_column_name", "premise", "--output_file"]  # fmt: skip
    assert main([*predict, str(tmp_path / "out.csv"), "--text_pair_column_name", "hypothesis"]) == 0
    rows.drop(columns=["label", "hypothesis"]).to_csv(tmp_path / "first.csv", index=False)
    capsys.readouterr()
    assert main([*predict[:4], str(tmp_path / "first.csv"), *predict[5:], str(tmp_path / "single.csv")]) == 2
    assert "was trained on text pairs" in capsys.readouterr().err


def test_a_merge_card_states_the_calibration_scores_of_the_fine_tuned_run(tmp_path, tiny_bert_dir):
    """The merged card inherits the fine-tuned run's recipe. Its calibration row said "validation macro-F1 <before>
    before, <after> after" with the merged model's own macro-F1 (at another α, on the merge's validation file) as
    the "after": the fine-tuned run's figure is the one that follows its calibration."""
    from test_cli import train_argv

    words = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "poor", "dire"]}
    labels = ["pos"] * 36 + ["neg"] * 12
    texts = [f"{words[label][i % 3]} item {i}" for i, label in enumerate(labels)]
    train, dev = _csv(tmp_path / "train.csv", texts, labels), _csv(tmp_path / "dev.csv", texts[::3], labels[::3])
    finetuned = tmp_path / "finetuned"
    argv = train_argv(tiny_bert_dir, train, dev, finetuned, "--calibrate_decision", "macro_f1", "--learning_rate")
    assert main([*argv, "1e-3", "--num_train_epochs", "3", "--calibration_split_percentage", "25"]) == 0
    trained = json.loads((finetuned / "hf_transfer_run.json").read_text())
    before = trained["calibration"]["validation_before"]["f1_macro"]
    after = trained["eval_metrics"]["eval_f1_macro"]
    out = tmp_path / "merged"
    argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(finetuned), "--alphas", "0,0.5"]
    assert main([*argv, "--validation_file", str(dev), "--output_dir", str(out)]) == 0
    merged = json.loads((out / "hf_transfer_run.json").read_text())
    merged_f1 = merged["eval_sets"][merged["merge"]["validation_set"]]["f1_macro"]
    assert f"{merged_f1:.4f}" != f"{after:.4f}"  # else the test could not tell the two apart
    row = next(line for line in (out / "README.md").read_text().splitlines() if line.startswith("| decision calib"))
    assert row.endswith(f"validation macro-F1 {before:.4f} before, {after:.4f} after |")
    assert row in (finetuned / "README.md").read_text().splitlines()  # the fine-tuned card says the same


def test_a_merge_of_a_merge_says_its_fine_tuned_end_is_a_merge(tmp_path, tiny_bert_dir):
    """`merge --finetuned <a merge>`: the card called that end "a fine-tuned model" and described the first merge's
    fine-tuned run as how it was trained. It now names the earlier merge, its α and ends, and the α in effect towards
    the fine-tuned model when both merges start from the same pretrained model."""
    from test_cli import train_argv

    words = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "poor", "dire"]}
    labels = ["pos", "neg"] * 16
    texts = [f"{words[label][i % 3]} item {i}" for i, label in enumerate(labels)]
    train, dev = _csv(tmp_path / "train.csv", texts, labels), _csv(tmp_path / "dev.csv", texts[::2], labels[::2])
    finetuned, first, second = tmp_path / "finetuned", tmp_path / "first", tmp_path / "second"
    assert main([*train_argv(tiny_bert_dir, train, dev, finetuned), "--num_train_epochs", "1"]) == 0
    for source, out, alpha in ((finetuned, first, "0.5"), (first, second, "0.4")):
        argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(source), "--alpha", alpha]
        assert main([*argv, "--validation_file", str(dev), "--output_dir", str(out)]) == 0
    card = (second / "README.md").read_text()
    assert "| α = 1 (fine-tuned) | `first` (itself a merge: α = 0.5 between " in card
    assert "and `finetuned`) |" in card and "(a fine-tuned model)" not in card
    assert "| in effect | α = 0.2 towards `finetuned` (both merges start from the same pretrained model) |" in card
    assert "describes how `finetuned`, the fine-tuned model behind the α = 1 end, was trained." in card
    # The one-step merge's card is as before.
    first_card = (first / "README.md").read_text()
    assert "(a fine-tuned model)" in first_card and "in effect" not in first_card
    assert "describes how the fine-tuned model (α = 1) was trained." in first_card
    # In effect means it: the second merge's body equals a single merge at α 0.2 of the fine-tuned model.
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    chained = load_file(str(second / "model.safetensors"))
    pretrained = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2).state_dict()
    tuned = load_file(str(finetuned / "model.safetensors"))
    name = "bert.encoder.layer.0.attention.self.query.weight"
    expected = 0.8 * pretrained[name] + 0.2 * tuned[name]
    assert torch.allclose(chained[name], expected, atol=1e-6)


def test_loading_a_base_whose_head_is_put_back_reports_no_fresh_head(
    tmp_path, tiny_bert_dir, lora_adapter, monkeypatch
):
    """merge, and evaluate/predict/export of an adapter, printed transformers' "MISSING ... newly initialized ...
    Consider training" for the base's head, which the adapter's (or the fine-tuned model's) head replaces: the
    bases are loaded with transformers' warnings off (and its verbosity restored after)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    real, levels = AutoModelForSequenceClassification.from_pretrained, []

    def spying(*args, **kwargs):
        levels.append((str(args[0]), transformers_logging.get_verbosity()))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", spying)
    adapter_dir, _ = lora_adapter
    argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(adapter_dir), "--alpha", "1"]
    assert main([*argv, "--output_dir", str(tmp_path / "merged")]) == 0
    bases = [level for name, level in levels if name == str(tiny_bert_dir)]
    assert bases and all(level == transformers_logging.ERROR for level in bases)
    assert transformers_logging.get_verbosity() == transformers_logging.WARNING


def test_the_merge_names_its_pretrained_end_unless_the_fine_tuned_run_started_there(tmp_path):
    """Two few-shot models of one base merged: the card's title named the base the fine-tuned model records as its
    α = 0 end, where `--pretrained` was the other model."""
    from types import SimpleNamespace

    from hf_transfer.merge.command import _base_model

    base, other, finetuned = tmp_path / "base", tmp_path / "other", tmp_path / "finetuned"
    for folder in (base, other, finetuned):
        folder.mkdir()
    (finetuned / "hf_transfer_config.yaml").write_text(f"model_name_or_path: {base}\n")
    (finetuned / "hf_transfer_card_data.json").write_text(json.dumps({"base_model": "org/base"}))
    args = SimpleNamespace(base_model_hub_id=None, pretrained=str(base), finetuned=str(finetuned))
    assert _base_model(args) == "org/base"  # the run started from --pretrained: its recorded Hub id
    assert _base_model(SimpleNamespace(**{**vars(args), "pretrained": str(other)})) == str(other)


def test_a_config_with_id2label_alone_gives_outputs_with_both(tmp_path, tiny_bert_dir):
    """A config.json holding id2label but no label2id (some tools write that; transformers 5 leaves label2id None):
    merge and export wrote `"label2id": null`, where a model folder needs both."""
    pretrained, finetuned = make_pair(tmp_path, "bert", tiny_bert_dir)
    config = json.loads((finetuned / "config.json").read_text())
    del config["label2id"]
    (finetuned / "config.json").write_text(json.dumps(config))
    out = tmp_path / "merged"
    argv = ["merge", "--pretrained", str(pretrained), "--finetuned", str(finetuned), "--alpha", "0.5"]
    assert main([*argv, "--output_dir", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["label2id"] == {"neg": 0, "pos": 1}
    assert main(["export", str(finetuned), "--format", "onnx", "--output_dir", str(tmp_path / "onnx")]) == 0
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["label2id"] == {"neg": 0, "pos": 1}
