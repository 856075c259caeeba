"""What a push uploads of a run's records: absolute paths on this machine cut to their last part, everything else as
it was (outputs/published.py). The end-to-end push is in test_hub.py."""

import json
import os

import yaml

from hf_transfer.outputs.published import publishable, published_text, without_local_paths


def test_absolute_paths_are_cut_to_their_last_part_and_nothing_else_changes():
    record = {
        "train_file": "/home/me/private data/train.csv",
        "output_dir": "/srv/runs/sst2/",
        "model_name_or_path": "~/models/minilm",
        "relative": "../shared/data/sst2/dev.tsv",
        "hub": "sentence-transformers/all-MiniLM-L6-v2",
        "url": "https://huggingface.co/org/model/resolve/main/x",
        "note": "resumed from /home/me/runs/x/checkpoint-500 at step 500; ratio 1/2, a/b",
        "files": {"/home/me/dvd.tsv": ["/home/me/a.tsv", 3, None, 0.5]},
        "regex": "encoder\\.layer\\.6\\.",
    }
    assert without_local_paths(record) == {
        "train_file": "train.csv",
        "output_dir": "sst2",
        "model_name_or_path": "minilm",
        "relative": "../shared/data/sst2/dev.tsv",
        "hub": "sentence-transformers/all-MiniLM-L6-v2",
        "url": "https://huggingface.co/org/model/resolve/main/x",
        "note": "resumed from checkpoint-500 at step 500; ratio 1/2, a/b",
        "files": {"dvd.tsv": ["a.tsv", 3, None, 0.5]},
        "regex": "encoder\\.layer\\.6\\.",
    }


def test_a_label_name_that_starts_with_a_slash_is_not_a_path(tmp_path):
    """Thirty-seventh review: a push cut a class named `/neutral` to `neutral` in the published records (any text
    starting with `/` was read as a path); a path is at least two parts deep, as inside a text. A rewritten YAML
    record keeps a text that reads as a number quoted (PyYAML wrote the class "1e3" plain: read back as 1000.0)."""
    record = {"label_names": ["/neutral", "/", "good"], "train_file": "/data/train.csv", "run_name": "/x/"}
    assert without_local_paths(record) == {"label_names": ["/neutral", "/", "good"], "train_file": "train.csv",
                                           "run_name": "/x/"}  # fmt: skip
    (tmp_path / "config.yaml").write_text('class_names: ["1e3", "/neutral"]\ntrain_file: /abs/dir/t.csv\n')
    from hf_transfer.core.yaml_config import read_yaml

    assert read_yaml(published_text(tmp_path / "config.yaml")) == {"class_names": ["1e3", "/neutral"],
                                                                   "train_file": "t.csv"}  # fmt: skip


def test_records_are_rewritten_by_format_and_tokenizer_files_never(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"train_file": "/abs/dir/train.csv", "accuracy": 0.9}))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"validation_file": "/abs/dir/dev.csv", "seed": 1}))
    (tmp_path / "report.md").write_text("| set | file |\n|---|---|\n| dvd | `/abs/dir/dvd.tsv` |\n")
    (tmp_path / "clean.json").write_text(json.dumps({"model": "runs/x", "accuracy": 0.9}))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"vocab": {"/usr/bin/x": 1}}))
    (tmp_path / "README.md").write_text("My notes: the raw data is in /srv/team/data.\n")
    assert json.loads(published_text(tmp_path / "run.json")) == {"train_file": "train.csv", "accuracy": 0.9}
    assert yaml.safe_load(published_text(tmp_path / "config.yaml")) == {"validation_file": "dev.csv", "seed": 1}
    assert published_text(tmp_path / "report.md").endswith("| dvd | `dvd.tsv` |\n")
    assert published_text(tmp_path / "clean.json") is None
    assert published_text(tmp_path / "tokenizer.json") is None
    assert published_text(tmp_path / "README.md") is None  # the card: the user's own text is theirs


def test_the_upload_folder_links_the_rest_and_leaves_the_run_folder_as_it_was(tmp_path):
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "model.safetensors").write_bytes(b"\x00weights")
    (run / "sub" / "eval_results.json").write_text(json.dumps({"file": "/abs/dir/dev.csv"}))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with publishable(run) as upload:
        assert upload != run and not upload.is_relative_to(run)
        assert json.loads((upload / "sub" / "eval_results.json").read_text()) == {"file": "dev.csv"}
        assert (upload / "model.safetensors").read_bytes() == b"\x00weights"
        assert os.path.realpath(upload / "model.safetensors") == str((run / "model.safetensors").resolve())
    assert not upload.exists()
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    (run / "sub" / "eval_results.json").write_text(json.dumps({"file": "dev.csv"}))
    with publishable(run) as upload:
        assert upload == run  # nothing to rewrite: the folder itself goes up
