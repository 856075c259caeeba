"""`hf-transfer card DIR` and `hf-transfer push DIR`: the commands that work on a finished run folder."""

from __future__ import annotations

import shlex
from pathlib import Path

from hf_transfer.core.folders import LINEAR_PROBE_RECORD, check_writable, search_folder_hint
from hf_transfer.errors import ConfigError
from hf_transfer.outputs.arguments import CardArguments, PushArguments
from hf_transfer.outputs.card_rebuild import folder_card_data
from hf_transfer.outputs.cards import write_model_card
from hf_transfer.outputs.checkpoints import complete_checkpoints
from hf_transfer.outputs.hub import PushTarget, check_pushable, check_repo_id, check_revision, push_folder


def run_card(args: CardArguments) -> dict:

    card_data = folder_card_data(args.model_dir)
    if card_data is None and (Path(args.model_dir) / LINEAR_PROBE_RECORD).is_file():
        raise ConfigError(
            f"{args.model_dir!r} is the linear probe of an LP-FT run, which keeps no card of its own: its card is the "
            f"run's ({str(Path(args.model_dir).parent)!r}); to publish the probe, export it (hf-transfer export) or "
            "merge it (hf-transfer merge --pretrained), whose cards describe it."
        )
    if card_data is None:
        raise ConfigError(
            f"{args.model_dir!r} holds neither hf_transfer_card_data.json nor hf_transfer_run.json; give the "
            "output_dir of a run made by hf-transfer train, distill, merge or export."
            + search_folder_hint(args.model_dir)
            + _cut_off_hint(args.model_dir)
        )
    check_writable(args.model_dir, "model_dir", todo="the card is written there: copy the folder somewhere writable")
    repo_id = None
    if args.hub_model_id:
        repo_id = check_repo_id(args.hub_model_id)
    elif card_data.repo_id is None:  # not pushed: named by the folder it is in now
        _name_by_folder(card_data, Path(args.model_dir).resolve())
    return {"card": str(write_model_card(args.model_dir, card_data, repo_id=repo_id))}


def _name_by_folder(card_data, folder: Path) -> None:
    """A copied or renamed run folder's card kept the old name in its title, its model-index and the path its quick
    start loads (another folder, or none). A model inside its run's folder (merge_adapter's `merged/`) is named by
    both, as the run named it."""
    if card_data.local_path and "/" in card_data.local_path:
        card_data.local_path = f"{folder.parent.name}/{folder.name}"
        card_data.model_name = f"{folder.parent.name}-{folder.name}"
    else:
        card_data.model_name, card_data.local_path = folder.name, None


def _cut_off_hint(folder: str) -> str:
    """For a train or distill run stopped before its outputs were written (checkpoints, no run record): how to
    finish it; else ''."""
    # A stock Trainer's finished folder has checkpoints too: it was neither ours nor stopped.
    if not complete_checkpoints(folder, own_files=False, ours_only=True):
        return ""
    return (
        " Its checkpoints are those of a run stopped before its outputs were written: rerun the same train or distill "
        "command with --resume_from_checkpoint true to finish it."
    )


def run_push(args: PushArguments) -> dict:

    revision = check_revision(args.revision)
    message, state, data = args.commit_message, args.include_training_state, args.include_data_files
    again = " --include_training_state true" * bool(state) + " --include_data_files true" * bool(data)
    again += f" --commit_message {shlex.quote(message)}" if message else ""  # the retry pushes the same files
    target = PushTarget(check_repo_id(args.hub_model_id), True if args.private else None, revision, again=again)
    check_pushable(args.model_dir)
    return push_folder(args.model_dir, target, message, state, data)
