"""Classification metrics, the `compute_metrics` hook for `Trainer`, and the plots and tables that report them.

The metrics themselves are `evaluate` modules shipped in `hf_transfer/metrics/`, so they load without the Hub.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from hf_transfer.config import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import EvalPrediction

METRICS_DIR = Path(__file__).parent / "metrics"
ProblemType = Literal["single_label_classification", "multi_label_classification"]
PROBLEM_TYPES = get_args(ProblemType)
# Per-class keys are `<metric>_<label name>`: a label may not take the name of an average.
_RESERVED_NAMES = {"macro", "micro", "weighted", "per_label"}


@functools.cache
def load_metric(name: str):
    """Load one of the metric modules shipped in `hf_transfer/metrics/` (offline), once per process."""
    import evaluate

    available = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
    if name not in available:
        raise ConfigError(f"Unknown metric {name!r}: hf_transfer ships {available}.")
    # In memory: no cache files or locks under ~/.cache, which several processes (DDP) would share.
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def _label_keys(label_names: Sequence[str]) -> list[str]:
    """Readable key suffixes for the labels: the name with spaces as `_`, made unique with the id where needed."""
    keys = [re.sub(r"\s+", "_", str(name).strip()) for name in label_names]
    return [
        f"{key}_{i}" if not key or key in _RESERVED_NAMES or keys.count(key) > 1 else key for i, key in enumerate(keys)
    ]


def _check_problem_type(problem_type: str) -> None:
    if problem_type not in PROBLEM_TYPES:
        raise ConfigError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}.")


def classification_metrics(
    predictions,
    references,
    label_names: Sequence[str],
    problem_type: ProblemType = "single_label_classification",
) -> dict[str, Any]:
    """Scores of predictions against references, as plain Python numbers that JSON can hold.

    Single-label: `predictions` and `references` are class ids. Returns `accuracy`, `precision_macro`,
    `recall_macro`, `f1_macro`, per label `precision_<name>`, `recall_<name>`, `f1_<name>`, and `confusion_matrix`
    (rows are true labels, columns predicted ones, in label id order).
    Multi-label: both are multi-hot 0/1 arrays of shape (samples, labels). Returns `f1_micro`, `f1_macro`,
    `subset_accuracy` and per label `f1_<name>`.
    """
    _check_problem_type(problem_type)
    predictions, references = np.asarray(predictions), np.asarray(references)
    if len(predictions) != len(references) or len(predictions) == 0:
        raise DataError(
            f"Need as many predictions as references, and at least one: got {len(predictions)} "
            f"predictions and {len(references)} references."
        )
    keys = _label_keys(label_names)
    if problem_type == "multi_label_classification":
        if predictions.shape != (len(references), len(keys)) or predictions.shape != references.shape:
            raise DataError(
                f"Multi-label predictions and references must both have shape (samples, labels) = "
                f"({len(references)}, {len(keys)}); got {predictions.shape} and {references.shape}."
            )
        scores = load_metric("multilabel").compute(
            predictions=predictions.astype(int), references=references.astype(int)
        )
        result = {name: scores[name] for name in ("f1_micro", "f1_macro", "subset_accuracy")}
        result.update({f"f1_{key}": float(v) for key, v in zip(keys, scores["f1_per_label"], strict=True)})
        return result

    label_ids = list(range(len(keys)))
    for name, ids in (("predictions", predictions), ("references", references)):
        outside = sorted(set(ids.tolist()) - set(label_ids))
        if ids.ndim != 1 or outside:
            raise DataError(
                f"Single-label {name} must be class ids from 0 to {len(keys) - 1} ({len(keys)} label names); "
                f"got shape {ids.shape} with ids {outside[:5]} outside that range."
            )
    predictions, references = predictions.astype(np.int64), references.astype(np.int64)
    data = {"predictions": predictions, "references": references}
    result = {"accuracy": load_metric("accuracy").compute(**data)["accuracy"]}
    per_class = {
        name: load_metric(name).compute(**data, labels=label_ids, average=None)[name]
        for name in ("precision", "recall", "f1")
    }
    # With every label id given, the macro average is the plain mean of the per-class scores (as in sklearn).
    result.update({f"{name}_macro": float(np.mean(scores)) for name, scores in per_class.items()})
    for name, scores in per_class.items():
        result.update({f"{name}_{key}": float(v) for key, v in zip(keys, scores, strict=True)})
    matrix = np.zeros((len(keys), len(keys)), dtype=int)
    np.add.at(matrix, (references, predictions), 1)
    result["confusion_matrix"] = matrix.tolist()
    return result


def make_compute_metrics(
    label_names: Sequence[str], problem_type: ProblemType = "single_label_classification"
) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for `Trainer`: logits to labels (argmax, or sigmoid > 0.5), then the scalar scores."""
    _check_problem_type(problem_type)

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits, references = eval_prediction.predictions, eval_prediction.label_ids
        # Models that return hidden states or attentions too give a tuple, with the logits first.
        logits = logits[0] if isinstance(logits, tuple) else logits
        references = references[0] if isinstance(references, tuple) else references
        if problem_type == "multi_label_classification":
            # sigmoid(x) > 0.5 exactly when x > 0, without overflow for large logits.
            predictions, references = np.asarray(logits) > 0, np.rint(references)
        else:
            predictions = np.asarray(logits).argmax(-1)
        metrics = classification_metrics(predictions, references, label_names, problem_type)
        return {key: value for key, value in metrics.items() if isinstance(value, (int, float))}

    return compute_metrics


def save_confusion_matrix(
    matrix, label_names: Sequence[str], json_path: str | Path, png_path: str | Path, title: str | None = None
) -> None:
    """Write the confusion matrix as JSON `{"labels", "matrix"}` and as a PNG heatmap of counts, coloured by row."""
    matrix = np.asarray(matrix, dtype=int)
    labels = [str(name) for name in label_names]
    if matrix.shape != (len(labels), len(labels)):
        raise DataError(f"The confusion matrix has shape {matrix.shape}, but there are {len(labels)} label names.")
    json_path, png_path = Path(json_path), Path(png_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"labels": labels, "matrix": matrix.tolist()}, indent=2) + "\n")

    # Colour by recall (each row sums to 1) so that small classes stay visible next to large ones.
    totals = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = 2.5 + 0.6 * len(labels)
    fig = _figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true label")
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if normalised[row, col] > 0.5 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=9)
    rotate = len(labels) > 6 or max((len(name) for name in labels), default=0) > 8
    ticks = range(len(labels))
    ax.set_xticks(
        ticks, labels, rotation=45 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor"
    )
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="Predicted label", ylabel="True label", title=title or "Confusion matrix")
    _save(fig, png_path)


def plot_training_curves(log_history: list[dict], png_path: str | Path, title: str | None = None) -> None:
    """Plot `Trainer.state.log_history`: training and eval loss, and eval accuracy / F1 against the step."""
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evals = [entry for entry in log_history if any(key.startswith("eval_") for key in entry)]
    fig = _figure(figsize=(11, 4.5))
    loss_ax, metric_ax = fig.subplots(1, 2)
    # Markers keep a curve of a single point visible.
    if train:
        loss_ax.plot(*np.transpose(train), marker="o" if len(train) == 1 else None, markersize=4, label="train loss")
    eval_loss = [(entry.get("step", 0), entry["eval_loss"]) for entry in evals if "eval_loss" in entry]
    if eval_loss:
        loss_ax.plot(*np.transpose(eval_loss), marker="o", markersize=4, label="eval loss")
    loss_ax.set(xlabel="step", ylabel="loss", title="Loss")
    _legend_or_note(loss_ax, "nothing logged")

    for name in ("accuracy", "f1_macro", "f1_micro", "subset_accuracy"):
        points = [(entry.get("step", 0), entry[f"eval_{name}"]) for entry in evals if f"eval_{name}" in entry]
        if points:
            metric_ax.plot(*np.transpose(points), marker="o", markersize=4, label=name)
    # Trainer takes the same number of steps each epoch, so one ratio turns steps into epochs for a top axis.
    last = next((e for e in reversed(log_history) if e.get("step", 0) > 0 and e.get("epoch", 0) > 0), None)
    if last is not None and evals:
        ratio = last["epoch"] / last["step"]
        metric_ax.secondary_xaxis("top", functions=(lambda s: s * ratio, lambda e: e / ratio)).set_xlabel("epoch")
    metric_ax.set(xlabel="step", ylabel="score", title="Evaluation")
    _legend_or_note(metric_ax, "no evaluation metrics logged")
    if title:
        fig.suptitle(title)
    _save(fig, png_path)


def plot_alpha_sweep(
    rows: list[dict],
    set_names: Sequence[str],
    validation_name: str,
    chosen_alpha: float | None,
    png_path: str | Path,
    metric: str = "accuracy",
) -> None:
    """Plot a weight-interpolation sweep: `metric` against α, one line per evaluation set (the validation set drawn
    thicker), the mean of the other sets dashed, and the chosen α marked.

    `rows` are `{"alpha": a, set_name: {metric: value}, ...}`, one per α."""
    alphas = [row["alpha"] for row in rows]
    fig = _figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    for name in set_names:
        values = [row[name][metric] for row in rows]
        main = name == validation_name
        label = f"{name} (validation)" if main else name
        ax.plot(alphas, values, marker="o", markersize=4, linewidth=2.5 if main else 1.2, label=label)
    others = [name for name in set_names if name != validation_name]
    if len(others) > 1:
        mean = [sum(row[n][metric] for n in others) / len(others) for row in rows]
        ax.plot(alphas, mean, linestyle="--", color="gray", label="mean of the other sets")
    if chosen_alpha is not None:
        ax.axvline(chosen_alpha, color="black", linestyle=":", linewidth=1, label=f"chosen α = {chosen_alpha:g}")
    ax.set(xlabel="α   (0 = pretrained body, 1 = fine-tuned)", ylabel=metric, title="Weight interpolation sweep")
    ax.set_xlim(min(alphas) - 0.02, max(alphas) + 0.02)
    ax.grid(alpha=0.3)
    _legend_or_note(ax, "no sets")
    _save(fig, png_path)


def metrics_markdown_table(results: dict[str, dict], keys: Sequence[str] = ("accuracy", "f1_macro")) -> str:
    """A Markdown table with one row per named evaluation set and one column per metric key.

    A key is also looked up with the `eval_` and `test_` prefixes that `Trainer.evaluate` and `predict` add.
    """
    lines = ["| set | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for set_name, metrics in results.items():
        cells = []
        for key in keys:
            value = next((metrics[k] for k in (key, f"eval_{key}", f"test_{key}") if k in metrics), None)
            cells.append(f"{value:.4f}" if isinstance(value, (int, float)) else "n/a")
        set_name = str(set_name).replace("|", "\\|")
        lines.append(f"| {set_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure(figsize: tuple[float, float]):
    # A bare Figure draws with Agg and never touches pyplot, so it neither needs a display nor switches (and closes
    # the figures of) the backend a notebook or another library has chosen.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _legend_or_note(ax, note: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    else:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, color="gray")


def _save(fig, png_path: Path | str) -> None:
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120, bbox_inches="tight")
