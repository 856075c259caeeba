"""Choose a fine-tuning recipe for any training config without looking at the split it is reported on: the config's
data is read by hf_transfer's own loader, with the config's own validation carve-out (or validation file) set aside
untouched; from its *training* rows a seeded, stratified selection sample is drawn, and each variant trains on the
first ROWS of the remaining training rows and is scored on that sample.

    python scripts/config_sweep.py --config scripts/configs/clothing_sentiment.yaml --pair_column Title \
        --rows 8000 --output_dir runs/clothing-sweep --common=--bf16,true,--use_cpu,true \
        --variant base= --variant title=--text_pair_column_name,Title

A variant is NAME=FLAG,VALUE,... (flags of `hf-transfer train`, added to the config's). `--pair_column` keeps a second
text column in the written files so that variants may use it. Every run goes to OUTPUT_DIR/sweep.json (finished runs
are reused) with the selection sample's accuracy, macro-F1 and per-class recall; the table is printed at the end.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_rows(config_path: str, pair_column: str | None):
    """The config's training split as hf_transfer reads it (the config parsed as `hf-transfer train` parses it, its
    validation carve-out already removed), and the parsed data arguments."""
    from hf_transfer.cli import parse_command_args
    from hf_transfer.core.data import load_data

    parsed = parse_command_args("train", ["--config", config_path])
    data_args, training_args = parsed[1], parsed[-1]
    if pair_column:
        data_args.text_pair_column_name = pair_column
    return load_data(data_args, seed=training_args.seed), data_args


def raw_label(label_mapping: dict | None, names: list[str]):
    """Each label name's value as the config's label column spells it: the first key of `label_mapping` that maps
    to it, or the name itself."""
    inverse = {}
    for key, name in (label_mapping or {}).items():
        inverse.setdefault(name, key)
    return [inverse.get(name, name) for name in names]


def stratified_sample(labels: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """`rows` indices drawn per class in proportion to its share (seeded)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        group = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(group)[: max(1, round(rows * len(group) / len(labels)))])
    return np.sort(np.concatenate(chosen))


def write_rows(path: Path, train, index, columns: dict, label_values: list) -> Path:
    """`columns`: dataset column -> csv column name (the label column is `labels`, ids into `label_values`)."""
    part = train.select(index)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(columns.values()))
        data = {c: part[c] for c in columns}
        for i in range(len(part)):
            writer.writerow([label_values[data[c][i]] if c == "labels" else data[c][i] for c in columns])
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config the variants change")
    parser.add_argument("--variant", action="append", required=True, help="NAME=--flag,value,... (repeatable)")
    parser.add_argument("--pair_column", help="a second text column kept in the written files")
    parser.add_argument("--rows", type=int, default=8000, help="training rows per variant")
    parser.add_argument("--selection_rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=4321, help="the selection sample's draw")
    parser.add_argument("--common", default="", help="--flag,value,... added to every run, e.g. bf16")
    parser.add_argument("--output_dir", default="runs/config-sweep")
    parser.add_argument("--lock", help="a file held (flock) around each run")
    args = parser.parse_args(argv)
    sweep, bench = _script("few_shot_sweep"), _script("benchmark")
    variants = dict(sweep.parse_variant(v) for v in args.variant)
    common = sweep.parse_variant(f"common={args.common}")[1]
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)

    prepared, data_args = training_rows(args.config, args.pair_column)
    train, names = prepared.datasets["train"], prepared.label_names
    text, pair = prepared.text_column, prepared.text_pair_column
    labels = np.asarray(train["labels"])
    if labels.ndim != 1:
        raise SystemExit("config_sweep.py handles single-label configs only.")
    held = stratified_sample(labels, args.selection_rows, args.seed)
    rest = np.setdiff1d(np.arange(len(train)), held)[: args.rows]
    columns = {text: text, **({pair: pair} if pair else {}), "labels": prepared.summary["columns"]["label"]}
    values = raw_label(data_args.label_mapping, names)
    selection = write_rows(out / "selection.csv", train, held, columns, values)
    train_file = write_rows(out / f"train_{len(rest)}.csv", train, rest, columns, values)
    print(f"{len(train)} training rows of the config; selection {len(held)}, training {len(rest)}", flush=True)

    store_path = out / "sweep.json"
    store = json.loads(store_path.read_text()) if store_path.exists() else {}
    for name, flags in variants.items():
        if name in store and store[name].get("flags") == flags:
            continue
        folder = out / name
        command = [sys.executable, "-m", "hf_transfer", "train", "--config", args.config,
                   "--train_file", str(train_file), "--validation_file", str(selection),
                   "--output_dir", str(folder), "--eval_strategy", "no", "--save_strategy", "no",
                   "--disable_tqdm", "true", "--report_to", "none", "--overwrite_output_dir", "true",
                   *common, *flags]  # fmt: skip
        with sweep.cpu_turn(bench, args.lock, None):
            sweep.run(command, out / f"{name}.log")
        record = json.loads((folder / "hf_transfer_run.json").read_text())
        metrics = record["eval_metrics"]
        store[name] = {
            "flags": flags,
            "accuracy": metrics["eval_accuracy"],
            "f1_macro": metrics["eval_f1_macro"],
            "recall": {n: metrics[f"eval_recall_{n}"] for n in names},
            "optimizer_steps": record["train_metrics"]["optimizer_steps"],
            "train_seconds": record["train_metrics"]["train_wall_seconds"],
        }
        store_path.write_text(json.dumps(store, indent=2))
        print(f"{name}: accuracy {metrics['eval_accuracy']:.4f}, macro-F1 {metrics['eval_f1_macro']:.4f}", flush=True)

    print(f"\n{'variant':28s} {'acc':>7s} {'macroF1':>7s} " + " ".join(f"{'r_' + n:>9s}" for n in names) + " steps")
    for name in variants:
        r = store[name]
        recalls = " ".join(f"{r['recall'][n]:9.4f}" for n in names)
        print(f"{name:28s} {r['accuracy']:7.4f} {r['f1_macro']:7.4f} {recalls} {r['optimizer_steps']:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
