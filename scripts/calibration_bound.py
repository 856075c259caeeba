"""How far could decision calibration take a trained single-label model on its own validation split? An upper bound,
never a recipe: per-class logit offsets are searched on the validation rows themselves, which no honest calibration
may read (hf-transfer's `calibrate_decision` fits them on rows carved from train).

    python scripts/calibration_bound.py --config scripts/configs/clothing_sentiment_best.yaml \
        --model runs/clothing-sentiment-best --output_file runs/clothing-bound.json \
        --constraint accuracy=0.83 --constraint recall_neutral=0.55

The config's validation split is read by hf_transfer's own loader (the config's carve-out or validation file), the
model's logits are computed once (fp32, the model's own tokenizer, the config's text pair and max length), then a
grid over the offsets of every class but the last (whose offset stays 0: only differences matter) gives the highest
macro-F1, and the highest macro-F1 among offsets that meet every `--constraint` (a floor on accuracy or on one
class's recall). Printed and written as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def scores(logits: np.ndarray, labels: np.ndarray, offsets: np.ndarray, names: list[str]) -> dict:
    """Accuracy, macro-F1 and per-class recall of argmax(logits + offsets)."""
    predicted = (logits + offsets).argmax(1)
    out = {"accuracy": float((predicted == labels).mean())}
    f1s = []
    for c, name in enumerate(names):
        tp = float(((predicted == c) & (labels == c)).sum())
        support, chosen = float((labels == c).sum()), float((predicted == c).sum())
        out[f"recall_{name}"] = tp / support if support else 0.0
        f1s.append(2 * tp / (support + chosen) if support + chosen else 0.0)
    out["f1_macro"] = float(np.mean(f1s))
    return out


def search(logits, labels, names, grid, constraints: dict) -> dict:
    """The best macro-F1 over the offset grid, unconstrained and under `constraints` ({metric: floor})."""
    best = {"unconstrained": None, "constrained": None}
    for free in itertools.product(grid, repeat=len(names) - 1):
        offsets = np.array([*free, 0.0])
        s = scores(logits, labels, offsets, names)
        entry = {**s, "offsets": [round(float(o), 4) for o in offsets]}
        if best["unconstrained"] is None or s["f1_macro"] > best["unconstrained"]["f1_macro"]:
            best["unconstrained"] = entry
        meets = all(s[k] >= v for k, v in constraints.items())
        if meets and (best["constrained"] is None or s["f1_macro"] > best["constrained"]["f1_macro"]):
            best["constrained"] = entry
    return best


def validation_logits(config: str, model_dir: str):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = importlib.util.spec_from_file_location("config_sweep", REPO / "scripts" / "config_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    prepared, data_args = sweep.training_rows(config, None)
    rows = prepared.datasets["validation"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    if [model.config.id2label[i] for i in range(model.config.num_labels)] != list(prepared.label_names):
        raise SystemExit(f"the model's labels {model.config.id2label} are not the config's {prepared.label_names}")
    text, pair = prepared.text_column, prepared.text_pair_column
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            batch = rows[i : i + 64]
            encoded = tokenizer(batch[text], batch[pair] if pair else None, truncation=True,
                                max_length=data_args.max_seq_length, padding=True, return_tensors="pt")  # fmt: skip
            out.append(model(**encoded).logits.float().numpy())
    return np.concatenate(out), np.asarray(rows["labels"]), list(prepared.label_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config whose validation split is read")
    parser.add_argument("--model", required=True, help="the trained model folder")
    parser.add_argument("--constraint", action="append", default=[], help="METRIC=FLOOR, e.g. accuracy=0.83")
    parser.add_argument("--step", type=float, default=0.05, help="grid step of the offsets")
    parser.add_argument("--span", type=float, default=4.0, help="offsets range over [-span, span]")
    parser.add_argument("--output_file", help="where the JSON goes")
    args = parser.parse_args(argv)
    constraints = {}
    for item in args.constraint:
        name, _, floor = item.partition("=")
        try:
            constraints[name] = float(floor)
        except ValueError:
            raise SystemExit(f"--constraint takes METRIC=FLOOR, got {item!r}") from None
    logits, labels, names = validation_logits(args.config, args.model)
    known = {"accuracy", "f1_macro", *(f"recall_{n}" for n in names)}
    if set(constraints) - known:
        raise SystemExit(f"--constraint metrics are among {sorted(known)}, got {sorted(constraints)}")
    grid = np.arange(-args.span, args.span + args.step / 2, args.step)
    result = {
        "model": args.model,
        "config": args.config,
        "validation_rows": len(labels),
        "as_saved": scores(logits, labels, np.zeros(len(names)), names),
        "constraints": constraints,
        "grid": {"step": args.step, "span": args.span},
        **search(logits, labels, names, grid, constraints),
        "note": "offsets searched on the validation rows themselves: an upper bound for any calibration, not a result",
    }
    print(json.dumps(result, indent=2))
    if args.output_file:
        Path(args.output_file).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
