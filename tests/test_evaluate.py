"""`hf-transfer evaluate` end to end, as a user runs it: the scores against scikit-learn on the rows it scored, the
rows it left out said so, and its outputs that may not overwrite an input or the model it scores."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from test_predict import WORDS, direct_logits, tiny_classifier

from hf_transfer.cli import main
from hf_transfer.core.eval_sets import reports_markdown


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("evaluate-models")
    return {
        "full": tiny_classifier(root / "full", tiny_bert_dir, ["neg", "pos"]),
        "ratings": tiny_classifier(root / "ratings", tiny_bert_dir, ["1", "2", "3"], seed=3),
    }


def no_model_load(monkeypatch):
    monkeypatch.setattr("hf_transfer.evaluation.command.load_inference_model", lambda *a: pytest.fail("loaded"))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_rows_left_out_of_the_scores_are_counted_and_named(models, tmp_path, capsys):
    """Rows with empty text or no label were dropped without a word: on the clothing reviews 858 of 23,486 rows went
    unscored while the output named only the 22,628 `samples`. They are counted in the results and metrics.json and
    named in a warning; the scores are those of scikit-learn on the rows kept."""
    texts = [" ".join(WORDS[(i + j) % 8] for j in range(i % 5 + 1)) for i in range(20)]
    labels = ["pos" if i % 3 else "neg" for i in range(20)]
    texts[2], texts[5], labels[7], labels[11], labels[12] = "", "  ", None, None, None
    pd.DataFrame({"text": texts, "label": labels}).to_json(tmp_path / "dev.jsonl", orient="records", lines=True)
    kept = [i for i in range(20) if texts[i].strip() and labels[i] is not None]
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--model_name_or_path", str(models["full"]), "--validation_file", str(tmp_path / "dev.jsonl")]
    assert main([*argv, "--output_file", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    warning = captured.err.strip().splitlines()[-1]
    assert warning.startswith("hf-transfer evaluate: warning:")
    assert "2 row(s) with empty text" in warning and "3 with no label" in warning and "validation" in warning
    assert "rows_empty_text" in captured.out and "rows_missing_label" in captured.out

    metrics = json.loads(out.read_text())
    assert metrics["samples"] == len(kept) == 15
    assert metrics["rows_empty_text"] == 2 and metrics["rows_missing_label"] == 3
    predicted = [["neg", "pos"][i] for i in direct_logits(models["full"], [texts[i] for i in kept]).argmax(-1)]
    truth = [labels[i] for i in kept]
    assert len(set(predicted)) == 2  # both labels predicted: the comparison means something
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, labels=["neg", "pos"])
    for i, name in enumerate(["neg", "pos"]):
        assert metrics[f"precision_{name}"] == pytest.approx(precision[i])
        assert metrics[f"recall_{name}"] == pytest.approx(recall[i])
        assert metrics[f"f1_{name}"] == pytest.approx(f1[i])
    assert metrics["f1_macro"] == pytest.approx(np.mean(f1))
    assert metrics["confusion_matrix"] == confusion_matrix(truth, predicted, labels=["neg", "pos"]).tolist()
    # With max_eval_samples, the rows it cut are counted too: samples and the rows left out add up to the file's.
    assert main([*argv, "--output_file", str(out), "--max_eval_samples", "10"]) == 0
    cut = json.loads(out.read_text())
    assert cut["samples"] == 10 and cut["rows_cut_by_max_eval_samples"] == 5
    assert cut["samples"] + sum(v for k, v in cut.items() if k.startswith("rows_")) == 20


def test_a_clean_file_gives_no_warning_and_no_counts(models, tmp_path, capsys):
    pd.DataFrame({"text": WORDS, "label": ["pos", "neg"] * 4}).to_csv(tmp_path / "dev.csv", index=False)
    argv = ["evaluate", "--model_name_or_path", str(models["full"]), "--validation_file", str(tmp_path / "dev.csv")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err and "rows_" not in captured.out


def test_an_output_file_under_a_file_or_over_the_model_is_refused_before_loading(
    models, tmp_path, capsys, monkeypatch
):
    """An output_file under a file failed after the whole evaluation with a FileExistsError traceback (exit 1); one
    named config.json in the model folder replaced the model's config with the metrics, and the model no longer
    loaded. Both are one line, exit 2, before any weight loads, with every file left as it was."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(models["full"], model)
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# the model card\n")
    dev = tmp_path / "dev.csv"
    pd.DataFrame({"text": WORDS, "label": ["pos", "neg"] * 4}).to_csv(dev, index=False)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    no_model_load(monkeypatch)
    argv = ["evaluate", "--model_name_or_path", str(model), "--validation_file", str(dev), "--output_file"]
    for output, needle in [
        (dev / "metrics.json", f"lies under {str(dev)!r}, which is a file"),
        (model / "config.json", "would overwrite config.json of the model folder"),
        (model / "README.json", "would overwrite README.md of the model folder"),  # the table goes to <stem>.md
        # absent, yet the model's own names: the metrics became the card, or made the model an adapter folder
        (model / "adapter_config.json", "would add adapter_config.json to the model folder"),
    ]:
        assert main([*argv, str(output)]) == 2
        assert needle in one_line_error(capsys)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_confusion_matrix_beside_the_output_may_not_replace_an_input(models, tmp_path, capsys, monkeypatch):
    """The check that output_file is no input file missed the files written beside it: a set named
    `metrics.confusion_matrix.json` was overwritten by the confusion matrix."""
    dev = tmp_path / "metrics.confusion_matrix.json"
    dev.write_text(json.dumps([{"text": w, "label": "pos" if i % 2 else "neg"} for i, w in enumerate(WORDS)]))
    before = dev.read_text()
    no_model_load(monkeypatch)
    argv = ["evaluate", "--model_name_or_path", str(models["full"]), "--validation_file", str(dev), "--output_file",
            str(tmp_path / "metrics.json")]  # fmt: skip
    assert main(argv) == 2
    assert "is an input data file" in one_line_error(capsys)
    assert dev.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == [dev.name]


def test_integer_labels_of_a_model_whose_labels_are_integers_are_names(models, tmp_path, capsys, monkeypatch):
    """A model trained on ratings 1..3 has the label names '1', '2', '3'. A file whose labels were 1..3 was read by
    name, but one holding 0..2 was read as label ids, so its label 1 was scored as the model's '2', silently: the
    same value meant another class depending on the others in the file. Integers are names for such a model; a value
    that is none of them is one line naming it (predict reads its label column the same way)."""
    ratings = [1 + i % 3 for i in range(24)]
    texts = [" ".join(WORDS[(i * 3 + j) % 8] for j in range(1 + i % 4)) for i in range(24)]
    pd.DataFrame({"text": texts, "label": ratings}).to_csv(tmp_path / "named.csv", index=False)
    pd.DataFrame({"text": texts, "label": [r - 1 for r in ratings]}).to_csv(tmp_path / "shifted.csv", index=False)
    argv = ["evaluate", "--model_name_or_path", str(models["ratings"]), "--validation_file"]
    out = tmp_path / "metrics.json"
    assert main([*argv, str(tmp_path / "named.csv"), "--output_file", str(out)]) == 0
    predicted = [["1", "2", "3"][i] for i in direct_logits(models["ratings"], texts).argmax(-1)]
    truth = [str(r) for r in ratings]
    metrics = json.loads(out.read_text())
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert metrics["confusion_matrix"] == confusion_matrix(truth, predicted, labels=["1", "2", "3"]).tolist()

    capsys.readouterr()
    no_model_load(monkeypatch)
    assert main([*argv, str(tmp_path / "shifted.csv")]) == 2
    last = one_line_error(capsys)
    assert last.startswith("hf-transfer evaluate: error: labels ['0'] in") and "['1', '2', '3']" in last


def test_max_eval_samples_scores_the_first_rows_of_each_set(models, tmp_path, capsys, monkeypatch):
    """`max_eval_samples`, a data field of `train`, was an unknown field to `evaluate`: it now keeps the first N rows
    of the validation set and of each extra set (after the rows with no text or label are left out), and a
    non-positive N is refused before the model loads."""
    texts = [" ".join(WORDS[(i + j) % 8] for j in range(i % 5 + 1)) for i in range(30)]
    labels = ["pos" if i % 3 else "neg" for i in range(30)]
    labels[1] = None
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "dev.csv", index=False)
    pd.DataFrame({"text": texts[::-1], "label": labels[::-1]}).to_csv(tmp_path / "shift.csv", index=False)
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--model_name_or_path", str(models["full"]), "--validation_file", str(tmp_path / "dev.csv"),
            "--extra_eval", f"shift={tmp_path / 'shift.csv'}", "--output_file", str(out)]  # fmt: skip
    assert main([*argv, "--max_eval_samples", "12"]) == 0
    capsys.readouterr()
    metrics = json.loads(out.read_text())
    kept = [i for i in range(30) if labels[i] is not None][:12]
    predicted = [["neg", "pos"][i] for i in direct_logits(models["full"], [texts[i] for i in kept]).argmax(-1)]
    assert metrics["samples"] == 12
    assert metrics["accuracy"] == pytest.approx(accuracy_score([labels[i] for i in kept], predicted))
    assert metrics["sets"]["shift"]["samples"] == 12

    no_model_load(monkeypatch)
    assert main([*argv, "--max_eval_samples", "0"]) == 2
    assert one_line_error(capsys) == "hf-transfer evaluate: error: max_eval_samples must be > 0, got 0."


def test_digit_like_labels_that_are_no_integers_are_named(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    """Circled or superscript numbers (`①`, `²`) pass `str.isdigit` but not `int`: a file with such labels given to
    a model of other names stopped `evaluate` and `predict` with a ValueError traceback (exit 1). They are names
    like any other: not the model's, so one line, exit 2, before the model loads."""
    model = tiny_classifier(tmp_path / "zh", tiny_bert_dir, ["好评", "差评"])
    pd.DataFrame({"text": WORDS[:4], "label": ["①", "②", "①", "²"]}).to_csv(tmp_path / "circled.csv", index=False)
    no_model_load(monkeypatch)
    monkeypatch.setattr("hf_transfer.predict.command.load_inference_model", lambda *a: pytest.fail("loaded"))
    argv = ["--model_name_or_path", str(model)]
    assert main(["evaluate", *argv, "--validation_file", str(tmp_path / "circled.csv")]) == 2
    last = one_line_error(capsys)
    assert "labels ['²', '①', '②'] in" in last and "['好评', '差评']" in last
    out = tmp_path / "out.csv"
    assert main(["predict", *argv, "--input_file", str(tmp_path / "circled.csv"), "--output_file", str(out)]) == 2
    assert "labels ['²', '①', '②'] in" in one_line_error(capsys) and not out.exists()


def test_labels_that_differ_from_the_models_only_in_case_are_named_so(models, tmp_path, capsys, monkeypatch):
    """`Positive` in a file for a model of `pos`/`neg`-like names was refused as unknown with no hint that only the
    letter case differs (train's refusal gave one); `evaluate`, `predict` and `merge` share the hint now."""
    pd.DataFrame({"text": WORDS[:4], "label": ["Pos", "neg", "NEG", "pos"]}).to_csv(tmp_path / "d.csv", index=False)
    no_model_load(monkeypatch)
    monkeypatch.setattr("hf_transfer.predict.command.load_inference_model", lambda *a: pytest.fail("loaded"))
    argv = ["--model_name_or_path", str(models["full"])]
    assert main(["evaluate", *argv, "--validation_file", str(tmp_path / "d.csv")]) == 2
    hint = "(these differ from the model's only in letter case: [['NEG', 'neg'], ['Pos', 'pos']])"
    assert hint in one_line_error(capsys)
    out = tmp_path / "out.csv"
    assert main(["predict", *argv, "--input_file", str(tmp_path / "d.csv"), "--output_file", str(out)]) == 2
    assert hint in one_line_error(capsys) and not out.exists()


def test_boolean_labels_match_a_model_of_either_spelling(tmp_path, tiny_bert_dir, capsys):
    """A model trained on a csv's `false`/`true` (its labels' names before booleans had one spelling) scores a jsonl
    file of JSON booleans by name, as it scores its own csv."""
    model = tiny_classifier(tmp_path / "bool", tiny_bert_dir, ["false", "true"])
    texts = [" ".join(WORDS[(i * 3 + j) % 8] for j in range(1 + i % 4)) for i in range(12)]
    truth = [i % 3 == 0 for i in range(12)]
    (tmp_path / "dev.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, truth, strict=True))
    )
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--model_name_or_path", str(model), "--validation_file", str(tmp_path / "dev.jsonl")]
    assert main([*argv, "--output_file", str(out)]) == 0
    predicted = direct_logits(model, texts).argmax(-1).astype(bool)
    assert json.loads(out.read_text())["accuracy"] == pytest.approx(accuracy_score(truth, predicted))


def test_metrics_md_of_40_labels_shows_the_30_worst_and_says_where_every_score_is(tmp_path, tiny_bert_dir, capsys):
    """`metrics.md` had two columns per label (a 450-label model: 903 columns) while the card shows 30 labels' scores.
    Past 30 labels it shows the columns of the 30 with the lowest validation F1, for every set, and names the JSON
    that holds every label's scores; metrics.json still has them all."""
    names = [f"intent_{i}" for i in range(40)]
    model = tiny_classifier(tmp_path / "many", tiny_bert_dir, names)
    texts = [" ".join(WORDS[(i * j + j) % 8] for j in range(i % 5 + 1)) + f" {i}" for i in range(80)]
    frame = pd.DataFrame({"text": texts, "label": [names[i % 40] for i in range(80)]})
    frame.to_csv(tmp_path / "dev.csv", index=False)
    frame[:40].to_csv(tmp_path / "shifted.csv", index=False)
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--model_name_or_path", str(model), "--validation_file", str(tmp_path / "dev.csv")]
    argv += ["--extra_eval", f"shifted={tmp_path / 'shifted.csv'}", "--output_file", str(out)]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert all(f"f1_{name}" in metrics and f"f1_{name}" in metrics["sets"]["shifted"] for name in names)
    table = out.with_suffix(".md").read_text()
    header = table.splitlines()[0]
    shown = [name for name in names if f"| P {name} |" in header]
    f1 = [metrics[f"f1_{name}"] for name in names]
    worst = sorted(range(40), key=lambda i: (f1[i], i))[:30]  # every label has 2 validation rows
    assert sorted(worst) != list(range(30))  # the scores decide, not the ids
    assert shown == [names[i] for i in sorted(worst)] and header.count("| R intent_") == 30
    assert [line.count("|") for line in table.splitlines()[:4]] == [65] * 4  # set, 3 averages, 60 label columns
    assert (
        "40 labels make too wide a table: per-label columns are shown for the 30 with the lowest F1 on validation; "
        "every label's scores are in `metrics.json`." in table
    )
    assert "every label's scores are in `metrics.json`" in capsys.readouterr().out  # the table printed for 2 sets


def test_a_multi_label_table_of_many_labels_is_capped_and_without_a_file_says_how_to_get_every_score():
    names = [f"tag_{i}" for i in range(35)]
    report = {"samples": 9, "subset_accuracy": 0.5, "f1_micro": 0.5, "f1_macro": 0.5}
    report |= {f"f1_{name}": (0.9 if i < 5 else 0.1) for i, name in enumerate(names)}
    table = reports_markdown({"validation": report}, names, None)
    header = table.splitlines()[0]
    assert [name for name in names if f"| F1 {name} |" in header] == names[5:]  # the 5 best left out
    assert (
        "35 labels make too wide a table: per-label columns are shown for the 30 with the lowest F1 on validation; "
        "every label's scores are written by `--output_file metrics.json`." in table
    )
    few = reports_markdown({"validation": report}, names[:30], "metrics.json")
    assert few.splitlines()[0].count("| F1 tag_") == 30 and "too wide" not in few


def test_an_extra_sets_column_error_names_that_set(models, tmp_path, capsys, monkeypatch):
    """It said "not a column of the validation data" after the extra set's name."""
    no_model_load(monkeypatch)
    pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]}).to_csv(tmp_path / "dev.csv", index=False)
    pd.DataFrame({"blurb": ["good", "bad"], "label": ["pos", "neg"]}).to_csv(tmp_path / "other.csv", index=False)
    argv = ["evaluate", "--model_name_or_path", str(models["full"]), "--validation_file", str(tmp_path / "dev.csv")]
    assert main([*argv, "--extra_eval", f"other={tmp_path / 'other.csv'}"]) == 2
    err = one_line_error(capsys)
    assert err.startswith("hf-transfer evaluate: error: extra_eval other=") and "validation" not in err, err


def test_labels_are_read_with_the_training_runs_label_mapping(tmp_path, tiny_bert_dir, capsys, caplog):
    """A model trained on star ratings mapped to bad/neutral/good (`clothing_sentiment.yaml`) was refused when the
    same file was scored ("[3, 4, 5] are not among them"): the run's recorded label_mapping reads it, said in a line.
    A file whose labels are the model's names needs no mapping; one the mapping does not fit keeps the first error."""
    model = tiny_classifier(tmp_path / "stars", tiny_bert_dir, ["bad", "good", "neutral"], seed=4)
    mapping = {"1": "bad", "2": "bad", "3": "neutral", "4": "good", "5": "good"}
    config = {"label_column_name": "Rating", "label_mapping": mapping, "text_column_name": "Review Text"}
    (model / "hf_transfer_config.yaml").write_text(yaml.safe_dump(config))
    stars = [1, 2, 3, 4, 5] * 4
    texts = [f"{WORDS[i % len(WORDS)]} review {i}" for i in range(len(stars))]
    pd.DataFrame({"Review Text": texts, "Rating": stars}).to_csv(tmp_path / "reviews.csv", index=False)
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--model_name_or_path", str(model), "--validation_file", str(tmp_path / "reviews.csv")]
    assert main([*argv, "--output_file", str(out)]) == 0
    assert "with the label_mapping of the model's training run" in caplog.text
    caplog.clear()
    named = [mapping[str(s)] for s in stars]
    assert json.loads(out.read_text())["samples"] == 20
    assert json.loads(out.read_text())["confusion_matrix"] is not None
    pd.DataFrame({"Review Text": texts, "Rating": named}).to_csv(tmp_path / "named.csv", index=False)
    argv[-1] = str(tmp_path / "named.csv")
    assert main([*argv, "--output_file", str(tmp_path / "named.json")]) == 0
    assert "label_mapping of the model's training run" not in caplog.text
    assert json.loads((tmp_path / "named.json").read_text())["accuracy"] == json.loads(out.read_text())["accuracy"]
    # Ratings 1 and 2 alone: read with the mapping (both bad), not as the label ids 1 and 2 (good, neutral).
    pd.DataFrame({"Review Text": texts[:8], "Rating": [1, 2] * 4}).to_csv(tmp_path / "low.csv", index=False)
    argv[-1] = str(tmp_path / "low.csv")
    assert main([*argv, "--output_file", str(tmp_path / "low.json")]) == 0
    matrix = json.loads((tmp_path / "low.json").read_text())["confusion_matrix"]  # rows: true bad, good, neutral
    assert sum(matrix[0]) == 8 and not any(matrix[1]) and not any(matrix[2])
    # predict reads the same file the same way (it read ratings 1 and 2 as the label ids 1 and 2).
    from hf_transfer.predict.arguments import PredictArguments
    from hf_transfer.predict.command import run_predict

    caplog.clear()
    predicted = run_predict(PredictArguments(model_name_or_path=str(model), input_file=str(tmp_path / "low.csv"),
                                             output_file=str(tmp_path / "low_predictions.csv")))  # fmt: skip
    assert "with the label_mapping of the model's training run" in caplog.text
    evaluated = json.loads((tmp_path / "low.json").read_text())
    for key in ("accuracy", "f1_macro", "recall_bad", "precision_bad"):
        assert predicted[key] == pytest.approx(evaluated[key]), key
    # A model merged from it (α = 1: the same weights) reads the file as it does: the merged folder had recorded
    # merge's own empty columns and mapping, so it found no label column ('Rating') and then read ratings as ids.
    merged = tmp_path / "merged"
    assert main(["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(model), "--alpha", "1",
                 "--output_dir", str(merged)]) == 0  # fmt: skip
    recorded = yaml.safe_load((merged / "hf_transfer_config.yaml").read_text())
    assert {k: recorded[k] for k in config} == config
    argv = ["evaluate", "--model_name_or_path", str(merged), "--validation_file", str(tmp_path / "low.csv")]
    assert main([*argv, "--output_file", str(tmp_path / "merged_low.json")]) == 0
    assert json.loads((tmp_path / "merged_low.json").read_text())["confusion_matrix"] == matrix
    argv[2] = str(model)
    pd.DataFrame({"Review Text": texts, "Rating": [7] * 20}).to_csv(tmp_path / "sevens.csv", index=False)
    argv[-1] = str(tmp_path / "sevens.csv")
    assert main(argv) == 2
    assert "[7] are not among them; pass --label_mapping" in one_line_error(capsys)


def test_a_recorded_mapping_lets_the_models_own_names_pass(tmp_path, tiny_bert_dir, caplog):
    """A file partly relabelled (`neg` beside `positive`, training mapped neg/pos to negative/positive): each label
    is read as it is or through the recorded mapping, as a mapping given on the command line reads them."""
    model = tiny_classifier(tmp_path / "named", tiny_bert_dir, ["negative", "positive"], seed=5)
    config = {"label_mapping": {"neg": "negative", "pos": "positive"}}
    (model / "hf_transfer_config.yaml").write_text(yaml.safe_dump(config))
    texts = [f"{WORDS[i % len(WORDS)]} row {i}" for i in range(8)]
    pd.DataFrame({"text": texts, "label": ["neg", "positive"] * 4}).to_csv(tmp_path / "mixed.csv", index=False)
    out = tmp_path / "mixed.json"
    argv = ["evaluate", "--model_name_or_path", str(model), "--validation_file", str(tmp_path / "mixed.csv")]
    assert main([*argv, "--output_file", str(out)]) == 0
    assert "with the label_mapping of the model's training run" in caplog.text
    assert [sum(row) for row in json.loads(out.read_text())["confusion_matrix"]] == [4, 4]


def test_a_refusal_lists_at_most_twenty_labels(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    """A 120-label model and a file of other labels gave a one-line error of 2,600 characters listing every one."""
    names = [f"intent_{i:03d}" for i in range(30)]
    model = tiny_classifier(tmp_path / "many", tiny_bert_dir, names)
    others = [f"other_{i:03d}" for i in range(25)]
    pd.DataFrame({"text": [f"row {i}" for i in range(25)], "label": others}).to_csv(tmp_path / "d.csv", index=False)
    no_model_load(monkeypatch)
    assert main(["evaluate", "--model_name_or_path", str(model), "--validation_file", str(tmp_path / "d.csv")]) == 2
    err = one_line_error(capsys)
    assert "'other_019', ... (25 in all)] in " in err and "'intent_019', ... (30 in all)]" in err
    assert "other_020" not in err and "intent_020" not in err
