"""Markdown table rows whose cells may hold any text: a `|` in a label name or a regex would split the cell."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


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


_MARKUP = str.maketrans({c: "\\" + c for c in "\\`*[]<>"})


def markdown_text(value) -> str:
    """`value` (a label name: any text) as plain text in Markdown: one line, and the characters that would make it
    markup escaped. A label `pos <!--` opened an HTML comment that hid the rest of the card, `[x](https://...)` became
    a link, and a line break followed by `---` a heading. (`|` is `table_cell`'s to escape.)"""
    return " ".join(str(value).translate(_MARKUP).splitlines())


def label_list(names: list[str], limit: int = NAMED_LABELS) -> str:
    """`names` joined with commas, or the first `limit` and how many more, as plain text in Markdown."""
    shown = [markdown_text(name).replace("|", "\\|") for name in names]
    if len(shown) <= limit:
        return ", ".join(shown)
    return ", ".join(shown[:limit]) + f" and {len(shown) - limit} more"


# Past this many labels a table of labels or of per-label scores shows this many and says where the rest are (450
# labels gave a card 1,350 rows of per-label scores and `metrics.md` 903 columns), and a confusion picture's cells
# carry colour alone.
TABLE_LABELS = 30


def worst_labels(f1: Sequence[float], support: Sequence[int] | None, limit: int = TABLE_LABELS) -> list[int] | None:
    """Past `limit` labels, the ids (in id order) of the `limit` labels with the lowest F1: labels with rows before
    those without (whose F1 of 0 says nothing), then the more frequent. None when every label fits."""
    if len(f1) <= limit:
        return None
    support = support if support is not None and len(support) == len(f1) else [1] * len(f1)
    order = sorted(range(len(f1)), key=lambda i: (support[i] == 0, f1[i], -support[i], i))
    return sorted(order[:limit])
