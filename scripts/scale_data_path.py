"""How the data path grows with the data: peak memory and time of `train`, `distill`, `evaluate` and `predict` on
synthetic csv files of increasing size (issue 23, item 4).

Each command runs in a fresh process on the same file; this script samples its memory from /proc every 0.1 s:
- peak RSS (VmHWM: everything resident, including the memory-mapped Arrow files the kernel may evict);
- peak anonymous memory (RssAnon: what the process itself allocated, the figure that must not grow with the rows).
It also reads the phase timings `train` and `distill` put in their run record (`data.seconds`: reading and cleaning,
tokenizing; the teacher cache's build time).

The default model is a tiny BERT (2 blocks, hidden size 64) with the real MiniLM tokenizer, so the data path, not the
model, dominates; `--model` takes any classifier folder instead. The rows come from scripts/synthetic_reviews.py
(templates, no real data), written under --output_dir and never committed.

    python scripts/scale_data_path.py --rows 100000 1000000 --output_dir runs/scale
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("train", "distill", "evaluate", "predict")
DEV_ROWS = 2000


def _synthetic():
    spec = importlib.util.spec_from_file_location("synthetic_reviews", REPO / "scripts" / "synthetic_reviews.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_rows(path: Path, rows: int, seed: int) -> Path:
    """A labelled csv of `rows` synthetic reviews (id, text, label), written once."""
    import csv

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label"])
        for i, (text, label) in enumerate(_synthetic().sentences(rows, seed)):
            writer.writerow([i, text, label])
    partial.rename(path)
    return path


def tiny_model(folder: Path, tokenizer_from: str) -> Path:
    """A 2-block BERT classifier with hidden size 64 and `tokenizer_from`'s tokenizer (built once)."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        id2label={0: "0", 1: "1"},
        label2id={"0": 0, "1": 1},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Sampler(threading.Thread):
    """Peak VmHWM and RssAnon of one process, read from /proc every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss_kib = self.peak_anon_kib = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            for line in status.splitlines():
                key, _, value = line.partition(":")
                if key == "VmHWM":
                    self.peak_rss_kib = max(self.peak_rss_kib, int(value.split()[0]))
                elif key == "RssAnon":
                    self.peak_anon_kib = max(self.peak_anon_kib, int(value.split()[0]))
            time.sleep(self.interval)


def command_line(name: str, data: Path, dev: Path, model: Path, out: Path, max_steps: int) -> list[str]:
    base = [sys.executable, "-m", "hf_transfer", name]
    common = ["--max_seq_length", "64", "--disable_tqdm", "true"]
    training = ["--validation_file", str(dev), "--max_steps", str(max_steps), "--eval_strategy", "no"]
    training += ["--save_strategy", "no", "--per_device_train_batch_size", "32", "--report_to", "none"]
    training += ["--overwrite_output_dir", "true"]  # the script's own folders, measured anew on a rerun
    if name == "train":
        return [*base, "--model_name_or_path", str(model), "--train_file", str(data), "--output_dir", str(out),
                *training, *common]  # fmt: skip
    if name == "distill":
        return [*base, "--teacher_model_name_or_path", str(model),
                "--student_layers", "[0]", "--cache_teacher_logits", "true", "--teacher_cache_dir", str(out / "cache"),
                "--train_file", str(data), "--output_dir", str(out / "student"), *training, *common]  # fmt: skip
    if name == "evaluate":
        return [*base, "--model_name_or_path", str(model), "--validation_file", str(data),
                "--output_file", str(out / "evaluate.json"), "--max_seq_length", "64"]  # fmt: skip
    return [*base, "--model_name_or_path", str(model), "--input_file", str(data),
            "--output_file", str(out / "predictions.csv"), "--max_seq_length", "64"]  # fmt: skip


def _record_seconds(out: Path, name: str) -> dict:
    """Phase timings from a train/distill run record: reading and cleaning, tokenizing, the teacher cache."""
    folder = out / "student" if name == "distill" else out
    path = folder / "hf_transfer_run.json"
    if not path.exists():
        return {}
    record = json.loads(path.read_text())
    seconds = dict((record.get("data") or {}).get("seconds") or {})
    for i, info in enumerate((record.get("distillation") or {}).get("teacher_logit_cache") or []):
        if isinstance(info, dict) and "build_seconds" in info:
            seconds[f"teacher_cache_{i}"] = info["build_seconds"]
    return seconds


def measure(name: str, rows: int, data: Path, dev: Path, model: Path, root: Path, max_steps: int, lock: str | None):
    out = root / f"{name}-{rows}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    cmd = command_line(name, data, dev, model, out, max_steps)
    if lock:
        cmd = ["flock", lock, *cmd]
    log = open(out / "log.txt", "w")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"TQDM_DISABLE": "1"})
    # With flock, the sampled process is flock's child; follow it once it exists.
    target = proc.pid
    if lock:
        while proc.poll() is None:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            kids = children.read_text().split() if children.exists() else []
            if kids:
                target = int(kids[0])
                started = time.perf_counter()
                break
            time.sleep(0.05)
    sampler = Sampler(target)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    log.close()
    if code != 0:
        raise SystemExit(f"{name} on {rows} rows failed (exit {code}); see {out / 'log.txt'}")
    return {
        "command": name,
        "rows": rows,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(sampler.peak_rss_kib / 1024, 1),
        "peak_anon_mib": round(sampler.peak_anon_kib / 1024, 1),
        "seconds": _record_seconds(out, name),
        "cmd": " ".join(cmd),
    }


def table(results: list[dict]) -> str:
    lines = [
        "| command | rows | wall s | read+clean s | tokenize s | teacher cache s | peak RSS MiB | peak anon MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["seconds"]
        cache = s.get("teacher_cache_0")
        lines.append(
            f"| {r['command']} | {r['rows']:,} | {r['wall_s']} | {s.get('read_and_clean', '—')} | "
            f"{s.get('tokenize', '—')} | {'—' if cache is None else cache} | {r['peak_rss_mib']} | "
            f"{r['peak_anon_mib']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"a subset of {','.join(COMMANDS)}")
    parser.add_argument("--output_dir", type=Path, default=Path("runs/scale"))
    parser.add_argument("--model", help="a classifier folder (default: a tiny BERT with the MiniLM tokenizer)")
    parser.add_argument("--tokenizer", default=os.environ.get("HF_TRANSFER_MODEL"), help="for the tiny model")
    parser.add_argument("--max_steps", type=int, default=20, help="optimizer steps of train and distill")
    parser.add_argument("--lock", help="a lock file each command holds (flock) while it runs")
    args = parser.parse_args()
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    if set(commands) - set(COMMANDS) or not commands:
        raise SystemExit(f"--commands takes a subset of {','.join(COMMANDS)}, got {args.commands!r}.")
    if args.model is None and not args.tokenizer:
        raise SystemExit("give --model, or --tokenizer (or HF_TRANSFER_MODEL) for the tiny model's tokenizer.")
    root = args.output_dir
    model = Path(args.model) if args.model else tiny_model(root / "tiny-bert", args.tokenizer)
    dev = write_rows(root / f"dev-{DEV_ROWS}.csv", DEV_ROWS, seed=1)
    results = []
    for rows in args.rows:
        data = write_rows(root / f"synthetic-{rows}.csv", rows, seed=0)
        for name in commands:
            result = measure(name, rows, data, dev, model, root, args.max_steps, args.lock)
            print(json.dumps(result), flush=True)
            results.append(result)
    (root / "scale_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
