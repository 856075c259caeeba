"""Config files and flag values read as YAML 1.2 (only true/false are booleans, `010` is 10), with `${VAR}` and
`${VAR:-default}` expanded in a file's strings, every mistake a one-line `ConfigError`."""

from __future__ import annotations

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


def _yaml_loader():
    """A SafeLoader that reads booleans and integers as YAML 1.2 does: only true/false are booleans, so
    `save_strategy: no` stays "no"; `010` is 10, not YAML 1.1's octal 8 (a zero-padded label code in `label_mapping`
    would have matched another row), and `1:30` is text, not the sexagesimal 90."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    replaced = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"}
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

    def mapping(loader, node, deep=False):
        # PyYAML keeps the last of two equal keys, silently: a field set twice is almost always a mistake.
        seen: dict = {}
        for key_node, _ in node.value:
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


def load_config_file(path: str) -> dict[str, Any]:
    import yaml

    if Path(path).is_dir():
        raise ConfigError(f"config file {path!r} is a folder; give the YAML file in it, e.g. --config {path}/x.yaml.")
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
    if "config" in data:  # it would reach the parser as `--config`, which is read only on the command line
        raise ConfigError(f"config file {path!r} sets config: {data['config']!r}, but config files do not nest.")
    return {str(k).replace("-", "_"): _expand_env(v, path) for k, v in data.items()}


def as_flag_value(value: Any) -> str:
    """A config value written as the flag text that means the same (lists and mappings in YAML flow style)."""
    import yaml

    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)
