"""`hf-transfer train` with nothing but the basic recipe set, against stock `transformers.Trainer` with the same
settings, over several seeds, side by side in one run (each configuration in a fresh process, alternating).

    python scripts/compare_defaults.py --train_rows 4000 --seeds 1 2 3 --max_seq_length 64 --output_dir runs/defaults

Both read the first `--train_rows` SST-2 training rows and the whole dev set; 1 epoch, batch 32, LR 5e-5. Prints each
run's dev accuracy, the means and spreads, and writes them to OUTPUT_DIR/defaults.json."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_rows", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--output_dir", default="runs/defaults")
    parser.add_argument("--data_dir", default=os.environ.get("HF_TRANSFER_DATA_DIR", str(REPO.parent / "shared/data")))
    parser.add_argument("--model", default=os.environ.get("HF_TRANSFER_MODEL"))
    args = parser.parse_args(argv)
    bench = _benchmark()
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    train_file, eval_file = bench.write_subsets(Path(args.data_dir), out / "data", args.train_rows, 10**9)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    results = {"stock": [], "hf_transfer": []}
    for seed in args.seeds:
        for name in ("stock", "hf_transfer"):
            folder = out / f"{name}-seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            if name == "stock":
                spec = {
                    "model": args.model, "train_file": str(train_file), "validation_file": str(eval_file),
                    "max_seq_length": args.max_seq_length, "epochs": 1, "batch_size": 32, "learning_rate": 5e-5,
                    "seed": seed, "output_dir": str(folder), "result_file": str(folder / "result.json"),
                }  # fmt: skip
                (folder / "spec.json").write_text(json.dumps(spec))
                command = [sys.executable, str(REPO / "scripts/benchmark.py"), "--_child", "stock", "--_spec",
                           str(folder / "spec.json")]  # fmt: skip
            else:
                command = [sys.executable, "-m", "hf_transfer", "train", "--model_name_or_path", args.model,
                           "--train_file", str(train_file), "--validation_file", str(eval_file),
                           "--text_column_name", "sentence", "--class_names", "[negative, positive]",
                           "--max_seq_length", str(args.max_seq_length), "--num_train_epochs", "1",
                           "--per_device_train_batch_size", "32", "--learning_rate", "5e-5", "--seed", str(seed),
                           "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
                           "--disable_tqdm", "true", "--output_dir", str(folder / "run"),
                           "--overwrite_output_dir", "true",
                           # the ordinary fine-tune, as stock Trainer runs it, also below 100 rows per class (where
                           # `few_shot: auto` would take the few-shot route); at the documented 4,000 rows a no-op
                           "--few_shot", "false"]  # fmt: skip
            with open(folder / "log.txt", "w") as log:
                subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
            if name == "stock":
                accuracy = json.loads((folder / "result.json").read_text())["eval_accuracy"]
            else:
                accuracy = json.loads((folder / "run" / "eval_results.json").read_text())["eval_accuracy"]
            results[name].append({"seed": seed, "eval_accuracy": accuracy})
            print(f"{name:12s} seed {seed}: dev accuracy {accuracy:.4f}", flush=True)
    summary = {}
    for name, runs in results.items():
        values = [r["eval_accuracy"] for r in runs]
        summary[name] = {"mean": statistics.mean(values), "stdev": statistics.stdev(values) if len(values) > 1 else 0,
                         "min": min(values), "max": max(values), "runs": runs}  # fmt: skip
        print(f"{name:12s} mean {summary[name]['mean']:.4f}  sd {summary[name]['stdev']:.4f}  "
              f"range {summary[name]['min']:.4f}-{summary[name]['max']:.4f}")  # fmt: skip
    (out / "defaults.json").write_text(json.dumps({"settings": vars(args), "results": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
