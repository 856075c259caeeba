"""The fonts of the pictures' label names: matplotlib's default, then fallback fonts for scripts it lacks (CJK,
emoji) where installed; names no installed font can draw are shown by their label id instead of as boxes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

# Fonts tried, in order, for characters the default font lacks (CJK, emoji), where installed.
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "Noto Sans CJK TC", "Source Han Sans",
                  "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei", "MS Gothic",
                  "Apple SD Gothic Neo", "Hiragino Sans", "PingFang SC", "Noto Color Emoji", "Noto Emoji",
                  "Segoe UI Emoji", "Apple Color Emoji")  # fmt: skip


def families() -> list[str]:
    """The font list for label names: matplotlib's default, then the installed fallback fonts."""
    from matplotlib import font_manager, rcParams

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return [*rcParams["font.sans-serif"][:1], *(name for name in FALLBACK_FONTS if name in installed)]


@functools.cache
def _drawable_characters(names: tuple[str, ...]) -> frozenset[int]:
    """The code points the fonts `names` hold, together."""
    from matplotlib import font_manager, ft2font

    found: set[int] = set()
    for name in names:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
            found.update(ft2font.FT2Font(path).get_charmap())
        except (ValueError, OSError, RuntimeError):
            continue
    return frozenset(found)


def drawable(text: str) -> bool:
    """Whether every visible character of `text` is in an installed font of `families()`."""
    held = _drawable_characters(tuple(families()))
    return all(ord(c) in held or c.isspace() or not c.isprintable() for c in text)


def by_id_where_undrawable(shown: Sequence[str]) -> list[str]:
    """Tick names, each that no installed font can draw as `id N` (its place in the model's label order): three
    Chinese labels were three rows of identical boxes. The JSON files and the card keep the names."""
    ticks = [name if drawable(name) else f"id {i}" for i, name in enumerate(shown)]
    if ticks != list(shown):
        say_undrawable()
    return ticks


def say_undrawable() -> None:
    """Once per process: some label names are drawn by id, or as boxes."""
    from hf_transfer.core.runtime import said_once

    if not said_once("glyphs"):
        logging.getLogger(__name__).warning(
            "some names use characters no installed font has (e.g. CJK or emoji): the pictures name such labels by "
            "their id (`id 0`, in the model's label order) or show boxes; the JSON files and the card have them "
            "whole (a Noto CJK font, once installed, is used)."
        )
