"""`hf-transfer export DIR --format onnx [--quantize int8]`: what the folder holds (graphs, tokenizer, config with the
labels, a card with the export section), that the graph computes the PyTorch logits for any batch size and sequence
length, that a graph failing its check is refused with nothing left behind, adapters exported through their merged
model, multi-label models, `push` uploading the .onnx files, and one real-MiniLM export."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_predict import rows, tiny_adapter, tiny_classifier

from hf_transfer.cli import main
from hf_transfer.export import command as export_command
from hf_transfer.export.arguments import ExportArguments
from hf_transfer.export.command import run_export

FAST = ["--speed_samples", "4"]


def export(model, out, *extra):
    return main(["export", str(model), "--format", "onnx", "--output_dir", str(out), *FAST, *extra])


def header(readme: Path) -> dict:
    return yaml.safe_load(readme.read_text().split("---")[1])


def onnx_logits(path: Path, tokenizer_dir: Path, texts: list[str]) -> np.ndarray:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    return session.run(["logits"], {i.name: inputs[i.name] for i in session.get_inputs()})[0]


def torch_logits(model_dir: Path, texts: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.numpy()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, tiny_bert_dir):
    """A tiny classifier, and a validation file labelled with that classifier's own predictions (PyTorch accuracy
    is then 1.0, so a graph that predicts otherwise shows as an accuracy drop)."""
    root = tmp_path_factory.mktemp("export")
    model = tiny_classifier(root / "model", tiny_bert_dir, ["neg", "pos"])
    data = rows(40, empty=()).drop(columns="label")
    data["label"] = [["neg", "pos"][i] for i in torch_logits(model, data["text"].tolist()).argmax(-1)]
    assert data["label"].nunique() == 2
    data.to_csv(root / "dev.csv", index=False)
    return model, root / "dev.csv"


def test_full_model_fp32_and_int8(labelled, tmp_path, capsys, monkeypatch):
    import logging

    model, dev = labelled
    out = tmp_path / "onnx"
    # A plain process's root logger has no handler (pytest's are left out here). ONNX Runtime's quantizer gave it one
    # for the rest of the process (`logging.warning` calls basicConfig): a notebook's every later warning, its own
    # loggers' too, then printed as WARNING:name:... The root is put back.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    # A random tiny model has many rows near its decision boundary, where int8 rounding flips labels: the allowed
    # drop is set for it here (the default, 1 point, is what trained models are held to).
    assert export(model, out, "--quantize", "int8", "--validation_file", str(dev), "--max_accuracy_drop", "20") == 0
    assert logging.getLogger().handlers == []
    captured = capsys.readouterr()
    printed = captured.out
    assert "samples_per_s_batch_64" in printed and "int8_accuracy" in printed
    # The headline speedup is against PyTorch; what quantizing itself gained is said beside it.
    assert "(onnx_int8 vs pytorch fp32);" in printed and "(onnx_int8 vs onnx_fp32)" in printed
    # Each parity pass runs over the whole validation file (minutes on a CPU at real size): it had no bar.
    for bar in ("parity: pytorch", "parity: onnx fp32", "parity: onnx int8"):
        assert f"{bar}: 100%" in captured.err, captured.err[-2000:]
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "model_quantized.onnx", "config.json", "tokenizer.json", "README.md"} <= names
    # The deployed graph's confusion matrix on the validation file (export drew no picture of its report).
    assert {"confusion_matrix.json", "confusion_matrix.png"} <= names and "pictures" in printed
    matrix = json.loads((out / "confusion_matrix.json").read_text())
    assert matrix["labels"] == ["neg", "pos"] and sum(map(sum, matrix["matrix"])) == 40
    assert not any(n.endswith((".safetensors", ".bin")) for n in names)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert config["architectures"] == ["BertForSequenceClassification"]

    # Other batch sizes and sequence lengths than the trace's: the axes are dynamic, the logits PyTorch's.
    texts = ["a", "good " * 50, "bad thing", "fine fine fine", "x " * 127, "awful"]
    np.testing.assert_allclose(onnx_logits(out / "model.onnx", out, texts), torch_logits(model, texts), atol=1e-4)
    np.testing.assert_allclose(onnx_logits(out / "model.onnx", out, texts[:1]), torch_logits(model, texts[:1]),
                               atol=1e-4)  # fmt: skip
    assert (out / "model_quantized.onnx").stat().st_size < (out / "model.onnx").stat().st_size / 2

    record = json.loads((out / "hf_transfer_run.json").read_text())["export"]
    parity = record["parity"]
    assert parity["fp32_max_abs_logit_diff"] <= 1e-4 and parity["rows"] == 40
    assert parity["int8_accuracy_checked"] and parity["pytorch_accuracy"] == 1.0
    assert parity["int8_accuracy_drop_points"] <= 20 and parity["max_accuracy_drop_points"] == 20
    assert parity["int8_agreement"] == pytest.approx(parity["int8_accuracy"])  # the labels are PyTorch's predictions
    assert record["speed"]["batch_1"].keys() == record["speed"]["batch_64"].keys() == {
        "pytorch", "onnx_fp32", "onnx_int8"}  # fmt: skip
    assert record["opset"] == 17 and "torch.onnx.export" in record["exporter"]

    meta = header(out / "README.md")
    assert {"onnx", "int8"} <= set(meta["tags"])
    assert "library_name" not in meta  # no transformers weights here: the Hub's transformers snippet would fail
    card = (out / "README.md").read_text()
    assert f"max \\|Δlogit\\| {parity['int8_max_abs_logit_diff']:.1e}; same prediction" in card  # not 0.000; \| once
    assert "## Export (ONNX)" in card and "quantize_dynamic" in card and "model_quantized.onnx" in card
    assert "](confusion_matrix.png)" in card  # the exported graph's matrix, which the card tabulates
    assert "| 64 |" in card and "ONNX int8 / PyTorch fp32" in card
    accuracy = next(m for m in meta["model-index"][0]["results"][0]["metrics"] if m["type"] == "accuracy")
    assert accuracy["value"] == pytest.approx(parity["int8_accuracy"], abs=1e-4)
    # `card` writes the same card again from what the folder holds.
    assert main(["card", str(out)]) == 0
    assert "## Export (ONNX)" in (out / "README.md").read_text()
    # Without its card data it is rebuilt as an export's (it was carded as a training run: no scores, no tags).
    (out / "hf_transfer_card_data.json").unlink()
    assert main(["card", str(out)]) == 0
    again = (out / "README.md").read_text()
    assert "## Export (ONNX)" in again and {"onnx", "int8"} <= set(header(out / "README.md")["tags"])
    assert f"rows of `{Path(dev).name}`, scored with the exported int8 graph" in again


def test_a_graph_that_fails_its_check_is_not_written(labelled, tmp_path, capsys):
    model, dev = labelled
    out = tmp_path / "deep" / "onnx"
    assert export(model, out, "--max_abs_logit_diff", "1e-12") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the weights' loading bar: the check ran
    assert err.startswith("hf-transfer export: error:") and "max_abs_logit_diff" in err
    assert "nothing was written" in err
    assert not (tmp_path / "deep").exists()  # nor the folder made for it


def test_an_output_dir_that_is_or_lies_under_a_file_is_refused_before_any_weight_loads(tmp_path, capsys):
    # The model folder does not even exist: the output_dir check comes first, in the arguments. Under a file, the
    # export used to run to the end and die on mkdir with a FileExistsError traceback.
    (tmp_path / "taken").write_text("not a folder")
    for out, needle in ((tmp_path / "taken", "is a file"), (tmp_path / "taken" / "onnx", "lies under")):
        assert export(tmp_path / "missing-model", out) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("hf-transfer export: error: output_dir"), err
        assert needle in err and "is not empty" not in err
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_an_int8_graph_that_loses_accuracy_is_refused(labelled, tmp_path, monkeypatch, capsys):
    """The int8 step is replaced by one writing a graph that predicts the other label: accuracy 0 against 1."""
    model, dev = labelled
    flipped = tmp_path / "flipped"
    from transformers import AutoModelForSequenceClassification

    bad = AutoModelForSequenceClassification.from_pretrained(model)
    with torch.no_grad():
        bad.classifier.weight.neg_(), bad.classifier.bias.neg_()
    bad.save_pretrained(flipped)

    def fake_quantize(source, target):
        from transformers import AutoTokenizer

        from hf_transfer.export.onnx import export_onnx

        export_onnx(bad, AutoTokenizer.from_pretrained(model), target, 17)

    monkeypatch.setattr(export_command, "quantize_int8", fake_quantize)
    args = ExportArguments(model_dir=str(model), format="onnx", quantize="int8", output_dir=str(tmp_path / "out"),
                           validation_file=str(dev), speed_samples=4)  # fmt: skip
    with pytest.raises(export_command.ParityError, match="points below PyTorch") as refused:
        run_export(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flipped"]
    rows = len(pd.read_csv(dev))  # the rows behind the points: on a small file one row is several of them
    assert f"(0 of {rows} rows right against {rows}; one row is {100 / rows:.2f} points)" in str(refused.value)
    assert "or accept this drop with --max_accuracy_drop 100 (checked on" in str(refused.value)  # the value to give


def test_adapter_folder_is_exported_through_its_merged_model(tmp_path, tiny_bert_dir):
    from peft import PeftModel
    from transformers import AutoTokenizer, BertForSequenceClassification

    adapter = tiny_adapter(tmp_path / "adapter", tiny_bert_dir, ["neg", "pos"])
    out = tmp_path / "onnx"
    assert export(adapter, out) == 0
    texts = ["good thing", "awful awful thing number 3", "fine"]
    base = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    peft = PeftModel.from_pretrained(base, adapter).eval()
    with torch.no_grad():
        expected = peft(**AutoTokenizer.from_pretrained(adapter)(texts, padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(onnx_logits(out / "model.onnx", out, texts), expected.numpy(), atol=1e-4)
    record = json.loads((out / "hf_transfer_run.json").read_text())["export"]
    assert record["source_kind"] == "adapter, merged into its base"
    assert "adapter, merged into its base" in (out / "README.md").read_text()


def test_multi_label_model_without_validation_file(tmp_path, tiny_bert_dir, capsys):
    model = tiny_classifier(tmp_path / "multi", tiny_bert_dir, ["red", "green", "blue"], multi_label=True)
    out = tmp_path / "onnx"
    assert export(model, out, "--quantize", "int8") == 0
    # The advice is one export can follow: it checks single-label data only (it said to give --validation_file).
    err = capsys.readouterr().err
    assert "accuracy was not checked: score it with hf-transfer evaluate --model_name_or_path" in err
    assert "give --validation_file" not in err
    record = json.loads((out / "hf_transfer_run.json").read_text())["export"]
    assert record["parity"]["rows_from"] == "built-in sample texts" and not record["parity"]["int8_accuracy_checked"]
    assert "accuracy not measured here (`hf-transfer evaluate` scores the graph" in (out / "README.md").read_text()
    assert "model-index" not in header(out / "README.md")  # no unmeasured accuracy is claimed for the int8 graph

    data = pd.DataFrame({"text": ["red thing", "a green and blue one", "nothing"]})
    data.to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", "--model_name_or_path", str(out), "--input_file", str(tmp_path / "in.csv"),
                 "--output_file", str(tmp_path / "out.jsonl"), "--onnx_file", "model.onnx"]) == 0  # fmt: skip
    predicted = pd.read_json(tmp_path / "out.jsonl", lines=True)["predicted_label"].tolist()
    logits = torch_logits(model, data["text"].tolist())
    assert predicted == [[n for n, x in zip(["red", "green", "blue"], row, strict=True) if x > 0] for row in logits]
    # evaluate runs the graph asked for too (it took model_quantized.onnx, without a word), and names it.
    data["label"] = ['["red"]', '["green", "blue"]', "[]"]
    data.to_csv(tmp_path / "labelled.csv", index=False)
    argv = ["evaluate", "--model_name_or_path", str(out), "--validation_file", str(tmp_path / "labelled.csv")]
    capsys.readouterr()
    assert main(argv) == 0 and "(ONNX (model_quantized.onnx))" in capsys.readouterr().out
    assert main([*argv, "--onnx_file", "model.onnx"]) == 0 and "(ONNX (model.onnx))" in capsys.readouterr().out


def test_push_uploads_the_onnx_files(labelled, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from local_hub import TOKEN, LocalHub

    from hf_transfer.outputs import hub as hub_module

    model, _ = labelled
    out = tmp_path / "onnx"
    assert export(model, out, "--quantize", "int8") == 0
    with LocalHub() as hub:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(hub_module, "RETRY_BASE_SECONDS", 0.01)
        assert main(["push", str(out), "--hub_model_id", "tester/tiny-onnx"]) == 0
        files = hub.files("tester/tiny-onnx")
        assert main(["push", str(out), "--hub_model_id", "tester/tiny-onnx", "--revision", "int8"]) == 0
        branch = hub.files("tester/tiny-onnx", "int8")["README.md"].decode()
    # On a branch, the quick start downloads that branch, and its predict line reads the model there.
    assert 'snapshot_download(model, revision="int8")' in branch
    assert "--model_name_or_path tester/tiny-onnx --model_revision int8 --input_file" in branch
    assert files["model.onnx"] == (out / "model.onnx").read_bytes()
    assert files["model_quantized.onnx"] == (out / "model_quantized.onnx").read_bytes()
    assert {"config.json", "tokenizer.json", "README.md"} <= set(files)
    assert b'model = "tester/tiny-onnx"' in files["README.md"] and b"snapshot_download(model)" in files["README.md"]


def test_real_minilm_export_with_int8(tmp_path, minilm_path, data_root):
    """The real MiniLM with a classification head, on 96 SST-2 dev rows: fp32 within 1e-4 of PyTorch; int8 written
    and its accuracy measured (with a random head the accuracy means little, but the check runs as it will on a
    trained model)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=2)
    model.save_pretrained(tmp_path / "clf")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "clf")
    dev = pd.read_csv(data_root / "sst2" / "dev.tsv", sep="\t", quoting=3).head(96)
    dev.to_csv(tmp_path / "dev.csv", index=False)
    out = tmp_path / "onnx"
    assert export(tmp_path / "clf", out, "--quantize", "int8", "--validation_file", str(tmp_path / "dev.csv"),
                  "--max_accuracy_drop", "100") == 0  # fmt: skip
    parity = json.loads((out / "hf_transfer_run.json").read_text())["export"]["parity"]
    assert parity["fp32_max_abs_logit_diff"] <= 1e-4 and parity["rows"] == 96
    assert parity["int8_accuracy_checked"] and 0 <= parity["int8_agreement"] <= 1


def test_help_lists_the_fields_and_export_takes_the_folder_first(capsys, tmp_path):
    assert main(["export", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--format", "--quantize", "--output_dir", "--validation_file", "--opset", "--max_abs_logit_diff",
                 "--max_accuracy_drop", "--base_model_name_or_path"):  # fmt: skip
        assert flag in out, flag
    assert "--extra_eval" not in out  # shared with evaluate, refused by export: not offered
    from hf_transfer.cli import parse_command_args

    args = parse_command_args("export", [str(tmp_path / "m"), "--format", "onnx", "--quantize", "int8"])[0]
    assert (args.model_dir, args.format, args.quantize) == (str(tmp_path / "m"), "onnx", "int8")
    assert args.output_dir == str(tmp_path / "m-onnx")


@pytest.mark.parametrize("given", [".", "./", "..", "m/.."])
def test_the_default_output_dir_of_the_current_folder_lies_beside_it(tmp_path, monkeypatch, given):
    """`hf-transfer export . --format onnx` run inside the model folder wrote `./.-onnx`: a hidden folder inside the
    model it exported (`..` likewise wrote `..-onnx` in the working folder)."""
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path / "m")
    folder = tmp_path / "m" if given in (".", "./") else tmp_path
    expected = Path(str(folder.resolve()) + "-onnx")
    if given == "m/..":
        monkeypatch.chdir(tmp_path)
    args = ExportArguments(model_dir=given, format="onnx")
    assert Path(args.output_dir) == expected and not Path(args.output_dir).name.startswith(".")


def test_a_pair_model_is_checked_on_pairs_and_its_export_records_the_pair_column(tmp_path, tiny_bert_dir, capsys,
                                                                                   monkeypatch):  # fmt: skip
    """A model trained on text pairs was checked on its first texts alone: with --validation_file but no
    --text_pair_column_name the accuracy in its card was that of single texts, and without a validation file the
    parity rows had no second segment (token_type_ids never 1). The exported folder recorded no pair column, so
    `predict` on it, once the source folder had moved (or from another working directory), took single texts."""
    import shutil

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = tiny_classifier(tmp_path / "pairs", tiny_bert_dir, ["neg", "pos"])
    record = {"text_column_name": "premise", "text_pair_column_name": "hypothesis", "label_column_name": "label"}
    (source / "hf_transfer_config.yaml").write_text(yaml.safe_dump(record))
    texts = rows(12, empty=())["text"].tolist()
    data = pd.DataFrame({"premise": texts, "hypothesis": texts[::-1], "label": ["neg", "pos"] * 6})
    data.to_csv(tmp_path / "dev.csv", index=False)

    data.drop(columns="hypothesis").to_csv(tmp_path / "first.csv", index=False)
    monkeypatch.setattr(export_command, "load_inference_model", lambda *a: pytest.fail("loaded before the check"))
    capsys.readouterr()
    assert export(source, tmp_path / "x", "--validation_file", str(tmp_path / "first.csv"), "--text_column_name",
                  "premise") == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was trained on text pairs (second text column 'hypothesis')" in err, err
    assert not (tmp_path / "x").exists()
    monkeypatch.undo()

    out = tmp_path / "onnx"
    assert export(source, out) == 0
    exported = json.loads((out / "hf_transfer_run.json").read_text())["export"]
    assert exported["parity"]["rows_from"] == "built-in sample text pairs"
    assert exported["text_pair_column_name"] == "hypothesis"
    # The card's predict line ran as written failed: a pair model refuses a file without its second column.
    assert "--text_column_name premise --text_pair_column_name hypothesis" in (out / "README.md").read_text()
    moved = shutil.move(source, tmp_path / "elsewhere")
    data.drop(columns="label").to_csv(tmp_path / "in.csv", index=False)
    argv = ["predict", "--model_name_or_path", str(out), "--output_file", str(tmp_path / "out.csv"),
            "--text_column_name", "premise", "--input_file"]  # fmt: skip
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "first.csv")]) == 2
    assert "was trained on text pairs" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "in.csv"), "--text_pair_column_name", "hypothesis"]) == 0
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(moved), AutoTokenizer.from_pretrained(moved)
    inputs = tokenizer(texts, texts[::-1], padding=True, return_tensors="pt")
    assert (inputs["token_type_ids"] == 1).any()
    with torch.no_grad():
        expected = torch.softmax(model(**inputs).logits, -1)[:, 1].numpy()
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")["prob_pos"], expected, atol=1e-5)


def test_a_max_seq_length_beyond_the_model_is_lowered_and_the_card_shows_the_length_used(labelled, tmp_path, caplog,
                                                                                         monkeypatch):  # fmt: skip
    """`--max_seq_length 512` on a model that embeds 128 positions was recorded as 512, and the card's quick start
    (max_length=512) then failed inside ONNX Runtime on a long text. The export lowers it, as `train` does, says so
    in one line, and records and shows the length used."""
    import huggingface_hub

    model, _ = labelled
    out = tmp_path / "onnx"
    with caplog.at_level("WARNING", logger="hf_transfer"):
        assert export(model, out, "--max_seq_length", "512") == 0
    warned = [r.getMessage() for r in caplog.records if "max_seq_length" in r.getMessage()]
    assert warned == ["max_seq_length 512 is more than the model can embed; exporting with 128."]
    assert json.loads((out / "hf_transfer_run.json").read_text())["export"]["max_seq_length"] == 128

    card = (out / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert "max_length=128" in snippet and "512" not in snippet
    # The quick start as a user runs it, on a text longer than the model's position table.
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id: str(out))
    exec(snippet.replace('"I really enjoyed this!"', '"good " * 600'), {})


def test_onnx_runtime_writes_no_telemetry_outside_hf_home(tmp_path):
    """Each export, ONNX predict and ONNX evaluate had written a device id and an event database under
    `~/.cache/Microsoft/DeveloperTools`, and a `.ses` file in the temporary folder; a user's own setting stays."""
    import os
    import subprocess
    import sys

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["logits"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    code = (
        "import os, sys; from hf_transfer.core.onnx_model import import_onnxruntime; ort = import_onnxruntime(); "
        f"ort.InferenceSession({str(tmp_path / 'm.onnx')!r}, providers=['CPUExecutionProvider']); "
        "print(os.environ['ORT_DISABLE_TELEMETRY'])"
    )
    for setting, expected in ((None, "1"), ("0", "0")):
        home, tmp = tmp_path / f"home-{setting}", tmp_path / f"tmp-{setting}"
        home.mkdir()
        tmp.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
        env.update(HOME=str(home), TMPDIR=str(tmp), **({"ORT_DISABLE_TELEMETRY": setting} if setting else {}))
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == expected, done.stderr
        if setting is None:
            assert not [p for p in (*home.rglob("*"), *tmp.rglob("*")) if p.is_file()]


def test_an_lp_ft_runs_linear_probe_is_described_as_such_with_its_runs_base(labelled, tmp_path, capsys):
    """The probe folder of an LP-FT run keeps no card of its own: its export was carded "a model hf-transfer did not
    train", with no base model, where the run's settings name it."""
    import shutil

    model, _ = labelled
    probe = tmp_path / "run" / "linear_probe"
    shutil.copytree(model, probe)
    (probe / "hf_transfer_linear_probe.json").write_text(json.dumps({"epochs": 1.0}))
    (probe / "hf_transfer_config.yaml").write_text("model_name_or_path: org/base-model\n")
    assert export(probe, tmp_path / "onnx") == 0
    card = (tmp_path / "onnx" / "README.md").read_text()
    assert "(the linear probe of an LP-FT run, whose card is the run's)" in card and "did not train" not in card
    assert header(tmp_path / "onnx" / "README.md")["base_model"] == "org/base-model"
    # Its own card: one line naming the run's (it was "give the output_dir of a run made by hf-transfer train").
    capsys.readouterr()
    assert main(["card", str(probe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the linear probe of an LP-FT run, which keeps no card of its own" in err[0], err
