"""Markdown table rows whose cells may hold any text: a `|` in a label name or a regex would split the cell."""

from __future__ import annotations

from collections.abc import Iterable


def table_cell(value) -> str:
    """`value` as one table cell: `|` escaped, line breaks turned into spaces."""
    return " ".join(str(value).replace("|", "\\|").splitlines())


def table_row(cells: Iterable) -> str:
    """One table line, `| a | b |`, from any values."""
    return "| " + " | ".join(table_cell(value) for value in cells) + " |"


def table_cells(rows: Iterable[Iterable]) -> list[list[str]]:
    """Every row's cells escaped, for a template that joins them with ` | `."""
    return [[table_cell(value) for value in r] for r in rows]


# A card's sentences name at most this many labels (150 intents made the opening line a paragraph of names; the
# card's label table lists the first 30 and says where the rest are).
NAMED_LABELS = 10


def label_list(names: list[str], limit: int = NAMED_LABELS) -> str:
    """`names` joined with commas, or the first `limit` and how many more."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
