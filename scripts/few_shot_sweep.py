"""Choose the few-shot recipe without looking at the data it is reported on: variants of scripts/configs/few_shot.yaml
trained on K rows per class drawn from a task's training pool and scored on a fixed selection sample held out of that
same pool (never SST-2 dev, never the clothing benchmark's held-out sample).

    python scripts/few_shot_sweep.py --task sst2 --k 32 --seeds 100 101 --output_dir runs/fewshot-sweep \
        --variant base= --variant epochs32=--few_shot_body_epochs,32

A variant is NAME=FLAG,VALUE,FLAG,VALUE,... (flags of `hf-transfer train`, added to the config's). Each run is
`hf-transfer train --config few_shot.yaml` on the sample, then `hf-transfer evaluate` on the selection file. Prints the
mean metric per variant and writes every run to OUTPUT_DIR/sweep.json (kept between calls: finished runs are reused).
`--lock FILE` holds FILE around each run, and `--yield_to FILE` waits while FILE exists, so that a timed measurement
elsewhere can have the CPU to itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SELECTION_SEED = 4321  # the selection sample's draw; the benchmark's clothing held-out sample uses 1234


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`name=--flag,value,--flag,value` -> (name, ['--flag', 'value', ...]); `name=` is the config as shipped. A
    value in brackets keeps its commas: `--layer_map,[1,3,5]`."""
    name, _, flags = text.partition("=")
    if not name:
        raise SystemExit(f"--variant needs NAME=FLAGS, got {text!r}.")
    flags = [f for f in re.split(r",(?![^\[]*\])", flags) if f]
    if len(flags) % 2 or any(not f.startswith("--") for f in flags[::2]):
        raise SystemExit(f"--variant {name}: flags come as --flag,value pairs, got {flags}.")
    return name, flags


def selection_spans(sentences: list[str], min_words: int) -> set[str]:
    """Every run of `min_words` or more consecutive words of each sentence (whitespace-normalised)."""
    spans = set()
    for sentence in sentences:
        words = sentence.split()
        for i in range(len(words)):
            spans.update(" ".join(words[i:j]) for j in range(i + min_words, len(words) + 1))
    return spans


def selection_data(bench, data_dir: Path, out: Path, task: str, rows: int, min_words: int = 0, drop_spans: int = 0):
    """The training pool minus a fixed selection sample of `rows` (drawn among rows of `min_words`+ words), and that
    sample written as a csv. SST-2's training rows are the phrases of each sentence's parse tree, so a sentence held
    out of it leaves its own phrases in the pool (dev sentences do not: their phrases are in no split); `drop_spans`
    N > 0 also removes from the pool every row that is a run of N or more consecutive words of a selection sentence."""
    if task == "sst2":
        texts, labels = bench.read_tsv(str(data_dir / "sst2" / "train.tsv"))
        texts, labels = [t.strip() for t in texts], [("negative", "positive")[v] for v in labels]
    else:  # the clothing pool the benchmark trains from (its held-out evaluation sample already removed)
        texts, labels, _ = bench.fewshot_task_data(data_dir, out / "benchmark_eval", task, 1500)
    eligible = [i for i, text in enumerate(texts) if len(text.split()) >= min_words]
    held_at, _ = bench.held_out_split(len(eligible), rows, seed=SELECTION_SEED)
    held = [eligible[i] for i in held_at]
    pool = sorted(set(range(len(texts))) - set(held))
    if drop_spans:
        spans = selection_spans([texts[i] for i in held], drop_spans)
        pool = [i for i in pool if " ".join(texts[i].split()) not in spans]
    name = f"{task}_selection{f'_{min_words}words' if min_words else ''}.csv"
    selection = bench.write_labelled_csv(out / name, [texts[i] for i in held],
                                         [labels[i] for i in held])  # fmt: skip
    return [texts[i] for i in pool], [labels[i] for i in pool], selection


@contextmanager
def cpu_turn(bench, lock: str | None, yield_to: str | None):
    """Wait while `yield_to` exists, then hold `lock` (the benchmark's flock helper) for one run."""
    while yield_to and os.path.exists(yield_to):
        time.sleep(5)
    with bench._locked(lock):
        yield


def run(command: list[str], log: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    with open(log, "w") as f:
        proc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({proc.returncode}); see {log}")


def setfit_reference(out: Path, key: str, train_file: Path, selection: Path, model: str, seed: int) -> dict:
    """SetFit with its defaults (the benchmark's own child) on the same rows, scored on the selection sample."""
    folder = out / key.replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"model": model, "train_file": str(train_file), "eval_file": str(selection), "seed": seed,
            "output_dir": str(folder), "result_file": str(folder / "result.json")}  # fmt: skip
    (folder / "spec.json").write_text(json.dumps(spec, indent=2))
    child = [sys.executable, str(REPO / "scripts/benchmark.py"), "--_child", "setfit", "--_spec",
             str(folder / "spec.json")]  # fmt: skip
    run(child, out / f"{key.replace('/', '-')}.log")
    return json.loads((folder / "result.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("sst2", "clothing"), default="sst2")
    parser.add_argument("--k", type=int, required=True, help="training rows per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--variant", action="append", required=True, help="NAME=--flag,value,... (repeatable)")
    parser.add_argument("--selection_rows", type=int, default=1000)
    parser.add_argument(
        "--selection_min_words",
        type=int,
        default=0,
        help="draw the selection sample among rows of this many words or more (SST-2's pool is mostly short phrases; "
        "its dev set, like the few-shot training rows, is whole sentences)",
    )
    parser.add_argument(
        "--drop_selection_spans",
        type=int,
        default=0,
        help="remove from the training pool every row that is a run of this many or more words of a selection "
        "sentence (SST-2's pool holds the phrases of its sentences; 0 keeps them)",
    )
    parser.add_argument("--output_dir", default="runs/fewshot-sweep")
    parser.add_argument("--data_dir", default=os.environ.get("HF_TRANSFER_DATA_DIR", str(REPO.parent / "shared/data")))
    parser.add_argument("--model", default=os.environ.get("HF_TRANSFER_MODEL"))
    parser.add_argument("--lock", help="a file held (flock) around each run")
    parser.add_argument("--yield_to", help="wait while this file exists before each run")
    parser.add_argument("--setfit", action="store_true", help="also score SetFit (its defaults) on the same rows")
    args = parser.parse_args(argv)
    variants = dict(parse_variant(v) for v in args.variant)
    if "setfit" in variants:
        raise SystemExit("--variant setfit: the name is kept for the SetFit reference (--setfit).")
    if not args.model:
        raise SystemExit("--model (or HF_TRANSFER_MODEL) is needed.")
    bench = _benchmark()
    metric = bench.FEWSHOT_METRIC[args.task]
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    texts, labels, selection = selection_data(
        bench,
        Path(args.data_dir),
        out,
        args.task,
        args.selection_rows,
        args.selection_min_words,
        args.drop_selection_spans,
    )
    store_path = out / "sweep.json"
    store = json.loads(store_path.read_text()) if store_path.exists() else {}
    for seed in args.seeds:
        rows = bench.few_shot_sample(texts, labels, args.k, seed)
        train_file = bench.write_labelled_csv(out / f"{args.task}_k{args.k}_seed{seed}.csv",
                                              [texts[i] for i in rows], [labels[i] for i in rows])  # fmt: skip
        if args.setfit:
            key = f"{args.task}/k{args.k}/setfit/seed{seed}"
            if key not in store:
                with cpu_turn(bench, args.lock, args.yield_to):
                    store[key] = {"flags": None, **setfit_reference(out, key, train_file, selection, args.model, seed)}
                store_path.write_text(json.dumps(store, indent=2))
                print(f"{key}: {metric} {store[key][metric]:.4f}, {store[key]['train_seconds']:.0f} s", flush=True)
        for name, flags in variants.items():
            key = f"{args.task}/k{args.k}/{name}/seed{seed}"
            if key in store and store[key].get("flags") == flags:
                continue
            folder = out / key.replace("/", "-")
            config = str(REPO / "scripts/configs/few_shot.yaml")
            train = [sys.executable, "-m", "hf_transfer", "train", "--config", config,
                     "--model_name_or_path", args.model, "--train_file", str(train_file), "--output_dir", str(folder),
                     "--seed", str(seed), "--disable_tqdm", "true", "--report_to", "none",
                     "--overwrite_output_dir", "true", *flags]  # fmt: skip
            report = folder / "selection.json"
            with cpu_turn(bench, args.lock, args.yield_to):
                run(train, out / f"{key.replace('/', '-')}.train.log")
                evaluate = [sys.executable, "-m", "hf_transfer", "evaluate", "--model_name_or_path", str(folder),
                            "--validation_file", str(selection), "--output_file", str(report),
                            "--max_seq_length", str(bench._resolved(folder)["max_seq_length"])]  # fmt: skip
                run(evaluate, out / f"{key.replace('/', '-')}.evaluate.log")
            record = json.loads((folder / "hf_transfer_run.json").read_text())
            store[key] = {"flags": flags, metric: json.loads(report.read_text())[metric],
                          "train_seconds": record["train_metrics"]["train_wall_seconds"]}  # fmt: skip
            store_path.write_text(json.dumps(store, indent=2))
            print(f"{key}: {metric} {store[key][metric]:.4f}, {store[key]['train_seconds']:.0f} s", flush=True)
    print(f"\n{args.task} K={args.k}, {metric} on {args.selection_rows} held-out training rows, seeds {args.seeds}:")
    for name in [*variants, "setfit"] if args.setfit else variants:
        values = [store[f"{args.task}/k{args.k}/{name}/seed{s}"][metric] for s in args.seeds]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"  {name:24s} {statistics.mean(values):.4f} ± {spread:.4f}  ({', '.join(f'{v:.4f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
