"""Where a training loop's time goes, from py-spy's raw (collapsed) stacks.

    pip install py-spy
    py-spy record --format raw -o train.txt -- hf-transfer train --config scripts/configs/sst2.yaml \
        --max_train_samples 1000 --eval_strategy no --output_dir /tmp/profile-train
    python scripts/profile_stacks.py train.txt

Only samples inside `Trainer._inner_training_loop` count (loading, tokenising and saving are left out). Each sample
goes to the first matching category, checked in this order: our own Python (the innermost frame is in
`hf_transfer/`), backward, optimizer step, gradient clipping, zero_grad, data loading and collation, the model's
forward (any frame in `transformers/models/`, so a teacher's forward counts here too), and the rest (Trainer,
accelerate and torch Python). The model forward is also split by the module under the top-level model.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
LOOP = "_inner_training_loop"


def parse(frame: str) -> tuple[str, str]:
    """`'Trainer.train (transformers/trainer.py:1576)'` -> `('Trainer.train', 'transformers/trainer.py')`."""
    match = FRAME.match(frame)
    return (match["func"], match["file"]) if match else (frame, "")


def category(frames: list[tuple[str, str]]) -> str:
    funcs = [f for f, _ in frames]
    files = [p for _, p in frames]
    if files[-1].startswith("hf_transfer/"):
        return "our own Python (innermost frame in hf_transfer/)"
    if any(f.endswith("backward") and p.startswith(("torch/", "accelerate/")) for f, p in frames):
        return "backward"
    if any(p.startswith("torch/optim/") for p in files):
        return "optimizer step"
    if any("clip_grad" in f for f in funcs):
        return "gradient clipping"
    if any(f.endswith("zero_grad") for f in funcs):
        return "zero_grad"
    if any(p.startswith("torch/utils/data/") or p.endswith("data_collator.py") or "Collator" in f for f, p in frames):
        return "data loading + collation"
    if any(p.startswith("transformers/models/") for p in files):
        return "model forward"
    return "other (Trainer / accelerate / torch Python)"


def forward_part(frames: list[tuple[str, str]]) -> str | None:
    """The module just under the top-level model's forward, e.g. 'BertModel.forward > BertEncoder.forward'."""
    model_frames = [f for f, p in frames if p.startswith("transformers/models/")]
    return " > ".join(model_frames[1:3]) if len(model_frames) > 1 else None


def summarise(path: str) -> dict:
    categories, forward, ours, total = Counter(), Counter(), Counter(), 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = [parse(frame) for frame in stack.split(";")]
            if not any(func.endswith(LOOP) for func, _ in frames):
                continue
            n = int(count)
            total += n
            kind = category(frames)
            categories[kind] += n
            if kind == "model forward" and (part := forward_part(frames)):
                forward[part] += n
            if frames[-1][1].startswith("hf_transfer/"):
                ours[f"{frames[-1][1]}: {frames[-1][0]}"] += n
    return {"total": total, "categories": categories, "forward": forward, "ours": ours}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="+", help="py-spy --format raw output files")
    parser.add_argument("--top", type=int, default=6, help="rows of the forward and our-code breakdowns")
    args = parser.parse_args(argv)
    for path in args.stacks:
        s = summarise(path)
        total = s["total"]
        print(f"{path}: {total} samples in the training loop")
        if not total:
            print(f"  none: was the run profiled through {LOOP}?")
            continue
        for title, counter, limit in (
            ("", s["categories"], None),
            ("model forward by part:", s["forward"], args.top),
            ("our own Python by function:", s["ours"], args.top),
        ):
            if title:
                print(f"  {title}")
            for name, n in counter.most_common(limit):
                print(f"  {'  ' if title else ''}{name:60s} {n:7d} {100 * n / total:6.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
