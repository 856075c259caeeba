"""A recipe's `base_model_hub_id` and `dataset_hub_id` describe its own model and data: run with others on the command
line, they are left out of the card and records, said in one line (core/recipe_overrides.py)."""

import json

import yaml
from test_cli import tiny_data  # noqa: F401 (a fixture)

from hf_transfer.cli import main, parse_command_args
from hf_transfer.core import recipe_overrides
from hf_transfer.core.recipe_overrides import settle_recipe_fields

RECIPE = """model_name_or_path: ${HF_TEST_MODEL:-org/recipe-base}
base_model_hub_id: org/recipe-base
dataset_hub_id: org/recipe-data
train_file: TRAIN
validation_file: DEV
output_dir: OUT
"""


def _recipe(tmp_path, train, dev) -> str:
    path = tmp_path / "recipe.yaml"
    text = RECIPE.replace("TRAIN", str(train)).replace("DEV", str(dev)).replace("OUT", str(tmp_path / "out"))
    path.write_text(text)
    return str(path)


def _files(tmp_path):
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("text,label\nx,1\n")
    return tmp_path / "a.csv", tmp_path / "b.csv"


def _settled(argv):
    model_args, data_args, *_ = parse_command_args("train", argv)
    return model_args, data_args, settle_recipe_fields("train", model_args, data_args)


def test_the_recipes_own_model_and_data_keep_their_ids(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TEST_MODEL", raising=False)
    model_args, data_args, said = _settled(["--config", _recipe(tmp_path, *_files(tmp_path)), "--seed", "3"])
    assert said == [] and model_args.base_model_hub_id == "org/recipe-base"
    assert data_args.dataset_hub_id == "org/recipe-data"
    # Ids given on the command line are the user's own word, whatever else changed.
    argv = ["--config", _recipe(tmp_path, *_files(tmp_path)), "--train_file", "mine.csv", "--model_name_or_path"]
    argv += ["/models/mine", "--base_model_hub_id", "me/mine", "--dataset_hub_id", "me/data"]
    model_args, data_args, said = _settled(argv)
    assert said == [] and model_args.base_model_hub_id == "me/mine" and data_args.dataset_hub_id == "me/data"


def test_other_data_or_model_on_the_command_line_drops_the_recipes_ids(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TEST_MODEL", raising=False)
    argv = ["--config", _recipe(tmp_path, *_files(tmp_path)), "--validation_file", "mine.csv"]
    model_args, data_args, said = _settled(argv)
    assert data_args.dataset_hub_id is None and model_args.base_model_hub_id == "org/recipe-base"
    assert len(said) == 1 and "dataset_hub_id org/recipe-data" in said[0] and "--validation_file" in said[0]
    # Thirty-seventh review: a test file of one's own was carded as the recipe dataset's test split.
    model_args, data_args, said = _settled(["--config", _recipe(tmp_path, *_files(tmp_path)), "--test_file", "t.csv"])
    assert data_args.dataset_hub_id is None and len(said) == 1 and "--test_file gives other data" in said[0]
    # Another Hub id by flag: that id is the model's own name.
    argv = ["--config", _recipe(tmp_path, *_files(tmp_path)), "--model_name_or_path", "org/other"]
    model_args, data_args, said = _settled(argv)
    assert model_args.base_model_hub_id is None and data_args.dataset_hub_id == "org/recipe-data"
    assert len(said) == 1 and "another Hub id, org/other" in said[0] and "--base_model_hub_id" in said[0]


def test_a_model_from_the_environment_is_checked_against_the_ids_cached_config(tmp_path, monkeypatch):
    local = tmp_path / "local-model"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"model_type": "roberta", "hidden_size": 32}))
    hub = tmp_path / "hub-config.json"
    hub.write_text(json.dumps({"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6}))
    monkeypatch.setenv("HF_TEST_MODEL", str(local))
    recipe = _recipe(tmp_path, *_files(tmp_path))
    # Not cached (offline): kept, and named, so a user who pointed the variable at another model hears of it.
    monkeypatch.setattr(recipe_overrides, "_cached_config", lambda hub_id: None)
    model_args, _, said = _settled(["--config", recipe])
    assert model_args.base_model_hub_id == "org/recipe-base"
    assert len(said) == 1 and str(local) in said[0] and "if that is another model" in said[0]
    # Cached and of another shape: dropped, with the difference.
    monkeypatch.setattr(recipe_overrides, "_cached_config", lambda hub_id: hub)
    model_args, _, said = _settled(["--config", recipe])
    assert model_args.base_model_hub_id is None
    assert len(said) == 1 and "model_type is 'roberta', the id's 'bert'" in said[0], said
    # Cached and alike (a local copy of the id): kept, in silence.
    (local / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 384}))
    model_args, _, said = _settled(["--config", recipe])
    assert model_args.base_model_hub_id == "org/recipe-base" and said == []
    # The variable names another Hub id: that id is the model's own name.
    monkeypatch.setenv("HF_TEST_MODEL", "org/other-base")
    model_args, _, said = _settled(["--config", recipe])
    assert model_args.base_model_hub_id is None and "another Hub id, org/other-base" in said[0]
    # A local folder by flag is checked the same way: a local copy of the id keeps it (a push of its adapter needs
    # it), another shape drops it.
    monkeypatch.delenv("HF_TEST_MODEL")
    model_args, _, said = _settled(["--config", recipe, "--model_name_or_path", str(local)])
    assert model_args.base_model_hub_id == "org/recipe-base" and said == []
    (local / "config.json").write_text(json.dumps({"model_type": "distilbert", "hidden_size": 32}))
    model_args, _, said = _settled(["--config", recipe, "--model_name_or_path", str(local)])
    assert model_args.base_model_hub_id is None and "--model_name_or_path gives" in said[0]
    monkeypatch.setattr(recipe_overrides, "_cached_config", lambda hub_id: None)
    model_args, _, said = _settled(["--config", recipe, "--model_name_or_path", str(local)])
    assert model_args.base_model_hub_id == "org/recipe-base" and "if that is another model" in said[0]


def test_a_recipe_run_on_other_data_and_model_names_them_in_its_card(
    tmp_path,
    tiny_data,  # noqa: F811
    tiny_bert_dir,
    caplog,
    monkeypatch,
):
    train, dev = tiny_data
    hub = tmp_path / "hub-config.json"  # the id's config as the Hub cache would hold it: MiniLM's shape
    hub.write_text(json.dumps({"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6}))
    monkeypatch.setattr(recipe_overrides, "_cached_config", lambda hub_id: hub)
    out = tmp_path / "out"
    argv = ["train", "--config", _recipe(tmp_path, "absent.csv", "absent-dev.csv"), "--model_name_or_path"]
    argv += [str(tiny_bert_dir), "--train_file", str(train), "--validation_file", str(dev), "--output_dir", str(out)]
    argv += ["--max_steps", "2", "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no"]
    argv += ["--disable_tqdm", "true", "--per_device_train_batch_size", "8"]
    assert main(argv) == 0
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert "org/recipe-base" not in json.dumps(header) and "org/recipe-data" not in json.dumps(header)
    saved = yaml.safe_load((out / "hf_transfer_config.yaml").read_text())
    assert saved["base_model_hub_id"] is None and saved["dataset_hub_id"] is None
    said = [r.getMessage() for r in caplog.records if "left out of the card" in r.getMessage()]
    assert len(said) == 2 and "its hidden_size is 32, the id's 384" in said[1], said


def test_a_dataset_name_flag_replaces_the_recipes_files_and_a_missing_recipe_file_names_its_field(
    tmp_path, monkeypatch
):
    import pytest

    from hf_transfer.errors import DataError

    monkeypatch.delenv("HF_TEST_MODEL", raising=False)
    train, dev = tmp_path / "a.csv", tmp_path / "b.csv"
    train.write_text("text,label\nx,1\n")
    dev.write_text("text,label\nx,1\n")
    argv = ["--config", _recipe(tmp_path, train, dev), "--dataset_name", str(tmp_path / "my_dataset")]
    _, data_args, said = _settled(argv)
    assert data_args.train_file is None and data_args.validation_file is None
    assert data_args.dataset_hub_id is None
    assert "--dataset_name" in said[0] and "replaces the config's train_file, validation_file" in said[0]
    # A recipe file that is not there: its field, and the flag that gives another.
    with pytest.raises(DataError) as err:
        _settled(["--config", _recipe(tmp_path, tmp_path / "gone.csv", dev)])
    assert "train_file" in str(err.value) and "(from the config) does not exist" in str(err.value)
    assert "give --train_file PATH." in str(err.value)
    recipe = tmp_path / "data_dir.yaml"
    recipe.write_text("train_file: ${HF_TEST_DATA:-/nowhere}/train.tsv\noutput_dir: out\n")
    with pytest.raises(DataError) as err:
        _settled(["--config", str(recipe)])
    assert "give --train_file PATH, or set HF_TEST_DATA (its path is built from it)." in str(err.value)


def test_a_student_cut_from_another_teacher_does_not_keep_the_recipes_base(tmp_path, monkeypatch):
    """`distill` with `student_layers` and no student model: the base the recipe names is the teacher's, so a teacher
    given on the command line is checked against it, as a student model would be."""
    monkeypatch.delenv("HF_TEST_MODEL", raising=False)
    train, dev = _files(tmp_path)
    recipe = tmp_path / "distill.yaml"
    recipe.write_text(
        f"teacher_model_name_or_path: org/recipe-teacher\nstudent_layers: [0, 2]\nbase_model_hub_id: org/recipe-base\n"
        f"train_file: {train}\nvalidation_file: {dev}\noutput_dir: {tmp_path / 'out'}\n"
    )
    hub = tmp_path / "hub-config.json"
    hub.write_text(json.dumps({"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6}))
    monkeypatch.setattr(recipe_overrides, "_cached_config", lambda hub_id: hub)

    def settled(*flags):
        model_args, data_args, distill_args, *_ = parse_command_args("distill", ["--config", str(recipe), *flags])
        return model_args, settle_recipe_fields("distill", model_args, data_args, distill_args)

    model_args, said = settled()  # the recipe's own teacher: its id stays
    assert said == [] and model_args.base_model_hub_id == "org/recipe-base"
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text(json.dumps({"model_type": "roberta", "hidden_size": 768}))
    model_args, said = settled("--teacher_model_name_or_path", str(teacher))
    assert model_args.base_model_hub_id is None and len(said) == 1
    assert "--teacher_model_name_or_path gives as the teacher the student is cut from" in said[0]
    assert "model_type is 'roberta', the id's 'bert'" in said[0]
    # An hf-transfer run folder says which Hub model it was made from: another one drops the id; the same one keeps
    # it where the shapes agree too (a 3-block student of that model is not it).
    (teacher / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 384}))
    (teacher / "hf_transfer_card_data.json").write_text(json.dumps({"base_model": "org/another-base"}))
    model_args, said = settled("--teacher_model_name_or_path", str(teacher))
    assert model_args.base_model_hub_id is None and "its card data names org/another-base" in said[0]
    (teacher / "hf_transfer_card_data.json").write_text(json.dumps({"base_model": "org/recipe-base"}))
    model_args, said = settled("--teacher_model_name_or_path", str(teacher))
    assert model_args.base_model_hub_id == "org/recipe-base" and said == []
    three_blocks = {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 3}
    (teacher / "config.json").write_text(json.dumps(three_blocks))
    model_args, said = settled("--teacher_model_name_or_path", str(teacher))
    assert model_args.base_model_hub_id is None and "its num_hidden_layers is 3, the id's 6" in said[0]
