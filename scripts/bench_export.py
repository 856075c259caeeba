"""An exported ONNX folder (`hf-transfer export`) against the PyTorch model it came from, on a labelled file: max
|Δlogit| of the fp32 graph, accuracy of each, and throughput at batch 1 and batch 64 in alternation (PyTorch fp32,
ONNX fp32, ONNX int8 take turns; `repeats` rounds; the median ratio to PyTorch is reported). Both runtimes run the
same length-sorted batches (`core.inference.predict_logits`) with the same number of intra-op threads.

    flock /tmp/cpu.lock python scripts/bench_export.py --model runs/sst2-minilm --onnx runs/sst2-minilm-onnx \
        --data ../shared/data/sst2/dev.tsv --output runs/predict/bench_export.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_transfer.core.arguments import EvalSet
    from hf_transfer.core.eval_sets import prepare_eval_set
    from hf_transfer.core.inference import predict_logits
    from hf_transfer.core.onnx_model import OnnxClassifier
    from hf_transfer.evaluation.arguments import EvaluateArguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="The PyTorch model folder that was exported.")
    parser.add_argument("--onnx", required=True, help="The folder hf-transfer export wrote.")
    parser.add_argument("--data", required=True)
    parser.add_argument("--text_column_name", default="sentence")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_1_rows", type=int, default=None, help="Rows timed at batch 1 (default: all).")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    onnx = Path(args.onnx)
    runtimes = {"pytorch_fp32": model, "onnx_fp32": OnnxClassifier(onnx / "model.onnx", model.config)}
    if (onnx / "model_quantized.onnx").is_file():
        runtimes["onnx_int8"] = OnnxClassifier(onnx / "model_quantized.onnx", model.config)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    eval_args = EvaluateArguments(model_name_or_path=args.model, validation_file=args.data,
                                  text_column_name=args.text_column_name)  # fmt: skip
    data = prepare_eval_set(EvalSet("validation", args.data), eval_args, names)
    texts, references = data.texts, np.asarray(data.references)

    def run(name, rows, batch):
        return predict_logits(runtimes[name], tokenizer, rows, batch_size=batch, max_length=args.max_seq_length,
                              progress=False)  # fmt: skip

    logits = {name: run(name, texts, 64) for name in runtimes}
    quality = {f"{name}_accuracy": float((lg.argmax(-1) == references).mean()) for name, lg in logits.items()}
    quality["onnx_fp32_max_abs_logit_diff"] = float(np.abs(logits["onnx_fp32"] - logits["pytorch_fp32"]).max())
    if "onnx_int8" in logits:
        quality["onnx_int8_accuracy_diff_points"] = 100 * (
            quality["onnx_int8_accuracy"] - quality["pytorch_fp32_accuracy"]
        )
        quality["onnx_int8_agreement"] = float(
            (logits["onnx_int8"].argmax(-1) == logits["pytorch_fp32"].argmax(-1)).mean()
        )

    speed = {}
    for batch in (1, 64):
        rows = texts[: args.batch_1_rows] if batch == 1 and args.batch_1_rows else texts
        for name in runtimes:
            run(name, rows[: batch * 2], batch)  # warm-up
        per_repeat = []
        for _ in range(args.repeats):
            seen = {}
            for name in runtimes:
                started = time.perf_counter()
                run(name, rows, batch)
                seen[name] = len(rows) / (time.perf_counter() - started)
            per_repeat.append(seen)
            print(batch, json.dumps({k: round(v, 1) for k, v in seen.items()}), flush=True)
        speed[f"batch_{batch}"] = {
            "rows": len(rows),
            "samples_per_s": per_repeat,
            "median_ratio_to_pytorch": {
                name: statistics.median(r[name] / r["pytorch_fp32"] for r in per_repeat)
                for name in runtimes
                if name != "pytorch_fp32"
            },  # fmt: skip
        }
    result = {"model": args.model, "onnx": str(onnx), "rows": len(texts), "torch_threads": torch.get_num_threads(),
              **quality, "speed": speed}  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "speed"}, indent=2))
    print(json.dumps({b: s["median_ratio_to_pytorch"] for b, s in speed.items()}, indent=2))


if __name__ == "__main__":
    main()
