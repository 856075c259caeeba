"""What a resume needs to go on where it stopped: the same training rows, in the same order, in steps of the same
number of rows. Trainer skips the batches the checkpoint's epoch had trained on by count alone; with other data,
another `seed` or another effective batch those are other rows, and some rows of the epoch are trained on twice
while others are never seen. Each checkpoint records the facts; a resume compares them before its first step."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_transfer.core.folders import write_text_atomic
from hf_transfer.core.runtime import effective_batch_size
from hf_transfer.errors import ConfigError
from hf_transfer.outputs.checkpoints import OWN_FILES_STATE

ORDER_FILE = "hf_transfer_order.json"


def rows_digest(dataset) -> str:
    """A digest of the rows' token ids and labels, in order: `labels` and the `*input_ids` columns. Columns derived
    from a model (cached features, teacher logits and their top-k indices) may differ in their last bits when
    rebuilt, and say nothing of which rows these are."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def update(digest, array) -> None:
        if (
            pa.types.is_list(array.type)
            or pa.types.is_large_list(array.type)
            or pa.types.is_fixed_size_list(array.type)
        ):
            digest.update(pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
            update(digest, pc.list_flatten(array))
        elif pa.types.is_integer(array.type) or pa.types.is_boolean(array.type):
            digest.update(array.to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        else:  # the labels of a multi-label run: multi-hot floats (0 and 1, exact)
            digest.update(array.to_numpy(zero_copy_only=False).astype(np.float64).tobytes())

    names = sorted(n for n in dataset.column_names if n == "labels" or n.endswith("input_ids"))
    digest = hashlib.sha256(json.dumps([len(dataset), names]).encode())
    for batch in dataset.select_columns(names).with_format("arrow").iter(batch_size=10_000):
        for name in names:
            update(digest, batch.column(name).combine_chunks())
    return digest.hexdigest()[:16]


class ResumeOrder(TrainerCallback):
    """Writes `ORDER_FILE` into each checkpoint, and refuses a resume whose order differs from its checkpoint's."""

    def __init__(self, trainer):
        self.trainer = trainer
        self._facts = None

    def facts(self, args) -> dict:
        if self._facts is None:
            dataset = self.trainer.train_dataset
            readable = hasattr(dataset, "data") and hasattr(dataset, "select_columns")  # a `datasets.Dataset`
            self._facts = {
                "seed": args.seed,
                "data_seed": args.data_seed,
                "rows_per_step": effective_batch_size(
                    args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size
                ),
                "train_rows": len(dataset) if readable else None,
                "train_rows_digest": rows_digest(dataset) if readable else None,
            }
        return self._facts

    def on_train_begin(self, args, state, control, **kwargs):
        if args.resume_from_checkpoint and not args.ignore_data_skip:
            check_resume_order(Path(args.resume_from_checkpoint), self.facts(args))
        elif state.is_world_process_zero and args.save_strategy != "no":
            self.facts(args)  # now, not at the first save, between its trainer_state.json and our file

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if folder.is_dir():
                write_text_atomic(folder / ORDER_FILE, json.dumps(self.facts(args), indent=2) + "\n")


class CheckpointFiles(TrainerCallback, ExportableState):
    """The files of ours each checkpoint holds (the resume-order facts, a distillation's projections), named in its
    `trainer_state.json`, which is written whole before them: they are written from `on_save`, after it, so a
    checkpoint whose state names a file it lacks was cut off between the two and is not complete
    (`run_folder.complete_checkpoints`); its resume had skipped the changed-data check or restarted the projections
    untrained."""

    def __init__(self, files=()):
        self.files = list(files)

    def state(self) -> dict:
        return {"args": {"files": list(self.files)}, "attributes": {}}

    def on_train_begin(self, args, state, control, **kwargs):
        # Resumed from a checkpoint of an earlier version, whose state has no entry: Trainer's save looks it up.
        state.stateful_callbacks.setdefault(OWN_FILES_STATE, self.state())  # its key: the class name


WHAT = {
    "seed": "seed",
    "data_seed": "data_seed",
    "rows_per_step": "effective batch (rows per optimizer step)",
    "train_rows": "number of training rows",
    "train_rows_digest": "training rows (their tokens and labels)",
}


def check_resume_order(checkpoint: Path, now: dict) -> None:
    """Refuse to resume from `checkpoint` when its recorded order differs from this run's (not checked when it
    recorded none: a checkpoint of an earlier version)."""
    try:
        then = json.loads((checkpoint / ORDER_FILE).read_bytes())
    except (OSError, ValueError):
        return
    for key, what in WHAT.items():
        old, new = then.get(key), now.get(key)
        if key not in then or old == new or (key not in ("seed", "data_seed") and None in (old, new)):
            continue  # a value one side could not know (data that is not a `datasets.Dataset`) is not compared
        counted = key in ("rows_per_step", "train_rows")
        shown = [f"{v:,}" if counted else "unset" if v is None else v for v in (old, new)]
        change = f" ({shown[0]} then, {shown[1]} now)" if key != "train_rows_digest" else ""
        raise ConfigError(
            f"resume_from_checkpoint {str(checkpoint)!r} was trained with another {what}{change}: Trainer would "
            "skip the batches it trained on by count, so the epoch would train some rows twice and others never. "
            "Resume with the checkpoint's data and settings, pass --ignore_data_skip true to start the epoch's "
            "order afresh, or start a new run in another output_dir."
        )
