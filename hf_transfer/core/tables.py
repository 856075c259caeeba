"""Reading tabular files: csv/tsv with the right quoting, json arrays or lines, jsonl, parquet; one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
import warnings

import pandas as pd
import pyarrow as pa

from hf_transfer.core.arguments import SUPPORTED_EXTENSIONS
from hf_transfer.errors import DataError

# UnicodeDecodeError and pandas' parser errors are ValueErrors; pyarrow raises its own.
_READ_ERRORS = (ValueError, OSError, pa.ArrowException, pd.errors.ParserWarning)


def error_reason(err: Exception) -> str:
    """The first line of an exception message, or its type name."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def read_table(path: str, csv_quoting: str = "auto") -> pd.DataFrame:
    """Read a csv, tsv, json (array or lines), jsonl or parquet file. Text stays text; only empty cells are missing."""
    if not os.path.isfile(path):
        raise DataError(f"data file {path!r} does not exist (working directory {os.getcwd()!r}); check the path.")
    with open(path, "rb") as f:
        if not f.read(1 << 16).strip() and os.path.getsize(path) <= 1 << 16:
            raise DataError(f"data file {path!r} is empty; expected a header (or JSON objects) and at least one row.")
    ext = path.rsplit(".", 1)[-1].lower()
    if ext not in SUPPORTED_EXTENSIONS or csv_quoting not in ("auto", "minimal", "none"):
        raise DataError(
            f"cannot read {path!r} with csv_quoting {csv_quoting!r}: expected a .csv, .tsv, .json, "
            ".jsonl or .parquet file, and csv_quoting 'auto', 'minimal' or 'none'."
        )
    try:
        if ext in ("csv", "tsv"):
            df = _read_delimited(path, "\t" if ext == "tsv" else ",", csv_quoting)
        elif ext in ("json", "jsonl"):
            df = _read_json(path, lines=ext == "jsonl")
        else:
            df = pd.read_parquet(path)
    except _READ_ERRORS as err:
        raise DataError(
            f"could not read {path!r} as {ext}: {error_reason(err).rstrip('.')}. Check that the file really is {ext}"
            f"{' (UTF-8 text)' if ext != 'parquet' else ''} and matches its extension."
        ) from None
    if len(df) == 0:
        raise DataError(f"data file {path!r} has columns {list(df.columns)} but no rows; expected at least one row.")
    return df


def _read_delimited(path: str, sep: str, csv_quoting: str) -> pd.DataFrame:
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    quoting = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE, "auto": None}[csv_quoting]
    if quoting is None:
        quoting = _detect_quoting(text, sep)
    # dtype=str keeps text (and "NA", "null", "1e5") as written; only empty cells become missing. index_col=False and
    # the warning-as-error stop pandas from silently turning surplus fields of the first row into an index.
    options = {"dtype": str, "keep_default_na": False, "na_values": [""], "index_col": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(io.StringIO(text), sep=sep, quoting=quoting, **options)


def _detect_quoting(text: str, sep: str) -> int:
    """QUOTE_NONE when every record is one physical line and some `"` cannot be CSV quoting (GLUE's SST-2); else
    standard quoting, whose quoted fields may span lines (Blitzer)."""
    if '"' not in text:
        return csv.QUOTE_MINIMAL
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    width = lines[0].count(sep)
    if any(line.count(sep) != width for line in lines[1:]):
        return csv.QUOTE_MINIMAL
    stray = any('"' in field and not _is_quoted_field(field) for line in lines for field in line.split(sep))
    return csv.QUOTE_NONE if stray else csv.QUOTE_MINIMAL


def _is_quoted_field(field: str) -> bool:
    return len(field) >= 2 and field[0] == field[-1] == '"' and '"' not in field[1:-1].replace('""', "")


def _read_json(path: str, lines: bool) -> pd.DataFrame:
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    if not lines and text.lstrip().startswith("["):
        rows = json.loads(text)
    else:  # JSON lines; json.loads names the failing position, so add the line number
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as err:
                    raise ValueError(f"line {number}: {err}") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError("expected a JSON array of objects, or one JSON object per line")
    # Built from Python objects, so no column is type-converted (no dates, no text turned into numbers).
    return pd.DataFrame(rows)
