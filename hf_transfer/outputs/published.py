"""What a push uploads: the folder as it is, except that the run's own records (its resolved config, run record, card
data, results, merge reports) name files on this machine by their last part, as the card does. The local copies keep
the full paths: they are this machine's record of the run, and the published ones are read elsewhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from hf_transfer.core.folders import TOKENIZER_FILES, json_text, snapshot_in_path
from hf_transfer.core.yaml_config import dump_yaml

RECORD_SUFFIXES = (".json", ".yaml", ".yml", ".md")
# Files that transformers or a tokenizer writes (their strings are data: a vocabulary may hold `/usr/bin`, and they
# name no path of ours), and the card, which names files by their last part already and may hold the user's own
# text: they go up byte for byte.
UNTOUCHED = frozenset(
    {*TOKENIZER_FILES, "special_tokens_map.json", "added_tokens.json", "config.json", "generation_config.json",
     "model.safetensors.index.json", "README.md"}
)  # fmt: skip
# An absolute path (`/home/me/data/train.csv`, `~/runs/x`) inside a longer text, at least two parts deep. Relative
# paths (`runs/sst2`, `../data/x.csv`) say nothing about the machine and stay; so do URLs (`https://host/a/b`).
_LOCAL_PATH = re.compile(r"(?<![\w.:/@~+-])~?/(?:[\w.@+-]+/)+([\w.@+-]+)/?")


def without_local_paths(value):
    """`value` (a parsed record) with every absolute path on this machine cut to its last part, keys included; a
    model in the Hub cache becomes its id (a resolved config's model_revision, main, becomes the snapshot's commit,
    so the published config reruns on that model)."""
    if isinstance(value, dict):
        snapshot = snapshot_in_path(str(value.get("model_name_or_path") or ""))
        if snapshot and value.get("model_revision") == "main":
            value = {**value, "model_revision": snapshot[1]}
        return {without_local_paths(k): without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str):
        # At least two parts deep, as inside a text: a label named `/neutral` is a name, not a folder of the root.
        deep = value.startswith("~/") or (value.startswith("/") and value.rstrip("/").count("/") >= 2)
        if deep and "\n" not in value:
            snapshot = snapshot_in_path(value)
            return snapshot[0] if snapshot else Path(value.rstrip("/")).name or value
        return _LOCAL_PATH.sub(lambda m: m.group(1), value)
    return value


def published_text(path: Path) -> str | None:
    """What a push uploads for `path`, when that differs from the file; None for a file that goes up as it is."""
    if path.suffix.lower() not in RECORD_SUFFIXES or path.name in UNTOUCHED:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if "/" not in text:
        return None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            value = json.loads(text)
            new = without_local_paths(value)
            return None if new == value else json_text(new, indent=2) + "\n"
        if suffix in (".yaml", ".yml"):
            value = yaml.safe_load(text)
            new = without_local_paths(value)
            return None if new == value else dump_yaml(new, sort_keys=False)
    except (ValueError, yaml.YAMLError):
        pass  # not what its name says: rewritten as text below
    new = _LOCAL_PATH.sub(lambda m: m.group(1), text)
    return None if new == text else new


@contextmanager
def publishable(folder: Path) -> Iterator[Path]:
    """The folder to upload: `folder` itself when no record in it names a local path, else a temporary folder of
    links to its files beside rewritten copies of those records (removed afterwards; `folder` is not touched)."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    rewritten = {path.relative_to(folder): text for path in files if (text := published_text(path)) is not None}
    if not rewritten:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="hf-transfer-push-") as stage:
        root = Path(stage) / folder.name
        for path in files:
            relative = path.relative_to(folder)
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if relative in rewritten:
                target.write_text(rewritten[relative], encoding="utf-8")
                continue
            try:
                os.symlink(path.resolve(), target)
            except OSError:  # no symlinks here (Windows without the privilege): a copy
                shutil.copy2(path, target)
        yield root
