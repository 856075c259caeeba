"""Options of `train` and `distill` that failed only after the weights had loaded (a traceback), or ran without saying
what they would not do: each is now said in one line before any weight loads."""

import json
import logging

import pytest
import test_cli
import torch
from test_cli import train_argv
from test_freezing import LAYOUT

from hf_transfer.cli import main
from hf_transfer.core.freezing import FreezePlan, stages_reached, unreached_unfreezing
from hf_transfer.train.checks import check_optimizer_installed

tiny_data = test_cli.tiny_data  # the fixture, shared
NOT_LOADED = "the weights were not to load"


class WeightsLoaded(Exception):
    pass


def _no_weights(monkeypatch, module: str, name: str) -> None:
    def refuse(*args, **kwargs):
        raise WeightsLoaded(NOT_LOADED)

    monkeypatch.setattr(f"{module}.{name}", refuse)


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- gradual unfreezing that the epochs cannot complete -----------------------------------------------------------


def test_stages_reached_counts_the_stages_an_epoch_starts_in():
    # 4 stages: head, block 1, block 0, embeddings; each epoch takes its stage at its start.
    assert [stages_reached(4, 1, e) for e in (0, 1, 2, 2.5, 3, 3.01, 4, 9)] == [1, 1, 2, 3, 3, 4, 4, 4]
    assert [stages_reached(4, 2, e) for e in (2, 3, 6, 6.5)] == [1, 2, 3, 4]


def test_the_unreached_stages_are_named_with_the_epochs_that_reach_them():
    plan = FreezePlan.resolve(LAYOUT, gradual_unfreezing=1)
    assert unreached_unfreezing(plan, 1, 4) is None and plan.never_unfrozen(1, 4) == frozenset()
    assert plan.never_unfrozen(1, 2) == set(LAYOUT.blocks[0]) | set(LAYOUT.embeddings)
    line = unreached_unfreezing(plan, 1, 2)
    assert "reach 2 of its 4 unfreezing stages, so 1 of 2 block(s) and the embeddings will never be unfrozen" in line
    assert "more than 3 epochs reach every stage (4 give each its 1)" in line
    # The embeddings frozen for good: the last stage is block 0's.
    frozen_embeddings = FreezePlan.resolve(LAYOUT, freeze_embeddings=True, gradual_unfreezing=2)
    assert "2 block(s) will never be unfrozen" in unreached_unfreezing(frozen_embeddings, 2, 1)
    assert unreached_unfreezing(FreezePlan.resolve(LAYOUT), 0, 1) is None  # no gradual unfreezing


def test_gradual_unfreezing_short_of_epochs_is_said_once_before_any_weight_loads(
    tmp_path, tiny_bert_dir, tiny_data, monkeypatch, caplog
):
    _no_weights(monkeypatch, "hf_transfer.train.command", "load_classifier")
    argv = train_argv(tiny_bert_dir, *tiny_data, tmp_path / "out", "--num_train_epochs", "2", "--gradual_unfreezing")
    with caplog.at_level(logging.WARNING), pytest.raises(WeightsLoaded):
        main([*argv, "1", "--few_shot", "false"])
    said = [r.getMessage() for r in caplog.records if "gradual_unfreezing 1:" in r.getMessage()]
    assert len(said) == 1, said
    assert (
        "reach 2 of its 4 unfreezing stages, so 1 of 2 block(s) and the embeddings will never be unfrozen" in said[0]
    )


def test_distill_says_it_too_for_a_student_cut_from_the_teacher(
    tmp_path, tiny_bert_dir, tiny_data, monkeypatch, caplog
):
    from transformers import AutoTokenizer, BertForSequenceClassification

    teacher = tmp_path / "teacher"
    labels = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    BertForSequenceClassification.from_pretrained(tiny_bert_dir, **labels).save_pretrained(teacher)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(teacher)
    _no_weights(monkeypatch, "hf_transfer.distill.command", "load_teacher")
    train, dev = tiny_data
    argv = ["distill", "--teacher_model_name_or_path", str(teacher), "--student_layers", "[0, 1]"]
    argv += ["--train_file", str(train), "--validation_file", str(dev), "--output_dir", str(tmp_path / "out")]
    argv += ["--num_train_epochs", "2", "--gradual_unfreezing", "1", "--use_cpu", "true", "--report_to", "none"]
    with caplog.at_level(logging.WARNING), pytest.raises(WeightsLoaded):
        main(argv)
    said = [r.getMessage() for r in caplog.records if "gradual_unfreezing 1:" in r.getMessage()]
    assert len(said) == 1 and "the embeddings will never be unfrozen" in said[0], said


def test_with_max_steps_it_is_said_at_the_start_and_the_record_counts_the_unreached_as_never_trained(
    tmp_path, tiny_bert_dir, tiny_data, caplog
):
    """40 rows, batch 8: max_steps 2 is within the first epoch, so only the head ever trains."""
    out = tmp_path / "out"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--max_steps", "2", "--gradual_unfreezing", "1")
    with caplog.at_level(logging.WARNING):
        assert main([*argv, "--few_shot", "false"]) == 0
    said = [r.getMessage() for r in caplog.records if "gradual_unfreezing 1:" in r.getMessage()]
    assert len(said) == 1 and "(max_steps 2 spans 1 epoch(s) of this data.)" in said[0], said
    freeze = json.loads((out / "hf_transfer_run.json").read_text())["freeze"]
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out)
    body = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("bert.pooler", "classifier")))
    assert freeze["permanently_frozen_parameters"] == body
    assert freeze["unfreezing_stages"] == 4 and freeze["unfreezing_stages_reached"] == 1
    card = (out / "README.md").read_text()  # the card no longer says nothing was frozen for good
    assert "gradual unfreezing reached 1 of 4 stages, so the rest kept the weights it started with" in card
    assert "1 of its 4 stages reached" in card and "nothing for good" not in card
    # And the body is as it was: never trained.
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    weights = dict(base.named_parameters())
    body_names = [n for n, _ in model.named_parameters() if n.startswith(("bert.embeddings", "bert.encoder"))]
    assert body_names and all(torch.equal(dict(model.named_parameters())[n], weights[n]) for n in body_names)


# --- Trainer fields refused only once the weights had loaded ----------------------------------------------------


def test_save_strategy_best_without_a_metric_is_refused_in_one_line(tmp_path, tiny_bert_dir, tiny_data, capsys):
    out = tmp_path / "out"
    err = _refused(train_argv(tiny_bert_dir, *tiny_data, out, "--save_strategy", "best"), capsys)
    assert "save_strategy best saves a checkpoint whenever metric_for_best_model improves" in err
    assert "metric_for_best_model is not set" in err and not out.exists()


def test_batch_eval_metrics_is_refused_in_one_line(tmp_path, tiny_bert_dir, tiny_data, capsys):
    out = tmp_path / "out"
    err = _refused(train_argv(tiny_bert_dir, *tiny_data, out, "--batch_eval_metrics", "true"), capsys)
    assert "batch_eval_metrics is not supported" in err and "whole evaluation set" in err and not out.exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--lr_scheduler_type", "cosine", "--lr_scheduler_kwargs", "{num_cycle: 2}"],
         "lr_scheduler_kwargs 'num_cycle' is not an argument of the cosine schedule, which takes num_cycles. Did you "
         "mean 'num_cycles'?"),
        (["--lr_scheduler_type", "warmup_stable_decay"], "the warmup_stable_decay schedule needs num_decay_steps"),
        (["--lr_scheduler_type", "cosine_with_min_lr"], "the cosine_with_min_lr schedule needs min_lr or min_lr_rate"),
        (["--lr_scheduler_type", "reduce_lr_on_plateau", "--eval_strategy", "epoch", "--lr_scheduler_kwargs",
          "{patience: 1, paitence: 2}"], "'paitence' is not an argument of the reduce_lr_on_plateau schedule"),
        (["--optim_args", "betas=(0.8,0.9)"], "and '0.9)' is not one; give one value per key"),
        (["--eval_do_concat_batches", "false"], "eval_do_concat_batches false keeps each evaluation batch apart"),
        (["--use_liger_kernel", "true"], "use_liger_kernel needs liger-kernel, which is not installed"),
    ],
)  # fmt: skip
def test_fields_trainer_takes_apart_inside_train_are_refused_in_one_line(
    tmp_path, tiny_bert_dir, tiny_data, capsys, extra, needle
):
    """Each was a traceback from inside Trainer.train (a TypeError, a ValueError, an ImportError), after the weights
    had loaded, leaving an empty output_dir; eval_do_concat_batches false failed after the whole training."""
    out = tmp_path / "out"
    err = _refused(train_argv(tiny_bert_dir, *tiny_data, out, *extra), capsys)
    assert needle in err and not out.exists()


def test_scheduler_kwargs_a_schedule_takes_pass():
    from types import SimpleNamespace

    from hf_transfer.train.field_checks import check_scheduler_kwargs

    given = {"cosine_with_min_lr": {"min_lr_rate": 0.1}, "warmup_stable_decay": {"num_decay_steps": 3},
             "reduce_lr_on_plateau": {"patience": 2}, "linear": None, "greedy": {"anything": 1}}  # fmt: skip
    for kind, kwargs in given.items():
        check_scheduler_kwargs(SimpleNamespace(lr_scheduler_type=kind, lr_scheduler_kwargs=kwargs))


def test_an_optimizer_whose_package_is_missing_is_refused_before_anything_is_written(
    tmp_path, tiny_bert_dir, tiny_data, capsys
):
    from transformers.utils import is_bitsandbytes_available

    if is_bitsandbytes_available():
        pytest.skip("bitsandbytes is installed here")
    out = tmp_path / "out"
    err = _refused(train_argv(tiny_bert_dir, *tiny_data, out, "--optim", "adamw_8bit"), capsys)
    assert "optim adamw_8bit needs bitsandbytes, which is not installed: pip install -U bitsandbytes" in err, err
    assert not out.exists()


def test_other_optimizer_errors_are_left_to_trainer(monkeypatch):
    """GaLore and LOMO need the model: Trainer raises its ValueError where it did before."""
    from transformers import Trainer

    def needs_model(args, model=None):
        raise ValueError("You need to pass a model to initialize GaLore optimizer.")

    monkeypatch.setattr(Trainer, "get_optimizer_cls_and_kwargs", staticmethod(needs_model))
    check_optimizer_installed(object())


# --- the few_shot help and a label_mapping that matches nothing -------------------------------------------------


def test_few_shot_help_states_the_rule_auto_applies(capsys):
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "sentence-transformers base with mean pooling, unless an option of the ordinary fine-tune is set" in out
    assert "BERT-style model, no adapter" not in out and "The choice is printed and recorded" not in out


def test_a_label_mapping_that_matches_no_label_lists_the_labels_found(tmp_path, tiny_bert_dir, tiny_data, capsys):
    out = tmp_path / "out"
    err = _refused(train_argv(tiny_bert_dir, *tiny_data, out, "--label_mapping", "{foo: bar}"), capsys)
    assert "label_mapping {'foo': 'bar'} matches none of the train data's labels ['neg', 'pos']" in err, err
    assert "single class" not in err and not out.exists()


def test_resuming_under_another_launch_is_said_and_recorded(tmp_path, monkeypatch, caplog):
    """A checkpoint of 2 processes × 4 rows resumed by 1 process went on without a word: Trainer skips the steps
    done at the new batch (rows trained twice), and the card said "processes 1" for the whole run."""
    from types import SimpleNamespace

    from hf_transfer.outputs.card_data import CardData
    from hf_transfer.outputs.card_rows import hyper_rows
    from hf_transfer.train.checks import resume_launch_change
    from hf_transfer.train.fit import resumed_from

    checkpoint = tmp_path / "checkpoint-8"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 8, "train_batch_size": 4}))
    for rank in (0, 1):
        (checkpoint / f"rng_state_{rank}.pth").write_bytes(b"")
    args = SimpleNamespace(resume_from_checkpoint=str(checkpoint), train_batch_size=4, auto_find_batch_size=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resume_launch_change(args) is None  # the same launch: nothing said
    monkeypatch.setenv("WORLD_SIZE", "1")
    with caplog.at_level(logging.WARNING):
        assert resume_launch_change(args) == "2 process(es) × 4 rows per device"
    assert "this run is 1 × 4" in caplog.text and "trained twice or skipped" in caplog.text
    record = resumed_from(args)["resumed_from"]
    assert record == {"checkpoint": "checkpoint-8", "step": 8, "launched_as": "2 process(es) × 4 rows per device"}
    card = CardData(recipe={"resumed_from": record}, hyperparameters={"per_device_train_batch_size": 4})
    rows = dict(hyper_rows(card))
    assert "launched as 2 process(es) × 4 rows per device" in rows["resumed from"]
    (checkpoint / "rng_state_1.pth").unlink()
    (checkpoint / "rng_state_0.pth").rename(checkpoint / "rng_state.pth")
    assert resume_launch_change(SimpleNamespace(**{**vars(args), "train_batch_size": 8})) == (
        "1 process(es) × 4 rows per device"
    )
    # auto_find_batch_size: Trainer takes the checkpoint's batch back, so nothing changes; nor is a process count
    # guessed for a checkpoint without rng files.
    found = SimpleNamespace(**{**vars(args), "train_batch_size": 8, "auto_find_batch_size": True})
    assert resume_launch_change(found) is None
    (checkpoint / "rng_state.pth").unlink()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resume_launch_change(args) is None
