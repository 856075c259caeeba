"""`hf-transfer search`: the search-space syntax and its checks, the trial config parsed exactly as `train` parses
it, and a whole study on a tiny model: trials.csv, the plot, pruning, best_config.yaml reproducing its trial, and a
resumed study that keeps its finished trials and reruns an interrupted one."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import assert_picture

from hf_transfer.cli import main, parse_command_args
from hf_transfer.core.parsing import CommandParser
from hf_transfer.errors import ConfigError
from hf_transfer.search.space import check_fields, default_space, parse_space

# --- the space ------------------------------------------------------------------------------------------------------


def _train_parser():
    from hf_transfer.train.command import TRAIN_ARGUMENTS

    return CommandParser(TRAIN_ARGUMENTS, "train")


def test_space_syntax_ranges_and_choices():
    params = {p.name: p for p in parse_space(
        {"learning_rate": {"low": "1e-5", "high": 1e-4, "log": True}, "per_device_train_batch_size": [16, 32],
         "num_train_epochs": {"low": 1, "high": 3, "step": 1}, "freeze_layers": {"low": 1, "high": 4}}
    )}  # fmt: skip
    assert params["learning_rate"].low == 1e-5 and params["learning_rate"].log  # `1e-5` arrives from YAML as text
    assert params["per_device_train_batch_size"].choices == (16, 32)
    checked = {p.name: p for p in check_fields(list(params.values()), _train_parser().hints, "train")}
    assert checked["freeze_layers"].integer and checked["freeze_layers"].bounds_to_check() == [1, 4]
    assert not checked["num_train_epochs"].integer and checked["num_train_epochs"].step == 1  # a float field
    assert checked["num_train_epochs"].contains(2.0) and not checked["num_train_epochs"].contains(2.5)
    assert checked["learning_rate"].contains(5e-5) and not checked["learning_rate"].contains(1e-3)
    batch = checked["per_device_train_batch_size"]
    assert batch.contains(32) and not batch.contains(8) and not batch.contains(32.5)


def test_step_fields_are_searched_as_shares_below_1_and_as_whole_counts_from_1():
    """`eval_steps` and the other step fields are floats in transformers 5 (a share of the steps below 1), so a range
    {low: 2, high: 5} drew 3.12 and every trial failed on "--eval_steps must be an integer if bigger than 1"."""
    space = {"eval_steps": {"low": 2, "high": 5}, "warmup_steps": {"low": 0.0, "high": 0.2},
             "logging_steps": {"low": 10, "high": 50, "step": 10}}  # fmt: skip
    warmup = check_fields(parse_space({"warmup_steps": {"low": 0, "high": 100, "step": 10}}), _train_parser().hints,
                          "train")  # fmt: skip
    assert warmup[0].integer and warmup[0].contains(0) and warmup[0].contains(30)  # 0: no warmup, either way
    checked = {p.name: p for p in check_fields(parse_space(space), _train_parser().hints, "train")}
    assert checked["eval_steps"].integer and checked["eval_steps"].bounds_to_check() == [2, 5]
    assert checked["logging_steps"].integer and checked["logging_steps"].step == 10
    assert not checked["warmup_steps"].integer and checked["warmup_steps"].contains(0.1)


def test_the_default_space_leaves_out_the_warmup_of_a_schedule_without_one(tmp_path, tiny_bert_dir):
    from hf_transfer.search.command import _prepare

    argv = _tiny_search_argv(tmp_path, tiny_bert_dir)[1:]
    for schedule, searched in (("constant", False), ("linear", True)):
        (search,) = parse_command_args("search", [*argv, "--lr_scheduler_type", schedule])
        names = {p.name for p in _prepare(search)["params"]}
        assert ("warmup_steps" in names) is searched and "learning_rate" in names


def test_a_range_reads_log_as_a_flag_reads_true_or_false():
    """`log: yes` (YAML 1.2 reads it as text) was refused, though `--bf16 yes` is a true flag; `log: maybe` is not."""
    for text, read in (("yes", True), ("No", False), ("TRUE", True), ("0", False)):
        (param,) = parse_space({"learning_rate": {"low": 1e-5, "high": 1e-4, "log": text}})
        assert param.log is read
    with pytest.raises(ConfigError, match="log must be true or false, got 'maybe'"):
        parse_space({"learning_rate": {"low": 1e-5, "high": 1e-4, "log": "maybe"}})


@pytest.mark.parametrize(
    "space,needle",
    [
        ({"learning_rate": {"low": 1e-4, "high": 1e-5}}, "the range is empty"),
        ({"learning_rate": {"low": 1e-4, "high": 1e-4}}, "the range is empty"),
        ({"per_device_train_batch_size": []}, "list of choices is empty"),
        ({"learning_rate": {"low": "abc", "high": 1}}, "must be a number"),
        ({"learning_rate": {"low": 0, "high": 1, "log": True}}, "log range needs low > 0"),
        ({"learning_rate": {"low": 1e-5, "high": 1e-4, "lg": True}}, "unknown key 'lg'"),
        ({"learning_rate": 1e-4}, "a fixed value goes in the config"),
        ({"class_names": [["a", "b"]]}, "a choice must be"),
        ({"output_dir": ["a", "b"]}, "sets output_dir itself"),
        ({"validation_file": ["dev.csv", "train.csv"]}, "every trial is scored on the same validation rows"),
        ({"max_eval_samples": {"low": 10, "high": 60}}, "set max_eval_samples in the config, not in search_space"),
        ([1, 2], "non-empty mapping"),
    ],
)
def test_space_syntax_errors(space, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_space(space)


@pytest.mark.parametrize(
    "space,needle",
    [
        ({"lerning_rate": {"low": 1e-5, "high": 1e-4}}, "unknown field 'lerning_rate'. Did you mean 'learning_rate'"),
        ({"lr_scheduler_type": {"low": 1, "high": 2}}, "takes a list of choices"),
        ({"per_device_train_batch_size": {"low": 8.5, "high": 16}}, "whole numbers"),
        ({"eval_steps": {"low": 0.5, "high": 5}}, "crosses 1, where eval_steps turns from a share"),
        ({"logging_steps": {"low": 0.5, "high": 1.0}}, "crosses 1, where logging_steps turns from a share"),
        ({"warmup_steps": {"low": 2.5, "high": 20}}, "whole numbers"),
    ],
)
def test_space_field_errors(space, needle):
    with pytest.raises(ConfigError, match=needle):
        check_fields(parse_space(space), _train_parser().hints, "train")


@pytest.mark.parametrize("route", ["full", "frozen", "adapter", "distill"])
def test_default_spaces_parse_as_trials(route):
    """Every default space names fields of its route, and both ends of every range make a config the route accepts."""
    from hf_transfer.distill.command import DISTILL_ARGUMENTS
    from hf_transfer.search.command import _check_trial_value

    base = {"model_name_or_path": "m", "train_file": "t.csv", "output_dir": "o", "use_cpu": True}
    extra = {"frozen": {"freeze_embeddings": True}, "adapter": {"peft_method": "lora"},
             "distill": {"teacher_model_name_or_path": "t", "model_name_or_path": "s"}}  # fmt: skip
    base.update(extra.get(route, {}))
    parser = CommandParser(DISTILL_ARGUMENTS, "distill") if route == "distill" else _train_parser()
    space = default_space(route, num_layers=6, peft_method="lora")
    params = check_fields(parse_space(space), parser.hints, parser.command)
    assert "learning_rate" in space and len(params) >= 3
    for p in params:
        for value in p.bounds_to_check():
            _check_trial_value(parser, base, p, value, None)
    if route == "frozen":
        assert space["freeze_layers"] == {"low": 2, "high": 5}


def test_trial_config_is_parsed_exactly_as_train_parses_it(tmp_path):
    """The search's config minus its own fields, flags included, makes the same arguments as `train` on it."""
    train_config = {"model_name_or_path": "m", "train_file": "t.csv", "learning_rate": "1e-5", "output_dir": "o",
                    "freeze_layers": [0, 1], "max_seq_length": 64}  # fmt: skip
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train_config))
    search_config = {**train_config, "search_space": {"num_train_epochs": {"low": 1, "high": 2}}, "n_trials": 4}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search_config))
    flags = ["--max_seq_length", "32", "--seed=7"]
    (search,) = parse_command_args("search", ["--config", str(tmp_path / "search.yaml"), *flags])
    assert search.n_trials == 4 and search.search_space == {"num_train_epochs": {"low": 1, "high": 2}}
    # `learning_rate: 1e-5` (PyYAML writes the string plain) is read as YAML 1.2 reads it: a number.
    assert search.trial_config == {**train_config, "learning_rate": 1e-5, "max_seq_length": 32, "seed": 7}
    from_search = _train_parser().parse_config(search.trial_config)
    from_train = parse_command_args("train", ["--config", str(tmp_path / "train.yaml"), *flags])
    # (`flag_fields`, which fields came as flags, differs by design: the search hands its flags on as config values)
    values = [a.to_dict() if hasattr(a, "to_dict") else {k: v for k, v in vars(a).items() if k != "flag_fields"}
              for a in (*from_search, *from_train)]  # fmt: skip
    assert values[: len(from_search)] == values[len(from_search) :]
    assert from_search[-1].learning_rate == 1e-5


def test_a_number_for_a_text_field_of_the_trials_keeps_its_text(tmp_path):
    """`run_name: 1e3` in a search config named every trial "1000.0" (train on the same file: "1e3"); a flag too."""
    (tmp_path / "search.yaml").write_text("model_name_or_path: m\noutput_dir: o\nrun_name: 1e3\nlearning_rate: 1e-5\n")
    for flags, name in (([], "1e3"), (["--run_name", "0x10"], "0x10"), (["--run_name=010"], "010")):
        (search,) = parse_command_args("search", ["--config", str(tmp_path / "search.yaml"), *flags])
        training = _train_parser().parse_config(search.trial_config, search.other_written)[-1]
        assert (training.run_name, training.learning_rate) == (name, 1e-5)
        changed = _train_parser().parse_config({**search.trial_config, "run_name": 7.0}, search.other_written)[-1]
        assert changed.run_name == "7.0"  # a value set since (a trial's) is not given the file's text


def test_the_no_switches_of_the_search_fields_work(tmp_path):
    """`--no_prune` and `--no_start_from_config`, which --help lists, were taken for train fields: "--no_prune needs
    a value"."""
    (tmp_path / "search.yaml").write_text(yaml.safe_dump({"model_name_or_path": "m", "output_dir": "o"}))
    argv = ["--config", str(tmp_path / "search.yaml"), "--no_prune", "--no-start-from-config", "--seed", "7"]
    (search,) = parse_command_args("search", argv)
    assert search.prune is False and search.start_from_config is False
    assert search.trial_config == {"model_name_or_path": "m", "output_dir": "o", "seed": 7}
    (search,) = parse_command_args("search", [*argv[:2], "--no_prune"])
    assert search.prune is False and search.start_from_config is True


def test_bare_true_false_flags_of_the_trials_work_as_in_train(tmp_path):
    """`--freeze_embeddings` with no value works for `train`; for `search` it failed with "needs a value"."""
    (tmp_path / "search.yaml").write_text(yaml.safe_dump({"model_name_or_path": "m", "output_dir": "o"}))
    argv = ["--config", str(tmp_path / "search.yaml"), "--freeze_embeddings", "--n_trials", "2", "--bf16"]
    (search,) = parse_command_args("search", [*argv, "--no_remove_unused_columns"])
    assert search.n_trials == 2
    assert search.trial_config == {"model_name_or_path": "m", "output_dir": "o", "freeze_embeddings": True,
                                   "bf16": True, "remove_unused_columns": False}  # fmt: skip
    with pytest.raises(ConfigError, match="--seed needs a value"):
        parse_command_args("search", [*argv, "--seed"])


def test_search_refuses_several_processes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["search", "--model_name_or_path", "m", "--output_dir", str(tmp_path / "o")]) == 2
    assert "drives its study from one process" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_searching_an_adapter_field_without_an_adapter_is_refused(tmp_path, tiny_bert_dir, capsys):
    """lora_r with peft_method none changes nothing: every trial would train the same model."""
    rows = [(f"{w} thing {i}", label) for i, (w, label) in enumerate([("good", "pos"), ("bad", "neg")] * 6)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "out"
    argv = ["search", "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(tmp_path / "train.csv"),
            "--validation_file", str(tmp_path / "train.csv"), "--output_dir", str(out), "--n_trials", "2"]  # fmt: skip
    capsys.readouterr()
    assert main([*argv, "--search_space", "{lora_r: [4, 8]}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "search_space.lora_r: peft_method is none" in err, err
    assert not out.exists()


def _tiny_search_argv(tmp_path, model) -> list[str]:
    rows = [(f"{w} thing {i}", label) for i, (w, label) in enumerate([("good", "pos"), ("bad", "neg")] * 6)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    return ["search", "--model_name_or_path", str(model), "--train_file", str(tmp_path / "train.csv"),
            "--validation_file", str(tmp_path / "train.csv"), "--output_dir", str(tmp_path / "out"), "--n_trials", "2",
            "--use_cpu", "true"]  # fmt: skip


@pytest.mark.parametrize(
    "model,extra,needle",
    [
        ("tiny", ["--max_steps", "2", "--search_space", "{num_train_epochs: [1, 2]}"],
         "search_space.num_train_epochs: max_steps is 2, which overrides num_train_epochs"),
        # a constant schedule has no warmup: every trial trained the same model
        ("tiny", ["--lr_scheduler_type", "constant", "--search_space", "{warmup_steps: [0.0, 0.1]}"],
         "search_space.warmup_steps: lr_scheduler_type constant has no warmup, so every trial would train the same"),
        # 6 rows per class on a sentence-transformers model: few_shot auto takes the few-shot route, whose body
        # tuning uses few_shot_learning_rate (a trial setting layerwise_lr_decay < 1 left the route, silently).
        ("minilm", ["--search_space", "{learning_rate: [1.0e-5, 1.0e-4]}"],
         "search_space.learning_rate: the trials take the few-shot route (6 training rows per class"),
        ("minilm", ["--few_shot", "true", "--search_space", "{per_device_train_batch_size: [8, 16]}"],
         "instead of per_device_train_batch_size"),
        # max_steps is the route's body-tuning budget too, so its epochs change nothing.
        ("minilm", ["--max_steps", "2", "--search_space", "{few_shot_body_epochs: [8, 16]}"],
         "search_space.few_shot_body_epochs: max_steps is 2, which overrides few_shot_body_epochs"),
        # each trial's eval_loss is its own smoothed loss: the same weights scored 0.0039 and 1.67
        ("tiny", ["--metric", "loss", "--search_space", "{label_smoothing_factor: [0.0, 0.6]}"],
         "metric loss with label_smoothing_factor in the search space"),
        ("tiny", ["--metric", "loss", "--search_space", "{class_weights: [balanced, sqrt]}"],
         "metric loss with class_weights in the search space"),
        # thirty-seventh review: the route's fields with every trial off the route, or a temperature the cosine loss
        # has not, trained identical models
        ("tiny", ["--search_space", "{few_shot_head_c: [0.1, 10.0]}"],
         "search_space.few_shot_head_c: the trials take the ordinary fine-tune (few_shot off"),
        ("minilm", ["--few_shot", "true", "--search_space", "{few_shot_temperature: [0.05, 0.5]}"],
         "search_space.few_shot_temperature: few_shot_loss is cosine, which has no temperature"),
    ],
)  # fmt: skip
def test_a_searched_field_the_trials_ignore_is_refused(tmp_path, tiny_bert_dir, minilm_path, capsys, model, extra,
                                                        needle):  # fmt: skip
    argv = _tiny_search_argv(tmp_path, tiny_bert_dir if model == "tiny" else minilm_path)
    capsys.readouterr()
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "space,needle",
    [
        # a column decides which rows every trial is scored on: not searchable at all (a value that was the label
        # column had failed every trial that drew it)
        ("{text_column_name: [text, label]}", "search_space.text_column_name: every trial is scored on the same"),
        ("{train_file: [DATA, MISSING]}", "search_space.train_file: the value "),
    ],
)
def test_a_data_value_the_data_rejects_is_refused_before_the_study(tmp_path, tiny_bert_dir, capsys, space, needle):
    """Each value of a searched data field goes through the route's pre-flight, as the base config does: a text
    column that is the label column ran, and failed, every trial that drew it (one more than n_trials, as failures
    are retried), and left the study's files behind."""
    argv = _tiny_search_argv(tmp_path, tiny_bert_dir)
    space = space.replace("MISSING", str(tmp_path / "missing.csv")).replace("DATA", str(tmp_path / "train.csv"))
    capsys.readouterr()
    assert main([*argv, "--max_steps", "1", "--search_space", space]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


def test_a_failed_trial_line_gives_no_position_among_the_counted_trials():
    import optuna

    from hf_transfer.search import report

    failed = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={}, distributions={})
    failed.number = 2
    line = report.summary_line(failed, "accuracy", 2, None, [], done=1)
    assert line.startswith("trial 2 fail: no score"), line


def test_every_trial_takes_the_route_the_config_takes(tmp_path, tiny_bert_dir, minilm_path):
    """few_shot auto is decided once and written into the trials' config (and best_config.yaml); the default space
    leaves num_train_epochs out when max_steps is set."""
    from hf_transfer.search.command import _prepare

    space = "{few_shot_learning_rate: [1.0e-5, 1.0e-4], layerwise_lr_decay: [0.9, 1]}"
    (search,) = parse_command_args("search", [*_tiny_search_argv(tmp_path, minilm_path)[1:], "--search_space", space])
    assert _prepare(search)["base"]["few_shot"] == "true"
    (search,) = parse_command_args("search", _tiny_search_argv(tmp_path, minilm_path)[1:])
    names = {p.name for p in _prepare(search)["params"]}  # the default space of the route: its own budget
    assert names == {"few_shot_learning_rate", "few_shot_body_epochs", "few_shot_batch_size"}
    (search,) = parse_command_args("search", [*_tiny_search_argv(tmp_path, minilm_path)[1:], "--max_steps", "3"])
    assert {p.name for p in _prepare(search)["params"]} == {"few_shot_learning_rate", "few_shot_batch_size"}
    (search,) = parse_command_args("search", [*_tiny_search_argv(tmp_path, tiny_bert_dir)[1:], "--max_steps", "3"])
    setup = _prepare(search)
    assert setup["base"]["few_shot"] == "false"  # not a sentence-transformers model: the ordinary fine-tune
    names = [p.name for p in setup["params"]]
    assert "learning_rate" in names and "num_train_epochs" not in names
    # A field given as a flag is the user's: every trial ran at the default space's batch 16 or 32 where
    # `--per_device_train_batch_size 4` was given (trial 0, "the config's own values", too).
    argv = [*_tiny_search_argv(tmp_path, tiny_bert_dir)[1:], "--per_device_train_batch_size", "4"]
    setup = _prepare(parse_command_args("search", argv)[0])
    names = [p.name for p in setup["params"]]
    assert "learning_rate" in names and "per_device_train_batch_size" not in names
    assert setup["base"]["per_device_train_batch_size"] == 4


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--search_space", "{lerning_rate: [1.0e-5, 1.0e-4]}"], "unknown field 'lerning_rate'"),
        (["--search_space", "{learning_rate: [-1, 1.0e-4]}"], "search_space.learning_rate: the value -1 is rejected"),
        (["--metric", "accuracy", "--direction", "minimize"], "metric accuracy with direction minimize would look"),
        (["--direction", "minimize"], "the default metric (accuracy; multi-label: f1_macro) with direction"),
    ],
)
def test_the_space_and_the_direction_are_checked_before_the_data(tmp_path, tiny_bert_dir, capsys, extra, needle):
    """The training file does not exist: a check that needs no data comes first (the space's fields were checked
    only after the data had been read; a minimized accuracy searched for the worst trial)."""
    argv = ["search", "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(tmp_path / "missing.csv"),
            "--output_dir", str(tmp_path / "out"), "--n_trials", "2"]  # fmt: skip
    capsys.readouterr()
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


def test_output_dir_is_checked_before_the_data(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    """A file (a traceback after the data was read), a folder holding something else, or one holding another study
    (its trials, trials.csv and best_config.yaml, best model included, were overwritten) are refused first: the
    training file does not exist, and the error is still about output_dir."""
    import optuna

    (tmp_path / "a-file").write_text("keep")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("keep")
    (tmp_path / "searched" / "search").mkdir(parents=True)
    (tmp_path / "searched" / "trials" / "trial-000").mkdir(parents=True)
    (tmp_path / "searched" / "trials" / "trial-000" / "model.safetensors").write_text("keep")
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'searched' / 'search' / 'study.db'}", study_name="first")
    argv = ["search", "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(tmp_path / "missing.csv"),
            "--n_trials", "2", "--search_space", "{learning_rate: [0.001, 0.002]}"]  # fmt: skip
    cases = {
        "a-file": "is a file, not a folder",
        "a-file/sub": "lies under",
        "run": "is not empty and holds no search (it holds ['notes.txt'])",
        "searched": "holds the study 'first'; a study named 'hf-transfer-search' would overwrite",
    }
    capsys.readouterr()
    for folder, needle in cases.items():
        assert main([*argv, "--output_dir", str(tmp_path / folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]
    assert (tmp_path / "searched" / "trials" / "trial-000" / "model.safetensors").read_text() == "keep"
    assert sorted(p.name for p in (tmp_path / "searched").iterdir()) == ["search", "trials"]
    # The same study name gets past the folder check (and stops at the missing data).
    assert main([*argv, "--output_dir", str(tmp_path / "searched"), "--study_name", "first"]) == 2
    assert "missing.csv" in capsys.readouterr().err
    # `output_dir: ~/x` is the home's x: the study had gone to `./~/x` while transformers put the trials in home.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "run")
    assert main([*argv, "--output_dir=~/run"]) == 2
    assert f"output_dir {str(tmp_path / 'run')!r} is not empty" in capsys.readouterr().err
    assert not (tmp_path / "run" / "~").exists()


# --- a whole study --------------------------------------------------------------------------------------------------

GOOD_LR, BAD_LR = 5e-3, 1e-7
SEARCH_MODEL_SEED = 0


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, tiny_bert_dir):
    """Three trials on a tiny BERT, judged by validation loss. The study is created first with two queued trials, a
    learning one and one whose learning rate is too small to move, so the second is pruned at its first evaluation
    (one finished trial is enough to start pruning); the third is sampled."""
    import optuna
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertModel

    root = tmp_path_factory.mktemp("search")
    # The session's tiny BERT is initialised from whatever the random state was when a test first asked for it, so
    # its weights follow the tests that ran before; on some of them the learning trial did not learn in its 10 steps
    # (validation loss 0.6932 against the frozen trial's 0.6931, nothing pruned). This study's copy is seeded.
    model = root / "tiny-bert-seeded"
    with torch.random.fork_rng():
        torch.manual_seed(SEARCH_MODEL_SEED)
        BertModel(AutoConfig.from_pretrained(tiny_bert_dir)).save_pretrained(model)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(model)
    words = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "meh"]}
    rows = [(f"{words[label][i % 4]} {words[label][i % 4]} thing {i}", label)
            for i, label in enumerate(["pos", "neg"] * 48)]  # fmt: skip
    pd.DataFrame(rows[:80], columns=["text", "label"]).to_csv(root / "train.csv", index=False)
    pd.DataFrame(rows[80:], columns=["text", "label"]).to_csv(root / "dev.csv", index=False)
    out = root / "out"
    config = {
        "model_name_or_path": str(model), "train_file": str(root / "train.csv"),
        "validation_file": str(root / "dev.csv"), "output_dir": str(out), "num_train_epochs": 2,
        "per_device_train_batch_size": 16, "use_cpu": True, "report_to": "none", "disable_tqdm": True,
        # The embeddings and block 0 frozen, their output cached: built by the first trial, found by the others.
        "freeze_embeddings": True, "freeze_layers": 1, "cache_frozen_features": True,
        "frozen_features_cache_dir": str(root / "feature-cache"),
        "search_space": {"learning_rate": [GOOD_LR, BAD_LR], "warmup_steps": {"low": 0.0, "high": 0.1}},
    }  # fmt: skip
    # A number for a text field keeps its text in every trial (it had become "1000.0"): see the best config's test.
    (root / "search.yaml").write_text(yaml.safe_dump(config) + "run_name: 1e3\n")
    (out / "search").mkdir(parents=True)
    storage = f"sqlite:///{out / 'search' / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="hf-transfer-search", direction="minimize")
    study.enqueue_trial({"learning_rate": GOOD_LR, "warmup_steps": 0.0})
    study.enqueue_trial({"learning_rate": BAD_LR, "warmup_steps": 0.0})
    argv = ["search", "--config", str(root / "search.yaml"), "--metric", "loss", "--prune_after_trials", "1"]
    optuna.logging.set_verbosity(optuna.logging.INFO)
    assert main([*argv, "--n_trials", "3"]) == 0
    # The study quietens Optuna while it runs; a notebook's own studies after it logged nothing (it stayed at ERROR).
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
    first = pd.read_csv(out / "search" / "trials.csv")
    return {"root": root, "out": out, "argv": argv, "storage": storage, "first": first}


def test_a_second_search_on_a_study_in_use_is_refused(study_run, capsys):
    """A second search on a running study took the first's running trial for a killed one: it marked it failed and
    removed its folder mid-training, and the first then died in Optuna (`Cannot tell a FAIL trial`)."""
    from hf_transfer.core.folder_lock import folders_held

    before = study_run["out"].joinpath("search", "study.db").stat().st_mtime_ns
    with folders_held([study_run["out"]], "search"):
        assert main([*study_run["argv"], "--n_trials", "5"]) == 2
    err = capsys.readouterr().err
    assert f"output_dir {str(study_run['out'])!r} is in use by another hf-transfer run (search, pid" in err
    assert study_run["out"].joinpath("search", "study.db").stat().st_mtime_ns == before


def test_trials_csv_has_a_row_per_trial_and_a_pruned_one(study_run):
    trials = study_run["first"]
    assert list(trials.columns[:4]) == ["number", "state", "loss", "duration_s"]
    assert {"learning_rate", "warmup_steps", "pruned_at_evaluation"} <= set(trials.columns)
    assert list(trials["number"]) == [0, 1, 2]
    good, bad = trials.iloc[0], trials.iloc[1]
    assert good["state"] == "complete" and good["evaluations"] == 2 and good["learning_rate"] == GOOD_LR
    assert bad["state"] == "pruned" and bad["pruned_at_evaluation"] == bad["evaluations"] >= 1
    # The pruner compares losses at the same evaluation: where the pruned trial stopped, its loss is above the
    # finished trial's at that evaluation, and the csv gives the pruned trial's loss there. It is usually the first
    # evaluation, but this tiny model barely learns: the learning trial's first loss can sit a hair above the idle
    # one's (0.6932 both), and then the pruner stops the idle trial at the second (seen on a fresh clone).
    import optuna

    study = optuna.load_study(study_name="hf-transfer-search", storage=study_run["storage"])
    finished, pruned = (t.intermediate_values for t in study.get_trials()[:2])
    assert len(pruned) == bad["evaluations"]
    stopped_at = max(pruned)
    assert pruned[stopped_at] > finished[stopped_at] and bad["loss"] == pytest.approx(pruned[stopped_at], abs=1e-12)
    assert trials["duration_s"].notna().all()
    # The third trial is sampled and this tiny model barely learns, so the pruner may stop it on a loss that differs
    # from the first trial's in the fourth decimal: what it records depends on that, not on luck. A pruned trial
    # writes no run record, so it names no cache.
    caches, third = list(trials["caches"].fillna("")), trials.iloc[2]
    assert caches[:2] == ["frozen features built", ""]
    assert caches[2] == ("frozen features hit" if third["state"] == "complete" else "")
    # A pruned trial leaves no folder; only the best finished trial keeps its weights.
    folders = study_run["out"] / "trials"
    assert not (folders / "trial-001").exists()
    best = trials[trials["state"] == "complete"].sort_values("loss").iloc[0]
    for number in trials[trials["state"] == "complete"]["number"]:
        folder = folders / f"trial-{number:03d}"
        assert (folder / "eval_results.json").is_file()
        assert (folder / "model.safetensors").is_file() == (number == best["number"])


def test_plot_of_the_trials(study_run):
    assert_picture(study_run["out"] / "search" / "trials.png", min_width=800, min_height=500)


def test_the_trials_picture_names_the_metric_its_direction_and_the_best_trial(tmp_path, monkeypatch):
    """trials.png had no title: the metric was on one axis only, and whether higher or lower is better nowhere."""
    import optuna

    from hf_transfer.search import report

    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig))
    for direction, best in (("maximize", "0.9000 (trial 1)"), ("minimize", "0.4000 (trial 0)")):
        study = optuna.create_study(direction=direction)
        values = iter([0.4, 0.9, 0.7])
        study.optimize(lambda trial, values=values: trial.suggest_float("lr", 0.1, 1.0) * 0 + next(values), n_trials=3)
        report.plot_trials(study, tmp_path / "trials.png", "f1_macro", ["lr"], {})
        assert figures[-1].get_suptitle() == f"Search: {direction} validation f1_macro; best {best}"


def test_the_trials_picture_places_failed_diverged_and_repeated_trials(tmp_path, monkeypatch):
    """A diverged trial (NaN, pruned by Optuna) vanished while the title counted it; failed trials had no mark on
    the trial axis; a categorical choice no finished trial took lost its tick, and trials at one choice stacked
    into one dot."""
    from types import SimpleNamespace

    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from hf_transfer.search import report

    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append(fig))
    study = optuna.create_study(direction="minimize")
    space = {"lr": CategoricalDistribution(["1e-5", "1e-4", "1e38"])}
    for value, state, lr in ((0.5, TrialState.COMPLETE, "1e-5"), (0.6, TrialState.COMPLETE, "1e-5"),
                             (None, TrialState.FAIL, "1e38"), (None, TrialState.PRUNED, "1e38")):  # fmt: skip
        reports = {0: float("nan")} if state == TrialState.PRUNED else {}
        study.add_trial(create_trial(state=state, value=value, params={"lr": lr}, distributions=space,
                                     intermediate_values=reports))  # fmt: skip
    choices = SimpleNamespace(is_range=False, choices=["1e-5", "1e-4", "1e38"], log=False)
    report.plot_trials(study, tmp_path / "trials.png", "loss", ["lr"], {"lr": choices})
    trial_ax, _, against = figures[-1].axes[:3]
    assert trial_ax.get_title() == "4 trials (1 failed (red ticks); 1 with no finite score, not shown)"
    assert [line.get_xdata()[0] for line in trial_ax.get_lines() if line.get_label() == "failed"] == [2]
    assert against.get_xlim() == (-0.5, 2.5) and [t.get_text() for t in against.get_xticklabels()] == choices.choices
    xs = sorted(x for x, _ in against.collections[0].get_offsets())
    assert len(xs) == 2 and xs[0] < 0 < xs[1] and xs[1] - xs[0] < 0.5  # side by side around the choice


def test_best_config_reproduces_its_trial(study_run):
    out, trials = study_run["out"], study_run["first"]
    best = trials[trials["state"] == "complete"].sort_values("loss").iloc[0]
    config = yaml.safe_load((out / "best_config.yaml").read_text())
    assert config["output_dir"] == str(out / "best") and "search_space" not in config
    assert config["learning_rate"] == best["learning_rate"] and config["warmup_steps"] == best["warmup_steps"]
    assert config["eval_strategy"] == "epoch" and config["save_strategy"] == "no"
    assert "hf-transfer train --config best_config.yaml" in (out / "best_config.yaml").read_text()
    completed = int((trials["state"] == "complete").sum())
    card = (out / "trials" / f"trial-{best['number']:03d}" / "README.md").read_text()
    pruned = int((trials["state"] == "pruned").sum())  # scored on the same rows too: they count as tries
    also = f" (and {pruned} pruned after scoring on the same rows)" if pruned else ""
    assert f"chosen by `hf-transfer search` as the best of {completed} completed trials{also} by loss" in card
    assert f"the best of {completed + pruned} tries on the same rows" in card
    trial_results = json.loads((out / "trials" / f"trial-{best['number']:03d}" / "eval_results.json").read_text())
    assert trial_results["eval_loss"] == pytest.approx(best["loss"], abs=1e-9)
    trial_folder = out / "trials" / f"trial-{best['number']:03d}"
    assert yaml.safe_load((trial_folder / "hf_transfer_config.yaml").read_text())["run_name"] == "1e3"
    assert config["chosen_by_search"]["trial"] == best["number"] and config["chosen_by_search"]["of"] == completed
    assert main(["train", "--config", str(out / "best_config.yaml")]) == 0
    assert yaml.safe_load((out / "best" / "hf_transfer_config.yaml").read_text())["run_name"] == "1e3"
    # Retrained on the rows the search chose on, its card says what the best trial's says (its settings were chosen
    # on them); the record keeps the choice, and the config the run saved has no such field.
    retrained = (out / "best" / "README.md").read_text()
    assert (
        f"Its settings are those of trial {best['number']} of `hf-transfer search`, chosen as the best of" in retrained
    )
    assert f"the best of {completed + pruned} tries on the same rows" in retrained
    assert json.loads((out / "best" / "hf_transfer_run.json").read_text())["chosen_by_search"]["retrained"] is True
    assert "chosen_by_search" not in yaml.safe_load((out / "best" / "hf_transfer_config.yaml").read_text())
    again = json.loads((out / "best" / "eval_results.json").read_text())
    assert again["eval_loss"] == pytest.approx(best["loss"], abs=1e-6)
    assert again["eval_accuracy"] == trial_results["eval_accuracy"]


def test_resume_keeps_finished_trials_and_reruns_an_interrupted_one(study_run):
    """A run killed during a trial leaves it RUNNING in the study: the rerun marks it failed, runs its parameters
    again first, keeps every finished trial as it was, and stops when the study holds n_trials counted trials."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out = study_run["out"]
    study = optuna.load_study(study_name="hf-transfer-search", storage=study_run["storage"])
    killed = study.ask({"learning_rate": CategoricalDistribution([GOOD_LR, BAD_LR]),
                        "warmup_steps": FloatDistribution(0.0, 0.1)})  # fmt: skip
    cut_off = out / "trials" / f"trial-{killed.number:03d}"  # killed mid-save: weights, no results
    cut_off.mkdir(parents=True)
    (cut_off / "model.safetensors").write_bytes(b"half")
    # study.db names the trial's folder; a copied or edited study named one elsewhere, which the rerun removed.
    victim = out.parent / "not-this-study"
    victim.mkdir(exist_ok=True)
    (victim / "keep.txt").write_text("mine")
    killed.set_user_attr("config", {"output_dir": str(victim)})
    assert main([*study_run["argv"], "--n_trials", "4"]) == 0
    assert not cut_off.exists()  # the rerun has a new number: the folder stayed for good
    assert (victim / "keep.txt").read_text() == "mine"  # the folder is the trial number's, under this output_dir
    trials = pd.read_csv(out / "search" / "trials.csv")
    first = study_run["first"]
    assert len(trials) == 5
    kept = trials.iloc[:3]
    assert list(kept["state"]) == list(first["state"]) and list(kept["loss"]) == list(first["loss"])
    assert trials.iloc[3]["state"] == "fail" and trials.iloc[4]["state"] in ("complete", "pruned")
    assert trials.iloc[4]["note"].startswith("reruns interrupted trial 3")
    assert trials.iloc[4]["learning_rate"] == killed.params["learning_rate"]
    assert trials.iloc[4]["warmup_steps"] == killed.params["warmup_steps"]
    # A rerun with another space is refused: its trials would not be comparable with the stored ones.
    changed = ["--search_space", "{learning_rate: [0.01, 0.001]}"]
    assert main([*study_run["argv"], "--n_trials", "5", *changed]) == 2
    assert len(pd.read_csv(out / "search" / "trials.csv")) == 5


def test_search_summary_names_the_outputs(study_run, capsys):
    """Rerun on a study that already holds n_trials: nothing new runs, the summary still reports the best."""
    out = study_run["out"]
    before = sorted(p.name for p in (out / "trials").iterdir())
    assert main([*study_run["argv"], "--n_trials", "2"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "best_loss" in printed and str(out / "best_config.yaml") in printed and "best_params" in printed
    assert "counted trials (n_trials 2): no trial was run; give a larger n_trials" in captured.out + captured.err
    noted = [
        p.name
        for p in sorted((out / "trials").glob("trial-*"))
        if (p / "README.md").is_file() and "chosen by `hf-transfer search`" in (p / "README.md").read_text()
    ]
    assert len(noted) == 1, noted  # the best trial's card alone, after a resumed study too
    # The other finished trials' cards say their weights went (their quick start loaded an empty folder).
    for folder in sorted((out / "trials").glob("trial-*")):
        card = (folder / "README.md").read_text()
        removed = not any(folder.glob("*.safetensors"))
        assert ("> **Weights removed.**" in card) == removed and card.count("Weights removed") <= 1, folder
        assert card.startswith("---\n") and yaml.safe_load(card.split("---")[1]) is not None  # the header is intact
    assert "| trial | state | loss | learning_rate | warmup_steps |" in printed  # the table of the trials
    assert sorted(p.name for p in (out / "trials").iterdir()) == before
    assert Path(out / "search" / "study.db").is_file()


def _tiny_teacher(folder, tiny_bert_dir) -> None:
    """A random 2-layer neg/pos BERT classifier with the tiny model's tokenizer, saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, id2label={0: "neg", 1: "pos"},
                        label2id={"neg": 0, "pos": 1})  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)


def test_a_distillation_search_shares_the_teacher_logits(tmp_path, tiny_bert_dir):
    """A config naming a teacher is searched as `distill` trials over the default distillation space; the teacher
    runs over the training rows once, in the first trial, and later trials read its logits from the cache."""
    _tiny_teacher(tmp_path / "teacher", tiny_bert_dir)
    rows = [(f"{w} {w} thing {i}", label) for i, (w, label) in enumerate([("good", "pos"), ("bad", "neg")] * 20)]
    pd.DataFrame(rows[:32], columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[32:], columns=["text", "label"]).to_csv(tmp_path / "dev.csv", index=False)
    argv = ["search", "--teacher_model_name_or_path", str(tmp_path / "teacher"), "--model_name_or_path",
            str(tiny_bert_dir), "--train_file", str(tmp_path / "train.csv"), "--validation_file",
            str(tmp_path / "dev.csv"), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to",
            "none", "--disable_tqdm", "true", "--freeze_embeddings", "true", "--teacher_cache_dir",
            str(tmp_path / "logits"), "--n_trials", "2", "--prune", "false"]  # fmt: skip
    assert main(argv) == 0
    trials = pd.read_csv(tmp_path / "out" / "search" / "trials.csv")
    assert {"learning_rate", "alpha", "temperature", "num_train_epochs"} <= set(trials.columns)
    assert list(trials["state"]) == ["complete", "complete"]
    assert list(trials["caches"]) == ["teacher logits built", "teacher logits hit"]
    best = yaml.safe_load((tmp_path / "out" / "best_config.yaml").read_text())
    assert best["teacher_model_name_or_path"] == str(tmp_path / "teacher") and best["cache_teacher_logits"] is True
    header = (tmp_path / "out" / "best_config.yaml").read_text().splitlines()[1]
    assert header == "# Reproduce it with: hf-transfer distill --config best_config.yaml"  # it had said train


def _tiny_distill_argv(tmp_path, tiny_bert_dir) -> list[str]:
    _tiny_teacher(tmp_path / "teacher", tiny_bert_dir)
    rows = [(f"{w} {w} thing {i}", label) for i, (w, label) in enumerate([("good", "pos"), ("bad", "neg")] * 12)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    return ["search", "--teacher_model_name_or_path", str(tmp_path / "teacher"), "--model_name_or_path",
            str(tiny_bert_dir), "--train_file", str(tmp_path / "train.csv"), "--validation_file",
            str(tmp_path / "train.csv"), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to",
            "none", "--disable_tqdm", "true", "--n_trials", "2", "--prune", "false", "--max_steps", "1"]  # fmt: skip


@pytest.mark.parametrize(
    "extra,needle",
    [
        # α = 0 is plain fine-tuning: a searched temperature trained identical students
        (["--alpha", "0", "--search_space", "{temperature: {low: 1.0, high: 4.0}}"],
         "search_space.temperature: alpha is 0 (no soft loss), so temperature changes nothing"),
        (["--alpha", "0.5", "--search_space", "{hidden_loss_type: [mse, cosine]}"],
         "search_space.hidden_loss_type: hidden_loss_weight is 0 (no hidden-state loss)"),
        (["--alpha", "0.5", "--search_space", "{augment_p: {low: 0.1, high: 0.5}}"],
         "search_space.augment_p: augment_factor is 0 (no augmented copies)"),
        # the student has 2 blocks: every trial failed on it, after the study had started
        (["--alpha", "0.5", "--search_space", "{freeze_layers: {low: 1, high: 6}}"],
         "search_space.freeze_layers: the value 6 is rejected"),
    ],
)  # fmt: skip
def test_a_distillation_search_refuses_what_its_trials_would_ignore_or_fail_on(tmp_path, tiny_bert_dir, capsys,
                                                                               extra, needle):  # fmt: skip
    """Thirty-seventh review: a distillation search over a field whose term is off trained N identical students,
    and a freeze_layers range beyond the student's blocks failed every trial; both are refused in one line."""
    argv = _tiny_distill_argv(tmp_path, tiny_bert_dir)
    capsys.readouterr()
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


def test_a_distillation_search_of_the_hidden_loss_and_student_layers_starts_from_the_config(tmp_path, tiny_bert_dir):
    """Thirty-seventh review: searching hidden_loss_weight was refused for a teacher-logit cache the search had
    turned on itself; and a list field's own value (`student_layers: [0, 1]`, listed as the text "[0, 1]") matched
    no choice, so no trial ran the config's own recipe."""
    argv = _tiny_distill_argv(tmp_path, tiny_bert_dir)
    argv = [a for a in argv if a != str(tiny_bert_dir) and a != "--model_name_or_path"]  # a student from the teacher
    space = "{hidden_loss_weight: {low: 0.0, high: 1.0}, student_layers: ['[0]', '[1]', '[0, 1]']}"
    assert main([*argv, "--alpha", "0.5", "--student_layers", "[0, 1]", "--search_space", space]) == 0
    trials = pd.read_csv(tmp_path / "out" / "search" / "trials.csv")
    assert trials["state"].tolist() == ["complete", "complete"]
    assert trials["student_layers"][0] == "[0, 1]" and "config" in str(trials["note"][0]), trials.to_dict()


def _accelerate_launch(config: str, argv: list[str]):
    import os
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [accelerate, "launch", "--config_file", str(repo / "scripts" / "accelerate" / config),
               "--main_process_port", "0", "-m", "hf_transfer", *argv]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=repo)


@pytest.mark.slow
def test_under_accelerate_launch_one_process_drives_the_study_and_several_are_refused(study_run, tmp_path):
    """`accelerate launch` with one process runs the study as `hf-transfer search` does; with two (DDP) each process
    stops before anything loads, saying to launch one."""
    argv = ["search", "--config", str(study_run["root"] / "search.yaml"), "--metric", "loss", "--n_trials", "1",
            "--output_dir", str(tmp_path / "one")]  # fmt: skip
    proc = _accelerate_launch("single_process.yaml", argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "one" / "search" / "trials.csv")
    assert list(trials["state"]) == ["complete"] and (tmp_path / "one" / "best_config.yaml").is_file()
    argv[-1] = str(tmp_path / "two")
    proc = _accelerate_launch("ddp_cpu.yaml", argv)
    assert proc.returncode != 0 and "drives its study from one process, but 2 were launched" in proc.stderr
    assert not (tmp_path / "two").exists()


def test_a_trial_line_names_trials_as_trials_csv_does():
    import optuna

    from hf_transfer.search import report

    done = optuna.trial.create_trial(params={"learning_rate": 1e-4}, distributions={
        "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}, value=0.85)  # fmt: skip
    done.number = 9
    line = report.summary_line(done, "accuracy", 12, done, ["learning_rate"])
    assert line.startswith("trial 9 (10 of 12) complete: accuracy 0.8500") and line.endswith("best: trial 9, 0.8500")


def test_a_diverged_trial_fails_and_the_study_goes_on(tmp_path, tiny_bert_dir):
    """A trial whose learning rate sends the weights to NaN was scored like any other (argmax over NaN logits); it
    is now a failed trial, noted in trials.csv, with no folder left, and the next trial runs."""
    import optuna

    rows = [(f"{w} thing {i}", label) for i, (w, label) in enumerate([("good", "pos"), ("bad", "neg")] * 12)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "out"
    (out / "search").mkdir(parents=True)
    study = optuna.create_study(storage=f"sqlite:///{out / 'search' / 'study.db'}", study_name="hf-transfer-search",
                                direction="maximize")  # fmt: skip
    study.enqueue_trial({"learning_rate": 1e12})  # YAML 1.2: the search space's 1e12 and 1e-3 are numbers
    study.enqueue_trial({"learning_rate": 1e-3})
    argv = ["search", "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(tmp_path / "train.csv"),
            "--validation_file", str(tmp_path / "train.csv"), "--output_dir", str(out), "--max_steps", "2",
            "--use_cpu", "true", "--report_to", "none", "--few_shot", "false", "--n_trials", "1",
            "--search_space", "{learning_rate: [1e12, 1e-3]}"]  # fmt: skip
    assert main(argv) == 0
    trials = pd.read_csv(out / "search" / "trials.csv")
    assert list(trials["state"]) == ["fail", "complete"]
    assert trials.loc[0, "note"].startswith("training diverged:") and trials.loc[1, "learning_rate"] == 1e-3
    assert not (out / "trials" / "trial-000").exists() and (out / "trials" / "trial-001").is_dir()


def _fake_trials(monkeypatch, outcomes):
    """Trials that train nothing: each writes a run folder and returns (or raises) the next outcome."""
    outcomes = iter(outcomes)

    def fake_train(*objects, callbacks=None):
        folder = Path(objects[-1].output_dir)
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_text("weights")
        outcome = next(outcomes)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr("hf_transfer.search.command.run_train", fake_train)


def _fake_search_argv(tmp_path, model) -> list[str]:
    return [*_tiny_search_argv(tmp_path, model), "--few_shot", "false", "--search_space", "{learning_rate: [1.0e-3, "
            "1.0e-4]}"]  # fmt: skip


def test_a_tiny_timeout_still_runs_one_trial(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """The timeout was checked before each trial: one shorter than the set-up ran none, and the search ended in
    "no trial of the search completed (1 tried)", counting the config's queued trial that never ran."""
    _fake_trials(monkeypatch, [{"eval_accuracy": 0.75}, {"eval_accuracy": 0.5}])
    assert main([*_fake_search_argv(tmp_path, tiny_bert_dir), "--timeout", "1e-9"]) == 0
    printed = capsys.readouterr().out
    assert "stopped_by                   timeout" in printed and "best_accuracy                0.75" in printed
    trials = pd.read_csv(tmp_path / "out" / "search" / "trials.csv")
    assert list(trials["state"]) == ["complete"] and trials.loc[0, "accuracy"] == 0.75


def test_a_trial_out_of_gpu_memory_fails_and_the_study_goes_on(tmp_path, tiny_bert_dir, monkeypatch):
    """A batch size drawn from the space that does not fit on the GPU raised CUDA's out-of-memory error, which ended
    the whole search with a traceback; it is a failed trial with its reason, and the memory is handed back."""
    import torch

    released = []
    monkeypatch.setattr("hf_transfer.core.memory.release_device_memory", lambda: released.append(True))
    _fake_trials(monkeypatch, [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                               {"eval_accuracy": 0.75}, {"eval_accuracy": 0.5}])  # fmt: skip
    assert main(_fake_search_argv(tmp_path, tiny_bert_dir)) == 0
    trials = pd.read_csv(tmp_path / "out" / "search" / "trials.csv")
    assert list(trials["state"]) == ["fail", "complete", "complete"]
    assert trials.loc[0, "note"].startswith("CUDA out of memory")
    assert not (tmp_path / "out" / "trials" / "trial-000").exists() and len(released) == 3


def test_best_config_names_its_files_absolutely(tmp_path, tiny_bert_dir, monkeypatch):
    """A search given `--train_file train.csv` wrote best_config.yaml with that relative path, so the command its
    header gives, run in the search's folder, stopped on "data file 'train.csv' does not exist"."""
    _fake_trials(monkeypatch, [{"eval_accuracy": 0.75}, {"eval_accuracy": 0.5}])
    argv = _fake_search_argv(tmp_path, tiny_bert_dir)
    monkeypatch.chdir(tmp_path)
    for name, relative in (("--train_file", "train.csv"), ("--validation_file", "train.csv"), ("--output_dir", "out")):
        argv[argv.index(name) + 1] = relative
    assert main(argv) == 0
    config = yaml.safe_load((tmp_path / "out" / "best_config.yaml").read_text())
    assert config["train_file"] == config["validation_file"] == str(tmp_path / "train.csv")
    assert config["model_name_or_path"] == str(tiny_bert_dir)


def test_ctrl_c_leaves_trials_csv_saying_so_and_the_rerun_names_it(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """Ctrl-C during a trial: trials.csv (written only after finished trials) left the interrupted trial out, and
    once resumed it was a `fail` with no note."""
    _fake_trials(monkeypatch, [{"eval_accuracy": 0.5}, KeyboardInterrupt()])
    argv = _fake_search_argv(tmp_path, tiny_bert_dir)
    out = tmp_path / "out"
    assert main(argv) == 130
    trials = pd.read_csv(out / "search" / "trials.csv")
    assert list(trials["state"]) == ["complete", "fail"] and trials.loc[1, "note"] == "interrupted"
    assert not (out / "trials" / "trial-001").exists()
    _fake_trials(monkeypatch, [{"eval_accuracy": 0.75}])
    assert main(argv) == 0
    trials = pd.read_csv(out / "search" / "trials.csv")
    assert list(trials["state"]) == ["complete", "fail", "complete"]
    assert trials.loc[1, "note"] == "interrupted; run again as trial 2"
    assert trials.loc[2, "note"] == "reruns interrupted trial 1"


def test_a_sigterm_turned_into_a_trial_failure_stops_the_search_and_the_trial_runs_again(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """`timeout` stopping a search: the SIGTERM's interrupt was swallowed (raised inside a weakref callback) or
    became another error, the trial counted as failed, and the search went on. It stops, and the trial is marked
    interrupted, so the resumed search runs it again."""
    import os
    import signal

    from hf_transfer.errors import ConfigError, Terminated

    outcomes = iter([{"eval_accuracy": 0.5}, "signal"])

    def fake_train(*objects, callbacks=None):
        Path(objects[-1].output_dir).mkdir(parents=True)
        outcome = next(outcomes)
        if outcome == "signal":
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except Terminated:
                pass  # swallowed, and a library raises its own error instead
            raise ConfigError("an error a library raised instead")
        return outcome

    monkeypatch.setattr("hf_transfer.search.command.run_train", fake_train)
    out = tmp_path / "out"
    assert main(_fake_search_argv(tmp_path, tiny_bert_dir)) == 143
    trials = pd.read_csv(out / "search" / "trials.csv")
    assert list(trials["state"]) == ["complete", "fail"] and trials.loc[1, "note"] == "interrupted"
    assert not (out / "trials" / "trial-001").exists()


def test_a_trial_without_the_metric_fails_with_its_reason_and_leaves_no_folder(tmp_path, tiny_bert_dir, monkeypatch,
                                                                               capsys):  # fmt: skip
    """The trial's folder stayed, trials.csv had no note, and the search's last line gave no reason."""
    _fake_trials(monkeypatch, [{"eval_loss": 0.5}] * 3)
    assert main(_fake_search_argv(tmp_path, tiny_bert_dir)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no trial of the search completed (3 tried); the last failed with: the trial has no validation" in err
    trials = pd.read_csv(tmp_path / "out" / "search" / "trials.csv")
    assert trials["note"].str.contains("no validation accuracy").all()
    assert not any((tmp_path / "out" / "trials").iterdir())


def test_few_shot_trials_without_validation_data_are_refused_before_any_trains(tmp_path, minilm_path, capsys):
    """With no validation_file the few-shot route trains on every row, so each trial trained and then failed for
    want of a score: three trainings, then "no trial of the search completed"."""
    argv = _tiny_search_argv(tmp_path, minilm_path)
    i = argv.index("--validation_file")
    del argv[i : i + 2]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the trials take the few-shot route" in err, err
    assert "keeps no validation data when no validation_file is given" in err
    assert not (tmp_path / "out").exists()


def _recording_trials(monkeypatch, outcomes) -> list:
    """Fake trials (as `_fake_trials`) that also record each trial's training arguments."""
    seen, outcomes = [], iter(outcomes)

    def fake_train(*objects, callbacks=None):
        seen.append(objects[-1])
        Path(objects[-1].output_dir).mkdir(parents=True)
        return next(outcomes)

    monkeypatch.setattr("hf_transfer.search.command.run_train", fake_train)
    return seen


def test_an_unset_freeze_layers_starts_the_configs_own_trial_at_no_block_frozen(tmp_path, tiny_bert_dir, monkeypatch):
    """The config's own trial had freeze_layers drawn at random (unset is not inside {low: 0, high: 1}) while
    trials.csv called it "the config's own values"."""
    seen = _recording_trials(monkeypatch, [{"eval_accuracy": 0.5}])
    argv = [*_tiny_search_argv(tmp_path, tiny_bert_dir), "--few_shot", "false", "--n_trials", "1"]
    assert main([*argv, "--search_space", "{freeze_layers: {low: 0, high: 1}}"]) == 0
    assert seen[0].freeze_layers == 0
    assert pd.read_csv(tmp_path / "out" / "search" / "trials.csv").loc[0, "note"] == "the config's own values"


def test_the_configs_own_trial_says_which_fields_were_drawn(tmp_path, tiny_bert_dir, monkeypatch):
    seen = _recording_trials(monkeypatch, [{"eval_accuracy": 0.5}])
    argv = [*_tiny_search_argv(tmp_path, tiny_bert_dir), "--few_shot", "false", "--n_trials", "1"]
    space = "{warmup_steps: {low: 0.0, high: 0.1}, learning_rate: [1.0e-3, 1.0e-4]}"  # the config's 5e-5 is outside
    assert main([*argv, "--search_space", space]) == 0
    assert seen[0].warmup_steps == 0 and seen[0].learning_rate in (1e-3, 1e-4)
    note = pd.read_csv(tmp_path / "out" / "search" / "trials.csv").loc[0, "note"]
    assert note == "the config's own values (learning_rate drawn: not in the space)"


def test_a_lora_configs_own_trial_runs_at_the_rate_train_gives_it(tmp_path, tiny_bert_dir, monkeypatch):
    """A LoRA config without learning_rate trains at 2e-3 (`hf-transfer train`); its own trial read
    TrainingArguments' 5e-5 instead, drew another rate and still called it "the config's own values"."""
    seen = _recording_trials(monkeypatch, [{"eval_accuracy": 0.5}])
    argv = [*_tiny_search_argv(tmp_path, tiny_bert_dir), "--few_shot", "false", "--n_trials", "1"]
    argv += ["--peft_method", "lora", "--search_space", "{learning_rate: {low: 1.0e-4, high: 5.0e-3, log: true}}"]
    assert main(argv) == 0
    assert seen[0].learning_rate == 2e-3
    assert pd.read_csv(tmp_path / "out" / "search" / "trials.csv").loc[0, "note"] == "the config's own values"


def test_disable_tqdm_among_the_trial_fields_turns_the_bars_off():
    from hf_transfer.cli import _asks_no_bars

    (search,) = parse_command_args("search", ["--disable_tqdm", "true", "--n_trials", "1"])
    assert _asks_no_bars(search)
    (search,) = parse_command_args("search", ["--n_trials", "1"])
    assert not _asks_no_bars(search)


@pytest.mark.parametrize("field,values", [("seed", "[1, 2]"), ("data_seed", "[1, 2]")])
def test_a_field_that_carves_the_validation_rows_is_refused_without_a_validation_file(tmp_path, tiny_bert_dir, field,
                                                                                     values, capsys):  # fmt: skip
    """With no validation_file the validation rows are carved by the seed: searching it scored each trial on other
    rows, while the best trial's card said "the best of N tries on the same rows"."""
    argv = [a for a in _tiny_search_argv(tmp_path, tiny_bert_dir) if a != "--validation_file"]
    argv.remove(str(tmp_path / "train.csv"))  # the validation file's path (the train file's path stays)
    argv = [*argv, "--train_file", str(tmp_path / "train.csv"), "--few_shot", "false"]
    capsys.readouterr()
    assert main([*argv, "--search_space", f"{{{field}: {values}}}"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"search_space.{field}: with no validation_file the validation rows are carved" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("switch", "said"), [("do_train", "do_train is false"), ("do_predict", "do_predict is false")]
)
def test_a_run_glue_switch_given_to_search_is_refused_as_train_refuses_it(tmp_path, tiny_bert_dir, switch, said,
                                                                          capsys):  # fmt: skip
    """`search --do_train false` reached every trial as a config value and was ignored, where `train --do_train false`
    is refused; the trials' flags are the route's own command line."""
    argv = [
        *_tiny_search_argv(tmp_path, tiny_bert_dir),
        "--few_shot",
        "false",
        "--test_file",
        str(tmp_path / "train.csv"),
    ]
    capsys.readouterr()
    assert main([*argv, f"--{switch}", "false"]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_trials_with_early_stopping_are_not_given_save_strategy_no():
    """The trials' default `save_strategy: no` met early stopping, which saves at every evaluation: each trial (and
    a run from best_config.yaml) said that a `save_strategy no` nobody gave was replaced."""
    from types import SimpleNamespace

    from hf_transfer.search.command import _trial_defaults

    s = SimpleNamespace(prune=True)
    assert _trial_defaults({}, s, False)["save_strategy"] == "no"
    assert "save_strategy" not in _trial_defaults({"early_stopping_patience": 2}, s, False)


def test_a_trial_whose_weights_go_says_so_in_its_card_once(tmp_path):
    """Its card's quick start loaded a folder with no model left in it, and nothing said why."""
    import optuna

    from hf_transfer.search.study import drop_weights_but_best

    study = optuna.create_study(direction="maximize")
    for number, value in enumerate((0.5, 0.9)):
        folder = tmp_path / "trials" / f"trial-{number:03d}"
        (folder / "checkpoint-2").mkdir(parents=True)
        (folder / "model.safetensors").write_text("weights")
        (folder / "README.md").write_text("---\nlicense: mit\n---\n\n# trial\n\nQuick start\n")
        study.enqueue_trial({})
        trial = study.ask()
        trial.set_user_attr("output_dir", str(folder))
        study.tell(trial, value)
    for _ in range(2):  # after every trial of a study: said once
        drop_weights_but_best(study, study.best_trial, tmp_path)
    dropped, best = tmp_path / "trials" / "trial-000", tmp_path / "trials" / "trial-001"
    assert not (dropped / "model.safetensors").exists() and not (dropped / "checkpoint-2").exists()
    card = (dropped / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n---\n\n> **Weights removed.** `hf-transfer search` kept")
    assert card.count("Weights removed") == 1 and card.endswith("# trial\n\nQuick start\n")
    assert (best / "model.safetensors").exists() and "Weights removed" not in (best / "README.md").read_text()
    # A distill study's note names distill; a card without a header, or with an unclosed one, is not cut into.
    from hf_transfer.search.study import _say_weights_removed

    for text in ("# plain card\n", "--- not yaml\nbody\n", "---\nunclosed: header\nbody\n"):
        card = tmp_path / "card.md"
        card.write_text(text)
        _say_weights_removed(card, "distill")
        written = card.read_text()
        assert written.startswith("> **Weights removed.**") and written.endswith(text), written
        assert "`hf-transfer distill --config hf_transfer_config.yaml --output_dir NEW_DIR`" in written


def test_the_trials_data_is_prepared_and_tokenized_once(tmp_path, tiny_bert_dir, monkeypatch):
    """Each trial read, cleaned and tokenized the same file again (500,000 rows: 28–32 s of a 44–49 s trial). The
    trials now share one preparation and one tokenization; each records the same data figures as a trial alone, and a
    searched field that changes the data (max_seq_length) gets its own tokenization."""
    from hf_transfer.core import data as data_module

    calls = {"load_data": 0, "tokenize_data": 0}
    for name in calls:
        real = getattr(data_module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(f"hf_transfer.train.preflight.{name}" if name == "load_data" else
                            f"hf_transfer.train.command.{name}", counted)  # fmt: skip
    argv = _tiny_search_argv(tmp_path, tiny_bert_dir)
    argv[argv.index("--n_trials") + 1] = "3"
    assert main([*argv, "--few_shot", "false", "--search_space", "{learning_rate: [0.001, 0.002]}"]) == 0
    assert calls == {"load_data": 1, "tokenize_data": 1}
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / "trials").glob("*/hf_transfer_run.json"))]
    assert len(records) == 3 and all(r["data"] == records[0]["data"] for r in records)
    assert "rows_truncated" in records[0]["data"]["train"] and "rows_sha256" in records[0]["data"]["train"]

    calls.update(load_data=0, tokenize_data=0)
    argv[argv.index("--output_dir") + 1] = str(tmp_path / "lengths")
    assert main([*argv, "--few_shot", "false", "--search_space", "{max_seq_length: [8, 16]}"]) == 0
    assert calls["load_data"] == 1 and calls["tokenize_data"] == 2  # one tokenization per length


def test_shared_data_keeps_what_reading_it_set_on_the_arguments(tmp_path, tiny_bert_dir):
    """Reading a GLUE-style dataset folder sets its pair columns on the data arguments; with the trials sharing one
    preparation, no trial read the data itself, and each recorded single texts for a model trained on pairs (so
    `predict` on a trial's folder scored the second column alone)."""
    import csv

    folder = tmp_path / "qnli"
    folder.mkdir()
    rows = [[f"is it {w}", f"it is {w} {i}", "yes" if i % 2 else "no"] for i in range(12) for w in ("good", "bad")]
    for split in ("train", "validation"):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("question", "sentence", "label"))
            writer.writerows(rows)
    argv = ["search", "--model_name_or_path", str(tiny_bert_dir), "--dataset_name", str(folder), "--output_dir",
            str(tmp_path / "out"), "--n_trials", "2", "--use_cpu", "true", "--few_shot", "false", "--max_steps", "1",
            "--report_to", "none", "--search_space", "{learning_rate: [0.001, 0.002]}"]  # fmt: skip
    assert main(argv) == 0
    configs = sorted((tmp_path / "out" / "trials").glob("*/hf_transfer_config.yaml"))
    assert len(configs) == 2
    for path in configs:
        config = yaml.safe_load(path.read_text())
        assert (config["text_column_name"], config["text_pair_column_name"]) == ("question", "sentence"), path


def test_the_search_record_in_best_config_is_set_aside_and_names_only_its_own_validation_rows(tmp_path):
    """best_config.yaml's `chosen_by_search` is no setting: train reads the file (the record left on its arguments),
    a search given the file does not hand it to its trials, and a run scored on other validation rows claims nothing
    (its scores there are not the best of many tries on them)."""
    from hf_transfer.outputs.search_note import retrained_from_search

    chosen = {"trial": 2, "of": 5, "pruned": 1, "metric": "accuracy", "validation_rows_sha256": "abc"}
    path = tmp_path / "best_config.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "chosen_by_search": chosen}))
    training = parse_command_args("train", ["--config", str(path)])[-1]
    assert training.chosen_by_search == chosen
    search = parse_command_args("search", ["--config", str(path), "--n_trials", "2"])[-1]
    assert "chosen_by_search" not in search.trial_config and search.trial_config["output_dir"]
    same = retrained_from_search(training, {"validation": {"rows_sha256": "abc"}})
    assert same == {"chosen_by_search": {"trial": 2, "of": 5, "pruned": 1, "metric": "accuracy", "retrained": True}}
    assert retrained_from_search(training, {"validation": {"rows_sha256": "other"}}) == {}
    assert retrained_from_search(training, {}) == {}  # no validation rows at all
    plain = parse_command_args("train", ["--output_dir", str(tmp_path / "o")])[-1]
    assert retrained_from_search(plain, {"validation": {"rows_sha256": "abc"}}) == {}
