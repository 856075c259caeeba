"""Which columns are meant: hints for a column name that is not in the data (the column meant, a header read with the
wrong separator, two text columns given where one is read), and GLUE's text pairs read as pairs."""

from __future__ import annotations

import difflib
import logging
import re

logger = logging.getLogger(__name__)

TEXT_COLUMN_CANDIDATES = ("text", "sentence", "review", "content")


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


# GLUE's text-pair columns (MRPC, RTE, STS-B; QQP; MNLI; QNLI): data with them is read as pairs. QNLI's `sentence`
# alone had been taken as the text, and its questions dropped, silently.
PAIR_COLUMN_CANDIDATES = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                          ("question", "sentence"))  # fmt: skip


def read_glue_pair(args, columns, source: str) -> None:
    """With neither text column set, training data holding one of GLUE's pairs of text columns (and no other text
    column such as `text`) is read as text pairs (said in one line). With the first of such a pair set as the text
    column and no pair column, the partner left unread is said. `args`: the DataArguments, whose text columns are
    set; `source`: the field that named the data."""
    if args.text_pair_column_name:
        return
    columns = set(columns)
    found = next((pair for pair in PAIR_COLUMN_CANDIDATES if set(pair) <= columns), None)
    if args.text_column_name:  # `sentence1` named, its GLUE partner beside it: read alone, and said so
        if found and args.text_column_name in found:
            logger.warning(
                f"{source} has GLUE's text pair {found[0]!r} and {found[1]!r}, but only {args.text_column_name!r} "
                f"is read; set text_column_name: {found[0]} and text_pair_column_name: {found[1]} to read them as "
                "text pairs."
            )
        return
    if found and not (set(TEXT_COLUMN_CANDIDATES) - set(found)) & columns:  # a `text` column beside: single texts
        args.text_column_name, args.text_pair_column_name = found
        logger.warning(
            f"reading text pairs from columns {found[0]!r} and {found[1]!r} of {source}; set text_column_name (and "
            "text_pair_column_name) to read others."
        )
