"""Print a markdown results table from finished run folders: `python scripts/results_table.py runs/*`."""

import json
import sys
from pathlib import Path


def row(run: Path) -> str:
    results = json.loads((run / "all_results.json").read_text())
    record = json.loads((run / "hf_transfer_run.json").read_text())
    freeze = record.get("freeze", {})
    trainable = freeze.get("trainable_parameters_now", 0)
    total = trainable + freeze.get("frozen_parameters_now", 0)
    report = record.get("validation_report", {})
    minutes = results.get("train_wall_seconds", float("nan")) / 60
    return (
        f"| {run.name} | {report.get('accuracy', float('nan')):.4f} | {report.get('f1_macro', float('nan')):.4f} "
        f"| {minutes:.1f} | {results.get('train_samples_per_second', 0):.1f} "
        f"| {trainable / 1e6:.1f}M / {total / 1e6:.1f}M | {record.get('precision')} |"
    )


if __name__ == "__main__":
    print("| run | dev accuracy | dev macro-F1 | train wall (min) | train samples/s | trainable / total | precision |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for path in sys.argv[1:]:
        if (Path(path) / "all_results.json").is_file():
            print(row(Path(path)))
