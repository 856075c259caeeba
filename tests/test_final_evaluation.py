"""The run's final evaluation does not run the model over the validation set again when an evaluation during training
already scored the very weights being saved, in fp32 (the last epoch's, or the best checkpoint's that
`load_best_model_at_end` brought back); its figures are those of that evaluation. Counted in rows through the model."""

import functools
import json

import pandas as pd
import pytest
from transformers.models.bert import modeling_bert

from hf_transfer.cli import main

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
TRAIN_ROWS, DEV_ROWS = 48, 40


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("final-eval-data")
    n = TRAIN_ROWS + DEV_ROWS
    texts = [f"{WORDS[i % 8]} thing number {i}" for i in range(n)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(n)]
    pd.DataFrame({"text": texts[:TRAIN_ROWS], "label": labels[:TRAIN_ROWS]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"text": texts[TRAIN_ROWS:], "label": labels[TRAIN_ROWS:]}).to_csv(root / "dev.csv", index=False)
    return root / "train.csv", root / "dev.csv"


@pytest.fixture
def scored_rows(monkeypatch):
    """Rows the encoder runs in eval mode (evaluations, predictions), per call; the encoder's forward, which the
    classifier's calls (accelerate wraps the classifier's own in its autocast)."""
    rows = []
    forward = modeling_bert.BertModel.forward

    @functools.wraps(forward)
    def counting(self, input_ids=None, *args, **kwargs):
        if not self.training:
            rows.append(input_ids.shape[0])
        return forward(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(modeling_bert.BertModel, "forward", counting)
    return rows


def train(tiny_bert_dir, data, out, *extra):
    argv = ["train", "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(data[0]),
            "--validation_file", str(data[1]), "--output_dir", str(out), "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "16", "--num_train_epochs", "2", "--eval_strategy", "epoch",
            "--save_strategy", "no", "--few_shot", "false", "--report_to", "none", "--disable_tqdm", "true",
            *extra]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    evals = [e for e in record["log_history"] if "eval_loss" in e]
    return record, evals


def scores(metrics: dict) -> dict:
    timing = ("runtime", "per_second")
    return {k: v for k, v in metrics.items() if not any(t in k for t in timing) and k not in ("epoch", "step")}


def test_the_last_epochs_evaluation_is_the_final_one(tmp_path, tiny_bert_dir, data, scored_rows):
    record, evals = train(tiny_bert_dir, data, tmp_path / "run")
    assert len(evals) == 2
    assert sum(scored_rows) == 2 * DEV_ROWS  # was 3 × 40: the final evaluation ran the same weights again
    assert scores(record["eval_metrics"]) == {**scores(evals[-1]), "eval_samples": DEV_ROWS}
    assert record["validation_report"]["accuracy"] == evals[-1]["eval_accuracy"]
    assert json.loads((tmp_path / "run" / "confusion_matrix.json").read_text())


def test_the_best_checkpoints_evaluation_is_the_final_one(tmp_path, tiny_bert_dir, data, scored_rows):
    record, evals = train(tiny_bert_dir, data, tmp_path / "run", "--num_train_epochs", "4", "--eval_strategy",
                          "steps", "--eval_steps", "1", "--learning_rate", "1e-3", "--early_stopping_patience",
                          "2", "--metric_for_best_model", "accuracy")  # fmt: skip
    best = record["best_model"]
    assert best["step"] != best["last_step"], "the precondition: the best checkpoint is not the last step"
    assert sum(scored_rows) == len(evals) * DEV_ROWS
    (best_eval,) = [e for e in evals if e["step"] == best["step"]]
    assert scores(record["eval_metrics"]) == {**scores(best_eval), "eval_samples": DEV_ROWS}
    # The card's table closes with the saved model at the kept step (it showed the last step), and the card says
    # the validation score chose the checkpoint (it presented that score as held-out).
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"| saved model | {best['step']} |" in card
    assert "the model trained is this checkpoint's, not the last step's" in card
    assert "the checkpoint kept was chosen by its validation score, which is therefore optimistic)" in card


def test_calibration_reuses_the_last_evaluation_and_scores_what_it_changed(tmp_path, tiny_bert_dir, data, scored_rows):
    record, evals = train(tiny_bert_dir, data, tmp_path / "run", "--calibrate_decision", "macro_f1")
    calibration_rows = record["calibration"]["calibration_rows"]
    # Each epoch, the calibration split, and the calibrated model once: the scores before calibration are the last
    # epoch's (the validation set ran twice more before).
    assert sum(scored_rows) == 2 * DEV_ROWS + calibration_rows + DEV_ROWS
    before = record["calibration"]["validation_before"]
    assert before["accuracy"] == evals[-1]["eval_accuracy"] and before["f1_macro"] == evals[-1]["eval_f1_macro"]


def test_calibration_with_no_evaluation_during_training_scores_validation_once(tmp_path, tiny_bert_dir, data,
                                                                              scored_rows):  # fmt: skip
    """With no evaluation during training, the scores before the offsets took a validation pass of their own; they
    are the final evaluation's logits less the offsets now, which the trained weights' own scores equal."""
    out = tmp_path / "run"
    record, _ = train(tiny_bert_dir, data, out, "--calibrate_decision", "macro_f1", "--eval_strategy", "no")
    assert sum(scored_rows) == record["calibration"]["calibration_rows"] + DEV_ROWS
    before = record["calibration"]["validation_before"]
    # The same run evaluating each epoch (which changes no weight) takes them from its last evaluation, exactly.
    evaluated, evals = train(tiny_bert_dir, data, tmp_path / "epochs", "--calibrate_decision", "macro_f1")
    assert evaluated["calibration"]["offsets"] == record["calibration"]["offsets"]
    assert before == evaluated["calibration"]["validation_before"] and before["accuracy"] == evals[-1]["eval_accuracy"]


def test_a_bf16_run_scores_its_saved_weights_in_fp32_once_more(tmp_path, tiny_bert_dir, data, scored_rows):
    train(tiny_bert_dir, data, tmp_path / "run", "--bf16", "true", "--use_cpu", "true")
    assert sum(scored_rows) == 3 * DEV_ROWS  # the epochs ran under bf16 autocast: the fp32 figures need a pass


def test_dataloader_drop_last_drops_training_rows_but_every_row_is_scored(tmp_path, tiny_bert_dir, data, scored_rows):
    """`dataloader_drop_last: true` dropped the last incomplete batch of every evaluation too (Trainer's loaders share
    the flag): the confusion matrix summed to fewer rows than eval_samples, and an unlabelled test file's predictions
    failed to line up with its rows after training. Training batches still drop their last incomplete one."""
    test = tmp_path / "test.csv"
    pd.DataFrame({"text": [f"{w} test row" for w in WORDS * 5]}).to_csv(test, index=False)  # 40 rows
    out = tmp_path / "run"
    record, evals = train(tiny_bert_dir, data, out, "--dataloader_drop_last", "true", "--per_device_eval_batch_size",
                          "7", "--per_device_train_batch_size", "20", "--test_file", str(test))  # fmt: skip
    assert len(evals) == 2 and sum(scored_rows) == 2 * DEV_ROWS + 40  # each evaluation read all 40 rows
    assert sum(map(sum, record["validation_report"]["confusion_matrix"])) == DEV_ROWS
    assert record["train_metrics"]["optimizer_steps"] == 2 * (TRAIN_ROWS // 20)  # 48 rows: 2 full batches an epoch
    assert len(pd.read_csv(out / record["test_predictions"]["file"])) == 40
    assert yaml_value(out, "dataloader_drop_last") is True


def yaml_value(out, key):
    import yaml

    return yaml.safe_load((out / "hf_transfer_config.yaml").read_text())[key]


def test_a_best_evaluation_between_checkpoints_is_not_reported_as_the_saved_models(tmp_path, caplog):
    """Trainer lets save_steps be a multiple of eval_steps: the best evaluation (step 15) then has no checkpoint, and
    `load_best_model_at_end` loads the last best one saved (step 10). The final metrics reused step 15's prediction,
    of weights never saved, and the record paired checkpoint-10 with step 15's score."""
    import itertools

    from test_trainers import _PadTokenizer, make_args, tiny_dataset, tiny_model
    from transformers import DataCollatorWithPadding

    from hf_transfer.train.evaluation_memory import EvaluationMemory
    from hf_transfer.train.stages import stopping_facts
    from hf_transfer.train.trainer import TransferTrainer

    class Tokenizer(_PadTokenizer):
        def save_pretrained(self, *args, **kwargs):
            return ()

    scripted = itertools.chain([0.1, 0.5, 0.9, 0.2], itertools.repeat(0.0))  # the evaluations at steps 5, 10, 15, 20

    def compute_metrics(p):
        return {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean()), "score": next(scripted)}

    args = make_args(tmp_path, per_device_train_batch_size=2, eval_strategy="steps", eval_steps=5,
                     save_strategy="steps", save_steps=10, load_best_model_at_end=True, metric_for_best_model="score",
                     greater_is_better=True, learning_rate=0.5)  # fmt: skip
    validation = tiny_dataset(n=24, seed=1)
    collator = DataCollatorWithPadding(Tokenizer())
    trainer = TransferTrainer(model=tiny_model(), args=args, train_dataset=tiny_dataset(n=40), eval_dataset=validation,
                              data_collator=collator, compute_metrics=compute_metrics)  # fmt: skip
    memory = EvaluationMemory(trainer)
    trainer.train()
    memory.training_ended()
    best = stopping_facts(trainer)["best_model"]
    assert (best["checkpoint"], best["step"], best["value"]) == ("checkpoint-10", 10, 0.5)
    assert best["best_evaluation_unsaved"] == {"step": 15, "value": 0.9}
    assert "The best score (0.9) was at step 15, which saved no checkpoint" in caplog.text
    reused = memory.final_prediction(validation)
    assert reused is not None  # step 10's evaluation, of the weights loaded
    actual = trainer.predict(validation, metric_key_prefix="eval").metrics["eval_loss"]
    assert reused.metrics["eval_loss"] == pytest.approx(actual, rel=1e-5)
