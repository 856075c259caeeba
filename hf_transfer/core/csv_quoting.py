"""Whether a csv/tsv file's quotes are CSV quoting (cells that may span lines, as Blitzer's) or text (GLUE's SST-2,
whose sentences hold stray quotes and whose every record is one line)."""

from __future__ import annotations

import csv
import io
import re


def detect_quoting(text: str, sep: str, cut: bool = False) -> int:
    """QUOTE_NONE when every record is one physical line and some `"` cannot be CSV quoting (GLUE's SST-2); else
    standard quoting, whose quoted fields may span lines (Blitzer). `cut`: `text` is the start of a longer file."""
    if '"' not in text:
        return csv.QUOTE_MINIMAL
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    width = lines[0].count(sep)
    if any(line.count(sep) != width for line in lines[1:]):
        return csv.QUOTE_MINIMAL
    stray = any('"' in field and not _is_quoted_field(field) for line in lines for field in line.split(sep))
    spans = _standard_csv(text, sep, cut, width + 1) if stray else None
    # One column: no separator count tells a cell over lines. Wider, only a comma file is read as CSV whose closed
    # cells span lines, where the separator counts agreed line by line by chance ("Great fit, true\nto size"): a
    # tab file is GLUE's kind, whose stray quotes can pair up across lines and would swallow the rows between.
    if spans is not None and (width == 0 or (spans and sep == ",")):
        return csv.QUOTE_MINIMAL
    return csv.QUOTE_NONE if stray else csv.QUOTE_MINIMAL


def _standard_csv(text: str, sep: str, cut: bool, fields: int) -> bool | None:
    """Whether a record of `text` spans lines, read as standard CSV in which every quote opens or closes a cell, or
    doubles one inside it, and every record has `fields` fields; None if it is not such CSV. A file whose quoted
    cells span lines (`"line1\nline2"`, as Excel, pandas and `csv` write them) was read with QUOTE_NONE, each cell
    as two rows with their quote marks. A sample `cut` inside a cell parses up to the cut, and that unclosed cell is
    no evidence; a whole file whose last quote never closes is not standard CSV."""
    reader = csv.reader(io.StringIO(text), delimiter=sep, strict=True)
    spans, line = False, 0
    try:
        for row in reader:
            if row and len(row) != fields:
                return None
            spans, line = spans or (bool(row) and reader.line_num - line > 1), reader.line_num
    except csv.Error as err:
        return spans if cut and "unexpected end of data" in str(err) else None
    return spans


def _is_quoted_field(field: str) -> bool:
    return len(field) >= 2 and field[0] == field[-1] == '"' and '"' not in field[1:-1].replace('""', "")


def ends_in_an_open_cell(text: str, sep: str) -> bool:
    """`text` parses as standard CSV up to a quoted cell still open at its end: the start of a file whose sample was
    cut inside a cell, which only more of the file tells from a stray quote."""
    try:
        for _ in csv.reader(io.StringIO(text), delimiter=sep, strict=True):
            pass
    except csv.Error as err:
        return "unexpected end of data" in str(err)
    return False
