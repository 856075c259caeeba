"""Add a column of an original data file to rows written by `config_sweep.py` (which keeps only the text, the pair
and the mapped label): each row is matched on its text columns (exactly, but for line ends). Used for
intermediate-task training on a finer label than the task's, e.g. the clothing reviews' 1-5 star rating before
their good/neutral/bad task:

    python scripts/join_column.py --rows runs/clothing-sweep/train_8000.csv \
        --source ../shared/data/clothing_reviews/reviews.csv --key "Review Text" --key Title \
        --column Rating --as stars --output runs/clothing-sweep/train_8000_stars.csv

Rows whose key is missing from the source, or found there with different values of the column, are reported and
left out.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", required=True, help="the csv to extend")
    parser.add_argument("--source", required=True, help="the original data file (csv)")
    parser.add_argument("--key", action="append", required=True, help="a text column both files have (repeatable)")
    parser.add_argument("--column", required=True, help="the source column to add")
    parser.add_argument("--as", dest="name", help="its name in the output (default: the column's)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    rows = pd.read_csv(args.rows, keep_default_na=False, dtype=str)
    source = pd.read_csv(args.source, keep_default_na=False, dtype=str)
    for frame in (rows, source):  # line ends inside quoted text: the data loader reads "\r\n" as "\n"
        frame[args.key] = frame[args.key].apply(lambda c: c.str.replace("\r\n", "\n").str.replace("\r", "\n"))
    values = source.groupby(args.key)[args.column].agg(lambda v: v.iloc[0] if v.nunique() == 1 else None)
    joined = rows.join(values.rename(args.name or args.column), on=args.key)
    missing = joined[args.name or args.column].isna()
    joined[~missing].to_csv(args.output, index=False)
    print(f"{len(rows) - int(missing.sum())} of {len(rows)} rows written to {args.output}; {int(missing.sum())} left "
          "out (not found, or found with different values)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
