"""Label ids in another order: the same data for a model whose head already has an order (a student copied from its
teacher, a model trained on before)."""

from __future__ import annotations

import dataclasses

import datasets

from hf_transfer.core.data import PreparedData
from hf_transfer.core.overlap import refresh_rows
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.errors import DataError


def reorder_labels(prepared: PreparedData, names: list[str]) -> PreparedData:
    """The same data with label ids in the order of `names` (a permutation of `prepared.label_names`), for a model
    whose head already has an order, such as a student copied from its teacher."""
    if list(names) == prepared.label_names:
        return prepared
    if sorted(names) != sorted(prepared.label_names):
        raise DataError(f"cannot reorder labels {prepared.label_names} as {list(names)}: the names differ.")
    multi = prepared.problem_type == MULTI_LABEL
    new_id = [names.index(name) for name in prepared.label_names]  # old id -> new id
    old_id = [prepared.label_names.index(name) for name in names]  # new id -> old id

    def remap(batch):
        if multi:
            return {"labels": [[row[j] for j in old_id] for row in batch["labels"]]}
        return {"labels": [new_id[label] for label in batch["labels"]]}

    def reordered(ds):
        if ds is None or "labels" not in ds.column_names:
            return ds
        features = ds.features.copy()
        if not multi:
            features["labels"] = datasets.ClassLabel(names=list(names))
        return ds.map(remap, batched=True, features=features, desc="Reordering labels")

    splits = {split: reordered(ds) for split, ds in prepared.datasets.items()}
    summary = dict(prepared.summary)
    for split in splits:
        if isinstance(summary.get(split), dict) and "label_counts" in summary[split]:
            counts = summary[split]["label_counts"]
            summary[split] = {**summary[split], "label_counts": {n: counts[n] for n in names if n in counts}}
    summary = refresh_rows(splits, prepared.text_column, prepared.text_pair_column, summary)  # the new label ids
    uncut = reordered(prepared.uncut_carved_validation)
    return dataclasses.replace(prepared, datasets=datasets.DatasetDict(splits), label_names=list(names),
                               summary=summary, uncut_carved_validation=uncut)  # fmt: skip
