"""True labels in a file given to `predict`: read and matched to the model's labels before the model loads (one pass
over the text and label columns), then turned into label ids chunk by chunk, so the metrics are those `evaluate`
would compute on the same file: rows with empty text or no label are left out, labels are matched by name or taken
as ids (`core.eval_sets.align_labels`), and values missing from a `label_mapping` are dropped and counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hf_transfer.core.cleaning import normalise_label, normalise_scalar
from hf_transfer.core.eval_sets import align_labels, reads_with_trained_mapping
from hf_transfer.core.metrics import classification_metrics
from hf_transfer.core.prediction_columns import empty_text_mask
from hf_transfer.core.tables import iter_table
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class References:
    """How the label column's values become the model's label ids, and the ids gathered so far (numpy arrays)."""

    column: str
    model_names: list[str]
    multi: bool
    to_model_id: dict[str, int]  # str(normalised value) -> model label id
    predictions: list[np.ndarray] = field(default_factory=list)
    references: list[np.ndarray] = field(default_factory=list)
    missing_label: int = 0
    unmapped_label: int = 0

    def _ids(self, value) -> list[int] | int | None:
        if self.multi:  # a multi-label model takes one label per row too, as `evaluate` does: that label alone
            ids = [self.to_model_id.get(str(v)) for v in (value if isinstance(value, list) else [value])]
            return None if None in ids else ids
        return self.to_model_id.get(str(value))

    def add(self, labels: pd.Series, empty: np.ndarray, predicted: np.ndarray) -> None:
        """Gather one chunk: `predicted` holds the model's ids (multi-label: multi-hot rows) of its non-empty rows."""
        values = [normalise_label(v, self.column) for v in labels[~empty].tolist()]
        keep, refs = [], []
        for i, value in enumerate(values):
            if value is None:
                self.missing_label += 1
                continue
            ids = self._ids(value)
            if ids is None:
                self.unmapped_label += 1
                continue
            keep.append(i)
            refs.append(ids)
        if not keep:
            return
        self.predictions.append(np.asarray(predicted)[keep])
        if self.multi:
            hot = np.zeros((len(refs), len(self.model_names)), dtype=np.int64)
            for row, ids in enumerate(refs):
                hot[row, ids] = 1
            self.references.append(hot)
        else:
            self.references.append(np.asarray(refs, dtype=np.int64))

    def metrics(self) -> dict | None:
        """The full classification report (None when no row had a usable label)."""
        if not self.references:
            return None
        problem_type = MULTI_LABEL if self.multi else "single_label_classification"
        predictions, references = np.concatenate(self.predictions), np.concatenate(self.references)
        report = classification_metrics(predictions, references, self.model_names, problem_type)
        report["samples"] = len(references)
        return report


def scan_references(
    path: str,
    text: str,
    label: str,
    model_names: list[str],
    multi_model: bool,
    *,
    chunk_rows: int,
    csv_quoting: str,
    label_mapping: dict[str, str] | None,
    trained_label_mapping: dict | None = None,
) -> References | None:
    """Read the label column of `path` (rows with text only) and match its values to the model's labels; raises
    DataError, before any weights load, when they cannot be matched; None when every label is -1 (hidden). With no
    `label_mapping`, labels that are not the model's names but are keys of the training run's mapping
    (`trained_label_mapping`: ratings 1 to 5 for good/neutral/bad) are read with it, as `evaluate` reads them."""
    seen: set[str] = set()
    kinds = set()
    for chunk in iter_table(path, chunk_rows, csv_quoting, columns=[text, label]):
        values = [normalise_label(v, label) for v in chunk[label][~empty_text_mask(chunk[text])].tolist()]
        for value in values:
            if value is None:
                continue
            kinds.add(isinstance(value, list))
            seen.update(str(v) for v in (value if isinstance(value, list) else [value]))
    if len(kinds) > 1:
        raise DataError(f"the label column {label!r} of {path!r} mixes lists and single labels; use one kind.")
    if kinds == {True} and not multi_model:
        raise DataError(
            f"the label column {label!r} of {path!r} holds lists of labels but the model is single-label; point "
            "label_column_name at a column with one label per row."
        )
    if seen == {"-1"} and label_mapping is None and "-1" not in model_names:  # GLUE's test files: labels hidden
        logger.warning(f"every label in column {label!r} is -1, the mark of a hidden label (GLUE): no scores.")
        return None
    if label_mapping is None and reads_with_trained_mapping(seen, model_names, trained_label_mapping):
        logger.warning(f"reading the labels of {path!r} with the label_mapping of the model's training run.")
        label_mapping = trained_label_mapping
    if label_mapping is not None:
        keys = {str(normalise_scalar(k)): name for k, name in label_mapping.items()}
        if seen and not set(keys) & seen:  # misspelt keys: the rows with the model's own names alone were scored
            raise DataError(
                f"label_mapping {label_mapping} matches none of the labels in column {label!r} of {path!r} "
                f"({sorted(seen)[:10]}): its keys must be label values found in the file."
            )
        keys = {**{str(normalise_scalar(n)): n for n in model_names}, **keys}  # the model's names read as themselves
        label_mapping = {**{n: n for n in model_names}, **label_mapping}
        names = list(dict.fromkeys(label_mapping.values()))
        to_data = {value: names.index(keys[value]) for value in seen if value in keys}
    else:
        names = sorted(seen)
        to_data = {value: i for i, value in enumerate(names)}
    to_model = align_labels(names, model_names, path) if names else {}
    mapping = {value: to_model[i] for value, i in to_data.items()}
    return References(label, model_names, multi_model, mapping)
