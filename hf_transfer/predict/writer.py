"""Writing predictions chunk by chunk as csv, jsonl or parquet, into a temporary file beside the output that replaces
it only when every row is written: bad input found late, an interruption or a crash leave no half-written file."""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from hf_transfer.core.cleaning import STRUCTURED_CELLS
from hf_transfer.core.folders import remove_quietly
from hf_transfer.core.scratch import process_tag, remove_dead_builds
from hf_transfer.errors import DataError, one_line
from hf_transfer.predict.arguments import output_extension


def _settled(schema: pa.Schema) -> pa.Schema:
    """A first chunk's schema with columns that held only nulls typed as text, so later chunks can fill them."""
    fields = []
    for f in schema:
        if pa.types.is_null(f.type):
            f = f.with_type(pa.string())
        elif pa.types.is_list(f.type) and pa.types.is_null(f.type.value_type):
            f = f.with_type(pa.list_(pa.string()))
        fields.append(f)
    return pa.schema(fields)


def _no_values(kind: pa.DataType) -> bool:
    """A later chunk's column that held only nulls (a JSON key none of its lines has): it takes the earlier type."""
    return pa.types.is_null(kind) or pa.types.is_list(kind) and pa.types.is_null(kind.value_type)


def _one_type_per_column(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns whose cells mix Python types (a JSON `"text": 5` among strings, an id that is a number on
    some rows and a string on others) as text, nulls kept: parquet gives every column one type."""
    mixed = {}
    for name in (c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])):
        column = frame[name]
        kinds = {type(v) for v in column if v is not None and not (isinstance(v, float) and v != v)}
        if len(kinds) > 1 and not kinds & {list, dict, tuple}:
            mixed[name] = column.map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
    return frame.assign(**mixed) if mixed else frame


def _nested_as_json(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells holding lists or mappings (multi-label predictions; list or object columns of a jsonl or parquet input)
    as JSON text, which csv can hold and `train`, `evaluate` and other tools read back; str() would write Python's
    spelling, `['a']`, beside JSON in the same file."""

    def as_json(value):
        return json.dumps(value, ensure_ascii=False, default=_plain) if isinstance(value, STRUCTURED_CELLS) else value

    converted = {}
    for name in (c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])):
        if any(isinstance(v, STRUCTURED_CELLS) for v in frame[name]):
            converted[name] = frame[name].map(as_json)
    return frame.assign(**converted) if converted else frame


def _plain(value):
    """numpy arrays and scalars (what parquet's list cells hold) as Python values, for json.dumps."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _widened(schema: pa.Schema, new: pa.Schema, rows: int, count: int) -> pa.Schema:
    """One schema for the rows written and a chunk whose column types differ: integers and floats meet as float64,
    any other scalar types as text; a nested column that changes shape cannot be widened."""
    fields = []
    for old, field in zip(schema, new, strict=True):
        kinds = (old.type, field.type)
        if old.type == field.type or _no_values(field.type) or _text(old.type) and not pa.types.is_nested(field.type):
            fields.append(old)
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in kinds):
            fields.append(old.with_type(pa.float64()))
        elif all(pa.types.is_decimal(t) for t in kinds):  # 1.00, then 123456.78: as many digits as both need
            scale = max(t.scale for t in kinds)
            digits = max(t.precision - t.scale for t in kinds) + scale
            fields.append(
                old.with_type(pa.decimal128(digits, scale) if digits <= 38 else pa.decimal256(digits, scale))
            )
        elif not any(pa.types.is_nested(t) for t in kinds):
            fields.append(old.with_type(field.type if _text(field.type) else pa.large_string()))
        else:
            raise DataError(
                f"column {old.name!r} holds {old.type} in the first {rows} rows and {field.type} in rows {rows + 1}-"
                f"{rows + count}, which parquet cannot hold in one column; write .csv or .jsonl."
            )
    return pa.schema(fields)


def _text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _cast(table: pa.Table, schema: pa.Schema, rows: int, count: int) -> pa.Table:
    try:
        return table.cast(schema)
    except (pa.ArrowException, ValueError) as err:
        raise DataError(
            f"rows {rows + 1}-{rows + count} do not fit the parquet columns of the rows before them "
            f"({one_line(err, 160)}); write .csv or .jsonl."
        ) from None


class PredictionWriter:
    """Appends frames to `<folder>/.<name>.<host>-<pid>.tmp`; `commit()` renames it onto `path`, and leaving the
    `with` block on an exception removes it."""

    def __init__(self, path: str | Path, header_names: dict[str, str] | None = None):
        self.path = Path(path)
        self.header_names = header_names or {}  # a csv output's names for columns pandas renamed (`Unnamed: 0`)
        self.ext = output_extension(self.path)  # `.csv` is csv: Path.suffix is "" for it
        # one left by a killed predict (SIGKILL) of this output would stay beside it, as large as the output
        remove_dead_builds(self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"))
        self.tmp = self.path.with_name(f".{self.path.name}.{process_tag()}.tmp")
        self.rows = 0
        self._file = None
        self._parquet = None
        self._schema: pa.Schema | None = None

    def __enter__(self) -> PredictionWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a missing folder is made, as by evaluate
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()

    def write(self, frame: pd.DataFrame) -> None:
        if self.ext == "parquet":
            self._write_parquet(frame)
        elif self.ext == "csv":
            if self._file is None:
                self._file = open(self.tmp, "w", encoding="utf-8", newline="")
            # The csv module quotes a cell holding "\n" but not one holding "\r" alone (an old-Mac line break kept
            # from the input): read back, it would split its row. A chunk with one is written fully quoted.
            quoting = csv.QUOTE_ALL if _holds_carriage_return(frame) else csv.QUOTE_MINIMAL
            _nested_as_json(frame).rename(columns=self.header_names).to_csv(
                self._file, index=False, header=self.rows == 0, quoting=quoting
            )
        else:
            if self._file is None:
                self._file = open(self.tmp, "w", encoding="utf-8")
            text = frame.to_json(
                orient="records",
                lines=True,
                force_ascii=False,
                date_format="iso",
                date_unit="us",
                double_precision=15,  # a timestamp's microseconds stay (milliseconds by default)
            )
            self._file.write(text if text.endswith("\n") else text + "\n")
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        try:
            table = pa.Table.from_pandas(_one_type_per_column(frame), preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as err:
            raise DataError(
                f"rows {self.rows + 1}-{self.rows + len(frame)} cannot be written as parquet ({one_line(err, 160)}); "
                "write .csv or .jsonl."
            ) from None
        schema = table.schema.remove_metadata()
        table = table.cast(_settled(schema) if self._parquet is None else schema)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self.tmp, self._schema)
        elif table.schema != self._schema:
            widened = _widened(self._schema, table.schema, self.rows, len(frame))
            if widened != self._schema:
                self._rewrite(widened)
            table = _cast(table, self._schema, self.rows, len(frame))
        self._parquet.write_table(table)

    def _rewrite(self, schema: pa.Schema) -> None:
        """The rows written so far, again under a wider schema (a column that held numbers now also holds text), one
        row group at a time so memory stays bounded."""
        import pyarrow.parquet as pq

        self._parquet.close()
        # Named as the build is (`.<name>.old.<host>-<pid>.tmp`), so a killed rewrite's copy is removed as it is.
        old = self.path.with_name(f".{self.path.name}.old.{process_tag()}.tmp")
        os.replace(self.tmp, old)
        self._schema = schema
        self._parquet = pq.ParquetWriter(self.tmp, schema)
        try:
            source = pq.ParquetFile(old)
            for group in range(source.num_row_groups):
                self._parquet.write_table(source.read_row_group(group).cast(schema))
        finally:
            old.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def commit(self) -> Path:
        self._close()
        if self.rows == 0 and not self.tmp.exists():
            self.tmp.touch()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._close()
        except OSError:  # a full disk fails the last flush too: the file is removed all the same, freeing the space
            self._file = self._parquet = None
        remove_quietly(self.tmp)


def _holds_carriage_return(frame: pd.DataFrame) -> bool:
    """Whether a text cell of `frame` holds a "\r"."""
    texts = frame.select_dtypes(include="object")
    return any(texts[name].map(lambda v: isinstance(v, str) and "\r" in v).any() for name in texts.columns)
