"""A truncated or unreadable safetensors checkpoint is refused from its header, before any data is read."""

import shutil

import pytest

from hf_transfer.cli import main
from hf_transfer.core.models import check_weights_complete
from hf_transfer.errors import ConfigError


@pytest.fixture()
def truncated(tmp_path, tiny_bert_dir):
    folder = tmp_path / "truncated"
    shutil.copytree(tiny_bert_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    return folder


def test_a_complete_checkpoint_passes_and_a_hub_id_is_left_to_the_loader(tiny_bert_dir, tmp_path):
    check_weights_complete(str(tiny_bert_dir))
    check_weights_complete("some-org/some-model")  # not a folder: nothing to read here
    (tmp_path / "model.safetensors").write_bytes(b"")
    # No config.json: the location check (the one load_config makes) speaks here now, before any data is read.
    with pytest.raises(
        ConfigError, match="has no config.json; give a folder written by save_pretrained, or a Hub id.$"
    ):
        check_weights_complete(str(tmp_path))
    with pytest.raises(ConfigError, match="does not exist"):
        check_weights_complete(str(tmp_path / "missing"))
    # A search's output_dir (hf-transfer merge --finetuned, evaluate, ...) says where its models are.
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "study.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="output_dir of hf-transfer search: give its best trial's folder"):
        check_weights_complete(str(tmp_path))


def test_a_truncated_checkpoint_is_named_with_its_sizes(truncated):
    size = (truncated / "model.safetensors").stat().st_size
    with pytest.raises(ConfigError, match=rf"model.safetensors is truncated \({size:,} bytes of the {size + 100:,}"):
        check_weights_complete(str(truncated))


def test_a_header_longer_than_the_file_is_unreadable(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        check_weights_complete(str(tmp_path))


@pytest.mark.parametrize("command", ["train", "distill"])
def test_train_and_distill_refuse_it_before_reading_the_data(truncated, tmp_path, monkeypatch, capsys, command):
    import hf_transfer.train.preflight as preflight

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before the weights were checked")

    monkeypatch.setattr(preflight, "load_checked_data", no_data)
    monkeypatch.setattr("hf_transfer.distill.plan.load_checked_data", no_data)
    train_file = tmp_path / "train.csv"
    train_file.write_text("text,label\ngood,pos\nbad,neg\n")
    model = ["--teacher_model_name_or_path", str(truncated), "--student_layers", "[0]"] if command == "distill" else [
        "--model_name_or_path", str(truncated)]  # fmt: skip
    argv = [command, *model, "--train_file", str(train_file), "--output_dir", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "is truncated" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_it_before_reading_the_data(truncated, tmp_path, capsys):
    import json

    config = json.loads((truncated / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], id2label={"0": "neg", "1": "pos"})
    config["label2id"] = {"neg": 0, "pos": 1}
    (truncated / "config.json").write_text(json.dumps(config))
    missing = tmp_path / "never-read.csv"  # the weights are refused first, so the missing file is never looked at
    assert main(["evaluate", "--model_name_or_path", str(truncated), "--validation_file", str(missing)]) == 2
    assert "is truncated" in capsys.readouterr().err


def test_a_cut_off_config_json_is_named_not_called_a_missing_model(tiny_bert_dir, tmp_path):
    """A folder whose config.json was cut off was "neither a local model folder nor a reachable Hub model"."""
    from hf_transfer.core.models import load_config

    folder = tmp_path / "cut"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "config.json").write_text((folder / "config.json").read_text()[:40])
    with pytest.raises(ConfigError) as caught:
        load_config(str(folder))
    assert "is not a valid JSON file" in str(caught.value) and "Re-save or re-download it." in str(caught.value)
    assert "neither a local model folder" not in str(caught.value)


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
def test_a_config_without_architectures_beside_a_classifiers_weights_is_a_classifier(tiny_bert_dir, tmp_path, weights):
    """`config.save_pretrained` beside weights saved by hand leaves no `architectures`: evaluate called the folder
    "not a sequence classifier (architectures: none recorded)", though AutoModelForSequenceClassification loads it.
    The weights' names (no tensor read) show the head; a body without one is still refused."""
    import pandas as pd
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig.from_pretrained(tiny_bert_dir, num_labels=2, id2label={0: "neg", 1: "pos"})
    model = BertForSequenceClassification(config)
    folder = tmp_path / "by-hand"
    config.architectures = None
    config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / weights) if weights.endswith(".bin") else save_file(state, folder / weights)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "neg"]}).to_csv(tmp_path / "dev.csv", index=False)
    argv = ["evaluate", "--model_name_or_path", str(folder), "--validation_file", str(tmp_path / "dev.csv")]
    assert main(argv) == 0
    body = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    torch.save(body, folder / weights) if weights.endswith(".bin") else save_file(body, folder / weights)
    assert main(argv) == 2
