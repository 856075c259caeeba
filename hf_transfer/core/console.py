"""What a command prints besides its results: `log_level` and `disable_tqdm`, which `train` and `distill` take from
`TrainingArguments` and the other long commands (evaluate, predict, export, merge) take as these fields."""

from __future__ import annotations

from dataclasses import dataclass, field
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
