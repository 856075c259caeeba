"""Folders training reads and writes: a Trainer checkpoint given as the model to train, and an output_dir that
already holds a run. A rerun wrote over a finished run in place; a checkpoint as the model silently started afresh."""

import hashlib
import json

import pytest
import test_cli
from test_cli import train_argv

from hf_transfer.cli import main
from hf_transfer.outputs.card_data import load_card_data
from hf_transfer.outputs.run_folder import started_from_checkpoint

tiny_data = test_cli.tiny_data  # the fixture, shared


@pytest.fixture
def finished_run(tmp_path, tiny_bert_dir, tiny_data):
    """A finished run (40 rows, batch 8: 5 steps) that kept checkpoint-2, -4 and -5."""
    out = tmp_path / "run"
    argv = train_argv(
        tiny_bert_dir, *tiny_data, out, "--save_strategy", "steps", "--save_steps", "2", "--few_shot", "false"
    )
    assert main(argv) == 0
    return out, argv


def fingerprint(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_trainer_checkpoint_as_the_model_is_said_once_and_recorded(finished_run, tmp_path, tiny_data, caplog):
    """`--model_name_or_path OUT/checkpoint-4` started a fresh run from its weights without a word: the user most
    likely meant --resume_from_checkpoint. It still trains (fine-tuning on from a checkpoint is legitimate), after one
    line naming the resume flag, and the record and card say where the weights came from."""
    run, _ = finished_run
    checkpoint = run / "checkpoint-4"
    out = tmp_path / "from-checkpoint"
    with caplog.at_level("WARNING"):
        assert main(train_argv(checkpoint, *tiny_data, out, "--few_shot", "false")) == 0
    said = [r.getMessage() for r in caplog.records if "is a Trainer checkpoint" in r.getMessage()]
    assert len(said) == 1, said
    assert f"--resume_from_checkpoint {checkpoint}" in said[0] and "optimizer.pt" in said[0]
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["started_from_checkpoint"] == {"checkpoint": "checkpoint-4", "step": 4}
    assert "resumed_from" not in record and record["train_metrics"]["optimizer_steps"] == 5  # afresh: steps 1 to 5
    assert load_card_data(out).recipe["started_from_checkpoint"]["step"] == 4
    assert "the Trainer checkpoint `checkpoint-4` (step 4), afresh" in (out / "README.md").read_text()
    # A finished run's folder (its trainer_state.json, no optimizer) is a model to fine-tune further: nothing to say.
    assert started_from_checkpoint(str(run)) == {} and started_from_checkpoint(str(out)) == {}


def test_rerunning_into_a_finished_run_is_refused_before_anything_loads(finished_run, monkeypatch, capsys, caplog):
    """A rerun into the same output_dir wrote the new model, results and card over the finished run, and left its
    checkpoints (which a later --resume_from_checkpoint true would pick) beside them. Now one line, status 2, before
    the data is read or a weight loads, the folder byte for byte as it was."""
    run, argv = finished_run
    before = fingerprint(run)
    capsys.readouterr()

    def no_loading(*args, **kwargs):
        raise AssertionError("weights loaded")

    with monkeypatch.context() as patch:
        patch.setattr("hf_transfer.train.command.load_classifier", no_loading)
        patch.setattr("hf_transfer.train.preflight.load_data", no_loading)
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds an earlier run" in err[0], err
    assert "--resume_from_checkpoint true" in err[0] and "--overwrite_output_dir true" in err[0]
    assert fingerprint(run) == before
    # Resuming there goes on (two epochs now), and --overwrite_output_dir true replaces it, saying so.
    assert main([*argv, "--resume_from_checkpoint", "true", "--num_train_epochs", "2"]) == 0
    assert json.loads((run / "hf_transfer_run.json").read_text())["resumed_from"]["checkpoint"] == "checkpoint-5"
    with caplog.at_level("WARNING"):
        assert main([*argv, "--overwrite_output_dir", "true", "--save_strategy", "no"]) == 0
    assert "overwrite_output_dir: this run writes over it" in caplog.text
    assert "resumed_from" not in json.loads((run / "hf_transfer_run.json").read_text())
