import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_picture

from hf_transfer.core.metrics import METRICS_DIR, classification_metrics, load_metric, make_compute_metrics
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.errors import ConfigError, DataError
from hf_transfer.outputs.plots import plot_training_curves, save_confusion_matrix


@pytest.fixture(scope="module")
def single_label_data():
    rng = np.random.default_rng(0)
    references = rng.integers(0, 5, size=80)
    predictions = np.where(rng.random(80) < 0.6, references, rng.integers(0, 5, size=80))
    # Class 3 is never predicted and class 5 appears nowhere: both are zero-division cases.
    predictions[predictions == 3] = 1
    return predictions, references


@pytest.mark.parametrize("name", ["classification", "multilabel"])
def test_each_module_loads_offline_by_path(name):
    import evaluate

    metric = evaluate.load(str(METRICS_DIR / name))
    assert isinstance(metric, evaluate.Metric)
    assert metric.info.description.strip() and "scikit-learn" in metric.info.citation
    assert set(metric.info.features) == {"predictions", "references"}
    # The package data glob `metric_modules/*/*.py` must cover every module, with no package files needed.
    assert sorted(p.relative_to(METRICS_DIR).as_posix() for p in METRICS_DIR.glob("*/*.py")) == [
        "classification/classification.py",
        "multilabel/multilabel.py",
    ]


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
@pytest.mark.parametrize("labels", [None, [0, 1, 2, 3, 4, 5]])
@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_the_module_passes_every_option_to_sklearn(single_label_data, name, average, labels, zero_division):
    from sklearn import metrics

    predictions, references = single_label_data
    ours = load_metric("classification").compute(
        predictions=predictions, references=references, average=average, labels=labels, zero_division=zero_division
    )[name]
    expected = getattr(metrics, f"{name}_score")(
        references, predictions, average=average, labels=labels, zero_division=zero_division
    )
    np.testing.assert_allclose(ours, expected)
    if average is None:
        assert len(ours) == (6 if labels else 5)
    else:
        assert isinstance(ours, float)


def test_known_values_by_hand():
    # Class 0: TP 2, FP 1, FN 0. Class 1: TP 1, FP 0, FN 1. Class 2: never predicted, one true row.
    scores = load_metric("classification").compute(
        predictions=[0, 0, 1, 0], references=[0, 0, 1, 1], labels=[0, 1, 2], average=None
    )
    assert scores["accuracy"] == pytest.approx(3 / 4)
    np.testing.assert_allclose(scores["precision"], [2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(scores["recall"], [1.0, 1 / 2, 0.0])
    np.testing.assert_allclose(scores["f1"], [4 / 5, 2 / 3, 0.0])


def test_zero_division_nan_is_left_out_of_the_average():
    predictions, references = [0, 0, 1], [0, 1, 1]
    ours = load_metric("classification").compute(
        predictions=predictions, references=references, labels=[0, 1, 2], zero_division=np.nan
    )["precision"]
    assert ours == pytest.approx((0.5 + 1.0) / 2)


def test_multilabel_known_values_and_sklearn():
    from sklearn import metrics

    rng = np.random.default_rng(1)
    references = (rng.random((40, 4)) < 0.4).astype(int)
    predictions = np.where(rng.random((40, 4)) < 0.7, references, 1 - references)
    predictions[:5] = references[:5]
    references[:, 3] = predictions[:, 3] = 0  # a label nobody has: F1 0 / 0
    scores = load_metric("multilabel").compute(predictions=predictions, references=references)
    for average in ("micro", "macro"):
        expected = metrics.f1_score(references, predictions, average=average, zero_division=0.0)
        assert scores[f"f1_{average}"] == pytest.approx(expected)
    assert scores["subset_accuracy"] == pytest.approx(metrics.accuracy_score(references, predictions))
    small = load_metric("multilabel").compute(references=[[1, 0, 1], [0, 1, 0]], predictions=[[1, 0, 0], [0, 1, 0]])
    assert small["f1_micro"] == pytest.approx(0.8) and small["subset_accuracy"] == pytest.approx(0.5)
    np.testing.assert_allclose(small["f1_per_label"], [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="multi-hot"):
        load_metric("multilabel").compute(predictions=[[0, 2]], references=[[0, 1]])


def test_classification_metrics_single_label_by_hand():
    label_names = ["cat", "dog", "bird house"]
    references = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 2, 0]
    result = classification_metrics(predictions, references, label_names)

    per_class = {f"{m}_{key}" for m in ("precision", "recall", "f1") for key in ("cat", "dog", "bird_house")}
    expected_keys = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "confusion_matrix"} | per_class
    assert set(result) == expected_keys
    # Rows are true labels, columns predictions: one cat was taken for a dog, one bird house for a cat.
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["precision_cat"] == pytest.approx(1 / 2)
    assert result["recall_bird_house"] == pytest.approx(2 / 3)
    assert result["f1_dog"] == pytest.approx(2 / 3)
    assert result["recall_macro"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert json.loads(json.dumps(result)) == result
    assert all(type(v) in (float, list) for v in result.values())


def test_macro_averages_leave_out_classes_absent_from_the_set_and_keys_stay_unique():
    """A class with no row in the set and never predicted has no score: as sklearn and `evaluate`'s f1 average
    single labels (over those among references or predictions), not as a 0 that pulled a one-sided file's macro-F1
    to 1/3 at accuracy 1. Its per-class keys stay (0), and a class predicted but absent counts."""
    result = classification_metrics([0, 0], [0, 0], ["macro", "a", "a"])
    assert {"precision_macro_0", "precision_a_1", "precision_a_2"} <= set(result)
    assert result["recall_macro"] == result["f1_macro"] == 1.0 and result["recall_a_1"] == 0.0
    assert result["confusion_matrix"] == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]
    wrong = classification_metrics([0, 1], [0, 0], ["x", "y", "z"])  # y predicted, never true: it counts, z not
    assert wrong["precision_macro"] == pytest.approx((1 + 0) / 2) and wrong["recall_macro"] == pytest.approx(0.5 / 2)
    # Multi-label keeps every label column, as sklearn averages a multi-hot matrix.
    multi = classification_metrics([[1, 0, 0], [1, 0, 0]], [[1, 0, 0], [1, 0, 0]], list("abc"), MULTI_LABEL)
    assert multi["f1_macro"] == pytest.approx(1 / 3) and multi["f1_b"] == 0.0
    # A key made unique can be another label's own name: `a b` and `a_b` became a_b_0 and a_b_1, which `a_b_1`
    # already was, so one label's scores were lost and another's shown under its name.
    clash = classification_metrics([0, 1, 2, 2], [0, 1, 1, 2], ["a b", "a_b", "a_b_1"])
    per_label = sorted((k, v) for k, v in clash.items() if k.startswith("recall_a"))
    assert [v for _, v in per_label] == [1.0, 0.5, 1.0] and len(per_label) == 3


def test_classification_metrics_multi_label():
    references = [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
    predictions = [[1, 0, 0], [0, 1, 0], [1, 1, 0]]
    result = classification_metrics(predictions, references, ["a", "b", "c"], "multi_label_classification")
    assert set(result) == {"f1_micro", "f1_macro", "subset_accuracy", "f1_a", "f1_b", "f1_c"}
    assert result["subset_accuracy"] == pytest.approx(2 / 3)
    assert (result["f1_a"], result["f1_c"]) == (1.0, 0.0)
    assert result["f1_micro"] == pytest.approx(2 * 4 / (2 * 4 + 1))
    assert json.loads(json.dumps(result)) == result


def test_classification_metrics_rejects_bad_input():
    with pytest.raises(DataError, match=r"ids \[3\] outside"):
        classification_metrics([0, 3], [0, 1], ["a", "b"])
    with pytest.raises(DataError, match="as many predictions as references"):
        classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(DataError, match=r"\(2, 3\)"):
        classification_metrics([[1, 0], [0, 1]], [[1, 0], [0, 1]], ["a", "b", "c"], "multi_label_classification")
    with pytest.raises(ConfigError, match="regression"):
        make_compute_metrics(["a"], "regression")
    with pytest.raises(ConfigError, match="ships"):
        load_metric("bleu")


def test_make_compute_metrics_single_label_with_tuple_logits():
    from transformers import EvalPrediction

    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 1.0], [0.0, 0.2, 5.0], [1.0, 0.0, 0.5]])
    hidden_states = np.zeros((4, 2, 8))
    compute_metrics = make_compute_metrics(["neg", "neu", "pos"], "single_label_classification")
    metrics = compute_metrics(EvalPrediction(predictions=(logits, hidden_states), label_ids=np.array([0, 1, 1, 0])))
    assert "confusion_matrix" not in metrics
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["accuracy"] == pytest.approx(3 / 4)
    assert metrics["recall_neu"] == pytest.approx(1 / 2)
    assert metrics["precision_pos"] == 0.0


def test_make_compute_metrics_multi_label_thresholds_at_half():
    from transformers import EvalPrediction

    # Logits of +-1000 would overflow a naive exp(); 0.1 and -0.1 sit just either side of sigmoid = 0.5.
    logits = np.array([[1000.0, -0.1], [0.1, -1000.0]], dtype=np.float32)
    labels = np.array([[1.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    compute_metrics = make_compute_metrics(["x", "y"], "multi_label_classification")
    metrics = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert metrics["subset_accuracy"] == pytest.approx(1 / 2)
    assert (metrics["f1_x"], metrics["f1_y"]) == (1.0, 0.0)


def test_save_confusion_matrix_writes_json_and_png(tmp_path):
    labels = ["negative sentiment", "neutral", "positive sentiment"]
    matrix = [[5, 1, 0], [2, 3, 1], [0, 0, 0]]  # a class with no samples must not divide by zero
    json_path, png_path = tmp_path / "out" / "cm.json", tmp_path / "out" / "cm.png"
    save_confusion_matrix(matrix, labels, json_path, png_path, title="test set")
    assert json.loads(json_path.read_text()) == {"labels": labels, "matrix": matrix}
    assert_picture(png_path)
    with pytest.raises(DataError, match="shape"):
        save_confusion_matrix([[1, 2], [3, 4]], labels, json_path, png_path)


@pytest.mark.parametrize(
    "log_history",
    [
        pytest.param(
            [
                {"loss": 1.1, "grad_norm": 3.0, "learning_rate": 5e-5, "epoch": 0.5, "step": 5},
                {"loss": 0.8, "grad_norm": 2.0, "learning_rate": 3e-5, "epoch": 1.0, "step": 10},
                {"eval_loss": 0.9, "eval_accuracy": 0.6, "eval_f1_macro": 0.5, "epoch": 1.0, "step": 10},
                {"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-5, "epoch": 1.5, "step": 15},
                {"eval_loss": 0.7, "eval_accuracy": 0.7, "eval_f1_macro": 0.65, "epoch": 2.0, "step": 20},
                {"train_runtime": 3.0, "train_loss": 0.8, "epoch": 2.0, "step": 20},
            ],
            id="train-and-eval",
        ),
        pytest.param([{"loss": 1.0, "epoch": 0.1, "step": 1}], id="one-train-point-no-eval"),
        pytest.param([{"eval_loss": 0.9, "eval_accuracy": 0.5, "epoch": 1.0, "step": 4}], id="one-eval-point"),
        pytest.param([], id="empty"),
    ],
)
def test_plot_training_curves(tmp_path, log_history):
    png_path = tmp_path / "plots" / "curves.png"
    plot_training_curves(log_history, png_path, title="run")
    assert_picture(png_path)


def test_confusion_matrix_picture_says_counts_and_shortens_long_names_of_20_labels():
    """20 labels of 50 characters made a picture of names with the matrix squeezed in a corner, and the title
    ("validation") said neither that the cells are counts nor what the colour is."""
    from hf_transfer.outputs.plots import TICK_LABEL_CHARS, confusion_figure

    labels = [f"category {i} of the catalogue, with a rather long descriptive name" for i in range(20)]
    fig = confusion_figure(np.eye(20, dtype=int) * 7 + 1, labels, "validation")
    ax = fig.axes[0]
    title = ax.get_title()
    assert "validation" in title and "counts" in title and "share of the true label" in title
    assert f"({20 * 7 + 400} rows)" in title
    shown = [t.get_text() for t in ax.get_xticklabels()]
    assert len(set(shown)) == 20 and shown == [t.get_text() for t in ax.get_yticklabels()]
    assert all(len(text) <= TICK_LABEL_CHARS + 4 for text in shown), shown  # "19: " may number alike names
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted label", "True label")
    short = confusion_figure([[1, 0], [0, 1]], ["neg", "pos"]).axes[0]
    assert [t.get_text() for t in short.get_xticklabels()] == ["neg", "pos"]


def test_confusion_matrix_picture_of_150_labels_stays_a_picture():
    """150 labels drew a 92-inch (11,000-pixel, 4.8 MB) square of 22,500 numbers, two minutes after training; past
    30 labels the cells carry colour alone, the title says the counts are in the JSON, and the size is capped."""
    from hf_transfer.outputs.plots import confusion_figure

    labels = [f"intent_{i}" for i in range(150)]
    fig = confusion_figure(np.eye(150, dtype=int) * 3, labels, "validation")
    ax = fig.axes[0]
    assert max(fig.get_size_inches()) <= 21.5
    assert not ax.texts and "150 labels, counts in the JSON" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert 3 <= ax.get_yticklabels()[0].get_fontsize() < 10
    thirty = confusion_figure(np.eye(30, dtype=int), labels[:30]).axes[0]
    assert len(thirty.texts) == 900 and "cells: counts" in thirty.get_title()


def test_training_curves_of_one_evaluation_have_whole_steps_from_zero_and_a_title():
    """One epoch, one evaluation: the step axis ran 4.8 to 5.2 in tenths and the score axis 0.627 to 0.65; the
    picture had no title; a run that logged no step loss (fewer steps than logging_steps) had no train loss."""
    from hf_transfer.outputs.plots import training_curves_figure

    history = [
        {"eval_loss": 0.69, "eval_accuracy": 0.65, "eval_f1_macro": 0.63, "epoch": 1.0, "step": 5},
        {"train_runtime": 3.0, "train_loss": 0.6885, "epoch": 1.0, "step": 5},
    ]
    fig = training_curves_figure(history, "sst2-run")
    loss_ax, metric_ax = fig.axes[:2]
    assert fig.get_suptitle() == "Training curves: sst2-run"
    for ax in (loss_ax, metric_ax):
        assert ax.get_xlim()[0] == 0
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert metric_ax.get_ylim() == (0, 1.02)
    assert "train loss (mean over the run)" in loss_ax.get_legend_handles_labels()[1]


def test_training_curves_show_the_final_evaluation_when_none_was_logged_during_training():
    """The few-shot route (and eval_strategy: no) evaluates once, after training: the panel said "no evaluation
    metrics logged" beside a run summary with eval_accuracy 0.85."""
    from hf_transfer.outputs.plots import training_curves_figure

    history = [{"loss": 0.35, "epoch": 0.5, "step": 1}, {"loss": 0.05, "epoch": 16.0, "step": 48}]
    final = {"eval_loss": 0.35, "eval_accuracy": 0.85, "eval_f1_macro": 0.8465}
    metric_ax = training_curves_figure(history, "few-shot", final_metrics=final).axes[1]
    labels = metric_ax.get_legend_handles_labels()[1]
    assert labels == ["accuracy (final evaluation)", "f1_macro (final evaluation)"]
    assert [tuple(line.get_xydata()[0]) for line in metric_ax.get_lines()] == [(48, 0.85), (48, 0.8465)]
    assert not [t for t in metric_ax.texts if "no evaluation" in t.get_text()]
    logged = [{"eval_accuracy": 0.5, "epoch": 1.0, "step": 10}]  # metrics logged during training: those are drawn
    assert training_curves_figure(logged, final_metrics=final).axes[1].get_legend_handles_labels()[1] == [
        "accuracy",
        "accuracy (saved model)",  # the final score differs from the last one logged: drawn apart
    ]


def test_training_curves_show_how_the_saved_model_differs_from_the_last_evaluation():
    """A calibrated run's curves ended at macro-F1 0.34 while it reported 0.68; an early-stopped run's ran on past
    the checkpoint it kept with nothing marking it; distillation drew its α-weighted loss beside the validation's
    hard-label CE as if they were one loss; and equal curves (F1 = accuracy, or all 0) hid each other."""
    from hf_transfer.outputs.plots import training_curves_figure

    history = [
        {"loss": 0.7, "loss_ce": 0.69, "loss_kd": 0.2, "epoch": 1.0, "step": 10},
        {"eval_loss": 0.6, "eval_accuracy": 0.6, "eval_f1_macro": 0.6, "epoch": 1.0, "step": 10},
        {"loss": 0.5, "loss_ce": 0.45, "loss_kd": 0.1, "epoch": 2.0, "step": 20},
        {"eval_loss": 0.65, "eval_accuracy": 0.55, "eval_f1_macro": 0.34, "epoch": 2.0, "step": 20},
    ]
    final = {"eval_loss": 0.6, "eval_accuracy": 0.7, "eval_f1_macro": 0.68}
    fig = training_curves_figure(history, "run", final, "train loss", {"step": 10, "note": "after calibration"})
    loss_ax, metric_ax = fig.axes[:2]
    labels = metric_ax.get_legend_handles_labels()[1]
    assert [label for label in labels if "after calibration" in label] == [
        "accuracy (saved model, after calibration)",
        "f1_macro (saved model, after calibration)",
    ]
    stars = [line for line in metric_ax.get_lines() if line.get_marker() == "*"]
    assert [tuple(line.get_xydata()[0]) for line in stars] == [(10, 0.7), (10, 0.68)]  # at the kept step
    assert "saved model (step 10)" in labels and "saved model (step 10)" in loss_ax.get_legend_handles_labels()[1]
    assert "validation loss (saved model, after calibration)" not in loss_ax.get_legend_handles_labels()[1]  # equal
    curves = [line for line in metric_ax.get_lines() if line.get_label() in ("accuracy", "f1_macro")]
    assert len({(line.get_marker(), line.get_linestyle()) for line in curves}) == 2
    assert "train hard-label CE (its (1−α) term)" in loss_ax.get_legend_handles_labels()[1]
    assert "validation loss (hard-label CE)" in loss_ax.get_legend_handles_labels()[1]
    low, high = metric_ax.get_ylim()
    assert low >= 0 and high <= 1.02
    resumed = training_curves_figure(history, "run", final, "train loss", {"resumed": 20}).axes[0]
    assert "resumed at step 20" in resumed.get_legend_handles_labels()[1]
    zeros = [{"eval_f1_macro": 0.0, "eval_f1_micro": 0.0, "step": s} for s in (5, 10)]  # flat at 0: not -0.04..0.05
    assert training_curves_figure(zeros).axes[1].get_ylim() == (0, 1.02)


def test_alpha_sweep_legend_names_a_set_called_validation_once():
    """merge's default set name is "validation": its line was labelled "validation (validation)"."""
    from hf_transfer.outputs.plots import alpha_sweep_figure

    rows = [{"alpha": a, "validation": {"accuracy": 0.6 + a / 10}, "books": {"accuracy": 0.5}} for a in (0, 0.5, 1)]
    labels = (
        alpha_sweep_figure(rows, ["validation", "books"], "validation", 1.0).axes[0].get_legend_handles_labels()[1]
    )
    assert labels == ["validation", "books", "chosen α = 1"]
    rows = [{"alpha": a, "dev": {"accuracy": 0.6}} for a in (0, 1)]
    assert alpha_sweep_figure(rows, ["dev"], "dev", None).axes[0].get_legend_handles_labels()[1] == [
        "dev (validation)"
    ]


def test_label_f1_picture_of_a_multi_label_report():
    from hf_transfer.outputs.plots import label_f1_figure

    labels = ["toxic", "a label with a very long name that goes on and on", "spam"]
    report = {"f1_micro": 0.7, "f1_macro": 0.6, "f1_toxic": 0.9, "f1_spam": 0.4}
    report["f1_a_label_with_a_very_long_name_that_goes_on_and_on"] = 0.5
    ax = label_f1_figure(report, labels, "validation").axes[0]
    assert [bar.get_width() for bar in ax.patches] == [0.9, 0.5, 0.4]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "toxic"
    assert all(len(t.get_text()) <= 24 for t in ax.get_yticklabels())
    assert ax.get_xlim() == (0, 1) and ax.get_xlabel().startswith("F1")
    assert "F1 per label: validation" in ax.get_title() and "micro-F1 0.700" in ax.get_title()


def test_many_labels_stand_upright_and_missing_glyphs_are_drawn_without_a_warning_each(tmp_path):
    """120 names at 45° overlapped into one band; a CJK or emoji name printed a matplotlib UserWarning per glyph."""
    import warnings

    import numpy as np

    from hf_transfer.outputs.plots import _save, confusion_figure

    fig = confusion_figure(np.ones((60, 60), dtype=int), [f"配送 label {i}" for i in range(60)])
    assert {tick.get_rotation() for tick in fig.axes[0].get_xticklabels()} == {90.0}
    few = confusion_figure(np.ones((8, 8), dtype=int), [f"label {i}" for i in range(8)])
    assert {tick.get_rotation() for tick in few.axes[0].get_xticklabels()} == {45.0}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _save(fig, tmp_path / "matrix.png")
    assert (tmp_path / "matrix.png").stat().st_size > 0 and not [w for w in seen if "Glyph" in str(w.message)]


def test_names_alike_once_shortened_show_what_differs(caplog, tmp_path):
    """Two long names that share their start and end both became "the customer was…product" (then only numbered);
    boxes drawn for missing glyphs were not said at all."""
    import logging

    import numpy as np

    from hf_transfer.core import runtime
    from hf_transfer.outputs import fonts
    from hf_transfer.outputs.plots import _save, confusion_figure, tick_labels

    names = ["the customer was unhappy with the product", "the customer was happy with the product"]
    assert tick_labels(names) == ["…unhappy…", "…happy…"]
    assert tick_labels(["short", "names"]) == ["short", "names"]
    alike = ["a" * 30 + "x" + "b" * 30, "a" * 30 + "y" + "b" * 30]  # no word in common: numbered
    assert [t[:3] for t in tick_labels(alike)] == ["0: ", "1: "]
    ax = confusion_figure(np.eye(2, dtype=int), names).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["…unhappy…", "…happy…"]
    caplog.set_level(logging.WARNING)
    runtime._said.discard("glyphs")  # said once per process: as if it had not been
    if not any("CJK" in family for family in fonts.families()):  # no CJK font installed here: ids, said once
        assert tick_labels(["正面评价", "负面评价"]) == ["id 0", "id 1"]  # three rows of identical boxes before
        assert tick_labels(["good", "中评", "négatif"]) == ["good", "id 1", "négatif"]
        ax = confusion_figure(np.eye(2, dtype=int), ["正面评价", "负面评价"]).axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["id 0", "id 1"]
        for name in ("a.png", "b.png"):
            _save(confusion_figure(np.eye(2, dtype=int), ["正面评价", "负面评价"]), tmp_path / name)
        said = [r.getMessage() for r in caplog.records if "no installed font has" in r.getMessage()]
        assert len(said) == 1, said


def test_a_model_that_predicts_one_class_for_every_row_is_warned_about(caplog):
    """A distilled student that put every row in one class was reported with a 92% retention and no word; its
    accuracy was that class's share. Multi-label models, and sets whose labels hold one class, are not warned."""
    import logging

    import numpy as np

    from hf_transfer.core.metrics import say_one_class

    collapsed = np.array([[2.0, 0.1], [1.5, -1.0], [0.3, 0.2], [4.0, 1.0]])
    with caplog.at_level(logging.WARNING):
        say_one_class(collapsed, np.array([0, 1, 0, 0]), ["neg", "pos"], "single_label_classification")
        say_one_class(collapsed, np.array([0, 0, 0, 0]), ["neg", "pos"], "single_label_classification")
        say_one_class(collapsed[:, ::-1], np.array([0, 1, 0, 0]), ["neg", "pos"], "single_label_classification")
        say_one_class((collapsed, None), np.array([[1, 0]] * 4), ["neg", "pos"], "multi_label_classification")
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith("the model predicts 'neg' for all 4 validation rows: it has learnt no more than that")
    assert "(0.7500, its accuracy)" in said[0]
    assert said[1].startswith("the model predicts 'pos' for all 4") and "(0.2500, its accuracy)" in said[1]
    assert len(said) == 2


def test_metrics_load_with_an_unwritable_hf_home(tmp_path, monkeypatch, caplog):
    """A read-only HF_HOME (a shared cluster's): `evaluate.load` copies the metric into HF_HOME/modules, and raised
    OSError when a training ended, before its weights were saved. The caches of ours fall back to the temporary
    folder, with a warning."""
    import logging

    import evaluate.config
    from huggingface_hub import constants

    from hf_transfer.core.caching import default_cache_dir

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")  # nothing, not even root, can make a folder under a file
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", blocked / "modules")
    monkeypatch.setattr(evaluate.config, "HF_METRICS_CACHE", blocked / "metrics")
    load_metric.cache_clear()
    try:
        scores = load_metric("classification").compute(predictions=[0, 1], references=[0, 0])
    finally:
        load_metric.cache_clear()
    assert scores["accuracy"] == 0.5
    assert blocked not in Path(evaluate.config.HF_MODULES_CACHE).parents
    monkeypatch.setattr(constants, "HF_HOME", str(blocked / "home"))
    with caplog.at_level(logging.WARNING):
        folder = default_cache_dir("teacher_logits_test")
    assert folder.is_dir() and folder.name == "teacher_logits_test" and blocked not in folder.parents
    assert "the teacher_logits_test cache goes to" in caplog.text
    folder.rmdir()


def test_a_multi_label_task_of_one_label_is_scored_as_that_label(tmp_path, tiny_bert_dir):
    """scikit-learn reads a one-column indicator array as a binary target and scored two classes (absent, present):
    `train` stopped at its first evaluation with a traceback, and so did `evaluate` and `predict`; the macro F1 was
    the mean of both."""
    from test_cli import train_argv

    from hf_transfer.cli import main

    scores = classification_metrics(
        np.array([[1], [0], [1], [0]]), np.array([[1], [1], [0], [0]]), ["toxic"], MULTI_LABEL
    )
    assert scores == {"f1_micro": 0.5, "f1_macro": 0.5, "subset_accuracy": 0.5, "f1_toxic": 0.5}
    for name, n in (("train", 24), ("dev", 9)):
        rows = [
            {"text": f"{'you idiot' if i % 3 == 0 else 'nice day'} {i}", "labels": ["toxic"] * (i % 3 == 0)}
            for i in range(n)
        ]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, tmp_path / "train.jsonl", tmp_path / "dev.jsonl", out, "--few_shot", "false")
    assert main([*argv, "--linear_probe_epochs", "1"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["eval_metrics"]["eval_f1_macro"] == record["eval_metrics"]["eval_f1_toxic"]
    # LP-FT's probe is scored by its subset accuracy, multi-label having no accuracy (it recorded None alone).
    assert isinstance(record["linear_probe"]["eval_subset_accuracy"], float)
    argv = ["predict", "--model_name_or_path", str(out), "--input_file", str(tmp_path / "dev.jsonl")]
    assert main([*argv, "--output_file", str(tmp_path / "p.jsonl")]) == 0
