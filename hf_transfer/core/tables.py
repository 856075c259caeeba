"""Reading tabular files: csv/tsv with the right quoting, json arrays or lines, jsonl (each of these also gzip, bz2 or
xz compressed), parquet; one-line errors."""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import gzip
import io
import json
import lzma
import os
import warnings
import zlib
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa

from hf_transfer.core.arguments import ACCEPTED_DATA_FILES, SUPPORTED_EXTENSIONS, data_file_problem, data_format
from hf_transfer.core.csv_quoting import detect_quoting, ends_in_an_open_cell
from hf_transfer.errors import DataError

# UnicodeDecodeError and pandas' parser errors are ValueErrors; pyarrow raises its own. A corrupt or truncated
# compressed file raises OSError (gzip's BadGzipFile, bz2), zlib.error, lzma.LZMAError or EOFError.
_READ_ERRORS = (ValueError, OSError, EOFError, zlib.error, lzma.LZMAError, pa.ArrowException, pd.errors.ParserWarning)
_OPENERS = {None: open, "gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_COMPRESSION_NAMES = {"gz": "gzip", "bz2": "bz2", "xz": "xz"}
# dtype=str keeps text (and "NA", "null", "1e5") as written; only empty cells become missing. index_col=False and the
# warning-as-error around reads stop pandas from silently turning surplus fields of the first row into an index.
_CSV_OPTIONS = {"dtype": str, "keep_default_na": False, "na_values": [""], "index_col": False}
CSV_QUOTINGS = ("auto", "minimal", "none")
# How much of a csv/tsv file the chunked reader looks at to detect its quoting.
QUOTING_SAMPLE_BYTES = 1 << 20


def error_reason(err: Exception) -> str:
    """The first line of an exception message, or its type name."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def open_text(path: str, errors: str = "strict", newline: str | None = None):
    """A data file as UTF-8 text (a leading BOM dropped, line endings read as "\n"; with `newline=""` they are left as
    written, for the csv parser, which keeps a "\r\n" inside a quoted cell), decompressed when its name ends in .gz,
    .bz2 or .xz."""
    return _OPENERS[data_format(path)[1]](path, "rt", encoding="utf-8-sig", errors=errors, newline=newline)


def check_readable(path: str, csv_quoting: str = "auto") -> str:
    """The format of a data file that exists, is not empty and has a known format; DataError otherwise."""
    if problem := data_file_problem(path):
        raise DataError(f"data file {path!r} {problem} (working directory {os.getcwd()!r}); check the path.")
    ext, compression = data_format(path)
    if ext not in SUPPORTED_EXTENSIONS or (compression and ext == "parquet") or csv_quoting not in CSV_QUOTINGS:
        raise DataError(
            f"cannot read {path!r} with csv_quoting {csv_quoting!r}: expected {ACCEPTED_DATA_FILES}, and "
            "csv_quoting 'auto', 'minimal' or 'none'."
        )
    try:  # what a compressed file holds, decompressed: a corrupt one is found here, in one line
        with _OPENERS[compression](path, "rb") as f:
            head = f.read(1 << 16)
            empty = not head.strip() and not f.read(1)
    except _READ_ERRORS as err:
        raise _unreadable(path, ext, err) from None
    if ext != "parquet" and head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(
            f'data file {path!r} is UTF-16 text (it starts with a UTF-16 byte-order mark, as Windows "Unicode" '
            "saves); save it as UTF-8."
        )
    if empty:
        raise DataError(f"data file {path!r} is empty; expected a header (or JSON objects) and at least one row.")
    return ext


def check_unique_columns(path: str, columns: list) -> None:
    """A file whose header names a column twice is refused: which one is the text or the label would be a guess."""
    twice = sorted({str(name) for name in columns if list(columns).count(name) > 1 and str(name).strip()})
    if twice:
        raise DataError(
            f"data file {path!r} names the column{'s' if len(twice) > 1 else ''} {', '.join(map(repr, twice))} more "
            f"than once in its header {list(columns)}, so which one to read is a guess; rename or drop the copies."
        )


def _unreadable(path: str, ext: str, err: Exception) -> DataError:
    compression = _COMPRESSION_NAMES.get(data_format(path)[1])
    what = f"{compression}-compressed {ext}" if compression else ext
    if isinstance(err, UnicodeDecodeError) and (line := _first_line_not_utf8(path)):
        excel = " (Excel: 'CSV UTF-8')" if ext in ("csv", "tsv") else ""
        return DataError(
            f"{path!r} is not UTF-8 text: line {line} holds a byte 0x{err.object[err.start]:02x} that UTF-8 cannot "
            f"read. Save it as UTF-8{excel}, or convert it, e.g. `iconv -f GB18030 -t UTF-8` for Chinese Windows "
            "files, `-f SHIFT_JIS` for Japanese, `-f CP1252` for Western European."
        )
    return DataError(
        f"could not read {path!r} as {what}: {error_reason(err).rstrip('.')}. Check that the file really is {what}"
        f"{' (UTF-8 text)' if ext != 'parquet' else ''} and matches its extension."
    )


def _first_line_not_utf8(path: str) -> int | None:
    """The number of the first line of a (decompressed) text file that is not UTF-8, for the error: the decoder's
    byte position counts from the start of a read buffer, not of the file. None for a file that is not text at all
    (a NUL byte: a picture, a spreadsheet, UTF-16), which the error says is not of its format."""
    try:
        with _OPENERS[data_format(path)[1]](path, "rb") as f:
            if b"\x00" in f.read(1 << 13):
                return None
            f.seek(0)
            for number, line in enumerate(f, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except (OSError, EOFError, ValueError):
        return None
    return None


def read_table(path: str, csv_quoting: str = "auto") -> pd.DataFrame:
    """Read a csv, tsv, json (array or lines), jsonl or parquet file. Text stays text; only empty cells are missing."""
    ext = check_readable(path, csv_quoting)
    try:
        if ext in ("csv", "tsv"):
            df = _read_delimited(path, "\t" if ext == "tsv" else ",", csv_quoting)
        elif ext in ("json", "jsonl"):
            df = _read_json(path, lines=ext == "jsonl")
        else:
            import pyarrow.parquet as pq

            check_unique_columns(path, pq.ParquetFile(path).schema_arrow.names)
            df = _as_text(pq.read_table(path)).to_pandas(integer_object_nulls=True)
    except DataError:
        raise
    except _READ_ERRORS as err:
        raise _unreadable(path, ext, err) from None
    if len(df) == 0:
        raise DataError(f"data file {path!r} has columns {list(df.columns)} but no rows; expected at least one row.")
    return df


def _read_delimited(path: str, sep: str, csv_quoting: str) -> pd.DataFrame:
    with open_text(path, newline="") as f:  # a quoted cell's "\r\n" is text: pandas reads it so from a path
        text = f.read()
    quoting = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE, "auto": None}[csv_quoting]
    if quoting is None:
        quoting = detect_quoting(text, sep)
    options = _csv_options(path, io.StringIO(text, newline="").readline(), sep, quoting)  # ends in \n, \r\n or \r
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(io.StringIO(text), sep=sep, quoting=quoting, **options)


def _csv_options(path: str, header: str, sep: str, quoting: int) -> dict:
    """pandas' options for a csv/tsv file with this first line. In a file of one column every line after the header
    is a row, a blank one holding empty text (as `predict` writes it back, unlabelled): pandas would skip a line of
    spaces, and the output would have fewer rows than the input. In wider files a blank line is no record. Spaces
    around a header name (`text, label`) are no part of it: ' label' matched no default column and no flag."""
    fields = next(csv.reader([header.rstrip("\r\n")], delimiter=sep, quoting=quoting), [])
    names = [field.strip() for field in fields]
    check_unique_columns(path, names)  # pandas would rename the second 'label' to 'label.1', silently
    options = {**_CSV_OPTIONS, "skip_blank_lines": len(fields) != 1}
    return options if names == fields else {**options, "names": names, "header": 0}


def _read_json(path: str, lines: bool) -> pd.DataFrame:
    with open_text(path) as f:
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
    return _frame(rows, None)


# --- reading in chunks ----------------------------------------------------------------------------------------------


def iter_table(
    path: str, chunk_rows: int, csv_quoting: str = "auto", columns: list[str] | None = None, *, fixed: bool = False
) -> Iterator[pd.DataFrame]:
    """A data file as frames of at most `chunk_rows` rows, read as `read_table` reads it, in bounded memory: csv/tsv
    through pandas' chunked reader (quoting detected on the first MiB), jsonl line by line, parquet by record batch.
    A JSON array is parsed whole (it is one value), then sliced. `columns` reads only those (csv, tsv, parquet).
    `fixed`: every frame has the first one's columns, in its order, as a csv or parquet file's frames do (JSON lines
    give their keys in any order, a key a line lacks is missing there), and a key first seen after the first frame
    raises DataError naming its line."""
    ext = check_readable(path, csv_quoting)
    if ext == "json" and _is_json_array(path):
        frame = read_table(path, csv_quoting)
        frame = frame if columns is None else frame[columns]
        yield from (frame.iloc[i : i + chunk_rows] for i in range(0, len(frame), chunk_rows))
        return
    if ext in ("json", "jsonl"):
        chunks = _jsonl_chunks(path, chunk_rows, columns, fixed)
    else:
        readers = {"csv": _csv_chunks, "tsv": _csv_chunks}
        chunks = readers.get(ext, _parquet_chunks)(path, ext, chunk_rows, csv_quoting, columns)
    rows = 0
    try:
        for frame in chunks:
            if len(frame) == 0:  # a csv header alone: found before the caller loads a model for the first chunk
                continue
            rows += len(frame)
            yield frame
    except DataError:
        raise
    except _READ_ERRORS as err:
        raise _unreadable(path, ext, err) from None
    if rows == 0:
        raise DataError(f"data file {path!r} has a header but no rows; expected at least one row.")


def file_columns(path: str, csv_quoting: str = "auto") -> set[str] | None:
    """The column names of a data file's first rows, or None when it cannot be read: a caller that only peeks at the
    columns leaves the reason to the readers that follow, which say it in one line."""
    try:
        return {str(c) for c in next(iter_table(path, 2, csv_quoting)).columns}
    except (DataError, StopIteration, OSError, ValueError):
        return None


def blank_header_names(path: str, columns) -> dict[str, str]:
    """The names pandas gave the empty cells of a csv/tsv header (`Unnamed: 0`, the column of a saved pandas index, as
    in the clothing reviews), found by position among the file's `columns` as read, mapped back to the empty name, so
    `predict` writes a csv under the header it read (jsonl and parquet outputs keep the name as a key)."""
    ext = data_format(path)[0]
    if ext not in ("csv", "tsv"):
        return {}
    with open_text(path, errors="replace") as f:
        header = f.readline().rstrip("\r\n")
    fields = next(csv.reader([header], delimiter="\t" if ext == "tsv" else ","), [])
    columns = list(columns)
    blank = [i for i, field in enumerate(fields) if not field.strip() and i < len(columns)]
    return {str(columns[i]): "" for i in blank}


def _is_json_array(path: str) -> bool:
    with open_text(path, errors="replace") as f:
        return f.read(1 << 12).lstrip().startswith("[")


def _csv_chunks(path, ext, chunk_rows, csv_quoting, columns):
    sep = "\t" if ext == "tsv" else ","
    quoting = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE, "auto": None}[csv_quoting]
    if quoting is None:
        size = QUOTING_SAMPLE_BYTES
        while True:  # a sample that ends inside a quoted cell grows (up to 16 times) until the cell closes
            with open_text(path) as f:
                sample = f.read(size)
            # Only whole lines: a line cut at the sample's end would look like a record with too few fields.
            cut = len(sample) == size
            text = sample.rpartition("\n")[0] if cut else sample
            if not cut or size >= 16 * QUOTING_SAMPLE_BYTES or not ends_in_an_open_cell(text, sep):
                break
            size *= 4
        quoting = detect_quoting(text, sep, cut)
    # Read as `read_table` reads: line endings as written (a quoted cell's "\r\n" stays, as in pandas' own reading).
    # The warning filter is set around each read, never across a `yield`: the caller runs in between.
    with open_text(path, newline="") as handle:
        options = _csv_options(path, handle.readline(), sep, quoting)
        handle.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(handle, sep=sep, quoting=quoting, chunksize=chunk_rows, usecols=columns, **options)
        yield from _warning_free_chunks(reader)


def _warning_free_chunks(reader):
    with reader:
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = next(reader, None)
            if frame is None:
                return
            yield frame


def _jsonl_chunks(path: str, chunk_rows: int, columns: list[str] | None, fixed: bool):
    rows, seen, known = [], 0, None  # known: with `fixed`, the first frame's columns once it is read
    with open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise ValueError(f"line {number}: {err}") from None
            if not isinstance(row, dict):
                raise ValueError(f"line {number}: expected a JSON object, got {type(row).__name__}")
            if known is not None and (new := [str(key) for key in row if key not in known]):
                raise _late_key(path, new[0], number, seen)
            rows.append(row)
            if len(rows) == chunk_rows:
                frame = _frame(rows, columns if known is None else list(known))
                if fixed and columns is None and known is None:
                    known = dict.fromkeys(frame.columns)  # ordered, with a set's lookups
                seen += len(rows)
                yield frame
                rows = []
    if rows:
        yield _frame(rows, columns if known is None else list(known))


def _late_key(path: str, key: str, number: int, seen: int) -> DataError:
    return DataError(
        f"line {number} of {path!r} has the key {key!r}, which none of the first {seen} rows has, and those rows "
        "set the columns written; give that key to the first row too (null where it has no value), or drop it."
    )


def _frame(rows: list[dict], columns: list[str] | None) -> pd.DataFrame:
    """JSON rows as a frame. Built from Python objects, so no column is type-converted (no dates, no text turned into
    numbers); a column of integers with a missing cell keeps its integers (pandas made it float64: the number 5 was
    the text "5.0" to the tokenizer and in predict's output, and ids above 2**53 lost digits)."""
    frame = pd.DataFrame(rows)
    frame = frame if columns is None else frame.reindex(columns=columns)
    for name in [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]:
        values = [row.get(name) for row in rows]
        if all(v is None or type(v) is int for v in values):
            frame[name] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _parquet_chunks(path, ext, chunk_rows, csv_quoting, columns):
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        check_unique_columns(path, parquet.schema_arrow.names)
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
            yield _as_text(batch).to_pandas(integer_object_nulls=True)  # integers beside a missing cell stay so


def _as_text(table):
    """A parquet table or batch with its BINARY columns (how older Spark, Hive and Impala writers store strings) read
    as UTF-8 text where they are: they reached the texts and the label names as Python's spelling of bytes, "b'pos'"
    (bytes that are not text stay bytes: a thumbnail beside the text is no error, and a text or label column of them
    is refused where it is read). Dictionary columns (pandas categoricals, R factors) are read as their values:
    pandas' Categorical took no "" for a missing text, and predict stopped with a traceback."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
            field = table.schema.field(i)
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            with contextlib.suppress(pa.ArrowInvalid):
                table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    return table


def count_rows(path: str) -> int | None:
    """The number of rows of a data file, cheaply: from parquet metadata, or counted lines of csv/tsv/jsonl (exact
    unless quoted fields span lines). None for a JSON array, or a compressed file (counting would decompress it all
    once more). For progress bars."""
    ext, compression = data_format(path)
    if compression:
        return None
    if ext == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if ext == "json" and _is_json_array(path):
        return None
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(lines - (ext in ("csv", "tsv")), 0)
