"""`dataset_name`: its splits loaded with `datasets`, and their ClassLabel columns. `class_encode_column` on a
DatasetDict numbers each split on its own: a validation split lacking a class numbers the others differently, and its
ids had been read with the names of whichever split came last (its rows scored as another class, or refused as "never
seen in training")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import datasets
import pandas as pd

from hf_transfer.core.tables import error_reason
from hf_transfer.errors import DataError


def load_named_dataset(name: str, config: str | None) -> dict:
    """`dataset_name`'s splits: a folder written by `save_to_disk` (a DatasetDict, or one Dataset read as the train
    split) with `load_from_disk`, anything else with `load_dataset` (a Hub id, cached when offline, or a folder of
    data files, read as train_file reads them: see `_as_files_are_read`). DataError in one line, keeping the list of
    configurations `datasets` offers."""
    folder = Path(name).expanduser()
    what = f"dataset {name!r}" + (f" (config {config!r})" if config else "")
    try:
        if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
            if config:
                raise DataError(f"{what}: a folder written by save_to_disk has no configurations; drop it.")
            loaded = datasets.load_from_disk(str(folder))
            return {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)
        return dict(datasets.load_dataset(name, config, **_as_files_are_read(folder, config)))
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any loader failure is a user-facing data problem
        reason = error_reason(err).rstrip(".")
        offered = re.search(r"available configs: (\[[^\]]*\])", str(err), re.IGNORECASE)
        if offered and not config:
            reason = f"it has several configurations; set dataset_config_name to one of {offered.group(1)}"
        offline = ". Offline (HF_HUB_OFFLINE=1) only cached datasets load; use train_file/validation_file for local"
        hint = "" if folder.exists() else offline + " files"
        raise DataError(f"could not load {what}: {reason}{hint}.") from None


def _as_files_are_read(folder: Path, config: str | None) -> dict:
    """`load_dataset`'s options for a local folder of csv/tsv files: only an empty cell is missing, as in a train_file
    (pandas' defaults read `NA`, `None`, `null`, `N/A` as missing: a class named None was dropped as unlabelled). None
    for a folder whose README names several configurations and no config is given: `datasets` names them."""
    if not folder.is_dir():
        return {}
    try:
        module = datasets.load.dataset_module_factory(str(folder))
    except Exception:  # noqa: BLE001 - load_dataset says what is wrong with the folder
        return {}
    if config is None and len(module.builder_configs_parameters.builder_configs or []) > 1:
        return {}
    return {"keep_default_na": False, "na_values": [""]} if module.module_path.endswith(".csv") else {}


def _class_label(feature) -> datasets.ClassLabel | None:
    feature = getattr(feature, "feature", feature)  # List(ClassLabel) for multi-label
    return feature if isinstance(feature, datasets.ClassLabel) else None


def reference_class_names(features: dict[str, datasets.Features]) -> dict[str, list[str]]:
    """{column: class names} of each ClassLabel column, as train names them (else the first split that has it)."""
    names: dict[str, list[str]] = {}
    for split in sorted(features, key=lambda s: s != "train"):
        for column, feature in features[split].items():
            if (label := _class_label(feature)) is not None:
                names.setdefault(column, list(label.names))
    return names


def other_class_names(features: datasets.Features, reference: dict[str, list[str]]) -> dict[str, list[str]]:
    """{column: this split's names} for its ClassLabel columns whose names differ from `reference`'s."""
    own = {column: list(label.names) for column, f in features.items() if (label := _class_label(f)) is not None}
    return {column: names for column, names in own.items() if names != reference.get(column)}


def ids_as_names(frames: Iterator[pd.DataFrame], names: dict[str, list[str]]) -> Iterator[pd.DataFrame]:
    """The frames with each column of `names` read from this split's ids into its names (a list cell item by item; a
    missing label, None or -1, stays missing), which the label space then reads by name."""

    def name(value, column):
        if value is None or (not hasattr(value, "__len__") and pd.isna(value)) or int(value) < 0:
            return None
        return names[column][int(value)]

    for frame in frames:
        for column in names:
            frame[column] = [
                [name(v, column) for v in cell] if hasattr(cell, "__len__") else name(cell, column)
                for cell in frame[column]
            ]
        yield frame
