"""A command stopped part-way (Ctrl-C, SIGTERM, a full disk, a read-only output folder): one line and a sane exit
status, an earlier output left whole, and nothing half-written or temporary left behind."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_cli import train_argv, write_csv
from test_predict import rows, tiny_classifier

from hf_transfer import cli
from hf_transfer.cli import main
from hf_transfer.predict.writer import PredictionWriter

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_bert_dir):
    return tiny_classifier(tmp_path_factory.mktemp("interrupts") / "model", tiny_bert_dir, ["neg", "pos"])


def labelled(path: Path, n: int) -> Path:
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(n)]
    return write_csv(path, texts, ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(n)])


def run_script(script: str, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=600, env=env, cwd=REPO
    )


# SIGTERM to itself once the first chunk is in the temporary file: no sleep, no race.
TERM_AFTER_FIRST_CHUNK = """
import os, signal, sys
from hf_transfer.predict import writer
write = writer.PredictionWriter.write

def write_then_term(self, frame):
    write(self, frame)
    os.kill(os.getpid(), signal.SIGTERM)

writer.PredictionWriter.write = write_then_term
from hf_transfer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_mid_predict_keeps_the_old_output_and_leaves_no_temporary_file(model, tmp_path):
    """SIGTERM killed the process outright (status -15, no message) and left `.out.csv.<pid>.tmp` beside the output."""
    rows(40, empty=()).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "out.csv").write_text("old,content\n")
    argv = ["predict", "--model_name_or_path", str(model), "--input_file", str(tmp_path / "in.csv"),
            "--output_file", str(tmp_path / "out.csv"), "--chunk_rows", "8"]  # fmt: skip
    proc = run_script(TERM_AFTER_FIRST_CHUNK, argv)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "hf-transfer predict: stopped by SIGTERM."
    assert (tmp_path / "out.csv").read_text() == "old,content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


TERM_MID_CHECKPOINT = """
import os, signal, sys
from transformers import Trainer
save = Trainer._save_rng_state

def term_at_checkpoint_4(self, output_dir):
    if output_dir.endswith("checkpoint-4"):
        os.kill(os.getpid(), signal.SIGTERM)
    return save(self, output_dir)

Trainer._save_rng_state = term_at_checkpoint_4
from hf_transfer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_mid_checkpoint_removes_the_cut_off_checkpoint_as_ctrl_c_does(tiny_bert_dir, tmp_path):
    """SIGTERM (a scheduler, `kill`) left checkpoint-4 half-written beside the complete ones, with no message."""
    out = tmp_path / "out"
    extra = ["--save_strategy", "steps", "--save_steps", "2", "--max_steps", "6", "--per_device_train_batch_size", "4"]
    train, dev = labelled(tmp_path / "train.csv", 32), labelled(tmp_path / "dev.csv", 8)
    argv = train_argv(tiny_bert_dir, train, dev, out, *extra)
    proc = run_script(TERM_MID_CHECKPOINT, argv)
    assert proc.returncode == 143, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and err[-1].startswith("hf-transfer train: stopped by SIGTERM.")
    assert "--resume_from_checkpoint true" in err[-1]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()


# SIGTERM whose interrupt a library swallows (as Python does for one raised inside a weakref callback): at step 2.
TERM_SWALLOWED = """
import os, signal, sys
from hf_transfer.train import callbacks

def swallow(self, args, state, control, **kwargs):
    if state.global_step == 2:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            pass

callbacks.EvaluationKeepsRandomState.on_step_begin = swallow
from hf_transfer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_sigterm_whose_interrupt_was_swallowed_still_stops_the_run(tiny_bert_dir, tmp_path):
    """`timeout` stopping `search`: the interrupt raised inside a weakref callback was dropped ("Exception ignored"),
    and the run went on. The signal is remembered and the run stops at the step's end."""
    out = tmp_path / "out"
    extra = ["--save_strategy", "steps", "--save_steps", "2", "--max_steps", "8", "--per_device_train_batch_size", "4"]
    train, dev = labelled(tmp_path / "train.csv", 32), labelled(tmp_path / "dev.csv", 8)
    proc = run_script(TERM_SWALLOWED, train_argv(tiny_bert_dir, train, dev, out, *extra))
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("hf-transfer train: stopped by SIGTERM.")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]  # step 3 was never finished


@pytest.mark.parametrize("there_before", [False, True])
def test_ctrl_c_before_a_save_leaves_no_new_empty_output_dir(there_before, tiny_bert_dir, tmp_path, monkeypatch):
    """Ctrl-C in the first steps (nothing saved yet) left an empty `output_dir`; one the user had made stays."""
    from transformers import Trainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "training_step", interrupted)
    out = tmp_path / "out"
    if there_before:
        out.mkdir()
    train, dev = labelled(tmp_path / "train.csv", 16), labelled(tmp_path / "dev.csv", 8)
    assert main(train_argv(tiny_bert_dir, train, dev, out)) == 130
    assert out.is_dir() == there_before
    if there_before:
        assert list(out.iterdir()) == []


def test_ctrl_c_while_the_command_loads_is_one_line(monkeypatch, capsys):
    """Loading a command (torch, transformers: seconds) ran outside the CLI's handler: Ctrl-C there was a traceback
    wall, and an extension whose import it cut off raised ImportError, status 1."""

    def interrupted():
        raise KeyboardInterrupt

    def import_cut_off():  # what pybind11 does when Ctrl-C lands in an extension's initialisation
        try:
            os.kill(os.getpid(), signal.SIGINT)
            raise AssertionError("the signal handler did not run")
        except KeyboardInterrupt as err:
            raise ImportError("initialization failed") from err

    # Ctrl-C as a terminal delivers it (a process whose SIGINT is ignored, a background job, keeps it ignored; pytest
    # itself may run as one; what an earlier test leaves, conftest puts back)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        for loader in (interrupted, import_cut_off):
            monkeypatch.setitem(cli.COMMANDS, "predict", loader)
            try:
                status = main(["predict", "--model_name_or_path", "m"])
            except BaseException as err:  # noqa: BLE001 - a KeyboardInterrupt out of main would stop pytest itself
                pytest.fail(f"{type(err).__name__} escaped main")
            assert status == 130
            assert capsys.readouterr().err.strip().splitlines() == ["hf-transfer predict: interrupted."]
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    finally:
        signal.signal(signal.SIGINT, inherited)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def test_an_unwritable_output_is_one_line_before_any_work(model, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    """A read-only folder (or one without write permission) failed at the first write, after the work, with an
    OSError traceback. Tests run as root, for whom permission bits do not count, so the filesystem's answer is faked:
    a read-only mount answers `access(W_OK)` with no, as it does here."""
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and access(p, mode, **kw))
    data = labelled(tmp_path / "dev.csv", 8)
    model_argv = ["--model_name_or_path", str(model)]
    cases = {
        "predict": ["predict", *model_argv, "--input_file", str(data), "--output_file", str(locked / "p.csv")],
        "evaluate": ["evaluate", *model_argv, "--validation_file", str(data), "--output_file", str(locked / "m.json")],
        "export": ["export", str(model), "--format", "onnx", "--output_dir", str(locked / "onnx")],
        "merge": ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(model), "--alpha", "0.5",
                  "--output_dir", str(locked / "merged" / "deeper")],
        "train": train_argv(model, data, data, locked / "run"),
    }  # fmt: skip
    for command, argv in cases.items():
        assert main(argv) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"hf-transfer {command}: error:"), err
        assert f"{str(locked)!r}, the folder it would be made in, is not writable" in err[0], err
    assert list(locked.iterdir()) == []


def test_a_full_disk_at_evaluate_s_write_is_one_line(model, tmp_path, monkeypatch, capsys):
    """ENOSPC was a one-line error in train and distill only: evaluate, predict, export, merge printed a traceback."""
    from hf_transfer.evaluation import command

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(command, "write_json", full)
    data = labelled(tmp_path / "dev.csv", 8)
    argv = ["evaluate", "--model_name_or_path", str(model), "--validation_file", str(data)]
    assert main([*argv, "--output_file", str(tmp_path / "m.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hf-transfer evaluate: error: no space left on device"), err  # after the bars
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("stop", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_evaluate_stopped_mid_write_leaves_no_new_folder_or_half_output(stop, model, tmp_path, monkeypatch, capsys):
    """`--output_file NEWDIR/metrics.json` stopped at the picture (a full disk, Ctrl-C) left NEWDIR holding
    metrics.json and metrics.md, while the line said what was being written was removed. Now NEWDIR is gone; in a
    folder that existed, its earlier file stays and none of this run's is left."""
    from hf_transfer.evaluation import command

    def stopped(*args, **kwargs):
        raise stop

    monkeypatch.setattr(command, "write_confusion_matrices", stopped)
    data = labelled(tmp_path / "dev.csv", 8)
    argv = ["evaluate", "--model_name_or_path", str(model), "--validation_file", str(data)]
    new = tmp_path / "new" / "deeper"
    assert main([*argv, "--output_file", str(new / "metrics.json")]) == (1 if isinstance(stop, OSError) else 130)
    assert not (tmp_path / "new").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hf-transfer evaluate: error: no space left" if isinstance(stop, OSError) else "hf-")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    main([*argv, "--output_file", str(tmp_path / "old" / "metrics.json")])
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["notes.txt"]


def test_the_prediction_file_of_a_full_disk_is_removed(tmp_path):
    """The last flush fails on a full disk too: `abort` raised from it, and the temporary file stayed, keeping the
    disk full."""

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def close(self):
            self.handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RuntimeError, match="the failure"):
        with PredictionWriter(tmp_path / "out.csv") as writer:
            writer.write(pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}))
            writer._file = FullDisk(writer._file)
            raise RuntimeError("the failure")
    assert list(tmp_path.iterdir()) == []


def test_a_picture_cut_off_mid_write_leaves_the_earlier_one(tmp_path, monkeypatch):
    """savefig wrote straight onto the PNG: cut off, an earlier run's picture was left truncated."""
    from matplotlib.figure import Figure

    from hf_transfer.outputs.plots import save_confusion_matrix

    def cut_off(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    json_path, png_path = tmp_path / "cm.json", tmp_path / "cm.png"
    json_path.write_text("old json")
    png_path.write_bytes(b"old picture")
    monkeypatch.setattr(Figure, "savefig", cut_off)
    with pytest.raises(KeyboardInterrupt):
        save_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], json_path, png_path)
    assert png_path.read_bytes() == b"old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.json", "cm.png"]


def test_a_block_that_leaves_sigint_ignored_and_blocked_is_put_back_and_named():
    """Eighteenth review: a test that left SIGINT ignored or blocked made a later Ctrl-C test fail in the full suite
    only (its own signal was never delivered). conftest's autouse fixture runs every test inside
    `signal_state_kept`, which puts SIGINT and SIGTERM back after it and says what it had left changed."""
    from conftest import signal_state_kept

    handlers = [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with signal_state_kept() as changed:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)] == handlers
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask
    assert len(changed) == 1 and changed[0].startswith("signal state ") and "it was" in changed[0]
