"""Pushing to a local Hub (tests/local_hub.py): a full model trained with push_to_hub, an adapter folder pushed with
`hf-transfer push`, what arrives and what stays out, the card's model-index read back, retries, the one-line errors,
offline runs, and a planted token that must not appear in any file or log."""

import ast
import hashlib
import json
import os
import re
import socket
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from huggingface_hub import HfApi
from huggingface_hub.repocard import metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from local_hub import TOKEN, LocalHub
from test_cli import train_argv

from hf_transfer.cli import main
from hf_transfer.core.folders import CARD_DATA_FILE
from hf_transfer.outputs import hub as hub_module
from hf_transfer.outputs.card_data import CardData, complete_card_data
from hf_transfer.outputs.cards import write_model_card


@pytest.fixture
def local_hub():
    with LocalHub() as hub:
        yield hub


@pytest.fixture
def online(monkeypatch, tmp_path, local_hub):
    """huggingface_hub online (conftest sets HF_HUB_OFFLINE=1, read once at import), pointed at the local Hub through
    HF_ENDPOINT, with the local Hub's token in HF_TOKEN, no login cache, and short retry waits."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(hub_module, "RETRY_BASE_SECONDS", 0.01)
    return local_hub


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def tiny_data(tmp_path):
    from test_cli import write_csv

    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(48)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(48)]
    return write_csv(tmp_path / "train.csv", texts[:40], labels[:40]), write_csv(
        tmp_path / "dev.csv", texts[40:], labels[40:]
    )


@pytest.fixture
def small_folder(tmp_path):
    """A folder to push that needs no training: a card, a config, a checkpoint and a cache that must stay local."""
    folder = tmp_path / "ready"
    (folder / "checkpoint-5").mkdir(parents=True)
    (folder / "checkpoint-5" / "optimizer.pt").write_bytes(b"state")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.lock").write_text("")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# ready\n")
    return folder


# --- a full model, pushed at the end of training -----------------------------------------------------------------


def test_train_with_push_to_hub_sends_the_model_and_card_and_never_the_token(
    online, tmp_path, tiny_bert_dir, tiny_data, capsys
):
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--save_strategy", "epoch", "--push_to_hub", "true")
    argv += ["--hub_model_id", "tester/tiny-full", "--hub_private_repo", "true"]
    assert main(argv) == 0
    captured = capsys.readouterr()

    # Stock Trainer pushed nothing itself (no repo at init, no checkpoint pushes): one repo creation, one commit.
    assert online.count("create") == 1 and len(online.commits) == 1 and not online.unknown
    assert online.repos["tester/tiny-full"]["private"] is True
    files = online.files("tester/tiny-full")
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "README.md",
        "training_curves.png",
        "hf_transfer_config.yaml",
        "hf_transfer_run.json",
        CARD_DATA_FILE,
        "eval_results.json",
    ):
        assert name in files, name
    assert (out / "checkpoint-5").is_dir() and (out / "training_args.bin").is_file()
    assert not any(p.startswith("checkpoint-") or p == "training_args.bin" for p in files)
    assert files["model.safetensors"] == (out / "model.safetensors").read_bytes()

    card = tmp_path / "pushed_README.md"
    card.write_bytes(files["README.md"])
    meta = metadata_load(card)
    name, results = model_index_to_eval_results(meta["model-index"])
    eval_accuracy = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
    assert name == "tiny-full"
    assert [r.metric_value for r in results if r.metric_type == "accuracy"] == [round(eval_accuracy, 4)]
    assert 'model="tester/tiny-full"' in card.read_text()
    assert online.validated and online.validated[-1] == files["README.md"].decode()
    summary = online.commits[0]["summary"]
    assert summary.startswith("hf-transfer: fine-tuned") and f"validation accuracy {eval_accuracy:.4f}" in summary
    assert "pushed_to" in captured.out

    # The run asked for push_to_hub and the record says so, though Trainer itself was told not to push.
    config_text = (out / "hf_transfer_config.yaml").read_text()
    assert "push_to_hub: true" in config_text and "hub_model_id: tester/tiny-full" in config_text

    # The records pushed name local files by their last part (the data, the base model's folder, output_dir); the
    # folder's own copies keep the full paths, and files that go up untouched are byte for byte the local ones.
    local = [str(tmp_path), str(tiny_bert_dir)]
    assert all(p.encode() not in data for p in local for data in files.values())
    assert str(tiny_data[0]) in config_text and "train_file: train.csv" in files["hf_transfer_config.yaml"].decode()
    assert json.loads(files["hf_transfer_run.json"])["task"] == "train"
    assert files["tokenizer.json"] == (out / "tokenizer.json").read_bytes()

    # The planted token is in no output file (trainer_state.json, the pickled arguments, the card, the config, the
    # checkpoint), in nothing that reached the Hub, and in no log line.
    token = TOKEN.encode()
    for path in out.rglob("*"):
        if path.is_file():
            assert token not in path.read_bytes(), path
    assert all(token not in data for data in files.values())
    assert TOKEN not in captured.out + captured.err


def test_distill_with_push_to_hub(online, tmp_path, tiny_bert_dir, tiny_data, capsys):
    from test_distill import distill_argv, save_classifier

    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["neg", "pos"], layers=3)
    out = tmp_path / "student"
    argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--student_layers", "[0,2]")
    assert main([*argv, "--push_to_hub", "true", "--hub_model_id", "tester/student", "--hub_revision", "v1"]) == 0
    files = online.files("tester/student", "v1")
    card = tmp_path / "README.md"
    card.write_bytes(files["README.md"])
    meta = metadata_load(card)
    assert "distillation" in meta["tags"] and "model.safetensors" in files
    # The teacher folder by its name: the commit message is public, the folder's path on this machine is not.
    assert online.commits[0]["summary"].startswith(f"hf-transfer: distilled 2-layer student of {teacher.name},")
    assert online.count("create") == 1 and len(online.commits) == 1
    # Pushed to a branch: the quick start reads it there (main holds nothing), and `push` says the repo's full id.
    text = files["README.md"].decode()
    assert 'pipeline("text-classification", model="tester/student", revision="v1",' in text
    assert main(["push", str(out), "--hub_model_id", "student2"]) == 0
    assert "tester/student2" in capsys.readouterr().out  # the token's user is the owner
    text = online.files("tester/student2")["README.md"].decode()
    assert 'model="tester/student2",' in text and "revision=" not in text


def test_hub_token_in_a_config_is_refused_before_anything_is_written(tmp_path, tiny_bert_dir, tiny_data, capsys):
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, *tiny_data, out, "--hub_token", "hf_plantedsecret")) == 2
    err = one_error_line(capsys)
    assert "HF_TOKEN" in err and "hf_plantedsecret" not in err
    assert not out.exists()


def test_trainer_push_schedules_are_said_to_be_ignored(online, tmp_path, tiny_bert_dir, tiny_data, caplog):
    """`hub_strategy all_checkpoints` was accepted without a word and only the finished folder was pushed."""
    out = tmp_path / "run"
    argv = [*train_argv(tiny_bert_dir, *tiny_data, out), "--push_to_hub", "true", "--hub_model_id", "tester/strategy"]
    with caplog.at_level("WARNING"):
        assert main([*argv, "--hub_strategy", "all_checkpoints"]) == 0
    said = [r.getMessage() for r in caplog.records if "set but ignored" in r.getMessage()]
    assert said == [
        "hub_strategy set but ignored: the finished run is pushed once, with its card; its checkpoints stay in "
        "output_dir."
    ]
    assert len(online.commits) == 1


@pytest.mark.parametrize(
    "case, extra, needle",
    [
        ("invalid repo id", ["--hub_model_id", "tester/bad//name"], "hub_model_id"),
        ("repo id beginning with '-'", ["--hub_model_id=-bad/x"], "hub_model_id '-bad/x' is not a valid Hub repo id"),
        ("no token", ["--hub_model_id", "tester/x"], "HF_TOKEN"),
        # the pushed adapter_config.json would have named the tiny model's folder on this machine, after training
        ("adapter on a local base", ["--hub_model_id", "tester/x", "--peft_method", "lora"], "needs the base model's"),
    ],
)
def test_push_problems_stop_train_before_any_compute(
    case, extra, needle, online, monkeypatch, tmp_path, tiny_bert_dir, tiny_data, capsys
):
    if case == "no token":
        monkeypatch.delenv("HF_TOKEN")
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, *tiny_data, out, "--push_to_hub", "true", *extra)) == 2
    assert needle in one_error_line(capsys)
    assert not out.exists() and online.requests == []


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "connection refused"])
def test_train_offline_or_unreachable_finishes_and_keeps_the_folder_ready(
    how, online, monkeypatch, tmp_path, tiny_bert_dir, tiny_data, capsys
):
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        monkeypatch.delenv("HF_TOKEN")  # offline, a missing token is no reason to refuse the run
    else:
        monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--push_to_hub", "true", "--hub_model_id", "tester/later")
    assert main(argv) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and f"hf-transfer push {out} --hub_model_id tester/later" in warning[0]
    assert (out / "model.safetensors").is_file() and 'model="tester/later"' in (out / "README.md").read_text()
    assert online.requests == []


# --- an adapter folder, pushed with `hf-transfer push` ---------------------------------------------------------------


def test_push_an_adapter_folder(online, tmp_path, tiny_bert_dir, capsys):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, BertForSequenceClassification

    labels = ["a", "b", "c"]
    base = BertForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=3, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    folder = tmp_path / "lora"
    model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    tokenizer.save_pretrained(folder)
    record = {
        "task": "train",
        "base_model": str(tiny_bert_dir),
        "label_names": labels,
        "data": {"train": {"rows": 30, "dropped": {}}, "validation": {"rows": 9, "dropped": {}}},
        "validation_report": {"accuracy": 0.5, "f1_macro": 0.4, "confusion_matrix": [[1, 1, 1], [1, 1, 1], [1, 1, 1]]},
        "adapter": {
            "method": "lora",
            "r": 4,
            "alpha": 8,
            "target_modules": ["query", "value"],
            "trainable_percent": 2.5,
        },
    }
    write_model_card(folder, complete_card_data(CardData(), record, {"learning_rate": 1e-3}, folder))

    # The adapter must name its base by a Hub id to be pushed (a local path is refused); the quick start below
    # runs offline, so the local path is put back afterwards.
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**adapter_config, "base_model_name_or_path": "org/tiny"}))
    assert main(["push", str(folder), "--hub_model_id", "tester/tiny-lora"]) == 0
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config))
    files = online.files("tester/tiny-lora")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= set(files)
    card = tmp_path / "README.md"
    card.write_bytes(files["README.md"])
    meta = metadata_load(card)
    assert meta["library_name"] == "peft" and {"peft", "lora"} <= set(meta["tags"])
    model_index_to_eval_results(meta["model-index"])
    assert (
        online.commits[0]["summary"]
        == "hf-transfer: LoRA adapter (r=4) on " + tiny_bert_dir.name + ", validation accuracy 0.5000"
    )

    # The card's quick start loads the adapter with AutoPeftModel and predicts the same as the model we saved.
    snippet = re.search(r"```python\n(.*?)```", card.read_text(), re.S).group(1)
    assert "AutoPeftModelForSequenceClassification" in snippet
    namespace = {}
    exec(snippet.replace("tester/tiny-lora", str(folder)), namespace)
    (got,) = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["label"] in labels and namespace["model"].config.id2label == dict(enumerate(labels))
    model.eval()
    inputs = tokenizer(["I really enjoyed this!"], return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**inputs).logits, -1)[0]
    assert got == {"label": labels[int(probs.argmax())], "score": pytest.approx(float(probs.max()), abs=1e-6)}


def test_a_second_push_replaces_the_earlier_runs_files_and_keeps_the_users(online, small_folder, caplog):
    """Pushed as a LoRA adapter, then retrained as a full model and pushed again: the repo kept adapter_config.json
    and the adapter's weights beside the new model.safetensors, and `from_pretrained` on the repo loaded the old
    adapter. The earlier run's files the folder no longer has are removed in the same commit; a file the user
    added to the repo, and .gitattributes, stay."""
    repo = "tester/again"
    assert main(["push", str(small_folder), "--hub_model_id", repo]) == 0
    branch = online.repos[repo]["branches"]["main"]
    stale = [
        "adapter_config.json",
        "adapter_model.safetensors",
        "onnx/model.onnx",
        "test_results.json",
        "label_f1.png",
    ]
    # The user's own files, below folders of their own: `*.png` and `*.bin` had matched them at any depth.
    mine = ["notes/mine.md", "assets/diagram.png", "assets/deep/weights.bin", "docs/[draft]_results.json"]
    branch.update({name: b"old" for name in [*stale, *mine, ".gitattributes"]})
    (small_folder / "model.safetensors").write_bytes(b"new weights")
    assert main(["push", str(small_folder), "--hub_model_id", repo]) == 0
    files = online.files(repo)
    assert not set(stale) & set(files), sorted(files)
    assert files["model.safetensors"] == b"new weights" and {*mine, ".gitattributes"} <= set(files)


def test_the_runs_data_files_in_its_folder_are_held_back(online, small_folder, caplog):
    """A run written into its data folder (or with its data linked in) pushed train.csv to a public repo unsaid; a
    run with a test_file pushed predict_results.csv, every test text in it, and so did a `predict --output_file`
    written into the folder. Files of rows of data stay out unless asked for (`--include_data_files true`)."""
    (small_folder / "train.csv").write_text("text,label\nhi,a\n")
    outside = small_folder.parent / "dev.csv"
    outside.write_text("text,label\nho,b\n")
    (small_folder / "linked").mkdir()
    (small_folder / "linked" / "dev.csv").symlink_to(outside)
    (small_folder / "predict_results.csv").write_text("index,text,predicted_label\n0,alice@corp.com wrote,a\n")
    (small_folder / "preds.jsonl").write_text('{"text": "secret", "predicted_label": "a"}\n')
    (small_folder / "notes.txt").write_text("mine")  # not rows of data: it goes up
    config = {"train_file": str(small_folder / "train.csv"), "validation_file": str(outside), "test_file": None}
    (small_folder / "hf_transfer_config.yaml").write_text(yaml.safe_dump(config))
    (small_folder / "rows.json").write_text('[{"text": "a private note", "label": "a"}]')  # datasets reads it
    (small_folder / "preds[old].csv").write_text("text,label\nmine,a\n")  # a name that is a glob of no file
    with caplog.at_level("WARNING"):
        assert main(["push", str(small_folder), "--hub_model_id", "tester/data"]) == 0
    files = online.files("tester/data")
    held = ["predict_results.csv", "preds.jsonl", "preds[old].csv", "rows.json", "train.csv"]
    assert not {*held, "linked/dev.csv"} & set(files) and "notes.txt" in files and "config.json" in files
    assert f"{', '.join(held)}: rows of data (the run's data files, its test predictions), held back" in caplog.text
    assert "linked/dev.csv: links to files outside" in caplog.text  # never sent: its content is not the folder's
    assert main(["push", str(small_folder), "--hub_model_id", "tester/data2", "--include_data_files", "true"]) == 0
    assert set(held) <= set(online.files("tester/data2")) and "linked/dev.csv" not in online.files("tester/data2")


def test_secrets_and_links_out_of_the_folder_are_never_pushed(online, small_folder, caplog):
    """push sent .env, .netrc, .git-credentials, .ssh/id_ed25519, id_rsa, credentials.json and a link to a file
    outside the folder, with no word."""
    secrets = [".env", ".env[1]", ".netrc", ".git-credentials", ".ssh/id_ed25519", "id_rsa", "id_rsa [copy]",
               "credentials.json", "server.pem"]  # fmt: skip
    for name in secrets:
        (small_folder / name).parent.mkdir(exist_ok=True)
        (small_folder / name).write_text("secret")
    outside = small_folder.parent / "private.txt"
    outside.write_text("not the model's")
    (small_folder / "notes.txt").symlink_to(outside)
    (small_folder / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "x"}]')  # the model's
    with caplog.at_level("WARNING"):
        assert main(["push", str(small_folder), "--hub_model_id", "tester/s", "--include_data_files", "true"]) == 0
    files = set(online.files("tester/s"))
    assert not {*secrets, "notes.txt"} & files and {"config.json", "modules.json"} <= files
    assert f"{', '.join(sorted(secrets))}: dotfiles, keys or credentials, never pushed" in caplog.text


# --- `hf-transfer push`: retries and errors ----------------------------------------------------------------------


def test_push_to_a_private_branch(online, small_folder):
    assert main(["push", str(small_folder), "--hub_model_id", "team/model", "--private", "--revision", "dev"]) == 0
    assert online.repos["team/model"]["private"] is True
    # no checkpoint, cache or pickle
    assert set(online.files("team/model", "dev")) == {"config.json", "model.safetensors", "README.md"}
    assert online.files("team/model") == {} and online.commits[0]["revision"] == "dev"


def test_private_push_to_an_existing_public_repo_is_refused_before_any_upload(online, small_folder, capsys):
    assert main(["push", str(small_folder), "--hub_model_id", "tester/open"]) == 0
    commits, before = len(online.commits), fingerprint(small_folder)
    assert main(["push", str(small_folder), "--hub_model_id", "tester/open", "--private"]) == 2
    err = one_error_line(capsys)
    assert "already exists and is public" in err and "nothing was pushed" in err
    assert len(online.commits) == commits and online.repos["tester/open"]["private"] is False
    assert fingerprint(small_folder) == before
    # A repo that is private already takes a --private push as before.
    assert main(["push", str(small_folder), "--hub_model_id", "tester/closed", "--private"]) == 0
    assert main(["push", str(small_folder), "--hub_model_id", "tester/closed", "--private"]) == 0
    assert len(online.commits) == commits + 2


def test_a_private_train_push_to_a_public_repo_stops_before_training(
    online, small_folder, tmp_path, tiny_bert_dir, tiny_data, capsys
):
    """`train --push_to_hub true --hub_private_repo true` onto an existing public repo trained in full and was
    refused only at the push, naming push's `--private`; it stops before any compute, naming hub_private_repo."""
    assert main(["push", str(small_folder), "--hub_model_id", "tester/open"]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    argv = [*train_argv(tiny_bert_dir, *tiny_data, out), "--push_to_hub", "true", "--hub_model_id", "tester/open"]
    assert main([*argv, "--hub_private_repo", "true"]) == 2
    err = one_error_line(capsys)
    assert "'tester/open' already exists and is public, and hub_private_repo does not change" in err
    assert not out.exists() and len(online.commits) == 1
    short = [*train_argv(tiny_bert_dir, *tiny_data, out), "--push_to_hub", "true", "--hub_model_id", "open"]
    assert main([*short, "--hub_private_repo", "true"]) == 2  # `open` is the token owner's tester/open
    assert "'tester/open' already exists and is public" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("remove", "adapter", "named"),
    [("model.safetensors", False, "weights (model.safetensors)"), (None, True, "adapter weights")],
)
def test_a_folder_without_weights_is_refused_before_the_repo_is_created(
    online, small_folder, capsys, remove, adapter, named
):
    if remove:
        (small_folder / remove).unlink()
    if adapter:  # an adapter config beside full weights: the adapter's own weights are missing
        (small_folder / "adapter_config.json").write_text('{"base_model_name_or_path": "org/base"}')
    assert main(["push", str(small_folder), "--hub_model_id", "tester/empty"]) == 2
    assert named in one_error_line(capsys)
    assert online.count("create") == 0 and "tester/empty" not in online.repos


@pytest.mark.parametrize("route", ["create", "commit"])
def test_a_500_is_retried_and_the_push_succeeds(route, online, small_folder):
    online.fail(route, 500)
    assert main(["push", str(small_folder), "--hub_model_id", "tester/flaky"]) == 0
    assert online.count(route) == 2  # create: retried by hub.py; commit: by huggingface_hub's own backoff
    assert set(online.files("tester/flaky")) == {"config.json", "model.safetensors", "README.md"}


def test_a_persistent_503_gives_up_after_a_few_tries(online, small_folder, capsys):
    online.fail("create", 503, times=10)
    assert main(["push", str(small_folder), "--hub_model_id", "tester/down"]) == 2
    err = one_error_line(capsys)
    assert "503" in err and f"after {hub_module.RETRIES} tries" in err
    assert online.count("create") == hub_module.RETRIES


def test_a_failure_huggingface_hub_has_retried_is_not_retried_again(online, monkeypatch, small_folder, capsys):
    """The preupload request goes through huggingface_hub's own backoff (6 tries): retried again as a whole, a server
    gone away answered 24 requests, with about 20 "Retrying" lines over 100 s, before the one-line error."""
    waits = []  # one `time` module: huggingface_hub's waits and ours
    monkeypatch.setattr(hub_module.time, "sleep", waits.append)
    online.fail("preupload", 503, times=50)
    before = fingerprint(small_folder)
    assert main(["push", str(small_folder), "--hub_model_id", "tester/gone"]) == 2
    err = one_error_line(capsys)
    assert "503" in err and "after huggingface_hub's own retries" in err and "--hub_model_id tester/gone" in err
    assert online.count("preupload") == 6 and len(waits) == 5 and online.commits == []  # its 5 waits, none of ours
    assert fingerprint(small_folder) == before


def test_a_401_is_one_line_and_not_retried(online, monkeypatch, small_folder, capsys):
    before = fingerprint(small_folder)
    monkeypatch.setenv("HF_TOKEN", "hf_wrongtoken")
    assert main(["push", str(small_folder), "--hub_model_id", "tester/denied"]) == 2
    err = one_error_line(capsys)
    assert "401" in err and f"hf-transfer push {small_folder} --hub_model_id tester/denied" in err
    assert "hf_wrongtoken" not in err
    assert online.count("create") == 1 and online.commits == []
    assert fingerprint(small_folder) == before


def test_a_failed_upload_puts_the_card_back(online, tmp_path, capsys):
    from test_cards import DISTILL_RECORD

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')  # a folder with no model is refused before the Hub
    (folder / "model.safetensors").write_bytes(b"weights")
    write_model_card(folder, complete_card_data(CardData(), DISTILL_RECORD, {}, folder))
    before = fingerprint(folder)
    online.fail("commit", 422)
    assert main(["push", str(folder), "--hub_model_id", "tester/kept"]) == 2
    assert "422" in one_error_line(capsys)
    assert fingerprint(folder) == before  # the card was rewritten for tester/kept, then put back
    assert online.commits == [] and online.validated and "tester/kept" in online.validated[-1]
    # A folder with a run record and no card data: the push writes the card data (naming the repo) and the card; a
    # failed push left them, and the next `hf-transfer card` said the model was on the Hub.
    (folder / "hf_transfer_card_data.json").unlink()
    (folder / "README.md").unlink()
    (folder / "hf_transfer_run.json").write_text(json.dumps(DISTILL_RECORD))
    before = fingerprint(folder)
    online.fail("commit", 422)
    assert main(["push", str(folder), "--hub_model_id", "tester/kept"]) == 2
    assert fingerprint(folder) == before and not (folder / "hf_transfer_card_data.json").exists()


def test_a_card_that_cannot_be_rewritten_is_refused_before_the_repo_is_created(online, tmp_path, monkeypatch, capsys):
    """A read-only (or immutable) card: the push rewrites it for the repo after creating it, so a 32-line
    PermissionError traceback left an empty public repo behind."""
    from test_cards import DISTILL_RECORD

    from hf_transfer.outputs.card_data import CardData, complete_card_data
    from hf_transfer.outputs.cards import write_model_card

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(b"weights")
    write_model_card(folder, complete_card_data(CardData(), DISTILL_RECORD, {}, folder))
    card = str(folder / "README.md")
    access = os.access
    monkeypatch.setattr(hub_module.os, "access", lambda path, mode: str(path) != card and access(path, mode))
    assert main(["push", str(folder), "--hub_model_id", "tester/ro"]) == 2
    assert one_error_line(capsys) == (
        f"hf-transfer push: error: the card {card!r} cannot be written (no permission, or immutable), and a push "
        "rewrites it for the repo; copy the folder somewhere writable and push the copy."
    )
    assert online.requests == [] and online.repos == {}


def test_connection_refused_is_one_line_with_the_retry_command(online, monkeypatch, small_folder, capsys):
    before = fingerprint(small_folder)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    waits = []
    monkeypatch.setattr(hub_module.time, "sleep", waits.append)
    assert main(["push", str(small_folder), "--hub_model_id", "tester/x", "--private"]) == 2
    err = one_error_line(capsys)
    assert "could not reach" in err and f"hf-transfer push {small_folder} --hub_model_id tester/x --private" in err
    assert len(waits) == hub_module.RETRIES - 1 and waits == sorted(waits)  # exponential backoff
    assert fingerprint(small_folder) == before
    # An endpoint with a user and password (an @ in it too) is printed without them.
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url().replace("://", "://alice:s3c@retPW@", 1))
    assert main(["push", str(small_folder), "--hub_model_id", "tester/x"]) == 2
    err = one_error_line(capsys)
    assert "could not reach" in err and "retPW" not in err and "alice" not in err and "s3c" not in err
    # The retry repeats what changes what goes up (it dropped the training state, the data files and the message).
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    extra = ["--include_training_state", "true", "--include_data_files", "true", "--commit_message", "v2 it's done"]
    assert main(["push", str(small_folder), "--hub_model_id", "tester/x", *extra]) == 2
    err = one_error_line(capsys)
    assert (
        "--hub_model_id tester/x --include_training_state true --include_data_files true --commit_message "
        "'v2 it'\"'\"'s done'" in err
    ), err


def test_push_command_errors(online, monkeypatch, small_folder, tmp_path, capsys):
    assert main(["push", str(small_folder), "--hub_model_id", "a/b/c"]) == 2
    assert "hub_model_id" in one_error_line(capsys)
    for branch in ("bad branch", "a..b", "x:y"):  # git refuses them: the repo would be created, the branch refused
        assert main(["push", str(small_folder), "--hub_model_id", "tester/x", "--revision", branch]) == 2
        assert f"revision {branch!r} is not a valid branch name" in one_error_line(capsys)
    # `refs/pr/1` (an open pull request) would have been made a branch of that name.
    assert main(["push", str(small_folder), "--hub_model_id", "tester/x", "--revision", "refs/pr/1"]) == 2
    assert "revision 'refs/pr/1' is a git ref, not a branch name" in one_error_line(capsys)
    assert main(["push", str(tmp_path / "missing"), "--hub_model_id", "tester/x"]) == 2
    assert "missing" in one_error_line(capsys)
    assert main(["push", str(small_folder)]) == 2
    assert "hub_model_id is required" in one_error_line(capsys)
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push", str(small_folder), "--hub_model_id", "tester/x"]) == 2
    assert "HF_TOKEN" in one_error_line(capsys)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["push", str(small_folder), "--hub_model_id", "tester/x"]) == 2
    assert "HF_HUB_OFFLINE" in one_error_line(capsys)
    assert online.requests == []


def test_a_folder_others_could_not_use_is_refused_before_the_repo_is_created(online, tmp_path, tiny_bert_dir, capsys):
    """A folder with no model (it was pushed: an empty one made an empty repo and printed success), a search's
    output_dir, a model with no card and nothing to write one from, and an adapter whose adapter_config.json names
    its base by a local path (AutoPeftModel could not load it from the Hub) are each one line; nothing reaches the Hub.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "search" / "search").mkdir(parents=True)
    (tmp_path / "search" / "search" / "study.db").write_bytes(b"")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "bare" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "unweighted").mkdir()
    (tmp_path / "unweighted" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "unweighted" / "README.md").write_text("# a card and a config, and no weights\n")
    base = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    lora = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    lora.save_pretrained(tmp_path / "lora")  # names the base by the local folder it was loaded from
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_bert_dir)
    cases = {
        "notes": "holds no model (no config.json or adapter_config.json)",
        "empty": "holds no model",
        "search": "It is the output_dir of hf-transfer search: give its best trial's folder",
        "bare": "holds no README.md and no hf-transfer run record",
        "unweighted": "holds no weights (model.safetensors)",
        "lora": f"names the base model {str(tiny_bert_dir)!r}, a path on this machine",
    }
    # PEFT's placeholder card names the local base too (`base_model:`, and a tag): said in the same line
    placeholder = (tmp_path / "lora" / "README.md").read_text()
    assert str(tiny_bert_dir) in placeholder
    capsys.readouterr()
    for folder, needle in cases.items():
        assert main(["push", str(tmp_path / folder), "--hub_model_id", "tester/x"]) == 2
        line = one_error_line(capsys)
        assert needle in line
        if folder == "lora":
            assert f"README.md names base_model {str(tiny_bert_dir)!r}, a path on this machine" in line
    # With the base named by its Hub id the adapter goes up; the card's path alone is still refused.
    config["base_model_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps(config))
    assert main(["push", str(tmp_path / "lora"), "--hub_model_id", "tester/x"]) == 2
    assert one_error_line(capsys).endswith("(and in the tags that repeat it).")
    assert online.requests == [] and online.repos == {}
    hub_id = "sentence-transformers/all-MiniLM-L6-v2"
    (tmp_path / "lora" / "README.md").write_text(placeholder.replace(str(tiny_bert_dir), hub_id))
    assert main(["push", str(tmp_path / "lora"), "--hub_model_id", "tester/x"]) == 0
    sent = json.loads(online.files("tester/x")["adapter_config.json"])
    assert sent["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_an_invalid_card_is_refused_by_the_hub(online, small_folder, capsys):
    (small_folder / "README.md").write_text("---\nmodel-index:\n- results: []\n---\n# bad\n")
    assert main(["push", str(small_folder), "--hub_model_id", "tester/bad-card"]) == 2
    assert "rejected the card" in one_error_line(capsys)
    assert online.commits == []
    # A header that is not YAML at all is found before the repo is made: the card merge would drop the user's keys.
    (small_folder / "README.md").write_text("---\nlicense: mit\nwidget: [unclosed\n---\n# bad\n")
    assert main(["push", str(small_folder), "--hub_model_id", "tester/bad-yaml"]) == 2
    assert "the YAML header of" in one_error_line(capsys)
    assert "tester/bad-yaml" not in online.repos


@pytest.mark.parametrize("command", ["card", "push"])
def test_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--model_dir" in out and "--hub_model_id" in out
    if command == "push":
        assert "--private" in out and "--revision" in out


def linked_files(card: str) -> list[str]:
    """The files a card's Markdown links or shows (`![alt](file)`, `[text](file)`), URLs left out."""
    return [link for link in re.findall(r"\]\(([^)\s]+)\)", card) if not re.match(r"[a-z]+://", link)]


def test_a_merge_card_shows_its_pictures_and_the_push_sends_them(online, tmp_path, tiny_bert_dir):
    """A merge left merge_eval.confusion_matrix.png and pushed it, but its card showed the confusion matrix table with
    no picture under it (it looked for confusion_matrix.png); the sweep picture's alt text said accuracy for a sweep
    chosen on macro-F1, and its note nested parentheses. Every file the card links is pushed, by a relative path, and
    a push after `hf-transfer card` keeps a file the user added on the Hub."""
    from test_distill import save_classifier

    finetuned = save_classifier(tmp_path / "finetuned", tiny_bert_dir, ["neg", "pos"])
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\n" + "".join(f"thing {i},{['neg', 'pos'][i % 2]}\n" for i in range(8)))
    out = tmp_path / "merged"
    argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(finetuned), "--alphas", "0,1"]
    assert (
        main([*argv, "--validation_file", str(dev), "--selection_metric", "f1_macro", "--output_dir", str(out)]) == 0
    )
    assert main(["push", str(out), "--hub_model_id", "tester/merged"]) == 0
    files = online.files("tester/merged")
    card = files["README.md"].decode()
    table, picture = card.index("### Confusion matrix"), card.index("](merge_eval.confusion_matrix.png)")
    assert table < picture < card.index("<!-- hf-transfer:end results -->")
    assert "![macro-F1 against α](merge_sweep.png)" in card
    assert "α was picked on the validation set alone: best validation macro-F1; ties go to the largest α" in card
    links = linked_files(card)
    assert {"merge_sweep.png", "merge_eval.confusion_matrix.png"} <= set(links)
    assert all(link in files and not link.startswith(("/", "~")) for link in links), (links, sorted(files))

    HfApi(endpoint=online.url, token=TOKEN).upload_file(
        path_or_fileobj=b"mine", path_in_repo="notes.txt", repo_id="tester/merged"
    )
    (out / "README.md").write_text((out / "README.md").read_text() + "\n## My notes\n\nkept\n")
    assert main(["card", str(out)]) == 0
    assert main(["push", str(out), "--hub_model_id", "tester/merged"]) == 0
    files = online.files("tester/merged")
    assert files["notes.txt"] == b"mine" and "## My notes" in files["README.md"].decode()
    assert all(link in files for link in linked_files(files["README.md"].decode()))


def test_an_adapter_push_leaves_its_merged_model_for_a_repo_of_its_own(online, tmp_path, tiny_bert_dir, caplog):
    """merge_adapter's `merged/` went up inside the adapter's repo: a subfolder `pipeline()` cannot load, with a card
    naming a repo that did not exist. It stays out, and the log gives the command that pushes it on its own."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, BertForSequenceClassification

    base = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    folder = tmp_path / "run"
    get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"])).save_pretrained(folder)
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**adapter_config, "base_model_name_or_path": "org/tiny"}))
    card = folder / "README.md"  # PEFT's placeholder names the local base: the Hub id, as a push asks for
    card.write_text(card.read_text().replace(str(tiny_bert_dir), "org/tiny"))
    base.save_pretrained(folder / "merged")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder / "merged")
    (folder / "merged" / "README.md").write_text("---\nlicense: apache-2.0\n---\n# run-merged\n")
    with caplog.at_level("WARNING"):
        assert main(["push", str(folder), "--hub_model_id", "tester/run"]) == 0
    files = online.files("tester/run")
    assert "adapter_model.safetensors" in files and not [f for f in files if f.startswith("merged/")]
    assert f"hf-transfer push {folder / 'merged'} --hub_model_id tester/run-merged" in caplog.text
    assert main(["push", str(folder / "merged"), "--hub_model_id", "tester/run-merged"]) == 0
    assert "model.safetensors" in online.files("tester/run-merged")


def test_a_checkpoint_push_holds_back_its_training_state(online, tmp_path, tiny_bert_dir, caplog, capsys):
    """`hf-transfer push OUT/checkpoint-4` uploaded optimizer.pt (about twice the model), scheduler.pt, rng_state.pth
    and trainer_state.json: training state that only resumes a run. They stay out, said in one line, unless asked."""
    from transformers import BertForSequenceClassification

    folder = tmp_path / "run" / "checkpoint-4"
    BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2).save_pretrained(folder)
    state = ["optimizer.pt", "rng_state_0.pth", "scaler.pt", "scheduler.pt", "trainer_state.json"]
    for name in [*state, "training_args.bin"]:
        (folder / name).write_bytes(b"{}")
    # Without a README it is refused, saying why the run's card is not the checkpoint's (the README had said any
    # checkpoint could be pushed, but the ones hf-transfer writes hold no card).
    assert main(["push", str(folder), "--hub_model_id", "tester/ckpt"]) == 2
    assert "it is a Trainer checkpoint: write a README.md there" in capsys.readouterr().err
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# checkpoint\n")
    with caplog.at_level("WARNING"):
        assert main(["push", str(folder), "--hub_model_id", "tester/ckpt"]) == 0
    files = online.files("tester/ckpt")
    assert "model.safetensors" in files and not set(state + ["training_args.bin"]) & set(files), sorted(files)
    said = [r.getMessage() for r in caplog.records if "held back" in r.getMessage()]
    assert len(said) == 1 and ", ".join(state) in said[0] and "--include_training_state true" in said[0], said
    assert main(["push", str(folder), "--hub_model_id", "tester/ckpt-state", "--include_training_state", "true"]) == 0
    assert set(state) <= set(online.files("tester/ckpt-state"))
    # A finished run's folder holds trainer_state.json (its log) and no resume state: pushed as before.
    (folder / "optimizer.pt").unlink()
    for name in state[1:4]:
        (folder / name).unlink()
    finished = folder.rename(tmp_path / "finished")
    assert main(["push", str(finished), "--hub_model_id", "tester/finished"]) == 0
    assert "trainer_state.json" in online.files("tester/finished")
