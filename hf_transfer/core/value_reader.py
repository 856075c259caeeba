"""Reading one field's value, from a config file or a flag: its text read as YAML, then converted for the field's type
as `HfArgumentParser` would convert it, every mistake an `argparse.ArgumentTypeError` that names the field."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import types
import typing
from typing import Any, Literal, Union

from hf_transfer.core.column_hints import closest_hint
from hf_transfer.core.field_notes import value_note
from hf_transfer.core.yaml_config import read_yaml, read_yaml_text


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


def _takes(hint: Any, kind: Any) -> bool:
    """Whether a field's type admits values of `kind` (list or dict, or exactly `list[str]`), at its top level."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    if typing.get_origin(kind) is not None:
        return kind in options
    return any(option is kind or typing.get_origin(option) is kind for option in options)


def _is_collection(value: Any) -> bool:
    return isinstance(value, (list, dict))


def nullable_field(field: dataclasses.Field, hint: Any) -> bool:
    """Whether null is a value of the field: its type says `| None`, or None is its default."""
    optional = typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)
    return optional or hint is Any or field.default is None


def _mixed_value(name: str, hint: Any, value: Any, text: str) -> Any:
    """A scalar for a field typed `X | str`. A choice (`eval_strategy`, `lr_scheduler_type`, `optim`: an Enum or
    str) must be one of its values, named here: TrainingArguments' own error named no field. A number for a field
    that takes no number is its text (a folder named `2024`; `accelerator_config: 5` had opened file descriptor 5),
    and true/false for one that takes no boolean is refused here (`report_to: false` and `teacher_model_name_or_path:
    true` had failed on "expected str instance" or "'bool' object is not iterable")."""
    options = [h for h in typing.get_args(hint) if h is not type(None)]
    choices = [m.value for h in options if isinstance(h, type) and issubclass(h, enum.Enum) for m in h]
    if choices:
        value = _choice_spelled(value, choices)
        if value not in choices or isinstance(value, bool):
            hint = closest_hint(value, list(map(str, choices))) if isinstance(value, str) else ""
            raise argparse.ArgumentTypeError(
                f"{name} expects one of {', '.join(map(str, choices))}; got {value!r}.{hint}"
            )
        return value
    literals = [v for h in options if typing.get_origin(h) is Literal for v in typing.get_args(h)]
    if isinstance(value, bool):
        if bool in options or any(v is value for v in literals):
            return value
        raise argparse.ArgumentTypeError(f"{name} expects {_describe(hint)}, got {value!r}.")
    if isinstance(value, (int, float)) and not ({int, float} & set(options)):
        return text.strip()
    return value


def _choice_spelled(value: Any, choices) -> Any:
    """The choice that `value` names in another case (`--format ONNX`, `--quantize INT8`), or `value` itself."""
    if not isinstance(value, str) or value in choices:
        return value
    same = [c for c in choices if isinstance(c, str) and c.lower() == value.strip().lower()]
    return same[0] if len(same) == 1 else value


# What a true/false field takes, in a config file and as a flag alike: YAML 1.2's true/false, and the spellings that
# HfArgumentParser's `string_to_bool` reads on the command line (`--bf16 yes`); not YAML 1.1's on/off.
BOOL_SPELLINGS = "true or false (or yes/no, y/n, t/f, 1/0, in any case)"


def value_reader(name: str, hint: Any, convert, choices, nullable: bool = True):
    """The `type` of a field's argparse action: the flag text read as YAML, then converted as HfArgumentParser
    would convert it (`convert`: int, float, string_to_bool, a choice mapper). Fields typed `X | str` (a value or a
    list, such as `freeze_layers`) get the YAML value itself and normalise it in `__post_init__`."""
    mixed = typing.get_origin(hint) in (Union, types.UnionType) and str in typing.get_args(hint)
    mixed = mixed and len([h for h in typing.get_args(hint) if h is not type(None)]) > 1

    takes_text = mixed or (convert in (None, str) and not _takes(hint, list) and not _takes(hint, dict))

    def read(text: str):
        value = read_yaml(text)
        if isinstance(value, str) and value != text and text.strip()[:1] in ("'", '"'):
            # Quoted, as a config file's text is passed on: `run_name: "null"` is the text null. A field that takes
            # no text reads what the quotes hold (`max_steps: "10"`, `label_mapping: ${MAP}`), but not as null.
            text = value
            if not takes_text and read_yaml(value) is not None:
                value = read_yaml(value)
        if value is None and text.strip() in ("null", "~", "None"):
            if nullable:
                return None
            raise argparse.ArgumentTypeError(
                f"{name} expects {_describe(hint)}, got null (a key with no value in the config file?); give a "
                "value, or leave the field out for its default."
            )
        if isinstance(value, list) and text.lstrip().startswith("-") and takes_text and not _takes(hint, list):
            return text  # `--output_file -`, `--run_name -x`: YAML's block list syntax, never meant in a flag
        if isinstance(value, (list, dict)):
            if mixed or _takes(hint, type(value)):
                if isinstance(value, list) and convert not in (None, str) and not mixed:
                    for item in value:  # a bad item (`[1,x]`) said argparse's "invalid float value", no field
                        try:
                            convert(str(item))
                        except (ValueError, TypeError):
                            kind = getattr(convert, "__name__", "value")
                            raise argparse.ArgumentTypeError(
                                f"{name} expects a list of {kind}; {item!r} in {value!r} is not one."
                            ) from None
                    return [convert(str(item)) for item in value]
                if isinstance(value, list) and _takes(hint, list[str]) and not any(map(_is_collection, value)):
                    return read_yaml_text(text)  # names: `[1e3, 010]` is ["1e3", "010"], not ["1000.0", "10"]
                if isinstance(value, dict) and _takes(hint, dict[str, str]):
                    # `label_mapping: {2: 010}` names the class "010", not "10"; its keys are values of the data
                    texts = read_yaml_text(text)
                    if len(texts) == len(value) and not any(map(_is_collection, value.values())):
                        return dict(zip(value, texts.values(), strict=True))
                return value
        elif mixed:
            return _mixed_value(name, hint, value, text)
        elif convert in (None, str):
            return text
        else:
            if isinstance(value, bool) and choices and str(value).lower() in choices:  # `--few_shot True`, as in YAML
                return str(value).lower()
            if isinstance(value, int) and not isinstance(value, bool):  # `0x10`, `1e3`, `.inf`: as YAML reads them
                text = str(value)
            elif isinstance(value, float):
                text = str(int(value)) if value.is_integer() else repr(value)
            elif choices:
                text = _choice_spelled(text.strip(), [str(c) for c in choices])
            try:
                result = convert(text)
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                result = None
            if result is not None and (choices is None or result in choices):
                return result
            if getattr(convert, "__name__", "") == "string_to_bool":  # HfArgumentParser's true/false reader
                raise argparse.ArgumentTypeError(f"{name} expects {BOOL_SPELLINGS}, got {value!r}.")
        raise argparse.ArgumentTypeError(f"{name} expects {_describe(hint)}, got {value!r}.{value_note(name, value)}")

    read.__name__ = getattr(convert, "__name__", "value")
    return read
