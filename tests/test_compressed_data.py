"""Data files as people have them: gzip, bz2 and xz compressed csv/tsv/json/jsonl (their format read from the
extension before the compression's), upper-case extensions, and headers with spaces around the names. Every command
that takes a data file reads them."""

import bz2
import gzip
import json
import lzma
import shutil

import pandas as pd
import pytest
from test_cli import train_argv

from hf_transfer.cli import main, parse_command_args
from hf_transfer.core.arguments import check_data_file, data_format
from hf_transfer.core.tables import count_rows, iter_table, read_table
from hf_transfer.errors import ConfigError, DataError

OPENERS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
WORDS = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]


def compress(path, compression: str, name: str | None = None):
    packed = path.parent / (name or f"{path.name}.{compression}")
    with open(path, "rb") as src, OPENERS[compression](packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return packed


def write_rows(path, rows: list[dict]):
    ext = path.suffix
    if ext in (".csv", ".tsv"):
        pd.DataFrame(rows).to_csv(path, sep="\t" if ext == ".tsv" else ",", index=False)
    elif ext == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [{"text": f"{WORDS[i % 8]} thing, \"quoted\" {i}", "label": "pos" if i % 8 in (0, 1, 2, 6) else "neg"}
        for i in range(48)]  # fmt: skip


def test_the_format_is_the_extension_before_the_compression():
    assert data_format("d/train.csv.gz") == ("csv", "gz")
    assert data_format("TRAIN.JSONL.XZ") == ("jsonl", "xz")
    assert data_format("a.b/dev.tsv") == ("tsv", None)  # a dot in a folder's name is no extension
    assert data_format("rows.gz") == ("", "gz") and data_format("notes") == ("", None)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl"])
@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_compressed_files_read_as_the_plain_ones(tmp_path, fmt, compression):
    plain = write_rows(tmp_path / f"train.{fmt}", ROWS)
    packed = str(compress(plain, compression))
    expected = read_table(str(plain))
    pd.testing.assert_frame_equal(read_table(packed), expected)
    chunks = pd.concat(list(iter_table(packed, 7)), ignore_index=True)
    pd.testing.assert_frame_equal(chunks, expected)
    assert count_rows(packed) is None  # a progress bar without a total, not the compressed file's newlines


@pytest.mark.parametrize(
    "name,accepted",
    [("train.csv.gz", True), ("dev.JSONL.BZ2", True), ("x.tsv.xz", True), ("Train.CSV", True),
     ("rows.parquet.gz", False), ("rows.csv.zst", False), ("rows.gz", False), ("rows.txt.gz", False)],
)  # fmt: skip
def test_data_file_names_are_checked_with_their_compression(name, accepted):
    if accepted:
        check_data_file("train_file", name)
        return
    with pytest.raises(ConfigError, match=r"unsupported extension .*expected .*\.parquet, the text ones .*\.gz"):
        check_data_file("train_file", name)


@pytest.mark.parametrize("content", [b"not gzip at all", "truncated"])
def test_a_corrupt_or_truncated_compressed_file_is_one_data_error(tmp_path, content):
    packed = compress(write_rows(tmp_path / "train.csv", ROWS * 50), "gz")
    data = packed.read_bytes()
    packed.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    for read in (read_table, lambda p: list(iter_table(p, 10))):
        with pytest.raises(DataError, match="could not read .*train.csv.gz.* as gzip-compressed csv"):
            read(str(packed))


def test_an_empty_compressed_file_is_said_to_be_empty(tmp_path):
    with gzip.open(tmp_path / "e.csv.gz", "wb") as f:
        f.write(b"\n")
    with pytest.raises(DataError, match="is empty"):
        read_table(str(tmp_path / "e.csv.gz"))


def test_header_names_with_spaces_around_them_are_the_names(tmp_path):
    """`text, label` (a space after the comma, as typed by hand) gave a column ' label' that no default matched and
    that a flag could not name (YAML strips the value)."""
    path = tmp_path / "spaced.csv"
    path.write_text("text , label\nfine day,pos\nbad day, neg\n")
    assert list(read_table(str(path)).columns) == ["text", "label"]
    assert [list(f.columns) for f in iter_table(str(path), 1, columns=["label"])] == [["label"], ["label"]]
    clash = tmp_path / "clash.csv"
    clash.write_text("text,label, label\na,b,c\n")  # stripped, two columns share a name: refused, not renamed
    with pytest.raises(DataError, match="names the column 'label' more than once"):
        read_table(str(clash))


@pytest.mark.parametrize("command", ["train", "distill", "evaluate", "merge", "predict"])
def test_every_command_takes_compressed_data_files(tmp_path, command):
    gz = str(compress(write_rows(tmp_path / "d.csv", ROWS), "gz"))
    xz = str(compress(write_rows(tmp_path / "u.jsonl", ROWS), "xz"))
    argv = {
        "train": ["--train_file", gz, "--validation_file", xz, "--test_file", gz],
        "distill": ["--teacher_model_name_or_path", "t", "--train_file", gz, "--unlabeled_file", f"[{xz}, {gz}]"],
        "evaluate": ["--model_name_or_path", "m", "--validation_file", gz, "--extra_eval", f"other={xz}"],
        "merge": [*"--pretrained p --finetuned f --alpha 1 --output_dir o".split(), "--validation_file", gz],
        "predict": ["--model_name_or_path", "m", "--input_file", xz, "--output_file", str(tmp_path / "p.csv")],
    }[command]
    parsed = parse_command_args(command, ["--model_name_or_path", "m", *argv] if command == "train" else argv)
    # The compressed paths reach the commands' file fields as given (parsing refuses a format it cannot read: .zip).
    expected = {"merge": {gz}, "predict": {xz}}.get(command, {gz, xz})
    found = set()
    for args in parsed:
        for value in vars(args).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, str) and item.endswith((".gz", ".xz")):
                    found.add(item.partition("=")[2] if item.startswith("other=") else item)
    assert found == expected, found


def test_search_runs_its_trials_on_compressed_files(tmp_path, tiny_bert_dir):
    """search checks its data when it starts (through train's pre-flight), so it refused them too."""
    pytest.importorskip("optuna")
    train = compress(write_rows(tmp_path / "train.csv", ROWS[:40]), "gz")
    dev = compress(write_rows(tmp_path / "dev.tsv", ROWS[40:]), "xz")
    out = tmp_path / "searched"
    argv = train_argv(tiny_bert_dir, train, dev, out, "--few_shot", "false", "--max_steps", "1")
    assert main(["search", *argv[1:], "--n_trials", "1", "--search_space", "{learning_rate: [1.0e-4]}"]) == 0
    trials = pd.read_csv(out / "search" / "trials.csv")
    assert len(trials) == 1 and trials["state"].tolist() == ["complete"]


def test_compressed_files_through_train_evaluate_predict_merge_and_distill(tmp_path, tiny_bert_dir, capsys):
    train = compress(write_rows(tmp_path / "train.csv", ROWS[:40]), "gz")
    dev = compress(write_rows(tmp_path / "dev.jsonl", ROWS[40:]), "bz2", name="DEV.JSONL.BZ2")
    dev_tsv = compress(write_rows(tmp_path / "dev.tsv", ROWS[40:]), "xz")
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, train, dev, out, "--few_shot", "false", "--max_steps", "2")) == 0
    run = json.loads((out / "hf_transfer_run.json").read_text())
    assert run["data"]["train"]["rows"] == 40 and run["data"]["validation"]["rows"] == 8
    plain = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
    capsys.readouterr()

    metrics = tmp_path / "metrics.json"
    argv = ["--model_name_or_path", str(out), "--validation_file", str(dev_tsv), "--extra_eval", f"gz={train}"]
    assert main(["evaluate", *argv, "--output_file", str(metrics)]) == 0
    sets = json.loads(metrics.read_text())["sets"]
    assert sets["validation"]["accuracy"] == pytest.approx(plain) and sets["gz"]["samples"] == 40

    predictions = tmp_path / "p.csv"
    assert main(["predict", "--model_name_or_path", str(out), "--input_file", str(dev_tsv),
                 "--output_file", str(predictions)]) == 0  # fmt: skip
    written = pd.read_csv(predictions)
    assert written["text"].tolist() == [r["text"] for r in ROWS[40:]] and "predicted_label" in written

    merged = tmp_path / "merged"
    argv = ["--pretrained", str(tiny_bert_dir), "--finetuned", str(out), "--alphas", "0,1", "--validation_file"]
    assert main(["merge", *argv, str(dev), "--output_dir", str(merged)]) == 0
    assert (merged / "model.safetensors").is_file()

    student = tmp_path / "student"
    unlabeled = compress(write_rows(tmp_path / "u.csv", [{"text": r["text"]} for r in ROWS]), "xz")
    argv = train_argv(tiny_bert_dir, train, dev, student, "--max_steps", "1", "--unlabeled_file", str(unlabeled))
    argv = ["distill", "--teacher_model_name_or_path", str(out), "--student_layers", "[0]", *argv[3:]]
    assert main(argv) == 0
    transfer = json.loads((student / "hf_transfer_run.json").read_text())["distillation"]["transfer_set"]
    assert transfer["unlabelled_files"]["rows"] == 48
