"""The run folder: resuming from its complete checkpoints (`checkpoints.py`), the resolved
configuration (with no secret in it), the memory record and the row counts of a run."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import shutil
from pathlib import Path

from hf_transfer.core.data import PreparedData
from hf_transfer.core.folders import (
    ADAPTER_CONFIG,
    CARD_DATA_FILE,
    CONFIG_FILE,
    LINEAR_PROBE_DIR,
    LINEAR_PROBE_RECORD,
    MERGED_DIR,
    PYTORCH_WEIGHTS,
    RESUME_STATE,
    RUN_RECORD_FILE,
    TOKENIZER_FILES,
    TRAINER_STATE,
    read_json_file,
    trainer_checkpoint_state,
    write_text_atomic,
)
from hf_transfer.core.memory import MEMORY_SOURCES, allocator_setting
from hf_transfer.core.models import load_config
from hf_transfer.core.yaml_config import dump_yaml, is_path_field
from hf_transfer.errors import ConfigError
from hf_transfer.outputs.checkpoints import complete_checkpoints, damaged_file, finished_at, is_complete_checkpoint
from hf_transfer.outputs.plots import RUN_REPORT_FILES
from hf_transfer.outputs.readme import check_readme_header, drop_generated_keys, is_generated_card
from hf_transfer.outputs.test_predictions import TEST_PREDICTIONS_FILE

logger = logging.getLogger(__name__)


def resolve_resume_checkpoint(training_args) -> None:
    """`resume_from_checkpoint: true` becomes the newest complete checkpoint in `output_dir`; a path is checked."""
    value = training_args.resume_from_checkpoint
    if value is None or str(value).strip().lower() in ("", "false", "none"):
        training_args.resume_from_checkpoint = None
        return
    if str(value).strip().lower() == "true":
        found = complete_checkpoints(training_args.output_dir)
        if not found:
            raise ConfigError(
                f"resume_from_checkpoint is true but {training_args.output_dir!r} holds no complete checkpoint-N "
                "folder; train with save_strategy steps/epoch first, or give a checkpoint path."
            )
        damaged = {}
        while found and (bad := damaged_file(found[-1])):  # a file cut short under a save reported finished
            damaged[found.pop().name] = bad
        if not found:
            raise ConfigError(
                f"resume_from_checkpoint is true but every complete checkpoint in {training_args.output_dir!r} has a "
                f"file cut short ({_listed(damaged)}); start again with --overwrite_output_dir true."
            )
        training_args.resume_from_checkpoint = str(found[-1])
        newest = int(found[-1].name.split("-", 1)[1])
        names = [p.name for p in Path(training_args.output_dir).glob("checkpoint-*") if p.name not in damaged]
        later = [n for n in names if (s := n.split("-", 1)[1]).isdigit() and int(s) > newest]
        if damaged:
            logger.warning(f"{_listed(damaged)} cut short: resuming from {found[-1].name}, before it.")
        if later:  # a save cut off by a kill (or a damaged state): its steps are trained again, said
            logger.warning(f"{', '.join(sorted(later))} cannot be resumed from (cut off mid-save, or its state is "
                           f"damaged): resuming from {found[-1].name}, before it.")  # fmt: skip
    else:
        path = Path(str(value))
        if not is_complete_checkpoint(path):  # any name: a copied `checkpoint-15` named `ck15` too, as Trainer takes
            raise ConfigError(
                f"resume_from_checkpoint {str(value)!r} is not a complete checkpoint folder (one with a readable "
                "trainer_state.json and every file it names); pass true to pick the newest complete one in output_dir."
            )
        if bad := damaged_file(path):
            raise ConfigError(
                f"resume_from_checkpoint {str(value)!r} has a file cut short ({bad}); resume from an earlier "
                "checkpoint, or pass true to pick the newest whole one in output_dir."
            )


def _listed(damaged: dict[str, str]) -> str:
    return ", ".join(f"{name}/{bad}" for name, bad in damaged.items())


# What an earlier run (or a model saved by any tool) leaves in a folder: training into it again replaces these.
_RUN_FILES = (RUN_RECORD_FILE, "config.json", ADAPTER_CONFIG, *PYTORCH_WEIGHTS, TRAINER_STATE)


def _earlier_run(out: Path) -> tuple[list[str], list[Path]]:
    """What of an earlier run or model `out` holds, by name, and its complete checkpoints."""
    checkpoints = complete_checkpoints(out) if out.is_dir() else []
    return [name for name in _RUN_FILES if (out / name).is_file()] + [p.name for p in checkpoints], checkpoints


def _resumes_in(training_args, out: Path) -> bool:
    """Whether the run resumes from a checkpoint of `out`: one copied from elsewhere into a folder holding another
    run had written over that run, its checkpoints mixed with the new ones, and overwrite_output_dir removed none."""
    checkpoint = training_args.resume_from_checkpoint
    return bool(checkpoint) and Path(str(checkpoint)).expanduser().resolve().parent == out.resolve()


def check_output_dir_free(training_args, inputs=()) -> None:
    """`output_dir` holds no earlier run or model, unless this run resumes there (`resume_from_checkpoint`) or
    replaces it (`overwrite_output_dir`, see `clear_earlier_run`). A rerun wrote over the model, results and card in
    place, leaving the earlier run's other files (its checkpoints, which `resume_from_checkpoint: true` picks) mixed
    with the new ones. It is never one of the model folders the run reads (`inputs`), overwrite_output_dir or not:
    a teacher given as the output_dir was replaced by its own student, and its card still named it the teacher."""
    out = Path(training_args.output_dir)
    if not out.is_dir():
        return
    if read := next((n for n in inputs if n and Path(n).expanduser().resolve() == out.resolve()), None):
        raise ConfigError(
            f"output_dir {str(out)!r} is the model folder {read!r} the run reads; write the run elsewhere."
        )
    held, checkpoints = ([], []) if _resumes_in(training_args, out) else _earlier_run(out)
    if not held:  # a README.md there stays: the card is merged into it at the end, so its header must read
        check_readme_header(out / "README.md")
        return
    what = f"an earlier run or model ({', '.join(held[:6])}{', ...' if len(held) > 6 else ''})"
    if training_args.overwrite_output_dir:
        logger.warning("output_dir %r holds %s; overwrite_output_dir: this run writes over it.", str(out), what)
        return
    resume = "continue it with --resume_from_checkpoint true, " if checkpoints else ""
    if checkpoints and finished_at(checkpoints[-1]):  # its last checkpoint is its end: only more epochs continue it,
        resume = "train it longer with --resume_from_checkpoint true and more num_train_epochs, "  # unless it was
        if not (out / RUN_RECORD_FILE).is_file():  # stopped before its outputs: the same resume writes them
            resume = "finish it (it stopped before writing its outputs) with --resume_from_checkpoint true, "
    raise ConfigError(
        f"output_dir {str(out)!r} already holds {what}; training again would overwrite it in place: choose a new "
        f"output_dir, {resume}or replace it with --overwrite_output_dir true."
    )


# What hf-transfer and Trainer write at the top of a run folder that the next run may not write again (no test file,
# the other kind of problem, an adapter after a full model, a crash before the end), or only update (all_results.json).
_EARLIER_OUTPUTS = (
    *_RUN_FILES, CARD_DATA_FILE, CONFIG_FILE, "README.md", "all_results.json", "train_results.json",
    "eval_results.json", "test_results.json", "training_curves.png", *RUN_REPORT_FILES, TEST_PREDICTIONS_FILE,
    "training_args.bin", "adapter_model.safetensors", "adapter_model.bin", *TOKENIZER_FILES,
    "special_tokens_map.json",
)  # fmt: skip
_CHECKPOINT_FILES = (TRAINER_STATE, *RESUME_STATE, *PYTORCH_WEIGHTS, ADAPTER_CONFIG, "training_args.bin")


def _is_trainer_checkpoint(path: Path) -> bool:
    """A `checkpoint-N` folder holding something Trainer writes there (a complete checkpoint or one cut off)."""
    step = path.name.partition("-")[2]
    if not (path.name.startswith("checkpoint-") and step.isdigit() and path.is_dir()):
        return False
    return any(next(path.glob(name), None) is not None for name in _CHECKPOINT_FILES)


def clear_earlier_run(training_args, reads: list[Path]) -> list[str]:
    """With `overwrite_output_dir`, once every check has passed and just before training: the earlier run's
    `checkpoint-N` folders (a later `resume_from_checkpoint: true` picked its newest) and the files it wrote at the
    top of `output_dir` (this run might not write them again: a test_results.json of another test set, its scores
    in all_results.json, an adapter beside a full model) are removed; files and folders of any other name stay. A
    checkpoint or the folder that this run reads from (`reads`: its model, tokenizer, ...) is kept. Returns what
    went."""
    out = Path(training_args.output_dir)
    if not training_args.overwrite_output_dir or _resumes_in(training_args, out) or not _earlier_run(out)[0]:
        return []
    out = out.resolve()

    def read_here(path: Path) -> bool:
        return any(path == read or path in read.parents for read in reads)

    removed = [p for p in sorted(out.iterdir()) if _is_trainer_checkpoint(p) and not read_here(p)]
    for made in (out / MERGED_DIR, out / LINEAR_PROBE_DIR):  # merge_adapter's model, LP-FT's probe model
        if _made_by_the_run(made, out) and not read_here(made):
            removed.append(made)
    if out not in reads:  # never a file this run reads (its data, saved there), nor a README the user wrote into
        removed += [out / name for name in _EARLIER_OUTPUTS if (out / name).is_file() and not read_here(out / name)]
        header = functools.cache(functools.partial(_rendered_header, out))  # rendered once, where it is needed
        removed = [p for p in removed if p.name != "README.md" or is_generated_card(p, header)]
        if (out / "README.md") not in removed:  # the user's edits stay; the earlier card's keys go with its data
            drop_generated_keys(out / "README.md", header())
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if removed:
        names = ", ".join(p.name for p in removed)
        logger.warning("overwrite_output_dir: removed the earlier run's %s from %r.", names, str(out))
    return [p.name for p in removed]


def _rendered_header(folder: Path) -> dict | None:
    """The YAML header of the card the folder's card data renders now (None without readable card data)."""
    from hf_transfer.outputs.card_data import load_card_data
    from hf_transfer.outputs.cards import build_card
    from hf_transfer.outputs.readme import card_header

    try:
        card_data = load_card_data(folder)
        return card_header(str(build_card(card_data, folder))) if card_data is not None else None
    except Exception:  # noqa: BLE001 - an older record this version cannot render: the body alone decides
        return None


def _made_by_the_run(merged: Path, out: Path) -> bool:
    """`merged` is LP-FT's probe model (its own record says so; a push had sent an earlier run's inside the new
    model's repo), or an adapter run's merge_adapter model (its record copy says so; or, with no record of its own,
    as versions before that copy wrote it, the run folder's record names it), not a folder the user put there, such
    as `hf-transfer merge --output_dir RUN/merged`, which overwrite_output_dir had removed as the run's."""
    if merged.name == LINEAR_PROBE_DIR:
        return (merged / LINEAR_PROBE_RECORD).is_file()
    if not merged.is_dir():
        return False
    own = merged / RUN_RECORD_FILE
    try:
        record = json.loads((own if own.exists() else out / RUN_RECORD_FILE).read_bytes())
    except (OSError, ValueError):
        return False
    named = (record.get("adapter") or {}).get("merged_model") if isinstance(record, dict) else None
    return bool(named) and (own.exists() or Path(str(named)).name == merged.name)


def read_paths(*arg_objects) -> list[Path]:
    """The existing local files and folders a run's arguments name (its model, tokenizer, data, ...), resolved."""
    paths = []
    for args in arg_objects:
        for name in (f.name for f in dataclasses.fields(args) if is_path_field(f.name)):
            if name in ("output_dir", "logging_dir"):  # written, not read
                continue
            values = getattr(args, name, None)
            for value in values if isinstance(values, list) else [values]:
                value = str(value).partition("=")[2] if name == "extra_eval" else value
                if isinstance(value, str) and value and Path(value).expanduser().exists():
                    paths.append(Path(value).expanduser().resolve())
    return paths


def started_from_checkpoint(model_name_or_path: str | None, warn: bool = True) -> dict:
    """For a `Trainer` checkpoint given as the model to train: one line saying that this run starts afresh from its
    weights (the user most likely meant to resume it), and its folder name and step for the run record; {} for any
    other model."""
    folder = Path(str(model_name_or_path or ""))
    state_files = trainer_checkpoint_state(folder) if model_name_or_path and folder.is_dir() else []
    if not state_files:
        return {}
    state = read_json_file(folder / TRAINER_STATE, "the checkpoint's trainer state")
    step = state.get("global_step") if isinstance(state, dict) else None
    if warn:
        logger.warning(
            "model_name_or_path %r is a Trainer checkpoint (it holds %s): this run starts afresh from its weights, "
            "with a new optimizer, LR schedule and step count; to continue the run that saved it, rerun that run's "
            "command (its model_name_or_path and output_dir) with --resume_from_checkpoint %s.",
            str(model_name_or_path), ", ".join(state_files), str(model_name_or_path),
        )  # fmt: skip
    return {"started_from_checkpoint": {"checkpoint": folder.name, "step": step}}


def check_resume_fits(training_args, config, adapter_args) -> None:
    """The checkpoint to resume from holds the model this run builds: a full model with the same architecture and
    labels as `config`, or an adapter of the same method (and LoRA rank). Trainer would otherwise stop with a
    state-dict or optimizer traceback, after the model has loaded."""
    if not training_args.resume_from_checkpoint:
        return
    folder = Path(training_args.resume_from_checkpoint)
    method = adapter_args.peft_method
    adapter = folder / ADAPTER_CONFIG
    saved_kind = "a PEFT adapter" if adapter.is_file() else "a full model"
    run_kind = f"a {method} adapter" if method != "none" else "a full model (peft_method none)"
    found = None
    if adapter.is_file() != (method != "none"):
        found = f"{saved_kind} but this run trains {run_kind}"
    elif adapter.is_file():
        saved = read_json_file(adapter, "adapter config")
        saved_method = str(saved.get("peft_type", "")).lower()
        saved_labels = _saved_head_outputs(folder)
        if saved_method != method:
            found = f"a {saved_method} adapter but this run trains {run_kind}"
        elif method == "lora" and saved.get("r") not in (None, adapter_args.lora_r):
            found = f"a LoRA adapter of rank {saved['r']} but this run's lora_r is {adapter_args.lora_r}"
        elif saved_labels not in (None, config.num_labels):
            found = f"an adapter whose head has {saved_labels} outputs but this run has {config.num_labels} labels"
    elif (folder / "config.json").is_file():
        saved = load_config(str(folder))
        for key in ("model_type", "num_hidden_layers", "hidden_size", "id2label"):
            mine, theirs = getattr(config, key, None), getattr(saved, key, None)
            if key == "id2label":
                mine, theirs = (None if d is None else [str(d[i]) for i in sorted(d)] for d in (mine, theirs))
            if mine != theirs:
                what = "labels" if key == "id2label" else key
                found = f"a model with {what} {theirs} but this run builds one with {mine}"
                break
    if found:
        raise ConfigError(
            f"resume_from_checkpoint {str(folder)!r} holds {found}; resume with the settings of the run that wrote "
            "it, or drop resume_from_checkpoint to start afresh."
        )


# The last layer of a sequence-classification head, as PEFT saves it beside the adapter (modules_to_save).
_HEAD_WEIGHT = re.compile(r"(?:^|\.)(?:classifier|score)(?:\.out_proj)?\.weight$")


def _saved_head_outputs(folder: Path) -> int | None:
    """The output count of the classification head saved in an adapter checkpoint, read from the safetensors header
    only; None when the checkpoint saves no head or is not a safetensors file."""
    from safetensors import SafetensorError, safe_open

    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as weights:
            shapes = [weights.get_slice(key).get_shape() for key in weights.keys() if _HEAD_WEIGHT.search(key)]
    except (SafetensorError, OSError) as err:
        raise ConfigError(f"cannot read the adapter weights {str(path)!r}: {err}") from None
    return shapes[0][0] if len(shapes) == 1 and len(shapes[0]) == 2 else None


_SECRET_KEYS = ("token", "password", "secret", "api_key")


# TrainingArguments fields that Trainer never reads and the commands do not follow (they always train and evaluate):
# recorded false, they contradicted the run the record describes.
_UNREAD = frozenset({"do_train", "do_eval", "do_predict"})


def resolved_config(*arg_objects) -> dict:
    """Every field of the run's argument dataclasses (TrainingArguments last), as YAML-ready plain values, with
    anything secret removed."""
    values: dict = {}
    for args in arg_objects:
        if hasattr(args, "to_dict"):
            training = args.to_dict()
            values.update({k: training[k] for k in sorted(training)})
        else:
            values.update(dataclasses.asdict(args))
    clean = {k: v for k, v in values.items() if not any(s in k.lower() for s in _SECRET_KEYS) and k not in _UNREAD}
    return json.loads(json.dumps(clean, default=str))


def _absolute(name: str, value):
    """A relative path that exists here, made absolute (output_dir always); Hub ids and `~/x` stay as written."""
    if isinstance(value, list):
        return [_absolute(name, item) for item in value]
    if not isinstance(value, str) or not value or Path(value).is_absolute() or value.startswith("~"):
        return value
    if name == "extra_eval" and "=" in value:
        label, _, file = value.partition("=")
        return f"{label}={_absolute(name, file)}"
    return os.path.abspath(value) if name == "output_dir" or Path(value).exists() else value


def absolute_paths(values: dict) -> dict:
    """`values` (config fields) with their relative paths that exist here made absolute, as a resolved config has."""
    return {k: _absolute(k, v) if is_path_field(k) else v for k, v in values.items()}


def write_resolved_config(path: Path, *arg_objects, extra: dict | None = None) -> None:
    """The run's settings as a config that reruns it: relative paths were read from the working directory, so the
    record names them absolutely (a rerun from another folder had failed on 'data/train.csv does not exist')."""
    values = absolute_paths(resolved_config(*arg_objects))
    if extra:
        values.update(json.loads(json.dumps(extra, default=str)))
    if "resume_from_checkpoint" in values:  # a fresh run's recipe (the record says where this one resumed from)
        values["resume_from_checkpoint"] = None
    write_text_atomic(path, dump_yaml(values, sort_keys=False))


def _memory_record(at_load: dict, after_training: dict, at_end: dict) -> dict:
    """Peak RSS after training (evaluations during training included) and after the final evaluation, against the RSS
    right after the model was loaded (before any adapter was added). Each peak is at least every RSS read before it
    (see `runtime.memory_kib`), so the figures are consistent by construction; `sources` says where each comes
    from."""
    baseline = at_load["rss_kib"]
    above = {"peak_above_loaded_model_kib": at_end, "training_peak_above_loaded_model_kib": after_training}
    return {
        "rss_after_model_load_kib": baseline,
        "peak_rss_at_model_load_kib": at_load["peak_rss_kib"],
        "peak_rss_after_training_kib": after_training["peak_rss_kib"],
        "peak_rss_kib": at_end["peak_rss_kib"],
        **{k: None if baseline is None else read["peak_rss_kib"] - baseline for k, read in above.items()},
        "allocator": allocator_setting(),
        "sources": MEMORY_SOURCES,
    }


def _row_counts(prepared: PreparedData) -> dict[str, int]:
    """Rows used and rows dropped per split, so the user sees what cleaning removed."""
    counts = {}
    for split in prepared.datasets:
        info = prepared.summary.get(split, {})
        counts[f"{split}_rows"] = info.get("rows", len(prepared.datasets[split]))
        counts[f"{split}_rows_dropped"] = sum((info.get("dropped") or {}).values())
    return counts
