"""Write an unlabelled transfer set for `hf-transfer distill --unlabeled_file`: the sentences of review texts, without
their labels, one per row, deduplicated and seeded-shuffled.

    python scripts/unlabeled_sentences.py --domains dvd books --column sentence --output runs/unlabeled_dvd_books.csv

It reads the *train* split of the Blitzer review domains in `../shared/data/blitzer` (or `--data_dir`), never their
dev split, splits each review into sentences at `.`, `!` and `?`, keeps those of `--min_words` to `--max_words` words,
and writes a csv with one text column. The file is generated, never committed: the rows belong to the data set.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
from pathlib import Path

DOMAINS = ("books", "dvd", "electronics", "kitchen")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def review_sentences(text: str, min_words: int, max_words: int) -> list[str]:
    """The sentences of one review with `min_words` to `max_words` words, whitespace collapsed."""
    pieces = _SENTENCE_END.split(" ".join(str(text).split()))
    return [piece for piece in pieces if min_words <= len(piece.split()) <= max_words]


def collect(files: list[Path], min_words: int, max_words: int) -> list[str]:
    """Every distinct sentence of the files' `sentence` column, in file order (case-insensitive deduplication)."""
    seen: set[str] = set()
    sentences = []
    for path in files:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                for sentence in review_sentences(row["sentence"], min_words, max_words):
                    key = sentence.lower()
                    if key not in seen:
                        seen.add(key)
                        sentences.append(sentence)
    return sentences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domains", nargs="+", default=["dvd", "books"], choices=DOMAINS)
    parser.add_argument("--data_dir", default=os.environ.get("HF_TRANSFER_DATA_DIR", "../shared/data"))
    parser.add_argument("--column", default="sentence", help="the text column name (the training data's)")
    parser.add_argument("--min_words", type=int, default=6)
    parser.add_argument("--max_words", type=int, default=60)
    parser.add_argument("--max_rows", type=int, default=None, help="keep this many after shuffling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if args.min_words < 1 or args.max_words < args.min_words:
        parser.error("need 1 <= --min_words <= --max_words")
    files = [Path(args.data_dir) / "blitzer" / domain / "train.tsv" for domain in args.domains]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    sentences = collect(files, args.min_words, args.max_words)
    random.Random(args.seed).shuffle(sentences)
    if args.max_rows is not None:
        sentences = sentences[: args.max_rows]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([args.column])
        writer.writerows([sentence] for sentence in sentences)
    print(f"{len(sentences)} sentences from {', '.join(args.domains)} -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
