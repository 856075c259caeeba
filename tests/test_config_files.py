"""Config files as users write them (seventeenth review): other encodings and line endings, JSON, `${VAR}` forms,
YAML 1.2 numbers, merge keys, keys that are no field, and a run's own `hf_transfer_config.yaml` fed back."""

import codecs
import os
import threading

import pytest

from hf_transfer.cli import main, parse_command_args
from hf_transfer.errors import ConfigError


def _parse(tmp_path, text, *flags, command="train", raw=None):
    config = tmp_path / "c.yaml"
    config.write_bytes(raw if raw is not None else text.encode())
    return parse_command_args(command, ["--config", str(config), *flags])


def _error(tmp_path, text, *flags, raw=None) -> str:
    with pytest.raises(ConfigError) as err:
        _parse(tmp_path, text, *flags, raw=raw)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_variable_set_but_empty_takes_the_default_as_in_the_shell(tmp_path, monkeypatch):
    """`${VAR:-default}` used the default only for an unset variable: `HF_TRANSFER_DATA_DIR=` (exported empty) made
    the shipped configs read `/sst2/train.tsv` from the root of the disk."""
    monkeypatch.setenv("EMPTY_DIR", "")
    monkeypatch.setenv("SET_DIR", "/data")
    monkeypatch.delenv("UNSET_DIR", raising=False)
    text = (
        "model_name_or_path: m\ntrain_file: ${EMPTY_DIR:-../shared/data}/t.csv\nvalidation_file: ${EMPTY_DIR}v.csv\n"
        "test_file: a/${SET_DIR}/b-${UNSET_DIR:-x}.csv\nrun_name: cost $$5 $${HOME}\n"
    )
    model, data, _, training = _parse(tmp_path, text)
    assert data.train_file == "../shared/data/t.csv" and data.validation_file == "v.csv"
    assert data.test_file == "a//data/b-x.csv"
    assert training.run_name == "cost $$5 ${HOME}"  # `$${` writes a literal `${`; another `$` stays as written


@pytest.mark.parametrize("form", ["${UNSET_DIR-x}", "${UNSET_DIR:=x}", "${UNSET_DIR:-${SET_DIR}}", "${UNSET_DIR"])
def test_a_variable_form_that_is_not_read_is_refused_not_kept_as_text(form, tmp_path, monkeypatch):
    """These stayed in the value as text, silently: a run named '${UNSET_DIR-x}', a file path that never exists."""
    monkeypatch.setenv("SET_DIR", "/data")
    monkeypatch.delenv("UNSET_DIR", raising=False)
    message = _error(tmp_path, f"model_name_or_path: m\nrun_name: 'r{form}'\n")
    assert "run_name has '${UNSET_DIR" in message and "write ${VAR} or ${VAR:-default}" in message, message


def test_json_bom_crlf_and_utf16_configs_are_read(tmp_path):
    """A JSON config, a UTF-8 file with a byte-order mark and Windows line endings, and the UTF-16 (with a BOM) that
    Windows PowerShell's `>` writes: the last was a UnicodeDecodeError traceback."""
    expected = ("m", 1e-4, [0, 1])
    texts = {
        "json": b'{"model_name_or_path": "m", "learning_rate": 1e-4, "freeze_layers": [0, 1]}',
        "bom crlf": codecs.BOM_UTF8 + b"model_name_or_path: m\r\nlearning_rate: 1.0e-4\r\nfreeze_layers: [0, 1]\r\n",
        "utf-16": "model_name_or_path: m\r\nlearning_rate: 1e-4\r\nfreeze_layers: [0, 1]\r\n".encode("utf-16"),
    }
    for name, raw in texts.items():
        model, _, _, training = _parse(tmp_path, None, raw=raw)
        assert (model.model_name_or_path, training.learning_rate, training.freeze_layers) == expected, name


def test_a_config_in_another_encoding_is_one_line(tmp_path):
    message = _error(tmp_path, None, raw="model_name_or_path: m\nrun_name: café\n".encode("latin-1"))
    assert message.endswith("is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8."), message


def test_yaml_1_2_numbers_without_a_dot_are_numbers_in_nested_values_too(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-4` as text: `class_weights: {pos: 1e1}` was refused as 'must map labels to
    positive numbers', `peft_config: {lora_dropout: 1e-1}` went to PEFT as a string, `max_steps: 1e3` was refused."""
    text = "model_name_or_path: m\nclass_weights: {pos: 1e1, neg: 1}\npeft_config: {lora_dropout: 1e-1}\n"
    text += "max_steps: 1e3\n"
    _, _, adapter, training = _parse(tmp_path, text)
    assert training.class_weights == {"pos": 10.0, "neg": 1} and isinstance(training.class_weights["pos"], float)
    assert adapter.peft_config == {"lora_dropout": 0.1} and training.max_steps == 1000
    # Version-like text and 1.1's sexagesimal floats stay text.
    _, data, _, training = _parse(tmp_path, "model_name_or_path: m\nrun_name: 1.2.3\ntext_column_name: 1:30.5\n")
    assert training.run_name == "1.2.3" and data.text_column_name == "1:30.5"
    # Quoted, it stays text, also inside a list (passed on as a flag in YAML flow style) and in a run's record.
    _, data, _, training = _parse(tmp_path, "model_name_or_path: m\nclass_names: ['1e3', '2e3']\nrun_name: '1e3'\n")
    assert data.class_names == ["1e3", "2e3"] and training.run_name == "1e3"


def test_merge_keys_are_read_and_may_be_overridden(tmp_path):
    """`<<: *defaults` was 'could not determine a constructor for the tag ...merge'."""
    text = "model_name_or_path: m\nlabel_mapping:\n  <<: {1: bad, 2: bad}\n  2: neutral\n  3: good\n"
    _, data, _, _ = _parse(tmp_path, text)
    assert data.label_mapping == {"1": "bad", "2": "neutral", "3": "good"}
    assert "'seed' is set twice" in _error(tmp_path, "model_name_or_path: m\n<<: {seed: 1}\nseed: 2\nseed: 3\n")


def test_a_field_set_twice_with_a_dash_and_an_underscore_is_refused(tmp_path):
    """`learning_rate` and `learning-rate` are one field: the last had won, silently."""
    message = _error(tmp_path, "model_name_or_path: m\nlearning_rate: 1.0e-4\nlearning-rate: 2.0e-4\n")
    assert message.endswith("sets learning_rate twice, as 'learning_rate' and 'learning-rate'."), message


@pytest.mark.parametrize(
    "text, needle",
    [("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\n", "is a setting of accelerate's own config"),
     ("training_args:\n  learning_rate: 1.0e-4\n  seed: 3\n", "move learning_rate, seed out of 'training_args'"),
     ('"seed=3": 1\n', "unknown field 'seed=3'. Did you mean 'seed'?"),
     ("training.seed: 3\n", "unknown field 'training.seed'. Did you mean 'seed'?"),
     ("${SET_DIR}: 3\n", "${VAR} is expanded in values, not in field names"),
     ("learing_rate: 1.0e-4\n", "unknown field 'learing_rate'. Did you mean 'learning_rate'?")],
    ids=["accelerate config", "nested section", "key with =", "dotted key", "variable key", "typo"],
)  # fmt: skip
def test_keys_that_are_no_field_say_what_they_look_like(text, needle, tmp_path):
    """`"seed=3": 1` had been passed on as the flag `--seed=3=1` ('seed expects int, got 3=1'); an accelerate config
    and a nested section were 'unknown field' with no word of what to do."""
    assert needle in _error(tmp_path, "model_name_or_path: m\n" + text)


def test_config_given_twice_is_one_line(tmp_path, capsys):
    """The last `--config` was read and the first dropped without a word (its model and data with it)."""
    (tmp_path / "a.yaml").write_text("model_name_or_path: m\n")
    (tmp_path / "b.yaml").write_text("seed: 3\n")
    out = tmp_path / "out"
    argv = ["train", "--config", str(tmp_path / "a.yaml"), f"--config={tmp_path / 'b.yaml'}", "--output_dir", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--config is given 2 times" in err and "not layered" in err, err
    assert not out.exists()


def test_a_config_from_a_pipe_is_read(tmp_path):
    """`--config <(envsubst < c.yaml)` names a pipe, which was said not to exist."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("model_name_or_path: m\nseed: 7\n"), daemon=True)
    writer.start()
    try:
        training = parse_command_args("train", ["--config", str(fifo)])[-1]
    finally:
        if writer.is_alive():  # the pipe was never read: open it, so that the writer is not left blocked
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=10)
    assert training.seed == 7


def test_a_runs_own_config_reruns_it_from_another_folder_without_spurious_warnings(tmp_path, monkeypatch, caplog):
    """The record kept relative paths as given, read from the working directory: from another folder, `--config
    run/hf_transfer_config.yaml` failed on 'data file data/train.csv does not exist'. And since it holds every field,
    a rerun warned 'set but ignored' of early_stopping_threshold, linear_probe_learning_rate,
    calibration_split_percentage, lora_r, lora_alpha, ...; a value that differs from its default still warns."""
    from hf_transfer.adapters.plan import check_adapter_args
    from hf_transfer.outputs.run_folder import write_resolved_config
    from hf_transfer.train.stages import warn_ignored_quality_fields

    work = tmp_path / "work dir é"
    (work / "data").mkdir(parents=True)
    (work / "data" / "train.csv").write_text("text,label\na,x\nb,y\n")
    (work / "base").mkdir()
    monkeypatch.chdir(work)
    argv = ["--model_name_or_path", "base", "--train_file", "data/train.csv", "--output_dir", "runs/r1"]
    parsed = parse_command_args("train", [*argv, "--lora_alpha", "32", "--run_name", "1e3"])
    record = work / "runs" / "r1" / "hf_transfer_config.yaml"
    record.parent.mkdir(parents=True)
    write_resolved_config(record, *parsed)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with caplog.at_level("WARNING"):
        model, data, adapter, training = parse_command_args("train", ["--config", str(record)])
        warn_ignored_quality_fields(training)
        check_adapter_args(adapter, training)
    assert model.model_name_or_path == str(work / "base") and data.train_file == str(work / "data" / "train.csv")
    assert training.output_dir == str(work / "runs" / "r1") and training.run_name == "1e3"
    assert "learning_rate" in training.given_fields  # still given: a LoRA rerun keeps the recorded rate
    ignored = [r.getMessage() for r in caplog.records if "set but ignored" in r.getMessage()]
    assert ignored == [
        "lora_alpha set but ignored: peft_method is none, so the whole model trains without an adapter; set "
        "--peft_method lora to train a LoRA adapter with it."
    ], ignored


def test_a_number_written_for_a_text_field_keeps_the_text_as_written(tmp_path):
    """Eighteenth review: `run_name: 1e3` became the run name "1000.0" (the YAML number passed on as its `str`),
    `hub_model_id: 0x10` "16", `class_names: [1e3, 010]` ["1000.0", "10"]; on the command line each kept its text.
    A field that takes numbers still reads the number, from the file and as a flag (`--max_steps 0x10` was refused)."""
    text = (
        "model_name_or_path: m\nrun_name: 1e3\nhub_model_id: 0x10\noutput_dir: '010'\ntext_column_name: 010\n"
        "label_column_name: 2024\nclass_names: [1e3, 010, neg]\nlearning_rate: 1e-4\nmax_steps: 0x10\n"
        "<<: {hub_token: 1.50}\n"
    )
    _, data, _, training = _parse(tmp_path, text)
    assert (training.run_name, training.hub_model_id, training.output_dir) == ("1e3", "0x10", "010")
    assert (data.text_column_name, data.label_column_name, training.hub_token) == ("010", "2024", "1.50")
    assert data.class_names == ["1e3", "010", "neg"]
    assert (training.learning_rate, training.max_steps) == (1e-4, 16)
    _, data, _, training = _parse(tmp_path, "model_name_or_path: m\n", "--max_steps", "0x10", "--class_names", "[1e3]")
    assert (training.max_steps, data.class_names) == (16, ["1e3"])


def test_a_label_mapping_names_its_classes_as_written(tmp_path, monkeypatch):
    """Thirty-seventh review: `label_mapping: {2: 010}` named the class "10" (the value read as a number), where
    `class_names: [010]` keeps "010". Names keep their text, in a file and as a flag; keys are values of the data,
    read as YAML 1.2 reads them (`02` is 2); `${VAR}` in a value is still expanded."""
    monkeypatch.setenv("CODE", "1e3")
    text = "model_name_or_path: m\nlabel_mapping: {1: 010, 02: 1e3, 3: '7', 4: '${CODE}', no: x}\n"
    _, data, _, _ = _parse(tmp_path, text)
    assert data.label_mapping == {"1": "010", "2": "1e3", "3": "7", "4": "1e3", "no": "x"}
    _, data, _, _ = _parse(tmp_path, "model_name_or_path: m\n", "--label_mapping", "{1: 010, 2: 0x1}")
    assert data.label_mapping == {"1": "010", "2": "0x1"}


def test_a_quoted_null_is_text_and_a_plain_null_is_none(tmp_path, monkeypatch):
    """Eighteenth review: `run_name: "null"` (quoted) became None, as the plain `null` does; `label_mapping: "null"`
    silently dropped the mapping. Quoted, it is the text null, in the file and as a flag (`--run_name '"null"'`)."""
    _, _, _, training = _parse(tmp_path, "model_name_or_path: m\nrun_name: \"null\"\nhub_model_id: '~'\n")
    assert (training.run_name, training.hub_model_id) == ("null", "~")
    _, _, _, training = _parse(tmp_path, "model_name_or_path: m\nrun_name: null\nhub_model_id: ~\n")
    assert (training.run_name, training.hub_model_id) == (None, None)
    _, _, _, training = _parse(tmp_path, "model_name_or_path: m\n", "--run_name", '"null"')
    assert training.run_name == "null"
    assert _error(tmp_path, 'model_name_or_path: m\nlabel_mapping: "null"\n') == (
        "label_mapping expects a mapping, got 'null'."
    )
    # A quoted (or `${VAR}`-expanded) number for a field that takes numbers is still read as one.
    monkeypatch.setenv("LR", "2e-5")
    monkeypatch.setenv("MAP", "{1: bad, 2: good}")
    text = "model_name_or_path: m\nlearning_rate: ${LR}\nmax_steps: '7'\nlabel_mapping: ${MAP}\n"
    _, data, _, training = _parse(tmp_path, text)
    assert (training.learning_rate, training.max_steps, data.label_mapping) == (2e-5, 7, {"1": "bad", "2": "good"})


@pytest.mark.parametrize(
    "spelling, expected",
    [("true", True), ("True", True), ("FALSE", False), ("yes", True), ("No", False), ("y", True), ("f", False),
     ("1", True), ("0", False), ("on", None), ("off", None), ("enabled", None)],
)  # fmt: skip
def test_a_true_false_field_takes_the_same_spellings_in_a_file_and_as_a_flag(spelling, expected, tmp_path):
    """Eighteenth review: `bf16: yes` was read and `bf16: on` refused as 'bf16 expects bool', which named neither
    the spellings taken nor why. A file and a flag take the same: YAML's true/false, and the yes/no, y/n, t/f, 1/0
    that HfArgumentParser reads on the command line; another is one line naming them."""
    results = []
    for flags, text in [
        ((), f"model_name_or_path: m\nlogging_first_step: {spelling}\n"),
        (("--logging_first_step", spelling), "model_name_or_path: m\n"),
    ]:
        if expected is None:
            message = _error(tmp_path, text, *flags)
            assert message == (
                f"logging_first_step expects true or false (or yes/no, y/n, t/f, 1/0, in any case), got {spelling!r}."
            ), message
        else:
            results.append(_parse(tmp_path, text, *flags)[-1].logging_first_step)
    assert results == ([expected] * 2 if expected is not None else [])


def test_a_leading_tilde_is_the_home_folder_in_every_path_field(tmp_path, monkeypatch):
    """`--output_file=~/p.csv` (the shell leaves `~` after `=`) and `model_name_or_path: ~/m` in a config were read
    as a folder named `~` under the working directory: predict wrote there, and the model was "not found", while
    train's output_dir was expanded by transformers. Every field naming a file or folder now reads `~` as home."""
    home = tmp_path / "home"
    (home / "m").mkdir(parents=True)
    (home / "in.csv").write_text("text\nhi\n")
    (home / "c.yaml").write_text("input_file: ~/in.csv\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    predict, _ = parse_command_args(
        "predict", ["--config=~/c.yaml", "--model_name_or_path=~/m", "--output_file=~/p.csv"]
    )
    assert (predict.input_file, predict.model_name_or_path) == (str(home / "in.csv"), str(home / "m"))
    assert predict.output_file == str(home / "p.csv")
    evaluate = parse_command_args("evaluate", ["--model_name_or_path", "~/m", "--validation_file", "~/in.csv",
                                               "--extra_eval", "shifted=~/in.csv"])[0]  # fmt: skip
    assert evaluate.extra_eval == {"shifted": str(home / "in.csv")} and evaluate.validation_file == str(
        home / "in.csv"
    )
    assert parse_command_args("card", ["~/m"])[0].model_dir == str(home / "m")
    # Not a path: a column named with a tilde stays as written.
    argv = ["--model_name_or_path=~/m", "--input_file=~/in.csv", "--output_file=p.csv", "--text_column_name", "~/col"]
    assert parse_command_args("predict", argv)[0].text_column_name == "~/col"


def test_a_written_config_reads_the_same_in_pyyaml_and_keeps_paths_as_written(tmp_path):
    """hf_transfer_config.yaml wrote `save_strategy: no`, which PyYAML's own safe_load reads as False, and a path
    such as `/data/中文 é/...` as `"/data/\\u4E2D\\u6587 \\xE9/...` split over two lines with a continuation."""
    import yaml

    from hf_transfer.core.yaml_config import dump_yaml, load_config_file

    path = "/data/中文 é/" + "long-folder-name/" * 12 + "train.csv"
    values = {"save_strategy": "no", "train_file": path, "warmup_steps": 0.1, "label": "off", "lr": "1e-5"}
    text = dump_yaml(values, sort_keys=False)
    assert f"train_file: {path}\n" in text and "save_strategy: 'no'" in text
    assert yaml.safe_load(text) == values
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    assert load_config_file(str(tmp_path / "c.yaml"))[0] == values


def test_a_secret_never_enters_a_runs_settings(tmp_path, monkeypatch):
    """A shared config's `run_name: ${HF_TOKEN}` (or the token pasted into any field, or `--run_name $HF_TOKEN`)
    put the live token into hf_transfer_config.yaml, the run record, the card and the commit message, all pushed."""
    token = "hf_" + "x" * 34
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "abc")
    monkeypatch.setenv("TOKENIZER_DIR", "tok")  # a name with TOKEN in it, no secret
    for text in (
        "run_name: ${HF_TOKEN}\n",
        "base_model_hub_id: org/m${HF_TOKEN:-x}\n",
        "seed: 1\nx: ${AWS_SECRET_ACCESS_KEY}\n",
    ):
        message = _error(tmp_path, "model_name_or_path: m\n" + text)
        assert "a secret: its value would be written into the run's config, records and card" in message
        assert token not in message and "abc" not in message
    for flags in (("--run_name", f"run-{token}"), ("--freeze_patterns", f"[a, {token}]")):
        message = _error(tmp_path, "model_name_or_path: m\n", *flags)
        assert message.endswith("holds your Hugging Face token: it would be written into the run's config, records "
                                "and card, and pushed with them; remove it (hf-transfer reads the token from HF_TOKEN "
                                "or `hf auth login`).") and token not in message  # fmt: skip
    # Names with such a word inside, not at their end, hold no secret: TOKENIZER_DIR, MAX_TOKEN_LENGTH, KEY_ID.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    text = "model_name_or_path: m\ntrain_file: ${TOKENIZER_DIR}/t.csv\nmax_seq_length: ${MAX_TOKEN_LENGTH:-64}\n"
    _, data, _, _ = _parse(tmp_path, text + "run_name: ${AWS_ACCESS_KEY_ID}\n")
    assert data.train_file == "tok/t.csv" and data.max_seq_length == 64
