"""Config files and flag values read as YAML 1.2 (only true/false are booleans, `010` is 10, `1e-4` is a number),
with `${VAR}` and `${VAR:-default}` expanded in a file's strings, every mistake a one-line `ConfigError`."""

from __future__ import annotations

import codecs
import json
import os
import re
from pathlib import Path
from typing import Any

from hf_transfer.errors import ConfigError


def _yaml_integer(loader, node) -> int:
    """A YAML 1.2 integer: decimal whatever its leading zeros (`010` is 10), `0o` octal, `0x` hexadecimal."""
    text = loader.construct_scalar(node).replace("_", "")
    sign, body = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    base = {"0o": 8, "0x": 16}.get(body[:2].lower(), 10)
    return sign * int(body[2:] if base != 10 else body, base)


# YAML 1.2's floats (a dot or an exponent; `1e-4` too), `.inf` and `.nan`; not 1.1's sexagesimal `1:30.5`.
_YAML_FLOAT = re.compile(
    r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def _yaml_loader():
    """A SafeLoader that reads booleans and integers as YAML 1.2 does: only true/false are booleans, so
    `save_strategy: no` stays "no"; `010` is 10, not YAML 1.1's octal 8 (a zero-padded label code in `label_mapping`
    would have matched another row), and `1:30` is text, not the sexagesimal 90. `1e-4` is a float, as in YAML 1.2
    and JSON, not YAML 1.1's string: `class_weights: {pos: 1e1}` and `peft_config: {lora_dropout: 1e-1}` were refused
    or passed on as text."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    replaced = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in replaced]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:int",
        re.compile(r"^(?:[-+]?[0-9][0-9_]*|[-+]?0[oO][0-7][0-7_]*|[-+]?0[xX][0-9a-fA-F][0-9a-fA-F_]*)$"),
        list("-+0123456789"),
    )
    Loader.add_constructor("tag:yaml.org,2002:int", _yaml_integer)
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_FLOAT, list("-+0123456789."))

    def flatten_mapping(loader, node):
        # `<<: *defaults` (a merge key): the keys written in the mapping itself, for the check below; merged ones
        # may be overridden there. `<<` had been "could not determine a constructor for the tag ...merge".
        if not hasattr(node, "own_pairs"):
            node.own_pairs = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        yaml.SafeLoader.flatten_mapping(loader, node)

    Loader.flatten_mapping = flatten_mapping

    def mapping(loader, node, deep=False):
        # PyYAML keeps the last of two equal keys, silently: a field set twice is almost always a mistake.
        seen: dict = {}
        if any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value):
            loader.flatten_mapping(node)
        for key_node, _ in getattr(node, "own_pairs", node.value):
            key = loader.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):  # `[a, b]: 1` was a TypeError traceback (unhashable)
                kind = "a list" if isinstance(key, list) else "a mapping"
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a field name, not {kind}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is set twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def read_yaml(text: str) -> Any:
    """A flag's value read as YAML; text that is not valid YAML stays text."""
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError:
        return text


def read_yaml_text(text: str) -> Any:
    """Valid YAML read with every scalar as its text, quotes taken off (`[1e3, '010', x]` is ["1e3", "010", "x"])."""
    import yaml

    return yaml.load(text, Loader=yaml.BaseLoader)


# `${VAR}`, `${VAR:-default}`, the escape `$${` (a literal `${`), and any other `${`: a form this does not read.
_ENV_VAR = re.compile(r"\$\$\{|\$\{(\w+)(?::-([^}]*))?\}|\$\{[^}]{0,40}\}?")


# Variables that hold secrets by the end of their name (HF_TOKEN, AWS_SECRET_ACCESS_KEY, DB_PASSWORD, OPENAI_API_KEY;
# not MAX_TOKEN_LENGTH, PASSWORD_FILE, CREDENTIALS_DIR or AWS_ACCESS_KEY_ID).
_SECRET_VARIABLE = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|API_?KEY|SECRET_?KEY|SECRET_ACCESS_KEY|PRIVATE_KEY)$", re.I
)


def _expand_env(value: Any, path: str, field: str, variables: dict[str, list[str]] | None = None) -> Any:
    """`${VAR}` and `${VAR:-default}` in YAML strings, so shipped configs can point at data and models anywhere. As
    in the shell, the default also replaces a variable that is set but empty (`HF_TRANSFER_DATA_DIR=` had made
    `${HF_TRANSFER_DATA_DIR:-../shared/data}/sst2` the root's `/sst2`). Another form (`${VAR-x}`, `${VAR:=x}`, a
    nested `${A:-${B}}`) had stayed in the value as text, silently; it is refused. `variables` gathers the names
    of the variables each top-level field's value was built from."""
    if isinstance(value, dict):
        return {k: _expand_env(v, path, f"{field}.{k}", variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, path, field, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if match.group(0) == "$${":
            return "${"
        if name is None or (default is not None and "${" in default):
            raise ConfigError(
                f"config file {path!r}: {field} has {match.group(0)!r}, which this does not read; write ${{VAR}} or "
                "${VAR:-default} (and $${ for a literal ${)."
            )
        if _SECRET_VARIABLE.search(name):
            raise ConfigError(
                f"config file {path!r}: {field} uses ${{{name}}}, a secret: its value would be written into the run's "
                "config, records and card, and pushed with them; remove it (the Hub token is read from HF_TOKEN or "
                "`hf auth login` by hf-transfer itself)."
            )
        if variables is not None:
            variables.setdefault(field.split(".", 1)[0].replace("-", "_"), []).append(name)
        if os.environ.get(name):
            return os.environ[name]
        if default is not None:
            return default
        if name in os.environ:
            return ""
        raise ConfigError(f"config file {path!r} uses ${{{name}}} but that environment variable is not set.")

    return _ENV_VAR.sub(substitute, value)


def _config_text(path: str) -> str:
    """The file's text: UTF-8, with or without a byte-order mark, or UTF-16 with one (what Windows PowerShell's `>`
    and Notepad's "Unicode" write). Another encoding is one line naming the first bad byte's line, not a
    UnicodeDecodeError traceback."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"config file {path!r} cannot be read: {err.strerror or err}.") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {path!r} is not UTF-8 text (byte {raw[err.start]:#04x} on line {line}); save it as UTF-8."
        ) from None


def load_config_file(
    path: str, variables: dict[str, list[str]] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's {field: value}, and {field: text} of its values written as plain numbers. `variables` gathers
    {field: names of the environment variables its value was built from} (`${HF_TRANSFER_MODEL:-...}`)."""
    import yaml

    if Path(path).is_dir():
        raise ConfigError(f"config file {path!r} is a folder; give the YAML file in it, e.g. --config {path}/x.yaml.")
    if not Path(path).exists():  # not `is_file()`: `--config <(envsubst < c.yaml)` is a pipe
        raise ConfigError(f"config file {path!r} does not exist.")
    loader = _yaml_loader()(_config_text(path))
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if problem == "but found another document":  # PyYAML's words, missing their first half
            message = f"config file {path!r} holds more than one YAML document (a '---'{where}); keep one."
            raise ConfigError(message) from None
        if "'\\t'" in problem:
            problem += " (YAML indents and separates with spaces, not tabs)"
        raise ConfigError(f"config file {path!r} is not valid YAML{where}: {problem}.") from None
    finally:
        loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of field: value, got a {type(data).__name__}.")
    if "config" in data:  # it would reach the parser as `--config`, which is read only on the command line
        raise ConfigError(f"config file {path!r} sets config: {data['config']!r}, but config files do not nest.")
    fields: dict[str, str] = {}
    for key in map(str, data):  # `learning_rate` and `learning-rate` are one field: the last had won, silently
        if (name := key.replace("-", "_")) in fields:
            raise ConfigError(f"config file {path!r} sets {name} twice, as {fields[name]!r} and {key!r}.")
        fields[name] = key
    values = {str(k).replace("-", "_"): _expand_env(v, path, str(k), variables) for k, v in data.items()}
    return values, _numbers_as_written(node, values)


def _numbers_as_written(node, values: dict[str, Any]) -> dict[str, str]:
    """{field: flag text} for each top-level value that is, or is a flat list or mapping holding, a number written
    plain (`run_name: 1e3`, `hub_model_id: 0x10`, `class_names: [1e3, neg]`, `label_mapping: {2: 010}`): a field that
    takes text keeps the text as written, not the number's `str` ("1000.0", "16"). The node's pairs are those the
    mapping was built from (merged keys first), so the last of a key is the one kept, as in the mapping."""
    import yaml

    written = {}
    for name, value in {str(key.value).replace("-", "_"): value for key, value in node.value}.items():
        if _plain_number(value):
            written[name] = value.value
        elif isinstance(value, yaml.SequenceNode) and any(map(_plain_number, value.value)):
            if all(isinstance(item, yaml.ScalarNode) for item in value.value) and isinstance(values.get(name), list):
                items = zip(value.value, values[name], strict=True)
                written[name] = "[" + ", ".join(_as_written(i, v) for i, v in items) + "]"
        elif isinstance(value, yaml.MappingNode) and any(_plain_number(v) for _, v in value.value):
            # `label_mapping: {2: 010}`: a flat mapping's numbers as written (its value names the class "010")
            pairs, held = value.value, values.get(name)
            flat = all(isinstance(n, yaml.ScalarNode) for pair in pairs for n in pair)
            if flat and isinstance(held, dict) and len(held) == len(pairs):
                items = zip(pairs, held.items(), strict=True)
                text = (f"{_as_written(k, key)}: {_as_written(v, item)}" for (k, v), (key, item) in items)
                written[name] = "{" + ", ".join(text) + "}"
    return written


def _plain_number(node) -> bool:
    import yaml

    return isinstance(node, yaml.ScalarNode) and node.style is None and node.tag in _NUMBER_TAGS


def _as_written(node, value: Any) -> str:
    """A scalar's flow text: a number as written in the file, anything else as the value it was read as."""
    return node.value if _plain_number(node) else _flow_scalar(value)


_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})


def _flow_scalar(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return as_flag_value(value)


def dump_yaml(value: Any, **options) -> str:
    """`yaml.safe_dump`, quoting every string that this module's loader would read as something else: PyYAML writes
    the string "1e-5" plain (YAML 1.1 reads it as text), which the loader reads as a number."""
    import yaml

    ours, pyyaml = _yaml_loader().yaml_implicit_resolvers, yaml.SafeDumper.yaml_implicit_resolvers

    class Dumper(yaml.SafeDumper):  # quoted too: what PyYAML's own safe_load reads otherwise (`no` is False there)
        yaml_implicit_resolvers = {key: [*ours.get(key, []), *pyyaml.get(key, [])] for key in {*ours, *pyyaml}}

    options = {"allow_unicode": True, "width": 1 << 20, **options}  # a path as written, on one line
    return yaml.dump(value, Dumper=Dumper, **options)


def as_flag_value(value: Any) -> str:
    """A config value written as the flag text that means the same (lists and mappings in YAML flow style)."""
    if isinstance(value, (list, dict)):
        return dump_yaml(value, default_flow_style=True, width=1 << 20).strip()
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, str) and read_yaml(value) != value:
        # Text that reads as something else (`run_name: "null"`, `"1e3"`, `"a: b"`) is quoted, as in the file:
        # the quoted "null" had become None. JSON's double-quoted strings are YAML's.
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# Fields that name a file or folder, beside those named `*_file`, `*_dir` or `*name_or_path` (`extra_eval` as
# NAME=FILE, or a mapping of them).
PATH_FIELDS = frozenset(
    {"pretrained", "finetuned", "dataset_name", "model_dir", "path", "extra_eval", "tokenizer_name",
     "teacher_tokenizer_name", "resume_from_checkpoint", "head_init"}
)  # fmt: skip


def is_path_field(name: str) -> bool:
    """Whether the field `name` names a file or folder on this machine (or a Hub id where one works)."""
    return name in PATH_FIELDS or (name.endswith(("_file", "_dir", "name_or_path")) and name != "overwrite_output_dir")


def expand_home(name: str, value):
    """`value` of the field `name` with a leading `~` read as the home folder, where it names a file or folder: the
    shell leaves `--output_file=~/p.csv` as it is, and YAML never expands it, so `predict` wrote into a folder named
    `~` under the working directory (and `model_name_or_path: ~/m` was not found) while `train` read `output_dir`
    through transformers, which expands it. `extra_eval`'s files are read so where its forms are parsed."""
    if not is_path_field(name) or name == "extra_eval":
        return value
    if isinstance(value, list):
        return [expand_home(name, item) for item in value]
    return os.path.expanduser(value) if isinstance(value, str) and value.startswith("~") else value
