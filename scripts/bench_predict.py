"""`hf-transfer predict` against the plainest loop that does the same work: throughput on a labelled file, in
alternation, and whether predict's labels are `evaluate`'s.

Each repeat runs, in turn: `run_predict` (its own timer: everything after the model is loaded: tokenizing, batching,
the forward passes, building and writing the output file), then two raw loops on a freshly loaded model, timed from
the texts to the logits: (a) tokenize once, sort by length, pad each batch with numpy, `model(**batch)` under
`torch.inference_mode()`; (b) sort by length, call the tokenizer on each batch with padding. The faster raw loop of
each repeat is "raw"; the ratio is predict's rows/s over raw's, and the median over repeats is reported.

    flock /tmp/cpu.lock python scripts/bench_predict.py --model runs/sst2-minilm \
        --data ../shared/data/sst2/dev.tsv --output runs/predict/bench_predict.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def load(model_dir: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def raw_numpy_padding(model, tokenizer, texts, batch_size, max_length) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            width = lengths[idx].max()
            batch = {k: np.zeros((len(idx), width), dtype=np.int64) for k in keys}
            for row, i in enumerate(idx):
                for k in keys:
                    batch[k][row, : lengths[i]] = enc[k][i]
            out[idx] = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    return time.perf_counter() - started, out


def raw_tokenize_per_batch(model, tokenizer, texts, batch_size, max_length) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")  # fmt: skip
            out[idx] = model(**batch).logits.numpy()
    return time.perf_counter() - started, out


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from hf_transfer.core.arguments import EvalSet
    from hf_transfer.core.eval_sets import prepare_eval_set
    from hf_transfer.core.inference import predict_logits
    from hf_transfer.evaluation.arguments import EvaluateArguments
    from hf_transfer.evaluation.command import run_evaluate
    from hf_transfer.predict.arguments import PredictArguments
    from hf_transfer.predict.command import run_predict

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="A labelled file, e.g. SST-2 dev.tsv.")
    parser.add_argument("--text_column_name", default="sentence")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    eval_args = EvaluateArguments(model_name_or_path=args.model, validation_file=args.data,
                                  text_column_name=args.text_column_name)  # fmt: skip
    names = load(args.model)[0].config.id2label
    data = prepare_eval_set(EvalSet("validation", args.data), eval_args, [names[i] for i in range(len(names))])
    texts = data.texts
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            out = Path(tmp) / "predictions.csv"
            summary = run_predict(
                PredictArguments(
                    model_name_or_path=args.model,
                    input_file=args.data,
                    output_file=str(out),
                    text_column_name=args.text_column_name,
                    batch_size=args.batch_size,
                    max_seq_length=args.max_seq_length,
                )  # fmt: skip
            )
            raw = {}
            for name, loop in (("numpy_padding", raw_numpy_padding), ("tokenize_per_batch", raw_tokenize_per_batch)):
                model, tokenizer = load(args.model)
                seconds, logits = loop(model, tokenizer, texts, args.batch_size, args.max_seq_length)
                raw[name] = len(texts) / seconds
            best = max(raw.values())
            rows.append({"repeat": repeat, "predict_rows_per_s": summary["rows_per_second"], "raw_rows_per_s": raw,
                         "ratio": summary["rows_per_second"] / best})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        predicted = pd.read_csv(out)["predicted_label"].astype(str).tolist()

    # evaluate's own path: the same prepared set, predict_logits at evaluate's batch size, argmax.
    model, tokenizer = load(args.model)
    logits = predict_logits(model, tokenizer, texts, batch_size=eval_args.per_device_eval_batch_size,
                            max_length=args.max_seq_length, progress=False)  # fmt: skip
    expected = [str(names[i]) for i in logits.argmax(-1)]
    evaluated = run_evaluate(eval_args)
    result = {
        "model": args.model,
        "data": args.data,
        "rows": len(texts),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "repeats": rows,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "predictions_equal_to_evaluate": predicted == expected,
        "rows_differing_from_evaluate": sum(a != b for a, b in zip(predicted, expected, strict=True)),
        "predict_accuracy": summary.get("accuracy"),
        "evaluate_accuracy": evaluated["accuracy"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "repeats"}, indent=2))


if __name__ == "__main__":
    main()
