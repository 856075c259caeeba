"""The `hf-transfer` command line: a table of commands, each parsed from a YAML config and `--field value` flags into
its argument dataclasses by `core.parsing.CommandParser` (`HfArgumentParser`). The only module that prints."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import signal
import sys
import time
import typing

from hf_transfer import __version__
from hf_transfer.core.console import (
    QUIET_LEVELS,
    ConsoleArguments,
    chosen_log_level,
    print_results,
    unencodable_as_escapes,
)
from hf_transfer.core.folder_lock import folders_held
from hf_transfer.core.memory import start_command_accounts
from hf_transfer.core.parsing import CommandParser
from hf_transfer.core.runtime import (
    is_launched_main_process,
    launched_world_size,
    leaves_the_process_as_found,
    progress_bars_off,
    quiet_other_processes,
    signals_as_interrupts,
)
from hf_transfer.core.scratch import new_folders_removed_if_empty, scratch_of_the_command
from hf_transfer.core.yaml_config import expand_home
from hf_transfer.errors import (
    STORAGE_REMEDY,
    DiskFullError,
    HfTransferError,
    Terminated,
    TrainingDivergedError,
    one_line,
    storage_failure,
)

USAGE = """usage: hf-transfer <command> [--config CONFIG.yaml] [--field value ...]

Transfer learning for Hugging Face models.

commands:
  train      fine-tune a pretrained model: freezing, gradual unfreezing, layer-wise LR decay, or a PEFT adapter
  distill    distil fine-tuned teacher(s) into a smaller student (α·soft + (1−α)·hard loss)
  evaluate   evaluate a model folder or Hub id on a labelled file, and on more sets with --extra_eval NAME=FILE
  predict    label a file (csv, jsonl, parquet out) with a model, adapter or ONNX folder, streaming it in chunks
  export     export a model to ONNX, optionally int8, checked against PyTorch: hf-transfer export DIR --format onnx
  merge      interpolate pretrained and fine-tuned weights (WiSE-FT), at one α or the best of a validated sweep
  card       (re)write DIR/README.md, the model card, from what a run folder holds: hf-transfer card DIR
  push       upload a run folder to the Hub: hf-transfer push DIR --hub_model_id NAME [--private] [--revision B]
  search     Optuna search over a train or distill config: hf-transfer search --config C.yaml --n_trials N

Run `hf-transfer <command> --help` for every field of a command. Flags override the YAML config; values are read as
YAML, so `--freeze_layers 4`, `--freeze_layers [0,1,2]` and `--bf16 true` all work. `hf-transfer --version` prints
the version.
"""


def _train():
    from hf_transfer.train.command import TRAIN_ARGUMENTS, run_train

    return TRAIN_ARGUMENTS, run_train


def _distill():
    from hf_transfer.distill.command import DISTILL_ARGUMENTS, run_distill

    return DISTILL_ARGUMENTS, run_distill


def _evaluate():
    from hf_transfer.evaluation.arguments import EvaluateArguments
    from hf_transfer.evaluation.command import run_evaluate

    return (EvaluateArguments, ConsoleArguments), run_evaluate


def _predict():
    from hf_transfer.predict.arguments import PredictArguments
    from hf_transfer.predict.command import run_predict

    return (PredictArguments, ConsoleArguments), run_predict


def _export():
    from hf_transfer.export.arguments import ExportArguments
    from hf_transfer.export.command import run_export

    return (ExportArguments, ConsoleArguments), run_export


def _merge():
    from hf_transfer.merge.arguments import MergeArguments
    from hf_transfer.merge.command import run_merge

    return (MergeArguments, ConsoleArguments), run_merge


def _card():
    from hf_transfer.outputs.arguments import CardArguments
    from hf_transfer.outputs.commands import run_card

    return (CardArguments,), run_card


def _push():
    from hf_transfer.outputs.arguments import PushArguments
    from hf_transfer.outputs.commands import run_push

    return (PushArguments,), run_push


def _search():
    from hf_transfer.search.arguments import SearchArguments
    from hf_transfer.search.command import run_search

    return (SearchArguments,), run_search


# Each command's argument dataclasses and entry point, imported only when the command runs (so `--help` is quick).
COMMANDS: dict[str, typing.Callable[[], tuple[tuple, typing.Callable]]] = {
    "train": _train,
    "distill": _distill,
    "evaluate": _evaluate,
    "predict": _predict,
    "export": _export,
    "merge": _merge,
    "card": _card,
    "push": _push,
    "search": _search,
}
# Commands whose first argument, when it is not a flag, is a field: `hf-transfer push DIR ...`.
POSITIONAL = {"card": "model_dir", "push": "model_dir", "export": "model_dir"}


def commands_with_field(name: str) -> list[str]:
    """The commands that take a field `name` (for the error about a field given to the wrong command)."""
    return [
        c for c, load in COMMANDS.items() if any(name in {f.name for f in dataclasses.fields(d)} for d in load()[0])
    ]


# Each command's usage line, as the design fixes the command line (`%(prog)s` is `hf-transfer COMMAND`).
USAGES = {
    "train": "%(prog)s --config CONFIG.yaml [--any_field VALUE ...]",
    "distill": "%(prog)s --config CONFIG.yaml [--any_field VALUE ...]",
    "evaluate": "%(prog)s --model_name_or_path DIR_OR_ID --validation_file FILE [--extra_eval NAME=FILE ...] "
    "[--text_column_name C] [--label_column_name C] [--output_file metrics.json] [--any_field VALUE ...]",
    "predict": "%(prog)s --model_name_or_path DIR_OR_ID --input_file FILE --output_file OUT.csv|.jsonl|.parquet "
    "[--text_column_name C] [--batch_size N] [--top_k K] [--any_field VALUE ...]",
    "export": "%(prog)s DIR --format onnx [--quantize int8] [--output_dir OUT] [--any_field VALUE ...]",
    "search": "%(prog)s --config CONFIG.yaml [--n_trials N] [--timeout S] [--metric NAME] "
    "[--direction maximize|minimize] [--any_field VALUE ...]",
    "merge": "%(prog)s --pretrained DIR_OR_ID --finetuned DIR [--alpha A | --alphas 0,0.25,0.5,0.75,1 "
    "--validation_file FILE] --output_dir DIR [--any_field VALUE ...]",
    "card": "%(prog)s DIR [--any_field VALUE ...]",
    "push": "%(prog)s DIR --hub_model_id NAME [--private] [--revision BRANCH] [--any_field VALUE ...]",
}
# The fields a command cannot run without, listed first in its help.
REQUIRED = {
    "evaluate": ("model_name_or_path", "validation_file"),
    "predict": ("model_name_or_path", "input_file", "output_file"),
    "export": ("model_dir", "format"),
    "merge": ("pretrained", "finetuned", "output_dir"),
    "card": ("model_dir",),
    "push": ("model_dir", "hub_model_id"),
}


def command_parser(command: str, dataclass_types) -> CommandParser:
    return CommandParser(
        dataclass_types, command, POSITIONAL.get(command), commands_with_field, USAGES.get(command),
        REQUIRED.get(command, ()),
    )  # fmt: skip


def parse_command_args(command: str, argv: list[str]) -> tuple:
    """Parse `--config file.yaml` plus `--field value` flags into the command's dataclasses."""
    return command_parser(command, COMMANDS[command]()[0]).parse(argv)


# --- entry point ----------------------------------------------------------------------------------------------------


# Commands that do their work in one process: under `accelerate launch` with several, the others stand by.
ONE_PROCESS_COMMANDS = frozenset({"evaluate", "predict", "export", "merge", "card", "push"})

# What an interrupted command leaves that a rerun can use.
RESUME_HINTS = {
    "train": " Checkpoints already saved in output_dir, if any, resume with --resume_from_checkpoint true.",
    "distill": " Checkpoints already saved in output_dir, if any, resume with --resume_from_checkpoint true.",
    "search": " Rerun the same command to resume the study; finished trials are kept.",
}


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    if from_shell:
        unencodable_as_escapes()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] == "help":  # `hf-transfer help train`, as git and pip take it (a typo: the hint)
        argv = [argv[1], "--help"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        # Asked for, the usage is the answer (stdout, 0); with no command at all it is an error (stderr, 2). Under a
        # launcher, the main process prints it (as every answer below), not each process.
        print(USAGE, file=sys.stdout if argv else sys.stderr) if is_launched_main_process() else None
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):  # was "unknown command '--version'", exit 2
        print(f"hf-transfer {__version__}") if is_launched_main_process() else None
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        if is_launched_main_process():  # once under a launcher, as the refusals in `_stopped`
            print(
                f"hf-transfer: error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}.{hint}",
                file=sys.stderr,
            )
        return _refused()
    status = None
    with signals_as_interrupts() as received:
        try:
            result = _run(command, rest)
        except BaseException as err:
            status = _stopped(command, err, received)
    if status is not None:
        if from_shell and status in (130, 143):  # a second Ctrl-C while exiting printed two tracebacks from the
            for signum in (signal.SIGINT, signal.SIGTERM):  # clean-up it cut short: now it ends the process quietly
                signal.signal(signum, signal.SIG_DFL)  # (a hung exit stays stoppable; the next run tidies up)
        return status
    if isinstance(result, int):
        return result
    if not is_launched_main_process():  # under `accelerate launch`, one results block, not one per process
        return 0
    warning = result.pop("warning", None) if isinstance(result, dict) else None
    print_results(command, result)
    if warning:
        print(f"hf-transfer {command}: warning: {warning}", file=sys.stderr)
    return 0


def _run(command: str, rest: list[str]) -> dict | int:
    """The command's result, or an exit status for a run that stops before its work (--help, a second process)."""
    dataclass_types, entry_point = COMMANDS[command]()  # loading torch takes seconds: Ctrl-C often lands here
    if "-h" in rest or "--help" in rest:
        command_parser(command, dataclass_types).print_help() if is_launched_main_process() else None
        return 0
    if command in ONE_PROCESS_COMMANDS and launched_world_size() > 1:
        # Nothing of these is split across processes: each process did the whole work and wrote the same outputs,
        # racing (a second `merge` into the folder the first had just filled failed). The main process does it.
        if not is_launched_main_process():
            return 0
        print(
            f"hf-transfer {command}: warning: {launched_world_size()} processes were launched; {command} runs in "
            "the main process only.",
            file=sys.stderr,
        )
    mixed = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if command in ("evaluate", "predict", "merge") and mixed != "no" and is_launched_main_process():
        print(f"hf-transfer {command}: warning: it runs the model in float32, as saved; the launcher's "
              f"mixed_precision {mixed} is not used.", file=sys.stderr)  # fmt: skip
    with leaves_the_process_as_found():  # from the parse on: TrainingArguments start accelerate's state
        parsed = command_parser(command, dataclass_types).parse(rest)
        start_command_accounts()  # its memory figures are this command's, not the process's
        bars_off = any(_asks_no_bars(a) for a in parsed) or not is_launched_main_process()
        level = chosen_log_level(parsed)
        outputs = [getattr(a, "output_dir", None) for a in parsed]  # train, distill (merge, export: staged)
        studies = [
            expand_home("output_dir", (getattr(a, "trial_config", None) or {}).get("output_dir")) for a in parsed
        ]
        with (
            scratch_of_the_command(),
            quiet_other_processes(level),
            progress_bars_off(bars_off),
            folders_held([*outputs, *studies], command, is_launched_main_process()),
            new_folders_removed_if_empty(outputs, is_launched_main_process()),
        ):
            result = entry_point(*[a for a in parsed if not isinstance(a, ConsoleArguments)])
    if level in QUIET_LEVELS and isinstance(result, dict):
        result.pop("warning", None)  # `log_level: error` leaves out warnings, the summary's too
    return result


def _asks_no_bars(args) -> bool:
    """`disable_tqdm: true` among a command's fields, or among the trial fields `search` collects (`trial_config`)."""
    trial = getattr(args, getattr(type(args), "other_fields", ""), None)
    value = trial.get("disable_tqdm") if isinstance(trial, dict) else None
    return getattr(args, "disable_tqdm", None) is True or str(value).lower() in ("true", "yes", "y", "t", "1")


# How long another process of a launch waits before it exits on a refusal that the main process prints.
REFUSAL_GRACE_SECONDS = 15.0


_PEER_GONE = re.compile(
    r"(gloo|nccl|c10d|Dist\w*Error).*(closed by peer|reset by peer|broken pipe|remote process exited)",
    re.IGNORECASE | re.DOTALL,
)


def _peer_gone(err: BaseException) -> bool:
    """A collective that failed because another process of the launch had exited."""
    return bool(_PEER_GONE.search(f"{type(err).__name__}: {err}"))


def _refused(line: str = "") -> int:
    """Status 2 for bad input. Another process of a launch exits only after a grace period: exiting first, it had
    the launcher stop the main process (SIGTERM) before that printed its line, and the user saw no reason at all. The
    main process exits as soon as it has printed, and the launcher then stops this one. Still running after the
    grace period, this process's refusal was its own (a file missing on one node only): it prints `line` then."""
    if not is_launched_main_process():
        # Stopped while it waits, it goes quietly (no traceback); the handlers are put back after.
        before = {stop: signal.signal(stop, signal.SIG_DFL) for stop in (signal.SIGTERM, signal.SIGINT)}
        try:
            time.sleep(REFUSAL_GRACE_SECONDS)
        finally:
            for stop, handler in before.items():
                signal.signal(stop, handler)
        if line:
            print(f"[rank {os.environ.get('RANK', '?')}] {line}", file=sys.stderr, flush=True)
    return 2


def _stopped(command: str, err: BaseException, received: list[int]) -> int:
    """The exit status of a run that raised `err`, after one line on stderr; `err` itself when it is a bug."""
    if received or isinstance(err, KeyboardInterrupt):
        # Ctrl-C or SIGTERM: one line, not a traceback from deep inside torch, also when a library turned the
        # interrupt into another error (an ImportError from an extension whose loading was cut off).
        terminated = isinstance(err, Terminated) or signal.SIGTERM in received
        how = "stopped by SIGTERM" if terminated else "interrupted"
        if is_launched_main_process():  # a launcher passes Ctrl-C to every process: one line, not one each
            print(f"hf-transfer {command}: {how}.{RESUME_HINTS.get(command, '')}", file=sys.stderr)
        return 143 if terminated else 130
    if isinstance(err, HfTransferError):
        # Under a launcher every process checks the same input and refuses it alike: the main process says so once
        # (two processes printed two identical lines); every process still exits with status 2.
        line = f"hf-transfer {command}: error: {err}"
        if is_launched_main_process():
            print(line, file=sys.stderr)
        return _refused(line)
    if isinstance(err, (DiskFullError, TrainingDivergedError)):
        print(f"hf-transfer {command}: error: {err}", file=sys.stderr)
        return 1
    if launched_world_size() > 1 and _peer_gone(err):
        # Another process exited (its refusal or error printed above): one line, not a 30-line gloo traceback.
        rank = "" if is_launched_main_process() else f"[rank {os.environ.get('RANK', '?')}] "
        print(f"{rank}hf-transfer {command}: stopped: another process of the launch exited first.", file=sys.stderr)
        return 1
    if isinstance(err, Exception) and (what := storage_failure(err)):  # evaluate, predict, export, merge, card
        print(
            f"hf-transfer {command}: error: {what} ({one_line(err, 200)}); {STORAGE_REMEDY[what]} and run again: "
            "what was being written was removed.",
            file=sys.stderr,
        )
        return 1
    if _out_of_memory(err):
        # torch's CPU allocator raises a RuntimeError, Python a bare MemoryError: a 40-line traceback either way.
        print(
            f"hf-transfer {command}: error: out of memory ({one_line(err, 160) or type(err).__name__}); use a smaller "
            f"batch size (or max_seq_length), or free memory.{RESUME_HINTS.get(command, '')}",
            file=sys.stderr,
        )
        return 1
    raise err


_ALLOCATOR_FAILED = ("can't allocate memory", "DefaultCPUAllocator", "out of memory")


def _out_of_memory(err: BaseException) -> bool:
    """Whether `err` is memory running out: Python's MemoryError, torch's OutOfMemoryError (CUDA, MPS), or the
    RuntimeError of torch's CPU allocator."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and any(text in str(err) for text in _ALLOCATOR_FAILED)


if __name__ == "__main__":
    sys.exit(main())
