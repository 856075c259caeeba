"""The command line: parsing, the bad-input contract, and whole runs that leave what DESIGN.md lists."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import assert_picture

from hf_transfer.cli import main, parse_command_args
from hf_transfer.core import memory
from hf_transfer.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for p in (REPO / "scripts").rglob("*.yaml") if "accelerate" not in p.parts)
RUN_OUTPUTS = [
    "model.safetensors",
    "tokenizer.json",
    "config.json",
    "train_results.json",
    "eval_results.json",
    "all_results.json",
    "hf_transfer_config.yaml",
    "training_curves.png",
    "README.md",
]


def write_csv(path, texts, labels):
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_data(tmp_path):
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(48)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(48)]
    train = write_csv(tmp_path / "train.csv", texts[:40], labels[:40])
    dev = write_csv(tmp_path / "dev.csv", texts[40:], labels[40:])
    return train, dev


def train_argv(model_dir, train, dev, out, *extra):
    return [
        "train",
        "--model_name_or_path",
        str(model_dir),
        "--train_file",
        str(train),
        "--validation_file",
        str(dev),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--use_cpu",
        "true",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        "--disable_tqdm",
        "true",
        "--eval_strategy",
        "epoch",
        *extra,
    ]


# --- parsing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "distill", "evaluate", "merge"])
def test_help_lists_fields(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config" in out
    if command == "merge":
        for flag in ("--pretrained", "--finetuned", "--alpha", "--alphas", "--head_init", "--output_dir"):
            assert flag in out, flag
    else:
        assert "--model_name_or_path" in out
    if command in ("evaluate", "merge"):
        assert "--validation_file" in out and "--extra_eval" in out and "--label_mapping" in out
    if command == "distill":
        assert "--teacher_model_name_or_path" in out and "--student_layers" in out and "--alpha" in out
    if command in ("train", "distill"):
        assert "--freeze_layers" in out and "--layerwise_lr_decay" in out and "--learning_rate" in out
        assert "--peft_method" in out and "--target_modules" in out and "--merge_adapter" in out


def test_help_says_what_the_fields_do_here_where_transformers_says_otherwise(capsys, monkeypatch):
    """`--help` showed transformers' texts: learning_rate 5e-5 with no word of LoRA's 2e-3, do_train "not directly
    used by Trainer" (false is refused here), prediction_loss_only and label_names as usable (both crashed after
    training), "~20%%" with its percent doubled, and in distill the few-shot and LP-FT fields it refuses."""
    monkeypatch.setenv("COLUMNS", "2000")  # one line per help text
    assert main(["train", "--help"]) == 0
    train = capsys.readouterr().out
    assert "With peft_method lora or adalora and no learning_rate given: 2e-3" in train
    assert "Always true: the command trains. false is refused." in train
    assert "Not supported (refused): the run's metrics are computed from the predictions." in train
    assert "%%" not in train and "Not directly used by Trainer" not in train
    assert "(hf-transfer train only" not in train
    assert main(["distill", "--help"]) == 0
    distill = capsys.readouterr().out
    entries = re.split(r"\n  (?=-)", distill)  # one entry per option: its flags, then its help
    for flag in ("--linear_probe_epochs", "--few_shot_loss", "--cache_frozen_features"):
        entry = next(entry for entry in entries if entry.startswith(flag + " "))
        assert "(hf-transfer train only.)" in " ".join(entry.split()), entry
    assert "Required (for distill the student, unless student_layers is set)." in distill
    assert main(["help", "distill"]) == 0 and capsys.readouterr().out == distill  # as git and pip take it
    assert main(["help", "tran"]) == 2 and "Did you mean 'train'" in capsys.readouterr().err


def test_help_says_what_each_switch_and_positional_does(capsys):
    """`--no_prune` had the help of `--prune` ("Stop a trial when ...", default False), `card`/`push`/`export`
    showed their folder as an optional `--model_dir`, a required field read "Required. (default: None)", and
    `search --help` did not say that train fields are taken too."""
    assert main(["search", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--no_prune, --no-prune Turn prune off: the same as --prune false." in out
    assert "field of `hf-transfer train`" in out and "(default: None)" not in out
    for command in ("card", "push", "export"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: hf-transfer {command} DIR "), out.splitlines()[0]
    assert main(["predict", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Required. (default" not in out and "(default: 64)" in out
    # A closed choice's values were shown only as argparse's metavar, which the parser's own reader replaces.
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "One of: single_label_classification, multi_label_classification." in out
    assert main(["merge", "--help"]) == 0
    assert "One of: accuracy, f1_macro." in " ".join(capsys.readouterr().out.split())


def test_only_the_main_process_prints_the_results(tmp_path, monkeypatch, capsys):
    """Under `accelerate launch` every process printed its own results block (each with its own timings)."""
    from hf_transfer import cli
    from hf_transfer.outputs.arguments import CardArguments

    def fake_card(args):
        return {"card": str(tmp_path / "README.md"), "warning": "something to know"}

    monkeypatch.setitem(cli.COMMANDS, "card", lambda: ((CardArguments,), fake_card))
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, printed in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        assert main(["card", str(tmp_path)]) == 0
        captured = capsys.readouterr()
        assert ("== hf-transfer card: results ==" in captured.out) is printed, rank
        assert ("something to know" in captured.err) is printed, rank
    # No launch (one process): a stray RANK left in the environment silenced every command and --version; a
    # malformed launcher variable stopped them with a traceback.
    for name, value in (("WORLD_SIZE", "1"), ("WORLD_SIZE", "abc"), ("WORLD_SIZE", "")):
        monkeypatch.setenv(name, value)
        for rank in ("-1", "1", ""):
            monkeypatch.setenv("RANK", rank)
            assert main(["card", str(tmp_path)]) == 0 and "results ==" in capsys.readouterr().out, (value, rank)
            assert main(["--version"]) == 0 and "hf-transfer" in capsys.readouterr().out


def test_top_level_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert main([]) == 2  # no command: an error, so the usage goes to stderr (it went to stdout)
    captured = capsys.readouterr()
    assert captured.out == "" and "usage: hf-transfer <command>" in captured.err
    assert main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err.lower()


def test_version(capsys):
    """`hf-transfer --version` was "unknown command '--version'", exit 2."""
    from hf_transfer import __version__

    for flag in ("--version", "-V"):
        assert main([flag]) == 0
        assert capsys.readouterr().out.strip() == f"hf-transfer {__version__}"


def test_flags_override_yaml_and_are_read_as_yaml(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {"model_name_or_path": "m", "learning_rate": 1e-3, "freeze_layers": 2, "output_dir": str(tmp_path / "o")}
        )
    )
    model, data, adapter, training = parse_command_args(
        "train",
        [
            "--config",
            str(config),
            "--learning_rate",
            "5e-5",
            "--freeze_layers",
            "[0,1,2]",
            "--bf16",
            "true",
            "--use_cpu",
            "true",
            "--freeze_embeddings",
            "--label_mapping",
            "{1: bad, 5: good}",
        ],
    )
    assert training.learning_rate == 5e-5 and isinstance(training.learning_rate, float)
    assert training.freeze_layers == [0, 1, 2] and training.bf16 is True and training.freeze_embeddings is True
    assert data.label_mapping == {"1": "bad", "5": "good"}
    assert model.model_name_or_path == "m" and adapter.peft_method == "none"


def test_a_flag_given_twice_is_said_and_the_last_is_used(tmp_path, caplog):
    """argparse kept the last of a repeated flag without a word (a sweep relies on it, so it is not refused)."""
    argv = ["--model_name_or_path", "m", "--learning_rate", "1e-4", "--output_dir", str(tmp_path / "o")]
    with caplog.at_level("WARNING"):
        training = parse_command_args("train", [*argv, "--learning_rate=2e-4", "--bf16", "--bf16", "false"])[-1]
    assert training.learning_rate == 2e-4 and training.bf16 is False
    assert "--learning_rate is given 2 times (1e-4, then 2e-4); the last, 2e-4, is used." in caplog.text
    assert "--bf16 is given 2 times (true, then false)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # a flag that collects values is no repeat
        parse_command_args("evaluate", ["--model_name_or_path", "m", "--validation_file", "v.csv",
                                        "--extra_eval", "a=a.csv", "--extra_eval", "b=b.csv"])  # fmt: skip
    assert "given 2 times" not in caplog.text


def test_yaml_reads_integers_and_booleans_as_yaml_1_2(tmp_path):
    """YAML 1.1 (PyYAML's default) reads `010` as octal 8 and `08` as text, so zero-padded label codes in a
    `label_mapping` named other rows than written; and `no` as false, so `save_strategy: no` was a boolean."""
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: m\nlabel_mapping: {010: low, 011: mid, 08: high}\nseed: 010\n"
                      "save_strategy: no\nmax_steps: 0x10\n")  # fmt: skip
    _, data, _, training = parse_command_args("train", ["--config", str(config), "--logging_steps", "1_000"])
    assert data.label_mapping == {"10": "low", "11": "mid", "8": "high"}
    assert training.seed == 10 and training.max_steps == 16 and training.logging_steps == 1000
    assert training.save_strategy == "no"
    _, data, _, _ = parse_command_args("train", ["--model_name_or_path", "m", "--label_mapping", "{1:30: a, 0o10: b}"])
    assert data.label_mapping == {"1:30": "a", "8": "b"}


def test_env_vars_expand_in_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_DATA", "/data/here")
    config = tmp_path / "c.yaml"
    config.write_text("train_file: ${MY_DATA}/t.csv\nvalidation_file: ${NOT_SET_VAR:-fallback}/v.csv\n")
    _, data, _, _ = parse_command_args("train", ["--config", str(config), "--output_dir", str(tmp_path / "o")])
    assert data.train_file == "/data/here/t.csv" and data.validation_file == "fallback/v.csv"


def test_a_value_beginning_with_a_dash_is_explained_for_every_flag_and_read_from_a_config(
    tmp_path, capsys, monkeypatch
):
    """argparse reads `-bad/x` after `--hub_model_id` as a flag of its own; the error said only "needs a value". It
    now says to write `--hub_model_id=-bad/x`, which reaches the repo-id check. Such a value in a config failed the
    same way; it is now read."""
    cases = [
        (["push", str(tmp_path), "--hub_model_id", "-bad/x"], "give it as --hub_model_id=-bad/x."),
        (["push", str(tmp_path), "--hub-model-id", "-bad/x"], "give it as --hub_model_id=-bad/x."),
        (["train", "--output_dir", "-out"], "--output_dir needs a value, and '-out' after it was read as a flag"),
        (["train", "--output_dir", "--seed", "3"], "--output_dir needs a value: fields are given as --name value"),
        (["push", str(tmp_path), "--hub_model_id=-bad/x"], "hub_model_id '-bad/x' is not a valid Hub repo id"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)
    assert "--seed=" not in err  # the next flag is not taken for the value
    (tmp_path / "c.yaml").write_text("output_dir: -out\nrun_name: -run\n")
    _, _, _, training = parse_command_args("train", ["--config", str(tmp_path / "c.yaml")])
    assert training.output_dir == "-out" and training.run_name == "-run"
    # A folder whose name begins with a dash, given as POSIX tools take one: after a final `--`.
    (tmp_path / "-run").mkdir()
    monkeypatch.chdir(tmp_path)
    (push,) = parse_command_args("push", ["--hub_model_id", "me/x", "--", "-run"])
    assert push.model_dir == "-run" and push.hub_model_id == "me/x"
    assert main(["card", "--", "-run", "extra"]) == 2 and "unexpected argument '--'" in capsys.readouterr().err


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_parse(config, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    # sst2_distill.yaml names a generated file of unlabelled rows (scripts/unlabeled_sentences.py); stand in for it.
    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("sentence\nan unlabelled sentence for the teacher\n")
    monkeypatch.setenv("HF_TRANSFER_UNLABELED", str(unlabeled))
    raw = yaml.safe_load(config.read_text())
    assert isinstance(raw, dict) and raw
    if "finetuned" in raw:
        merge = parse_command_args("merge", ["--config", str(config)])[0]
        assert merge.pretrained and merge.output_dir and merge.alpha_grid
        assert [s.name for s in merge.eval_sets()] == [raw["validation_name"], *raw.get("extra_eval", {})]
        return
    if "search_space" in raw:  # a search: its own fields, and the train config its trials are parsed from
        from hf_transfer.core.parsing import CommandParser
        from hf_transfer.train.command import TRAIN_ARGUMENTS

        (search,) = parse_command_args("search", ["--config", str(config)])
        assert search.search_space and "search_space" not in search.trial_config
        model, data, adapter, training = CommandParser(TRAIN_ARGUMENTS, "train").parse_config(search.trial_config)
    elif "teacher_model_name_or_path" in raw:
        model, data, distill, adapter, training = parse_command_args("distill", ["--config", str(config)])
        assert distill.teacher_model_name_or_path and (model.model_name_or_path or distill.student_layers)
        if "unlabeled_file" in raw:
            assert distill.unlabeled_file == [str(unlabeled)]
    else:
        # A recipe may take its data from flags (few_shot.yaml: --train_file FILE).
        flags = [] if "train_file" in raw or "dataset_name" in raw else ["--train_file", "yours.csv"]
        model, data, adapter, training = parse_command_args("train", ["--config", str(config), *flags])
        assert model.model_name_or_path
    assert training.output_dir and (data.train_file or data.dataset_name)
    assert adapter.peft_method == raw.get("peft_method", "none")


# --- bad input: one line, exit 2, nothing written ----------------------------------------------------------------


def _bad_cases(tmp_path, tiny_bert_dir, train, dev):
    empty = write_csv(tmp_path / "empty.csv", ["  ", ""], ["pos", "neg"])
    unseen = write_csv(tmp_path / "unseen.csv", ["some text"], ["neutral"])
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("learning_rate: [1, 2\n")
    base = dict(model_dir=tiny_bert_dir, train=train, dev=dev)
    return {
        "missing file": (dict(base, train=tmp_path / "nope.csv"), [], "nope.csv"),
        "unknown column": (base, ["--text_column_name", "txt"], "text"),
        "empty after cleaning": (dict(base, train=empty), [], "empty"),
        "unseen validation label": (dict(base, dev=unseen), [], "neutral"),
        "freeze_layers beyond depth": (base, ["--freeze_layers", "5"], "freeze_layers"),
        "llrd out of range": (base, ["--layerwise_lr_decay", "1.5"], "layerwise_lr_decay"),
        "unknown field": (base, ["--freeze_layer", "2"], "freeze_layers"),
        "model not found": (dict(base, model_dir=tmp_path / "no-such-model"), [], "no-such-model"),
        "invalid yaml": (base, ["--config", str(bad_yaml)], "yaml"),
        "wrong type": (base, ["--num_train_epochs", "many"], "num_train_epochs"),
        "head only with freeze_layers": (
            base,
            ["--train_head_only", "true", "--freeze_layers", "1"],
            "train_head_only",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "unknown column",
        "empty after cleaning",
        "unseen validation label",
        "freeze_layers beyond depth",
        "llrd out of range",
        "unknown field",
        "model not found",
        "invalid yaml",
        "wrong type",
        "head only with freeze_layers",
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, tiny_bert_dir, tiny_data, capsys):
    paths, extra, needle = _bad_cases(tmp_path, tiny_bert_dir, *tiny_data)[case]
    out = tmp_path / "out"
    code = main(train_argv(paths["model_dir"], paths["train"], paths["dev"], out, *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert needle.lower() in err.lower(), err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra,needle",
    [(["--learning_rate", "-1"], "learning_rate must be > 0"),
     (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be >= 1"),
     (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps must be >= 1"),
     (["--num_train_epochs", "-1"], "num_train_epochs must be > 0"),
     (["--output_dir"], "--output_dir needs a value")],
    ids=["negative lr", "batch 0", "accumulation 0", "negative epochs", "flag without value"],
)  # fmt: skip
def test_training_values_out_of_range_are_one_line_before_anything_runs(extra, needle, tmp_path, tiny_data, capsys):
    """Trainer stopped on these with a traceback after output_dir existed; negative epochs trained nothing, saved."""
    out = tmp_path / "out"
    assert main([*train_argv(tmp_path / "model", *tiny_data, out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_an_output_dir_that_is_or_lies_under_a_file_is_one_line(tmp_path, tiny_data, capsys):
    # Trainer's makedirs raised FileExistsError (a traceback) after the data was read.
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    for out in (blocker, blocker / "run"):
        assert main(train_argv(tmp_path / "model", *tiny_data, out)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "a file, not a folder" in err, err
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize(
    "text, needle",
    [("learning_rate:\n", "learning_rate expects float, got null"),
     ("seed: null\n", "seed expects int, got null"),
     ("max_steps: ~\n", "max_steps expects int, got null"),
     ("config: other.yaml\n", "config files do not nest"),
     (None, "is a folder"),
     ("learning_rate: 1e-4\nseed: 3\nlearning_rate: 2e-4\n", "'learning_rate' is set twice (lines 1 and 3)"),
     ("logging_strategy: epochs\n", "logging_strategy expects one of no, steps, epoch; got 'epochs'."),
     ("lr_scheduler_type: true\n", "lr_scheduler_type expects one of linear, cosine,"),
     ("accelerator_config: missing.json\n", "No such file or directory: 'missing.json'."),
     ("? [a, b]\n: 1\n", "a key must be a field name, not a list"),
     ("label_mapping: {[1]: good}\n", "a key must be a field name, not a list")],
    ids=["empty lr", "null seed", "tilde steps", "nested config", "config is a folder", "key set twice", "enum typo",
         "enum bool", "accelerator_config missing", "list key", "nested list key"],
)  # fmt: skip
def test_config_file_mistakes_are_one_line_naming_the_field(text, needle, tmp_path, tiny_data, capsys):
    """A key left empty reached Trainer as None: a TypeError traceback ('>' between NoneType and int) or a line that
    named no field. A nested `config:` was silently ignored, a folder was said not to exist. A choice of
    TrainingArguments out of its values was "epochs is not a valid IntervalStrategy" (which of eval/save/logging?),
    a missing `accelerator_config` file and a list as a key were tracebacks."""
    config = tmp_path / "conf"
    config.mkdir() if text is None else config.write_text(text)
    out = tmp_path / "out"
    assert main([*train_argv(tmp_path / "model", *tiny_data, out), "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "tail, needle",
    [(["--config"], "--config needs a value"), (["--config", " "], "--config is empty")],
    ids=["no value", "blank"],
)  # fmt: skip
def test_a_config_flag_without_a_file_is_one_line(tail, needle, tmp_path, tiny_data, capsys):
    """`--config` last printed argparse's usage under the wrong program name; a blank one was ignored, so the
    error spoke of a missing field instead."""
    out = tmp_path / "out"
    assert main([*train_argv(tmp_path / "model", *tiny_data, out), *tail]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hf-transfer train: error:") and needle in err, err
    assert not out.exists()


def test_a_field_that_takes_text_or_a_list_reads_numbers_as_text_and_refuses_the_wrong_shape(tmp_path):
    """`teacher_model_name_or_path: 2024` (a folder so named) and `unlabeled_file: 5` were "'int' object is not
    iterable", `true` the same with 'bool', and a mapping was taken for the list of its keys; `accelerator_config: 5`
    had TrainingArguments open file descriptor 5, and `report_to: false` was "sequence item 0: expected str instance,
    bool found"."""
    from hf_transfer.errors import ConfigError

    (distill, *_) = parse_command_args("distill", ["--teacher_model_name_or_path", "2024"])[2:]
    assert distill.teacher_model_name_or_path == ["2024"]
    refused = [
        (["--teacher_model_name_or_path", "true"], "teacher_model_name_or_path expects a list or str, got True."),
        (["--teacher_model_name_or_path", "{a: 1}"], "teacher_model_name_or_path is required"),
        (["--teacher_model_name_or_path", "t", "--unlabeled_file", "{a.csv: 1}"], "unlabeled_file must be a file"),
        (["--teacher_model_name_or_path", "t", "--unlabeled_file", "5"], "unlabeled_file '5' has an unsupported"),
        # A list item of the wrong type said argparse's "invalid float value: '[1,x]'", naming no field.
        (
            ["--teacher_model_name_or_path", "[a,b]", "--teacher_weights", "[1,x]"],
            "teacher_weights expects a list of float; 'x' in [1, 'x'] is not one.",
        ),  # fmt: skip
    ]
    for argv, needle in refused:
        with pytest.raises(ConfigError) as err:
            parse_command_args("distill", argv)
        assert needle in str(err.value), (argv, str(err.value))
    with pytest.raises(ConfigError, match="report_to expects str or a list, got False."):
        parse_command_args("train", ["--model_name_or_path", "m", "--report_to", "false"])
    with pytest.raises(ConfigError, match="No such file or directory: '5'"):
        parse_command_args("train", ["--model_name_or_path", "m", "--accelerator_config", "5"])
    # Choices and booleans that are right stay as they were.
    _, _, _, training = parse_command_args(
        "train", ["--model_name_or_path", "m", "--save_strategy", "no", "--include_num_input_tokens_seen", "true"]
    )
    assert training.save_strategy == "no" and training.include_num_input_tokens_seen == "all"
    merge, _ = parse_command_args(
        "merge",
        [
            "--pretrained",
            "p",
            "--finetuned",
            "f",
            "--output_dir",
            "o",
            "--alphas",
            "0.5",
            "--validation_file",
            "v.csv",
        ],
    )
    assert merge.alphas == [0.5]


def test_null_stays_a_value_of_optional_fields(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: m\nhub_model_id:\nfreeze_layers: null\nmax_train_samples: ~\n")
    _, data, _, training = parse_command_args("train", ["--config", str(config), "--output_dir", str(tmp_path / "o")])
    assert training.hub_model_id is None and training.freeze_layers is None and data.max_train_samples is None


def test_null_of_a_list_field_is_none_not_a_list_of_it(tmp_path):
    """`freeze_patterns: null` failed with "first argument must be string or compiled pattern", and
    `--class_names null` named a class "None": a list field got [None]."""
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: m\nfreeze_patterns: null\nclass_names:\n")
    _, data, adapter, training = parse_command_args(
        "train", ["--config", str(config), "--output_dir", str(tmp_path / "o"), "--target_modules", "null"]
    )
    assert training.freeze_patterns is None and data.class_names is None and adapter.target_modules is None


def test_a_single_class_is_refused(tmp_path, tiny_bert_dir, capsys):
    """One class made a one-output model trained on a loss that is always 0."""
    train = write_csv(tmp_path / "train.csv", [f"good thing {i}" for i in range(12)], ["pos"] * 12)
    out = tmp_path / "out"
    assert main(train_argv(tiny_bert_dir, train, train, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "single class ['pos']" in err, err
    assert not out.exists()


def test_bad_input_through_python_m(tmp_path, tiny_data):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "hf_transfer", *train_argv(tmp_path / "missing-model", *tiny_data, out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.skipif(not memory.can_release_freed_memory(), reason="release_freed_memory needs glibc")
def test_release_freed_memory_is_recorded(tmp_path, tiny_bert_dir, tiny_data):
    # In a child process: the allocator setting lasts for the whole process.
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--release_freed_memory", "true")
    proc = subprocess.run([sys.executable, "-m", "hf_transfer", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pin_memory" not in proc.stderr  # nothing to pin on a CPU-only machine, so no warning about it
    memory = json.loads((out / "hf_transfer_run.json").read_text())["memory"]
    assert "fixed mmap threshold 1024 KiB (release_freed_memory)" in memory["allocator"]
    assert memory["peak_rss_kib"] >= memory["rss_after_model_load_kib"] > 0


@pytest.mark.skipif(not memory.can_release_freed_memory(), reason="trim_memory_each_step needs glibc")
def test_trim_memory_each_step_runs_after_every_step_and_is_recorded(tmp_path, tiny_bert_dir, tiny_data, monkeypatch):
    calls = []
    monkeypatch.setattr("hf_transfer.train.callbacks.trim_freed_memory", lambda: calls.append(1))
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--trim_memory_each_step", "true", "--max_steps", "3")
    assert main([*argv, "--gradient_accumulation_steps", "2"]) == 0
    # 40 rows in micro-batches of 8: steps of micro-batches (1, 2), (3, 4) and (5), the epoch's end; one trim after
    # each micro-batch, the step's last one included
    assert len(calls) == 5


# --- whole runs ------------------------------------------------------------------------------------------------------


def test_train_then_evaluate_tiny_model(tmp_path, tiny_bert_dir, tiny_data, capsys):
    from transformers import AutoModelForSequenceClassification, pipeline

    train, dev = tiny_data
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, train, dev, out, "--freeze_layers", "1", "--freeze_embeddings")
    assert main([*argv, "--test_file", str(dev)]) == 0
    # The labelled test split's metrics are in the printed results, not only in test_results.json.
    printed = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.startswith("  "))
    test_results = json.loads((out / "test_results.json").read_text())
    assert float(printed["test_accuracy"]) == pytest.approx(test_results["test_accuracy"], abs=5e-5)
    # The summary names the pictures it wrote (it named none; the user had to know to look).
    pictures = ("training_curves.png", "confusion_matrix.png", "test_confusion_matrix.png")
    assert printed["pictures"] == ", ".join(str(out / name) for name in pictures)
    card = (out / "README.md").read_text()  # the card shows every picture (it showed the curves alone)
    assert all(f"]({name})" in card for name in pictures) and "](label_f1.png)" not in card
    # The labelled test set has its confusion matrix too (it had scores alone), drawn and in the run record.
    record = json.loads((out / "hf_transfer_run.json").read_text())
    matrix = json.loads((out / "test_confusion_matrix.json").read_text())
    assert matrix["matrix"] == record["test_report"]["confusion_matrix"] and sum(map(sum, matrix["matrix"])) == 8
    assert record["test_report"]["accuracy"] == pytest.approx(test_results["test_accuracy"])
    assert_picture(out / "test_confusion_matrix.png")
    for name in RUN_OUTPUTS:
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    resolved = yaml.safe_load((out / "hf_transfer_config.yaml").read_text())
    assert resolved["freeze_layers"] == 1 and not any("token" in k for k in resolved)
    # The resolved config is itself a config: `train --config <run>/hf_transfer_config.yaml` reads it back.
    again = parse_command_args("train", ["--config", str(out / "hf_transfer_config.yaml")])
    assert again[-1].freeze_layers == 1 and again[-1].output_dir == str(out)
    assert json.loads((out / "all_results.json").read_text())["eval_samples"] == 8
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["memory"]["peak_rss_kib"] >= record["memory"]["rss_after_model_load_kib"] > 0
    assert set(record["memory"]["sources"]) == {"rss_kib", "peak_rss_kib"}
    assert record["memory"]["allocator"] == "default"
    assert "adapter" not in record
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 2
    prediction = pipeline("text-classification", model=str(out))("great thing")[0]
    assert prediction["label"] in {"neg", "pos"}

    metrics_file = tmp_path / "metrics.json"
    assert (
        main(
            [
                "evaluate",
                "--model_name_or_path",
                str(out),
                "--validation_file",
                str(dev),
                "--output_file",
                str(metrics_file),
            ]
        )
        == 0
    )
    metrics = json.loads(metrics_file.read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["samples"] == 8
    printed = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.startswith("  "))
    assert printed["pictures"] == str(metrics_file.with_suffix(".confusion_matrix.png"))
    assert sum(map(sum, metrics["confusion_matrix"])) == 8
    assert metrics_file.with_suffix(".confusion_matrix.png").is_file()


def test_a_max_seq_length_above_the_position_table_is_lowered_to_it(tmp_path, tiny_bert_dir, capsys, caplog):
    """The tiny BERT embeds 128 positions; its tokenizer allows 512. `max_seq_length: 256` (as blitzer_books.yaml
    has it) failed at the first step with a traceback ("size of tensor a (256) must match ... (128)")."""
    texts = [" ".join(["good" if i % 2 else "bad"] * 300) for i in range(16)]
    labels = ["pos" if i % 2 else "neg" for i in range(16)]
    train = write_csv(tmp_path / "train.csv", texts, labels)
    dev = write_csv(tmp_path / "dev.csv", texts[:4], labels[:4])
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, train, dev, out, "--max_seq_length", "256", "--max_steps", "1")
    with caplog.at_level("WARNING"):
        assert main([*argv, "--few_shot", "false"]) == 0
    assert yaml.safe_load((out / "hf_transfer_config.yaml").read_text())["max_seq_length"] == 128
    assert json.loads((out / "hf_transfer_run.json").read_text())["data"]["train"]["rows_truncated"] == 16
    # Said, not logged at info where nobody saw it.
    assert "16 of 16 train rows are longer than max_seq_length 128 tokens and were cut to it." in caplog.text


def test_text_the_tokenizer_cannot_read_is_said_and_recorded(tmp_path, tiny_bert_dir, caplog):
    """MiniLM's vocabulary has few Chinese characters: a Chinese training set was read as [UNK] after [UNK], and the
    run trained, scored and saved as usual. The share of unknown tokens is now recorded per split and warned of."""
    texts = [["这件衣服质量很好我非常喜欢", "质量太差了不推荐购买"][i % 2] + str(i) for i in range(16)]
    labels = ["pos" if i % 2 == 0 else "neg" for i in range(16)]
    train = write_csv(tmp_path / "train.csv", texts, labels)
    dev = write_csv(tmp_path / "dev.csv", ["a good dress", "a bad dress"] * 2, ["pos", "neg"] * 2)
    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        assert main([*train_argv(tiny_bert_dir, train, dev, out, "--max_steps", "1"), "--few_shot", "false"]) == 0
    data = json.loads((out / "hf_transfer_run.json").read_text())["data"]
    assert data["train"]["unknown_token_percent"] > 50 and data["validation"]["unknown_token_percent"] == 0
    warning = f"{data['train']['unknown_token_percent']:.0f}% of the training text's tokens are [UNK], the tokenizer's"
    assert warning in caplog.text


def test_the_lowered_max_seq_length_names_what_limits_it(tiny_bert_dir, caplog):
    """A tokenizer whose model_max_length is below the position table lowered max_seq_length with the warning "more
    than the model can embed", blaming the model; the warning now names the tokenizer's limit when it is the one."""
    from transformers import AutoConfig, AutoTokenizer

    from hf_transfer.core.arguments import DataArguments
    from hf_transfer.train.preflight import fit_max_seq_length

    config = AutoConfig.from_pretrained(tiny_bert_dir)  # 128 positions
    for model_max_length, expected in (
        (512, "the model can embed; using 128"),
        (48, "the tokenizer's model_max_length allows; using 48"),
    ):
        tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir, model_max_length=model_max_length)
        args = DataArguments(train_file="t.csv", max_seq_length=256)
        caplog.clear()
        with caplog.at_level("WARNING", logger="hf_transfer"):
            fit_max_seq_length(args, [(config, tokenizer)])
        assert args.max_seq_length == int(expected.rsplit(" ", 1)[1])
        assert [r.getMessage() for r in caplog.records] == [f"max_seq_length 256 is more than {expected}."]


def test_a_diverged_run_is_one_line_and_saves_no_model(tmp_path, tiny_bert_dir, tiny_data, capsys):
    """Stock Trainer saves a model whose weights went NaN and the command ended with status 0, so a diverged run
    looked finished (its accuracy was argmax over NaN logits). It is refused once training ends: status 1, one line
    naming the learning rate, no final model, record or card."""
    out = tmp_path / "run"
    argv = train_argv(
        tiny_bert_dir, *tiny_data, out, "--learning_rate", "1e12", "--max_steps", "3", "--logging_steps", "1"
    )
    assert main([*argv, "--few_shot", "false"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hf-transfer train: error: training diverged:")
    assert "after step 3" in last and "lower learning_rate (now 1e+12)" in last
    for name in ("model.safetensors", "hf_transfer_run.json", "README.md", "eval_results.json"):
        assert not (out / name).exists()
    # The losses logged before it are drawn (a diverged run had left no trace of where the loss went).
    assert f"(the logged losses: {out / 'training_curves.png'})" in last
    assert "the gradient norm was first NaN or inf at logged step 2)" in last  # logged loss 0 there: not drawn
    assert_picture(out / "training_curves.png")


def test_json_outputs_are_strict_json():
    """A NaN or infinite metric (a model scored by evaluate, a grad norm) was written as `NaN`, which jq, JavaScript
    and Go refuse: the JSON files the commands write hold null there."""
    from hf_transfer.core.folders import json_text

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    value = {"loss": float("nan"), "norms": [1.5, float("inf")], "nested": {"x": -float("inf")}, "ok": 1}
    assert json.loads(json_text(value), parse_constant=refuse) == {
        "loss": None, "norms": [1.5, None], "nested": {"x": None}, "ok": 1
    }  # fmt: skip


def test_multi_label_run(tmp_path, tiny_bert_dir, capsys):
    rows = [
        {"text": f"item {i} is {'red' if i % 2 else 'blue'}", "labels": [["a"], ["b"], ["a", "b"], []][i % 4]}
        for i in range(40)
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "ml"
    argv = train_argv(tiny_bert_dir, train, train, out, "--problem_type", "multi_label_classification")
    assert main([*argv, "--test_file", str(train)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    results = json.loads((out / "eval_results.json").read_text())
    assert {"eval_f1_micro", "eval_f1_macro", "eval_subset_accuracy"} <= set(results)
    # A multi-label run had no picture of its scores (no confusion matrix): F1 per label is drawn.
    assert_picture(out / "label_f1.png")
    assert not (out / "confusion_matrix.png").exists()
    assert_picture(out / "test_label_f1.png")  # and the labelled test set's
    assert not (out / "test_confusion_matrix.png").exists()
    card = (out / "README.md").read_text()
    assert "](label_f1.png)" in card and "### F1 per label (test)" in card and "](test_label_f1.png)" in card
    metrics = tmp_path / "metrics.json"
    argv = ["evaluate", "--model_name_or_path", str(out), "--validation_file", str(train), "--output_file"]
    assert main([*argv, str(metrics), "--extra_eval", f"again={train}"]) == 0
    for name in ("metrics.label_f1.png", "metrics.again.label_f1.png"):
        assert_picture(tmp_path / name)
    printed = capsys.readouterr().out
    assert f"pictures                     {tmp_path / 'metrics.label_f1.png'}, " in printed


def test_quickstart_on_real_minilm(tmp_path, minilm_path, monkeypatch, capsys):
    """The README's main job, end to end on the real model: it learns the shipped sample well above chance."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_TRANSFER_MODEL", minilm_path)
    out = tmp_path / "quickstart"
    code = main(
        ["train", "--config", "scripts/quickstart/config.yaml", "--output_dir", str(out), "--disable_tqdm", "true"]
    )
    assert code == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_accuracy"] > 0.6  # chance is 1/3
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "eval_accuracy" in capsys.readouterr().out


def test_ctrl_c_is_one_line_with_what_a_rerun_can_use(tmp_path, tiny_data, monkeypatch, capsys):
    # A KeyboardInterrupt printed a traceback from deep inside torch or the data loader.
    from hf_transfer import cli

    types, _ = cli.COMMANDS["train"]()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "train", lambda: (types, interrupted))
    assert main(train_argv(tmp_path / "model", *tiny_data, tmp_path / "out")) == 130
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "hf-transfer train: interrupted. Checkpoints already saved in output_dir, if any, resume with "
        "--resume_from_checkpoint true."
    ]


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "merge", "card", "push"])
def test_one_process_commands_run_in_the_main_process_only_when_launched_as_several(
    command, tmp_path, monkeypatch, capsys
):
    """Under `accelerate launch` with 2 processes each did the whole work and wrote the same outputs, racing (a second
    `merge` into the folder the first had just filled failed with 'already exists and is not empty')."""
    out = tmp_path / "out"
    argv = {
        "evaluate": ["--model_name_or_path", str(tmp_path / "none"), "--validation_file", str(tmp_path / "x.csv")],
        "predict": [
            "--model_name_or_path",
            str(tmp_path / "none"),
            "--input_file",
            str(tmp_path / "x.csv"),
            "--output_file",
            str(out / "p.csv"),
        ],  # fmt: skip
        "export": [str(tmp_path / "none"), "--format", "onnx", "--output_dir", str(out)],
        "merge": [
            "--pretrained",
            str(tmp_path / "a"),
            "--finetuned",
            str(tmp_path / "b"),
            "--alpha",
            "0.5",
            "--output_dir",
            str(out),
        ],  # fmt: skip
        "card": [str(tmp_path / "none")],
        "push": [str(tmp_path / "none"), "--hub_model_id", "me/x"],
    }[command]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main([command, *argv]) == 0  # stands by: nothing read, nothing written, nothing printed
    captured = capsys.readouterr()
    assert captured.out == captured.err == "" and not out.exists()
    monkeypatch.setenv("RANK", "0")
    assert main([command, *argv]) == 2  # the main process does the work (here: finds the bad input)
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[0]
        == f"hf-transfer {command}: warning: 2 processes were launched; {command} runs in the main process only."
    )
    assert err[-1].startswith(f"hf-transfer {command}: error:") and not out.exists()


def test_disable_tqdm_silences_every_bar_of_a_run(tmp_path, tiny_bert_dir, tiny_data, capsys, monkeypatch):
    """`disable_tqdm: true` had silenced Trainer's bars alone: datasets' "Labels (train)" and "Tokenizing" and
    transformers' "Loading weights" and "Writing model shards" bars still filled stderr (and a log file)."""
    import datasets

    # conftest turns datasets' bars off for the whole suite (HF_DATASETS_DISABLE_PROGRESS_BARS=1): on for this test
    monkeypatch.setattr(sys.modules["datasets.utils.tqdm"], "HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    monkeypatch.setattr(sys.modules["datasets.utils.tqdm"], "_hf_datasets_progress_bars_disabled", False)
    assert main(train_argv(tiny_bert_dir, *tiny_data, tmp_path / "run")) == 0
    err = capsys.readouterr().err
    for bar in ("Labels (", "Tokenizing", "Loading weights", "Writing model shards", "it/s]", "examples/s]"):
        assert bar not in err, err[-2000:]
    assert datasets.is_progress_bar_enabled()  # the library setting is handed back after the command


def test_another_process_of_a_launch_outlives_the_main_ones_refusal(monkeypatch, capsys):
    """Under `accelerate launch`, process 1 (which prints nothing) refused first and exited; the launcher then stopped
    process 0 before it printed its line, and the user saw no reason at all (CI 67). It waits before exiting."""
    from hf_transfer import cli

    slept = []
    monkeypatch.setattr(cli.time, "sleep", slept.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["trian"]) == 2 and slept == [cli.REFUSAL_GRACE_SECONDS] and not capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    assert main(["trian"]) == 2 and slept == [cli.REFUSAL_GRACE_SECONDS]  # the main process prints and exits
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_a_refusal_of_another_process_alone_is_printed_after_the_grace_period(monkeypatch, capsys):
    """A data file missing on one node: process 1 refused, printed nothing (the main process prints refusals), and the
    user saw only gloo's "Connection closed by peer" from process 0. Still running after the grace period, the
    refusal was its own, and it prints it, with its rank. Ctrl-C, --help and --version print once, not per process."""
    from hf_transfer import cli
    from hf_transfer.errors import ConfigError

    def refused(*args):
        raise ConfigError("train_file '/data/tr1.tsv' does not exist.")

    monkeypatch.setattr(cli.time, "sleep", lambda seconds: None)
    monkeypatch.setitem(cli.COMMANDS, "train", lambda: ((), refused))
    monkeypatch.setattr(cli, "command_parser", lambda *a: type("P", (), {"parse": lambda self, rest: ()})())
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["[rank 1] hf-transfer train: error: train_file '/data/tr1.tsv' does not exist."]

    def peer_gone(*args):  # what gloo raises in a collective once the other process has exited
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [::1]:80")

    monkeypatch.setitem(cli.COMMANDS, "train", lambda: ((), peer_gone))
    for rank, prefix in (("0", ""), ("1", "[rank 1] ")):
        monkeypatch.setenv("RANK", rank)
        assert main(["train"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"{prefix}hf-transfer train: stopped: another process of the launch exited first."]

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "train", lambda: ((), interrupted))
    for rank, lines in (("1", 0), ("0", 1)):
        monkeypatch.setenv("RANK", rank)
        assert main(["train"]) == 130 and main(["--version"]) == 0 and main(["--help"]) == 0
        captured = capsys.readouterr()
        assert len(captured.err.strip().splitlines()) == lines and bool(captured.out) == bool(lines), rank


def test_a_choice_field_reads_true_as_a_config_file_does():
    """`few_shot: True` worked in a config file (its text is passed on as `true`) while `--few_shot True` was refused:
    "few_shot expects one of auto, true, false, got True"; a flag's value is read as YAML reads it."""
    argv = ["--model_name_or_path", "m", "--train_file", "x.csv", "--output_dir", "out"]
    for given, read in (("True", "true"), ("FALSE", "false"), ("auto", "auto")):
        training = parse_command_args("train", [*argv, "--few_shot", given])[-1]
        assert training.few_shot == read


def test_a_choice_is_read_in_any_case_and_a_typo_names_the_closest():
    """`--format ONNX`, `--quantize INT8` and `--lr_scheduler_type COSINE` were refused ("expects one of onnx, got
    'ONNX'"); a choice in another case is that choice. A misspelt one (`cosin`) names the choice meant."""
    argv = ["--model_name_or_path", "m", "--train_file", "x.csv", "--output_dir", "out"]
    training = parse_command_args("train", [*argv, "--lr_scheduler_type", "COSINE", "--optim", "AdamW_Torch"])[-1]
    assert (training.lr_scheduler_type, training.optim) == ("cosine", "adamw_torch")
    export = parse_command_args("export", ["model", "--format", "ONNX", "--quantize", "Int8"])[0]
    assert (export.format, export.quantize) == ("onnx", "int8")
    with pytest.raises(ConfigError, match="lr_scheduler_type expects one of linear, cosine,") as refused:
        parse_command_args("train", [*argv, "--lr_scheduler_type", "cosin"])
    assert str(refused.value).endswith("got 'cosin'. Did you mean 'cosine'?")


def test_the_long_inference_commands_take_log_level_and_disable_tqdm():
    """`evaluate --log_level error` and `predict --disable_tqdm true` were refused ("'log_level' is a field of train
    and distill"): the only way to quieten them was TQDM_DISABLE. Their entry points never see the fields."""
    from hf_transfer.core.console import ConsoleArguments, chosen_log_level

    quiet, data = ["--log_level", "ERROR", "--disable_tqdm", "true"], "scripts/quickstart/validation.csv"
    for command, argv in (("evaluate", ["--model_name_or_path", "m", "--validation_file", data]),
                          ("predict", ["--model_name_or_path", "m", "--input_file", data, "--output_file", "p.csv"]),
                          ("export", ["m", "--format", "onnx"]),
                          ("merge", ["--pretrained", "p", "--finetuned", "scripts/quickstart", "--alpha", "0.5",
                                     "--output_dir", "o"])):  # fmt: skip
        parsed = parse_command_args(command, [*argv, *quiet])
        console = next(a for a in parsed if isinstance(a, ConsoleArguments))
        assert console.disable_tqdm is True and chosen_log_level(parsed) == "error", command


def test_per_label_scores_of_many_labels_are_one_line_of_the_results(capsys):
    """120 labels printed 360 lines of per-label scores per split; past 10 labels they are one line naming the
    lowest F1s (the results files keep every score). A few labels are listed as before."""
    from hf_transfer.core.console import print_results

    many = {f"label{i:02d}": i / 100 for i in range(12)}
    result = {"eval_accuracy": 0.5, "eval_f1_macro": 0.4, "eval_precision_macro": 0.45}
    for name, value in many.items():
        result |= {f"eval_precision_{name}": value, f"eval_recall_{name}": value, f"eval_f1_{name}": value}
    result |= {"test_f1_a": 0.25, "test_f1_b": 0.75, "test_precision_a": 0.5}
    print_results("evaluate", dict(result))  # no file keeps the scores (evaluate without --output_file): all listed
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + len(result)
    print_results("train", {**result, "output_dir": "/runs/x"})
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    keys = [line.split()[0] for line in lines]
    assert keys == ["eval_accuracy", "eval_f1_macro", "eval_precision_macro", "eval_per_label_scores", "test_f1_a",
                    "test_f1_b", "test_precision_a", "output_dir"]  # fmt: skip
    assert lines[3].split(None, 1)[1] == (  # a label with F1 0 (no rows, or none right) is named apart
        "12 labels, all in /runs/x/all_results.json; lowest F1: label01 0.0100, label02 0.0200, label03 0.0300; "
        "F1 0 (none right, or no rows): 1, e.g. label00"
    )


def test_help_is_laid_out_for_a_reader(capsys, monkeypatch):
    """`train --help` was 935 lines: a 170-line usage, then ~120 TrainingArguments fields before the freezing, quality
    and few-shot fields, with no headings; `evaluate`, `predict`, `export` and `merge` did not say which fields they
    need; log_level and ddp_backend listed their choices twice, transformers' list and the parser's."""
    monkeypatch.setenv("COLUMNS", "2000")
    assert main(["train", "--help"]) == 0
    train = capsys.readouterr().out
    assert train.startswith("usage: hf-transfer train --config CONFIG.yaml [--any_field VALUE ...]\n")
    headings = re.findall(r"^(\S.*):$", train, flags=re.MULTILINE)
    assert headings[:4] == ["options", "model", "data", "adapter (PEFT)"] and headings[4].startswith(
        "transfer learning"
    )
    assert headings[-1] == "training: transformers' TrainingArguments" and len(headings) == 6
    sections = dict(zip(headings, re.split(r"^\S.*:$", train, flags=re.MULTILINE)[1:], strict=True))
    assert "--freeze_layers" in sections[headings[4]] and "--class_weights" in sections[headings[4]]
    assert "--learning_rate" in sections[headings[-1]] and "--freeze_layers" not in sections[headings[-1]]
    log_level = next(entry for entry in re.split(r"\n  (?=-)", train) if entry.startswith("--log_level "))
    assert log_level.count("debug") == 1 and "detail" in log_level, log_level
    for command, needed in (
        ("evaluate", ["--model_name_or_path", "--validation_file"]),
        ("predict", ["--model_name_or_path", "--input_file", "--output_file"]),
        ("export", ["--model_dir", "--format"]),
        ("merge", ["--pretrained", "--finetuned", "--output_dir"]),
        ("push", ["--model_dir", "--hub_model_id"]),
    ):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        required = out.split("\nrequired:\n")[1].split("\n\n")[0]
        assert re.findall(r"^  (--\w+)", required, flags=re.MULTILINE) == needed, command
        assert out.index("\nrequired:\n") < out.index("\noptions:\n"), command
    assert main(["evaluate", "--help"]) == 0
    assert capsys.readouterr().out.startswith(
        "usage: hf-transfer evaluate --model_name_or_path DIR_OR_ID --validation_file FILE [--extra_eval NAME=FILE"
    )


_IN_ONE_PROCESS = """
import json, os, sys
from pathlib import Path
from hf_transfer.cli import main
from hf_transfer.core import scratch
assert main(json.loads(sys.argv[1])) == 0
from accelerate import Accelerator
left = [p.name for p in scratch._ROOT[0].iterdir()] if scratch._ROOT else []
import torch
print(json.dumps({"tokenizers": os.environ.get("TOKENIZERS_PARALLELISM"), "scratch": left,
                  "precision": Accelerator(mixed_precision="no").mixed_precision,
                  "deterministic": torch.are_deterministic_algorithms_enabled(),
                  "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}))
"""


def test_a_command_leaves_a_process_that_runs_more_as_it_found_it(tmp_path, tiny_bert_dir, tiny_data):
    """A notebook calling `main` again and again: TOKENIZERS_PARALLELISM stayed false (the user's own batch encoding
    then ran on one thread), a bf16 run left accelerate's state in bf16 (`Accelerator(mixed_precision="no")` then
    refused: "AcceleratorState has already been initialized and cannot be changed"), and every run's prepared data
    stayed on disk until the process exited. `full_determinism` left torch deterministic (slower, and refusing ops
    with no deterministic kernel) for everything after."""
    argv = train_argv(
        tiny_bert_dir, *tiny_data, tmp_path / "out", "--bf16", "true", "--max_steps", "1", "--full_determinism", "true"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TOKENIZERS_PARALLELISM", "CUBLAS_WORKSPACE_CONFIG")}
    done = subprocess.run([sys.executable, "-c", _IN_ONE_PROCESS, json.dumps(argv)], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    left = json.loads(done.stdout.strip().splitlines()[-1])
    assert left == {"tokenizers": None, "scratch": [], "precision": "no", "deterministic": False, "cublas": None}


_NON_ASCII_RESULTS = """
import sys
from hf_transfer import cli
cli._run = lambda command, rest: {"f1_négatif": 0.5, "f1_中评": 0.25, "label": "👍"}
sys.argv = ["hf-transfer", "evaluate"]
sys.exit(cli.main())
"""


def test_labels_the_console_cannot_encode_are_printed_as_escapes():
    """A Windows console (cp1252, cp936) or PYTHONIOENCODING=ascii: printing the results of a run whose labels the
    encoding lacks raised UnicodeEncodeError after every file was written, exit status 1."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-c", _NON_ASCII_RESULTS], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "f1_n\\xe9gatif" in done.stdout and "\\U0001f44d" in done.stdout
    utf8 = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    shown = subprocess.run([sys.executable, "-c", _NON_ASCII_RESULTS], capture_output=True, encoding="utf-8", env=utf8)
    lines = [line for line in shown.stdout.splitlines() if line.startswith("  f1_")]
    assert lines == ["  f1_négatif                   0.5000", "  f1_中评                      0.2500"]  # columns shown


def test_an_inference_command_says_it_does_not_use_the_launcher_s_precision(monkeypatch, capsys, tmp_path):
    """`accelerate launch --mixed_precision bf16 -m hf_transfer.cli predict ...` ran in float32 without a word."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert main(["evaluate", "--model_name_or_path", str(tmp_path / "none"), "--validation_file", "x.csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (
        "hf-transfer evaluate: warning: it runs the model in float32, as saved; the launcher's mixed_precision bf16 "
        "is not used."
    )
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert main(["evaluate", "--model_name_or_path", str(tmp_path / "none"), "--validation_file", "x.csv"]) == 2
    assert "mixed_precision" not in capsys.readouterr().err
