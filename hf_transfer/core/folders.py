"""The files a model folder holds, by name: what PEFT and hf-transfer write beside the weights, and whether a folder
holds a tokenizer or an adapter."""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hf_transfer.core.scratch import process_tag, remove_dead_builds
from hf_transfer.errors import ConfigError, one_line

# What PEFT names the config of a saved adapter: a folder holding it holds an adapter, not a model.
ADAPTER_CONFIG = "adapter_config.json"
MERGED_DIR = "merged"  # merge_adapter's plain model, inside an adapter run's output_dir
# What hf-transfer writes into a run folder beside the model.
RUN_RECORD_FILE = "hf_transfer_run.json"
CONFIG_FILE = "hf_transfer_config.yaml"
CARD_DATA_FILE = "hf_transfer_card_data.json"
LINEAR_PROBE_RECORD = "hf_transfer_linear_probe.json"  # an LP-FT run's probe folder's figures (no card of its own)
LINEAR_PROBE_DIR = "linear_probe"  # an LP-FT run's probe model, inside its output_dir
# Any one of them: a fast tokenizer, a saved config, or a slow tokenizer's vocabulary (WordPiece, BPE, SentencePiece).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
    "tokenizer.model",
)  # fmt: skip
# What `hf-transfer export` writes: the fp32 graph, and the int8 one (Optimum's name for it) with --quantize int8.
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model_quantized.onnx"
PYTORCH_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# What PEFT saves an adapter's weights as (safetensors, or the older pickle).
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


# Where `hf-transfer search` keeps its study: a folder holding it is a search's output_dir, not a model.
SEARCH_STUDY = "search/study.db"


def search_folder_hint(folder: str | Path) -> str:
    """For a search's output_dir, what to give instead (its trial folders hold the models); else ''."""
    if not (Path(folder) / SEARCH_STUDY).is_file():
        return ""
    return " It is the output_dir of hf-transfer search: give its best trial's folder (trials/trial-NNN)."


def embedding_model_hint(folder: str | Path) -> str:
    """For a folder sentence-transformers or SetFit wrote (a body with no transformers classification head), what it
    is and what to do instead; else ''. The body alone loads as a classifier with a fresh, random head."""
    folder = Path(folder)
    named = repr(str(folder))
    if (folder / "model_head.pkl").is_file() or (folder / "config_setfit.json").is_file():
        return (
            " It is a SetFit model, whose classifier (model_head.pkl) hf-transfer does not run: predict with "
            f"SetFitModel, or train a classifier from its body: hf-transfer train --model_name_or_path {named}."
        )
    if (folder / "modules.json").is_file():
        return (
            " It is a sentence-transformers embedding model (modules.json) with no classification head: train one "
            f"on your labels first: hf-transfer train --model_name_or_path {named}."
        )
    return ""


def has_tokenizer(folder: str | Path) -> bool:
    return any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)


def is_adapter_folder(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


# What `Trainer` saves into a checkpoint only to resume from it: the optimizer (about twice the model's size with
# AdamW), the LR schedule, the AMP scaler, the RNG states, and the step and log (`trainer_state.json`, which a finished
# run's folder holds too).
RESUME_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")
TRAINER_STATE = "trainer_state.json"


def trainer_checkpoint_state(folder: str | Path) -> list[str]:
    """The training-state files of a `Trainer` checkpoint folder (`checkpoint-N`, or any folder holding resume state
    beside `trainer_state.json`), sorted; [] for any other folder, a finished run's included."""
    folder = Path(folder)
    resume = sorted({p.name for pattern in RESUME_STATE for p in folder.glob(pattern) if p.is_file()})
    named = folder.name.startswith("checkpoint-") and folder.name.split("-", 1)[1].isdigit()
    if not (folder / TRAINER_STATE).is_file() or not (resume or named):
        return []
    return [*resume, TRAINER_STATE]


def is_onnx_folder(folder: str | Path) -> bool:
    """A folder `hf-transfer export` wrote: an ONNX graph beside config.json, and no PyTorch weights."""
    folder = Path(folder)
    graphs = any((folder / name).is_file() for name in (ONNX_FILE, ONNX_INT8_FILE))
    return graphs and not any((folder / name).is_file() for name in PYTORCH_WEIGHTS)


def weight_files(folder: str | Path) -> list[str]:
    """The weight files a model folder holds: an adapter's (for an adapter folder), else PyTorch weights (whole or
    sharded: `.index.json`) or the graphs `hf-transfer export` writes."""
    folder = Path(folder)
    names = (
        ADAPTER_WEIGHTS
        if is_adapter_folder(folder)
        else (*PYTORCH_WEIGHTS, "pytorch_model.bin.index.json", ONNX_FILE, ONNX_INT8_FILE)
    )
    return [name for name in names if (folder / name).is_file()]


def onnx_export_record(folder: str | Path) -> dict:
    """The `export` section of the run record of a folder `hf-transfer export` wrote; {} when there is none."""
    try:
        export = json.loads((Path(folder) / RUN_RECORD_FILE).read_text(encoding="utf-8"))["export"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return export if isinstance(export, dict) else {}


def onnx_export_source(folder: str | Path) -> str | None:
    """The model folder (or Hub id) an ONNX folder was exported from, as its run record names it; None if unknown."""
    source = onnx_export_record(folder).get("source")
    return source if isinstance(source, str) and source else None


_HF_CACHE_SNAPSHOT = re.compile(r"/models--(?:([\w.-]+?)--)?([\w.-]+)/snapshots/([^/]+)(?:/|$)")


def cache_snapshot(path: str | Path | None) -> tuple[str, str] | None:
    """(Hub id, commit) of a folder inside a Hugging Face cache snapshot (`.../models--org--name/snapshots/<sha>`),
    else None: a model given by its cache folder is still that Hub model, for the card and adapter_config.json."""
    if not path or not Path(path).expanduser().is_dir():
        return None
    return snapshot_in_path(Path(path).expanduser().resolve().as_posix())


def snapshot_in_path(text: str) -> tuple[str, str] | None:
    """(Hub id, commit) that a path written as `text` names by its cache layout, whether or not it exists here."""
    found = _HF_CACHE_SNAPSHOT.search(text)
    if not found:
        return None
    owner, name, commit = found.groups()
    return (f"{owner}/{name}" if owner else name), commit


# Files of other runtimes in a Hub repository, which a PyTorch classifier never reads: left on the Hub.
_OTHER_RUNTIMES = ["*.h5", "*.msgpack", "*.ot", "*.tflite", "*.gguf", "*.mlmodel", "onnx/*", "openvino/*", "coreml/*"]


def looks_local(name_or_path: str) -> bool:
    """Whether a model name can only be a local path: absolute, starting with `.` or `~`, or with more than one `/`
    (a Hub id is `name` or `owner/name`)."""
    return Path(name_or_path).is_absolute() or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1


def hub_snapshot_folder(name_or_path: str, revision: str = "main") -> str:
    """A Hub id's files as a local folder, the cache's snapshot (offline: what the cache holds; online: downloaded,
    PyTorch weights in safetensors when the repository has them), so that `evaluate`, `predict` and `export` read an
    adapter, an exported ONNX graph and a run's records by id as they do by path. `name_or_path` itself for a local
    path, or when the id cannot be had: the checks that follow say why, in one line."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.utils import validate_repo_id

    if Path(name_or_path).expanduser().exists() or looks_local(name_or_path):
        return name_or_path
    try:
        validate_repo_id(name_or_path)
        if constants.HF_HUB_OFFLINE:
            return snapshot_download(name_or_path, revision=revision, local_files_only=True)
        from huggingface_hub import HfApi

        files = HfApi().list_repo_files(name_or_path, revision=revision)
        pickles = ["*.bin", "*.pt", "*.pth"] if any(f.endswith(".safetensors") for f in files) else []
        return snapshot_download(name_or_path, revision=revision, ignore_patterns=_OTHER_RUNTIMES + pickles)
    except Exception:  # noqa: BLE001 - not cached offline, not on the Hub, no network: said by the checks after
        return name_or_path


def hub_origin(name_or_path: str | None, hub_id: str | None = None, revision: str | None = None):
    """(base model, revision) as a run record names them: `hub_id` (base_model_hub_id) when given, the Hub id of a
    cache snapshot folder (and its commit), else `name_or_path` with `revision` when it is not main and the name is
    no local folder (a revision of a folder means nothing)."""
    if hub_id:
        return hub_id, None
    snapshot = cache_snapshot(name_or_path)
    if snapshot:
        return snapshot
    local = name_or_path is None or Path(name_or_path).expanduser().exists()
    return name_or_path, None if local or revision in (None, "main") else revision


def check_not_under_a_file(output_dir: str, command: str) -> None:
    """No part of `output_dir`'s path may be a file (the command would fail at its first write, after the work)."""
    out = Path(output_dir)
    blocking = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = "is" if blocking == out else f"lies under {str(blocking)!r}, which is"
        raise ConfigError(
            f"output_dir {output_dir!r} {where} a file, not a folder; {command} writes a folder: choose another "
            "output_dir."
        )
    check_writable(out, "output_dir")


def check_writable(path: str | Path, what: str, is_file: bool = False, todo: str = "") -> None:
    """`path` (a folder, or with `is_file` a file, made if missing) can be written: the nearest folder of its path
    that exists is writable.
    Checked before any weight loads, since the first write comes after the work; `os.access` also says no on a
    read-only filesystem, where even root cannot write."""
    path = Path(path)
    folder = path.parent if is_file else path
    existing = next((p for p in [folder, *folder.absolute().parents] if p.exists()), None)
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == path else f"{str(existing)!r}, the folder it would be made in,"
        raise ConfigError(
            f"{what} {str(path)!r} cannot be written: {where} is not writable (no permission, or a read-only "
            f"filesystem); {todo or f'choose another {what}'}."
        )


def check_new_output_dir(output_dir: str, command: str) -> None:
    """A folder a command creates and fills whole (`export`, `merge`): it must not exist yet, or be empty, and no
    part of its path may be a file. Checked before any weight loads, so nothing is computed only to fail at the
    write, and no earlier run's files end up mixed with the new ones."""
    out = Path(output_dir)
    check_not_under_a_file(output_dir, command)
    if out.is_dir() and any(out.iterdir()):
        held = sorted(p.name for p in out.iterdir())
        raise ConfigError(
            f"output_dir {output_dir!r} already exists and is not empty (it holds {held[:6]}); {command} never "
            "overwrites: choose another output_dir or remove that one."
        )


@contextmanager
def staged_output_dir(output_dir: str | Path, command: str) -> Iterator[Path]:
    """A hidden sibling folder to write a command's whole output into; renamed to `output_dir` (new or empty, as
    `check_new_output_dir` made sure) only when the block finishes, and removed if it fails, so an interrupted export
    or merge leaves nothing half-written (nor the missing folders it made above it). An existing empty folder
    (`--output_dir .` included) is kept, and what was built moves into it."""
    out = Path(output_dir).resolve()  # `.` and `..` have no name to build a sibling from
    made = [folder for folder in (out.parent, *out.parent.parents) if not folder.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_builds(out.parent.glob(f".{glob.escape(out.name)}.{command}-*.tmp"))  # a killed run's
    building = out.parent / f".{out.name}.{command}-{process_tag()}.tmp"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        yield building
        if out.is_dir():  # empty, as the arguments checked; perhaps the working directory
            for entry in building.iterdir():
                os.replace(entry, out / entry.name)
            building.rmdir()
        else:
            os.replace(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        for folder in made:  # the folders made for it go too, when nothing else was put there meanwhile
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def read_json_file(path: Path, what: str) -> dict:
    """A JSON file a model folder holds, or one line naming it when it cannot be read."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {err}") from None


def json_safe(value):
    """`value` with NaN and ±inf (a diverged loss, a grad norm) as None, at any depth of dicts and lists, since jq,
    JavaScript and Go refuse Python's `NaN`/`Infinity`."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(x) for x in value]
    return value


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write (the name hides its extension: give savefig its format);
    renamed over `path` when the block finishes, removed if it fails, so a write that fails or is cut off (a full
    disk, Ctrl-C, SIGTERM) leaves the earlier file as it was, never a truncated one, and no temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_quietly(path: Path) -> None:
    """Remove a temporary file on the way out of a failure, whose error is the one to report: on a read-only
    filesystem unlink fails even for a file that was never created."""
    with contextlib.suppress(OSError):
        path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) through `atomic_path`: the earlier file (a card's README with the user's edits,
    metrics.json) stays as it was if the write fails."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_text(value, **kwargs) -> str:
    """`value` as strict JSON (`json_safe`), its text as written (`中评`, not `\\u4e2d\\u8bc4`): files are UTF-8."""
    return json.dumps(json_safe(value), allow_nan=False, **{"ensure_ascii": False, **kwargs})


@contextmanager
def written_together(paths: list[Path]) -> Iterator[None]:
    """Files written as one output (evaluate's metrics, table and pictures): if the block fails or is interrupted,
    the files it created and the folders made for them are removed (an `--output_file NEWDIR/metrics.json` whose
    picture failed left NEWDIR holding half the output). Files that were there before stay, each written atomically."""
    paths = [Path(p).absolute() for p in paths]
    new_files = [p for p in paths if not p.exists()]
    new_folders = {f for p in paths for f in p.parents if not f.exists()}
    try:
        yield
    except BaseException:
        for path in new_files:
            remove_quietly(path)
        for folder in sorted(new_folders, key=lambda f: len(f.parts), reverse=True):  # the deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: nothing but this run's files was in it
        raise


def plain_adapter_advice(folder: str | Path, base: str | None) -> str:
    """What to do with an adapter folder that PEFT saved itself (`model.save_pretrained` on a PeftModel): it holds no
    label names, so build, with PEFT, the full model that carries them; that folder works in every command."""
    merged = f"{str(folder).rstrip('/')}-merged"
    tokenizer = folder if has_tokenizer(Path(folder)) else base or "BASE_MODEL"
    return (
        "build the full model with PEFT, with your label names (in the order of the head's outputs) in place of "
        "'A', 'B', and give that folder: "
        'python -c "from peft import AutoPeftModelForSequenceClassification as A; from transformers import '
        f"AutoTokenizer as T; A.from_pretrained('{folder}', id2label={{0: 'A', 1: 'B'}}).merge_and_unload()"
        f".save_pretrained('{merged}'); T.from_pretrained('{tokenizer}').save_pretrained('{merged}')\""
    )


def read_json_object(path: Path) -> dict:
    """A JSON object saved in a run folder; a file that is damaged (cut short, edited) is a one-line ConfigError."""
    try:
        value = json.loads(Path(path).read_bytes())
    except ValueError as err:
        raise ConfigError(f"{str(path)!r} is not valid JSON ({one_line(err, 120)}); restore or delete it.") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{str(path)!r} should hold a JSON object, got a {type(value).__name__}; restore it.")
    return value


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json_text(value, indent=2) + "\n")
