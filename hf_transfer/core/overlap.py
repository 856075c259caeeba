"""Evaluation rows whose input is also a training row (their scores are measured on text the model trained on), and
test rows whose input is also a validation row (the test set is then not held out from what validation chose); and
each split's rows by content, for the run record."""

from __future__ import annotations

import logging

import datasets
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)


def count_overlap(splits: dict[str, datasets.Dataset], text: str, pair: str | None, summary: dict) -> None:
    """Count, per split, the rows with the input (text, and pair) of a training row, into the split's `summary`
    (`rows_sharing_train_input`: the run record, the card's data section): a file that repeats train rows, or
    duplicates in a train file a validation split is carved from, make the scores read high. Test rows with a
    validation row's input are counted too (`rows_sharing_validation_input`): such a test set is not held out.
    Vectorised in Arrow, so a million rows cost well under a second. `say_overlap` warns, once every check has
    passed."""
    for seen_in, scored in (("train", [s for s in splits if s != "train"]), ("validation", ["test"])):
        if seen_in not in splits or not len(splits[seen_in]):
            continue
        seen = pc.unique(inputs_of(splits[seen_in], text, pair))
        for split in (s for s in scored if s in splits and len(splits[s])):
            shared = pc.sum(pc.is_in(inputs_of(splits[split], text, pair), value_set=seen)).as_py() or 0
            if shared:
                summary[split][f"rows_sharing_{seen_in}_input"] = shared


def record_rows(splits: dict[str, datasets.Dataset], text: str, pair: str | None, summary: dict) -> None:
    """Into each split's summary, when the data is read: its fingerprints (`fingerprint_rows`) and its overlap counts
    (`count_overlap`). A distillation's transfer set counts its own overlap again, and needs no fingerprints."""
    fingerprint_rows(splits, text, pair, summary)
    count_overlap(splits, text, pair, summary)


def refresh_rows(splits: dict[str, datasets.Dataset], text: str, pair: str | None, summary: dict) -> dict:
    """`summary` with the splits' fingerprints and overlap counts computed again, for data changed after it was read
    (a calibration carve-out, labels reordered, carved rows put back, rows added): the record describes the rows
    trained on, in their order."""
    fresh = {
        name: {k: v for k, v in part.items() if not k.startswith("rows_sharing_")} if name in splits else part
        for name, part in summary.items()
    }
    record_rows(splits, text, pair, fresh)
    return fresh


def fingerprint_rows(splits: dict[str, datasets.Dataset], text: str, pair: str | None, summary: dict) -> None:
    """sha256 of each split's inputs, in order (`rows_sha256`), and of its labels (`labels_sha256`), as the run read
    them after cleaning: two runs whose records agree on the paths and the row counts had trained on other rows, or
    the same rows in another order (which changes the weights), with nothing in the record to tell."""
    import hashlib
    import json

    from hf_transfer.core.caching import fingerprint_texts

    for split, ds in splits.items():
        if not isinstance(summary.get(split), dict):
            continue
        summary[split]["rows_sha256"] = fingerprint_texts(ds[text], ds[pair] if pair else None)
        if "labels" in ds.column_names:
            labels = ds.with_format("arrow", columns=["labels"])[:]["labels"].to_pylist()  # as selected, in order
            summary[split]["labels_sha256"] = hashlib.sha256(json.dumps(labels).encode()).hexdigest()


def say_overlap(summary: dict) -> None:
    """The warning for `count_overlap`'s counts, given where a command starts its work: said while the data was read,
    it came before a refusal found later (bad input is one line)."""
    for split, info in summary.items():
        shared = info.get("rows_sharing_train_input") if isinstance(info, dict) else None
        if shared:
            logger.warning(
                f"{shared} of the {info['rows']} {split} rows have the same input as a training row: their scores are "
                "measured on text the model trained on, and read higher than on new text. Drop the repeats from "
                f"one of the files (or deduplicate train when {split} is carved from it)."
            )
        if isinstance(info, dict) and (shared := info.get("rows_sharing_validation_input")):
            logger.warning(
                f"{shared} of the {info['rows']} {split} rows have the same input as a validation row: the test score "
                "is not held out from the validation set that picks the kept checkpoint (and whatever else is chosen "
                "on it). Give a test_file apart from validation_file."
            )


PAIR_SEPARATOR = "\x1f"  # joins a text and its pair into one key: a control character no text holds


def input_key(text: str, pair: str | None) -> str:
    """One row's input as one string, as `inputs_of` gives it for a dataset's rows."""
    return text if pair is None else f"{text}{PAIR_SEPARATOR}{pair}"


def inputs_of(ds: datasets.Dataset, text: str, pair: str | None) -> pa.ChunkedArray:
    """Each row's input as one string: the text, or the text and its pair joined by `PAIR_SEPARATOR`."""
    table = ds.with_format("arrow", columns=[text] + ([pair] if pair else []))[:]
    if not pair:
        return table[text]
    return pc.binary_join_element_wise(table[text], table[pair], PAIR_SEPARATOR)
