"""The pictures a run leaves: the confusion matrix, the training curves and the α sweep of a weight interpolation.
They draw on a bare matplotlib `Figure` (Agg), never through pyplot."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hf_transfer.core.folders import atomic_path, json_text, write_text_atomic
from hf_transfer.core.markdown import TABLE_LABELS
from hf_transfer.core.metrics import label_keys
from hf_transfer.core.tasks import METRIC_NAMES
from hf_transfer.errors import DataError
from hf_transfer.outputs.fonts import by_id_where_undrawable, families, say_undrawable

logger = logging.getLogger(__name__)


# A run folder's picture of each scored set: the validation set's, and a labelled test set's with a `test_` prefix.
RUN_REPORT_FILES = tuple(
    f"{prefix}{name}"
    for prefix in ("", "test_")
    for name in ("confusion_matrix.json", "confusion_matrix.png", "label_f1.png")
)
RUN_PICTURES = ("training_curves.png", *(name for name in RUN_REPORT_FILES if name.endswith(".png")))


def save_report_pictures(
    report: dict, label_names: Sequence[str], folder: Path, prefix: str, title: str, multi_label: bool
) -> None:
    """One scored set's picture in a run folder: its confusion matrix (JSON and PNG), or, multi-label, F1 per label."""
    if multi_label:
        save_label_f1(report, label_names, folder / f"{prefix}label_f1.png", title=title)
    else:
        paths = folder / f"{prefix}confusion_matrix.json", folder / f"{prefix}confusion_matrix.png"
        save_confusion_matrix(report["confusion_matrix"], label_names, *paths, title=title)


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
    write_text_atomic(json_path, json_text({"labels": labels, "matrix": matrix.tolist()}, indent=2) + "\n")

    _save(confusion_figure(matrix, labels, title), png_path)


# Tick labels longer than this are shortened in the picture (the JSON beside it keeps the names whole): 20 labels of
# 50 characters squeezed the matrix into a corner of a picture made of names.
TICK_LABEL_CHARS = 24


def tick_label(name: str, limit: int = TICK_LABEL_CHARS) -> str:
    """`name`, or its start and end around an ellipsis when it is longer than `limit` (the end often tells apart
    names that share a start)."""
    if len(name) <= limit:
        return name
    tail = (limit - 1) // 3
    return name[: limit - 1 - tail] + "…" + name[-tail:]


def tick_labels(names: Sequence[str]) -> list[str]:
    """The names as ticks: each shortened alone, or, where that makes two alike, what differs between them (the
    words all share at their start and end left out: "the customer was happy with the product" and "... unhappy ..."
    both became "the customer was…product"), numbered only if still alike."""
    shown = [tick_label(name) for name in names]
    if len(set(shown)) == len(shown):
        return by_id_where_undrawable(shown)
    head = len(os.path.commonprefix(names).rsplit(" ", 1)[0]) if " " in os.path.commonprefix(names) else 0
    ends = os.path.commonprefix([name[::-1] for name in names])[::-1]
    tail = len(ends.split(" ", 1)[1]) if " " in ends else 0
    middles = [name[head : len(name) - tail].strip() for name in names]
    if head + tail and all(middles):
        shown = [("…" if head else "") + tick_label(m) + ("…" if tail else "") for m in middles]
    if len(set(shown)) < len(shown):  # still alike: number them
        shown = [f"{i}: {name}" for i, name in enumerate(shown)]
    return by_id_where_undrawable(shown)


# 150 labels drew a 10,000-pixel square of 22,500 numbers in two minutes (4.8 MB): past this many labels the cells
# carry colour alone (the counts are in the JSON beside it) and the picture stops growing.
CONFUSION_COUNTED_LABELS = TABLE_LABELS
CONFUSION_MAX_INCHES = 20.5


def confusion_figure(matrix, labels: Sequence[str], title: str | None = None):
    """The confusion-matrix heatmap: counts in the cells, coloured by the share of each true label's rows."""
    matrix = np.asarray(matrix, dtype=int)
    # Colour by recall (each row sums to 1) so that small classes stay visible next to large ones.
    totals = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    n = len(labels)
    size = min(max(4.5, 2.5 + 0.6 * n), CONFUSION_MAX_INCHES)  # room for the two-line title beside the colour bar
    fig = _figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label's rows")
    counted = n <= CONFUSION_COUNTED_LABELS
    for (row, col), count in np.ndenumerate(matrix) if counted else ():
        colour = "white" if normalised[row, col] > 0.5 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=9)
    shown = tick_labels(labels)
    rotate = len(labels) > 6 or max((len(name) for name in shown), default=0) > 8
    ticks = range(len(labels))
    ha = "right" if rotate else "center"
    font = min(10.0, max(3.0, 0.7 * 72 * (size - 2.5) / max(n, 1)))  # a tick's room, in points, once capped
    angle = (90 if n > 40 else 45) if rotate else 0  # past 40 labels, names at 45° overlapped into one band
    ax.set_xticks(ticks, shown, rotation=angle, ha=ha, rotation_mode="anchor", fontsize=font, fontfamily=families())
    ax.set_yticks(ticks, shown, fontsize=font, fontfamily=families())
    name = f"Confusion matrix: {title}" if title else "Confusion matrix"
    ax.set(xlabel="Predicted label", ylabel="True label")
    cells = "cells: counts; colour" if counted else f"{n} labels, counts in the JSON; colour"
    ax.set_title(f"{name} ({int(matrix.sum())} rows)\n{cells}: share of the true label", fontsize=10)
    return fig


def save_label_f1(report: dict, label_names: Sequence[str], png_path: str | Path, title: str | None = None) -> None:
    """A multi-label report's F1 per label as a bar chart (such a run has no confusion matrix to look at)."""
    _save(label_f1_figure(report, label_names, title), png_path)


def label_f1_figure(report: dict, label_names: Sequence[str], title: str | None = None):
    """One horizontal bar per label, in label order, its F1 written beside it; micro and macro F1 in the title."""
    labels = [str(name) for name in label_names]
    values = [report[f"f1_{key}"] for key in label_keys(labels)]
    fig = _figure(figsize=(7.5, 1.5 + 0.35 * len(labels)))
    ax = fig.subplots()
    rows = range(len(labels))
    ax.barh(rows, values, color="tab:blue")
    for row, value in zip(rows, values, strict=True):
        inside = value > 0.85  # no room to its right: written on the bar, in white
        x, ha, colour = (value - 0.01, "right", "white") if inside else (value + 0.01, "left", "black")
        ax.text(x, row, f"{value:.3f}", va="center", ha=ha, color=colour, fontsize=9)
    ax.set_yticks(rows, tick_labels(labels), fontfamily=families())
    ax.invert_yaxis()  # the first label on top, as in the tables
    ax.set_xlim(0, 1)
    ax.set(xlabel="F1 (a label is predicted present when its sigmoid > 0.5)", ylabel="label")
    head = f"F1 per label: {title}" if title else "F1 per label"
    ax.set_title(f"{head}\nmicro-F1 {report['f1_micro']:.3f}, macro-F1 {report['f1_macro']:.3f}", fontsize=10)
    return fig


def plot_training_curves(
    log_history: list[dict],
    png_path: str | Path,
    title: str | None = None,
    final_metrics: dict | None = None,
    loss_name: str = "train loss",
    saved: dict | None = None,
) -> None:
    """Plot `Trainer.state.log_history`: training and eval loss, and eval accuracy / F1 against the step."""
    _save(training_curves_figure(log_history, title, final_metrics, loss_name, saved), png_path)


EVAL_CURVES = ("accuracy", "f1_macro", "f1_micro", "subset_accuracy")
# One marker and line style per curve: F1 equal to accuracy (or every multi-label score at 0) hid all but one line.
CURVE_STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"))


def _lone(points: list) -> bool:
    """Whether a curve has at most one finite point, which a line alone would not show."""
    return int(np.isfinite(np.asarray(points, dtype=float)[:, 1]).sum()) <= 1


def training_curves_figure(
    log_history: list[dict],
    title: str | None = None,
    final_metrics: dict | None = None,
    loss_name: str = "train loss",
    saved: dict | None = None,
):
    """The loss and evaluation panels. A run that logged no per-step loss (fewer steps than `logging_steps`) shows its
    mean training loss; one that evaluated only after training (the few-shot route, `eval_strategy: no`) shows
    `final_metrics` (the `eval_*` of that evaluation) at its last step, so the panel does not claim nothing was
    measured. `loss_name` names the logged loss (the few-shot route logs its body tuning's pair loss; distillation
    its α-weighted sum, beside which its hard-label CE term is drawn, the same loss as the eval loss).

    `saved`: how the saved model differs from the last evaluation drawn: `{"step": the kept checkpoint's step (when
    `load_best_model_at_end` kept an earlier one), "note": e.g. "after calibration", "resumed": the step a resumed
    run went on from, "diverged": the step a diverged run's gradient norm first went NaN or inf}`. The steps are
    marked, and final scores that differ from the last logged ones are drawn at
    the kept step as stars (a calibrated run's curves ended at macro-F1 0.34 while the run reported 0.68)."""
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry and "step" in entry]
    evals = [entry for entry in log_history if any(key.startswith("eval_") for key in entry)]
    last_step = max((entry.get("step", 0) for entry in log_history), default=0)
    fig = _figure(figsize=(11, 4.5))
    loss_ax, metric_ax = fig.subplots(1, 2)
    # Markers keep a curve of a single point visible (a diverged run's NaN losses leave gaps: points are counted).
    if train:
        loss_ax.plot(*np.transpose(train), marker="o" if _lone(train) else None, markersize=4, label=loss_name)
    else:
        mean = next((entry["train_loss"] for entry in log_history if "train_loss" in entry), None)
        if mean is not None:
            loss_ax.plot([last_step], [mean], marker="s", linestyle="", label=f"{loss_name} (mean over the run)")
    hard = [(entry["step"], entry["loss_ce"]) for entry in log_history if "loss_ce" in entry and "step" in entry]
    if hard:  # distillation: the sum's hard-label term, the loss the evaluation measures
        loss_ax.plot(*np.transpose(hard), linestyle="--", marker="o" if _lone(hard) else None, markersize=4,
                     label="train hard-label CE (its (1−α) term)")  # fmt: skip
    final = "" if evals or not final_metrics else " (final evaluation)"
    saved = saved or {}
    kept = [entry for entry in evals if saved.get("step") is not None and entry.get("step") == saved["step"]]
    logged = dict((kept or evals)[-1]) if evals else {}  # the saved model's last logged scores
    if final:
        evals = [{**final_metrics, "step": last_step}]
    eval_loss = [(entry.get("step", 0), entry["eval_loss"]) for entry in evals if "eval_loss" in entry]
    if eval_loss:
        name = "validation loss" + (" (hard-label CE)" if hard else "")
        loss_ax.plot(*np.transpose(eval_loss), marker="o", markersize=4, label=name + final)
    at = saved.get("step") or last_step
    changed = {
        key: value for key, value in (final_metrics or {}).items() if logged and isinstance(value, (int, float))
        and isinstance(logged.get(key), (int, float)) and abs(value - logged[key]) > 1e-6
    }  # fmt: skip
    star = f"saved model{', ' + saved['note'] if saved.get('note') else ''}"
    if "eval_loss" in changed:
        loss_ax.plot([at], [changed["eval_loss"]], marker="*", markersize=11, linestyle="", color="black",
                     label=f"validation loss ({star})")  # fmt: skip
    for ax in (loss_ax, metric_ax) if saved.get("step") and saved["step"] != last_step else ():
        ax.axvline(
            saved["step"], color="gray", linestyle=":", linewidth=1.2, label=f"saved model (step {saved['step']})"
        )
    # Where a resumed run went on, and where a diverged run's gradient first went NaN or inf.
    for key, colour, style, what in (("resumed", "tab:brown", "-.", "resumed at"), ("diverged", "tab:red", "-",
                                     "gradient NaN or inf at")):  # fmt: skip
        for ax in (loss_ax, metric_ax) if saved.get(key) else ():
            ax.axvline(saved[key], color=colour, linestyle=style, linewidth=1, label=f"{what} step {saved[key]}")
    loss_ax.set(xlabel="step", ylabel="loss", title="Loss")
    _legend_or_note(loss_ax, "nothing logged")

    for name, (marker, style) in zip(EVAL_CURVES, CURVE_STYLES, strict=True):
        points = [(entry.get("step", 0), entry[f"eval_{name}"]) for entry in evals if f"eval_{name}" in entry]
        if points:
            metric_ax.plot(*np.transpose(points), marker=marker, linestyle=style, markersize=4, label=name + final)
        if f"eval_{name}" in changed:
            metric_ax.plot([at], [changed[f"eval_{name}"]], marker="*", markersize=11, linestyle="",
                           label=f"{name} ({star})")  # fmt: skip
    # Trainer takes the same number of steps each epoch, so one ratio turns steps into epochs for a top axis.
    last = next((e for e in reversed(log_history) if e.get("step", 0) > 0 and e.get("epoch", 0) > 0), None)
    if last is not None and evals:
        ratio = last["epoch"] / last["step"]
        metric_ax.secondary_xaxis("top", functions=(lambda s: s * ratio, lambda e: e / ratio)).set_xlabel("epoch")
    metric_ax.set(xlabel="step", ylabel="score", title="Evaluation on the validation set")
    low, high = metric_ax.get_ylim()
    if len({entry.get("step", 0) for entry in evals}) == 1 or metric_ax.dataLim.height < 0.02:
        metric_ax.set_ylim(0, 1.02)  # one evaluation, or flat: 0.8465 to 0.85 (or -0.04 to 0.05) would fill the panel
    else:
        metric_ax.set_ylim(max(low, 0), min(high, 1.02))  # scores lie in [0, 1]
    _legend_or_note(metric_ax, "no evaluation metrics logged")
    for ax in (loss_ax, metric_ax):
        _step_axis(ax)
    fig.suptitle(f"Training curves: {title}" if title else "Training curves")
    return fig


def _step_axis(ax) -> None:
    """Whole steps from 0: a run with one logged point (one epoch, one evaluation) had ticks at 4.8, 4.9, 5.1."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.has_data():
        right = max(ax.dataLim.x1, 1)
        ax.set_xlim(0, right * 1.05)


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
    _save(alpha_sweep_figure(rows, set_names, validation_name, chosen_alpha, metric), png_path)


def alpha_sweep_figure(rows: list[dict], set_names, validation_name: str, chosen_alpha, metric: str = "accuracy"):
    """The figure `plot_alpha_sweep` saves."""
    alphas = [row["alpha"] for row in rows]
    fig = _figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    for index, name in enumerate(set_names):
        values = [row[name][metric] for row in rows]
        main = name == validation_name
        label = f"{name} (validation)" if main and name != "validation" else name
        style = ("-", "--", "-.", ":")[index // 10 % 4]  # the 10 colours repeat past 10 sets: the style does not
        ax.plot(alphas, values, marker="o", markersize=4, linestyle=style, linewidth=2.5 if main else 1.2, label=label)
    others = [name for name in set_names if name != validation_name]
    if len(others) > 1:
        mean = [sum(row[n][metric] for n in others) / len(others) for row in rows]
        ax.plot(alphas, mean, linestyle="--", color="gray", label="mean of the other sets")
    if chosen_alpha is not None:
        ax.axvline(chosen_alpha, color="black", linestyle=":", linewidth=1, label=f"chosen α = {chosen_alpha:g}")
    ax.set(
        xlabel="α   (0 = the --pretrained end, 1 = the --finetuned end)",
        ylabel=METRIC_NAMES.get(metric, metric),
        title="Weight interpolation sweep",
    )
    ax.set_xlim(min(alphas) - 0.04, max(alphas) + 0.04)  # a chosen α at an end stays off the frame
    ax.grid(alpha=0.3)
    _legend_or_note(ax, "no sets", outside=len(set_names) > 3)  # inside, 10 sets' legend covered the lines
    return fig


def _figure(figsize: tuple[float, float]):
    # A bare Figure draws with Agg and never touches pyplot, so it neither needs a display nor switches (and closes
    # the figures of) the backend a notebook or another library has chosen.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _legend_or_note(ax, note: str, outside: bool = False) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**({"loc": "upper left", "bbox_to_anchor": (1.01, 1), "fontsize": 9} if outside else {}))
    else:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, color="gray")


def _save(fig, png_path: Path | str) -> None:
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(png_path) as tmp, warnings.catch_warnings(record=True) as caught:  # a cut-off save: the last
        warnings.simplefilter("always")  # picture stays whole
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    for warning in caught:
        # matplotlib warned once per glyph a label's script lacks (CJK, emoji with no such font installed): said once
        if re.search(r"Glyph .* missing from font", str(warning.message)):
            say_undrawable()
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def pictures_summary(*paths: Path | str) -> dict:
    """The command summary's `pictures` line: those of `paths` that were written, comma-separated (none: no line)."""
    written = [str(path) for path in paths if Path(path).is_file()]
    return {"pictures": ", ".join(written)} if written else {}


def confusion_paths(base: Path, name: str | None) -> tuple[Path, Path]:
    """`metrics.json` -> `metrics.confusion_matrix.{json,png}` (the main set) or `metrics.NAME.confusion_matrix...`."""
    middle = f".{name}" if name else ""
    return base.with_suffix(f"{middle}.confusion_matrix.json"), base.with_suffix(f"{middle}.confusion_matrix.png")


def label_f1_path(base: Path, name: str, main_set: str) -> Path:
    """`metrics.json` -> `metrics.label_f1.png` (the main set) or `metrics.NAME.label_f1.png` (multi-label)."""
    middle = "" if name == main_set else f".{name}"
    return base.with_suffix(f"{middle}.label_f1.png")


def write_confusion_matrices(
    reports: dict[str, dict], label_names: list[str], base: Path, main_set: str, titles: dict[str, str]
) -> None:
    """A confusion matrix (JSON and PNG) per set beside `base`; the main set keeps the plain name."""
    from hf_transfer.outputs.plots import save_confusion_matrix

    for name, report in reports.items():
        json_path, png_path = confusion_paths(base, None if name == main_set else name)
        save_confusion_matrix(report["confusion_matrix"], label_names, json_path, png_path, title=titles.get(name))
