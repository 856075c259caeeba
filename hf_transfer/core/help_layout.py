"""How `hf-transfer COMMAND --help` is laid out: the command line as the design fixes it for the usage line, the
required fields first, then each argument dataclass's fields under its own heading, with the ~120 fields inherited
from transformers' `TrainingArguments` last (they came first and buried the project's own)."""

from __future__ import annotations

import argparse
import dataclasses

# Headings of the argument dataclasses' fields (class name -> heading); a class not named here keeps its fields under
# "options".
GROUP_TITLES = {
    "ModelArguments": "model",
    "DataArguments": "data",
    "AdapterArguments": "adapter (PEFT)",
    "DistillationArguments": "distillation",
    "TransferTrainingArguments": "transfer learning (freezing, LR decay, class weights, calibration, LP-FT, early "
    "stopping, few-shot route)",
}
# The heading of fields a dataclass inherits from a dataclass base (TrainingArguments).
INHERITED_TITLE = "training: transformers' {base}"


def _groups(dataclass_types) -> dict[str, str]:
    """field name -> the heading it is listed under."""
    title_of = {}
    for dtype in dataclass_types:
        title = GROUP_TITLES.get(dtype.__name__)
        if title is None:
            continue
        base = next((b for b in dtype.__mro__[1:] if dataclasses.is_dataclass(b)), None)
        inherited = {f.name for f in dataclasses.fields(base)} if base is not None else set()
        for f in dataclasses.fields(dtype):
            title_of[f.name] = INHERITED_TITLE.format(base=base.__name__) if f.name in inherited else title
    return title_of


def arrange_help(parser: argparse.ArgumentParser, dataclass_types, usage: str | None, required=()) -> None:
    """Sets `parser`'s usage line and moves its field options under headings: "required" first, then one per
    dataclass in the order given, inherited fields last."""
    if usage:
        parser.usage = usage
    options = parser._optionals
    title_of = _groups(dataclass_types)
    headed: dict[str, list[argparse.Action]] = {"required": []}
    kept = []
    for action in options._group_actions:
        title = "required" if action.dest in required else title_of.get(action.dest)
        if title is None:
            kept.append(action)
        else:
            headed.setdefault(title, []).append(action)
    options._group_actions[:] = kept
    headed["required"].sort(key=lambda action: list(required).index(action.dest))
    inherited = [title for title in headed if title.startswith(INHERITED_TITLE.split("{")[0])]
    order = ["required", *[t for t in headed if t != "required" and t not in inherited], *inherited]
    groups = []
    for title in order:
        if not headed[title]:
            continue
        group = parser.add_argument_group(title)
        group._group_actions.extend(headed[title])
        parser._action_groups.remove(group)
        groups.append(group)
    # "required" ahead of the general options (-h, --config), the other headings after them
    first = [g for g in groups if g.title == "required"]
    parser._action_groups[:] = [*first, *parser._action_groups, *[g for g in groups if g.title != "required"]]
