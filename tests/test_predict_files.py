"""`hf-transfer predict` and the files it is given: the ONNX graph it runs is one of the model folder's own, and its
width is the config's label count; JSON lines whose keys change order or appear late are written under the first
chunk's columns (or refused); an output name that is only its extension (`.csv`) is written in that format."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from test_predict import rows, tiny_classifier

from hf_transfer.cli import main
from hf_transfer.predict import command as predict_command

KEYS = [{"text": "one", "a": 1}, {"text": "two", "a": 2}, {"a": 3, "text": "three"}, {"text": "four", "a": 4},
        {"text": "five"}, {"text": "six"}, {"text": "seven", "a": None}]  # fmt: skip
OUTPUT = ["predicted_label", "score", "prob_neg", "prob_pos"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_bert_dir):
    """A two-label model, and ONNX exports of it and of a three-label model."""
    root = tmp_path_factory.mktemp("predict-files")
    two = tiny_classifier(root / "two", tiny_bert_dir, ["neg", "pos"])
    three = tiny_classifier(root / "three", tiny_bert_dir, ["a", "b", "c"], seed=2)
    for model in (two, three):
        argv = ["export", str(model), "--format", "onnx", "--output_dir", f"{model}-onnx", "--speed_samples", "4"]
        assert main(argv) == 0
    return {"two": two, "two_onnx": root / "two-onnx", "three_onnx": root / "three-onnx"}


def write_jsonl(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run(model, input_file, output_file, *extra):
    return main(["predict", "--model_name_or_path", str(model), "--input_file", str(input_file), "--output_file",
                 str(output_file), *extra])  # fmt: skip


def one_line_error(capsys) -> str:
    """The error the CLI printed last, checked to be one line: no traceback before it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hf-transfer predict: error:"), err
    return last


@pytest.mark.parametrize("where", ["sibling", "absolute", "not_a_graph"])
def test_onnx_file_names_a_graph_in_the_model_folder(models, tmp_path, capsys, monkeypatch, where):
    """`--onnx_file ../other/model.onnx` (or an absolute path) ran another folder's graph under this folder's labels:
    a traceback for another label count, and, for the same count, the other model's outputs under these names."""
    folder = shutil.copytree(models["two_onnx"], tmp_path / "copy")
    shutil.copytree(models["three_onnx"], tmp_path / "other")
    given = {"sibling": "../other/model.onnx", "absolute": str(models["two_onnx"] / "model.onnx"),
             "not_a_graph": "config.json"}[where]  # fmt: skip
    assert (folder / given).is_file()
    monkeypatch.setattr(predict_command, "load_inference_model", lambda *a: pytest.fail("loaded before the check"))
    write_jsonl(tmp_path / "in.jsonl", KEYS)
    capsys.readouterr()
    assert run(folder, tmp_path / "in.jsonl", tmp_path / "out.csv", "--onnx_file", given) == 2
    err = one_line_error(capsys)
    assert f"onnx_file {given!r} is not a .onnx file in {str(folder)!r}, which holds ['model.onnx']" in err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("symbolic", [False, True])
def test_a_graph_for_another_label_count_is_refused_in_one_line(models, tmp_path, capsys, symbolic):
    """A three-label graph in a two-label folder died with a numpy shape mismatch mid-run. Its width is checked when
    the session is built; a graph whose width is symbolic, on its first batch, and the old output stays."""
    import onnx

    folder = shutil.copytree(models["two_onnx"], tmp_path / "copy")
    graph = onnx.load(models["three_onnx"] / "model.onnx")
    if symbolic:
        graph.graph.output[0].type.tensor_type.shape.dim[-1].dim_param = "labels"
    onnx.save(graph, folder / "other.onnx")
    write_jsonl(tmp_path / "in.jsonl", KEYS)
    (tmp_path / "out.csv").write_text("old,content\n")
    capsys.readouterr()
    assert run(folder, tmp_path / "in.jsonl", tmp_path / "out.csv", "--onnx_file", "other.onnx") == 2
    err = one_line_error(capsys)
    assert "other.onnx' gives 3 logits per row, but the config it runs with has 2 labels" in err
    assert (tmp_path / "out.csv").read_text() == "old,content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "in.jsonl", "out.csv"]
    # The folder's own graph runs.
    assert run(folder, tmp_path / "in.jsonl", tmp_path / "out.csv", "--onnx_file", "model.onnx") == 0


def read(path, ext):
    return {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True), "parquet": pd.read_parquet}[ext](path)


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_later_json_lines_are_written_under_the_first_chunks_columns(models, tmp_path, ext):
    """Keys in another order in a later chunk put its data under the wrong csv headers, and a key missing from a
    whole chunk failed parquet's writer with a traceback. Each chunk is the first one's columns, in their order."""
    write_jsonl(tmp_path / "in.jsonl", KEYS)
    assert run(models["two"], tmp_path / "in.jsonl", tmp_path / f"chunked.{ext}", "--chunk_rows", "2") == 0
    assert run(models["two"], tmp_path / "in.jsonl", tmp_path / f"whole.{ext}") == 0
    chunked, whole = read(tmp_path / f"chunked.{ext}", ext), read(tmp_path / f"whole.{ext}", ext)
    assert list(chunked.columns) == ["text", "a", *OUTPUT]
    assert chunked["text"].tolist() == [line["text"] for line in KEYS]
    assert chunked["a"].tolist()[:4] == [1, 2, 3, 4] and chunked["a"].isna().tolist() == [False] * 4 + [True] * 3
    pd.testing.assert_frame_equal(chunked, whole)


@pytest.mark.parametrize("key", ["extra", "score", "label"])
def test_a_key_first_seen_after_the_first_chunk_stops_the_run(models, tmp_path, capsys, key):
    """A key the first chunk lacks had no column to go to (csv wrote its values under other headers), and `score` or
    `label` there escaped the clash check and the metrics: one line naming the key and its line, and no file."""
    lines = [dict(line) for line in KEYS[:4]]
    lines[3][key] = "E"
    write_jsonl(tmp_path / "in.jsonl", lines)
    (tmp_path / "out.csv").write_text("old,content\n")
    capsys.readouterr()
    assert run(models["two"], tmp_path / "in.jsonl", tmp_path / "out.csv", "--chunk_rows", "2") == 2
    err = one_line_error(capsys)
    assert f"line 4 of {str(tmp_path / 'in.jsonl')!r} has the key {key!r}, which none of the first 2 rows has" in err
    assert (tmp_path / "out.csv").read_text() == "old,content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.csv"]


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_an_output_name_that_is_only_its_extension_is_written_in_that_format(models, tmp_path, ext):
    """`--output_file out/.csv` passed the argument check (extension csv) and was written as JSON lines: the writer
    read the format from Path.suffix, which is empty for `.csv`."""
    rows(12, empty=()).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "out").mkdir()
    assert run(models["two"], tmp_path / "in.csv", tmp_path / "out" / f".{ext}") == 0
    assert run(models["two"], tmp_path / "in.csv", tmp_path / f"named.{ext}") == 0
    got, expected = read(tmp_path / "out" / f".{ext}", ext), read(tmp_path / f"named.{ext}", ext)
    assert list(got.columns) == ["id", "text", "label", *OUTPUT]
    pd.testing.assert_frame_equal(got, expected)
    np.testing.assert_allclose(got["prob_neg"] + got["prob_pos"], 1, atol=1e-6)


def test_a_missing_output_folder_is_made_and_removed_again_when_the_run_fails(models, tmp_path, capsys):
    """`predict` refused an output_file in a folder that did not exist, where `evaluate` made it; both make it now,
    and a run that fails late leaves no folder behind. A file in the output's path is refused before the model
    loads."""
    rows(6, empty=()).to_csv(tmp_path / "in.csv", index=False)
    assert run(models["two"], tmp_path / "in.csv", tmp_path / "new" / "deeper" / "out.csv") == 0
    assert list(read(tmp_path / "new" / "deeper" / "out.csv", "csv").columns) == ["id", "text", "label", *OUTPUT]
    good = [{"text": f"row {i}"} for i in range(6)]
    (tmp_path / "late.jsonl").write_text("".join(json.dumps(line) + "\n" for line in good) + "{not json\n")
    assert run(models["two"], tmp_path / "late.jsonl", tmp_path / "gone" / "out.csv", "--chunk_rows", "2") == 2
    assert "line 7" in one_line_error(capsys)
    assert not (tmp_path / "gone").exists()
    (tmp_path / "a_file").write_text("")
    assert run(models["two"], tmp_path / "in.csv", tmp_path / "a_file" / "out.csv") == 2
    assert f"lies under {str(tmp_path / 'a_file')!r}, which is a file" in one_line_error(capsys)


def test_an_empty_header_cell_is_written_back_empty(models, tmp_path):
    """A csv saved with its pandas index (the clothing reviews' first column) has an empty header cell, which pandas
    reads as `Unnamed: 0`: predict wrote that name into the output's header instead of the header it read."""
    rows(6, empty=()).to_csv(tmp_path / "in.csv")  # index=True: the header starts with an empty cell
    assert (tmp_path / "in.csv").read_text().startswith(",id,text,label\n")
    assert run(models["two"], tmp_path / "in.csv", tmp_path / "out.csv") == 0
    header = (tmp_path / "out.csv").read_text().splitlines()[0]
    assert header == ",id,text,label," + ",".join(OUTPUT)
    assert run(models["two"], tmp_path / "in.csv", tmp_path / "out.jsonl") == 0  # jsonl and parquet keep a named key
    assert "Unnamed: 0" in json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    # Beside a real column named `Unnamed: 0`, pandas calls the blank one `Unnamed: 0.1`: found by position.
    (tmp_path / "both.csv").write_text(",text,Unnamed: 0\n1,good film,a\n2,bad film,b\n")
    assert run(models["two"], tmp_path / "both.csv", tmp_path / "both_out.csv") == 0
    assert (tmp_path / "both_out.csv").read_text().splitlines()[0] == ",text,Unnamed: 0," + ",".join(OUTPUT)


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_a_quoted_cells_line_breaks_are_read_and_written_as_they_are(models, tmp_path, capsys, ending):
    """A quoted cell holding "\\r\\n" (3,212 of them in the clothing reviews) reached the model, and predict's output,
    as "\\n": pandas, `datasets` and `pipeline()` on the file read it as written (a byte-level BPE tokenizer scores
    the two differently). Files whose lines end in "\\r\\n" or "\\r" alone still read; the progress bar, which counts
    lines, ends at the number of rows."""
    import csv

    from hf_transfer.core.tables import read_table

    texts = ["first line\r\nsecond line", "plain", 'said "so"\r\nand left', "an old Mac break\rin a cell"]
    frame = pd.DataFrame({"text": texts, "label": ["pos", "neg", "pos", "neg"]})
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False, lineterminator=ending, quoting=csv.QUOTE_NONNUMERIC)
    assert pd.read_csv(path)["text"].tolist() == texts  # as pandas reads it from the path
    assert read_table(str(path))["text"].tolist() == texts
    assert run(models["two"], path, tmp_path / "out.csv") == 0
    # A cell holding "\r" alone is quoted too (the csv module quotes "\n" only): read back, it is one row.
    assert pd.read_csv(tmp_path / "out.csv")["text"].tolist() == texts
    assert "4/4" in capsys.readouterr().err  # 4 rows, more lines counted
