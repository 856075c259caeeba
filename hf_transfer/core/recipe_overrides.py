"""A config file (a shipped recipe) run with the user's own model or data on the command line.

`base_model_hub_id` names the Hub id of the model `model_name_or_path` loads (a local copy), `dataset_hub_id` the Hub
dataset of the data files. A shipped recipe sets both for its own model and data; run with another model or other
data on the command line, the recipe's ids had gone on naming its own, in the card's metadata and model-index, in
the run record, and in `adapter_config.json`, where the base named could not take the adapter. A `--dataset_name`
flag replaces the recipe's data files (it was refused as two sources), and a recipe's data file that is not there is
named by its field, with the flag that replaces it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hf_transfer.core.arguments import data_file_problem
from hf_transfer.errors import DataError

FILE_FIELDS = ("train_file", "validation_file", "test_file")

# The fields whose data `dataset_hub_id` describes: another of them on the command line is other data (a test file's
# scores were published as the recipe dataset's test split).
DATA_FIELDS = ("train_file", "validation_file", "test_file", "dataset_name", "dataset_config_name")
# Config facts that tell two models apart without loading a weight.
SHAPE_FACTS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def note_origins(args, flags, variables: dict[str, list[str]]) -> None:
    """Give `args` (built from a mapping, as `search` builds its trials' arguments) the notes the command-line parser
    gives: which of its fields came as flags, and which from the config through environment variables."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(args)}
    built = {k: v for k, v in variables.items() if k in names}
    object.__setattr__(args, "flag_fields", frozenset(flags) & names)
    object.__setattr__(args, "config_variables", built)
    set_by_environment = frozenset(k for k, v in built.items() if any(os.environ.get(n) for n in v))
    object.__setattr__(args, "environment_fields", set_by_environment)


def _set_by_user(args, name: str) -> bool:
    """Whether `name` was given on the command line or through a set environment variable, not as the config file
    wrote it (arguments built in code carry neither note: treated as written)."""
    return name in (getattr(args, "flag_fields", None) or ()) or name in (
        getattr(args, "environment_fields", None) or ()
    )


def _from_file(args, name: str) -> bool:
    return getattr(args, name, None) is not None and not _set_by_user(args, name)


def settle_recipe_fields(command: str, model_args, data_args, distill_args=None) -> list[str]:
    """Drop a config file's `base_model_hub_id` or `dataset_hub_id` where the command line replaced what it
    describes; a model given through an environment variable is checked against the id where the Hub's config for
    it is cached, and otherwise named. For `distill` with a student cut from the teacher's blocks (`student_layers`),
    the model the id describes is the first teacher. The lines to say, once the run's input has passed its checks (a
    refusal stays one line)."""
    said: list[str] = []
    if data_args is not None:
        said += _data_from_the_command_line(command, data_args)
    if data_args is not None and _from_file(data_args, "dataset_hub_id"):
        flags = getattr(data_args, "flag_fields", None) or ()
        replaced = [name for name in DATA_FIELDS if name in flags]
        if replaced:
            said.append(
                f"hf-transfer {command}: dataset_hub_id {data_args.dataset_hub_id} (from the config) left out of the "
                f"card: --{replaced[0]} gives other data (add --dataset_hub_id with its Hub id if it has one)."
            )
            data_args.dataset_hub_id = None
    if model_args is None or not _from_file(model_args, "base_model_hub_id"):
        return said
    source, field = model_args, "model_name_or_path"
    model = model_args.model_name_or_path
    teachers = getattr(distill_args, "teacher_model_name_or_path", None)
    if not model and getattr(distill_args, "student_layers", None) is not None and teachers:
        source, field = distill_args, "teacher_model_name_or_path"
        model = teachers[0] if isinstance(teachers, (list, tuple)) else teachers
    if not model or str(model) == model_args.base_model_hub_id:
        return said
    hub_id, model = model_args.base_model_hub_id, str(model)
    if field in (getattr(source, "flag_fields", None) or ()):
        origin = f"--{field}"
    elif field in (getattr(source, "environment_fields", None) or ()):
        origin = "an environment variable"
    else:
        return said
    given = f"{origin} gives" if source is model_args else f"{origin} gives as the teacher the student is cut from"
    differs = _differing_shape(model, hub_id)
    if differs is None:  # a local copy of the id, offline, cannot be told from another model
        said.append(
            f"hf-transfer {command}: the card and any adapter name the base as {hub_id} (base_model_hub_id, from the "
            f"config) for the model {given} ({model}); if that is another model, add --base_model_hub_id with its "
            "Hub id, or null."
        )
        return said
    if not differs:
        return said
    why = f"the model {given} ({model}) is not it ({differs})"
    said.append(
        f"hf-transfer {command}: base_model_hub_id {hub_id} (from the config) left out of the card and records: "
        f"{why}; add --base_model_hub_id with that model's Hub id if it has one."
    )
    model_args.base_model_hub_id = None
    return said


def _data_from_the_command_line(command: str, data_args) -> list[str]:
    """A `--dataset_name` flag drops the config's data files (said); a config's data file that is not there is one
    line naming its field and the flag that replaces it (it named a path alone)."""
    flags = getattr(data_args, "flag_fields", None)
    if flags is None:  # built in code: nothing came from a file
        return []
    said = []
    if "dataset_name" in flags and data_args.dataset_name:
        dropped = [name for name in FILE_FIELDS if getattr(data_args, name, None) and name not in flags]
        for name in dropped:
            setattr(data_args, name, None)
        if dropped:
            said.append(
                f"hf-transfer {command}: --dataset_name {data_args.dataset_name} replaces the config's "
                f"{', '.join(dropped)}."
            )
    for name in FILE_FIELDS:
        path = getattr(data_args, name, None)
        if isinstance(path, str) and name not in flags and (problem := data_file_problem(path)):
            built = (getattr(data_args, "config_variables", None) or {}).get(name)
            variable = f", or set {' or '.join(built)} (its path is built from it)" if built else ""
            raise DataError(
                f"{name} {path!r} (from the config) {problem} (working directory {os.getcwd()!r}); give --{name} "
                f"PATH{variable}."
            )
    return said


def _differing_shape(model: str, hub_id: str) -> str | None:
    """How `model` (a local folder, or a Hub id) differs from the Hub's config of `hub_id` ('' when alike); None when
    either config cannot be read without the network."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return f"another Hub id, {model}"
    from hf_transfer.core.run_records import folder_hub_lineage

    lineage = folder_hub_lineage(str(folder))  # an hf-transfer model folder names the Hub model it stands for
    if lineage is not None and lineage != hub_id:
        return f"its card data names {lineage}"
    local, cached = _read_json(folder / "config.json"), _read_json(_cached_config(hub_id))
    if local is None or cached is None:
        return None
    facts = [k for k in SHAPE_FACTS if k in local and k in cached and local[k] != cached[k]]
    return "; ".join(f"its {k} is {local[k]!r}, the id's {cached[k]!r}" for k in facts)


def _cached_config(hub_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(hub_id, "config.json")
    except (ValueError, OSError):  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def _read_json(path: Path | None) -> dict | None:
    try:
        value = json.loads(path.read_bytes()) if path is not None else None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
