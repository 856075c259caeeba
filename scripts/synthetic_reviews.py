"""Write a large csv of short, review-like sentences for measuring `hf-transfer predict` at scale (memory, wall time).

The sentences are made from templates and word lists here (no real data rows), seeded, so the same command writes the
same file. Never commit the output: write it under runs/.

    python scripts/synthetic_reviews.py --rows 1000000 --output runs/predict/synthetic-1m.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

SUBJECTS = (
    "the movie,this film,the plot,the acting,the soundtrack,the ending,the director,the script,the cast,the pacing,"
    "the camera work,the dialogue,this sequel,the story"
).split(",")
POSITIVE = "wonderful,moving,sharp,funny,gripping,beautiful,clever,charming,brilliant,heartfelt,well made".split(",")
NEGATIVE = "dull,predictable,clumsy,tedious,boring,messy,flat,forgettable,overlong,painfully slow,a mess".split(",")
TEMPLATES = [
    "{subject} is {adjective}.",
    "{subject} was {adjective}, and {subject2} was {adjective2}.",
    "honestly , {subject} felt {adjective} from start to finish .",
    "i thought {subject} was {adjective} but {subject2} was {adjective2}.",
    "{adjective} !",
    "not {adjective} at all , though {subject} tries hard .",
    "{subject} is {adjective} , {adjective2} and a little too long for its own good .",
    "a {adjective} film whose {subject3} never quite works , yet {subject} remains {adjective2} throughout .",
]


def sentences(n: int, seed: int):
    """(text, label) pairs: label 1 when the first adjective is a positive one."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, len(TEMPLATES), n)
    positive = rng.random(n) < 0.5
    picks = rng.integers(0, 1 << 30, (n, 5))
    for i in range(n):
        first = POSITIVE if positive[i] else NEGATIVE
        second = POSITIVE if picks[i, 4] % 2 else NEGATIVE
        text = TEMPLATES[templates[i]].format(
            subject=SUBJECTS[picks[i, 0] % len(SUBJECTS)],
            subject2=SUBJECTS[picks[i, 1] % len(SUBJECTS)],
            subject3=SUBJECTS[picks[i, 2] % len(SUBJECTS)].removeprefix("the ").removeprefix("this "),
            adjective=first[picks[i, 3] % len(first)],
            adjective2=second[picks[i, 2] % len(second)],
        )
        yield text, int(positive[i])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with_labels", action="store_true", help="Also write a `label` column (1 = positive).")
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label"] if args.with_labels else ["id", "text"])
        for i, (text, label) in enumerate(sentences(args.rows, args.seed)):
            writer.writerow([i, text, label] if args.with_labels else [i, text])
    print(f"wrote {args.rows:,} rows to {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
