"""`hf-transfer predict`: every kind of model it takes (a full model folder, an adapter folder, a multi-label model, an
ONNX export), the columns it writes in each format, rows kept in input order across chunks and length-sorted
batches, empty rows counted, top-k, the metrics (equal to `evaluate`'s) when the file has labels, a late failure that
leaves no file, and one run of the real MiniLM on SST-2 rows."""

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hf_transfer.cli import main
from hf_transfer.core.inference import predict_logits
from hf_transfer.errors import DataError
from hf_transfer.evaluation.arguments import EvaluateArguments
from hf_transfer.evaluation.command import run_evaluate
from hf_transfer.predict.arguments import PredictArguments
from hf_transfer.predict.command import run_predict

WORDS = ["good", "bad", "fine", "awful", "great", "poor", "nice", "meh"]


def tiny_classifier(path: Path, tokenizer_dir, labels, multi_label=False, seed=0) -> Path:
    """A random 2-layer, hidden-32 BERT classifier with these labels, saved with a tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        initializer_range=0.5,  # large enough weights that the predicted labels differ from row to row
    )
    BertForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return path


def tiny_adapter(path: Path, base_dir: Path, labels) -> Path:
    """A LoRA adapter folder as `train` writes one: the adapter and head, its base named, the labels recorded."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(1)
    base = BertForSequenceClassification.from_pretrained(
        base_dir, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"],
                        init_lora_weights=False)  # fmt: skip
    model = get_peft_model(base, config)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(path)
    adapter_config = json.loads((path / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = str(base_dir)
    (path / "adapter_config.json").write_text(json.dumps(adapter_config))
    record = {"label_names": list(labels), "problem_type": "single_label_classification"}
    (path / "hf_transfer_run.json").write_text(json.dumps(record))
    return path


def rows(n: int, empty=(3, 7), seed=0) -> pd.DataFrame:
    """Texts of many lengths, with blank ones at `empty`, an id column and a label."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(n)]
    for i in empty:
        texts[i] = "" if i % 2 else "   "
    return pd.DataFrame({"id": range(n), "text": texts, "label": rng.choice(["neg", "pos"], size=n)})


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("predict-models")
    return {
        "full": tiny_classifier(root / "full", tiny_bert_dir, ["neg", "pos"]),
        "multi": tiny_classifier(root / "multi", tiny_bert_dir, ["red", "green", "blue"], multi_label=True),
        "adapter": tiny_adapter(root / "adapter", tiny_bert_dir, ["neg", "pos"]),
        "three": tiny_classifier(root / "three", tiny_bert_dir, ["a", "b", "c"], seed=2),
    }


def predict(model, input_file, output_file, **extra):
    return run_predict(
        PredictArguments(
            model_name_or_path=str(model), input_file=str(input_file), output_file=str(output_file), **extra
        )  # fmt: skip
    )


def direct_logits(model_dir, texts):
    """Logits of each text alone (no batching, no padding), straight from transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        return np.stack([model(**tokenizer(t, return_tensors="pt")).logits[0].numpy() for t in texts])


def test_full_model_csv_columns_order_empty_rows_and_metrics_equal_to_evaluate(models, tmp_path):
    data = rows(40)
    data.to_csv(tmp_path / "in.csv", index=False)
    summary = predict(models["full"], tmp_path / "in.csv", tmp_path / "out.csv", batch_size=4, chunk_rows=16)

    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, na_values=[""])
    assert list(out.columns) == ["id", "text", "label", "predicted_label", "score", "prob_neg", "prob_pos"]
    assert out["id"].tolist() == list(range(40))  # input order, though batches were sorted by length
    empty = out.index.isin([3, 7])
    assert out.loc[empty, "predicted_label"].isna().all() and out.loc[empty, "score"].isna().all()
    assert summary["empty_text_rows"] == 2 and summary["rows"] == 40 and summary["predicted_rows"] == 38
    assert "2 row(s) have empty text" in summary["warning"]

    kept = out[~empty]
    logits = direct_logits(models["full"], kept["text"].tolist())
    assert kept["predicted_label"].tolist() == [["neg", "pos"][i] for i in logits.argmax(-1)]
    assert len(set(kept["predicted_label"])) == 2  # both labels occur: the comparison means something
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(kept[["prob_neg", "prob_pos"]].to_numpy(), probs, atol=1e-5)
    np.testing.assert_allclose(kept["score"], probs.max(-1), atol=1e-5)

    evaluated = run_evaluate(EvaluateArguments(model_name_or_path=str(models["full"]),
                                               validation_file=str(tmp_path / "in.csv")))  # fmt: skip
    for key in ("accuracy", "f1_macro", "precision_neg", "recall_pos"):
        assert summary[key] == pytest.approx(evaluated[key]), key
    assert summary["samples"] == evaluated["samples"] == 38
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_output_does_not_depend_on_chunks_batches_or_format(models, tmp_path):
    data = rows(50, empty=(0, 49)).drop(columns="label")
    data.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    predict(models["three"], tmp_path / "in.jsonl", tmp_path / "a.csv", batch_size=64, chunk_rows=8192)
    predict(models["three"], tmp_path / "in.jsonl", tmp_path / "b.jsonl", batch_size=3, chunk_rows=7)
    predict(models["three"], tmp_path / "in.jsonl", tmp_path / "c.parquet", batch_size=5, chunk_rows=11)
    a = pd.read_csv(tmp_path / "a.csv", keep_default_na=False, na_values=[""])
    b = pd.read_json(tmp_path / "b.jsonl", lines=True)
    c = pd.read_parquet(tmp_path / "c.parquet")
    assert list(a.columns) == list(b.columns) == list(c.columns)
    assert a["id"].tolist() == b["id"].tolist() == c["id"].tolist() == list(range(50))
    assert b.loc[0, "predicted_label"] == c.loc[49, "predicted_label"] == ""
    assert a["predicted_label"].fillna("").tolist() == b["predicted_label"].tolist() == c["predicted_label"].tolist()
    for column in ("score", "prob_a", "prob_b", "prob_c"):
        np.testing.assert_allclose(a[column], b[column], atol=1e-5, equal_nan=True)  # other batches, other padding
        np.testing.assert_allclose(a[column], c[column], atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("chunk_rows", [8192, 2])
def test_a_one_column_csv_keeps_a_row_for_every_line_blank_ones_included(models, tmp_path, chunk_rows):
    """pandas skips a line of spaces; in a one-column file it is a row whose text is empty, predicted as empty text
    is in every format: kept, unlabelled, counted. A wider file's blank line is no record and stays skipped."""
    (tmp_path / "in.csv").write_text("text\ngood film\n   \nawful plot\n\t\n\nnice\n")
    summary = predict(models["full"], tmp_path / "in.csv", tmp_path / "out.jsonl", chunk_rows=chunk_rows)
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert out["text"].fillna("").tolist() == ["good film", "   ", "awful plot", "\t", "", "nice"]
    assert (out["predicted_label"] == "").tolist() == [False, True, False, True, True, False]
    assert summary["rows"] == 6 and summary["empty_text_rows"] == 3 and summary["predicted_rows"] == 3
    assert "3 row(s) have empty text" in summary["warning"]

    (tmp_path / "wide.csv").write_text("id,text\n1,good film\n   \n2,nice\n")
    assert predict(models["full"], tmp_path / "wide.csv", tmp_path / "wide.jsonl")["rows"] == 2


def test_parquet_input_keeps_its_column_types(models, tmp_path):
    data = rows(12, empty=())
    data["weight"] = np.arange(12, dtype=np.float32) / 4
    data.to_parquet(tmp_path / "in.parquet")
    predict(models["full"], tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=5)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["weight"].dtype == np.float32 and out["id"].dtype == data["id"].dtype
    pd.testing.assert_frame_equal(out[data.columns], data)


def test_a_categorical_text_column_with_a_missing_cell_is_predicted_as_a_plain_one(models, tmp_path):
    """pandas categoricals (and R factors) are parquet dictionary columns: a missing text took no "" in pandas'
    Categorical, and predict stopped with a traceback after the model had loaded."""
    data = rows(12, empty=())  # no "" among the categories
    data.loc[5, "text"] = None  # a missing cell: an empty row, as in any other column
    data.to_parquet(tmp_path / "plain.parquet")
    data.astype({"text": "category"}).to_parquet(tmp_path / "categorical.parquet")
    for name in ("plain", "categorical"):
        predict(models["full"], tmp_path / f"{name}.parquet", tmp_path / f"{name}.csv", chunk_rows=5)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "categorical.csv"), pd.read_csv(tmp_path / "plain.csv"))


def test_a_column_of_bytes_that_are_not_text_goes_to_parquet_as_it_is_and_is_one_line_otherwise(
    models, tmp_path, capsys
):
    """A parquet BINARY column that is not UTF-8 (a thumbnail beside the text): .jsonl stopped with a traceback
    after the model loaded, and .csv wrote Python's spelling of the bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = rows(6, empty=())
    thumbs = pa.array([b"\x89PNG\xff"] * 6, pa.binary())
    pq.write_table(pa.table({"text": data["text"].tolist(), "thumb": thumbs}), tmp_path / "in.parquet")
    predict(models["full"], tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").column("thumb").to_pylist() == [b"\x89PNG\xff"] * 6
    for suffix in (".jsonl", ".csv"):
        capsys.readouterr()
        argv = ["predict", "--model_name_or_path", str(models["full"]), "--input_file", str(tmp_path / "in.parquet")]
        assert main([*argv, "--output_file", str(tmp_path / f"out{suffix}")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "column 'thumb' of the input holds bytes that are not UTF-8 text" in err[0], err
        assert not (tmp_path / f"out{suffix}").exists()


def test_decimals_and_timestamps_of_a_parquet_input_keep_their_type_and_digits(models, tmp_path):
    """A chunk whose decimals need more digits (123456.78 after 1.00) made the column text in the parquet output;
    JSON lines cut a timestamp's microseconds to milliseconds."""
    import datetime as dt
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    prices = [decimal.Decimal(v) for v in ("1.00", "2.50", "123456.78", "3.10")]
    stamp = dt.datetime(2024, 1, 1, 12, 0, 0, 123456)
    table = {"text": ["good movie", "bad plot", "ok", "fine"], "price": pa.array(prices, pa.decimal128(10, 2))}
    pq.write_table(pa.table({**table, "ts": pa.array([stamp] * 4, pa.timestamp("us"))}), tmp_path / "in.parquet")
    predict(models["full"], tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=2)
    out = pq.read_table(tmp_path / "out.parquet")
    assert pa.types.is_decimal(out.schema.field("price").type) and out.column("price").to_pylist() == prices
    predict(models["full"], tmp_path / "in.parquet", tmp_path / "out.jsonl", chunk_rows=2)
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert first["ts"].startswith("2024-01-01T12:00:00.123456")


def test_parquet_output_of_jsonl_whose_columns_change_type(models, tmp_path, capsys):
    """JSON gives each cell its own type: a text column with a bare number among strings failed in the first chunk
    with "do not fit the columns set by the first rows", and an id that turned from numbers to strings in a later
    chunk failed after rows were predicted. Mixed cells are written as text, numbers that meet floats as floats, the
    rows already written widened; a column nested in one chunk and scalar in another is one line, and no file."""
    lines = [{"id": i if i < 12 else f"r{i}", "text": 123 if i % 4 == 0 else WORDS[i % 8], "w": i if i < 6 else i / 2}
             for i in range(20)]  # fmt: skip
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    predict(models["full"], tmp_path / "in.jsonl", tmp_path / "out.parquet", chunk_rows=5)
    predict(models["full"], tmp_path / "in.jsonl", tmp_path / "out.jsonl", chunk_rows=5)
    out, reference = pd.read_parquet(tmp_path / "out.parquet"), pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert out["id"].tolist() == [str(line["id"]) for line in lines]
    assert out["text"].tolist() == [str(line["text"]) for line in lines]
    assert out["w"].dtype == np.float64 and out["w"].tolist() == [line["w"] for line in lines]
    assert out["predicted_label"].tolist() == reference["predicted_label"].tolist()
    np.testing.assert_allclose(out["score"], reference["score"], atol=1e-6)

    for line in lines[15:]:
        line["w"] = [1, 2]
    (tmp_path / "nested.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    argv = ["predict", "--model_name_or_path", str(models["full"]), "--input_file", str(tmp_path / "nested.jsonl"),
            "--output_file", str(tmp_path / "nested.parquet"), "--chunk_rows", "5"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hf-transfer predict: error: column 'w' holds double in the first 15 rows")
    assert "rows 16-20" in err
    assert not list(tmp_path.glob("nested.parquet*")) and not list(tmp_path.glob(".nested*"))


def test_top_k(models, tmp_path):
    rows(20, empty=(5,)).drop(columns="label").to_csv(tmp_path / "in.csv", index=False)
    predict(models["three"], tmp_path / "in.csv", tmp_path / "out.jsonl", top_k=2)
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    added = ["predicted_label", "score", "top1_label", "top1_score", "top2_label", "top2_score"]
    assert list(out.columns)[2:] == added
    full = out.drop(index=5)
    assert (full["top1_label"] == full["predicted_label"]).all()
    assert (full["top1_score"] == full["score"]).all() and (full["top1_score"] >= full["top2_score"]).all()
    assert (full["top1_label"] != full["top2_label"]).all()
    assert out.loc[5, "top1_label"] == "" and math.isnan(out.loc[5, "top1_score"])
    from hf_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"top_k is 4 but the model has only 3 labels; set top_k to 3 or less"):
        predict(models["three"], tmp_path / "in.csv", tmp_path / "more.jsonl", top_k=4)  # said nothing of what to do
    assert not (tmp_path / "more.jsonl").exists()


def test_a_model_with_many_labels_points_to_top_k(tmp_path, tiny_bert_dir, caplog, monkeypatch):
    """1,000 labels gave 1,000 prob_<label> columns per row (218 MB for 10,000 rows) with no word of --top_k."""
    from hf_transfer.predict import command

    monkeypatch.setattr(command, "MANY_LABELS", 3)  # a tiny model with 4 labels stands for one with thousands
    model = tiny_classifier(tmp_path / "four", tiny_bert_dir, ["a", "b", "c", "d"])
    rows(6, empty=()).drop(columns="label").to_csv(tmp_path / "in.csv", index=False)
    with caplog.at_level(logging.WARNING):
        predict(model, tmp_path / "in.csv", tmp_path / "out.csv")
    assert "the model has 4 labels, so each row gets 4 prob_<label> columns; --top_k K writes" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        predict(model, tmp_path / "in.csv", tmp_path / "top.csv", top_k=2)
    assert "prob_<label>" not in caplog.text


def test_multi_label_model(models, tmp_path):
    names = ["red", "green", "blue"]
    data = rows(30, empty=(2,))
    data["label"] = [[n for j, n in enumerate(names) if (i >> j) & 1] for i in range(30)]
    data.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    summary = predict(models["multi"], tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4)
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    logits = direct_logits(models["multi"], [t for i, t in enumerate(data["text"]) if i != 2])
    expected = [[n for n, x in zip(names, row, strict=True) if x > 0] for row in logits]
    assert out.drop(index=2)["predicted_label"].tolist() == expected
    assert any(len(labels) > 1 for labels in expected) and any(len(labels) < 3 for labels in expected)
    assert out.loc[2, "predicted_label"] == []
    sigmoid = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(out.drop(index=2)[[f"prob_{n}" for n in names]].to_numpy(), sigmoid, atol=1e-5)
    assert {"f1_micro", "f1_macro", "subset_accuracy"} <= set(summary) and summary["samples"] == 29

    predict(models["multi"], tmp_path / "in.jsonl", tmp_path / "out.csv")  # csv holds the lists as JSON text
    as_csv = pd.read_csv(tmp_path / "out.csv")
    assert [json.loads(v) for v in as_csv.drop(index=2)["predicted_label"]] == expected
    # and so the input's own list column, from jsonl or parquet (it was written as Python's "['red']" beside it)
    assert [json.loads(v) for v in as_csv["label"]] == data["label"].tolist()
    data.to_parquet(tmp_path / "in.parquet")
    predict(models["multi"], tmp_path / "in.parquet", tmp_path / "from_parquet.csv")
    from_parquet = pd.read_csv(tmp_path / "from_parquet.csv")
    assert [json.loads(v) for v in from_parquet["label"]] == data["label"].tolist()
    assert from_parquet["predicted_label"].tolist() == as_csv["predicted_label"].tolist()


def test_a_threshold_chooses_the_labels_of_a_multi_label_model(models, tmp_path, capsys):
    """`--threshold t`: each label whose sigmoid is above t (0.5 had been fixed); the summary's scores use the same
    labels. A single-label model, or a threshold outside (0, 1), is refused in one line before the model loads."""
    names = ["red", "green", "blue"]
    data = rows(30, empty=())
    data["label"] = [[n for j, n in enumerate(names) if (i >> j) & 1] for i in range(30)]
    data.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    sigmoid = 1 / (1 + np.exp(-direct_logits(models["multi"], list(data["text"]))))
    cut = float(np.median(sigmoid))  # a threshold that splits the labels, whatever the tiny model's scale
    summary = predict(models["multi"], tmp_path / "in.jsonl", tmp_path / "out.jsonl", threshold=cut)
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    expected = [[n for n, p in zip(names, row, strict=True) if p > cut] for row in sigmoid]
    assert out["predicted_label"].tolist() == expected and summary["threshold"] == cut
    hot = np.array([[n in labels for n in names] for labels in expected])
    truth = np.array([[n in labels for n in names] for labels in data["label"]])
    assert summary["subset_accuracy"] == pytest.approx(float((hot == truth).all(axis=1).mean()))

    capsys.readouterr()
    argv = ["predict", "--model_name_or_path", str(models["three"]), "--input_file", str(tmp_path / "in.jsonl")]
    assert main([*argv, "--output_file", str(tmp_path / "single.csv"), "--threshold", "0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "threshold applies to multi-label models" in err and len(err.splitlines()) == 1, err
    assert main([*argv, "--output_file", str(tmp_path / "bad.csv"), "--threshold", "1.5"]) == 2
    assert "threshold must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "single.csv").exists() and not (tmp_path / "bad.csv").exists()


def test_evaluate_scores_a_multi_label_model_as_predict_does(models, tmp_path):
    """`evaluate` refused list labels ("single-label data for now") while `predict` scored them. It now gives the
    multi-label report (subset accuracy, micro/macro-F1, F1 per label), equal to predict's on the same rows, also for
    an extra set with one label per row; list labels for a single-label model are one line."""
    from hf_transfer.errors import DataError
    from hf_transfer.evaluation.arguments import EvaluateArguments
    from hf_transfer.evaluation.command import run_evaluate

    names = ["red", "green", "blue"]
    data = rows(24, empty=())
    data["label"] = [[n for j, n in enumerate(names) if (i >> j) & 1] for i in range(24)]
    data.to_json(tmp_path / "multi.jsonl", orient="records", lines=True)
    single = data.assign(label=[names[i % 3] for i in range(24)])
    single.to_json(tmp_path / "single.jsonl", orient="records", lines=True)
    expected = predict(models["multi"], tmp_path / "multi.jsonl", tmp_path / "out.jsonl")
    out = tmp_path / "metrics.json"
    result = run_evaluate(
        EvaluateArguments(
            model_name_or_path=str(models["multi"]),
            validation_file=str(tmp_path / "multi.jsonl"),
            extra_eval=["one=" + str(tmp_path / "single.jsonl")],
            output_file=str(out),
        )  # fmt: skip
    )
    for key in ("subset_accuracy", "f1_micro", "f1_macro", *(f"f1_{n}" for n in names)):
        assert result[key] == pytest.approx(expected[key]), key
    logits = direct_logits(models["multi"], list(single["text"]))
    one_hot = np.eye(3, dtype=int)[[i % 3 for i in range(24)]]
    assert result["one_subset_accuracy"] == pytest.approx(np.mean(((logits > 0) == one_hot).all(1)))
    table = out.with_suffix(".md").read_text()
    assert "subset accuracy" in table and "F1 blue" in table
    assert not (tmp_path / "metrics.confusion_matrix.json").exists()

    with pytest.raises(DataError, match="has list labels .multi-label. but the model is single-label"):
        run_evaluate(EvaluateArguments(model_name_or_path=str(models["three"]),
                                       validation_file=str(tmp_path / "multi.jsonl")))  # fmt: skip


def test_a_multi_label_model_scores_one_label_per_row_as_evaluate_does(models, tmp_path):
    """predict refused a label column with one label per row for a multi-label model ("holds single labels"), a file
    that evaluate scores (each row then has that label alone)."""
    names = ["red", "green", "blue"]
    rows(24, empty=()).assign(label=[names[i % 3] for i in range(24)]).to_csv(tmp_path / "one.csv", index=False)
    summary = predict(models["multi"], tmp_path / "one.csv", tmp_path / "out.csv")
    expected = run_evaluate(
        EvaluateArguments(model_name_or_path=str(models["multi"]), validation_file=str(tmp_path / "one.csv"))
    )
    assert summary["samples"] == 24
    for key in ("subset_accuracy", "f1_micro", "f1_macro", *(f"f1_{n}" for n in names)):
        assert summary[key] == pytest.approx(expected[key]), key


def test_the_pair_column_a_model_was_trained_with_is_required(
    models, tmp_path, tiny_bert_dir, capsys, monkeypatch, caplog
):
    """A model trained on text pairs labelled every row from its first text alone when the pair column was not given,
    silently; its run's recorded configuration says it needs one (and a single-text model that it takes none)."""
    import shutil

    import yaml
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pairs = tmp_path / "pairs-model"
    shutil.copytree(models["full"], pairs)
    record = {"text_column_name": "premise", "text_pair_column_name": "hypothesis", "label_column_name": "label"}
    (pairs / "hf_transfer_config.yaml").write_text(yaml.safe_dump(record))
    single = tmp_path / "single-model"
    shutil.copytree(models["full"], single)
    (single / "hf_transfer_config.yaml").write_text(yaml.safe_dump({**record, "text_pair_column_name": None}))
    data = pd.DataFrame({"premise": WORDS, "hypothesis": WORDS[::-1]})
    data.to_csv(tmp_path / "in.csv", index=False)
    data[["premise"]].to_csv(tmp_path / "first.csv", index=False)  # no second text column

    loaded = "hf_transfer.predict.command.load_inference_model"
    monkeypatch.setattr(loaded, lambda *a, **k: pytest.fail("the model loaded before the pair column was checked"))
    out = tmp_path / "out.csv"
    argv = ["predict", "--output_file", str(out), "--text_column_name", "premise"]
    for model, extra, needle in [
        (pairs, ["--input_file", str(tmp_path / "first.csv")],
         "(e.g. --text_column_name premise --text_pair_column_name hypothesis, as in training)"),
        (single, ["--input_file", str(tmp_path / "in.csv"), "--text_pair_column_name", "hypothesis"],
         "was trained on single texts"),
        # the pair's second column named as the text: "reading columns 'hypothesis' and 'hypothesis'", then refused
        (pairs, ["--input_file", str(tmp_path / "in.csv"), "--text_column_name", "hypothesis"],
         "(e.g. --text_column_name premise --text_pair_column_name hypothesis, as in training)"),
    ]:  # fmt: skip
        capsys.readouterr()
        assert main([*argv, "--model_name_or_path", str(model), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert not out.exists()
    # evaluate scored the pair model on the first texts alone too
    labelled = data.assign(label=["pos", "neg"] * (len(WORDS) // 2))
    labelled.drop(columns="hypothesis").to_csv(tmp_path / "dev.csv", index=False)
    monkeypatch.setattr("hf_transfer.evaluation.command.load_inference_model", lambda *a, **k: pytest.fail("loaded"))
    capsys.readouterr()
    argv = ["evaluate", "--model_name_or_path", str(pairs), "--validation_file", str(tmp_path / "dev.csv"),
            "--text_column_name", "premise"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was trained on text pairs" in err, err

    monkeypatch.undo()
    predict(pairs, tmp_path / "in.csv", out, text_column_name="premise", text_pair_column_name="hypothesis")
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(pairs), AutoTokenizer.from_pretrained(pairs)
    with torch.no_grad():
        logits = model(**tokenizer(WORDS, WORDS[::-1], padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(pd.read_csv(out)["prob_pos"], torch.softmax(logits, -1)[:, 1].numpy(), atol=1e-5)
    # A file that has the columns the model was trained with is read by them, with no flag (as run_glue reads its
    # task's columns), and said in one line.
    read = tmp_path / "read.csv"
    with caplog.at_level(logging.WARNING):
        assert main(["predict", "--model_name_or_path", str(pairs), "--input_file", str(tmp_path / "in.csv"),
                     "--output_file", str(read)]) == 0  # fmt: skip
    assert any("reading columns 'premise' and 'hypothesis'" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(pd.read_csv(read)["prob_pos"], pd.read_csv(out)["prob_pos"], atol=1e-7)
    labelled.to_csv(tmp_path / "dev-pairs.csv", index=False)
    argv = ["evaluate", "--model_name_or_path", str(pairs), "--validation_file", str(tmp_path / "dev-pairs.csv")]
    assert main(argv) == 0
    # A second text empty in every row: the pair model read the first texts alone; train and evaluate said so.
    data.assign(hypothesis="").to_csv(tmp_path / "no-second.csv", index=False)
    summary = predict(pairs, tmp_path / "no-second.csv", tmp_path / "no-second-out.csv")
    assert summary["warning"] == "the second text column 'hypothesis' is empty in every row: the model read the " \
        "first text alone."  # fmt: skip


def test_adapter_folder(models, tmp_path, tiny_bert_dir):
    from peft import PeftModel
    from transformers import AutoTokenizer, BertForSequenceClassification

    data = rows(24)
    data.to_csv(tmp_path / "in.csv", index=False)
    summary = predict(models["adapter"], tmp_path / "in.csv", tmp_path / "out.csv", batch_size=5)
    assert "PEFT adapter" in summary["model"]
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, na_values=[""]).drop(index=[3, 7])

    base = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    model = PeftModel.from_pretrained(base, models["adapter"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(models["adapter"])
    logits = predict_logits(model, tokenizer, out["text"].tolist(), progress=False)
    assert out["predicted_label"].tolist() == [["neg", "pos"][i] for i in logits.argmax(-1)]
    evaluated = run_evaluate(EvaluateArguments(model_name_or_path=str(models["adapter"]),
                                               validation_file=str(tmp_path / "in.csv")))  # fmt: skip
    assert summary["accuracy"] == pytest.approx(evaluated["accuracy"])


def test_onnx_folder_predicts_as_pytorch_does(models, tmp_path):
    data = rows(30).drop(columns="label")
    data.to_csv(tmp_path / "in.csv", index=False)
    onnx_dir = tmp_path / "onnx"
    argv = ["export", str(models["three"]), "--format", "onnx", "--output_dir", str(onnx_dir), "--speed_samples", "4"]
    assert main(argv) == 0
    torch_summary = predict(models["three"], tmp_path / "in.csv", tmp_path / "torch.csv")
    onnx_summary = predict(onnx_dir, tmp_path / "in.csv", tmp_path / "onnx.csv", batch_size=7)
    assert "ONNX (model.onnx)" in onnx_summary["model"]
    a, b = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "onnx.csv")
    assert a["predicted_label"].equals(b["predicted_label"])
    np.testing.assert_allclose(a[["prob_a", "prob_b", "prob_c"]], b[["prob_a", "prob_b", "prob_c"]], atol=1e-5)
    assert onnx_summary["empty_text_rows"] == torch_summary["empty_text_rows"] == 2

    # `evaluate` takes the ONNX folder too (the same resolver), and scores it as the PyTorch model.
    data.assign(label=["a", "b", "c"] * 10).to_csv(tmp_path / "dev.csv", index=False)
    scores = {
        str(path): run_evaluate(
            EvaluateArguments(model_name_or_path=str(path), validation_file=str(tmp_path / "dev.csv"))
        )
        for path in (models["three"], onnx_dir)
    }
    assert scores[str(onnx_dir)]["accuracy"] == pytest.approx(scores[str(models["three"])]["accuracy"])


def test_a_late_failure_leaves_no_file_and_an_old_output_untouched(models, tmp_path, capsys):
    good = [json.dumps({"text": f"{WORDS[i % 8]} row {i}"}) for i in range(30)]
    (tmp_path / "in.jsonl").write_text("\n".join(good[:20] + ["{not json"] + good[20:]) + "\n")
    (tmp_path / "out.csv").write_text("old,content\n")
    argv = ["predict", "--model_name_or_path", str(models["full"]), "--input_file", str(tmp_path / "in.jsonl"),
            "--output_file", str(tmp_path / "out.csv"), "--chunk_rows", "8"]  # fmt: skip
    assert main(argv) == 2  # the bad line is in the third chunk: after the model loaded and two chunks were written
    err = capsys.readouterr().err.strip().splitlines()
    assert "line 21" in err[-1] and err[-1].startswith("hf-transfer predict: error:")
    assert (tmp_path / "out.csv").read_text() == "old,content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.csv"]


def test_the_summary_says_when_an_existing_output_file_was_replaced(models, tmp_path, capsys):
    """A successful run replaced an existing output_file and the summary named it as if it were new."""
    rows(6, empty=()).to_csv(tmp_path / "in.csv", index=False)
    argv = ["predict", "--model_name_or_path", str(models["full"]), "--input_file", str(tmp_path / "in.csv"),
            "--output_file", str(tmp_path / "out.csv")]  # fmt: skip
    assert main(argv) == 0
    first = [line for line in capsys.readouterr().out.splitlines() if "output_file" in line]
    assert first == [f"  {'output_file':<28} {tmp_path / 'out.csv'}"]
    assert main(argv) == 0
    second = [line for line in capsys.readouterr().out.splitlines() if "output_file" in line]
    assert second == [f"  {'output_file':<28} {tmp_path / 'out.csv'} (replaced the file that was there)"]


def test_evaluate_output_file_is_a_json_file_that_is_no_input(models, tmp_path, capsys):
    """metrics.md would be overwritten by the table, and an input file by the metrics: refused before anything runs."""
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps([{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]))
    before = dev.read_text()
    base = ["evaluate", "--model_name_or_path", str(models["full"]), "--validation_file", str(dev)]
    for output, needle in [(dev, "is an input data file"), (tmp_path / "m.md", "must end in .json"),
                           (tmp_path, "is a folder")]:  # fmt: skip
        assert main([*base, "--output_file", str(output)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert dev.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["dev.json"]


def test_a_model_folder_without_a_tokenizer_is_refused(models, tmp_path, capsys):
    """transformers would build an empty-vocabulary tokenizer there (every word [UNK]) and predict garbage."""
    import shutil

    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(models["full"] / name, folder / name)
    (tmp_path / "in.csv").write_text("text\ngood\n")
    argv = ["predict", "--model_name_or_path", str(folder), "--input_file", str(tmp_path / "in.csv"),
            "--output_file", str(tmp_path / "out.csv")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no tokenizer" in err, err
    assert not (tmp_path / "out.csv").exists()


def test_a_header_without_rows_stops_before_the_model_loads(models, tmp_path, monkeypatch):
    import hf_transfer.predict.command as command
    from hf_transfer.errors import DataError

    monkeypatch.setattr(command, "load_inference_model", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "in.csv").write_text("id,text\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        predict(models["full"], tmp_path / "in.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_a_structure_in_the_text_column_is_refused_by_predict_evaluate_and_train(
    models, tmp_path, capsys, monkeypatch
):
    """str() would turn {"a": 1} into "{'a': 1}" and predict, score or train on it: one line, exit 2, nothing written.
    predict checks the first chunk before the model loads, and every later chunk before it is predicted."""
    import hf_transfer.predict.command as command

    lines = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}] * 3 + [{"text": ["a"], "label": "pos"}]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["predict", "--model_name_or_path", str(models["full"]), "--input_file", str(data), "--output_file",
            str(out)]  # fmt: skip
    for extra in (["--chunk_rows", "100"], ["--chunk_rows", "2"]):  # in the first chunk; in the fourth
        if extra[1] == "100":
            monkeypatch.setattr(command, "load_inference_model", lambda *a, **k: pytest.fail("the model was loaded"))
        else:
            monkeypatch.undo()
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()  # the late case also shows the progress bars before it
        assert len(err) == 1 or extra[1] == "2"
        assert err[-1].startswith("hf-transfer predict: error: text column 'text' holds a list (['a'])"), err
    assert main(["evaluate", "--model_name_or_path", str(models["full"]), "--validation_file", str(data)]) == 2
    assert "holds a list" in capsys.readouterr().err
    run = tmp_path / "run"
    argv = ["train", "--model_name_or_path", str(models["full"]), "--train_file", str(data), "--output_dir", str(run),
            "--use_cpu", "true", "--few_shot", "false"]  # fmt: skip
    assert main(argv) == 2
    assert "holds a list" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_max_seq_length_beyond_the_model_is_lowered_to_what_it_embeds(models, tmp_path):
    """The tiny model has 128 positions: 1000 tokens would fail inside its embeddings; it predicts as at 128."""
    texts = [" ".join(["good"] * 400), "bad"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    predict(models["full"], tmp_path / "in.csv", tmp_path / "long.csv", max_seq_length=1000)
    predict(models["full"], tmp_path / "in.csv", tmp_path / "fits.csv", max_seq_length=128)
    long, fits = pd.read_csv(tmp_path / "long.csv"), pd.read_csv(tmp_path / "fits.csv")
    np.testing.assert_allclose(long["prob_pos"], fits["prob_pos"], atol=1e-6)
    assert list(long["predicted_label"]) == list(fits["predicted_label"])


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "mpnet", "esm", "longformer"])
def test_the_usable_length_is_the_longest_input_the_embeddings_take(model_type):
    """RoBERTa-style embeddings count positions from pad_token_id + 1, so a 40-row position table embeds 38 tokens:
    the config's max_position_embeddings alone let a 39- or 40-token row through to an index error."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from hf_transfer.core.inference import max_length_for_config

    config = AutoConfig.for_model(model_type, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=99, max_position_embeddings=40, pad_token_id=1,
                                  attention_window=[4])  # fmt: skip
    model = AutoModelForSequenceClassification.from_config(config).eval()
    usable = max_length_for_config(config, None, 10**6)
    assert usable == (40 if model_type == "bert" else 38)

    def forward(length):
        ids = torch.full((1, length), 5)
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits

    assert torch.isfinite(forward(usable)).all()
    with pytest.raises((IndexError, RuntimeError)):
        forward(usable + 1)


def test_real_minilm_on_sst2_rows_matches_evaluate(tmp_path, minilm_path, data_root, capsys):
    """End to end on the real MiniLM (a classification head on it) and real SST-2 rows: the CLI's predictions are
    the argmax of `evaluate`'s logits, row for row, and its metrics are `evaluate`'s."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_transfer.core.arguments import EvalSet
    from hf_transfer.core.eval_sets import prepare_eval_set

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    )
    model.save_pretrained(tmp_path / "clf")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "clf")
    dev = pd.read_csv(data_root / "sst2" / "dev.tsv", sep="\t", quoting=3).head(120)
    dev["label"] = dev["label"].map({0: "negative", 1: "positive"})
    dev.to_csv(tmp_path / "dev.csv", index=False)

    argv = ["predict", "--model_name_or_path", str(tmp_path / "clf"), "--input_file", str(tmp_path / "dev.csv"),
            "--output_file", str(tmp_path / "out.parquet")]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "f1_macro" in printed and "rows_per_second" in printed
    out = pd.read_parquet(tmp_path / "out.parquet")
    args = EvaluateArguments(model_name_or_path=str(tmp_path / "clf"), validation_file=str(tmp_path / "dev.csv"))
    data = prepare_eval_set(EvalSet("validation", args.validation_file), args, ["negative", "positive"])
    logits = predict_logits(model.eval(), AutoTokenizer.from_pretrained(tmp_path / "clf"), data.texts, progress=False)
    assert out["sentence"].tolist() == data.texts == dev["sentence"].tolist()
    assert out["predicted_label"].tolist() == [["negative", "positive"][i] for i in logits.argmax(-1)]
    summary = predict(tmp_path / "clf", tmp_path / "dev.csv", tmp_path / "again.csv")
    assert summary["accuracy"] == pytest.approx(run_evaluate(args)["accuracy"])


def test_bench_predict_script_runs_as_documented(models, tmp_path):
    """scripts/bench_predict.py, as docs/predict_export.md runs it (`--repeats N --tile K`), on a tiny model: the
    evaluation texts are a lazy `datasets` column, which the script tiles and hands to the raw loops as a list."""
    import subprocess
    import sys

    rows(12, empty=()).to_csv(tmp_path / "dev.csv", index=False)
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_predict.py"
    argv = [sys.executable, str(script), "--model", str(models["full"]), "--data", str(tmp_path / "dev.csv"),
            "--text_column_name", "text", "--repeats", "1", "--tile", "2",
            "--output", str(tmp_path / "b.json")]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["rows"] == 12 and result["timed_rows"] == 24
    assert result["predictions_equal_to_evaluate"] and result["predict_accuracy"] == result["evaluate_accuracy"]


def test_help_lists_the_fields(capsys):
    assert main(["predict", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--model_name_or_path", "--input_file", "--output_file", "--text_column_name", "--batch_size",
                 "--top_k", "--label_column_name", "--onnx_file", "--chunk_rows", "--config"):  # fmt: skip
        assert flag in out, flag


@pytest.mark.parametrize(
    "name",
    ["sst2/train.tsv", "blitzer/books/train.tsv", "clothing_reviews/reviews.csv"],
    ids=lambda n: n.split("/")[0],
)
def test_chunked_reading_equals_whole_file_reading(name, data_root):
    """predict's chunked reader gives the frame `read_table` gives, on the real files and their quirks: SST-2's stray
    quotes (quoting off, detected on the first MiB), Blitzer's quoted fields spanning lines, the clothing reviews'
    CRLF inside quoted fields."""
    from hf_transfer.core.tables import count_rows, iter_table, read_table

    whole = read_table(str(data_root / name))
    chunks = list(iter_table(str(data_root / name), 997))
    assert len(chunks) == math.ceil(len(whole) / 997)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    if name.startswith("sst2"):
        assert count_rows(str(data_root / name)) == len(whole) == 67349


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("tensors", ["pt", "np"])
@pytest.mark.parametrize("window", [None, 7])
def test_length_sorted_batches_pad_as_the_tokenizer_does(minilm_path, monkeypatch, side, tensors, window):
    """The numpy padding of inference batches gives exactly what `tokenizer.pad` gives, pairs and sides included;
    with rows sorted in windows (bounded memory on large inputs), every row still comes once, with its own index."""
    from transformers import AutoTokenizer

    from hf_transfer.core import inference
    from hf_transfer.core.inference import length_sorted_batches

    if window:
        monkeypatch.setattr(inference, "SORT_WINDOW_ROWS", window)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.padding_side = side
    texts = [" ".join(WORDS[: 1 + i % 8] * (1 + i % 3)) for i in range(23)]
    pairs = [WORDS[i % 8] for i in range(23)]
    for second in (None, pairs):
        encodings = tokenizer(texts, second, truncation=True, max_length=12)
        seen = []
        for idx, batch in length_sorted_batches(tokenizer, texts, second, batch_size=5, max_length=12,
                                                return_tensors=tensors):  # fmt: skip
            expected = tokenizer.pad([{k: encodings[k][i] for k in encodings} for i in idx], return_tensors=tensors)
            assert batch.keys() == expected.keys()
            for key in expected:
                assert type(batch[key]) is type(expected[key]) and batch[key].dtype == expected[key].dtype
                np.testing.assert_array_equal(np.asarray(batch[key]), np.asarray(expected[key]))
            if window:
                assert idx.max() - idx.min() < window  # a batch never mixes windows
            seen.extend(idx.tolist())
        assert sorted(seen) == list(range(23))


def test_a_max_seq_length_with_no_room_for_both_texts_is_refused(models, tmp_path, tiny_bert_dir, capsys,
                                                                 monkeypatch):  # fmt: skip
    """Below the special tokens of a pair (3 for BERT) the tokenizer truncated nothing: `train` failed inside the
    embeddings with a traceback on a row longer than the position table; at 3, every row was [CLS] [SEP] [SEP]
    alone, and `predict` labelled them all the same, silently."""
    from transformers import AutoTokenizer

    from hf_transfer.core.inference import check_room_for_text
    from hf_transfer.errors import ConfigError

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    for max_length, pair in ((4, True), (2, False)):
        needle = f"max_seq_length {max_length} leaves no room .* at least {max_length + 1}"
        with pytest.raises(ConfigError, match=needle):
            check_room_for_text(tokenizer, max_length, pair)
    check_room_for_text(tokenizer, 5, True)
    check_room_for_text(tokenizer, 3, False)

    long = " ".join(WORDS * 40)  # 320 tokens, more than the 128 positions
    data = pd.DataFrame({"premise": [long, "good"] * 4, "hypothesis": ["bad", long] * 4, "label": ["pos", "neg"] * 4})
    data.to_csv(tmp_path / "pairs.csv", index=False)
    out = tmp_path / "run"
    monkeypatch.setattr("hf_transfer.train.command.load_classifier", lambda *a, **k: pytest.fail("loaded"))
    argv = ["train", "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(tmp_path / "pairs.csv"),
            "--validation_file", str(tmp_path / "pairs.csv"), "--text_column_name", "premise",
            "--text_pair_column_name", "hypothesis", "--max_seq_length", "3", "--output_dir", str(out),
            "--report_to", "none", "--use_cpu", "true"]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "max_seq_length 3 leaves no room" in err, err
    assert not out.exists()

    argv = ["predict", "--model_name_or_path", str(models["full"]), "--input_file", str(tmp_path / "pairs.csv"),
            "--output_file", str(tmp_path / "out.csv"), "--text_column_name", "premise", "--text_pair_column_name",
            "hypothesis", "--max_seq_length", "3"]  # fmt: skip
    monkeypatch.setattr("hf_transfer.predict.command.load_inference_model", lambda *a, **k: pytest.fail("loaded"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at least 5" in err, err
    assert not (tmp_path / "out.csv").exists()


def test_predict_and_evaluate_truncate_at_the_length_the_model_was_trained_with(models, tmp_path):
    """Without --max_seq_length, a run folder's recorded max_seq_length is used (it was 128 whatever the model was
    trained at, so long rows scored otherwise than in the run's own evaluation); a given value still wins."""
    import shutil
    from types import SimpleNamespace

    from hf_transfer.adapters.inference import resolve_max_seq_length

    model = tmp_path / "trained-at-8"
    shutil.copytree(models["full"], model)
    (model / "hf_transfer_config.yaml").write_text("max_seq_length: 8\n")
    texts = [f"{'good ' * (i % 5)}item {'bad ' * 30} end {i}" for i in range(12)]
    pd.DataFrame({"text": texts, "label": ["neg", "pos"] * 6}).to_csv(tmp_path / "in.csv", index=False)
    predict(model, tmp_path / "in.csv", tmp_path / "default.csv")
    predict(model, tmp_path / "in.csv", tmp_path / "at8.csv", max_seq_length=8)
    predict(model, tmp_path / "in.csv", tmp_path / "at128.csv", max_seq_length=128)
    default, at8, at128 = (pd.read_csv(tmp_path / f"{n}.csv") for n in ("default", "at8", "at128"))
    np.testing.assert_allclose(default["prob_pos"], at8["prob_pos"], atol=1e-6)
    assert not np.allclose(default["prob_pos"], at128["prob_pos"], atol=1e-3)
    scores = {
        n: run_evaluate(
            EvaluateArguments(model_name_or_path=str(model), validation_file=str(tmp_path / "in.csv"), **kw)
        )
        for n, kw in (("default", {}), ("at8", {"max_seq_length": 8}))
    }
    assert scores["default"] == pytest.approx(scores["at8"])
    # A checkpoint of the run has no config of its own: the run's settings are its (it was scored at 128 tokens).
    checkpoint = model / "checkpoint-3"
    shutil.copytree(models["full"], checkpoint)
    (checkpoint / "trainer_state.json").write_text("{}")
    predict(checkpoint, tmp_path / "in.csv", tmp_path / "checkpoint.csv")
    np.testing.assert_allclose(pd.read_csv(tmp_path / "checkpoint.csv")["prob_pos"], at8["prob_pos"], atol=1e-6)
    assert resolve_max_seq_length(str(model / "elsewhere"), None) == 128  # not a checkpoint: nothing recorded
    # An ONNX folder's export record, a folder recording nothing, and a bad recorded value.
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "hf_transfer_run.json").write_text(json.dumps({"export": {"max_seq_length": 12}}))
    assert resolve_max_seq_length(SimpleNamespace(kind="onnx", name_or_path=str(onnx)), None) == 12
    assert resolve_max_seq_length(str(models["full"]), None) == 128
    (model / "hf_transfer_config.yaml").write_text("max_seq_length: true\n")
    assert resolve_max_seq_length(str(model), None) == 128 and resolve_max_seq_length(str(model), 5) == 5


def test_integer_texts_with_a_missing_cell_are_scored_and_written_as_integers(models, tmp_path):
    """A jsonl text column of integers with a null was read as float64: the row 5 was scored as the text "5.0" and
    written back as 5.0; it is scored as the csv row "5" is, and written as it came."""
    texts = [5, None, 42, 7]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    pd.DataFrame({"text": ["5", "", "42", "7"]}).to_csv(tmp_path / "in.csv", index=False)
    for ext in ("jsonl", "csv"):
        argv = ["predict", "--model_name_or_path", str(models["full"]), "--input_file", str(tmp_path / f"in.{ext}"),
                "--output_file", str(tmp_path / f"out-{ext}.jsonl")]  # fmt: skip
        assert main(argv) == 0
    out = [json.loads(line) for line in (tmp_path / "out-jsonl.jsonl").read_text().splitlines()]
    assert [row["text"] for row in out] == texts
    expected = [json.loads(line) for line in (tmp_path / "out-csv.jsonl").read_text().splitlines()]
    assert out[1]["score"] is None and expected[1]["score"] is None
    for row in (0, 2, 3):
        assert out[row]["score"] == pytest.approx(expected[row]["score"], rel=1e-6), row


@pytest.mark.parametrize("side,config_pad", [("left", None), ("right", 100)])
def test_a_decoder_classifier_scores_each_row_as_it_scores_alone(tmp_path, tiny_bert_dir, side, config_pad):
    """Left: many decoder tokenizers pad on the left, and GPT-2's positions are absolute, so a left-padded row was
    read at other positions: `predict` scored a row by its batch's longest one (prob_neg 0.63 where the row alone
    gives 0.94), and `train` trained and evaluated on the shift. 100: a config whose pad_token_id is not the id the
    tokenizer pads with made the classifier read a padded row's padding as its last token (predict, evaluate, a
    distillation teacher). Each row now scores as a plain forward of it alone."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    tokenizer.padding_side = side
    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_head=2, n_layer=2, vocab_size=len(tokenizer), n_positions=64, num_labels=2,
                        id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}, initializer_range=0.5,
                        pad_token_id=config_pad or tokenizer.pad_token_id)  # fmt: skip
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    texts = [" ".join(WORDS[: 1 + i % 8] * (1 + i % 3)) for i in range(16)]
    pd.DataFrame({"text": texts, "label": ["neg", "pos"] * 8}).to_csv(tmp_path / "rows.csv", index=False)
    run = tmp_path / "run"
    assert main(["train", "--model_name_or_path", str(tmp_path / "gpt2"), "--train_file", str(tmp_path / "rows.csv"),
                 "--validation_file", str(tmp_path / "rows.csv"), "--output_dir", str(run), "--max_steps", "1",
                 "--per_device_eval_batch_size", "16", "--use_cpu", "true", "--report_to", "none"]) == 0  # fmt: skip
    for folder in (tmp_path / "gpt2", run):
        assert main(["predict", "--model_name_or_path", str(folder), "--input_file", str(tmp_path / "rows.csv"),
                     "--output_file", str(tmp_path / "out.jsonl"), "--batch_size", "16"]) == 0  # fmt: skip
        saved = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            alone = torch.cat([model(**saved(t, return_tensors="pt")).logits for t in texts])
        scores = pd.read_json(tmp_path / "out.jsonl", lines=True)[["prob_neg", "prob_pos"]].to_numpy()
        # float32 kernels sum a batch of 16 in another order than one row (1.1e-6 seen on a loaded CPU); the bug
        # this guards against moved scores by 0.3
        np.testing.assert_allclose(scores, alone.softmax(-1).numpy(), atol=1e-5)
    assert AutoTokenizer.from_pretrained(run).padding_side == "right"
    loss = torch.nn.functional.cross_entropy(alone, torch.tensor([0, 1] * 8)).item()
    assert json.loads((run / "eval_results.json").read_text())["eval_loss"] == pytest.approx(loss, rel=1e-5)


def test_a_partial_label_mapping_keeps_the_labels_the_model_already_names(models, tmp_path):
    """`--label_mapping '{A: a}'` on a file labelled A, b and c dropped every b and c row as unmapped: the model's own
    names are read as themselves beside the mapping (which still wins for a key it names)."""
    data = rows(24, empty=())
    data["label"] = ["A", "b", "c"] * 8
    data.to_csv(tmp_path / "in.csv", index=False)
    summary = predict(models["three"], tmp_path / "in.csv", tmp_path / "out.csv", label_mapping={"A": "a"})
    assert summary["samples"] == 24 and "rows_unmapped_label" not in summary
    given = {"validation_file": str(tmp_path / "in.csv"), "label_mapping": {"A": "a"}}
    evaluated = run_evaluate(EvaluateArguments(model_name_or_path=str(models["three"]), **given))
    assert evaluated["samples"] == 24 and evaluated["accuracy"] == summary["accuracy"]
    with pytest.raises(DataError, match="matches none of the labels"):  # misspelt keys: not a score of a subset
        predict(models["three"], tmp_path / "in.csv", tmp_path / "typo.csv", label_mapping={"AA": "a"})
    with pytest.raises(DataError, match="matches none of the validation data's labels"):
        run_evaluate(
            EvaluateArguments(model_name_or_path=str(models["three"]), **{**given, "label_mapping": {"AA": "a"}})
        )
    swapped = predict(
        models["three"], tmp_path / "in.csv", tmp_path / "swap.csv", label_mapping={"A": "a", "b": "c", "c": "b"}
    )
    out = pd.read_csv(tmp_path / "swap.csv")
    truth = data["label"].map({"A": "a", "b": "c", "c": "b"})
    assert swapped["accuracy"] == pytest.approx(float((out["predicted_label"] == truth).mean()))


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_and_evaluate_run_on_the_gpu_when_there_is_one(models, tmp_path, monkeypatch, command):
    """They ran on the CPU on a GPU machine (the loaded model never left it), where `pipeline()` users pass device=0.
    Here `torch.cuda.is_available()` is made to say yes, and the model's move is recorded (and kept on the CPU)."""
    moved = []

    def to(self, *args, **kwargs):
        moved.append(str(args[0]) if args else str(kwargs.get("device")))
        return self

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.nn.Module, "to", to)
    rows(6, empty=()).to_csv(tmp_path / "in.csv", index=False)
    if command == "predict":
        argv = ["predict", "--input_file", str(tmp_path / "in.csv"), "--output_file", str(tmp_path / "out.csv")]
    else:
        argv = ["evaluate", "--validation_file", str(tmp_path / "in.csv")]
    assert main([*argv, "--model_name_or_path", str(models["full"])]) == 0
    assert moved == ["cuda"]


def test_jsonl_keeps_the_scores_digits_as_csv_does(models, tmp_path):
    """pandas writes jsonl with 10 decimals by default: a probability of 0.123456789012 lost its tail
    there and kept it in csv and parquet."""
    data = rows(12, empty=()).drop(columns="label")
    data.to_csv(tmp_path / "in.csv", index=False)
    predict(models["three"], tmp_path / "in.csv", tmp_path / "a.csv", batch_size=4)
    predict(models["three"], tmp_path / "in.csv", tmp_path / "b.jsonl", batch_size=4)
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_json(tmp_path / "b.jsonl", lines=True, precise_float=True)
    for column in ("score", "prob_a", "prob_b", "prob_c"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-14)  # 15 decimals, the most pandas writes


def test_rows_the_tokenizer_knows_nothing_of_are_counted(models, tmp_path):
    """Rows of emoji alone got a confident-looking label with no word: the model saw [UNK] and nothing else."""
    texts = ["good thing", "🤮🤮🤮", "💩", "bad 🤮", "😀 😀"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    summary = predict(models["full"], tmp_path / "in.csv", tmp_path / "out.csv", batch_size=2)
    assert summary["warning"].startswith("3 row(s) are unknown tokens alone to the model's tokenizer"), summary
    found: list[int] = []
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(models["full"])
    tokenizer = AutoTokenizer.from_pretrained(models["full"])
    predict_logits(model, tokenizer, texts, batch_size=2, progress=False, unknown_only=found)
    assert sorted(found) == [1, 2, 4]
    pd.DataFrame({"text": ["good thing", "bad one"]}).to_csv(tmp_path / "plain.csv", index=False)
    assert "warning" not in predict(models["full"], tmp_path / "plain.csv", tmp_path / "plain_out.csv")


@pytest.mark.parametrize("content", ["max_seq_length: [32\n", "", "- a list\n"])
def test_a_damaged_recorded_config_is_refused_not_read_as_none(models, tmp_path, capsys, content):
    """A truncated or garbled hf_transfer_config.yaml was read as no record: the folder was scored at 128 tokens where
    it was trained at 32 (and a pair model lost its pair-column check), with no word. It is refused, named."""
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(models["full"], folder)
    (folder / "hf_transfer_config.yaml").write_text(content)
    pd.DataFrame({"text": WORDS}).to_csv(tmp_path / "in.csv", index=False)
    argv = ["--model_name_or_path", str(folder)]
    assert (
        main(["predict", *argv, "--input_file", str(tmp_path / "in.csv"), "--output_file", str(tmp_path / "o.csv")])
        == 2
    )
    assert main(["evaluate", *argv, "--validation_file", str(tmp_path / "in.csv")]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert f"{str(folder / 'hf_transfer_config.yaml')!r} cannot be read (" in line and "restore it" in line
    assert not (tmp_path / "o.csv").exists()


def test_a_roberta_trained_with_a_tokenizer_padding_with_another_id_reloads_as_it_trained(tmp_path, tiny_bert_dir):
    """RoBERTa-style positions count from the pad id the embeddings were built with (1 here); Trainer set the
    config's pad_token_id to the tokenizer's (0, a BERT tokenizer), so the saved folder rebuilt its embeddings with
    0 and read every position one place off: the saved folder's loss was 0.6179 where training had scored 0.6081."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert tokenizer.pad_token_id == 0
    labels = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    config = AutoConfig.for_model("roberta", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=len(tokenizer), max_position_embeddings=80,
                                  pad_token_id=1, **labels)  # fmt: skip
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "rob")
    tokenizer.save_pretrained(tmp_path / "rob")
    texts = [f"{'fine good' if i % 2 else 'dull bad'} film number {i} " * (1 + i % 3) for i in range(24)]
    pd.DataFrame({"text": texts, "label": ["pos" if i % 2 else "neg" for i in range(24)]}).to_csv(
        tmp_path / "data.csv", index=False
    )
    out = tmp_path / "out"
    argv = ["train", "--model_name_or_path", str(tmp_path / "rob"), "--train_file", str(tmp_path / "data.csv"),
            "--validation_file", str(tmp_path / "data.csv"), "--output_dir", str(out), "--max_steps", "4",
            "--max_seq_length", "48", "--use_cpu", "true", "--report_to", "none"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["pad_token_id"] == 1
    trained = json.loads((out / "hf_transfer_run.json").read_text())["eval_metrics"]["eval_loss"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()  # as pipeline() and predict load it
    batch = AutoTokenizer.from_pretrained(out)(
        texts, truncation=True, max_length=48, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**batch).logits
    labels = torch.tensor([model.config.label2id["pos" if i % 2 else "neg"] for i in range(24)])
    assert torch.nn.functional.cross_entropy(logits, labels).item() == pytest.approx(trained, abs=1e-4)
