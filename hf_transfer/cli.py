"""The `hf-transfer` command line: a YAML config and `--field value` flags parsed by `HfArgumentParser` into each
command's argument dataclasses, then a table of commands. The only module that prints."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from hf_transfer.errors import ConfigError, DiskFullError, HfTransferError

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


def _train():
    from hf_transfer.adapters.arguments import AdapterArguments
    from hf_transfer.core.arguments import DataArguments, ModelArguments
    from hf_transfer.train.arguments import TransferTrainingArguments
    from hf_transfer.train.command import run_train

    return (ModelArguments, DataArguments, AdapterArguments, TransferTrainingArguments), run_train


def _distill():
    from hf_transfer.adapters.arguments import AdapterArguments
    from hf_transfer.core.arguments import DataArguments, ModelArguments
    from hf_transfer.distill.arguments import DistillationArguments
    from hf_transfer.distill.command import run_distill
    from hf_transfer.train.arguments import TransferTrainingArguments

    dataclasses = (ModelArguments, DataArguments, DistillationArguments, AdapterArguments, TransferTrainingArguments)
    return dataclasses, run_distill


def _evaluate():
    from hf_transfer.evaluation.arguments import EvaluateArguments
    from hf_transfer.evaluation.command import run_evaluate

    return (EvaluateArguments,), run_evaluate


def _merge():
    from hf_transfer.merge.arguments import MergeArguments
    from hf_transfer.merge.command import run_merge

    return (MergeArguments,), run_merge


def _card():
    from hf_transfer.outputs.arguments import CardArguments
    from hf_transfer.outputs.commands import run_card

    return (CardArguments,), run_card


def _push():
    from hf_transfer.outputs.arguments import PushArguments
    from hf_transfer.outputs.commands import run_push

    return (PushArguments,), run_push


# Each command's argument dataclasses and entry point, imported only when the command runs (so `--help` is quick).
COMMANDS: dict[str, typing.Callable[[], tuple[tuple, typing.Callable]]] = {
    "train": _train,
    "distill": _distill,
    "evaluate": _evaluate,
    "merge": _merge,
    "card": _card,
    "push": _push,
}
# Commands whose first argument, when it is not a flag, is a field: `hf-transfer push DIR ...`.
POSITIONAL = {"card": "model_dir", "push": "model_dir"}


# --- YAML -----------------------------------------------------------------------------------------------------------


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


def _read_yaml(text: str) -> Any:
    """A flag's value read as YAML; text that is not valid YAML stays text."""
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError:
        return text


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
        data = yaml.load(Path(path).read_text(), Loader=_yaml_loader())
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


def _as_flag_value(value: Any) -> str:
    """A config value written as the flag text that means the same (lists and mappings in YAML flow style)."""
    import yaml

    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


# --- the parser -----------------------------------------------------------------------------------------------------


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _takes(hint: Any, kind: type) -> bool:
    """Whether a field's type admits values of `kind` (list or dict), at its top level."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    return any(option is kind or typing.get_origin(option) is kind for option in options)


def _value_reader(name: str, hint: Any, convert, choices):
    """The `type` of a field's argparse action: the flag text read as YAML, then converted as HfArgumentParser
    would convert it (`convert`: int, float, string_to_bool, a choice mapper). Fields typed `X | str` (a value or a
    list, such as `freeze_layers`) get the YAML value itself and normalise it in `__post_init__`."""
    mixed = typing.get_origin(hint) in (Union, types.UnionType) and str in typing.get_args(hint)
    mixed = mixed and len([h for h in typing.get_args(hint) if h is not type(None)]) > 1

    def read(text: str):
        value = _read_yaml(text)
        if value is None and text.strip() in ("null", "~", "None"):
            return None
        if isinstance(value, (list, dict)):
            if mixed or _takes(hint, type(value)):
                if isinstance(value, list) and convert not in (None, str) and not mixed:
                    return [convert(str(item)) for item in value]
                return value
        elif mixed:
            return value
        elif convert in (None, str):
            return text
        else:
            try:
                result = convert(text if not isinstance(value, float) or not value.is_integer() else str(int(value)))
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                result = None
            if result is not None and (choices is None or result in choices):
                return result
        raise argparse.ArgumentTypeError(f"{name} expects {_describe(hint)}, got {value!r}.")

    read.__name__ = getattr(convert, "__name__", "value")
    return read


class CommandParser:
    """`HfArgumentParser` for one command's dataclasses, with `--config FILE.yaml` (flags win over the file), flag
    values read as YAML, and every mistake raised as a one-line `ConfigError`."""

    def __init__(self, dataclass_types, command: str):
        from transformers import HfArgumentParser

        class _Parser(HfArgumentParser):
            def error(self, message: str):
                message = re.sub(r"^argument --[\w-]+(/--[\w-]+)*: ", "", message)
                message = re.sub(r"^expected one argument$", "a value is missing", message)
                raise ConfigError(message)

        self.command = command
        self.dataclass_types = list(dataclass_types)
        self.parser = _Parser(self.dataclass_types, prog=f"hf-transfer {command}", allow_abbrev=False)
        self.parser.add_argument(
            "--config", metavar="CONFIG.yaml", help="YAML file of field: value; flags override it."
        )
        self.hints = {}
        for dtype in self.dataclass_types:
            resolved = typing.get_type_hints(dtype)
            self.hints.update({f.name: resolved[f.name] for f in dataclasses.fields(dtype) if f.init})
        for action in self.parser._actions:
            if action.dest in self.hints and action.option_strings[0].startswith(f"--{action.dest}"):
                action.type = _value_reader(action.dest, self.hints[action.dest], action.type, action.choices)
                action.choices = None  # checked by the reader, with a message naming the field

    def print_help(self) -> None:
        self.parser.print_help()

    def parse(self, argv: list[str]) -> tuple:
        if self.command in POSITIONAL and argv and not argv[0].startswith("-"):
            argv = [f"--{POSITIONAL[self.command]}", *argv]
        locate = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        locate.add_argument("--config")
        located, flags = locate.parse_known_args(argv)
        config = _load_config_file(located.config) if located.config else {}
        given = {token[2:].split("=", 1)[0].replace("-", "_") for token in flags if token.startswith("--")}
        tokens = [part for k, v in config.items() if k not in given for part in (f"--{k}", _as_flag_value(v))]
        namespace, unknown = self.parser.parse_known_args(tokens + flags)
        if unknown:
            raise ConfigError(self._unknown(unknown[0]))
        values = vars(namespace)
        for action in self.parser._actions:  # `--x [a, b]` for a list field arrives as [[a, b]]
            value = values.get(action.dest)
            if action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction):
                if isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
                    flat = [item for v in value for item in (v if isinstance(v, list) else [v])]
                    values[action.dest] = flat[0] if len(flat) == 1 and isinstance(flat[0], dict) else flat
        objects = []
        for dtype in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(dtype) if f.init}
            try:
                objects.append(dtype(**{k: v for k, v in values.items() if k in names}))
            except HfTransferError:
                raise
            except (ValueError, TypeError) as err:
                raise ConfigError(" ".join(str(err).split())) from None
        return tuple(objects)

    def _unknown(self, token: str) -> str:
        if not token.startswith("--") or len(token) == 2:
            return f"unexpected argument {token!r}; fields are given as --name value."
        name = token[2:].split("=", 1)[0].replace("-", "_")
        close = difflib.get_close_matches(name, list(self.hints), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else f" Run `hf-transfer {self.command} --help` for the fields."
        return f"unknown field {name!r}.{hint}"


def parse_command_args(command: str, argv: list[str]) -> tuple:
    """Parse `--config file.yaml` plus `--field value` flags into the command's dataclasses."""
    return CommandParser(COMMANDS[command]()[0], command).parse(argv)


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
    dataclass_types, entry_point = COMMANDS[command]()
    if "-h" in rest or "--help" in rest:
        CommandParser(dataclass_types, command).print_help()
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = entry_point(*CommandParser(dataclass_types, command).parse(rest))
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
