"""Hints for a column name that is not in the data: the column meant, a header read with the wrong separator, and
two text columns given where one is read."""

from __future__ import annotations

import difflib
import re


def closest_hint(name: str, columns: list[str]) -> str:
    """A column that holds `name` as a word of its own (`text` → `review_text`), else one spelled nearly alike."""
    lowered = {str(c).lower(): c for c in columns}
    parts = [c for c in lowered if name.lower() in re.split(r"[\s_\-.]+", c)]
    match = parts or difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" Did you mean {lowered[match[0]]!r}?" if match else ""


def separator_hint(columns: list[str]) -> str:
    """A hint when the header was read as one column because the file is separated by something else (a
    semicolon-separated csv from a spreadsheet set to a European locale reads as the single column 'text;label')."""
    if len(columns) != 1:
        return ""
    for mark, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'"), (",", "commas")):
        if mark in str(columns[0]):
            return (
                f" The header looks separated by {name}: .csv files are read as comma-separated and .tsv as "
                "tab-separated, so save it with the separator its extension names."
            )
    return ""


def pair_hint(option: str, name: str, columns: list[str]) -> str:
    """`text_column_name: "sentence1,sentence2"` (two columns in one name, as some tools take them): the two fields
    that read a text pair, where "Did you mean 'sentence2'?" led to training on the second text alone."""
    parts = [part.strip() for part in re.split(r"[,;+]", name)]
    if option != "text_column_name" or len(parts) != 2 or not set(parts) <= set(columns):
        return ""
    return f" For a text pair, set text_column_name: {parts[0]} and text_pair_column_name: {parts[1]}."
