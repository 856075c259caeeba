"""What a user of transformers' `run_glue.py` brings: its switches (do_train, do_eval, do_predict), an unlabelled
test file (GLUE's, marked -1), fields that transformers 5 renamed or removed, labels joined in one csv cell. Each is
followed, or refused in one line before any weight loads, or warned; none is silently ignored."""

import csv
import json
import logging

import pytest
import test_cli
from test_cli import train_argv
from test_train_checks import WeightsLoaded, _no_weights, _refused

from hf_transfer.cli import main
from hf_transfer.core.eval_sets import align_labels
from hf_transfer.core.label_space import joined_labels
from hf_transfer.errors import DataError

tiny_data = test_cli.tiny_data  # the fixture, shared


def _write(path, rows, header=("text", "label")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- fields of run_glue and of transformers 4 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "field", "said"),
    [
        ("train", "warmup_ratio", "a value below 1 is read as a fraction of the training steps"),
        ("train", "logging_dir", "TENSORBOARD_LOGGING_DIR"),
        ("distill", "evaluation_strategy", "renamed it eval_strategy"),
        ("train", "pad_to_max_length", "padded to its longest row"),
        ("evaluate", "pad_to_max_length", "padded to its longest row"),
        ("train", "task_name", "dataset_config_name"),
    ],
)
def test_a_field_transformers_renamed_or_run_glue_had_says_what_to_write(command, field, said, capsys):
    err = _refused([command, f"--{field}", "0.1"], capsys)
    assert f"unknown field {field!r}" in err and said in err, err


@pytest.mark.parametrize(
    ("command", "field", "said"),
    [
        ("train", "label_column_name", "One 0/1 column per label is not read"),
        ("evaluate", "label_column_name", "write each row's labels as a list in one column"),
        ("predict", "text_column_name", "a second text's with text_pair_column_name"),
    ],
)
def test_a_list_of_columns_where_one_is_taken_says_what_to_write(command, field, said, capsys):
    """Multi-label data as one 0/1 column per label (as Jigsaw's toxic comments come) got "expects str" alone."""
    err = _refused([command, f"--{field}", "[toxic, insult]"], capsys)
    assert f"{field} expects str" in err and said in err, err


@pytest.mark.parametrize("field", ["warmup_ratio", "evaluation_strategy", "per_gpu_train_batch_size"])
def test_a_note_is_given_only_where_the_field_it_names_exists(field, capsys):
    """evaluate trains nothing: it has no warmup_steps, and `evaluation_strategy` had drawn "Did you mean
    'validation_name'?"."""
    err = _refused(["evaluate", f"--{field}", "1"], capsys)
    assert "Did you mean" not in err and "hf-transfer evaluate --help" in err, err


# --- do_train, do_eval, do_predict --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("switches", "said"),
    [
        (["--do_train", "false"], "do_train is false, but this command always trains"),
        (["--do_eval", "false", "--eval_strategy", "no"], "do_eval is false"),  # else transformers sets it true
        (["--do_predict", "true"], "do_predict is true but no test_file is given"),
    ],
)
def test_a_switch_asking_for_what_train_does_not_do_is_refused_first(tmp_path, tiny_bert_dir, tiny_data, switches,
                                                                     said, capsys):  # fmt: skip
    out = tmp_path / "out"
    err = _refused([*train_argv(tiny_bert_dir, *tiny_data, out), *switches], capsys)
    assert said in err, err
    assert not out.exists()


def test_do_predict_false_beside_a_test_file_is_refused(tmp_path, tiny_bert_dir, tiny_data, capsys):
    train, dev = tiny_data
    out = tmp_path / "out"
    argv = [*train_argv(tiny_bert_dir, train, dev, out), "--test_file", str(dev), "--do_predict", "false"]
    assert "do_predict is false but test_file is given" in _refused(argv, capsys)
    assert not out.exists()


def test_run_glue_switches_set_true_are_what_train_does(tmp_path, tiny_bert_dir, tiny_data, monkeypatch):
    _no_weights(monkeypatch, "hf_transfer.train.command", "load_classifier")
    argv = [*train_argv(tiny_bert_dir, *tiny_data, tmp_path / "out"), "--do_train", "true", "--do_eval", "true"]
    with pytest.raises(WeightsLoaded):  # past every check: the weights were about to load
        main([*argv, "--few_shot", "false"])


def test_a_resolved_config_no_longer_records_the_switches_no_command_reads(tmp_path, tiny_bert_dir, tiny_data):
    import yaml

    out = tmp_path / "out"
    argv = [*train_argv(tiny_bert_dir, *tiny_data, out), "--few_shot", "false", "--max_steps", "1"]
    assert main([*argv, "--disable_tqdm", "true"]) == 0
    resolved = yaml.safe_load((out / "hf_transfer_config.yaml").read_text())
    assert not {"do_train", "do_eval", "do_predict"} & set(resolved)  # recorded false, for a run that trained
    # The results files hold what run_glue's hold: total_flos (transformers' PrinterCallback, used with
    # disable_tqdm, popped it from the train metrics) and the evaluation's epoch (Trainer.evaluate logs it).
    train, evaluated = (json.loads((out / f"{name}_results.json").read_text()) for name in ("train", "eval"))
    assert train["total_flos"] > 0 and train["epoch"] > 0
    assert evaluated["epoch"] == train["epoch"] and "eval_samples" in evaluated


def test_the_false_switches_a_resolved_config_holds_are_no_request(tmp_path, tiny_bert_dir, tiny_data, monkeypatch):
    """Every hf_transfer_config.yaml holds TrainingArguments' defaults, do_train/do_eval/do_predict false among them:
    a copy of it, edited and given as --config, is not refused for them."""
    import yaml

    train, dev = tiny_data
    config = tmp_path / "copied.yaml"
    config.write_text(yaml.safe_dump({"do_train": False, "do_eval": False, "do_predict": False,
                                      "test_file": str(dev), "few_shot": False}))  # fmt: skip
    _no_weights(monkeypatch, "hf_transfer.train.command", "load_classifier")
    with pytest.raises(WeightsLoaded):
        main([*train_argv(tiny_bert_dir, train, dev, tmp_path / "out"), "--config", str(config)])


# --- an unlabelled test file ----------------------------------------------------------------------------------------


def test_a_test_file_without_labels_gets_its_predictions_written(tmp_path, tiny_bert_dir, tiny_data):
    train, dev = tiny_data
    texts = ["good thing 0", "", "good thing 2", "good thing 3", "good thing 4", "good thing 5"]
    test = _write(tmp_path / "test.csv", [[t] for t in texts], header=("text",))
    out = tmp_path / "out"
    assert main([*train_argv(tiny_bert_dir, train, dev, out), "--test_file", str(test), "--few_shot", "false"]) == 0
    with open(out / "predict_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # One row per file row: the empty one keeps its place with no prediction (the rows after it had been shifted)
    assert [r["index"] for r in rows] == ["0", "1", "2", "3", "4", "5"] and [r["text"] for r in rows] == texts
    assert rows[1]["predicted_label"] == "" and rows[1]["score"] == ""
    kept = rows[:1] + rows[2:]
    assert all(r["predicted_label"] in ("neg", "pos") and 0.5 <= float(r["score"]) <= 1 for r in kept)
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["test_metrics"] is None and record["test_predictions"] == {"file": "predict_results.csv", "rows": 5}
    # GLUE's test files carry their own `index` column: it is kept, not replaced
    glue = _write(tmp_path / "glue.csv", [[1000 + i, t] for i, t in enumerate(texts)], header=("index", "text"))
    out = tmp_path / "glue-out"
    assert main([*train_argv(tiny_bert_dir, train, dev, out), "--test_file", str(glue), "--few_shot", "false"]) == 0
    with open(out / "predict_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "text", "predicted_label", "score"]
    assert [r["index"] for r in rows] == [str(1000 + i) for i in range(6)] and rows[1]["predicted_label"] == ""
    assert not (out / "test_results.json").exists()


def test_glue_test_labels_of_minus_one_are_read_as_hidden(tmp_path, tiny_bert_dir, tiny_data, caplog):
    train, dev = tiny_data
    test = _write(tmp_path / "test.csv", [[f"bad thing {i}", -1] for i in range(4)])
    out = tmp_path / "out"
    argv = [*train_argv(tiny_bert_dir, train, dev, out), "--test_file", str(test), "--few_shot", "false"]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    assert any("every label of the test data is -1" in r.getMessage() for r in caplog.records)
    assert len((out / "predict_results.csv").read_text().splitlines()) == 5
    # predict on the same file: predictions, no scores (was: "labels ['-1'] ... pass --label_mapping")
    predicted = tmp_path / "pred.csv"
    assert main(["predict", "--model_name_or_path", str(out), "--input_file", str(test), "--output_file",
                 str(predicted)]) == 0  # fmt: skip
    assert len(predicted.read_text().splitlines()) == 5
    with pytest.raises(DataError, match=r"every label in 'test.csv' is -1.*hf-transfer predict writes"):
        align_labels(["-1"], ["neg", "pos"], "test.csv")  # evaluate: nothing to score


def test_minus_one_stays_a_label_where_training_has_it(tmp_path, tiny_bert_dir, capsys):
    rows = [[f"{w} thing {i}", -1 if w == "bad" else 1] for i in range(20) for w in ("bad", "good")]
    train = _write(tmp_path / "train.csv", rows)
    test = _write(tmp_path / "test.csv", [["bad thing", -1], ["bad one", -1]])
    out = tmp_path / "out"
    assert main([*train_argv(tiny_bert_dir, train, train, out), "--test_file", str(test), "--few_shot", "false"]) == 0
    assert (out / "test_results.json").is_file() and not (out / "predict_results.csv").exists()


# --- labels joined in one cell --------------------------------------------------------------------------------------


def test_labels_joined_in_one_cell_are_recognised():
    assert joined_labels({"Tops", "Tops;recommended", "Dresses;recommended"}) == (
        ";",
        ["Dresses;recommended", "Tops;recommended"],
    )
    assert joined_labels({"a,b", "b,c"})[0] == ","
    assert joined_labels({"New York, NY", "Paris"}) is None  # one value with a comma: a name, not a list
    assert joined_labels({"positive", "negative", 1}) is None
    # Chinese and Japanese lists join with ideographic and full-width marks: 15 "combination" classes, no word
    assert joined_labels({"物流、质量", "质量、价格", "物流"}) == ("、", ["物流、质量", "质量、价格"])
    assert joined_labels({"物流，质量", "价格，质量"})[0] == "，"


def test_training_on_joined_labels_warns_that_each_is_a_class_of_its_own(tmp_path, tiny_bert_dir, monkeypatch,
                                                                          caplog):  # fmt: skip
    rows = [[f"thing {i}", ["Tops", "Tops;recommended", "Dresses", "Dresses;recommended"][i % 4]] for i in range(40)]
    train = _write(tmp_path / "train.csv", rows)
    _no_weights(monkeypatch, "hf_transfer.train.command", "load_classifier")
    with caplog.at_level(logging.WARNING), pytest.raises(WeightsLoaded):
        main([*train_argv(tiny_bert_dir, train, train, tmp_path / "out"), "--few_shot", "false"])
    said = [r.getMessage() for r in caplog.records if "several labels joined by ';'" in r.getMessage()]
    assert len(said) == 1 and "as a list" in said[0], said


def test_scoring_joined_labels_says_to_write_lists_not_a_mapping():
    with pytest.raises(DataError, match=r"join several of the model's labels in one cell; write each row's labels"):
        align_labels(["Tops", "Tops;recommended"], ["Dresses", "Tops", "recommended"], "test.csv")


# --- label smoothing of a multi-label model -------------------------------------------------------------------------


def test_label_smoothing_of_a_multi_label_model_is_refused_first(tmp_path, tiny_bert_dir, capsys):
    rows = [[f"thing {i}", json.dumps([["a"], ["b"], ["a", "b"]][i % 3])] for i in range(30)]
    train = _write(tmp_path / "train.csv", rows)
    out = tmp_path / "out"
    err = _refused([*train_argv(tiny_bert_dir, train, train, out), "--label_smoothing_factor", "0.1"], capsys)
    assert "label_smoothing_factor 0.1 applies to single-label classification" in err, err
    assert not out.exists()


# --- GLUE's pair columns --------------------------------------------------------------------------------------------


def test_glue_pair_columns_are_read_as_pairs_by_train_and_then_by_evaluate(tmp_path, tiny_bert_dir, caplog):
    """QNLI's `question` and `sentence`: `sentence` alone was taken as the text and the questions dropped, silently;
    and a pair model's evaluate refused a file that had the very columns it was trained with."""
    rows = [[f"is it {w}", f"it is {w} {i}", "yes" if i % 2 else "no"] for i in range(24) for w in ("good", "bad")]
    train = _write(tmp_path / "train.csv", rows, header=("question", "sentence", "label"))
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert main([*train_argv(tiny_bert_dir, train, train, out), "--few_shot", "false"]) == 0
    assert any("reading text pairs from columns 'question' and 'sentence'" in r.getMessage() for r in caplog.records)
    record = json.loads((out / "hf_transfer_run.json").read_text())["data"]["columns"]
    assert record == {"text": "question", "text_pair": "sentence", "label": "label"}
    assert main(["evaluate", "--model_name_or_path", str(out), "--validation_file", str(train)]) == 0
    # `text_column_name: sentence` (blitzer_books.yaml's) on a QNLI file read the sentences alone without a word.
    caplog.clear()
    single = tmp_path / "single"
    with caplog.at_level(logging.WARNING):
        argv = [*train_argv(tiny_bert_dir, train, train, single), "--text_column_name", "sentence"]
        assert main([*argv, "--few_shot", "false", "--max_steps", "1"]) == 0
    assert any(
        "GLUE's text pair 'question' and 'sentence', but only 'sentence' is read; set text_column_name: question and "
        "text_pair_column_name: sentence" in r.getMessage()
        for r in caplog.records
    )


def test_a_dataset_folder_with_glue_pair_columns_is_read_as_pairs(tmp_path, tiny_bert_dir, caplog):
    """The pairs were found in train_file alone: a `dataset_name` folder of MRPC-like files was refused ("no text
    column"), and a QNLI-like one would read `sentence` alone."""
    folder = tmp_path / "qnli"
    folder.mkdir()
    rows = [[f"is it {w}", f"it is {w} {i}", "yes" if i % 2 else "no"] for i in range(12) for w in ("good", "bad")]
    for split in ("train", "validation"):
        _write(folder / f"{split}.csv", rows, header=("question", "sentence", "label"))
    out = tmp_path / "out"
    argv = ["train", "--model_name_or_path", str(tiny_bert_dir), "--dataset_name", str(folder), "--output_dir"]
    with caplog.at_level(logging.WARNING):
        assert main([*argv, str(out), "--max_steps", "1", "--few_shot", "false", "--report_to", "none"]) == 0
    said = [r.getMessage() for r in caplog.records]
    assert "reading text pairs from columns 'question' and 'sentence' of dataset_name" in "\n".join(said)
    record = json.loads((out / "hf_transfer_run.json").read_text())["data"]["columns"]
    assert record == {"text": "question", "text_pair": "sentence", "label": "label"}


def test_a_text_column_beside_glue_pair_columns_keeps_single_texts(tmp_path, tiny_bert_dir, monkeypatch, caplog):
    rows = [[f"text {i}", f"first {i}", f"second {i}", ["no", "yes"][i % 2]] for i in range(24)]
    train = _write(tmp_path / "train.csv", rows, header=("text", "sentence1", "sentence2", "label"))
    _no_weights(monkeypatch, "hf_transfer.train.command", "load_classifier")
    with caplog.at_level(logging.WARNING), pytest.raises(WeightsLoaded):
        main([*train_argv(tiny_bert_dir, train, train, tmp_path / "out"), "--few_shot", "false"])
    assert not any("reading text pairs" in r.getMessage() for r in caplog.records)


# --- the card of a PEFT method beyond LoRA --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "rows"),
    [
        ("adalora", ["| method settings | init_r 12, target_r 8 |"]),  # the card said `rank r | 8` alone
        ("loha", ["| alpha | 16 |"]),  # LoHa's scaling field is `alpha`; the card called it lora_alpha
    ],
)
def test_a_peft_methods_card_names_its_own_settings(tmp_path, tiny_bert_dir, tiny_data, method, rows):
    out = tmp_path / "out"
    argv = [*train_argv(tiny_bert_dir, *tiny_data, out), "--peft_method", method, "--max_steps", "2"]
    assert main([*argv, "--few_shot", "false"]) == 0
    card = (out / "README.md").read_text()
    for row in rows:
        assert row in card, card[card.find("## How it was trained") :][:1500]


# --- the columns a model was trained with --------------------------------------------------------------------------


def test_evaluate_and_predict_read_the_columns_the_model_was_trained_with(tmp_path, tiny_bert_dir, caplog):
    """Trained on `Review Text` and `My Label`, the same file given to evaluate or predict failed with "no text
    column" (and predict scored nothing): the trained columns are read when the file has no default column."""
    rows = [(f"{w} thing {i}", label) for i, (w, label) in enumerate([("good", "pos"), ("bad", "neg")] * 10)]
    data = _write(tmp_path / "reviews.csv", rows, header=("Review Text", "My Label"))
    out = tmp_path / "run"
    columns = ["--text_column_name", "Review Text", "--label_column_name", "My Label", "--few_shot", "false"]
    assert main([*train_argv(tiny_bert_dir, data, data, out), *columns, "--max_steps", "1"]) == 0
    trained = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
    metrics = tmp_path / "metrics.json"
    with caplog.at_level(logging.WARNING):
        argv = ["evaluate", "--model_name_or_path", str(out), "--validation_file", str(data)]
        assert main([*argv, "--output_file", str(metrics)]) == 0
        argv = ["predict", "--model_name_or_path", str(out), "--input_file", str(data)]
        assert main([*argv, "--output_file", str(tmp_path / "predicted.csv")]) == 0
    assert json.loads(metrics.read_text())["accuracy"] == trained
    assert "reading column 'Review Text'" in caplog.text and "reading column 'My Label'" in caplog.text
    predicted = list(csv.DictReader(open(tmp_path / "predicted.csv")))
    assert len(predicted) == 20 and {r["predicted_label"] for r in predicted} <= {"pos", "neg"}
    # A file without the trained columns is read by the defaults; one with both reads the trained ones.
    other = _write(tmp_path / "plain.csv", [(t, label) for t, label in rows], header=("text", "label"))
    caplog.clear()
    argv = ["evaluate", "--model_name_or_path", str(out), "--validation_file", str(other)]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    assert "reading column" not in caplog.text
    both = _write(tmp_path / "both.csv", [("x", t, "neg", label) for t, label in rows],
                  header=("text", "Review Text", "label", "My Label"))  # fmt: skip
    argv = ["evaluate", "--model_name_or_path", str(out), "--validation_file", str(both), "--output_file"]
    with caplog.at_level(logging.WARNING):
        assert main([*argv, str(tmp_path / "both.json")]) == 0
    assert json.loads((tmp_path / "both.json").read_text())["accuracy"] == trained
    assert "reading column 'Review Text'" in caplog.text


def test_integer_labels_read_as_ids_of_a_model_with_named_labels_are_said(caplog):
    """A file labelled 0/1 scored against a model named Positive/negative had its 0 read as `Positive`, silently."""
    with caplog.at_level(logging.WARNING):
        assert align_labels(["0", "1"], ["Positive", "negative"], "int.csv") == {0: 0, 1: 1}
    assert "read as the model's label ids (0 = Positive, 1 = negative)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a model with no names of its own: ids are all there is
        assert align_labels(["1", "0"], ["LABEL_0", "LABEL_1"], "int.csv") == {0: 1, 1: 0}
    assert not caplog.text


def test_a_label_that_spells_a_missing_value_is_warned(tmp_path, caplog):
    """`NaN` in a csv label column (as pandas writes a missing value) became a third class, without a word."""
    from hf_transfer.core.arguments import DataArguments
    from hf_transfer.core.data import load_data

    rows = [(f"thing {i}", ["pos", "neg", "NaN"][i % 3]) for i in range(12)]
    train = _write(tmp_path / "train.csv", rows)
    with caplog.at_level(logging.WARNING):
        prepared = load_data(DataArguments(train_file=str(train), validation_file=str(train)))
    assert prepared.label_names == ["NaN", "neg", "pos"]  # still read as written: a class may be named so
    assert "holds 'NaN', read as a class of its own" in caplog.text


def test_splits_that_name_their_text_differently_are_told_to_agree(tmp_path, tiny_bert_dir, tiny_data, capsys):
    """train's `text` and validation's `sentence` (both default names) drew "Did you mean 'target'?", the label."""
    train, _ = tiny_data
    dev = _write(tmp_path / "dev.csv", [("hello there", "pos")], header=("sentence", "target"))
    err = _refused(train_argv(tiny_bert_dir, train, dev, tmp_path / "out"), capsys)
    assert "no column 'text', read by default in another split, but has 'sentence'" in err, err
    assert "Did you mean" not in err and not (tmp_path / "out").exists()
