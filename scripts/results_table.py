"""Print markdown results tables from finished run folders: `python scripts/results_table.py runs/*`.

Fine-tunes go in one table; distillation runs also get a second one, with the teacher comparison.
"""

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


def distill_row(run: Path) -> str | None:
    record = json.loads((run / "hf_transfer_run.json").read_text())
    d = record.get("distillation")
    if not d:
        return None
    caches = d.get("teacher_logit_cache") or []
    cache = "hit" if caches and all(c["hit"] for c in caches) else "built" if caches else "online"
    if d["alpha"] == 0 and not d.get("hidden_loss_weight"):
        cache = "no teacher"
    seconds = record["train_metrics"]["train_wall_seconds"] + sum(c.get("build_seconds", 0) for c in caches)
    return (
        f"| {run.name} | {d['alpha']} | {d['temperature']} | {cache} | {d['student_eval_accuracy']:.4f} "
        f"| {d['teacher_eval_accuracy']:.4f} | {d['retention_percent']:.1f}% | {d['speedup']:.2f}× "
        f"| {seconds / 60:.1f} |"
    )


if __name__ == "__main__":
    runs = [Path(p) for p in sys.argv[1:] if (Path(p) / "all_results.json").is_file()]
    print("| run | dev accuracy | dev macro-F1 | train wall (min) | train samples/s | trainable / total | precision |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for run in runs:
        print(row(run))
    distilled = [r for r in (distill_row(run) for run in runs) if r]
    if distilled:
        print()
        print(
            "| run | α | T | teacher logits | student dev acc | teacher dev acc | retention | speed-up (batch 64) "
            "| wall incl. teacher pass (min) |"
        )
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
        print("\n".join(distilled))
