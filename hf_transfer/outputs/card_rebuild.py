"""A card's data for a folder whose `hf_transfer_card_data.json` is missing (deleted, or from before it was saved):
rebuilt from the run record by the command that wrote the folder. A merge or an export had been carded as a training
run (titled "fine-tuned", without its scores), and a few-shot run with the Trainer settings its route replaces."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.core.arguments import EvalSet
from hf_transfer.core.folders import CARD_DATA_FILE, RUN_RECORD_FILE, read_json_object
from hf_transfer.core.run_records import recorded_config
from hf_transfer.outputs.card_data import CardData, load_card_data
from hf_transfer.outputs.export_card import export_card_data
from hf_transfer.outputs.few_shot_card import FEW_SHOT_REPLACES
from hf_transfer.outputs.merge_card import SWEEP_JSON, merge_card_data


def folder_card_data(folder: str | Path) -> CardData | None:
    """The card data of `folder`: its saved file, else rebuilt from its run record as the command that wrote it
    would (None when it holds neither)."""
    folder = Path(folder)
    if (folder / CARD_DATA_FILE).is_file() or not (folder / RUN_RECORD_FILE).is_file():
        return load_card_data(folder)
    record = read_json_object(folder / RUN_RECORD_FILE)
    if record.get("task") == "merge" and isinstance(record.get("merge"), dict):
        sweep = read_json_object(folder / SWEEP_JSON) if (folder / SWEEP_JSON).is_file() else {}
        # The validation set first, then the extra sets, as merge scored them (by name alone without the sweep file).
        files = sweep.get("files") or {name: name for name in record.get("eval_sets") or {}}
        card_data = merge_card_data(
            record, recorded_config(folder), folder, [EvalSet(name, path) for name, path in files.items()]
        )
    elif record.get("task") == "export" and isinstance(record.get("export"), dict):
        export = record["export"]
        scored_on = str((export.get("parity") or {}).get("rows_from") or "").strip("`")
        validation = scored_on if export.get("validation_report") else None  # its file, by name
        card_data = export_card_data(str(export.get("source")), record, folder.resolve().name, validation)
    else:
        card_data = load_card_data(folder)
        if card_data is not None and card_data.few_shot:  # the route's own values are in its few-shot table
            card_data.hyperparameters = {
                k: v for k, v in card_data.hyperparameters.items() if k not in FEW_SHOT_REPLACES
            }
    if card_data is not None:
        card_data.versions = {}  # today's versions are not the ones the folder was made with
    return card_data
