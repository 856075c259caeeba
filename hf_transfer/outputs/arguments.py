"""The arguments of `hf-transfer card` and `hf-transfer push`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hf_transfer.errors import ConfigError


@dataclass
class CardArguments:
    """`hf-transfer card DIR`: write DIR/README.md again from the card data and run record DIR holds."""

    model_dir: str | None = field(
        default=None, metadata={"help": "Output folder of a finished run (positional: `hf-transfer card DIR`)."}
    )
    hub_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub repo id the card's quick-start loads from, kept for later regenerations. Default: the id the "
            "card already names (from push, or an earlier --hub_model_id), else the folder's name."
        },
    )

    def __post_init__(self):
        _check_model_dir(self.model_dir, "card")


@dataclass
class PushArguments:
    """`hf-transfer push DIR --hub_model_id NAME`: upload a finished run folder to the Hub, card refreshed first.

    The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT is honoured."""

    model_dir: str | None = field(
        default=None, metadata={"help": "Output folder of a finished run (positional: `hf-transfer push DIR`)."}
    )
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Hub repo id, `namespace/name` (or `name` for your own namespace). Required."}
    )
    private: bool = field(
        default=False, metadata={"help": "Create the repo private (an existing repo keeps its visibility)."}
    )
    revision: str | None = field(
        default=None, metadata={"help": "Branch to push to; created from main when missing. Default: main."}
    )
    commit_message: str | None = field(
        default=None, metadata={"help": "Default: how the model was made and its validation score."}
    )
    include_training_state: bool = field(
        default=False,
        metadata={
            "help": "Also upload a Trainer checkpoint's training state (optimizer.pt, scheduler.pt, rng_state*.pth, "
            "scaler.pt, trainer_state.json), held back by default: it only resumes training."
        },
    )
    include_data_files: bool = field(
        default=False,
        metadata={
            "help": "Also upload the files of rows of data in the folder (csv, tsv, jsonl, parquet: the run's data "
            "files, its test predictions), held back by default: the model repo would publish their text."
        },
    )

    def __post_init__(self):
        _check_model_dir(self.model_dir, "push")
        if not self.hub_model_id:
            raise ConfigError("hub_model_id is required: `hf-transfer push DIR --hub_model_id namespace/name`.")


def _check_model_dir(path: str | None, command: str) -> None:
    if not path:
        raise ConfigError(f"no folder given: `hf-transfer {command} DIR`, DIR being a run's output_dir.")
    if not os.path.isdir(path):
        what = "is not a folder" if os.path.exists(path) else "does not exist"
        raise ConfigError(f"{path!r} {what}; `hf-transfer {command} DIR` takes a run's output_dir.")
