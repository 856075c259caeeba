"""What a run folder recorded about how it was made, read back: its resolved configuration
(`hf_transfer_config.yaml`), the Hub revision it read its model at, and the Hub model it stands for."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hf_transfer.core.folders import CARD_DATA_FILE, CONFIG_FILE, RUN_RECORD_FILE
from hf_transfer.errors import ConfigError, one_line


def recorded_config(folder: str | Path) -> dict:
    """The resolved configuration the run that wrote `folder` saved there (`hf_transfer_config.yaml`); {} when there is
    none (a Hub id, a folder from elsewhere). One that is there but damaged is refused: read as none, `predict` and
    `evaluate` had scored at 128 tokens a model trained at 32, without a word."""
    import yaml

    path = Path(folder) / CONFIG_FILE
    if not path.is_file() and is_run_checkpoint(Path(folder)):  # Trainer's checkpoint-N: the run's settings
        path = Path(folder).parent / CONFIG_FILE  # (a checkpoint's predict read one text column at 128 tokens)
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        why = None if isinstance(config, dict) else f"it holds {type(config).__name__}, not the run's settings"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        why = one_line(err, 120)
    if why is not None:
        raise ConfigError(
            f"{str(path)!r} cannot be read ({why}); restore it from the run, or move it away to use the folder "
            "without the settings it was trained with (max_seq_length, columns)."
        )
    return config


def is_run_checkpoint(folder: Path) -> bool:
    """A `checkpoint-N` folder Trainer saved (its `trainer_state.json`), inside the run folder it belongs to."""
    return re.fullmatch(r"checkpoint-\d+", folder.name) is not None and (folder / "trainer_state.json").is_file()


def recorded_revision(folder: str | Path, model: str) -> str:
    """The Hub revision the run that wrote `folder` read `model` at, else main: the model a run started from, read
    again at the same revision. From its run record (`base_model`, `base_model_revision`: a cache snapshot folder's
    commit too), else its resolved config (`model_name_or_path`, `model_revision`)."""
    if Path(model).exists():
        return "main"
    try:
        record = json.loads((Path(folder) / RUN_RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    if isinstance(record, dict) and record.get("base_model") == model and record.get("base_model_revision"):
        return str(record["base_model_revision"])
    recorded = recorded_config(folder)
    revision = recorded.get("model_revision")
    return str(revision) if recorded.get("model_name_or_path") == model and revision else "main"


def is_hub_id(name: str | None) -> bool:
    """A Hub repo id, as opposed to a folder on this machine (which the card must not present as a base model)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or Path(name).is_absolute() or str(name).startswith(".") or Path(name).exists():
        return False
    try:
        validate_repo_id(str(name))
    except HFValidationError:
        return False
    return str(name).count("/") <= 1


def folder_hub_lineage(folder: str) -> str | None:
    """The Hub id that stands for a local hf-transfer model folder in a derived model's `base_model`: the Hub base
    model it was made from (an ancestor of the weights; never for an adapter's base, which must name the very
    weights), else the repo its card names (set for a push that may not have happened: offline, it did not)."""
    try:
        data = json.loads((Path(folder) / CARD_DATA_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    found = [data.get(key) for key in ("base_model", "repo_id")] if isinstance(data, dict) else []
    return next((name for name in found if is_hub_id(name)), None)
