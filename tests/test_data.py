import json
import os
from pathlib import Path

import datasets
import pandas as pd
import pytest

from hf_transfer.core.arguments import DataArguments
from hf_transfer.core.data import load_data, tokenize_data
from hf_transfer.core.tables import iter_table, read_table
from hf_transfer.errors import ConfigError, DataError

RATING_MAPPING = {1: "bad", 2: "bad", 3: "neutral", 4: "good", 5: "good"}


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    root = Path(os.environ.get("HF_TRANSFER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set HF_TRANSFER_DATA_DIR)")
    return root


def write(path: Path, rows: list[dict]) -> str:
    """Write rows in the format that the file extension names."""
    ext = path.suffix
    df = pd.DataFrame(rows)
    if ext in (".csv", ".tsv"):
        df.to_csv(path, sep="\t" if ext == ".tsv" else ",", index=False)
    elif ext == ".json":
        path.write_text(json.dumps(rows))
    elif ext == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        df.to_parquet(path, index=False)
    return str(path)


def rows(labels, texts=None) -> list[dict]:
    texts = texts or [f"text {i}" for i in range(len(labels))]
    return [{"text": t, "label": y} for t, y in zip(texts, labels, strict=True)]


def load(tmp_path, train, validation=None, ext="csv", **kwargs):
    files = {"train_file": write(tmp_path / f"train.{ext}", train)}
    if validation is not None:
        files["validation_file"] = write(tmp_path / f"dev.{ext}", validation)
    return load_data(DataArguments(**files, **kwargs))


def labels_of(prepared, split="train"):
    return prepared.datasets[split]["labels"][:]


# --- formats and label spaces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_string_labels_get_sorted_ids_in_every_format(tmp_path, ext):
    prepared = load(tmp_path, rows(["pos", "neg", "neutral", "pos"]), rows(["neg", "pos"]), ext=ext)
    assert prepared.label_names == ["neg", "neutral", "pos"]
    assert labels_of(prepared) == [2, 0, 1, 2]
    assert labels_of(prepared, "validation") == [0, 2]
    assert prepared.problem_type == "single_label_classification"
    assert prepared.id2label == {0: "neg", 1: "neutral", 2: "pos"} and prepared.label2id["pos"] == 2
    assert prepared.datasets["train"].column_names == ["text", "labels"]
    assert prepared.datasets["train"]["text"][:] == [f"text {i}" for i in range(4)]
    json.dumps(prepared.summary)  # it goes into the model card


def test_int_labels_keep_their_values_as_ids(tmp_path):
    prepared = load(tmp_path, rows([1, 0, 2, 1]), rows([0, 2]), ext="tsv")
    assert prepared.label_names == ["0", "1", "2"]
    assert labels_of(prepared) == [1, 0, 2, 1]


def test_other_int_labels_map_sorted_values_to_ids(tmp_path):
    prepared = load(tmp_path, rows([5, 1, 3, 5]), rows([3]), ext="json")
    assert prepared.label_names == ["1", "3", "5"]
    assert labels_of(prepared) == [2, 0, 1, 2]


def test_label_mapping_orders_ids_by_first_name_and_drops_unmapped_rows(tmp_path):
    prepared = load(tmp_path, rows([5, 1, 3, 4, 2, 0]), rows([1, 5, 9]), label_mapping=RATING_MAPPING)
    assert prepared.label_names == ["bad", "neutral", "good"]
    assert labels_of(prepared) == [2, 0, 1, 2, 0]
    assert prepared.summary["train"]["dropped"]["unmapped_label"] == 1
    assert prepared.summary["validation"]["dropped"]["unmapped_label"] == 1
    assert prepared.summary["validation"]["rows"] == 2


def test_label_mapping_matches_ratings_read_as_floats_next_to_missing_values(tmp_path):
    train = rows([4.0, None, 1.0, 3.0])
    prepared = load(tmp_path, train, rows([5]), ext="parquet", label_mapping=RATING_MAPPING)
    assert labels_of(prepared) == [2, 0, 1]
    assert prepared.summary["train"]["dropped"]["missing_label"] == 1


def test_label_names_name_integer_ids_and_reject_out_of_range(tmp_path):
    prepared = load(tmp_path, rows([1, 0, 1]), rows([0]), class_names=["negative", "positive"])
    assert prepared.label_names == ["negative", "positive"]
    assert labels_of(prepared) == [1, 0, 1]
    with pytest.raises(DataError, match=r"label\(s\) \[2\].*0\.\.1"):
        load(tmp_path, rows([1, 0, 2]), rows([0]), class_names=["negative", "positive"])


def test_boolean_labels_are_one_label_whatever_the_spelling(tmp_path):
    """A csv's `true`/`false` stayed text while a jsonl's or parquet's booleans became `True`/`False`: a validation
    file of the other format, or `TRUE` beside `true`, was refused as labels never seen, and a label_mapping
    `{true: positive}` (YAML reads the key as a boolean) matched no csv row ("no usable rows")."""
    train = write(tmp_path / "train.csv", rows(["true", "false", "TRUE", "False"]))
    dev = write(tmp_path / "dev.jsonl", rows([False, True]))
    prepared = load_data(DataArguments(train_file=train, validation_file=dev))
    assert prepared.label_names == ["False", "True"]
    assert labels_of(prepared) == [1, 0, 1, 0] and labels_of(prepared, "validation") == [0, 1]
    mapped = load_data(DataArguments(train_file=train, label_mapping={True: "positive", "false": "negative"}))
    assert mapped.label_names == ["positive", "negative"]
    assert mapped.summary["train"]["dropped"]["unmapped_label"] == 0
    assert sorted(labels_of(mapped) + labels_of(mapped, "validation")) == [0, 0, 1, 1]


def test_multi_label_lists_in_jsonl_become_multi_hot(tmp_path):
    train = rows([["sports", "news"], ["news"], [], ["tech"]])
    prepared = load(tmp_path, train, rows([["tech", "sports"]]), ext="jsonl")
    assert prepared.problem_type == "multi_label_classification"
    assert prepared.label_names == ["news", "sports", "tech"]
    assert labels_of(prepared) == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert labels_of(prepared, "validation") == [[0.0, 1.0, 1.0]]
    assert prepared.summary["train"]["label_counts"] == {"news": 2, "sports": 1, "tech": 1}
    # the row with an empty list is kept (negative for every label) and counted, here and in a carved split
    assert prepared.summary["train"]["rows_without_labels"] == 1
    assert prepared.summary["validation"]["rows_without_labels"] == 0
    carved = load(tmp_path, train + rows([[], []]), ext="jsonl", validation_split_percentage=50)
    counted = carved.summary["train"]["rows_without_labels"] + carved.summary["validation"]["rows_without_labels"]
    assert counted == 3 and "rows_without_labels" not in load(tmp_path, rows(["a", "b"])).summary["train"]


def test_multi_label_json_list_strings_in_csv_are_parsed(tmp_path):
    train = rows(['["b", "a"]', '["a"]'])
    prepared = load(tmp_path, train, rows(['["b"]']), ext="csv")
    assert prepared.problem_type == "multi_label_classification"
    assert labels_of(prepared) == [[1.0, 1.0], [1.0, 0.0]]


def test_multi_label_yaml_style_lists_in_csv_are_parsed(tmp_path):
    # `[b, a]`, lists as flags and YAML write them, used to become single-label classes named "[b, a]" and "[a]":
    # a model over label combinations, trained without a word.
    train = rows(["[b, a]", "[a]", "[ no, b ]"])
    prepared = load(tmp_path, train, rows(["[b]"]), ext="csv")
    assert prepared.problem_type == "multi_label_classification"
    assert prepared.label_names == ["a", "b", "no"]
    assert labels_of(prepared) == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]


def test_multi_label_parquet_lists_of_ints(tmp_path):
    prepared = load(tmp_path, rows([[0, 2], [1]]), rows([[2]]), ext="parquet")
    assert prepared.label_names == ["0", "1", "2"]
    assert labels_of(prepared) == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_default_columns(tmp_path):
    train = [{"id": 1, "content": "x", "labels": "a"}, {"id": 3, "content": "z", "labels": "b"}]
    prepared = load(tmp_path, train, [{"id": 2, "content": "y", "labels": "a"}])
    assert prepared.text_column == "content" and labels_of(prepared) == [0, 1]


def test_label_names_also_name_string_labels(tmp_path):
    prepared = load(tmp_path, rows(["pos", "neg"]), rows(["pos"]), class_names=["pos", "neg"])
    assert labels_of(prepared) == [0, 1]


def test_class_names_that_are_other_integers_are_refused(tmp_path):
    """`class_names: [1, 2, 3]` for ratings stored 0..2 trained a model named '1', '2', '3'; `evaluate` and `predict`
    read a file's integers as such a model's names, so the training file's 0 was refused there ("labels ['0']") and
    its 1 and 2 were scored as ids 0 and 1, silently. Integers that are their own ids, and other names, are fine."""
    with pytest.raises(DataError, match=r"class_names \['1', '2', '3'\] holds integers that are not their ids 0\.\.2"):
        load(tmp_path, rows([0, 1, 2]), rows([1]), class_names=["1", "2", "3"])
    with pytest.raises(DataError, match=r"class_names \['0', 'neg'\] holds integers"):
        load(tmp_path, rows([0, 1]), rows([1]), class_names=["0", "neg"])
    assert load(tmp_path, rows([0, 1]), rows([1]), class_names=["0", "1"]).label_names == ["0", "1"]
    assert load(tmp_path, rows([0, 1]), rows([1]), class_names=["1 star", "2 stars"]).label_names[0] == "1 star"


def test_text_pairs_default_missing_pair_to_empty_string(tmp_path):
    train = [{"premise": "a", "hypothesis": "b", "label": "yes"}, {"premise": "c", "hypothesis": None, "label": "no"}]
    prepared = load(tmp_path, train, train, ext="json", text_column_name="premise", text_pair_column_name="hypothesis")
    assert prepared.text_column == "premise" and prepared.text_pair_column == "hypothesis"
    assert prepared.datasets["train"]["hypothesis"][:] == ["b", ""]


def test_a_second_text_column_empty_in_every_row_warns(tmp_path, caplog):
    """A pair column with nothing in it trained a single-text model in all but name, without a word."""
    empty = [
        {"premise": f"p{i}", "hypothesis": "" if i % 2 else None, "label": ["yes", "no"][i % 2]} for i in range(4)
    ]
    load(tmp_path, empty, empty, ext="json", text_column_name="premise", text_pair_column_name="hypothesis")
    assert "second text column 'hypothesis' is empty in every row" in caplog.text
    caplog.clear()
    some = [{**row, "hypothesis": "h"} if i == 0 else row for i, row in enumerate(empty)]
    load(tmp_path, some, some, ext="json", text_column_name="premise", text_pair_column_name="hypothesis")
    assert "is empty in every row" not in caplog.text


def test_a_second_text_that_is_no_text_names_text_pair_column_name(tmp_path):
    """The error for a pair column of lists told the user to fix text_column_name, which was right."""
    train = [
        {"premise": "a", "hypothesis": ["b", "c"], "label": "yes"},
        {"premise": "c", "hypothesis": "d", "label": "no"},
    ]
    with pytest.raises(
        DataError, match="'hypothesis' holds a list .*; give text_pair_column_name a column of strings"
    ):
        load(tmp_path, train, train, ext="json", text_column_name="premise", text_pair_column_name="hypothesis")


def test_csv_text_stays_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nNA,a\n1e5,b\nnull,a\n")
    assert read_table(str(path))["text"].tolist() == ["NA", "1e5", "null"]


@pytest.mark.parametrize("ext", ["json", "jsonl", "parquet"])
def test_integer_text_with_a_missing_cell_stays_integer_text(tmp_path, ext):
    """pandas read a JSON or parquet column of integers with a missing cell as float64: the text 5 reached the
    tokenizer as "5.0" (other tokens), and an id above 2**53 lost its last digits."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts, pairs = [5, None, 12345678901234567, -3], [7, 8, None, 9]
    labels = ["a", "b", "a", "b"]
    path = tmp_path / f"train.{ext}"
    if ext == "parquet":
        table = {"text": pa.array(texts, pa.int64()), "second": pa.array(pairs, pa.int64()), "label": labels}
        pq.write_table(pa.table(table), path)
    else:
        write(path, [{"text": t, "second": p, "label": y} for t, p, y in zip(texts, pairs, labels, strict=True)])
    prepared = load_data(DataArguments(train_file=str(path), validation_file=str(path),
                                       text_pair_column_name="second"))  # fmt: skip
    assert prepared.datasets["train"]["text"][:] == ["5", "12345678901234567", "-3"]
    assert prepared.datasets["train"]["second"][:] == ["7", "", "9"]
    assert read_table(str(path))["text"].tolist()[2] == 12345678901234567


# --- cleaning, carving, truncation ----------------------------------------------------------------------------------


def test_cleaning_counts_empty_text_then_missing_label(tmp_path):
    train = rows(["a", "b", "a", None, "b", None], ["x", "", "   ", "y", "z", None])
    prepared = load(tmp_path, train, rows(["a"]), ext="json")
    train_summary = prepared.summary["train"]
    assert train_summary["dropped"] == {"empty_text": 3, "missing_label": 1, "unmapped_label": 0}
    assert train_summary["rows_before_cleaning"] == 6 and train_summary["rows"] == 2
    assert prepared.datasets["train"]["text"][:] == ["x", "z"]


def test_validation_is_carved_deterministically_and_stratified(tmp_path):
    labels = ["a"] * 80 + ["b"] * 20
    train = rows(labels)

    def carve(seed):
        files = {"train_file": write(tmp_path / "train.csv", train)}
        return load_data(DataArguments(**files, validation_split_percentage=20), seed=seed)

    first, again, other = carve(1), carve(1), carve(2)
    assert first.summary["validation_carved_from_train"] is True
    assert first.datasets["validation"]["text"][:] == again.datasets["validation"]["text"][:]
    assert first.datasets["validation"]["text"][:] != other.datasets["validation"]["text"][:]
    assert first.summary["validation"]["label_counts"] == {"a": 16, "b": 4}
    assert first.summary["train"]["rows"] == 80 and first.summary["validation"]["rows"] == 20
    assert set(first.datasets["validation"]["text"][:]).isdisjoint(first.datasets["train"]["text"][:])


def test_carving_keeps_a_class_of_one_row_in_train(tmp_path):
    """A class of one row made the carve-out unstratified, and by chance its row went to validation: train had no
    row of a class the model is scored on (no warning; the card said "stratified"). Its row now stays in train and
    the other classes are still carved by label; a file of one row per class is still split at random."""
    path = write(tmp_path / "train.csv", rows(["a"] * 19 + ["b"] * 10 + ["c"]))
    for seed in range(10):
        prepared = load_data(DataArguments(train_file=path, validation_split_percentage=10), seed=seed)
        assert prepared.summary["train"]["label_counts"] == {"a": 17, "b": 9, "c": 1}
        assert prepared.summary["validation"]["label_counts"] == {"a": 2, "b": 1, "c": 0}
    singles = load(tmp_path, rows(["a", "b", "c", "d"]))
    assert len(singles.datasets["validation"]) == 1 and len(singles.datasets["train"]) == 3


def test_multi_label_carving_is_stratified_by_label():
    """Multi-label rows were carved at random (the README said "stratified"): a label of 26 rows could miss the
    calibration split, and the run was refused as if the label had fewer than 2 rows. Iterative stratification gives
    every label of 2 or more rows a carved row, in about the split's share, and keeps a label of one row in train."""
    import numpy as np

    from hf_transfer.core.splits import carve_indices

    rng = np.random.default_rng(0)
    shares = np.array([0.5, 0.3, 0.1, 0.05, 0.026, 0.01, 0.004, 0.002])
    for seed in range(20):
        hot = (rng.random((1000, len(shares))) < shares).astype(np.float32)
        hot[:, -1] = 0
        hot[seed, -1] = 1  # a label of one row
        kept, carved = carve_indices(hot, 10, seed)
        assert sorted([*kept, *carved]) == list(range(1000)) and len(carved) == 100
        counts, in_carved = hot.sum(axis=0), hot[carved].sum(axis=0)
        assert in_carved[-1] == 0 and (in_carved[counts >= 2] >= 1).all()
        assert (np.abs(in_carved - np.round(counts / 10)) <= 1).all()  # the split's share of each label, to a row
        again = carve_indices(hot, 10, seed)
        assert list(again[1]) == list(carved)  # seeded
    # On a handful of rows the dealing can use a label up: mended, so no label of 2 or more rows leaves train, and
    # a split is never empty (a traceback at the first reshape); rows [a], [b], [c] still carve one, as before.
    missing_carved = 0
    for seed in range(2000):
        hot = (rng.random((int(rng.integers(2, 12)), int(rng.integers(1, 5)))) < rng.random()).astype(np.float32)
        kept, carved = carve_indices(hot, [10, 20, 50][seed % 3], seed)
        assert len(kept) and len(carved) and sorted([*kept, *carved]) == list(range(len(hot)))
        counts = hot.sum(axis=0)
        assert (hot[kept].sum(axis=0)[counts >= 2] >= 1).all()
        missing_carved += int((hot[carved].sum(axis=0)[counts >= 2] == 0).sum())
    assert missing_carved < 20  # of some 5,000 labels: those whose every row another label needs in train
    kept, carved = carve_indices(np.eye(3, dtype=np.float32), 10, 42)
    assert len(carved) == 1 and len(kept) == 2


def test_max_samples_keep_the_first_rows(tmp_path):
    prepared = load(tmp_path, rows(["a", "b"] * 5), rows(["a", "b"] * 3), max_train_samples=3, max_eval_samples=2)
    assert prepared.datasets["train"]["text"][:] == ["text 0", "text 1", "text 2"]
    assert prepared.summary["train"]["rows"] == 3 and prepared.summary["validation"]["rows"] == 2


def test_truncation_that_loses_a_class_warns(tmp_path, caplog):
    train = rows(["a"] * 3 + ["b"] * 3 + ["c"] * 3)
    prepared = load(tmp_path, train, rows(["a", "b", "c"]), max_train_samples=5)
    assert prepared.summary["train"]["label_counts"] == {"a": 3, "b": 2, "c": 0}
    assert "hold no example of ['c']" in caplog.text


def test_truncation_that_leaves_one_class_is_refused(tmp_path, caplog):
    """A file sorted by label cut to its first rows trained a model of one class, which always says it."""
    with pytest.raises(DataError) as err:
        load(tmp_path, rows(["a"] * 5 + ["b"] * 5), rows(["a", "b"]), max_train_samples=3)
    assert "training rows kept by max_train_samples 3 hold a single class ['a']" in str(err.value)
    assert "sorted by label" in str(err.value) and "hold no example" not in caplog.text


def test_names_or_a_mapping_that_leave_one_trained_class_are_refused(tmp_path, caplog):
    """class_names [negative, positive] on a file of one class, or a ratings mapping on 0/1 labels (label 1 became
    'bad', every 0 was dropped), trained a model that always says one class, and reported accuracy 1.0."""
    with pytest.raises(DataError) as err:
        load(tmp_path, rows([1, 1, 1, 1]), rows([0, 1]), class_names=["negative", "positive"])
    assert "single class ['positive'] of the 2 named" in str(err.value) and "--class_names null" in str(err.value)
    with pytest.raises(DataError) as err:
        load(tmp_path, rows([0, 1, 0, 1, 1]), rows([0, 1]), label_mapping=RATING_MAPPING)
    assert "single class ['bad'] of the 3 named" in str(err.value) and "--label_mapping null" in str(err.value)
    assert "label_mapping names no class" not in caplog.text  # the refusal is the one line
    load(tmp_path, rows([0, 1, 2, 4, 5]), rows([1, 5]), label_mapping=RATING_MAPPING)
    assert "label_mapping names no class for 1 of the 5 train rows" in caplog.text


def test_a_truncated_extra_evaluation_set_is_named_in_its_warning(tmp_path, caplog):
    """`merge ... --max_eval_samples 100 --extra_eval dvd=...` warned that "the first 100 validation rows" lacked a
    class, when the dvd set did (the validation file held both)."""
    from hf_transfer.core.arguments import EvalDataArguments, EvalSet
    from hf_transfer.core.eval_sets import prepare_eval_set

    path = write(tmp_path / "dvd.csv", rows(["a"] * 4 + ["b"] * 4))
    args = EvalDataArguments(validation_file=str(path), max_eval_samples=3)
    prepare_eval_set(EvalSet("dvd", str(path)), args, ["a", "b"])
    assert "The first 3 extra_eval dvd rows hold no example of ['b']" in caplog.text
    caplog.clear()
    prepare_eval_set(EvalSet(args.validation_name, str(path)), args, ["a", "b"])
    assert "The first 3 validation rows hold no example of ['b']" in caplog.text


def test_evaluation_rows_that_repeat_training_rows_warn(tmp_path, caplog):
    """A validation file that repeats training rows (or a train file with duplicates, carved) scored the model on
    text it trained on, without a word; they are counted per split (the run record and the card say it) and the
    warning comes once every check has passed (said while reading, it preceded a later refusal). Distinct rows say
    nothing."""
    from hf_transfer.core.overlap import say_overlap

    prepared = load(tmp_path, rows(["a", "b"] * 4), rows(["a", "b", "a"], ["text 0", "text 1", "new text"]))
    assert prepared.summary["validation"]["rows_sharing_train_input"] == 2 and "same input" not in caplog.text
    say_overlap(prepared.summary)
    assert "2 of the 3 validation rows have the same input as a training row" in caplog.text
    caplog.clear()
    say_overlap(load(tmp_path, rows(["a", "b"] * 10, ["same"] * 20), validation_split_percentage=20).summary)
    assert "4 of the 4 validation rows have the same input" in caplog.text
    caplog.clear()
    prepared = load(tmp_path, rows(["a", "b"] * 4), rows(["a", "b"], ["new 0", "new 1"]))
    say_overlap(prepared.summary)
    assert "same input" not in caplog.text and "rows_sharing_train_input" not in prepared.summary["validation"]


def test_labels_alike_but_for_case_warn(tmp_path, caplog):
    """`Positive` in a few rows of a `positive` file made a class of its own, without a word."""
    prepared = load(tmp_path, rows(["positive", "negative", "Positive", "positive"]))
    assert prepared.label_names == ["Positive", "negative", "positive"]
    assert "the labels [['Positive', 'positive']] differ only in letter case" in caplog.text
    caplog.clear()
    load(tmp_path, rows(["positive", "negative", "positive", "negative"]))
    assert "letter case" not in caplog.text


def test_a_named_class_with_no_training_row_warns(tmp_path, caplog):
    """class_names or label_mapping may name a class that no training row holds: the model got an output for it that
    was never trained towards, silently (the card's label counts said 0 only after the run)."""
    load(tmp_path, rows([0, 1, 0]), rows([2]), class_names=["neg", "pos", "neutral"])
    assert "no training row has the label(s) ['neutral']" in caplog.text
    caplog.clear()
    load(tmp_path, rows([1, 5, 1]), rows([5]), label_mapping=RATING_MAPPING)
    assert "no training row has the label(s) ['neutral']" in caplog.text
    caplog.clear()
    load(tmp_path, rows(["a", "b", "a"]), rows(["b"]), class_names=["a", "b"])
    assert "no training row" not in caplog.text


def test_test_split_labels_are_optional(tmp_path):
    test_file = write(tmp_path / "test.csv", [{"text": "x"}, {"text": "y"}])
    args = DataArguments(train_file=write(tmp_path / "train.csv", rows(["a", "b"])), test_file=test_file)
    args.validation_file = write(tmp_path / "dev.csv", rows(["a"]))
    prepared = load_data(args)
    assert prepared.datasets["test"].column_names == ["text"]


def test_evaluate_mode_needs_no_train(tmp_path):
    args = DataArguments(validation_file=write(tmp_path / "dev.csv", rows(["b", "a"])))
    prepared = load_data(args, require_train=False)
    assert prepared.label_names == ["a", "b"] and list(prepared.datasets) == ["validation"]


# --- quoting --------------------------------------------------------------------------------------------------------


def test_auto_quoting_reads_stray_quotes_as_text(tmp_path):
    path = tmp_path / "sst.tsv"
    path.write_text('sentence\tlabel\n" the movie \t1\nit was " good \t1\n"quoted" fine \t0\nplain \t0\n')
    df = read_table(str(path))
    assert len(df) == 4
    assert df["sentence"].tolist()[:3] == ['" the movie ', 'it was " good ', '"quoted" fine ']


def test_auto_quoting_reads_quoted_multiline_fields(tmp_path):
    path = tmp_path / "blitzer.tsv"
    path.write_text('sentence\tlabel\n"Title\n\tbody with ""quotes"" and\ttab"\t0\n"short"\t1\n')
    df = read_table(str(path))
    assert df["sentence"].tolist() == ['Title\n\tbody with "quotes" and\ttab', "short"]
    assert df["label"].tolist() == ["0", "1"]


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_one_column_file_s_quoted_cell_over_lines_is_one_row(tmp_path, ending):
    """A one-column file (predict's input) has no separator count to tell a cell spanning lines from a stray quote:
    `"line1\nline2"`, as csv, pandas and Excel write it, was read as two rows with their quote marks."""
    rows = ["one", f"line1{ending}line2", 'said "hi" twice', "last"]
    path = tmp_path / "texts.csv"
    pd.DataFrame({"text": rows}).to_csv(path, index=False)
    assert read_table(str(path))["text"].tolist() == rows
    assert [t for f in iter_table(str(path), 2) for t in f["text"]] == rows


def test_a_quoted_cell_over_lines_whose_lines_match_the_header_s_separators_is_one_row(tmp_path):
    """In two columns, "Great fit, would buy again\nThe colour..." splits into two lines of one comma each, as the
    header has: every line looked like a record, the opening quote like a stray one, and the cell became two rows
    and a made-up class ("would buy again")."""
    rows = pd.DataFrame(
        {
            "text": ["Great fit, would buy again\nThe colour is as shown", "plain", 'said "hi"'],
            "label": ["a", "b", "a"],
        }
    )
    path = tmp_path / "reviews.csv"
    rows.to_csv(path, index=False)
    assert read_table(str(path)).to_dict("list") == rows.to_dict("list")
    assert [t for f in iter_table(str(path), 2) for t in f["text"]] == rows["text"].tolist()


def test_stray_quotes_of_a_tab_file_that_pair_up_across_lines_stay_text(tmp_path, monkeypatch):
    """GLUE's kind of file: a text opening with a quote and a later one closing with one parse as standard CSV whose
    cell spans the lines between, and those rows were swallowed (4 rows read as 2). An unclosed quote at the end of
    the sample the chunked reader detects quoting on is no evidence of CSV either (it stopped on EOF inside a
    string)."""
    from hf_transfer.core import tables

    path = tmp_path / "glue.tsv"
    path.write_text('sentence\tlabel\n"the movie begins well\t1\nplain text\t0\nhe said it was great"\t1\nother\t0\n')
    assert read_table(str(path))["sentence"].tolist()[::3] == ['"the movie begins well', "other"]
    assert sum(len(f) for f in iter_table(str(path), 2)) == 4
    rows = [f"row {i} is fine\t{i % 2}" for i in range(40)]
    path.write_text("\n".join(["sentence\tlabel", *rows[:20], '"an unclosed quote opens this\t1', *rows[20:]]) + "\n")
    monkeypatch.setattr(tables, "QUOTING_SAMPLE_BYTES", 400)  # the sample ends after the unclosed quote
    assert len(read_table(str(path))) == sum(len(f) for f in iter_table(str(path), 7)) == 41


def test_a_sample_cut_inside_a_quoted_cell_reads_on_until_the_cell_closes(tmp_path, monkeypatch):
    """The chunked reader decides the quoting on the file's first MiB: cut inside `"Great fit, true\nto size"`, the
    open cell's quote read as a stray one, and the cell became two rows (read_table, reading the whole text, was
    right)."""
    from hf_transfer.core import tables

    texts = [f"row {i} is fine" for i in range(20)] + ["Great fit, true\nto size"] + [f"row {i}" for i in range(20)]
    frame = pd.DataFrame({"text": texts, "label": ["pos", "neg"] * 20 + ["pos"]})
    path = tmp_path / "reviews.csv"
    frame.to_csv(path, index=False)
    monkeypatch.setattr(tables, "QUOTING_SAMPLE_BYTES", path.read_text().index("to size") + 2)
    assert [t for f in iter_table(str(path), 7) for t in f["text"]] == texts == read_table(str(path))["text"].tolist()


def test_a_one_column_file_s_stray_quotes_stay_text(tmp_path):
    """One column whose quotes are not CSV quoting (a cell opening with a quote it never closes, text after a closing
    quote) is still read line by line, quotes as text."""
    path = tmp_path / "texts.csv"
    path.write_text('text\n"the movie\n"quoted" fine\nplain\n')
    assert read_table(str(path))["text"].tolist() == ['"the movie', '"quoted" fine', "plain"]
    path.write_text('text\nit was "good\nplain\n')
    assert read_table(str(path))["text"].tolist() == ['it was "good', "plain"]
    path.write_text('text\nfine\n"never closed\nplain\n')
    assert read_table(str(path))["text"].tolist() == ["fine", '"never closed', "plain"]


def test_explicit_quoting_modes_override_detection(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text('sentence\tlabel\n"a"\t0\nb " c\t1\n')
    assert read_table(str(path))["sentence"].tolist() == ['"a"', 'b " c']
    assert read_table(str(path), "none")["sentence"].tolist() == ['"a"', 'b " c']
    assert read_table(str(path), "minimal")["sentence"].tolist() == ["a", 'b " c']


# --- errors ---------------------------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match="nope.csv.*does not exist"):
        load_data(DataArguments(train_file=str(tmp_path / "nope.csv")))


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        read_table(str(tmp_path / "e.csv"))
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="no rows"):
        read_table(str(tmp_path / "h.csv"))


@pytest.mark.parametrize("ext", ["csv", "json", "jsonl", "parquet"])
def test_unparseable_file(tmp_path, ext):
    path = tmp_path / f"bad.{ext}"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    with pytest.raises(DataError, match=f"could not read .*bad.{ext}.* as {ext}"):
        read_table(str(path))


def test_ragged_csv_is_a_data_error(tmp_path):
    for i, content in enumerate(["text,label\na,b,c,d\n", "text,label\na,b\nc,d,e\n"]):
        (tmp_path / f"r{i}.csv").write_text(content)
        with pytest.raises(DataError, match=f"could not read .*r{i}.csv"):
            read_table(str(tmp_path / f"r{i}.csv"))


def test_no_train_data(tmp_path):
    args = DataArguments(validation_file=write(tmp_path / "dev.csv", rows(["a"])))
    with pytest.raises(DataError, match="no training data"):
        load_data(args)


def test_unknown_columns_list_existing_ones_and_suggest(tmp_path):
    train = [{"Review Text": "x", "Rating": 1}]
    with pytest.raises(DataError, match=r"'review text' is not a column.*\['Review Text', 'Rating'\].*'Review Text'"):
        load(tmp_path, train, train, text_column_name="review text", label_column_name="Rating")
    with pytest.raises(DataError, match=r"label_column_name 'rating'.*Did you mean 'Rating'"):
        load(tmp_path, train, train, text_column_name="Review Text", label_column_name="rating")
    with pytest.raises(DataError, match="text_pair_column_name 'other'"):
        load(
            tmp_path,
            train,
            train,
            text_column_name="Review Text",
            label_column_name="Rating",
            text_pair_column_name="other",
        )
    with pytest.raises(DataError, match=r"no text column.*\['Review Text', 'Rating'\].*text_column_name"):
        load(tmp_path, train, train, label_column_name="Rating")


def test_empty_after_cleaning_says_why(tmp_path):
    with pytest.raises(DataError, match="no usable rows: of 2 rows, 1 have empty text, 1 have no label"):
        load(tmp_path, rows([None, "a"], ["x", ""]), rows(["a"]), ext="json")
    with pytest.raises(DataError, match="2 have a label that is not a key of label_mapping"):
        load(tmp_path, rows([7, 8]), rows([1]), label_mapping=RATING_MAPPING)


def test_unseen_validation_and_test_labels_are_named(tmp_path):
    with pytest.raises(DataError, match=r"validation data has label\(s\) \['maybe'\] never seen"):
        load(tmp_path, rows(["yes", "no"]), rows(["yes", "maybe"]))
    args = DataArguments(
        train_file=write(tmp_path / "train.csv", rows(["yes", "no"])),
        validation_file=write(tmp_path / "dev.csv", rows(["yes"])),
        test_file=write(tmp_path / "test.csv", rows(["perhaps"])),
    )
    with pytest.raises(DataError, match=r"test data has label\(s\) \['perhaps'\]"):
        load_data(args)


def test_mixed_label_types(tmp_path):
    with pytest.raises(DataError, match="mixes integers and strings"):
        load(tmp_path, rows([1, "pos", 0]), rows([1]), ext="json")
    with pytest.raises(DataError, match=r"mixes integers and booleans \(e.g. 1 and 'True'\)"):  # JSON's true
        load(tmp_path, rows([1, True, 0]), rows([1]), ext="json")
    with pytest.raises(DataError, match="mixes integers and strings"):  # booleans beside real strings: strings
        load(tmp_path, rows([1, True, 0, "pos"]), rows([1]), ext="json")
    with pytest.raises(DataError, match="non-integer numbers such as 0.5"):
        load(tmp_path, rows([1, 0.5]), rows([1]), ext="json")


def test_multi_label_rows_must_be_lists(tmp_path):
    with pytest.raises(DataError, match=r"list label in every row.*1 row\(s\).*'c'"):
        load(tmp_path, rows([["a"], ["b"], "c"]), rows([["a"]]), ext="jsonl")
    with pytest.raises(DataError, match="single values"):
        load(tmp_path, rows(["a", "b"]), rows(["a"]), problem_type="multi_label_classification")
    with pytest.raises(DataError, match="single_label_classification but .* holds lists"):
        load(tmp_path, rows([["a"], ["b"]]), rows([["a"]]), ext="jsonl", problem_type="single_label_classification")


def test_a_list_naming_a_label_twice_is_refused_as_a_multi_hot_row(tmp_path):
    # [0, 0, 1] (a multi-hot row for three labels) was read as the ids 0 and 1: a 2-label model, silently.
    hot = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    with pytest.raises(
        DataError, match=r"the train column 'label' holds a list that names a label twice, \[0, 0, 1\]"
    ):
        load(tmp_path, rows(hot), rows([[2]]), ext="jsonl")
    with pytest.raises(DataError, match=r"the validation column 'label' .* twice, \['a', 'a'\]; .*multi-hot"):
        load(tmp_path, rows([["a"], ["b"]]), rows([["a", "a"]]), ext="jsonl")
    prepared = load(tmp_path, rows([[2], [0], [1]]), rows([[2]]), ext="jsonl")  # the ids those rows mark
    assert labels_of(prepared) == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_structures_inside_labels_are_refused_not_made_into_classes(tmp_path):
    # A nested list became a class named "['a']" beside "a", and a mapping a class named "{'a': 1}", silently.
    nested = r"label column 'label' holds a list where a label should be: \['a'\] in \[\['a'\]\]"
    with pytest.raises(DataError, match=nested):
        load(tmp_path, rows([["a"], [["a"]], ["b"]]), rows([["a"]]), ext="jsonl")
    with pytest.raises(DataError, match=r"label column 'label' holds a dict where a label should be: \{'a': 1\};"):
        load(tmp_path, rows(["a", {"a": 1}, "b"]), rows(["a"]), ext="jsonl")
    with pytest.raises(DataError, match=r"a dict where a label should be: \{'a': 1\} in \[\{'a': 1\}\]"):
        load(tmp_path, rows([["a"], [{"a": 1}], ["b"]]), rows([["a"]]), ext="jsonl")


def test_multi_label_training_data_whose_lists_are_all_empty_is_refused(tmp_path):
    # It trained a model with no outputs, then failed with scikit-learn's "unknown is not supported" traceback.
    with pytest.raises(DataError, match=r"every label list of the training data is empty \(3 rows\)"):
        load(tmp_path, rows([[], [], []]), rows([[]]), ext="jsonl")
    prepared = load(tmp_path, rows([[], ["a"], []]), rows([[]]), ext="jsonl")  # some empty lists are fine
    assert prepared.label_names == ["a"] and labels_of(prepared) == [[0.0], [1.0], [0.0]]


def test_validation_without_labels(tmp_path):
    with pytest.raises(DataError, match="validation data has no labels"):
        load(tmp_path, rows(["a"]), [{"text": "x", "label": None}], ext="json")


def test_hub_errors_name_the_dataset_and_suggest_local_files():
    with pytest.raises(DataError, match="'nobody/no-such-dataset'.*train_file"):
        load_data(DataArguments(dataset_name="nobody/no-such-dataset"))


def test_hub_class_label_names_are_kept(monkeypatch):
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [1, 0, 1]}, features=features),
            "validation": datasets.Dataset.from_dict({"sentence": ["d"], "label": [1]}, features=features),
            "test": datasets.Dataset.from_dict({"sentence": ["e"], "label": [-1]}, features=features),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: hub)
    prepared = load_data(DataArguments(dataset_name="glue", dataset_config_name="sst2"))
    assert prepared.label_names == ["neg", "pos"] and labels_of(prepared) == [1, 0, 1]
    assert prepared.datasets["test"].column_names == ["sentence"]
    assert prepared.summary["source"] == {"dataset_name": "glue", "dataset_config_name": "sst2"}


@pytest.mark.parametrize("order", [("train", "validation"), ("validation", "train")])
def test_splits_class_encoded_apart_are_read_by_their_own_names(tmp_path, order):
    """`class_encode_column` numbers each split on its own: validation without `neu` has pos as id 1. Every split's
    ids were read with the last split's names: the pos rows scored as neu (validation last), or train's id 2 refused
    as never seen in training (train last)."""
    train = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(6)], "label": ["neg", "neu", "pos"] * 2})
    validation = datasets.Dataset.from_dict({"text": ["v0", "v1", "v2", "v3"], "label": ["neg", "pos", "pos", "neg"]})
    test = datasets.Dataset.from_dict({"text": ["x"], "label": ["pos"]})
    splits = datasets.DatasetDict({"train": train, "validation": validation, "test": test}).class_encode_column(
        "label"
    )
    assert splits["validation"].features["label"].names == ["neg", "pos"]  # the case this test is about
    datasets.DatasetDict({name: splits[name] for name in (*order, "test")}).save_to_disk(str(tmp_path / "dd"))
    prepared = load_data(DataArguments(dataset_name=str(tmp_path / "dd")))
    assert prepared.label_names == ["neg", "neu", "pos"]
    named = {split: [prepared.label_names[i] for i in ds["labels"]] for split, ds in prepared.datasets.items()}
    assert named == {"train": ["neg", "neu", "pos"] * 2, "validation": ["neg", "pos", "pos", "neg"], "test": ["pos"]}


def test_a_folder_of_csv_files_keeps_none_and_na_as_text_as_a_train_file_does(tmp_path):
    """`load_dataset` on a folder of csv files read `None`, `NA`, `null` as missing (pandas' defaults): a class named
    None was dropped as unlabelled, and a text `NA` with it, where the same file as train_file keeps them."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for split in ("train", "validation"):
        rows = ["text,label", "NA,None", "null,positive", "fine,negative", "ok,None", "N/A,positive", "meh,negative"]
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    from_folder = load_data(DataArguments(dataset_name=str(folder)))
    from_files = load_data(
        DataArguments(train_file=str(folder / "train.csv"), validation_file=str(folder / "validation.csv"))
    )
    assert from_folder.label_names == from_files.label_names == ["None", "negative", "positive"]
    assert _prepared_rows(from_folder) == _prepared_rows(from_files)
    assert from_folder.datasets["train"]["text"] == ["NA", "null", "fine", "ok", "N/A", "meh"]


# --- reading in frames, in bounded memory ---------------------------------------------------------------------------


def _prepared_rows(prepared):
    return {split: ds.to_list() for split, ds in prepared.datasets.items()}


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_reading_in_small_frames_gives_the_same_data_and_summary(tmp_path, monkeypatch, ext):
    """A split read 3 rows at a time is cleaned, labelled and counted exactly as one read whole."""
    from hf_transfer.core import cleaning

    labels = ["b", "a", None, "c", "a", "b", "c", "a", None, "b", "z"]
    texts = ["t0", "t1", "t2", "", "t4", "t5", "t6", " ", "t8", "t9", "t10"]
    train = rows(labels[:-1], texts[:-1])
    kwargs = {"label_mapping": {"a": "A", "b": "B", "c": "A"}}
    whole = load(tmp_path, train, rows(labels[-3:], texts[-3:]), ext=ext, **kwargs)
    monkeypatch.setattr(cleaning, "CHUNK_ROWS", 3)
    framed = load(tmp_path, train, rows(labels[-3:], texts[-3:]), ext=ext, **kwargs)
    assert _prepared_rows(framed) == _prepared_rows(whole)
    strip = lambda summary: {k: v for k, v in summary.items() if k != "seconds"}  # noqa: E731
    assert strip(framed.summary) == strip(whole.summary)
    assert framed.summary["train"]["dropped"] == {"empty_text": 2, "missing_label": 2, "unmapped_label": 0}
    assert framed.summary["validation"]["dropped"] == {"empty_text": 0, "missing_label": 1, "unmapped_label": 1}
    assert framed.label_names == ["A", "B"] and labels_of(framed, "validation") == [1]


def test_json_lines_whose_first_rows_lack_the_label_are_unlabelled_rows_not_a_file_without_labels(
    tmp_path, monkeypatch
):
    """The columns came from the first line: a first row without a label made a file without a label column ("no
    label column in the train data"). A key missing from a line is a missing value, in any frame."""
    from hf_transfer.core import cleaning

    monkeypatch.setattr(cleaning, "CHUNK_ROWS", 2)  # the second frame has no label at all
    lines = [{"text": "first"}, {"text": "t1", "label": "a"}, {"text": "t2"}, {"text": "t3"}]
    lines += [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(4, 12)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "train.json").write_text(json.dumps(lines))
    framed = [load_data(DataArguments(train_file=str(tmp_path / f"train.{ext}"))) for ext in ("jsonl", "json")]
    assert _prepared_rows(framed[0]) == _prepared_rows(framed[1]) and framed[0].label_names == ["a", "b"]
    assert framed[0].summary["train"]["dropped"]["missing_label"] == 3


def test_parquet_binary_columns_are_read_as_utf8_text(tmp_path):
    """Older Spark, Hive and Impala writers store strings as BINARY: the texts and label names were "b'pos'"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = {"text": pa.array([b"good film", b"bad film", b"fine"], pa.binary())}
    table["label"] = pa.array([b"pos", b"neg", b"pos"], pa.large_binary())
    pq.write_table(pa.table(table), tmp_path / "train.parquet")
    path = str(tmp_path / "train.parquet")
    assert read_table(path).to_dict("list") == {
        "text": ["good film", "bad film", "fine"],
        "label": ["pos", "neg", "pos"],
    }
    prepared = load_data(DataArguments(train_file=path, validation_file=path))
    assert prepared.label_names == ["neg", "pos"] and prepared.datasets["train"]["text"] == [
        "good film",
        "bad film",
        "fine",
    ]
    # Bytes that are not text: no error beside the text (a thumbnail), one line as the text or the label.
    thumbs = pa.array([b"\x89PNG\xff"] * 3, pa.binary())
    pq.write_table(pa.table({**table, "text": pa.array(["good", "bad", "fine"]), "thumb": thumbs}), path)
    assert load_data(DataArguments(train_file=path, validation_file=path)).label_names == ["neg", "pos"]
    with pytest.raises(DataError, match=r"^text column 'thumb' holds a bytes \(b'\\x89PNG\\xff'\), not text"):
        load_data(DataArguments(train_file=path, validation_file=path, text_column_name="thumb"))
    with pytest.raises(DataError, match=r"^the label column 'thumb' holds a bytes where a label should be"):
        load_data(DataArguments(train_file=path, validation_file=path, label_column_name="thumb"))


def test_label_checks_see_every_frame(tmp_path, monkeypatch):
    """A bad label after the first frame is still found, and named with its first example."""
    from hf_transfer.core import cleaning

    monkeypatch.setattr(cleaning, "CHUNK_ROWS", 2)
    with pytest.raises(DataError, match=r"mixes integers and strings \(e.g. 1 and 'x'\)"):
        load(tmp_path, rows([1, 0, 1, 0, "x"]))
    with pytest.raises(DataError, match=r"1 row\(s\) of the train column 'label' hold single values such as 'c'"):
        load(tmp_path, rows([["a"], ["b"], ["a", "b"], ["b"], "c"]), ext="jsonl")
    with pytest.raises(DataError, match=r"never seen in the training data"):
        load(tmp_path, rows(["a", "b", "a"]), rows(["a", "b", "a", "q"]))


def test_prepared_splits_are_memory_mapped_files_removed_at_exit(tmp_path):
    from hf_transfer.core import scratch

    prepared = load(tmp_path, rows(["a", "b", "a"]), rows(["a", "b"]))
    for ds in prepared.datasets.values():
        files = [Path(f["filename"]) for f in ds.cache_files]
        assert files and all(scratch._process_folder() in f.parents for f in files)
    assert prepared.summary["seconds"]["read_and_clean"] >= 0


def test_folders_of_killed_processes_are_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    from hf_transfer.core import scratch

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{scratch._PREFIX}{int(dead.stdout)}-abc"
    alive = tmp_path / f"{scratch._PREFIX}{os.getpid()}-abc"
    other_host = tmp_path / f"hf_transfer-prepared-elsewhere-{int(dead.stdout)}-abc"
    for folder in (orphan, alive, other_host):
        (folder / "data-x").mkdir(parents=True)
    scratch._remove_orphans(tmp_path)
    assert not orphan.exists() and alive.exists() and other_host.exists()


def test_token_lengths_come_from_arrow_offsets():
    from hf_transfer.core.data import token_lengths

    ds = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [4], [5, 6]], "labels": [0, 1, 0]})
    assert token_lengths(ds).tolist() == [3, 1, 2]
    assert token_lengths(ds.select([2, 0])).tolist() == [2, 3]


# --- tokenization ---------------------------------------------------------------------------------------------------


def test_tokenize_truncates_keeps_labels_and_drops_text(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")
    prepared = load(tmp_path, rows(["x", "y"], ["a b a b a", "b"]), rows(["x"], ["a"]))
    tokenized = tokenize_data(prepared, tokenizer, max_seq_length=3)
    assert tokenized["train"]["input_ids"][:] == [[2, 3, 2], [3]]
    assert "text" not in tokenized["train"].column_names
    assert tokenized["train"]["labels"][:] == [0, 1]


# --- real data ------------------------------------------------------------------------------------------------------


def test_sst2_reads_every_row(shared_data_dir):
    sst2 = shared_data_dir / "sst2"
    prepared = load_data(DataArguments(train_file=str(sst2 / "train.tsv"), validation_file=str(sst2 / "dev.tsv")))
    assert prepared.summary["train"]["rows"] == 67_349 and prepared.summary["validation"]["rows"] == 872
    assert prepared.summary["train"]["label_counts"] == {"0": 29_780, "1": 37_569}
    assert prepared.summary["validation"]["label_counts"] == {"0": 428, "1": 444}


def test_blitzer_quoted_multiline_reviews(shared_data_dir):
    books = shared_data_dir / "blitzer" / "books"
    prepared = load_data(DataArguments(train_file=str(books / "train.tsv"), validation_file=str(books / "dev.tsv")))
    assert len(prepared.datasets["train"]) == 1_700 and len(prepared.datasets["validation"]) == 300
    assert prepared.summary["train"]["label_counts"] == {"0": 850, "1": 850}


def test_clothing_ratings_report_empty_reviews(shared_data_dir):
    path = str(shared_data_dir / "clothing_reviews" / "reviews.csv")
    assert len(read_table(path)) == 23_486
    args = DataArguments(
        train_file=path, text_column_name="Review Text", label_column_name="Rating", label_mapping=RATING_MAPPING
    )
    prepared = load_data(args)
    train, validation = prepared.summary["train"], prepared.summary["validation"]
    assert train["rows_before_cleaning"] == 23_486
    assert train["dropped"] == {"empty_text": 845, "missing_label": 0, "unmapped_label": 0}
    counts = {name: train["label_counts"][name] + validation["label_counts"][name] for name in prepared.label_names}
    assert counts == {"bad": 2_370, "neutral": 2_823, "good": 17_448}  # 2,407 / 2,871 / 18,208 before cleaning
    assert sum(counts.values()) == 23_486 - 845


def test_clothing_departments_report_missing_labels(shared_data_dir):
    path = str(shared_data_dir / "clothing_reviews" / "reviews.csv")
    args = DataArguments(train_file=path, text_column_name="Review Text", label_column_name="Department Name")
    prepared = load_data(args)
    assert prepared.label_names == ["Bottoms", "Dresses", "Intimate", "Jackets", "Tops", "Trend"]
    # 14 rows have no department; one of them also has no text, so it is counted as empty_text.
    assert prepared.summary["train"]["dropped"] == {"empty_text": 845, "missing_label": 13, "unmapped_label": 0}
    assert prepared.summary["train"]["rows"] + prepared.summary["validation"]["rows"] == 23_486 - 845 - 13


def test_the_label_pass_draws_no_bar_on_small_data(tmp_path, capsys, monkeypatch):
    """Its bar drew on stderr before a refusal found once the data was read (bad input is one line); it is quick
    below 100,000 rows."""
    import sys

    import datasets

    # conftest turns datasets' bars off for the whole suite (HF_DATASETS_DISABLE_PROGRESS_BARS=1): on for this test
    monkeypatch.setattr(sys.modules["datasets.utils.tqdm"], "HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    monkeypatch.setattr(sys.modules["datasets.utils.tqdm"], "_hf_datasets_progress_bars_disabled", False)
    prepared = load(tmp_path, rows(["a", "b", "a", "b"]), validation=rows(["b", "a"]))
    assert labels_of(prepared) == [0, 1, 0, 1] and labels_of(prepared, "validation") == [1, 0]
    assert "Labels" not in capsys.readouterr().err and datasets.is_progress_bar_enabled()


def test_a_dataset_config_name_without_a_dataset_name_is_refused():
    """It was accepted, recorded, and used for nothing."""
    with pytest.raises(ConfigError, match=r"dataset_config_name 'mnli' is a configuration of a dataset_name"):
        DataArguments(train_file=None, dataset_config_name="mnli")


def test_save_to_disk_folders_load_and_splits_not_read_are_named(tmp_path, caplog):
    """A single Dataset saved with save_to_disk was refused ("use load_from_disk", which no flag offers); a
    DatasetDict was read by load_dataset's file-name guessing, which merged validation_matched and
    validation_mismatched into one validation split; splits that are not read were dropped without a word."""
    import datasets

    rows = {"text": [f"row {i}" for i in range(20)], "label": ["a", "b"] * 10}
    single = tmp_path / "single"
    datasets.Dataset.from_dict(rows).save_to_disk(str(single))
    assert len(load_data(DataArguments(dataset_name=str(single))).datasets["train"]) == 18  # 10% carved
    mnli = tmp_path / "mnli"
    splits = {"train": rows, "validation_matched": rows, "validation_mismatched": rows}
    datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()}).save_to_disk(str(mnli))
    with caplog.at_level("WARNING"):
        prepared = load_data(DataArguments(dataset_name=str(mnli)))
    assert "['validation_matched', 'validation_mismatched'] that are not read" in caplog.text
    assert len(prepared.datasets["validation"]) == 2 and prepared.summary["validation_carved_from_train"]
    with pytest.raises(DataError, match="written by save_to_disk has no configurations"):
        load_data(DataArguments(dataset_name=str(mnli), dataset_config_name="x"))


def test_a_dataset_with_both_validation_and_dev_reads_validation_and_names_dev(tmp_path, caplog):
    """Both map to the validation split: the one listed first was read and the other dropped without a word."""
    import datasets

    def split(n, label):
        return datasets.Dataset.from_dict(
            {"text": [f"{label} row {i}" for i in range(n)], "label": ["a", "b"] * (n // 2)}
        )

    folder = tmp_path / "both"
    splits = {"train": split(20, "train"), "dev": split(4, "dev"), "validation": split(6, "validation")}
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    with caplog.at_level("WARNING"):
        prepared = load_data(DataArguments(dataset_name=str(folder)))
    assert "['dev'] that are not read" in caplog.text
    assert prepared.datasets["validation"].num_rows == 6 and not prepared.summary["validation_carved_from_train"]


def test_a_dataset_folder_with_several_configurations_names_the_option(tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.csv").write_text("text,label\none,x\ntwo,y\n")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: a\n  data_files: a.csv\n- config_name: b\n  data_files: b.csv\n---\n"
    )
    with pytest.raises(DataError, match=r"set dataset_config_name to one of \['a', 'b'\]\.$") as found:
        load_data(DataArguments(dataset_name=str(folder)))
    assert "Offline" not in str(found.value)  # a local folder: no advice about the Hub cache


def test_the_near_column_offered_is_never_one_read_for_another_role(tmp_path):
    """`--text_column_name sentence` on columns text, intent, channel was "Did you mean 'intent'?", the label column;
    `--label_column_name label` was "Did you mean 'channel'?", a column 0.5 alike."""
    train = [
        {"text": "x", "intent": "billing", "channel": "web"},
        {"text": "y", "intent": "returns", "channel": "app"},
    ]
    for fields in ({"text_column_name": "sentence", "label_column_name": "intent"}, {"label_column_name": "label"}):
        with pytest.raises(DataError, match="is not a column") as refused:
            load(tmp_path, train, train, **fields)
        assert "Did you mean" not in str(refused.value), refused.value
    with pytest.raises(DataError, match=r"Did you mean 'intent'\?"):
        load(tmp_path, train, train, label_column_name="intnet")
    from hf_transfer.core.column_hints import closest_hint  # a column holding the name as a word of its own is offered

    assert closest_hint("text", ["review_text", "rating"]) == " Did you mean 'review_text'?"
    assert closest_hint("label", ["sentiment_label", "text"]) == " Did you mean 'sentiment_label'?"
    # Two text columns in one name: "Did you mean 'sentence2'?" led to training on the second text alone.
    pair = [{"sentence1": "a b", "sentence2": "e", "label": "x"}, {"sentence1": "c d", "sentence2": "f", "label": "y"}]
    with pytest.raises(DataError, match="For a text pair, set text_column_name: sentence1 and text_pair_column_name"):
        load(tmp_path, pair, pair, text_column_name="sentence1,sentence2")


def test_labels_alike_but_for_unicode_form_or_invisible_marks_are_one_class(tmp_path, caplog):
    """`négatif` typed with a combining accent, and `好评` with a zero-width space pasted after it, were classes of
    their own beside the look-alike spelling (a 4-class model, two F1 rows named alike in the card)."""
    import logging

    caplog.set_level(logging.WARNING)
    decomposed, spaced = "ne\u0301gatif", "好评\u200b"
    labels = ["négatif", decomposed, "好评", spaced, "\ufeff中评"] * 4
    train = [{"text": f"row {i}", "label": v} for i, v in enumerate(labels)]
    prepared = load(tmp_path, train, train)
    assert prepared.label_names == sorted(["négatif", "好评", "中评"])
    said = [r.getMessage() for r in caplog.records if "values written differently" in r.getMessage()]
    assert len(said) == 1 and "['ne\\u0301gatif', 'négatif'] as 'négatif'" in said[0], said  # told apart in print
    assert "['好评', '好评\\u200b'] as '好评'" in said[0], said


def test_label_values_written_differently_but_read_as_one_label_are_said(tmp_path, caplog):
    """`01`, `1` and `001` all became class 1, and ` pos` joined `pos`, in silence."""
    import logging

    caplog.set_level(logging.WARNING)
    train = [{"text": f"row {i}", "label": v} for i, v in enumerate(["01", "1", "001", "10"] * 4)]
    prepared = load(tmp_path, train, train)
    assert prepared.label_names == ["1", "10"]
    said = [r.getMessage() for r in caplog.records if "values written differently" in r.getMessage()]
    assert said == [
        "in column 'label', values written differently are read as one label: ['001', '01', '1'] as 1 (numbers by "
        "their value, text without the spaces or invisible marks around it and in Unicode's composed form), so each "
        "group is one class; if they are different labels, rename them in the data (label_mapping reads its keys the "
        "same way)."
    ]
    caplog.clear()
    words = [{"text": f"row {i}", "label": v} for i, v in enumerate([" pos", "pos", "neg", "True", "true"] * 4)]
    load(tmp_path, words, words)
    said = [r.getMessage() for r in caplog.records if "values written differently" in r.getMessage()]
    assert len(said) == 1 and "[' pos', 'pos'] as 'pos'" in said[0] and "True" not in said[0]  # booleans: any spelling
    caplog.clear()
    load(tmp_path, [{"text": f"row {i}", "label": v} for i, v in enumerate([" pos", "neg "] * 4)], None)
    assert not [r for r in caplog.records if "values written differently" in r.getMessage()]  # one form each
    floats = [{"text": f"row {i}", "label": v} for i, v in enumerate(["1.0", "2.0"] * 4)]
    load(tmp_path, floats, [{"text": "x", "label": "1"}, {"text": "y", "label": "2"}])  # a float column's csv
    assert not [r for r in caplog.records if "values written differently" in r.getMessage()]
    caplog.clear()  # jsonl: a number 1 and a string "1" were one class in silence; 1 and 1.0 are one number
    mixed = [{"text": f"row {i}", "label": v} for i, v in enumerate([1, "1", 2, 2.0, "3"] * 4)]
    assert load(tmp_path, mixed, ext="jsonl").label_names == ["1", "2", "3"]
    said = [r.getMessage() for r in caplog.records if "values written differently" in r.getMessage()]
    assert (
        len(said) == 1 and "['1', '1 (a number)'] as 1;" not in said[0] and "['1', '1 (a number)'] as 1 (" in said[0]
    )
    caplog.clear()
    load(tmp_path, [{"text": f"row {i}", "label": v} for i, v in enumerate([1, 2, 2.0] * 4)], ext="jsonl")
    assert not [r for r in caplog.records if "values written differently" in r.getMessage()]
    with pytest.raises(DataError, match="a single class"):  # a refusal after it stays the only line: no line before
        load(tmp_path, [{"text": f"row {i}", "label": v} for i, v in enumerate(["01", "1"] * 4)])
    assert not [r for r in caplog.records if "values written differently" in r.getMessage()]


def test_evaluation_set_names_take_letters_of_any_script(tmp_path):
    """`--extra_eval 日本語=ja.csv` was refused as not "letters, digits, '.', '_', '+' or '-'"."""
    from hf_transfer.core.arguments import parse_extra_eval

    dev = write(tmp_path / "dev.csv", rows(["a", "b"]))
    assert [s.name for s in parse_extra_eval([f"日本語={dev}", f"fr-é={dev}"])] == ["日本語", "fr-é"]
    for bad in ("_x", "-x", "a b", "x/y"):
        with pytest.raises(ConfigError, match="NAME being letters, digits"):
            parse_extra_eval([f"{bad}={dev}"])


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.jsonl.gz"])
def test_a_file_not_in_utf8_names_its_line_and_how_to_convert_it(tmp_path, name):
    """A GBK file (Excel's plain "CSV" on a Chinese Windows) failed with "can't decode byte 0xd6 in position 801",
    a position in a read buffer, not in the file, and no word of what to do."""
    import gzip

    good = ['{"text": "fine", "label": "a"}'] * 3 if "jsonl" in name else ["text,label", *["fine,a"] * 2]
    bad = '{"text": "质量太差", "label": "b"}' if "jsonl" in name else "质量太差,b"
    raw = "\n".join([*good, bad, good[-1]]).encode("gbk")
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    with pytest.raises(DataError) as err:
        read_table(str(path))
    assert "is not UTF-8 text: line 4 holds a byte 0xd6 that UTF-8 cannot read" in str(err.value)
    assert "iconv -f GB18030 -t UTF-8" in str(err.value)
    assert ("CSV UTF-8" in str(err.value)) == name.endswith(".csv")


def test_the_record_fingerprints_each_split_s_rows_and_labels_in_order(tmp_path):
    """Two runs whose records agreed on the paths and the row counts had trained on other rows, or on the same rows in
    another order (other weights), with nothing in the record to tell them apart."""
    for name in ("csv", "jsonl", "shuffled", "relabelled"):
        (tmp_path / name).mkdir()
    train = rows(["a", "b", "a", "b", "a", "b"])
    first = load(tmp_path / "csv", train, rows(["a", "b"]))
    fingerprints = {k: first.summary["train"][k] for k in ("rows_sha256", "labels_sha256")}
    assert all(len(v) == 64 for v in fingerprints.values()) and "rows_sha256" in first.summary["validation"]
    same = load(tmp_path / "jsonl", train, rows(["a", "b"]), ext="jsonl")  # the same rows in another format
    assert {k: same.summary["train"][k] for k in fingerprints} == fingerprints
    shuffled = load(tmp_path / "shuffled", train[::-1], rows(["a", "b"]))
    assert shuffled.summary["train"]["rows_sha256"] != fingerprints["rows_sha256"]
    relabelled = load(tmp_path / "relabelled", rows(["b", "a", "a", "b", "a", "b"]), rows(["a", "b"]))
    assert relabelled.summary["train"]["rows_sha256"] == fingerprints["rows_sha256"]
    assert relabelled.summary["train"]["labels_sha256"] != fingerprints["labels_sha256"]


def test_fingerprints_follow_the_rows_a_carve_out_a_reorder_or_a_put_back_leaves(tmp_path):
    """`rows_sha256` and `labels_sha256` were computed once, as the data was read: after the calibration carve-out
    (other rows, reshuffled, per data_seed), a label reorder (other ids), or the few-shot route putting a carved
    validation split back, the record described rows and labels that did not train. And the route put back only the
    carved rows `max_eval_samples` kept: the rest of them were neither trained on nor scored."""
    from hf_transfer.core.caching import fingerprint_texts
    from hf_transfer.core.data import carve_split
    from hf_transfer.core.label_order import reorder_labels
    from hf_transfer.train.few_shot_choice import keep_every_labelled_row, labelled_rows_per_class

    train = [{"text": f"row {i}", "label": "pos" if i % 2 else "neg"} for i in range(40)]
    args = DataArguments(train_file=write(tmp_path / "train.csv", train),
                         validation_file=write(tmp_path / "dev.csv", train[:6]))  # fmt: skip
    prepared = load_data(args, seed=1)
    read = prepared.summary["train"]["rows_sha256"]
    recorded = set()
    for seed in (1, 2):
        carved = carve_split(prepared, "calibration", 20, seed)
        for split in ("train", "calibration"):
            assert carved.summary[split]["rows_sha256"] == fingerprint_texts(carved.datasets[split]["text"])
        recorded.add(carved.summary["train"]["rows_sha256"])
    assert len(recorded) == 2 and read not in recorded
    reordered = reorder_labels(prepared, ["pos", "neg"])
    assert reordered.summary["train"]["labels_sha256"] != prepared.summary["train"]["labels_sha256"]
    assert reordered.summary["train"]["rows_sha256"] == read
    # A carved validation split cut by max_eval_samples: every carved row goes back, and nothing says it moved.
    args = DataArguments(train_file=write(tmp_path / "all.csv", train * 2), validation_split_percentage=20,
                         max_eval_samples=4)  # fmt: skip
    prepared = load_data(args, seed=42)
    assert len(prepared.datasets["validation"]) == 4 and labelled_rows_per_class(prepared) == 40
    kept, _ = keep_every_labelled_row(reorder_labels(prepared, ["pos", "neg"]))
    assert len(kept.datasets["train"]) == 80 and "carved_to_validation" not in kept.summary["train"]
    assert sorted(kept.datasets["train"]["text"]) == sorted(r["text"] for r in train * 2)
    assert kept.summary["train"]["rows_sha256"] == fingerprint_texts(kept.datasets["train"]["text"])
