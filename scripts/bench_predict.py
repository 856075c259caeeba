"""`hf-transfer predict` against the plainest loop that does the same work: throughput on a labelled file, in
alternation, and whether predict's labels are `evaluate`'s.

The texts (as `evaluate` reads them, `--tile` times over) are timed by three systems per repeat, each going first in
turn: `run_predict` on a csv of them (its own timer: everything after the model is loaded: reading, tokenizing,
batching, the forward passes, building and writing the output file), and two raw loops on a freshly loaded model,
timed from the text list to the logits: (a) tokenize once, sort by length, pad each batch with numpy,
`model(**batch)` under `torch.inference_mode()`; (b) sort by length, call the tokenizer on each batch with padding.
Reported: predict's median rows/s over the faster raw loop's median (`ratio_of_medians`), and the per-repeat ratios.
Then predict runs once on the labelled file, and its labels are compared with evaluate's.

    flock /tmp/cpu.lock python scripts/bench_predict.py --model runs/sst2-minilm --repeats 7 --tile 4 \
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
    parser.add_argument("--tile", type=int, default=1, help="time the data this many times over (one file)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    eval_args = EvaluateArguments(model_name_or_path=args.model, validation_file=args.data,
                                  text_column_name=args.text_column_name)  # fmt: skip
    names = load(args.model)[0].config.id2label
    data = prepare_eval_set(EvalSet("validation", args.data), eval_args, [names[i] for i in range(len(names))])
    texts = list(data.texts)  # a lazy `datasets` column: tiled and indexed below, as a list
    rows = []

    def predict_file(path: str, out: Path) -> dict:
        return run_predict(PredictArguments(model_name_or_path=args.model, input_file=path, output_file=str(out),
                                            text_column_name=args.text_column_name, batch_size=args.batch_size,
                                            max_seq_length=args.max_seq_length))  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        # The texts as evaluate reads them, `--tile` times over (each timing then lasts long enough to rise above a
        # shared machine's noise), in one csv that predict reads and the raw loops are given as a list.
        timed_texts = texts * args.tile
        timed_file = str(Path(tmp) / "timed_input.csv")
        pd.DataFrame({args.text_column_name: timed_texts}).to_csv(timed_file, index=False)
        systems = ["predict", "numpy_padding", "tokenize_per_batch"]
        for repeat in range(args.repeats):
            speeds = {}
            for name in systems[repeat % 3 :] + systems[: repeat % 3]:  # each system goes first in turn
                if name == "predict":
                    speeds[name] = predict_file(timed_file, Path(tmp) / "timed.csv")["rows_per_second"]
                    continue
                loop = raw_numpy_padding if name == "numpy_padding" else raw_tokenize_per_batch
                model, tokenizer = load(args.model)
                seconds, _ = loop(model, tokenizer, timed_texts, args.batch_size, args.max_seq_length)
                speeds[name] = len(timed_texts) / seconds
            raw = {k: v for k, v in speeds.items() if k != "predict"}
            rows.append({"repeat": repeat, "predict_rows_per_s": speeds["predict"], "raw_rows_per_s": raw,
                         "ratio": speeds["predict"] / max(raw.values())})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        out = Path(tmp) / "predictions.csv"
        summary = predict_file(args.data, out)
        predicted = pd.read_csv(out)["predicted_label"].astype(str).tolist()

    medians = {name: statistics.median(r["raw_rows_per_s"][name] for r in rows) for name in rows[0]["raw_rows_per_s"]}
    predict_median = statistics.median(r["predict_rows_per_s"] for r in rows)

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
        "tile": args.tile,
        "timed_rows": len(texts) * args.tile,
        "predict_median_rows_per_s": predict_median,
        "raw_median_rows_per_s": medians,
        "ratio_of_medians": predict_median / max(medians.values()),
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
