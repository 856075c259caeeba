"""Faults and hostile inputs: a full disk, crafted pickles, odd text. Each must cost a clear line, never a
half-written model that looks finished, and never run code it was handed."""

import errno
import json
import pickle
from pathlib import Path

import hypothesis
import pandas as pd
import pytest
import torch
from hypothesis import strategies
from safetensors.torch import save_file
from test_cli import train_argv, write_csv

from hf_transfer.cli import main
from hf_transfer.distill.teachers import load_or_build_logit_cache
from hf_transfer.errors import DISK_FULL, storage_failure
from hf_transfer.outputs.checkpoints import complete_checkpoints


class _Planted:
    """Unpickling this calls `open(marker, "w")`: a stand-in for any code an attacker would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_pickle(path, marker):
    path.write_bytes(pickle.dumps(_Planted(marker)))
    return path


@pytest.fixture
def tiny_data(tmp_path):
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(48)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(48)]
    return write_csv(tmp_path / "train.csv", texts[:40], labels[:40]), write_csv(
        tmp_path / "dev.csv", texts[40:], labels[40:]
    )


# --- a full disk ----------------------------------------------------------------------------------------------------


def test_disk_full_detection_follows_wrapped_errors():
    assert storage_failure(OSError(errno.ENOSPC, "No space left on device")) == DISK_FULL
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from inner
    except RuntimeError as outer:
        assert storage_failure(outer) == DISK_FULL
    assert storage_failure(Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")) == (
        DISK_FULL
    )
    assert storage_failure(OSError(errno.EACCES, "Permission denied")) is None
    assert storage_failure(RuntimeError("shape mismatch")) is None


def test_a_file_size_limit_a_short_torch_write_and_a_full_sqlite_study_are_storage_failures(tmp_path):
    """torch.save's zip writer says only "unexpected pos N vs M" on a full disk (the errno is lost), SQLite says
    "database or disk is full", and a file-size limit (`ulimit -f`, FAT32's 4 GiB) is EFBIG: each was a traceback."""
    from hf_transfer.errors import DISK_FULL, FILE_TOO_LARGE, SHORT_WRITE, storage_failure

    assert storage_failure(OSError(errno.EFBIG, "File too large")) == FILE_TOO_LARGE
    assert storage_failure(Exception("Error while serializing: I/O error: File too large (os error 27)")) == (
        FILE_TOO_LARGE
    )
    assert storage_failure(Exception("(sqlite3.OperationalError) database or disk is full")) == DISK_FULL
    if Path("/dev/full").exists():  # a device every write to fails with ENOSPC: torch's own message, not a copy
        with pytest.raises(RuntimeError) as caught:
            torch.save(torch.zeros(4096), "/dev/full")
        assert storage_failure(caught.value) in (SHORT_WRITE, DISK_FULL)
    assert storage_failure(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9664 vs 9556"))
    assert storage_failure(RuntimeError("size mismatch for weight")) is None


def test_a_full_disk_before_any_checkpoint_advises_a_rerun_that_works(
    tmp_path, tiny_bert_dir, tiny_data, monkeypatch, capsys
):
    """With save_strategy no, a full disk at the final save said "rerun with --resume_from_checkpoint true", which is
    refused (no checkpoint), as a plain rerun is (the cut-off save's config.json)."""
    import transformers.modeling_utils as modeling_utils

    def full(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(modeling_utils, "safe_save_file", full)
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--save_strategy", "no")
    assert main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-transfer")]
    assert len(lines) == 1 and "outgrew the file-size limit (ulimit -f)" in lines[0], lines
    assert "no checkpoint was complete" in lines[0] and "--overwrite_output_dir true" in lines[0]
    assert "--resume_from_checkpoint" not in lines[0]
    monkeypatch.undo()
    assert main([*argv, "--overwrite_output_dir", "true"]) == 0  # the advice works


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 3906816 bytes. Error code 12 (Cannot allocate memory)"
        ),  # fmt: skip
        MemoryError(),
    ],
)
def test_running_out_of_memory_is_one_line(tmp_path, tiny_bert_dir, tiny_data, monkeypatch, capsys, error):
    """torch's CPU allocator raises a RuntimeError and Python a bare MemoryError: each was a 40-line traceback."""
    from transformers import Trainer

    def no_memory(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(Trainer, "training_step", no_memory)
    assert main(train_argv(tiny_bert_dir, *tiny_data, tmp_path / "run")) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hf-transfer")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("hf-transfer train: error: out of memory (") and "smaller batch size" in lines[0]
    assert "--resume_from_checkpoint true" in lines[0]


def test_full_disk_mid_checkpoint_stops_with_one_line_and_keeps_the_last_good_checkpoint(
    tmp_path, tiny_bert_dir, tiny_data, monkeypatch, capsys
):
    import transformers.modeling_utils as modeling_utils

    real_save = modeling_utils.safe_save_file
    calls = []

    def save_until_the_disk_fills(*args, **kwargs):
        calls.append(args[1])
        if len(calls) >= 2:  # checkpoint-2 is written, the disk is full when checkpoint-4's weights are
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(modeling_utils, "safe_save_file", save_until_the_disk_fills)
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--save_strategy", "steps", "--save_steps", "2")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("hf-transfer")]  # the rest is progress bars
    assert len(lines) == 1 and "no space left on device" in lines[0] and "checkpoint-2" in lines[0], lines
    assert "--resume_from_checkpoint true" in lines[0]
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-2"]
    assert not (out / "checkpoint-4").exists()  # the cut-off checkpoint is removed, giving its space back
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    # Nothing in output_dir looks like a finished run.
    assert not (out / "model.safetensors").exists() and not (out / "hf_transfer_run.json").exists()

    # With space again, the run resumes from the checkpoint that survived and finishes.
    monkeypatch.setattr(modeling_utils, "safe_save_file", real_save)
    assert main([*argv, "--resume_from_checkpoint", "true"]) == 0
    assert (out / "model.safetensors").is_file()


def test_ctrl_c_mid_checkpoint_removes_the_cut_off_checkpoint_and_resumes_from_the_last_good_one(
    tmp_path, tiny_bert_dir, tiny_data, monkeypatch, capsys
):
    """Ctrl-C (which `accelerate launch` passes to every process) while checkpoint-4 was being written left its
    weights and config, loadable, beside the complete checkpoints; a resumed run finished at a lower step with the
    cut-off checkpoint-4 still there."""
    from transformers import Trainer

    real_rng = Trainer._save_rng_state

    def interrupted_at_checkpoint_4(self, output_dir):
        if output_dir.endswith("checkpoint-4"):  # its weights and optimizer are written, its state is not
            raise KeyboardInterrupt
        return real_rng(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", interrupted_at_checkpoint_4)
    out = tmp_path / "run"
    argv = train_argv(tiny_bert_dir, *tiny_data, out, "--save_strategy", "steps", "--save_steps", "2")
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err and "--resume_from_checkpoint true" in err
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (out / "model.safetensors").exists() and not (out / "hf_transfer_run.json").exists()
    monkeypatch.setattr(Trainer, "_save_rng_state", real_rng)
    assert main([*argv, "--resume_from_checkpoint", "true"]) == 0
    assert (out / "model.safetensors").is_file()


# --- safe loading ---------------------------------------------------------------------------------------------------


def _checkpoint(folder, **files):
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    for name, value in files.items():
        (folder / f"{name}.json").write_text(json.dumps(value))
    return folder


def test_resuming_from_a_checkpoint_of_another_model_is_one_line_before_any_weight_loads(
    tmp_path, tiny_bert_dir, tiny_data, capsys
):
    """Trainer loaded these after the model, then stopped with a state-dict size mismatch (other labels, also in an
    adapter's saved head) or an
    optimizer-group ValueError (a full model resumed as an adapter), as tracebacks, leaving an empty output_dir."""
    config = json.loads((tiny_bert_dir / "config.json").read_text())
    other_labels = {**config, "architectures": ["BertForSequenceClassification"], "id2label": {0: "a", 1: "b", 2: "c"}}
    full = _checkpoint(tmp_path / "full" / "checkpoint-2", config=other_labels)
    lora = _checkpoint(tmp_path / "lora" / "checkpoint-2", adapter_config={"peft_type": "LORA", "r": 8})
    three = _checkpoint(tmp_path / "lora3" / "checkpoint-2", adapter_config={"peft_type": "LORA", "r": 8})
    head = {"base_model.model.classifier.weight": torch.zeros(3, 8)}  # PEFT saves the head beside the adapter
    head["base_model.model.classifier.bias"] = torch.zeros(3)
    save_file(head, str(three / "adapter_model.safetensors"))
    # A LoRA checkpoint of a deeper model: PEFT warned of unexpected keys, then the optimizer's traceback.
    deep = _checkpoint(tmp_path / "deep" / "checkpoint-2", adapter_config={"peft_type": "LORA", "r": 8})
    query = "base_model.model.bert.encoder.layer.5.attention.self.query"
    save_file({f"{query}.lora_A.weight": torch.zeros(8, 8), f"{query}.lora_B.weight": torch.zeros(8, 8)},
              str(deep / "adapter_model.safetensors"))  # fmt: skip
    cases = [
        (full, [], "holds a model with labels ['a', 'b', 'c'] but this run builds one with ['neg', 'pos']"),
        (full, ["--peft_method", "lora"], "holds a full model but this run trains a lora adapter"),
        (lora, [], "holds a PEFT adapter but this run trains a full model"),
        (lora, ["--peft_method", "lora", "--lora_r", "4"], "LoRA adapter of rank 8 but this run's lora_r is 4"),
        (three, ["--peft_method", "lora"], "an adapter whose head has 3 outputs but this run has 2 labels"),
        (deep, ["--peft_method", "lora"], "'bert.encoder.layer.5.attention.self.query', which this run's model"),
    ]
    for i, (checkpoint, extra, needle) in enumerate(cases):
        out = tmp_path / f"run{i}"
        argv = [*train_argv(tiny_bert_dir, *tiny_data, out), "--resume_from_checkpoint", str(checkpoint), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert not out.exists()


def test_a_crafted_pickle_checkpoint_is_refused_and_never_executed(tmp_path, tiny_bert_dir, tiny_data, capsys):
    from transformers import BertConfig

    model = tmp_path / "evil-model"
    model.mkdir()
    BertConfig.from_pretrained(tiny_bert_dir).save_pretrained(model)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).write_bytes((tiny_bert_dir / name).read_bytes())
    marker = tmp_path / "pwned"
    plant_pickle(model / "pytorch_model.bin", marker)
    out = tmp_path / "run"
    assert main(train_argv(model, *tiny_data, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load the weights" in err[0], err
    assert not marker.exists()
    assert not out.exists()


def test_a_crafted_pickle_adapter_is_one_line_in_predict_and_merge(tmp_path, tiny_bert_dir, tiny_data, capsys):
    """PEFT refuses an adapter_model.bin that holds more than tensors (weights_only), but predict, evaluate and merge
    let its UnpicklingError through as a traceback, exit 1."""
    out = tmp_path / "lora"
    assert main(train_argv(tiny_bert_dir, *tiny_data, out, "--peft_method", "lora", "--few_shot", "false")) == 0
    (out / "adapter_model.safetensors").unlink()
    marker = tmp_path / "pwned"
    plant_pickle(out / "adapter_model.bin", marker)
    capsys.readouterr()
    commands = [
        ["predict", "--model_name_or_path", str(out), "--input_file", str(tiny_data[1]), "--output_file",
         str(tmp_path / "p.csv")],
        ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(out), "--alpha", "1", "--output_dir",
         str(tmp_path / "m")],
    ]  # fmt: skip
    for argv in commands:
        assert main(argv) == 2, argv[0]
        err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip() and "Loading weights" not in ln]
        assert len(err) == 1 and "hold more than tensors" in err[0] and "use a safetensors adapter" in err[0], err
    assert not marker.exists() and not (tmp_path / "p.csv").exists() and not (tmp_path / "m").exists()
    # Not a pickle at all (a Git LFS pointer, left by a clone without LFS): unreadable, not called malicious.
    (out / "adapter_model.bin").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    assert main(commands[0]) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip() and "Loading weights" not in ln]
    assert len(err) == 1 and "its adapter_model.bin is not a readable torch file" in err[0], err


def test_a_pickle_planted_in_the_teacher_cache_is_never_loaded(tmp_path):
    import numpy as np

    logits = np.arange(12, dtype=np.float32).reshape(6, 2)
    _, info = load_or_build_logit_cache(tmp_path, "key", 6, lambda: logits)
    folder = tmp_path / "key"
    marker = tmp_path / "pwned"
    plant_pickle(folder / "state.pkl", marker)
    plant_pickle(folder / "cache-0001.pickle", marker)
    rebuilt = []
    dataset, info = load_or_build_logit_cache(tmp_path, "key", 6, lambda: rebuilt.append(1) or logits)
    assert not marker.exists()
    assert rebuilt == [1] and info["hit"] is False  # a foreign file fails the checksums: rebuilt, not trusted
    assert sorted(p.name for p in folder.iterdir()) == ["data.arrow", "meta.json"]
    np.testing.assert_array_equal(np.asarray(dataset["teacher_logits"]), logits)


def test_two_runs_building_the_same_cache_at_once_both_finish(tmp_path, monkeypatch):
    """The same command started twice at once (seeds side by side, a rerun while the first still runs): the run that
    finished its build second failed to rename it onto the first one's folder, a traceback ('Directory not empty')
    from distill's teacher-logit cache, the frozen-feature cache and linear_probe_epochs. It now uses the folder the
    other run put there (same key, same contents). Where a lock can be taken the second run waits for the first's
    build (test_distill); this is the case where none can (NFS without locks), so both build."""
    import errno
    import fcntl
    import os

    import numpy as np

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    logits = np.arange(12, dtype=np.float32).reshape(6, 2)
    real_pid = os.getpid()

    def build_while_another_run_builds():
        monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # the other run: its own tmp folder
        load_or_build_logit_cache(tmp_path, "key", 6, lambda: logits)
        monkeypatch.setattr(os, "getpid", lambda: real_pid)
        return logits

    dataset, info = load_or_build_logit_cache(tmp_path, "key", 6, build_while_another_run_builds)
    np.testing.assert_array_equal(np.asarray(dataset["teacher_logits"]), logits)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # no tmp folder left behind
    assert sorted(p.name for p in (tmp_path / "key").iterdir()) == ["data.arrow", "meta.json"]


def test_the_run_record_says_whether_remote_code_was_trusted(tmp_path, tiny_bert_dir, tiny_data):
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, *tiny_data, out)) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["trust_remote_code"] is False
    assert not list(out.rglob("*.bin")) or all(p.name == "training_args.bin" for p in out.rglob("*.bin"))
    assert (out / "model.safetensors").is_file()


# --- long inputs and odd text ---------------------------------------------------------------------------------------

ODD_TEXTS = [
    "",
    "   \t  ",
    "great 😀🎉👍 film",
    "فيلم رائع جدا",  # right-to-left
    "סרט גרוע",
    "nul\x00byte in the middle",
    "word " * 400,  # far longer than max_seq_length
    "mixed עברית and English 漢字",
    "\u200b\u200d zero-width",
    "normal good review",
]


def test_odd_text_trains_and_long_rows_are_counted_as_truncated(tmp_path, tiny_bert_dir):
    texts = ODD_TEXTS * 3
    labels = ["pos" if i % 2 else "neg" for i in range(len(texts))]
    train = tmp_path / "train.csv"
    dev = tmp_path / "dev.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(train, index=False)
    pd.DataFrame({"text": texts[:10], "label": labels[:10]}).to_csv(dev, index=False)
    out = tmp_path / "run"
    assert main(train_argv(tiny_bert_dir, train, dev, out, "--max_seq_length", "32")) == 0
    data = json.loads((out / "hf_transfer_run.json").read_text())["data"]
    # The 400-word row is the only one over 32 tokens; the empty and whitespace-only rows are dropped, counted.
    assert data["train"]["rows_truncated"] == 3 and data["validation"]["rows_truncated"] == 1
    assert sum(data["train"]["dropped"].values()) == 6


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(texts=strategies.lists(strategies.text(max_size=300), min_size=4, max_size=12))
@hypothesis.example(texts=["", "", "", "0"])  # the one row left is of one class
def test_any_unicode_text_loads_and_tokenizes_without_crashing(texts, tiny_bert_dir):
    from transformers import AutoTokenizer

    from hf_transfer.core.arguments import DataArguments
    from hf_transfer.core.data import load_data, tokenize_data
    from hf_transfer.errors import DataError

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.jsonl"
        labels = ["a", "b"] * len(texts)
        pd.DataFrame({"text": texts, "label": labels[: len(texts)]}).to_json(path, orient="records", lines=True)
        args = DataArguments(train_file=str(path), validation_file=str(path), text_column_name="text")
        usable = [text for text in texts if text.strip()]
        if not usable:  # every row blank: a clear error is the right answer, and the only one allowed
            with pytest.raises(DataError, match="no usable rows"):
                load_data(args)
            return
        if len({label for text, label in zip(texts, labels, strict=False) if text.strip()}) == 1:
            with pytest.raises(DataError, match="has a single class"):  # the rows left are all of one class
                load_data(args)
            return
        prepared = load_data(args)
        assert prepared.summary["train"]["rows"] == len(usable)
        assert prepared.summary["train"]["dropped"]["empty_text"] == len(texts) - len(usable)
        tokenized = tokenize_data(prepared, tokenizer, max_seq_length=16)
        assert all(len(ids) <= 16 for ids in tokenized["train"]["input_ids"])
        assert prepared.summary["train"]["rows_truncated"] <= len(tokenized["train"])


def test_a_resume_that_passes_over_a_cut_off_checkpoint_says_so(tmp_path, caplog):
    """A kill mid-save leaves checkpoint-4 without its state: `true` resumed from checkpoint-2 saying only
    "resumed_from checkpoint-2", while two steps were to be trained again."""
    import logging
    from types import SimpleNamespace

    from hf_transfer.outputs.run_folder import resolve_resume_checkpoint

    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (tmp_path / "checkpoint-1").mkdir()  # older and incomplete: not worth a word
    args = SimpleNamespace(resume_from_checkpoint="true", output_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        resolve_resume_checkpoint(args)
    assert args.resume_from_checkpoint == str(tmp_path / "checkpoint-2")
    assert "checkpoint-4 cannot be resumed from (cut off mid-save, or its state is damaged): resuming from " in (
        caplog.text
    )
    assert "checkpoint-1" not in caplog.text


def test_the_copy_a_killed_parquet_rewrite_leaves_is_removed_by_the_next_predict(tmp_path):
    """Widening a parquet output's schema renames the build to a copy first; named `<build>.old`, a kill during the
    rewrite left an output-sized hidden file that no later run recognised as its own."""
    import socket

    from hf_transfer.predict.writer import PredictionWriter

    dead = tmp_path / f".out.parquet.old.{socket.gethostname()}-999999999.tmp"  # no such process
    dead.write_bytes(b"rows")
    PredictionWriter(tmp_path / "out.parquet")
    assert not dead.exists()


def test_a_checkpoint_lacking_only_our_files_is_kept_when_a_run_stops(tmp_path):
    """Trainer rotates the older checkpoints away (save_total_limit) before our files are written: stopped in that
    window, removing the new one as cut off left no checkpoint at all. It stays (its weights are whole); a resume
    passes over it."""
    from hf_transfer.outputs.checkpoints import stop_cleanly

    kept = tmp_path / "checkpoint-20"
    kept.mkdir()
    (kept / "model.safetensors").write_bytes(b"weights")
    state = {"global_step": 20, "stateful_callbacks": {"CheckpointFiles": {"args": {"files": ["order.json"]}}}}
    (kept / "trainer_state.json").write_text(json.dumps(state))
    cut = tmp_path / "checkpoint-30"
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(b"half")  # no trainer_state.json: cut off
    with pytest.raises(KeyboardInterrupt), stop_cleanly(str(tmp_path), is_main=True):
        raise KeyboardInterrupt
    assert kept.is_dir() and not cut.exists()
    assert complete_checkpoints(tmp_path) == []  # not resumed from: it lacks order.json


def test_the_folder_lock_takes_a_path_once_and_leaves_no_file_where_locks_fail(tmp_path, monkeypatch):
    import fcntl

    from hf_transfer.core.folder_lock import folders_held, lock_path

    out = tmp_path / "run"
    (tmp_path / "link").symlink_to(out)
    with folders_held([out, str(out), tmp_path / "link"], "train"):  # one folder, three spellings: held once
        assert lock_path(out).is_file()
    assert not lock_path(out).exists()

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)  # NFS mounted nolock: the run goes on, unlocked
    with folders_held([out], "train"):
        assert not lock_path(out).exists()
