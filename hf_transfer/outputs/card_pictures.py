"""Which pictures a model card shows, and under which names: those its folder holds."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.outputs.card_data import CardData
from hf_transfer.outputs.merge_card import EVAL_JSON as MERGE_EVAL_JSON
from hf_transfer.outputs.plots import CONFUSION_COUNTED_LABELS, confusion_paths


def card_pictures(c: CardData, folder: Path | None) -> dict:
    """The card template's picture fields. With no folder (a card rendered on its own), the curves are assumed."""

    def has(name: str) -> bool:
        return folder is not None and (folder / name).is_file()

    return {
        "has_curves": folder is None or has("training_curves.png"),
        "confusion_plot": _confusion_plot(c, has),
        "confusion_json": _confusion_json(c),
        "has_label_f1_plot": bool(c.multi_label) and has("label_f1.png"),
        **_test_plot(c, has),
    }


def _confusion_plot(c: CardData, has) -> str | None:
    """The picture of the confusion matrix the card tabulates, when the folder holds it: a run's
    `confusion_matrix.png`, or merge's `merge_eval.confusion_matrix.png` (its validation set at the chosen α)."""
    name = confusion_paths(Path(MERGE_EVAL_JSON), None)[1].name if c.merge else "confusion_matrix.png"
    return name if has(name) else None


def _test_plot(c: CardData, has) -> dict:
    """A training run's picture of its labelled test set (`test_confusion_matrix.png`, or multi-label
    `test_label_f1.png`), when it wrote one."""
    name = "test_label_f1.png" if c.multi_label else "test_confusion_matrix.png"
    title = "F1 per label" if c.multi_label else "Confusion matrix"
    return {"test_plot": name if not c.merge and has(name) else None, "test_plot_name": title}


def _confusion_json(c: CardData) -> str | None:
    """Past `CONFUSION_COUNTED_LABELS` labels (a 150-column table of 22,500 cells), the file the card points to
    instead of tabulating the matrix."""
    if len(c.label_names or []) <= CONFUSION_COUNTED_LABELS:
        return None
    return confusion_paths(Path(MERGE_EVAL_JSON), None)[0].name if c.merge else "confusion_matrix.json"
