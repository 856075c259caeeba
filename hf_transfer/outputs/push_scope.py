"""What a push leaves out of the upload (Trainer checkpoints and training state, caches, a merged model that is a
model of its own, the run's own data files), and which of the repo's files it replaces: those an earlier push of a
run folder left there."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from hf_transfer.core.folders import MERGED_DIR, TOKENIZER_FILES, trainer_checkpoint_state
from hf_transfer.core.run_records import recorded_config

logger = logging.getLogger(__name__)

# What the Hub does not need: Trainer checkpoints (optimizer state, several times the model's size), caches, the
# pickled TrainingArguments (`hf_transfer_config.yaml` holds the same in readable form, and the Hub flags pickles),
# and editor or OS debris.
IGNORE_PATTERNS = [
    "checkpoint-*",
    "checkpoint-*/**",
    "**/checkpoint-*/**",
    ".cache/**",
    "**/.cache/**",
    "**/__pycache__/**",
    "runs/**",
    "wandb/**",
    "training_args.bin",
    "*.lock",
    ".DS_Store",
    "**/.ipynb_checkpoints/**",
]
# The files a run, merge or export folder holds, which the repo's copies from an earlier push are replaced by: removed
# from the repo in the same commit unless this folder has them too. Retrained as a full model where a LoRA adapter
# was pushed before, the repo kept adapter_config.json beside the new weights, and loading it gave the old adapter.
# Files the user added to the repo themselves (and .gitattributes) stay.
REPLACED_PATTERNS = [
    "*.safetensors", "*.bin", "*.onnx", "*.onnx_data", "*.pt", "model.safetensors.index.json", "adapter_config.json",
    "config.json", "generation_config.json", "special_tokens_map.json", "added_tokens.json", *TOKENIZER_FILES,
    "*_results.json", "*confusion_matrix.json", "*.png", "hf_transfer_*", "trainer_state.json", "predict_results.*",
    "merge_eval.*", "merge_sweep.*", "onnx/*", f"{MERGED_DIR}/*", "linear_probe/*", "checkpoint-*/*",
]  # fmt: skip


def replaced_files(remote: list[str]) -> list[str] | None:
    """The repo's files that REPLACED_PATTERNS name, each as a pattern of itself for `upload_folder`'s
    `delete_patterns` (None: none). A pattern without a folder names top-level files: huggingface_hub's fnmatch lets
    `*` cross `/`, so `*.png` had deleted the user's own `assets/diagram.png` on every push."""
    import fnmatch

    def ours(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) and ("/" in p or "/" not in name) for p in REPLACED_PATTERNS)

    return [_literal(name) for name in remote if ours(name)] or None


def held_back(folder: Path, repo_id: str, include_training_state: bool, include_data_files: bool = False) -> list[str]:
    """The ignore patterns of a push of `folder`: what the Hub does not need, and what must not go up with it."""
    held = [*_private_files_held_back(folder), *([] if include_data_files else _data_files_held_back(folder))]
    held += [] if include_training_state else _training_state_held_back(folder)
    # Names as patterns of themselves: `preds[old].csv` read as a glob matched no file, and went up.
    return [*IGNORE_PATTERNS, *_merged_model_held_back(folder, repo_id), *map(_literal, held)]


def _literal(name: str) -> str:
    """A file name as an fnmatch pattern that matches it alone."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


# Never pushed: what looks like a secret (dotfiles and dot-folders such as .env, .netrc, .ssh/; private keys;
# credential files), whatever the flags. `.gitattributes` is the repo's own.
SECRET_NAMES = ("id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.pem", "*.key", "*.p12", "*.pfx", "*.kdbx",
                "credentials*", "secrets*")  # fmt: skip
REPO_DOTFILES = (".gitattributes",)


def _uploaded_names(folder: Path) -> list[str]:
    """The files of `folder` the upload takes at all (IGNORE_PATTERNS read as `upload_folder` reads them)."""
    from huggingface_hub.utils import filter_repo_objects

    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return list(filter_repo_objects(names, ignore_patterns=IGNORE_PATTERNS))


def _private_files_held_back(folder: Path) -> list[str]:
    """Files that look like secrets, and links to files outside the folder (the upload sends the file a link points
    to: a link to a key or to the user's data went up with the model), held back and named in one line each."""
    from fnmatch import fnmatch

    root = folder.resolve()
    secret, outside = [], []
    for name in sorted(_uploaded_names(folder)):
        parts = name.split("/")
        if (any(part.startswith(".") for part in parts) and name not in REPO_DOTFILES) or any(
            fnmatch(parts[-1].lower(), pattern) for pattern in SECRET_NAMES
        ):
            secret.append(name)
        elif root not in (folder / name).resolve().parents:
            outside.append(name)
    if secret:
        logger.warning(
            "%s: dotfiles, keys or credentials, never pushed (held back from the upload).", ", ".join(secret)
        )
    if outside:
        logger.warning(
            "%s: links to files outside %s, held back from the upload; copy a file into the folder to push it.",
            ", ".join(outside), folder,
        )  # fmt: skip
    return secret + outside


# Rows of text, whatever their name: `predict_results.csv` (a run's test predictions, every test text in it), a
# `predict --output_file` written into the run folder, a copy of the data. Search's `trials.csv` holds no rows of data.
DATA_EXTENSIONS = ("csv", "tsv", "jsonl", "parquet")
NOT_DATA = ("trials.csv",)


def _data_files_held_back(folder: Path) -> list[str]:
    """The run's own data files (its resolved config's `*_file` fields) that lie in the folder, or are linked into
    it, and every other file of rows of text (by its format): a run written into its data folder pushed `train.csv`,
    and a run with a `test_file` its test texts, to a public repo without a word. They stay out, said in one line; a
    dataset meant to be public goes up as a dataset repo of its own."""
    from hf_transfer.core.arguments import data_format

    files = [v for k, v in recorded_config(folder).items() if k.endswith("_file")]
    data = {Path(v).expanduser().resolve() for v in files if isinstance(v, str) and v}
    held = sorted(  # of the files the upload takes at all: a checkpoint's are not named
        name
        for name in _uploaded_names(folder)
        if (folder / name).resolve() in data
        or (data_format(name)[0] in DATA_EXTENSIONS and Path(name).name not in NOT_DATA)
        or _json_rows(folder / name)
    )
    if held:
        logger.warning(
            "%s: rows of data (the run's data files, its test predictions), held back from the upload (the model "
            "repo would publish them); push with --include_data_files true to send them, or a dataset meant to be "
            "public as a dataset repo of its own.",
            ", ".join(held),
        )
    return held


def _json_rows(path: Path) -> bool:
    """A `.json` file of rows (a list of objects, as `datasets` reads a JSON data file), not one of a model's own
    files: those are objects, or sentence-transformers' `modules.json`, a list of its modules."""
    if path.suffix.lower() != ".json" or path.name in ("modules.json",):
        return False
    try:
        with path.open("rb") as file:
            head = file.read(256).lstrip()
    except OSError:
        return False
    return head.startswith(b"[") and head[1:].lstrip().startswith(b"{")


def _merged_model_held_back(folder: Path, repo_id: str) -> list[str]:
    """An adapter run's `merged/` (merge_adapter) is a model of its own, with its own card: uploaded inside the
    adapter's repo it was a subfolder that `pipeline()` cannot load and whose card named a repo that does not exist.
    It stays out of the adapter's push, and the log says how to push it to a repo of its own. Beside a full model it
    is an earlier adapter run's, kept by `--overwrite_output_dir` (a version before the merged model held a copy of
    the record did not mark it): it went up inside the new model's repo, another model of 90 MB."""
    merged = folder / MERGED_DIR
    if not (merged / "config.json").is_file():
        return []
    what = "the adapter merged into the weights" if (folder / "adapter_config.json").is_file() else "an earlier run's"
    logger.warning(
        "%s (%s) is a model of its own and is not pushed with this folder; push it to a repo of its own with "
        "`hf-transfer push %s --hub_model_id %s-merged`.",
        merged, what, merged, repo_id,
    )  # fmt: skip
    return [f"{MERGED_DIR}/**"]


def _training_state_held_back(folder: Path) -> list[str]:
    """A `Trainer` checkpoint's training state (optimizer.pt alone is about twice the model with AdamW) only resumes
    training; on the Hub it is a large download no one needs to use the model. It stays out, said in one line."""
    state = trainer_checkpoint_state(folder)
    if not state:
        return []
    size = sum((folder / name).stat().st_size for name in state) / 2**20
    logger.warning(
        "%s is a Trainer checkpoint: its training state (%s, %.1f MiB) is held back from the upload, since it only "
        "resumes training (--resume_from_checkpoint); push with --include_training_state true to send it.",
        folder, ", ".join(state), size,
    )  # fmt: skip
    return state
