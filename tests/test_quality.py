"""The quality options of `train`: class weights, decision calibration, LP-FT, early stopping, `report_to` checked
before anything loads."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_cli import train_argv, write_csv
from transformers import AutoModelForSequenceClassification

from hf_transfer.cli import main
from hf_transfer.train.calibration import fit_offsets, fold_into_bias, output_layer


@pytest.fixture
def skewed(tmp_path):
    """Three classes, one of them three times as common as the others."""
    words = {"good": ["great", "lovely", "superb"], "bad": ["awful", "poor", "dire"], "meh": ["okay", "fine", "so-so"]}
    labels = ["good"] * 36 + ["bad"] * 12 + ["meh"] * 12
    texts = [f"{words[label][i % 3]} item {i}" for i, label in enumerate(labels)]
    train = write_csv(tmp_path / "train.csv", texts, labels)
    dev = write_csv(tmp_path / "dev.csv", texts[::4], labels[::4])
    return train, dev


def record_of(out):
    return json.loads((out / "hf_transfer_run.json").read_text())


def test_class_weights_are_resolved_recorded_and_carded(tmp_path, tiny_bert_dir, skewed):
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, *skewed, out, "--class_weights", "balanced")) == 0
    weights = record_of(out)["class_weights"]
    assert weights == pytest.approx({"bad": 60 / 36, "good": 60 / 108, "meh": 60 / 36})
    assert "class weights" in (out / "README.md").read_text().lower()
    assert yaml.safe_load((out / "hf_transfer_config.yaml").read_text())["class_weights"] == "balanced"


def test_multi_label_class_weights_are_the_positive_entries_weights(tmp_path, tiny_bert_dir):
    """Multi-label `balanced` is n_negative / n_positive per label, recorded per label, and the card says that the
    weights are those of the positive entries."""
    rows = [{"text": f"item {i}", "labels": ["rare"] * (i < 6) + ["half"] * (i % 2 == 0)} for i in range(24)]
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows))
    dev.write_text("\n".join(json.dumps(r) for r in rows[::3]))
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, train, dev, out, "--class_weights", "balanced")) == 0
    assert record_of(out)["class_weights"] == pytest.approx({"rare": 18 / 6, "half": 12 / 12})
    assert "positive entries (negatives weigh 1" in (out / "README.md").read_text()


def test_offsets_fold_into_the_bias_and_move_the_decision(tiny_bert_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_bert_dir, num_labels=3)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, config=config).eval()
    ids = torch.tensor([[101, 2204, 2518, 102]])
    before = model(input_ids=ids).logits
    name, layer = output_layer(model, 3, ("classifier.weight", "classifier.bias"))
    fold_into_bias(layer, [0.5, -1.0, 2.0])
    assert name == "classifier"
    torch.testing.assert_close(model(input_ids=ids).logits, before + torch.tensor([0.5, -1.0, 2.0]))


def test_fitted_offsets_raise_macro_f1_where_a_class_is_under_predicted():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=400, p=[0.2, 0.2, 0.6])
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), labels] += 2.0
    logits[:, 2] += 1.5  # the model leans to the common class
    from sklearn.metrics import f1_score

    def f1(values):
        return f1_score(labels, values.argmax(-1), average="macro")

    offsets = fit_offsets(logits, labels, "single_label_classification")
    assert f1(logits + offsets) > f1(logits) + 0.05
    assert offsets[2] < min(offsets[0], offsets[1])  # it takes back the lean
    multi = (rng.random((200, 2)) < 0.3).astype(int)
    multi_logits = rng.normal(size=(200, 2)) + 2.0 * multi - 1.8
    thresholds = fit_offsets(multi_logits, multi, "multi_label_classification")
    after = f1_score(multi, (multi_logits + thresholds > 0).astype(int), average="macro")
    assert after >= f1_score(multi, (multi_logits > 0).astype(int), average="macro")


def test_calibration_is_fitted_on_its_own_split_and_saved_in_the_model(tmp_path, tiny_bert_dir, skewed):
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--calibrate_decision", "macro_f1")
    assert main([*argv, "--calibration_split_percentage", "25", "--num_train_epochs", "2"]) == 0
    record = record_of(out)
    calibration = record["calibration"]
    assert calibration["calibration_rows"] == 15 and record["data"]["train"]["rows"] == 45
    assert set(calibration["offsets"]) == {"good", "bad", "meh"} and calibration["folded_into"] == "classifier.bias"
    assert calibration["calibration_f1_macro_after"] >= calibration["calibration_f1_macro_before"]
    assert "f1_macro" in calibration["validation_before"]
    # The saved model is the calibrated one: its own predictions give the reported validation scores.
    from hf_transfer.core.metrics import classification_metrics

    dev = __import__("pandas").read_csv(skewed[1])
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tokenizer(list(dev.text), padding=True, return_tensors="pt")).logits
    names = [model.config.id2label[i] for i in range(3)]
    refs = [names.index(label) for label in dev.label]
    report = classification_metrics(logits.argmax(-1).numpy(), refs, names)
    assert report["f1_macro"] == pytest.approx(record["eval_metrics"]["eval_f1_macro"])
    assert "calibrat" in (out / "README.md").read_text().lower()
    # The per-epoch table ends on that model's evaluation, after the last one during training (the uncalibrated).
    last = epoch_table_rows(out)[-1]
    assert last["f1 macro"] == f"{report['f1_macro']:.4f}"
    assert any(calibration["offsets"].values())  # the bias moved, so the saved model was never evaluated in training
    assert last["epoch"] == "saved model" and last["eval loss"] == f"{record['eval_metrics']['eval_loss']:.4f}"


def test_linear_probe_then_fine_tune(tmp_path, tiny_bert_dir, skewed):
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, *skewed, out, "--linear_probe_epochs", "2")) == 0
    probe = record_of(out)["linear_probe"]
    assert probe["on_cached_trunk"] is True and probe["feature_cache"]["frozen_blocks"] == 2
    assert probe["fine_tune_steps"] > 0 and "then fine-tuned from it" in (out / "README.md").read_text()
    assert probe["eval_accuracy"] is not None
    lp = AutoModelForSequenceClassification.from_pretrained(out / "linear_probe")
    ft = AutoModelForSequenceClassification.from_pretrained(out)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    # The probe trained the head only: its body is the pretrained body, bit for bit; fine-tuning then moved it.
    lp_state, ft_state, base_state = lp.state_dict(), ft.state_dict(), base.state_dict()
    body = [k for k in lp_state if k.startswith("bert.encoder.")]
    assert body and all(torch.equal(lp_state[k], base_state[k]) for k in body)
    assert not all(torch.equal(lp_state[k], ft_state[k]) for k in body)
    # Its inputs go with it: a pair run's probe scored on first texts alone, silently (no record of the pair column).
    recorded = yaml.safe_load((out / "linear_probe" / "hf_transfer_config.yaml").read_text())
    assert recorded["max_seq_length"] == 128 and recorded["train_file"] == str(skewed[0])


def test_the_linear_probe_keeps_the_freeze_patterns(tmp_path, tiny_bert_dir, skewed):
    """`freeze_patterns: [pooler]` with LP-FT: the probe trained the pooler, while the record said it never trained."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--linear_probe_epochs", "1", "--freeze_patterns", "[pooler]")
    assert main(argv) == 0
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3).state_dict()
    for folder in (out / "linear_probe", out):
        state = AutoModelForSequenceClassification.from_pretrained(folder).state_dict()
        pooler = [k for k in state if ".pooler." in k]
        assert pooler and all(torch.equal(state[k], base[k]) for k in pooler), folder
    assert record_of(out)["freeze"]["permanently_frozen_parameters"] == sum(base[k].numel() for k in pooler)


def test_a_resumed_lp_ft_run_does_not_train_the_probe_again(tmp_path, tiny_bert_dir, skewed):
    """The checkpoint holds the weights after the probe: training it again cost its epochs, rewrote linear_probe/."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--linear_probe_epochs", "1", "--save_strategy", "epoch")
    assert main(argv) == 0
    first = record_of(out)["linear_probe"]
    weights = out / "linear_probe" / "model.safetensors"
    saved = weights.read_bytes()
    weights.touch()
    stamp = weights.stat().st_mtime_ns
    assert main([*argv, "--num_train_epochs", "2", "--resume_from_checkpoint", "true"]) == 0
    again = record_of(out)["linear_probe"]
    assert again["resumed"] is True and again["eval_accuracy"] == first["eval_accuracy"]
    assert again["seconds"] == first["seconds"] and weights.stat().st_mtime_ns == stamp
    assert (
        weights.read_bytes() == saved and record_of(out)["train_metrics"]["optimizer_steps"] > first["fine_tune_steps"]
    )


def test_a_linear_probe_alone_is_carded_as_the_model(tmp_path, tiny_bert_dir, skewed):
    """num_train_epochs 0 with linear_probe_epochs trains the probe alone; the card said "then fine-tuned from it"."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--linear_probe_epochs", "1")
    argv[argv.index("--num_train_epochs") + 1] = "0"
    assert main(argv) == 0
    assert record_of(out)["linear_probe"]["fine_tune_steps"] == 0
    card = (out / "README.md").read_text()
    assert "no fine-tuning after it (0 steps): the model is the probe" in card and "then fine-tuned" not in card
    probe = AutoModelForSequenceClassification.from_pretrained(out / "linear_probe").state_dict()
    saved = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    assert all(torch.equal(probe[k], saved[k]) for k in probe)


def test_early_stopping_stops_and_keeps_the_best_checkpoint(tmp_path, tiny_bert_dir, skewed):
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--num_train_epochs", "6", "--eval_strategy", "epoch")
    # An improvement must exceed 1.0 of accuracy, which never happens: training stops after 1 + 2 evaluations.
    extra = [
        "--early_stopping_patience",
        "2",
        "--early_stopping_threshold",
        "1.0",
        "--metric_for_best_model",
        "accuracy",
    ]
    assert main([*argv, *extra]) == 0
    stopping = record_of(out)["early_stopping"]
    assert stopping["stopped_early"] is True and stopping["epochs_trained"] == 3.0
    assert stopping["best_checkpoint"].startswith("checkpoint-") and (out / stopping["best_checkpoint"]).is_dir()
    assert "early stopping" in (out / "README.md").read_text().lower()


def epoch_table_rows(out):
    """The card's per-epoch table as dicts of cells."""
    card = (out / "README.md").read_text()
    lines = card[card.index("### Per epoch") :].split("\n\n")[2].splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(header, row, strict=True)) for row in cells]


def test_the_checkpoint_load_best_model_at_end_kept_is_recorded_and_closes_the_epoch_table(
    tmp_path, tiny_bert_dir, skewed
):
    """The highest validation loss is the best here, so the kept checkpoint is the first epoch's. The record said
    nothing of it, and the card's per-epoch table ended on the last epoch's scores, under "the last row is the
    evaluation after training", while the saved model and its results were the first epoch's."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--num_train_epochs", "3", "--eval_strategy", "epoch")
    extra = ["--save_strategy", "epoch", "--load_best_model_at_end", "true", "--metric_for_best_model", "loss"]
    assert main([*argv, *extra, "--greater_is_better", "true", "--learning_rate", "1e-3"]) == 0
    record = record_of(out)
    evaluations = [e for e in record["log_history"] if "eval_loss" in e]
    assert evaluations[0]["eval_loss"] > evaluations[-1]["eval_loss"]  # training lowered it: epoch 1 is the best
    best = record["best_model"]
    assert best["checkpoint"] == "checkpoint-8" and (out / best["checkpoint"]).is_dir()
    assert (best["step"], best["epoch"], best["last_step"]) == (8, 1.0, 24)
    assert best["value"] == pytest.approx(evaluations[0]["eval_loss"])
    # The saved model is that checkpoint: its weights, and the final evaluation's loss.
    saved = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    kept = AutoModelForSequenceClassification.from_pretrained(out / "checkpoint-8").state_dict()
    assert all(torch.equal(saved[k], kept[k]) for k in saved)
    assert record["eval_metrics"]["eval_loss"] == pytest.approx(evaluations[0]["eval_loss"])
    rows = epoch_table_rows(out)
    assert [row["epoch"] for row in rows] == ["1.00", "2.00", "3.00", "saved model"]
    assert rows[-1]["eval loss"] == f"{evaluations[0]['eval_loss']:.4f}" == rows[0]["eval loss"]
    assert "`checkpoint-8` (epoch 1, step 8 of 24; loss" in (out / "README.md").read_text()


def test_gradual_unfreezing_is_recorded_as_far_as_the_checkpoint_kept(tmp_path, tiny_bert_dir, skewed):
    """The first epoch's checkpoint is kept (it trained the head alone); the record and card counted the stages of
    all 3 epochs run ("reached 3 stages", the blocks unfrozen later "trained") for a saved model whose body is the
    pretrained one."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--num_train_epochs", "3", "--eval_strategy", "epoch")
    extra = ["--save_strategy", "epoch", "--load_best_model_at_end", "true", "--metric_for_best_model", "loss"]
    assert (
        main([*argv, *extra, "--greater_is_better", "true", "--learning_rate", "1e-3", "--gradual_unfreezing", "1"])
        == 0
    )
    record = record_of(out)
    assert record["best_model"]["checkpoint"] == "checkpoint-8"
    saved = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3).state_dict()
    unchanged = sum(saved[k].numel() for k in saved if k in base and torch.equal(saved[k], base[k]))
    assert unchanged > 0 and record["freeze"]["permanently_frozen_parameters"] == unchanged
    assert record["freeze"]["unfreezing_stages_reached"] == 1
    card = (out / "README.md").read_text()  # later epochs unfroze the rest, but not in the weights saved
    assert (
        "reached 1 of 4 stages, so the rest kept the weights it started with" in card and "never unfrozen" not in card
    )


def test_without_a_best_checkpoint_the_last_evaluation_closes_the_epoch_table_once(tmp_path, tiny_bert_dir, skewed):
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--num_train_epochs", "2", "--eval_strategy", "epoch")
    assert main(argv) == 0
    record = record_of(out)
    assert "best_model" not in record
    rows = epoch_table_rows(out)
    assert [row["epoch"] for row in rows] == ["1.00", "2.00"]
    assert rows[-1]["eval loss"] == f"{record['eval_metrics']['eval_loss']:.4f}"


def test_a_resumed_run_keeps_counting_evaluations_without_improvement(tmp_path, tiny_bert_dir, skewed):
    """The checkpoint records one evaluation without improvement: the resumed run stops one evaluation later, at
    epoch 3 as the run never stopped does (the count started again at 0, so it trained to epoch 4)."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--num_train_epochs", "6", "--eval_strategy", "epoch")
    extra = ["--early_stopping_patience", "2", "--early_stopping_threshold", "1.0", "--metric_for_best_model"]
    extra += ["accuracy", "--save_total_limit", "5"]  # Trainer's limit of 1 would keep the best checkpoint alone
    assert main([*argv, *extra, "--max_steps", "16"]) == 0  # 8 steps an epoch: evaluations at epochs 1 and 2
    assert record_of(out)["early_stopping"]["stopped_early"] is False and (out / "checkpoint-16").is_dir()
    assert main([*argv, *extra, "--resume_from_checkpoint", "true"]) == 0
    stopping = record_of(out)["early_stopping"]
    assert stopping["stopped_early"] is True and stopping["epochs_trained"] == 3.0


def test_the_record_and_the_card_say_a_run_was_resumed_and_from_which_step(tmp_path, tiny_bert_dir, skewed):
    """They said nothing of it: a resumed run's card read as one run from step 0, in this process."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--save_strategy", "steps", "--save_steps", "3")
    argv[argv.index("--num_train_epochs") + 1] = "2"
    assert main([*argv, "--max_steps", "6"]) == 0
    assert "resumed_from" not in record_of(out) and "resumed from" not in (out / "README.md").read_text()
    # save_total_limit 1: the resumed run's own saves delete checkpoint-6 before it ends.
    assert main([*argv, "--resume_from_checkpoint", "true", "--save_total_limit", "1"]) == 0
    assert not (out / "checkpoint-6").exists()
    # The first part's schedule ended at step 6 (max_steps): the card says the rest ran on this run's.
    resumed = {
        "checkpoint": "checkpoint-6",
        "step": 6,
        "train_loss_steps": [1, 16],
        "schedule_changed": {"max_steps": [6, -1]},
    }
    assert record_of(out)["resumed_from"] == resumed
    assert "| resumed from | `checkpoint-6` (step 6)" in (out / "README.md").read_text()


def test_early_stopping_on_steps_without_eval_steps_evaluates_and_saves_every_logging_steps(
    tmp_path, tiny_bert_dir, skewed, caplog
):
    """eval_strategy steps with no eval_steps: Trainer evaluates every logging_steps, so the checkpoints follow (it
    stopped with "'>' not supported between instances of 'NoneType' and 'int'"). The save schedule given (here
    `save_strategy no`) was replaced in silence; it is said."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--max_steps", "4", "--eval_strategy", "steps")
    argv[argv.index("--logging_steps") + 1] = "2"
    assert "--save_strategy" in argv and argv[argv.index("--save_strategy") + 1] == "no"
    assert main([*argv, "--early_stopping_patience", "5"]) == 0
    said = [r.getMessage() for r in caplog.records if "replaced by" in r.getMessage()]
    assert said == ["save_strategy no replaced by save_strategy steps: early_stopping_patience keeps the best "
                    "checkpoint, so one is saved at every evaluation."]  # fmt: skip
    record = record_of(out)
    assert [row["step"] for row in record["log_history"] if "eval_loss" in row] == [2, 4]
    assert record["early_stopping"]["best_checkpoint"] in ("checkpoint-2", "checkpoint-4")
    assert (out / record["early_stopping"]["best_checkpoint"]).is_dir()


@pytest.mark.parametrize("metric,multi_label", [("f1", False), ("accuracy", True), ("eval_recall", False)])
def test_a_best_model_metric_that_is_not_computed_is_one_line_before_loading(
    tmp_path, tiny_bert_dir, skewed, capsys, metric, multi_label
):
    """Trainer raised a KeyError at the first evaluation, after training steps, and the run left nothing useful."""
    train, dev = skewed
    if multi_label:
        for path in (train, dev):
            frame = pd.read_csv(path)
            frame["label"] = [f"[{label}, any]" for label in frame["label"]]
            frame.to_csv(path, index=False)
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, train, dev, out, "--early_stopping_patience", "1")
    assert main([*argv, "--metric_for_best_model", metric]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"metric_for_best_model {metric!r} is not computed" in err[0]
    assert ("subset_accuracy" in err[0]) == multi_label and "f1_macro" in err[0]
    assert not out.exists()


def test_the_best_model_metrics_named_are_the_ones_computed():
    from hf_transfer.core.metrics import classification_metrics, metric_names

    names = ["neg", "pos", "a b"]
    single = classification_metrics([0, 1, 2], [0, 2, 1], names)
    assert sorted(metric_names(names)) == sorted(k for k, v in single.items() if isinstance(v, float))
    multi = classification_metrics(np.eye(3, dtype=int), np.eye(3, dtype=int), names, "multi_label_classification")
    assert sorted(metric_names(names, "multi_label_classification")) == sorted(multi)


@pytest.mark.parametrize(
    "extra,warned",
    [
        (["--early_stopping_threshold", "0.01"], "early_stopping_threshold set but ignored: early_stopping_patience"),
        (["--linear_probe_learning_rate", "0.01"], "linear_probe_learning_rate set but ignored: linear_probe_epochs"),
        (["--calibration_split_percentage", "20"], "calibration_split_percentage set but ignored: calibrate_decision"),
        (["--calibration_split_percentage", "20", "--calibrate_decision", "macro_f1"], None),
        ([], None),
    ],
)
def test_a_quality_field_set_without_its_option_is_named_in_a_warning(tmp_path, caplog, extra, warned):
    """These were accepted and ignored, silently (early_stopping_threshold with no patience changed nothing)."""
    from hf_transfer.cli import parse_command_args
    from hf_transfer.train.stages import warn_ignored_quality_fields

    argv = ["--model_name_or_path", "m", "--train_file", "t.csv", "--output_dir", str(tmp_path / "out"), *extra]
    training = parse_command_args("train", argv)[-1]
    with caplog.at_level("WARNING", logger="hf_transfer"):
        warn_ignored_quality_fields(training)
    lines = [r.getMessage() for r in caplog.records if "set but ignored" in r.getMessage()]
    assert lines == ([] if warned is None else [lines[0]]) and (warned is None or lines[0].startswith(warned))


def test_a_missing_reporting_integration_is_one_line_before_loading(
    tmp_path, tiny_bert_dir, skewed, monkeypatch, capsys
):
    import transformers.integrations

    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: [])
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out)
    argv[argv.index("--report_to") + 1] = "tensorboard"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "report_to tensorboard" in err[0] and "pip install tensorboard" in err[0]
    assert not out.exists()


def test_report_to_names_are_checked_and_commas_separate_them(monkeypatch):
    """A typo was told to `pip install tensorbaord`; `tensorboard,none` (commas, as other list fields take them) was
    one name to install, `tensorboard,none`."""
    import transformers.integrations

    from hf_transfer.cli import parse_command_args
    from hf_transfer.errors import ConfigError

    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    base = ["--model_name_or_path", "m", "--output_dir", "o", "--report_to"]
    with pytest.raises(
        ConfigError, match=r"report_to 'tensorbaord' is no reporting integration; .* mean 'tensorboard'"
    ):
        parse_command_args("train", [*base, "tensorbaord"])
    for value in ("tensorboard,none", "tensorboard, none", "[tensorboard, none]"):
        assert parse_command_args("train", [*base, value])[-1].report_to == ["tensorboard"], value


@pytest.mark.parametrize("value", ["null", "none"])
def test_report_to_null_means_no_reporting(value):
    from hf_transfer.cli import parse_command_args

    # TrainingArguments turned None into [None]: "sequence item 0: expected str instance, NoneType found".
    args = parse_command_args("train", ["--model_name_or_path", "m", "--output_dir", "o", "--report_to", value])
    assert args[-1].report_to == []


def test_wise_ft_between_the_linear_probe_and_the_fine_tuned_model(tmp_path, tiny_bert_dir, skewed):
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, *skewed, out, "--linear_probe_epochs", "1")) == 0
    merged = tmp_path / "merged"
    argv = ["merge", "--pretrained", str(out / "linear_probe"), "--finetuned", str(out), "--alpha", "0"]
    assert main([*argv, "--output_dir", str(merged)]) == 0
    # At α = 0 the blend is the linear-probe classifier itself, head included.
    probe = AutoModelForSequenceClassification.from_pretrained(out / "linear_probe").state_dict()
    blend = AutoModelForSequenceClassification.from_pretrained(merged).state_dict()
    assert all(torch.equal(probe[k], blend[k]) for k in probe)
    record = json.loads((merged / "hf_transfer_run.json").read_text())["merge"]
    assert record["head_init"] == str(out / "linear_probe")


def test_data_seed_fixes_the_held_out_rows_while_seed_varies_and_the_record_says_which_seed(tmp_path, skewed):
    """`data_seed` is `Trainer`'s seed for the data (its sampler) apart from the model's; the validation and
    calibration carve-outs followed `seed` alone, so runs that varied `seed` under one `data_seed` (to measure the
    spread of initialisations) each held out other rows, and the record did not say which seed drew them."""
    from transformers import AutoConfig

    from hf_transfer.core.arguments import DataArguments
    from hf_transfer.train.arguments import TransferTrainingArguments
    from hf_transfer.train.preflight import load_checked_data
    from hf_transfer.train.stages import with_calibration_split

    config = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_labels=3)

    def held_out(seed, data_seed=None):
        args = TransferTrainingArguments(
            output_dir=str(tmp_path / "out"), seed=seed, data_seed=data_seed, calibrate_decision="macro_f1"
        )
        prepared = load_checked_data(DataArguments(train_file=str(skewed[0])), args)
        carved = with_calibration_split(prepared, args, config)
        return carved.datasets["validation"]["text"], carved.datasets["calibration"]["text"], carved.summary

    seed_1, seed_2 = held_out(1, data_seed=7), held_out(2, data_seed=7)
    assert seed_1[:2] == seed_2[:2]
    assert seed_1[2]["validation"]["seed"] == 7 and seed_1[2]["calibration"]["seed"] == 7
    without_data_seed = held_out(1), held_out(2)  # unchanged: seed draws them when data_seed is unset
    assert without_data_seed[0][0] != without_data_seed[1][0] and without_data_seed[0][1] != without_data_seed[1][1]
    assert without_data_seed[1][2]["validation"]["seed"] == 2 and without_data_seed[1][2]["calibration"]["seed"] == 2


def test_a_calibration_that_lowers_validation_macro_f1_is_said(caplog):
    """Offsets fitted on 8 carved rows lowered validation macro-F1 from 0.31 to 0.26 and the card alone said so."""
    import logging

    from hf_transfer.train.stages import say_calibration_cost

    calibration = {"validation_before": {"f1_macro": 0.3103}, "calibration_rows": 8}
    with caplog.at_level(logging.WARNING):
        say_calibration_cost(calibration, {"eval_f1_macro": 0.2593}, None, None)
    assert "lowered validation macro-F1 from 0.3103 to 0.2593 (offsets fitted on 8 carved rows)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        say_calibration_cost(calibration, {"eval_f1_macro": 0.35}, None, None)
        say_calibration_cost(None, {"eval_f1_macro": 0.2}, None, None)
    assert not caplog.text


def test_the_early_stopping_note_names_step_counts_as_given(caplog):
    """A resolved config fed back holds `save_steps: 3.0` (TrainingArguments keeps floats); the note said "3.0"."""
    from types import SimpleNamespace

    from hf_transfer.train.checks import check_early_stopping_fields

    args = SimpleNamespace(
        chosen_fields=frozenset({"save_steps"}), early_stopping_replaced={"save_steps": 3.0}, save_steps=2
    )
    check_early_stopping_fields(args, warn=True)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["save_steps 3 replaced by save_steps 2"]
    args.early_stopping_replaced, args.save_steps = {"save_steps": 0.5}, 0.25  # a fraction of the run stays one
    check_early_stopping_fields(args, warn=True)
    assert caplog.records[-1].getMessage().startswith("save_steps 0.5 replaced by save_steps 0.25:")


def test_mixed_precision_from_the_accelerate_config_is_recorded_and_resolved(
    tmp_path, tiny_bert_dir, skewed, monkeypatch, capsys, caplog
):
    """`accelerate launch --config_file ddp_gpu.yaml` (mixed_precision: bf16) sets ACCELERATE_MIXED_PRECISION, and
    Trainer trained in bf16; the record, card and resolved config said fp32, and the final scores were the last
    bf16 evaluation's, labelled fp32."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    out = tmp_path / "run"
    with caplog.at_level("WARNING"):  # said, not logged at info: it also overrides an explicit --bf16 false
        assert main([*train_argv(tiny_bert_dir, *skewed, out), "--bf16", "false"]) == 0
    assert "training in bf16, the accelerate config's mixed_precision (ACCELERATE_MIXED_PRECISION)" in caplog.text
    assert record_of(out)["precision"] == "bf16"
    assert yaml.safe_load((out / "hf_transfer_config.yaml").read_text())["bf16"] is True
    # fp16 from the config on this CPU: refused, and the line says where the fp16 came from (none was given).
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    capsys.readouterr()
    assert main(train_argv(tiny_bert_dir, *skewed, tmp_path / "fp16")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-transfer train: error: fp16 (the accelerate config's mixed_precision) needs a GPU"), err
    assert "\n" not in err and not (tmp_path / "fp16").exists()


def test_a_launcher_precision_that_gives_way_to_the_flags_is_said_once(monkeypatch, caplog):
    """`accelerate launch --mixed_precision fp16 ... --bf16 true` trained in bf16 with no word of the launcher's fp16;
    under 2 processes the adopted precision was said twice, once per process."""
    from types import SimpleNamespace

    from hf_transfer.core.runtime import adopt_launch_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with caplog.at_level("WARNING"):
        assert adopt_launch_precision(SimpleNamespace(bf16=True, fp16=False)) == ""
        assert adopt_launch_precision(SimpleNamespace(bf16=False, fp16=True)) == ""  # the same: nothing to say
    assert [r.getMessage() for r in caplog.records] == [
        "training in bf16 as given; the accelerate config's mixed_precision fp16 is not used."
    ]
    caplog.clear()
    monkeypatch.setenv("WORLD_SIZE", "2")  # process 1 of a launch of 2 (a launcher sets both)
    monkeypatch.setenv("RANK", "1")
    args = SimpleNamespace(bf16=False, fp16=False)
    with caplog.at_level("WARNING"):
        assert adopt_launch_precision(args) and args.fp16 is True
    assert not caplog.records  # the main process says it


def test_several_gpus_visible_to_one_process_train_on_the_first_not_through_data_parallel(monkeypatch, caplog):
    """Trainer wrapped the model in nn.DataParallel, whose replicas shared the forward the frozen-trunk cache patches
    (a half batch got the whole batch's cached states). GPUs are faked: only the count is read."""
    from types import SimpleNamespace

    from hf_transfer.core import runtime
    from hf_transfer.core.runtime import one_gpu_per_process

    monkeypatch.setattr(runtime, "_said", set())  # said once per process: as if none had been
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = SimpleNamespace(use_cpu=False, n_gpu=4, _n_gpu=4)
    one_gpu_per_process(args)
    assert args._n_gpu == 1
    assert "accelerate launch --multi_gpu --num_processes 4" in caplog.records[-1].getMessage()
    monkeypatch.setenv("WORLD_SIZE", "4")  # one process per GPU already: DDP, nothing to change
    args = SimpleNamespace(use_cpu=False, n_gpu=4, _n_gpu=4)
    one_gpu_per_process(args)
    assert args._n_gpu == 4


@pytest.mark.parametrize(
    "engine,env,given",
    [
        ("FSDP", {"ACCELERATE_USE_FSDP": "true"}, {"calibrate_decision": "macro_f1"}),
        ("FSDP", {"ACCELERATE_USE_FSDP": "true"}, {"linear_probe_epochs": 1}),
        (
            "DeepSpeed ZeRO-3",
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
            {"cache_frozen_features": True},
        ),
        ("FSDP", {"ACCELERATE_USE_FSDP": "true"}, {"merge_adapter": True}),
    ],  # fmt: skip
    ids=["calibration", "lp-ft", "feature-cache", "merge-adapter"],
)
def test_options_that_run_the_model_in_one_process_are_refused_when_its_weights_are_sharded(monkeypatch, engine, env,
                                                                                            given):  # fmt: skip
    """Under FSDP or ZeRO-3 the main process alone ran the trained model (the linear probe's save, the cached trunk's
    patched forward) or edited it (offsets into a sharded bias, the adapter merged into its shard): a hang or a
    crash after training. Refused in one line by the data checks (arguments) that run before any weight loads; the
    process group a launch sets up is not built here, so the checks are called as the commands call them."""
    from types import SimpleNamespace

    from hf_transfer.adapters.arguments import AdapterArguments
    from hf_transfer.errors import ConfigError
    from hf_transfer.train.checks import check_sharded_launch

    plain = {"calibrate_decision": None, "linear_probe_epochs": 0, "cache_frozen_features": False}
    check = (lambda: AdapterArguments(peft_method="lora", merge_adapter=True)) if "merge_adapter" in given else (
        lambda: check_sharded_launch(SimpleNamespace(**(plain | given))))  # fmt: skip
    check()  # one process: nothing to refuse
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{next(iter(given))} .* but {engine} shards") as refused:
        check()
    assert "\n" not in str(refused.value)


def test_only_sharding_engines_count_as_sharded(monkeypatch):
    from hf_transfer.core.runtime import sharded_weights

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")  # ZeRO-2 shards the optimizer state, not the weights
    assert sharded_weights() is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert sharded_weights() == "FSDP"
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process holds every shard
    assert sharded_weights() is None


def test_the_summary_says_how_the_saved_model_came_to_be(tmp_path, tiny_bert_dir, skewed, capsys, caplog):
    """The printed results were a calibrated, best-checkpoint model's while the last logged evaluation was the raw
    last step's, with no word of either; and offsets fitted on 15 carved rows, 3 of a class, passed unremarked."""
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--calibrate_decision", "macro_f1")
    argv += ["--calibration_split_percentage", "25", "--num_train_epochs", "3", "--eval_strategy", "epoch"]
    argv += ["--save_strategy", "epoch", "--load_best_model_at_end", "true", "--metric_for_best_model", "loss"]
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    best = record_of(out)["best_model"]
    said = [line.split(None, 1) for line in printed.splitlines() if line.startswith("  ")]
    notes = {key: text for key, text in said if key in ("saved_model", "calibrated", "stopped_early")}
    assert (
        notes["saved_model"].startswith(f"{best['checkpoint']}, the best loss")
        and "scores below" in notes["saved_model"]
    )
    assert notes["calibrated"].startswith(
        "per-class logit offsets fitted on 15 carved rows, folded into classifier.bias"
    )
    keys = [key for key, _ in said]
    assert keys.index("calibrated") < keys.index("eval_accuracy")  # said before the scores it explains
    few = [r.getMessage() for r in caplog.records if "offsets from so few rows are noisy" in r.getMessage()]
    assert len(few) == 1 and "fitted its offsets on 15 carved rows, 3 of them" in few[0]


def test_run_notes_name_an_early_stop_a_resume_and_a_last_step_kept():
    from hf_transfer.train.run_notes import run_notes

    facts = {
        "resumed_from": {"checkpoint": "checkpoint-30", "step": 30},
        "early_stopping": {"stopped_early": True, "steps_trained": 50, "max_steps": 90, "metric": "f1_macro",
                           "patience": 2},
        "best_model": {"checkpoint": "checkpoint-50", "metric": "f1_macro", "value": 1.0, "step": 50, "last_step": 50},
    }  # fmt: skip
    assert run_notes(facts) == {
        "resumed_from": "checkpoint-30 (step 30)",
        "stopped_early": "at step 50 of 90: no f1_macro gain in 2 evaluations",
        "saved_model": "checkpoint-50, the best f1_macro (1.0000) at step 50 (the last step); the scores below are "
        "this checkpoint's",
    }
    assert run_notes({"early_stopping": {"stopped_early": False}}) == {}
    # An adapter run's summary read as a full fine-tune's: what trained, and on which base, is said.
    adapter = {"method": "lora", "r": 8, "trainable_parameters": 314498, "total_parameters": 22981634,
               "trainable_percent": 1.3685, "base_model_name_or_path": "org/minilm"}  # fmt: skip
    assert run_notes({"adapter": adapter}) == {
        "adapter": "lora (r=8) on org/minilm: 314,498 of 22,981,634 parameters trained (1.37%)"
    }


def test_the_several_gpus_line_is_said_once_per_process(monkeypatch, caplog):
    """Arguments are built again for the few-shot route and for every search trial: the line printed each time."""
    from types import SimpleNamespace

    from hf_transfer.core import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(runtime, "_said", set())
    for _ in range(3):
        args = SimpleNamespace(use_cpu=False, n_gpu=2, _n_gpu=2)
        runtime.one_gpu_per_process(args)
        assert args._n_gpu == 1
    assert sum("GPUs are visible to this one process" in r.getMessage() for r in caplog.records) == 1


def test_the_calibration_score_equals_scikit_learns_macro_f1_and_scales_to_many_classes():
    """It called scikit-learn's f1_score up to 201 × classes × 4 times: 120 classes took 3 minutes. Counted with
    numpy now, it must give scikit-learn's figure exactly (single-label: classes among labels or predictions)."""
    from sklearn.metrics import f1_score

    from hf_transfer.train.calibration import macro_f1

    rng = np.random.default_rng(0)
    for _ in range(200):
        n, k = int(rng.integers(1, 60)), int(rng.integers(2, 12))
        logits, labels = rng.normal(size=(n, k)), rng.integers(0, k, size=n)
        ours = macro_f1(logits, labels, "single_label_classification")
        assert ours == pytest.approx(f1_score(labels, logits.argmax(1), average="macro", zero_division=0.0), abs=1e-12)
        multi = (rng.random((n, k)) < 0.3).astype(int)
        ours = macro_f1(logits, multi, "multi_label_classification")
        theirs = f1_score(multi, (logits > 0).astype(int), average="macro", zero_division=0.0)
        assert ours == pytest.approx(theirs, abs=1e-12)
    logits, labels = rng.normal(size=(300, 120)), rng.integers(0, 120, size=300)  # 180 s before, about 5 s now
    offsets = fit_offsets(logits, labels, "single_label_classification")
    assert macro_f1(logits + offsets, labels, "x") > macro_f1(logits, labels, "x")


def test_the_linear_probes_scores_cover_every_validation_row_under_dataloader_drop_last(
    tmp_path, tiny_bert_dir, skewed, monkeypatch
):
    """`dataloader_drop_last` is for training batches; the probe's evaluation kept it and scored 12 of the 15
    validation rows (batches of 4), so its recorded accuracy was not of the validation set."""
    from hf_transfer.train import stages

    scored = []

    class Counting(stages.TransferTrainer):
        def evaluation_loop(self, *args, **kwargs):
            output = super().evaluation_loop(*args, **kwargs)
            scored.append(len(output.label_ids))  # the rows scored (num_samples is the set's length)
            return output

    monkeypatch.setattr(stages, "TransferTrainer", Counting)
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *skewed, out, "--linear_probe_epochs", "1", "--dataloader_drop_last", "true")
    argv += ["--per_device_eval_batch_size", "4"]
    argv[argv.index("--num_train_epochs") + 1] = "0"  # the saved model is the probe: both scores are of its weights
    assert main(argv) == 0
    assert scored == [15]
    record = record_of(out)
    assert record["linear_probe"]["eval_accuracy"] == record["eval_metrics"]["eval_accuracy"]
