"""Folders training reads and writes: a Trainer checkpoint given as the model to train, and an output_dir that
already holds a run. A rerun wrote over a finished run in place; a checkpoint as the model silently started afresh."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import test_cli
import torch
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
    assert (
        "--resume_from_checkpoint true and more num_train_epochs" in err[0] and "--overwrite_output_dir true" in err[0]
    )
    assert fingerprint(run) == before
    # Resuming from its last checkpoint with the same epochs trained nothing and recorded a train loss of 0 over
    # "steps 6 to 5": refused in one line, the folder as it was.
    for resume in ("true", str(run / "checkpoint-5")):
        assert main([*argv, "--resume_from_checkpoint", resume]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is the last step (5) of a finished run" in err[0], err
    assert fingerprint(run) == before
    # Stopped after its last checkpoint but before its outputs (no run record): the same resume finishes it.
    import shutil

    cut = run.parent / "cut_before_outputs"
    shutil.copytree(run, cut)
    (cut / "hf_transfer_run.json").unlink()
    argv_cut = [str(cut) if value == str(run) else value for value in argv]
    assert main(argv_cut) == 2
    err = capsys.readouterr().err.strip()
    assert "finish it (it stopped before writing its outputs) with --resume_from_checkpoint true" in err, err
    (cut / "hf_transfer_card_data.json").unlink(missing_ok=True)  # `card` on it said only what it lacks
    assert main(["card", str(cut)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume_from_checkpoint true to finish it" in err, err
    # A stock Trainer's finished folder has checkpoints too, without our files named: not called a stopped run.
    for state_file in cut.glob("checkpoint-*/trainer_state.json"):
        state = json.loads(state_file.read_text())
        state["stateful_callbacks"].pop("CheckpointFiles")
        state_file.write_text(json.dumps(state))
    assert main(["card", str(cut)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds neither hf_transfer_card_data.json nor hf_transfer_run.json" in err and "finish it" not in err
    # A run cut short by max_steps (trainer_state.json calls it 1 epoch, rounded up) has more to train for an epoch.
    short = run.parent / "short"
    argv_short = [*argv[: argv.index("--output_dir") + 1], str(short), *argv[argv.index("--output_dir") + 2 :]]
    assert main([*argv_short, "--max_steps", "2"]) == 0
    assert main([*argv_short, "--max_steps", "2", "--resume_from_checkpoint", "true"]) == 2
    assert "last step (2) of a finished run of 2 steps" in capsys.readouterr().err
    assert main([*argv_short, "--resume_from_checkpoint", "true"]) == 0  # its 1 epoch is 5 steps
    assert json.loads((short / "train_results.json").read_text())["optimizer_steps"] == 5
    # Resuming there goes on (two epochs now), and --overwrite_output_dir true replaces it, saying so.
    assert main([*argv, "--resume_from_checkpoint", "true", "--num_train_epochs", "2"]) == 0
    assert json.loads((run / "hf_transfer_run.json").read_text())["resumed_from"]["checkpoint"] == "checkpoint-5"
    with caplog.at_level("WARNING"):
        assert main([*argv, "--overwrite_output_dir", "true", "--save_strategy", "no"]) == 0
    assert "overwrite_output_dir: this run writes over it" in caplog.text
    assert "resumed_from" not in json.loads((run / "hf_transfer_run.json").read_text())


def test_overwriting_a_finished_run_leaves_none_of_its_checkpoints_or_stale_outputs(
    tmp_path, tiny_bert_dir, tiny_data
):
    """--overwrite_output_dir true wrote the new run over the old one in place: the old run's checkpoint-N folders
    stayed (a later --resume_from_checkpoint true picked the old run's newest), and so did what the new run did not
    write again (test_results.json, and the old test scores inside all_results.json, which Trainer updates). Now they
    are removed once every check has passed; a refused command leaves the folder as it was, and files and folders
    that are not the earlier run's stay."""
    out = tmp_path / "run"
    base = train_argv(tiny_bert_dir, *tiny_data, out, "--few_shot", "false")
    assert main([*base, "--save_strategy", "steps", "--save_steps", "2", "--test_file", str(tiny_data[1])]) == 0
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-4", "checkpoint-5"}
    assert (out / "test_results.json").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "checkpoint-notes").mkdir()
    (out / "checkpoint-9").mkdir()  # not a Trainer checkpoint: nothing of Trainer's in it
    (out / "checkpoint-9" / "mine.txt").write_text("mine")
    before = fingerprint(out)
    # A refused command (a column the data lacks) leaves everything in place, the earlier run's checkpoints included.
    assert main([*base, "--overwrite_output_dir", "true", "--label_column_name", "nope"]) == 2
    assert fingerprint(out) == before
    assert main([*base, "--overwrite_output_dir", "true", "--save_strategy", "steps", "--save_steps", "3"]) == 0
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-3", "checkpoint-5", "checkpoint-notes",
                                                          "checkpoint-9"}  # fmt: skip
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoint-9" / "mine.txt").is_file()
    assert not (out / "test_results.json").exists()
    assert not [k for k in json.loads((out / "all_results.json").read_text()) if k.startswith("test_")]
    # Resuming goes on from the new run's newest checkpoint, never from one of the earlier run's.
    state = json.loads((out / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["save_steps"] == 3


def test_overwriting_keeps_the_files_the_run_reads_and_a_readme_the_user_wrote(
    tmp_path, tiny_bert_dir, tiny_data, caplog
):
    """overwrite_output_dir removed the earlier run's files by name: the run's own training data, saved in the
    folder as predict_results.csv (pseudo-labels), went before training read it, and so did a README the user had
    written (the card is merged into one, keeping the user's text)."""
    out = tmp_path / "run"
    base = train_argv(tiny_bert_dir, *tiny_data, out, "--few_shot", "false")
    assert main(base) == 0
    data = out / "predict_results.csv"
    data.write_bytes(Path(tiny_data[0]).read_bytes())
    readme = (out / "README.md").read_text()
    (out / "README.md").write_text(readme + "\n## My notes\n\nKeep this.\n")
    argv = [*base, "--train_file", str(data), "--overwrite_output_dir", "true"]
    assert main(argv) == 0
    assert data.read_bytes() == Path(tiny_data[0]).read_bytes()
    assert "## My notes\n\nKeep this." in (out / "README.md").read_text()
    assert json.loads((out / "hf_transfer_run.json").read_text())["data"]["train"]["rows"] == 40
    # A key the user added to the header is theirs too: kept, and merged into the new card (it had gone).
    card = (out / "README.md").read_text().replace("\n---\n", "\nwidget:\n- text: my curated example\n---\n", 1)
    (out / "README.md").write_text(card.replace("## My notes\n\nKeep this.\n", ""))
    assert main(argv) == 0
    assert "widget:\n- text: my curated example" in (out / "README.md").read_text()
    # A card with nothing of the user's in it is the earlier run's output, and goes as before.
    from hf_transfer.outputs.readme import is_generated_card

    assert main([*base, "--overwrite_output_dir", "true"]) == 0  # a card of ours, the bytes it noted
    assert is_generated_card(out / "README.md")
    (out / "README.md").write_text((out / "README.md").read_text().replace("---\n", "---\nlicense: mit\n", 1))
    assert not is_generated_card(out / "README.md")
    # A card of a version that noted no hash: its header is compared with the one its card data renders, so a key
    # the user set there (license) is theirs, and stays; an untouched one is still the run's to replace.
    (out / "README.md").unlink()
    assert main([*base, "--overwrite_output_dir", "true"]) == 0
    card_data = out / "hf_transfer_card_data.json"
    saved = json.loads(card_data.read_text())
    saved.pop("readme_sha256")
    card_data.write_text(json.dumps(saved))
    text = (out / "README.md").read_text()
    assert "\nlibrary_name: transformers\n" in text and "license:" not in text
    (out / "README.md").write_text(
        text.replace("library_name: transformers", "library_name: transformers\nlicense: mit")
    )
    assert main([*base, "--overwrite_output_dir", "true"]) == 0
    assert "license: mit" in (out / "README.md").read_text()
    saved = json.loads(card_data.read_text())
    saved.pop("readme_sha256")
    card_data.write_text(json.dumps(saved))
    (out / "README.md").write_text((out / "README.md").read_text().replace("license: mit\n", ""))
    caplog.clear()
    assert main([*base, "--overwrite_output_dir", "true"]) == 0
    said = [r.getMessage() for r in caplog.records if "overwrite_output_dir: removed" in r.getMessage()]
    assert len(said) == 1 and "README.md" in said[0], said


@pytest.fixture(scope="module")
def resumed_pair(tmp_path_factory, tiny_bert_dir):
    """A 2-epoch run with gradual unfreezing (5 steps an epoch, a loss logged each step, a checkpoint at each
    epoch's end), and the same run resumed from a copy of its checkpoint at the end of epoch 1."""
    import shutil

    root = tmp_path_factory.mktemp("resumed")
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(48)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(48)]
    data = (test_cli.write_csv(root / "train.csv", texts[:40], labels[:40]),
            test_cli.write_csv(root / "dev.csv", texts[40:], labels[40:]))  # fmt: skip
    extra = ["--num_train_epochs", "2", "--gradual_unfreezing", "1", "--save_strategy", "epoch", "--few_shot", "false"]
    whole, resumed = root / "whole", root / "resumed"
    assert main(train_argv(tiny_bert_dir, *data, whole, *extra)) == 0
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-5", resumed / "checkpoint-5")
    argv = train_argv(tiny_bert_dir, *data, resumed, *extra, "--resume_from_checkpoint", "true")
    assert main(argv) == 0
    return whole, resumed, data, extra


def test_a_resume_that_changes_the_optimizers_fields_is_refused(resumed_pair, tiny_bert_dir, tmp_path, capsys):
    """`--learning_rate 0.01` on a resume went on at the checkpoint's rate (Trainer loads the optimizer and
    scheduler states back) while the resolved config and the card said 0.01."""
    import shutil

    whole, _, data, extra = resumed_pair
    out = tmp_path / "again"
    shutil.copytree(whole / "checkpoint-5", out / "checkpoint-5")
    before = sorted(p.name for p in out.rglob("*"))
    argv = train_argv(tiny_bert_dir, *data, out, *extra, "--resume_from_checkpoint", "true")
    for flag, value in (("--learning_rate", "0.01"), ("--weight_decay", "0.1"), ("--layerwise_lr_decay", "0.5")):
        assert main([*argv, flag, value]) == 2
        err = capsys.readouterr().err.strip()
        name = flag.removeprefix("--")
        assert len(err.splitlines()) == 1 and f"where {name} is" in err and f"Resume with {name}" in err, err
    assert sorted(p.name for p in out.rglob("*")) == before  # refused before anything was written


def test_a_resume_that_changes_what_trains_or_the_loss_is_refused(resumed_pair, tiny_bert_dir, tmp_path, capsys):
    """Thirty-seventh review: a resume with another freeze plan, class weights, smoothing or a linear probe went on
    from an optimizer state matched by position to other parameters (or died with the optimizer's traceback once
    the model had loaded), and the card described the whole run with the new value; a LoRA resume with other target
    modules too. Each is one line, before anything is written; the same settings resume as before."""
    import shutil

    whole, _, data, extra = resumed_pair
    out = tmp_path / "again"
    shutil.copytree(whole / "checkpoint-5", out / "checkpoint-5")
    before = sorted(p.name for p in out.rglob("*"))
    argv = train_argv(tiny_bert_dir, *data, out, *extra, "--resume_from_checkpoint", "true")
    for flag, value in (("--gradual_unfreezing", "0"), ("--freeze_layers", "[0]"), ("--class_weights", "balanced"),
                        ("--label_smoothing_factor", "0.1")):  # fmt: skip
        assert main([*argv, flag, value]) == 2, flag
        err = capsys.readouterr().err.strip()
        name = flag.removeprefix("--")
        assert len(err.splitlines()) == 1 and "was trained with" in err and f"Resume with {name}" in err, err
    assert sorted(p.name for p in out.rglob("*")) == before
    # A run whose settings the code resolves (balanced weights, a frozen block, smoothing) resumes with the same.
    settings = ["--class_weights", "balanced", "--freeze_layers", "1", "--label_smoothing_factor", "0.1",
                "--num_train_epochs", "2", "--save_strategy", "epoch", "--few_shot", "false"]  # fmt: skip
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(train_argv(tiny_bert_dir, *data, first, *settings)) == 0
    shutil.copytree(first / "checkpoint-5", second / "checkpoint-5")
    argv = train_argv(tiny_bert_dir, *data, second, *settings, "--resume_from_checkpoint", "true")
    capsys.readouterr()
    assert main([*argv, "--linear_probe_epochs", "1"]) == 2  # the probe was trained, then thrown away
    assert "was trained with linear_probe_epochs 0" in capsys.readouterr().err
    assert main(argv) == 0
    lora = [
        "--peft_method",
        "lora",
        "--target_modules",
        "query,value",
        "--save_strategy",
        "epoch",
        "--few_shot",
        "false",
    ]
    assert main(train_argv(tiny_bert_dir, *data, tmp_path / "lora", *lora)) == 0
    shutil.copytree(tmp_path / "lora" / "checkpoint-5", tmp_path / "lora2" / "checkpoint-5")
    argv = train_argv(tiny_bert_dir, *data, tmp_path / "lora2", *lora, "--resume_from_checkpoint", "true")
    capsys.readouterr()
    assert main([*argv, "--target_modules", "query,key,value", "--num_train_epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "was trained with target_modules ['query', 'value']; this run's ['key', 'query', 'value']" in err, err


def test_a_checkpoint_from_elsewhere_does_not_resume_over_another_run(resumed_pair, tiny_bert_dir, tmp_path, capsys):
    """Thirty-seventh review: `--resume_from_checkpoint OTHER/checkpoint-5` into an output_dir holding another run
    wrote over that run without a word, its checkpoints mixed with the new ones, and `--overwrite_output_dir true`
    removed nothing of it (its test results stayed). It is refused as a fresh run there is; overwrite replaces it."""
    whole, _, data, extra = resumed_pair
    out = tmp_path / "other"
    settings = ["--save_strategy", "steps", "--save_steps", "2", "--seed", "7", "--few_shot", "false"]
    assert main(train_argv(tiny_bert_dir, *data, out, *settings, "--test_file", str(data[1]))) == 0
    before = sorted(p.name for p in out.iterdir())
    argv = train_argv(tiny_bert_dir, *data, out, *extra, "--resume_from_checkpoint", str(whole / "checkpoint-5"))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds an earlier run" in err, err
    assert sorted(p.name for p in out.iterdir()) == before
    assert main([*argv, "--overwrite_output_dir", "true"]) == 0
    left = sorted(p.name for p in out.iterdir())
    assert "test_results.json" not in left and [n for n in left if n.startswith("checkpoint-")] == ["checkpoint-10"]


def test_overwrite_output_dir_removes_the_earlier_runs_linear_probe(tmp_path, tiny_bert_dir):
    """Thirty-seventh review: an LP-FT run's `linear_probe/` model stayed after a plain run replaced the folder, and a
    push sent it inside the new model's repo; a folder of that name the user put there (no probe record) stays."""
    words = ["good", "great", "bad", "awful"]
    texts, labels = (
        [f"{words[i % 4]} thing {i}" for i in range(24)],
        ["pos" if i % 4 < 2 else "neg" for i in range(24)],
    )
    data = (test_cli.write_csv(tmp_path / "train.csv", texts[:16], labels[:16]),
            test_cli.write_csv(tmp_path / "dev.csv", texts[16:], labels[16:]))  # fmt: skip
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, *data, out, "--linear_probe_epochs", "1", "--few_shot", "false")) == 0
    assert (out / "linear_probe" / "model.safetensors").is_file()
    assert main(train_argv(tiny_bert_dir, *data, out, "--few_shot", "false", "--overwrite_output_dir", "true")) == 0
    assert not (out / "linear_probe").exists()
    (out / "linear_probe").mkdir()
    (out / "linear_probe" / "notes.txt").write_text("mine")
    assert main(train_argv(tiny_bert_dir, *data, out, "--few_shot", "false", "--overwrite_output_dir", "true")) == 0
    assert (out / "linear_probe" / "notes.txt").read_text() == "mine"


def test_a_resume_on_other_rows_or_in_another_order_is_refused(resumed_pair, tiny_bert_dir, tmp_path, capsys):
    """Trainer skips the batches the checkpoint's epoch trained on by count: resumed with another `seed`, other rows
    (`max_train_samples`, another file) or another effective batch, it skipped other rows than those trained on, and
    the record said nothing. Each checkpoint now records its order, and a resume that differs is refused in one line
    before its first step; the same effective batch split another way, or `--ignore_data_skip true`, goes on."""
    import shutil

    from hf_transfer.train.resume_order import ORDER_FILE

    whole, _, data, extra = resumed_pair
    order = json.loads((whole / "checkpoint-5" / ORDER_FILE).read_text())
    assert order["seed"] == 42 and order["rows_per_step"] == 8 and order["train_rows"] == 40
    relabelled = test_cli.write_csv(tmp_path / "relabelled.csv", *_flipped_first_row(data[0]))
    changes = {
        ("--seed", "7"): "another seed (42 then, 7 now)",
        ("--data_seed", "3"): "another data_seed (unset then, 3 now)",
        ("--max_train_samples", "32"): "another number of training rows (40 then, 32 now)",
        ("--per_device_train_batch_size", "4"): "another effective batch (rows per optimizer step) (8 then, 4 now)",
        ("--train_file", str(relabelled)): "another training rows (their tokens and labels):",
    }
    out = tmp_path / "again"
    shutil.copytree(whole / "checkpoint-5", out / "checkpoint-5")
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    argv = train_argv(tiny_bert_dir, *data, out, *extra, "--resume_from_checkpoint", "true")
    for change, said in changes.items():
        assert main([*argv, *change]) == 2, change
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and said in err and "--ignore_data_skip true" in err, err
        assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing trained or written
    # The same 8 rows a step, as 4 rows twice: the same rows are skipped, so the resume goes on.
    assert main([*argv, "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2"]) == 0
    shutil.rmtree(out)
    shutil.copytree(whole / "checkpoint-5", out / "checkpoint-5")
    assert main([*argv, "--seed", "7", "--ignore_data_skip", "true"]) == 0  # the user's choice: the order afresh


def _flipped_first_row(path):
    """The texts and labels of a csv written by `write_csv`, the first row's label flipped."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = [row["label"] for row in rows]
    labels[0] = "neg" if labels[0] == "pos" else "pos"
    return [row["text"] for row in rows], labels


def test_a_resume_that_changes_the_schedule_says_so_and_the_card_tells_both(
    resumed_pair, tiny_bert_dir, tmp_path, caplog
):
    """Trainer rebuilds the learning-rate schedule from the resumed run's arguments and takes only the step from the
    checkpoint: resumed with 3 epochs where the first ran with 2, the rate jumped at the resume onto the new curve,
    while the card named one schedule of 3 epochs from step 0. It is said, recorded and carded."""
    import shutil

    whole, _, data, extra = resumed_pair
    out = tmp_path / "longer"
    shutil.copytree(whole / "checkpoint-5", out / "checkpoint-5")
    argv = train_argv(tiny_bert_dir, *data, out, *extra, "--resume_from_checkpoint", "true")
    argv[argv.index("--num_train_epochs", argv.index("--num_train_epochs") + 1) + 1] = "3"  # extra's, the last given
    with caplog.at_level(logging.WARNING):
        assert main([*argv, "--warmup_steps", "2"]) == 0
    said = [
        r.getMessage() for r in caplog.records if "trained its steps on a learning-rate schedule" in r.getMessage()
    ]
    assert len(said) == 2 and "with num_train_epochs 2.0; this run's 3.0 takes over" in " ".join(said)
    record = json.loads((out / "hf_transfer_run.json").read_text())
    changed = {"warmup_steps": [0, 2], "num_train_epochs": [2.0, 3.0]}
    assert record["resumed_from"]["schedule_changed"] == changed
    assert record["train_metrics"]["optimizer_steps"] == 15  # the 3 epochs ran
    card = (out / "README.md").read_text()
    said = (
        "they ran on a learning-rate schedule with warmup_steps 0 (now 2.0), num_train_epochs 2.0 (now 3.0); the rest"
    )
    assert said in card


def test_a_resumed_runs_train_loss_is_over_the_whole_run(resumed_pair):
    """Trainer's train_loss of a resumed run is the mean over the steps run after the resume (6 to 10): the record,
    train_results.json and the card stated it as the run's. The checkpoint's log holds every step's loss up to the
    resume, so it is now the mean over steps 1 to 10, as the run that never stopped reports it."""
    whole, resumed, _, _ = resumed_pair
    record = json.loads((resumed / "hf_transfer_run.json").read_text())
    losses = [e["loss"] for e in record["log_history"] if "loss" in e]
    assert len(losses) == 10
    assert record["train_metrics"]["train_loss"] == pytest.approx(sum(losses) / 10, rel=1e-6)
    assert json.loads((resumed / "train_results.json").read_text())["train_loss"] == pytest.approx(sum(losses) / 10)
    reference = json.loads((whole / "train_results.json").read_text())["train_loss"]
    assert record["train_metrics"]["train_loss"] == pytest.approx(reference, rel=1e-5)
    assert record["resumed_from"]["train_loss_steps"] == [1, 10]
    assert "train loss over steps 1 to 10" in (resumed / "README.md").read_text()


def test_a_resumed_runs_train_loss_says_which_steps_it_covers_when_the_log_does_not_reach_the_resume(
    tmp_path, tiny_bert_dir, tiny_data
):
    """Logged every 2 steps, a 5-step epoch's checkpoint holds no loss for step 5: the whole-run mean cannot be had,
    so the figure stays the mean over steps 6 to 10, and the record and card say so."""
    import shutil

    whole, out = tmp_path / "whole", tmp_path / "run"
    extra = ["--save_strategy", "epoch", "--logging_steps", "2", "--few_shot", "false", "--num_train_epochs", "2"]
    assert main(train_argv(tiny_bert_dir, *tiny_data, whole, *extra)) == 0
    shutil.copytree(whole / "checkpoint-5", out / "checkpoint-5")  # the run as stopped after its first epoch
    assert main([*train_argv(tiny_bert_dir, *tiny_data, out, *extra), "--resume_from_checkpoint", "true"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["resumed_from"] == {"checkpoint": "checkpoint-5", "step": 5, "train_loss_steps": [6, 10]}
    assert "mean train loss over steps 6 to 10 only" in (out / "README.md").read_text()


def test_the_whole_runs_train_loss_weighs_each_logged_window_by_its_steps():
    """Logged every 2 steps (windows 1-2, 3-4), resumed at step 4 and run to step 10: (2·1.0 + 2·0.5 + 6·0.25) / 10.
    With no log at the resume step the figure after the resume stays, from the step after it."""
    from hf_transfer.train.fit import whole_run_train_loss

    log = [{"loss": 1.0, "step": 2}, {"eval_loss": 9.0, "step": 2}, {"loss": 0.5, "step": 4}, {"loss": 0.3, "step": 6}]
    assert whole_run_train_loss(log, 4, 10, 0.25) == (pytest.approx(0.45), 1)
    assert whole_run_train_loss(log[:2], 4, 10, 0.25) == (0.25, 5)


def test_a_resumed_runs_unfreezing_schedule_is_the_whole_runs(resumed_pair):
    """The card's gradual-unfreezing schedule was observed at each epoch's start in this process: a run resumed at
    epoch 1 showed the schedule from epoch 1 on, as if the run had started with more blocks trainable."""
    whole, resumed, _, _ = resumed_pair
    ours, reference = load_card_data(resumed).unfreezing, load_card_data(whole).unfreezing
    assert [s["epoch"] for s in reference] == [0.0, 1.0]
    assert reference[0]["trainable_parameters"] < reference[1]["trainable_parameters"]
    assert ours == reference
    counts = ", ".join(f"{s['trainable_parameters']:,}" for s in reference)
    assert counts.split(", ")[0] in (resumed / "README.md").read_text()


def test_the_card_shows_data_seed_when_it_is_set(tmp_path, tiny_bert_dir, tiny_data):
    """data_seed draws the validation and calibration carve-outs (and Trainer's sampler): the card showed seed
    alone, so a reader could not rerun the split."""
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, *tiny_data, out, "--few_shot", "false", "--data_seed", "7")) == 0
    assert "| data_seed | 7 |" in (out / "README.md").read_text()
    assert load_card_data(out).hyperparameters["data_seed"] == 7
    other = tmp_path / "other"
    assert main(train_argv(tiny_bert_dir, *tiny_data, other, "--few_shot", "false")) == 0
    assert "| data_seed |" not in (other / "README.md").read_text()
    assert "data_seed" not in load_card_data(other).hyperparameters


def test_overwriting_keeps_the_checkpoint_the_run_trains_from(finished_run, tiny_data):
    """A checkpoint of the earlier run given as the model to train is read after training starts (the card names its
    facts), so the overwrite keeps it and removes the earlier run's other checkpoints."""
    run, _ = finished_run
    argv = train_argv(run / "checkpoint-4", *tiny_data, run, "--few_shot", "false", "--overwrite_output_dir", "true")
    assert main(argv) == 0
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4"]
    assert (run / "model.safetensors").is_file() and (run / "hf_transfer_run.json").is_file()


def test_overwriting_keeps_a_merge_of_the_users_inside_the_run_and_never_writes_over_a_model_it_reads(
    finished_run, tiny_bert_dir, tiny_data, tmp_path, capsys
):
    """`hf-transfer merge --output_dir RUN/merged` was removed by the next `train --overwrite_output_dir true` as if
    it were the run's own merge_adapter model; and `--output_dir` equal to the model folder (or a teacher's) with
    overwrite_output_dir wrote the run over the model it read, a teacher replaced by its own student."""
    import shutil

    run, argv = finished_run
    merged = run / "merged"
    merge = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(run), "--alpha", "0.5"]
    assert main([*merge, "--output_dir", str(merged)]) == 0
    kept = fingerprint(merged)
    assert main([*argv, "--overwrite_output_dir", "true"]) == 0
    assert fingerprint(merged) == kept
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    before = fingerprint(model)
    capsys.readouterr()
    overwrite = ["--overwrite_output_dir", "true", "--few_shot", "false"]
    assert main([*train_argv(model, *tiny_data, model, *overwrite)]) == 2
    distill = ["distill", "--teacher_model_name_or_path", str(run), "--student_layers", "[0]"]
    assert main([*distill, *train_argv(model, *tiny_data, run, *overwrite)[3:]]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("is the model folder" in e and "the run reads" in e for e in errors), errors
    assert fingerprint(model) == before


def test_a_second_run_on_an_output_dir_in_use_is_refused_before_any_work(tmp_path, tiny_bert_dir, tiny_data, capsys):
    """Two `train` runs on one output_dir both exited 0, their checkpoints interleaved and one model lost. The
    folder is held for the run (a lock beside it, dropped by the kernel if the process dies): a second run is refused
    in one line, naming the holder; once the first ends, the lock file is gone and the folder takes a run."""
    import os

    from hf_transfer.core.folder_lock import folders_held, lock_path

    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--few_shot", "false")
    with folders_held([out], "train"):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"hf-transfer train: error: output_dir {str(out)!r} is in use by another hf-transfer run (train, pid "
            f"{os.getpid()} on {__import__('socket').gethostname()}); wait for it to end, or give another output_dir."
        )
        assert not out.exists()
    assert not lock_path(out).exists()
    lock_path(out).write_text("train, pid 1 on a-dead-run")  # left by a killed run: nothing holds it
    assert main(argv) == 0
    assert not lock_path(out).exists() and (out / "model.safetensors").is_file()


def test_a_checkpoint_of_an_earlier_version_resumes_and_later_ones_name_their_own_files(tmp_path, finished_run):
    """A checkpoint's trainer_state.json names the files of ours it holds (the resume-order facts), written after it;
    one written before that entry existed is complete as it is, resumes, and the checkpoints after it name theirs
    (Trainer's save looks the entry up: a resumed state without it would fail the next save)."""
    import shutil

    from hf_transfer.outputs.checkpoints import complete_checkpoints
    from hf_transfer.train.resume_order import ORDER_FILE

    out, argv = finished_run
    old = tmp_path / "old"
    shutil.copytree(out / "checkpoint-2", old / "checkpoint-2")
    state_file = old / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["stateful_callbacks"].pop("CheckpointFiles")["args"]["files"] == [ORDER_FILE]
    state_file.write_text(json.dumps(state))
    assert [p.name for p in complete_checkpoints(old)] == ["checkpoint-2"]
    resume = [*argv[: argv.index(str(out))], str(old), *argv[argv.index(str(out)) + 1 :]]
    assert main([*resume, "--resume_from_checkpoint", "true"]) == 0
    later = json.loads((old / "checkpoint-4" / "trainer_state.json").read_text())
    assert later["stateful_callbacks"]["CheckpointFiles"]["args"]["files"] == [ORDER_FILE]


def test_a_checkpoint_with_a_file_cut_short_is_passed_over_or_refused_before_any_weight_loads(
    finished_run, tmp_path, capsys, caplog
):
    """A power cut can leave a checkpoint whose trainer_state.json is whole but whose optimizer.pt is not: the resume
    died deep inside Trainer, after the model had loaded, with torch's "PytorchStreamReader failed reading zip
    archive" traceback. `true` now resumes from the newest whole checkpoint and says which it passed over; a path to
    the damaged one is one line, exit 2."""
    out, argv = finished_run
    optimizer = out / "checkpoint-5" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        assert main([*argv, "--resume_from_checkpoint", "true", "--num_train_epochs", "2"]) == 0
    assert "checkpoint-5/optimizer.pt cut short: resuming from checkpoint-4, before it." in caplog.text
    assert json.loads((out / "hf_transfer_run.json").read_text())["resumed_from"]["step"] == 4

    capsys.readouterr()
    damaged = tmp_path / "damaged"
    shutil.copytree(out / "checkpoint-4", damaged / "checkpoint-4")
    weights = damaged / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    run = [*argv[: argv.index(str(out))], str(tmp_path / "new"), *argv[argv.index(str(out)) + 1 :]]
    assert main([*run, "--resume_from_checkpoint", str(damaged / "checkpoint-4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("has a file cut short (model.safetensors); resume from an earlier checkpoint, or pass true "
                        "to pick the newest whole one in output_dir.")  # fmt: skip
    assert len(err.splitlines()) == 1 and not (tmp_path / "new").exists()
    resume_all = [*argv[: argv.index(str(out))], str(damaged), *argv[argv.index(str(out)) + 1 :]]
    assert main([*resume_all, "--resume_from_checkpoint", "true"]) == 2
    assert "every complete checkpoint in" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "empty"])
def test_a_cut_short_file_is_told_from_a_whole_one_without_loading_it(tmp_path, damage):
    import pickle

    from safetensors.torch import save_file

    from hf_transfer.outputs.checkpoints import damaged_file

    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    save_file({"w": torch.ones(64, 64)}, checkpoint / "model.safetensors")
    torch.save({"state": torch.ones(64)}, checkpoint / "optimizer.pt")
    (checkpoint / "legacy.bin").write_bytes(pickle.dumps({"old": 1}, protocol=2))  # torch's pre-zip format
    assert damaged_file(checkpoint) is None
    for name in ("optimizer.pt", "model.safetensors"):
        path = checkpoint / name
        whole = path.read_bytes()
        damaged = {"truncated": whole[: len(whole) - 40], "zeroed": bytes(len(whole)), "empty": b""}[damage]
        path.write_bytes(damaged)
        assert damaged_file(checkpoint) == name
        path.write_bytes(whole)


class _Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling it creates the marker file


def test_a_resume_reads_the_saved_arguments_without_running_the_pickle(finished_run, tmp_path):
    """The schedule check unpickled the checkpoint's training_args.bin with torch.load(weights_only=False): a
    checkpoint handed over by someone else ran its code before any other check. The fields are now read by an
    unpickler that builds nothing but inert records (and the libraries' enums)."""
    from transformers.trainer_utils import SchedulerType

    from hf_transfer.outputs.checkpoints import saved_training_arguments

    out, argv = finished_run
    saved = saved_training_arguments(out / "checkpoint-4")
    assert (
        saved.learning_rate == torch.load(out / "checkpoint-4" / "training_args.bin", weights_only=False).learning_rate
    )
    assert saved.lr_scheduler_type is SchedulerType.LINEAR and saved.num_train_epochs == 1

    marker = tmp_path / "ran"
    for planted in ("zip", "legacy"):
        checkpoint = tmp_path / planted / "checkpoint-4"
        shutil.copytree(out / "checkpoint-4", checkpoint)
        torch.save(_Planted(marker), checkpoint / "training_args.bin", _use_new_zipfile_serialization=planted == "zip")
        run = [*argv[: argv.index(str(out))], str(tmp_path / planted / "new"), *argv[argv.index(str(out)) + 1 :]]
        assert main([*run, "--resume_from_checkpoint", str(checkpoint), "--num_train_epochs", "2"]) == 0
        assert not marker.exists(), planted


def test_training_on_from_a_classifier_keeps_its_label_order(tmp_path, tiny_bert_dir, tiny_data, caplog):
    """A classifier saved as {0: pos, 1: neg} trained on data of the same names: the data's order (neg, pos) was
    written over the model's config while its head kept its rows, so the output predicted every review backwards,
    without a word (train, LoRA and a distillation student alike). The data now takes the model's order; a model of
    other names is said."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    model.config.id2label, model.config.label2id = {0: "pos", 1: "neg"}, {"pos": 0, "neg": 1}
    model.save_pretrained(tmp_path / "reversed")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(tmp_path / "reversed")
    head = load_file(str(tmp_path / "reversed" / "model.safetensors"))["classifier.weight"]
    out = tmp_path / "out"
    argv = train_argv(tmp_path / "reversed", *tiny_data, out, "--learning_rate", "1e-12", "--few_shot", "false")
    assert main(argv) == 0
    trained = AutoModelForSequenceClassification.from_pretrained(out)
    assert trained.config.id2label == {0: "pos", 1: "neg"}
    torch.testing.assert_close(trained.classifier.weight.detach(), head, atol=1e-6, rtol=0)
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["label_names"] == ["pos", "neg"]

    model.config.id2label, model.config.label2id = {0: "good", 1: "bad"}, {"good": 0, "bad": 1}
    model.save_pretrained(tmp_path / "other")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(tmp_path / "other")
    with caplog.at_level("WARNING"):
        assert main(train_argv(tmp_path / "other", *tiny_data, tmp_path / "out2", "--few_shot", "false")) == 0
    assert "is a classifier of other labels than the data's: its head's rows are trained on as the data's, in this " \
           "order: 'good' -> 'neg', 'bad' -> 'pos'" in caplog.text  # fmt: skip


def test_an_earlier_versions_merged_adapter_model_goes_with_its_run_and_is_never_pushed(finished_run, caplog):
    """Before the merged model held a copy of the run record, `--overwrite_output_dir` knew an adapter run's
    `merged/` by that copy alone: it stayed beside the new full model, and `push` sent it up inside the new repo
    (another model, 90 MB). The run folder's own record names it; and a push holds back any `merged/` model."""
    from hf_transfer.outputs.push_scope import held_back

    run, argv = finished_run
    merged = run / "merged"
    merged.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run / name, merged / name)
    assert "merged/**" in held_back(run, "me/model", include_training_state=False)  # beside a full model too
    record = json.loads((run / "hf_transfer_run.json").read_text())
    record["adapter"] = {"method": "lora", "merged_model": "merged"}  # as the adapter run of that version wrote it
    (run / "hf_transfer_run.json").write_text(json.dumps(record))
    assert main([*argv, "--overwrite_output_dir", "true"]) == 0
    assert not merged.exists()


def test_an_unhashed_cards_header_counts_as_edited_only_for_keys_the_user_set_or_changed(tmp_path):
    """Without a noted hash the header is compared with the one the card data renders now: a key that version
    lacked, or fewer tags, is no edit of the user's; where nothing can be rendered (no card data, or one this version
    cannot read), the body alone decides, as before (such a card had been kept, and its stale keys merged)."""
    from hf_transfer.outputs.readme import is_generated_card

    body = "<!-- hf-transfer:begin title -->\n# x\n<!-- hf-transfer:end title -->\n"
    readme = tmp_path / "README.md"
    readme.write_text("---\nlicense: apache-2.0\ntags:\n- hf-transfer\n---\n\n" + body)
    fresh = {"license": "apache-2.0", "tags": ["hf-transfer", "text-classification"], "pipeline_tag": "x"}
    assert is_generated_card(readme, lambda: fresh)
    assert is_generated_card(readme, lambda: None)
    assert not is_generated_card(readme, lambda: {**fresh, "license": "mit"})
    readme.write_text("---\nlicense: apache-2.0\nwidget: [a]\n---\n\n" + body)
    assert not is_generated_card(readme, lambda: fresh)


def test_a_complete_checkpoint_copied_under_another_name_resumes(finished_run, tmp_path):
    """Trainer resumes from any folder; ours refused one not named checkpoint-N as "not a complete checkpoint folder
    (one with a readable trainer_state.json and every file it names)", which it was."""
    out, argv = finished_run
    copied = tmp_path / "ck4"
    shutil.copytree(out / "checkpoint-4", copied)
    run = [*argv[: argv.index(str(out))], str(tmp_path / "new"), *argv[argv.index(str(out)) + 1 :]]
    assert main([*run, "--resume_from_checkpoint", str(copied)]) == 0
    state = json.loads((tmp_path / "new" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    (copied / "trainer_state.json").unlink()  # cut off mid-save: still refused, whatever its name
    assert main([*run, "--resume_from_checkpoint", str(copied), "--overwrite_output_dir", "true"]) == 2


def test_a_kept_readme_loses_the_earlier_cards_keys_and_keeps_the_users(tmp_path, tiny_bert_dir, tiny_data):
    """A README the user edited is kept by a new run into the folder, but the header keys and tags the earlier run's
    card generated had stayed as if the user's: the new card linked the earlier base model and dataset, and said
    French (`language` is a key where the user's value wins)."""
    from hf_transfer.outputs.readme import card_header

    out = tmp_path / "run"
    base = train_argv(tiny_bert_dir, *tiny_data, out, "--few_shot", "false")
    earlier = ["--language", "fr", "--base_model_hub_id", "tester/base-a", "--dataset_hub_id", "tester/data-a"]
    assert main([*base, *earlier]) == 0
    header = card_header((out / "README.md").read_text())
    assert header["language"] == "fr" and header["base_model"] == "tester/base-a"
    edited = (out / "README.md").read_text().replace("\n---\n", "\nwidget:\n- text: mine\n---\n", 1)
    (out / "README.md").write_text(edited + "\n## My notes\n")
    assert main([*base, "--language", "en", "--overwrite_output_dir", "true"]) == 0
    text = (out / "README.md").read_text()
    header = card_header(text)
    assert header["language"] == "en" and "base_model" not in header and "datasets" not in header, header
    assert header["widget"] == [{"text": "mine"}] and "## My notes" in text
    assert "tester/base-a" not in text and "tester/data-a" not in text
