"""Reading a command's configuration: a YAML file of `field: value` and `--field value` flags (flags win, values
read as YAML) parsed by `HfArgumentParser` into argument dataclasses, every mistake a one-line `ConfigError`. The CLI
parses each command with it; `hf-transfer search` parses each trial's config with it, exactly as `train` would."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import re
import typing
from pathlib import Path
from typing import Any

from hf_transfer.core.field_notes import ACCELERATE_KEYS, field_help, field_note, missing_value
from hf_transfer.core.folders import CONFIG_FILE
from hf_transfer.core.help_layout import arrange_help
from hf_transfer.core.recipe_overrides import note_origins
from hf_transfer.core.value_reader import nullable_field, value_reader
from hf_transfer.core.yaml_config import as_flag_value, expand_home, load_config_file, read_yaml
from hf_transfer.errors import ConfigError, HfTransferError

logger = logging.getLogger(__name__)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds a field's default to its help only where that says something: not for an unset (None) field, a
    `--no_X` switch, or a help text that states its default itself."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or isinstance(action, argparse._StoreFalseAction) or "default" in text.lower():
            return text
        return super()._get_help_string(action)


# Keys a run writes into its `hf_transfer_config.yaml` beside the settings (distill's results), skipped when that file
# is given back as `--config`.
RECORDED_RESULTS = frozenset({"distillation_results"})
# A search's best_config.yaml records the search its settings came from: no setting either, kept on the last object.
CHOSEN_BY_SEARCH = "chosen_by_search"


class CommandParser:
    """`HfArgumentParser` for one command's dataclasses, with `--config FILE.yaml` (flags win over the file), flag
    values read as YAML, and every mistake raised as a one-line `ConfigError`.

    `positional` names the field that a first argument which is not a flag, or one after a final `--`, fills
    (`hf-transfer push DIR`). A dataclass whose class attribute `other_fields` names an attribute (an `init=False`
    dict) receives there every config value and flag that is none of the command's fields: `hf-transfer search` takes
    its trials' train config that way and parses each trial with `parse_config`."""

    def __init__(self, dataclass_types, command: str, positional=None, owners=None, usage=None, required=()):
        from transformers import HfArgumentParser

        class _Parser(HfArgumentParser):
            argv: list[str] = []  # what is being parsed, to name the token that was read as a flag

            def error(self, message: str):
                missing = re.match(r"^argument (--[\w-]+)(/--[\w-]+)*: expected (at least )?one argument", message)
                if missing:  # argparse's "expected one argument" would not say which field
                    raise ConfigError(missing_value(missing.group(1), self.argv))
                message = re.sub(r"^argument --[\w-]+(/--[\w-]+)*: ", "", message)
                raise ConfigError(message)

        self.command = command
        self.positional = positional
        # `owners(name)`: the other commands that have a field `name`, for the message about a field of theirs.
        self.owners = owners or (lambda name: [])
        self.config_file, self.file_keys, self.config_variables = None, frozenset(), {}
        self.dataclass_types = list(dataclass_types)
        self.parser = _Parser(
            self.dataclass_types, prog=f"hf-transfer {command}", allow_abbrev=False, formatter_class=_HelpFormatter
        )
        self.parser.add_argument(
            "--config", metavar="CONFIG.yaml", help="YAML file of field: value; flags override it."
        )
        self.hints, nullable = {}, {}
        for dtype in self.dataclass_types:
            resolved = typing.get_type_hints(dtype)
            self.hints.update({f.name: resolved[f.name] for f in dataclasses.fields(dtype) if f.init})
            nullable.update({f.name: nullable_field(f, resolved[f.name]) for f in dataclasses.fields(dtype) if f.init})
        for action in self.parser._actions:
            if action.dest in self.hints and action.option_strings[0].startswith(f"--{action.dest}"):
                hint = self.hints[action.dest]
                action.type = value_reader(action.dest, hint, action.type, action.choices, nullable[action.dest])
                if action.choices and not all(str(choice) in (action.help or "") for choice in action.choices):
                    # argparse showed them as the metavar; without `choices` the help must say them (all of them:
                    # transformers' own list, e.g. log_level's, leaves some out)
                    text = re.sub(r"\s*\b(Options:|Must be one of)[^.]*\.", "", action.help or "")
                    action.help = f"{text} One of: {', '.join(map(str, action.choices))}.".strip()
                action.choices = None  # checked by the reader, with a message naming the field
            if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0] == f"--no_{action.dest}":
                # HfArgumentParser gives `--no_X` the help of `--X`, which then says the opposite of what it does.
                action.help = f"Turn {action.dest} off: the same as --{action.dest} false."
            if action.dest in self.hints:  # what a field does here, where transformers' text says otherwise
                action.help = field_help(self.command, action.dest, action.help)
            if action.help and "%" in action.help and "%(" not in action.help:  # "10% warm-up" is text, "~20%%" too
                action.help = re.sub(r"(?<!%)%(?!%)", "%%", action.help)  # argparse formats help with %
        arrange_help(self.parser, self.dataclass_types, usage, required)
        self.collector = next((d for d in self.dataclass_types if getattr(d, "other_fields", None)), None)
        if self.collector is not None and self.collector.__doc__:  # `--help` lists only its own fields: say so
            self.parser.description = " ".join(self.collector.__doc__.split())

    def print_help(self) -> None:
        self.parser.print_help()

    def parse(self, argv: list[str]) -> tuple:
        """The dataclasses from `[--config FILE.yaml] [--field value ...]`."""
        if self.positional and argv and not argv[0].startswith("-"):
            argv = [f"--{self.positional}", *argv]
        elif self.positional and argv[-2:-1] == ["--"] and argv.count("--") == 1:  # `push -- -dir`
            argv = [*argv[:-2], f"--{self.positional}={argv[-1]}"]
        locate = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
        locate.add_argument("--config", action="append")
        try:
            located, flags = locate.parse_known_args(argv)
        except argparse.ArgumentError:  # `--config` last, with no file after it
            raise ConfigError(missing_value("--config", argv)) from None
        files = located.config or [None]
        if len(files) > 1:  # the last had been read and the others dropped without a word
            raise ConfigError(
                f"--config is given {len(files)} times ({', '.join(files)}); config files are not layered: give one, "
                "and set what differs as --field value flags, which override it."
            )
        if files[0] is not None and not files[0].strip():
            raise ConfigError("--config is empty; give the path of a YAML file of field: value.")
        variables: dict[str, list[str]] = {}
        config, written = load_config_file(expand_home("config_file", files[0]), variables) if files[0] else ({}, {})
        self.config_file, self.file_keys, self.config_variables = files[0], frozenset(config), variables
        # A run's own `hf_transfer_config.yaml` fed back: the results it records are no settings.
        chosen = config.get(CHOSEN_BY_SEARCH)
        config = {k: v for k, v in config.items() if k not in RECORDED_RESULTS | {CHOSEN_BY_SEARCH}}
        objects = self._parse(config, flags, written)
        object.__setattr__(objects[-1], CHOSEN_BY_SEARCH, chosen)  # not a field: not saved with the arguments
        return objects

    def parse_config(self, values: dict[str, Any], as_written: dict[str, tuple] | None = None) -> tuple:
        """The dataclasses from a mapping of field: value, read as the same mapping in a `--config` file would be
        (`as_written`, a collector's `other_written` {field: (number, text)}, is that file's text of its numbers)."""
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        written = {k: text for k, (value, text) in (as_written or {}).items() if k in values and values[k] == value}
        return self._parse(values, [], written)

    def _parse(self, config: dict[str, Any], flags: list[str], written: dict[str, str] | None = None) -> tuple:
        other: dict[str, Any] = {}
        written = written or {}
        if self.collector is not None:
            other = {k: v for k, v in config.items() if k not in self.hints}
            config = {k: v for k, v in config.items() if k in self.hints}
            flags, flag_values, flag_text = self._split_other_flags(flags)
            other.update(flag_values)
            texts = {**{k: t for k, t in written.items() if k not in flag_values}, **flag_text}  # `run_name: 1e3`
            other_written = {k: (v, texts[k]) for k, v in other.items() if k in texts}
        given = {token[2:].split("=", 1)[0].replace("-", "_") for token in flags if token.startswith("--")}
        self._say_repeated_flags(flags)
        # One token per config value, `--name=value`: a value that begins with '-' is not read as a flag.
        # A number keeps its text as written (`run_name: 1e3` is "1e3", not "1000.0"), read as the flag would be.
        tokens = [f"--{k}={written.get(k) or as_flag_value(v)}" for k, v in config.items() if k not in given]
        self.parser.argv = tokens + flags
        for key in config:  # `"seed=3": 1` had been read as the flag --seed=3=1, `${X}: 1` as a field of that name
            if not re.fullmatch(r"[A-Za-z_]\w*", key):
                raise ConfigError(self._unknown(f"--{key}", config))
        namespace, unknown = self.parser.parse_known_args(tokens + flags)
        if unknown:
            raise ConfigError(self._unknown(unknown[0], config))
        values = vars(namespace)
        for action in self.parser._actions:  # `--x [a, b]` for a list field arrives as [[a, b]]
            value = values.get(action.dest)
            if action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction):
                if isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value):
                    flat = [item for v in value for item in (v if isinstance(v, list) else [v])]
                    values[action.dest] = flat[0] if len(flat) == 1 and isinstance(flat[0], dict) else flat
                elif value == [None]:  # `--x null` (or `x: null` in the file): the field's null, not a list of it
                    values[action.dest] = None
        _refuse_the_hub_token({**other, **values})
        objects = []
        for dtype in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(dtype) if f.init}
            try:
                objects.append(dtype(**{k: expand_home(k, v) for k, v in values.items() if k in names}))
            except HfTransferError:
                raise
            except (ValueError, TypeError, ImportError) as err:  # ImportError: `--deepspeed` without deepspeed
                raise ConfigError(" ".join(str(err).split())) from None
            except OSError as err:  # TrainingArguments reads `--accelerator_config FILE.json` itself: a traceback
                raise ConfigError(f"{err.strerror or err}: {err.filename!r}.") from None
            if dtype is self.collector:
                flagged = frozenset(flag_values)  # `other_flags`: those given on the command line
                variables = {k: v for k, v in self.config_variables.items() if k in other and k not in flagged}
                vars(objects[-1]).update(
                    {dtype.other_fields: other, "other_written": other_written, "other_flags": flagged,
                     "other_variables": variables}  # `${VAR}` names each of those fields' values was built from
                )  # fmt: skip
            # Which fields the user set (config or flag), for defaults that depend on other choices: an adapter's
            # learning rate applies only when learning_rate was not given. Not a dataclass field, so not saved.
            object.__setattr__(objects[-1], "given_fields", frozenset(names & (set(config) | given)))
            # Those on the command line, and those the config built from environment variables (and which of them
            # are set): `flag_fields`, `config_variables`, `environment_fields`.
            note_origins(objects[-1], given, {k: v for k, v in self.config_variables.items() if k not in given})
            # What "set but ignored" warnings speak of: a run's own record fed back (`--config run/hf_transfer_config
            # .yaml`) holds every field, those at their default no choice of the user's (lora_r had been warned of).
            chosen = set(config) | given
            if self.config_file and Path(self.config_file).name == CONFIG_FILE:
                defaults = {f.name: f.default for f in dataclasses.fields(dtype) if f.init}
                chosen = {n for n in chosen if n in given or values.get(n) != defaults.get(n, dataclasses.MISSING)}
            object.__setattr__(objects[-1], "chosen_fields", frozenset(names & chosen))
        return tuple(objects)

    def _say_repeated_flags(self, flags: list[str]) -> None:
        """argparse keeps the last of a flag given twice, without a word: a sweep may rely on that, so it is said,
        not refused. Flags that collect values (`--extra_eval` given twice adds two sets) are not repeats."""
        collecting = {a.dest for a in self.parser._actions if isinstance(a, argparse._AppendAction)}
        seen: dict[str, list[str]] = {}
        for i, token in enumerate(flags):
            if not token.startswith("--") or token == "--":
                continue
            name, eq, value = token[2:].partition("=")
            name = name.replace("-", "_")
            if not eq:
                value = flags[i + 1] if i + 1 < len(flags) and not flags[i + 1].startswith("--") else "true"
            seen.setdefault(name, []).append(value)
        for name, values in seen.items():
            if len(values) > 1 and name not in collecting and name != "config":
                logger.warning("--%s is given %d times (%s); the last, %s, is used.", name, len(values),
                               ", then ".join(values), values[-1])  # fmt: skip

    def _split_other_flags(self, flags: list[str]) -> tuple[list[str], dict[str, Any], dict[str, str]]:
        """The flags of the command's own fields, the others as {field: value read as YAML}, and the text of those
        that are numbers; a bare flag of a true/false field the collector names (`other_switches`) sets it, as
        HfArgumentParser does."""
        own, other, text, i = [], {}, {}, 0
        switches = self.collector.other_switches() if hasattr(self.collector, "other_switches") else frozenset()
        while i < len(flags):
            token = flags[i]
            name = token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") else None
            own_switch = name is not None and name.startswith("no_") and name[3:] in self.hints  # `--no_prune`
            if not name or name in self.hints or own_switch or name in ("config", "help"):
                own.append(token)
            elif "=" in token or (i + 1 < len(flags) and not flags[i + 1].startswith("--")):
                text[name], i = (token.split("=", 1)[1], i) if "=" in token else (flags[i + 1], i + 1)
                other[name] = read_yaml(text[name])
            elif name in switches:
                other[name] = True
            elif name.startswith("no_") and name[3:] in switches:
                other[name[3:]] = False
            else:
                raise ConfigError(missing_value(f"--{name}", flags))
            i += 1
        return own, other, {k: t for k, t in text.items() if type(other[k]) in (int, float)}

    def _unknown(self, token: str, config: dict[str, Any]) -> str:
        if not token.startswith("--") or len(token) == 2:
            return f"unexpected argument {token!r}; fields are given as --name value."
        name = token[2:].replace("-", "_") if token[2:] in config else token[2:].split("=", 1)[0].replace("-", "_")
        owners = [c for c in self.owners(name) if c != self.command]
        if owners:  # a real field, of another command: a near name of ours would mislead
            where = f" (from {self.config_file}, a config for {owners[0]})" if name in self.file_keys else ""
            named = " and ".join([", ".join(owners[:-1]), owners[-1]] if len(owners) > 1 else owners)
            return (
                f"{name!r} is a field of {named}, not of {self.command}{where}. "
                f"Run `hf-transfer {self.command} --help` for the fields it takes."
            )
        if name in self.file_keys and name in ACCELERATE_KEYS:
            return (
                f"{name!r} (in {self.config_file}) is a setting of accelerate's own config, not a field of "
                f"{self.command}: give that file to `accelerate launch --config_file FILE -m hf_transfer "
                f"{self.command} --config CONFIG.yaml`."
            )
        nested = config.get(name) if name in self.file_keys else None
        inside = [k for k in nested if str(k).replace("-", "_") in self.hints] if isinstance(nested, dict) else []
        if inside:  # `training_args: {learning_rate: ...}`, `model: {model_name_or_path: ...}`
            return (
                f"unknown field {name!r} in {self.config_file}: config files are flat, with every field at the top "
                f"level; move {', '.join(map(str, inside[:3]))} out of {name!r}."
            )
        last = name.rsplit(".", 1)[-1]  # `training.seed`: a dotted path of another tool's nested config
        close = [last] if last in self.hints else difflib.get_close_matches(name, list(self.hints), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else f" Run `hf-transfer {self.command} --help` for the fields."
        if "${" in name:
            hint = " ${VAR} is expanded in values, not in field names."
        return f"unknown field {name!r}.{field_note(name, self.hints, self.command) or hint}"


def _refuse_the_hub_token(values: dict[str, Any]) -> None:
    """No field holds the user's Hub token (a shell's `--run_name $HF_TOKEN`, a config's value pasted in): every field
    is written into the run's config, records and card, which `push` publishes."""
    from huggingface_hub import get_token

    token = get_token()
    if not token or len(token) < 8:
        return

    def holds(value) -> bool:
        if isinstance(value, dict):
            return any(holds(k) or holds(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return any(holds(v) for v in value)
        return isinstance(value, str) and token in value

    for name, value in values.items():
        if holds(value):
            raise ConfigError(
                f"{name} holds your Hugging Face token: it would be written into the run's config, records and card, "
                "and pushed with them; remove it (hf-transfer reads the token from HF_TOKEN or `hf auth login`)."
            )
