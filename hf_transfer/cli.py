"""The `hf-transfer` command line: parse YAML and flags, validate, dispatch. The only module that prints."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from .config import INT_OR_LIST_FIELDS, REPEATABLE_FIELDS, ConfigError, DiskFullError, HfTransferError

USAGE = """usage: hf-transfer <command> [--config CONFIG.yaml] [--field value ...]

Transfer learning for Hugging Face models.

commands:
  train      fine-tune a pretrained model: freezing, gradual unfreezing, layer-wise LR decay, or a PEFT adapter
  distill    distil fine-tuned teacher(s) into a smaller student (α·soft + (1−α)·hard loss)
  evaluate   evaluate a model folder or Hub id on a labelled file, and on more sets with --extra_eval NAME=FILE
  merge      interpolate pretrained and fine-tuned weights (WiSE-FT), at one α or the best of a validated sweep
  card       (re)write DIR/README.md, the model card, from what a run folder holds: hf-transfer card DIR
  push       upload a run folder to the Hub: hf-transfer push DIR --hub_model_id NAME [--private] [--revision B]

Run `hf-transfer <command> --help` for every field of a command. Flags override the YAML config; values are read as
YAML, so `--freeze_layers 4`, `--freeze_layers [0,1,2]` and `--bf16 true` all work.
"""


def _train_dataclasses():
    from transformers import TrainingArguments  # noqa: F401  (imported for its side effect on logging set-up)

    from .config import AdapterArguments, DataArguments, ModelArguments, TransferTrainingArguments

    return (ModelArguments, DataArguments, AdapterArguments, TransferTrainingArguments)


def _distill_dataclasses():
    from transformers import TrainingArguments  # noqa: F401

    from .config import (
        AdapterArguments,
        DataArguments,
        DistillationArguments,
        ModelArguments,
        TransferTrainingArguments,
    )

    return (ModelArguments, DataArguments, DistillationArguments, AdapterArguments, TransferTrainingArguments)


def _evaluate_dataclasses():
    from .config import EvaluateArguments

    return (EvaluateArguments,)


def _merge_dataclasses():
    from .config import MergeArguments

    return (MergeArguments,)


def _card_dataclasses():
    from .config import CardArguments

    return (CardArguments,)


def _push_dataclasses():
    from .config import PushArguments

    return (PushArguments,)


COMMANDS: dict[str, tuple[typing.Callable, str]] = {
    "train": (_train_dataclasses, "train"),
    "distill": (_distill_dataclasses, "distill"),
    "evaluate": (_evaluate_dataclasses, "evaluate"),
    "merge": (_merge_dataclasses, "merge"),
    "card": (_card_dataclasses, "card"),
    "push": (_push_dataclasses, "push"),
}
# Commands whose first argument, when it is not a flag, is a field: `hf-transfer push DIR ...`.
POSITIONAL = {"card": "model_dir", "push": "model_dir"}


# --- parsing --------------------------------------------------------------------------------------------------------


def _yaml_loader():
    """A SafeLoader that reads only true/false as booleans (YAML 1.2), so `save_strategy: no` stays "no"."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


def _yaml_load(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=_yaml_loader())


def _read_yaml(value: str) -> Any:
    import yaml

    try:
        return _yaml_load(value)
    except yaml.YAMLError:
        return value


def _split_flags(argv: list[str]) -> tuple[str | None, dict[str, Any]]:
    """`--config X --a 1 --b=[0,1] --flag` -> ("X", {"a": 1, "b": [0, 1], "flag": True})."""
    config_path, values, i = None, {}, 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"unexpected argument {token!r}; fields are given as --name value.")
        name, eq, inline = token[2:].partition("=")
        name = name.replace("-", "_")
        if eq:
            raw, i = inline, i + 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            raw, i = argv[i + 1], i + 2
        else:
            raw, i = "true", i + 1
        if name == "config":
            config_path = raw
        elif name in REPEATABLE_FIELDS and name in values:
            previous = values[name] if isinstance(values[name], list) else [values[name]]
            values[name] = [*previous, _read_yaml(raw)]
        else:
            values[name] = _read_yaml(raw)
    return config_path, values


_ENV_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _expand_env(value: Any, path: str) -> Any:
    """`${VAR}` and `${VAR:-default}` in YAML strings, so shipped configs can point at data and models anywhere."""
    if isinstance(value, dict):
        return {k: _expand_env(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, path) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(f"config file {path!r} uses ${{{name}}} but that environment variable is not set.")
        return default

    return _ENV_VAR.sub(substitute, value)


def _load_config_file(path: str) -> dict[str, Any]:
    import yaml

    if not Path(path).is_file():
        raise ConfigError(f"config file {path!r} does not exist.")
    try:
        data = _yaml_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path!r} is not valid YAML{where}: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of field: value, got a {type(data).__name__}.")
    return {str(k).replace("-", "_"): _expand_env(v, path) for k, v in data.items()}


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a YAML value to a field's declared type, or raise ConfigError naming the field and the value."""
    if value is None or hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        members = [h for h in args if h is not type(None)]
        for member in members:  # an exact type match wins over a conversion
            if isinstance(member, type) and type(value) is member:
                return value
        for member in members:
            try:
                return _coerce(name, value, member)
            except ConfigError:
                continue
    elif origin is Literal:
        for choice in args:
            if value == choice or str(value) == str(choice):
                return choice
    elif origin in (list, tuple):
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_coerce(name, v, args[0]) if args else v for v in items]
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
    elif hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "on"):
            return True
        if str(value).lower() in ("false", "no", "0", "off"):
            return False
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        if str(value) in [str(m.value) for m in hint]:
            return str(value)
    else:
        return value
    raise ConfigError(f"{name} expects {_describe(hint)}, got {value!r}.")


def _build_parser(dataclass_types, command: str):
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types, prog=f"hf-transfer {command}")
    parser.add_argument("--config", metavar="CONFIG.yaml", help="YAML file of field: value; flags override it.")
    return parser


def parse_command_args(command: str, argv: list[str]) -> tuple:
    """Parse `--config file.yaml` plus `--field value` flags into the command's dataclasses."""
    dataclass_types = COMMANDS[command][0]()
    if command in POSITIONAL and argv and not argv[0].startswith("-"):
        argv = [f"--{POSITIONAL[command]}", *argv]
    config_path, flags = _split_flags(argv)
    values = _load_config_file(config_path) if config_path else {}
    values.update(flags)
    hints = {}
    for dtype in dataclass_types:
        type_hints = typing.get_type_hints(dtype)
        hints.update({f.name: type_hints[f.name] for f in dataclasses.fields(dtype) if f.init})
    unknown = [k for k in values if k not in hints]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(hints), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else f" Run `hf-transfer {command} --help` for the fields."
        raise ConfigError(f"unknown field {name!r}.{hint}")
    values = {k: v if k in INT_OR_LIST_FIELDS else _coerce(k, v, hints[k]) for k, v in values.items()}
    parser = _build_parser(dataclass_types, command)
    try:
        return parser.parse_dict(values)
    except HfTransferError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(" ".join(str(err).split())) from None


# --- entry point ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        print(
            f"hf-transfer: error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}.{hint}",
            file=sys.stderr,
        )
        return 2
    if "-h" in rest or "--help" in rest:
        _build_parser(COMMANDS[command][0](), command).print_help()
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        parsed = parse_command_args(command, rest)
        from . import workflows

        result = getattr(workflows, f"run_{command}")(*parsed)
    except HfTransferError as err:
        print(f"hf-transfer {command}: error: {err}", file=sys.stderr)
        return 2
    except DiskFullError as err:
        print(f"hf-transfer {command}: error: {err}", file=sys.stderr)
        return 1
    warning = result.pop("warning", None) if isinstance(result, dict) else None
    _report(command, result)
    if warning:
        print(f"hf-transfer {command}: warning: {warning}", file=sys.stderr)
    return 0


def _report(command: str, result: dict) -> None:
    if not result:
        return
    table = result.pop("table", None)
    print(f"\n== hf-transfer {command}: results ==")
    for key, value in result.items():
        if isinstance(value, float):
            print(f"  {key:<28} {value:.4f}")
        elif isinstance(value, (int, str)):
            print(f"  {key:<28} {value}")
    if table:
        print("\n" + table.rstrip())


if __name__ == "__main__":
    sys.exit(main())
