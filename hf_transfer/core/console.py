"""What a command prints: its results block, and besides it what `log_level` and `disable_tqdm` set, which `train`
and `distill` take from `TrainingArguments` and the other long commands (evaluate, predict, export, merge) take as
these fields."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# The levels `TrainingArguments.log_level` takes; `passive` leaves each library at its own (warnings).
LOG_LEVELS = ("detail", "debug", "info", "warning", "error", "critical", "passive")
QUIET_LEVELS = ("error", "critical")


@dataclass
class ConsoleArguments:
    log_level: Literal["detail", "debug", "info", "warning", "error", "critical", "passive"] = field(
        default="passive",
        metadata={
            "help": "What is logged besides the results and errors, as TrainingArguments' log_level: info adds "
            "hf-transfer's notes, error leaves out its warnings and transformers' (passive: warnings)."
        },
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "Show no progress bars."})


def chosen_log_level(parsed) -> str:
    """The log_level among a command's parsed argument objects (`passive` when none takes one)."""
    levels = [str(getattr(a, "log_level", "") or "").lower() for a in parsed]
    return next((level for level in levels if level in LOG_LEVELS), "passive")


def unencodable_as_escapes() -> None:
    """A label the console's encoding lacks (an emoji under cp936, a combining accent under ascii) is printed as an
    escape: it raised UnicodeEncodeError after the run had written everything, exit status 1."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def _padded(key: str, width: int = 28) -> str:
    """`key` padded to `width` columns as a terminal shows it: a Chinese or Japanese character takes two."""
    import unicodedata

    shown = sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in key)
    return key + " " * max(width - shown, 0)


def print_results(command: str, result: dict) -> None:
    """A command's results block on stdout: its scores and facts, one a line, then its table if it has one."""
    if not result:
        return
    table = result.pop("table", None)
    print(f"\n== hf-transfer {command}: results ==")
    result = _fold_per_label_scores(result)
    for key, value in result.items():
        if isinstance(value, float):
            print(f"  {_padded(key)} {value:.4f}")
        elif isinstance(value, (int, str)):
            print(f"  {_padded(key)} {value}")
    if table:
        print("\n" + table.rstrip())


# Past this many labels, the results list each split's per-label scores (3 lines a label) as one line.
PER_LABEL_LINES = 10
_PER_LABEL = re.compile(r"^((?:[a-z]+_)?)(precision|recall|f1)_(.+)$")


def _fold_per_label_scores(result: dict) -> dict:
    """`result` with each split's per-label precision, recall and F1 folded into one line naming the lowest F1s,
    when there are more than PER_LABEL_LINES labels (120 labels printed 360 lines) and a file written keeps them
    all (a run's results files; `evaluate --output_file`): else they are listed."""
    if "output_dir" in result:
        where = str(Path(result["output_dir"]) / "all_results.json")
    elif "metrics_file" in result:
        where = result["metrics_file"]
    else:
        return result
    per_label: dict[str, dict[str, float]] = {}
    for key, value in result.items():
        found = _PER_LABEL.match(key) if isinstance(value, float) else None
        if found and found.group(3) not in ("macro", "micro", "weighted"):
            per_label.setdefault(found.group(1), {})[key] = value
    lines = {}  # the first per-label key of a folded split -> (the line's key, the line)
    for prefix, scores in per_label.items():
        f1 = {key[len(prefix) + 3 :]: v for key, v in scores.items() if key.startswith(f"{prefix}f1_")}
        if len(f1) > PER_LABEL_LINES:
            # F1 0: no row right, or no row at all (a class absent from the split): named apart from the lowest.
            zero = [name for name, value in f1.items() if value == 0]
            lowest = sorted((kv for kv in f1.items() if kv[1] > 0), key=lambda kv: kv[1])[:3]
            line = f"{len(f1)} labels, all in {where}; lowest F1: " + ", ".join(f"{n} {v:.4f}" for n, v in lowest)
            line += f"; F1 0 (none right, or no rows): {len(zero)}, e.g. {', '.join(zero[:3])}" if zero else ""
            lines |= dict.fromkeys(scores, None) | {next(iter(scores)): (f"{prefix}per_label_scores", line)}
    folded = {}
    for key, value in result.items():
        if key not in lines:
            folded[key] = value
        elif lines[key] is not None:  # where the split's per-label scores began
            folded[lines[key][0]] = lines[key][1]
    return folded
