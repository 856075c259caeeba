"""The predictions a training run writes for a `test_file` without labels, as `run_glue.py --do_predict` does for a
GLUE test split: one row per test row, in file order, with the predicted label and its probability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hf_transfer.core.folders import write_text_atomic
from hf_transfer.core.prediction_columns import SCORE, prediction_columns

TEST_PREDICTIONS_FILE = "predict_results.csv"


def write_test_predictions(out: Path, logits, test_rows, prepared) -> Path:
    """`out/predict_results.csv`: index, the test text (and pair), predicted_label and score (multi-label: the list of
    labels above 0.5, as JSON, and the highest label probability). `test_rows`: the prepared test split (rows with
    empty text were dropped from it, so `index` counts the rows kept)."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    added = prediction_columns(np.asarray(logits), np.zeros(len(logits), dtype=bool), prepared.label_names,
                               prepared.problem_type, top_k=1)  # fmt: skip
    frame = pd.DataFrame({"index": np.arange(len(logits)), prepared.text_column: test_rows[prepared.text_column]})
    if prepared.text_pair_column:
        frame[prepared.text_pair_column] = test_rows[prepared.text_pair_column]
    labels = added["predicted_label"]
    frame["predicted_label"] = [json.dumps([str(x) for x in v]) if isinstance(v, list) else v for v in labels]
    frame[SCORE] = added[SCORE]
    path = out / TEST_PREDICTIONS_FILE
    write_text_atomic(path, frame.to_csv(index=False))
    return path
