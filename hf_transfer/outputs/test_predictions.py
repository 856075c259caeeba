"""The predictions a training run writes for a `test_file` without labels, as `run_glue.py --do_predict` does for a
GLUE test split: one row per row of the file, in file order, with the predicted label and its probability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hf_transfer.core.folders import write_text_atomic
from hf_transfer.core.prediction_columns import PREDICTED_LABEL, SCORE, empty_text_mask, prediction_columns
from hf_transfer.core.tables import read_table

TEST_PREDICTIONS_FILE = "predict_results.csv"


def write_test_predictions(out: Path, logits, prepared, test_file: str | None, csv_quoting: str = "auto") -> Path:
    """`out/predict_results.csv`: the test file's own columns, every row of it, with `index` (its position, unless
    the file has an `index` column of its own, as GLUE's test files do), `predicted_label` and `score` (multi-label:
    the labels above 0.5, as JSON, and the highest label probability). A row with empty text, which the run left
    out, keeps its place with no prediction, so positions and ids stay aligned with the file. Without a test file
    (a Hub dataset's test split): the rows the run read, numbered in order."""
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
    text, pair = prepared.text_column, prepared.text_pair_column
    frame = read_table(test_file, csv_quoting) if test_file else None
    if frame is not None and text in frame.columns:
        empty = empty_text_mask(frame[text])
    if frame is None or text not in frame.columns or int((~empty).sum()) != len(logits):
        rows = prepared.datasets["test"]
        frame = pd.DataFrame({text: rows[text], **({pair: rows[pair]} if pair else {})})
        empty = np.zeros(len(frame), dtype=bool)
    frame = frame.reset_index(drop=True)
    if "index" not in frame.columns:
        frame.insert(0, "index", np.arange(len(frame)))
    added = prediction_columns(logits, empty, prepared.label_names, prepared.problem_type, top_k=1)
    labels = added[PREDICTED_LABEL]
    frame[PREDICTED_LABEL] = [
        json.dumps([str(x) for x in v], ensure_ascii=False) if isinstance(v, list) else v for v in labels
    ]
    frame[SCORE] = added[SCORE]
    path = out / TEST_PREDICTIONS_FILE
    write_text_atomic(path, frame.to_csv(index=False))
    return path
