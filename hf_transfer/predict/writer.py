"""Writing predictions chunk by chunk as csv, jsonl or parquet, into a temporary file beside the output that replaces
it only when every row is written: bad input found late, an interruption or a crash leave no half-written file."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from hf_transfer.errors import DataError, one_line


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


class PredictionWriter:
    """Appends frames to `<folder>/.<name>.<pid>.tmp`; `commit()` renames it onto `path`, and leaving the `with` block
    on an exception removes it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.ext = self.path.suffix.lower().lstrip(".")
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.rows = 0
        self._file = None
        self._parquet = None
        self._schema: pa.Schema | None = None

    def __enter__(self) -> PredictionWriter:
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
            frame.to_csv(self._file, index=False, header=self.rows == 0)
        else:
            if self._file is None:
                self._file = open(self.tmp, "w", encoding="utf-8")
            text = frame.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
            self._file.write(text if text.endswith("\n") else text + "\n")
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        try:
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as err:
            raise DataError(
                f"rows {self.rows + 1}-{self.rows + len(frame)} do not fit the parquet columns set by the first rows "
                f"({one_line(err, 160)}); give every column one type, or write .csv or .jsonl."
            ) from None
        if self._parquet is None:
            self._schema = _settled(table.schema.remove_metadata())
            table = table.cast(self._schema)
            self._parquet = pq.ParquetWriter(self.tmp, self._schema)
        self._parquet.write_table(table)

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
        self._close()
        self.tmp.unlink(missing_ok=True)
