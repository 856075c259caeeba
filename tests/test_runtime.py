"""Process facts for the run record: the memory figures agree with each other whatever the kernel's counters do."""

import os
import resource
import subprocess
import sys
from types import SimpleNamespace

import pytest

from hf_transfer.core import memory, runtime
from hf_transfer.errors import ConfigError


def test_the_peak_is_never_below_an_rss_already_read(monkeypatch):
    # The kernel updates ru_maxrss lazily: simulate a high-water mark that lags behind the RSS just read.
    monkeypatch.setattr(memory, "_highest_rss_seen", 0)
    monkeypatch.setattr(memory, "_peak_was_reset", False)  # ru_maxrss, as where VmHWM cannot be reset
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=1))
    first = memory.memory_kib()
    assert first["rss_kib"] > 1 and first["peak_rss_kib"] == first["rss_kib"]
    later = memory.memory_kib()
    assert later["peak_rss_kib"] >= max(first["rss_kib"], later["rss_kib"])


def test_a_real_high_water_mark_wins_when_it_is_higher(monkeypatch):
    monkeypatch.setattr(memory, "_highest_rss_seen", 0)
    monkeypatch.setattr(memory, "_peak_was_reset", False)
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=10**12))
    assert memory.memory_kib()["peak_rss_kib"] == 10**12


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="the kernel's peak is reset through /proc")
def test_a_commands_peak_and_allocator_line_are_its_own(monkeypatch):
    """In one process (a notebook calling `main` again and again), a run's peak was the process's: a tiny model's
    run after MiniLM's reported MiniLM's. One trim_memory_each_step run marked every later record's allocator line."""
    monkeypatch.setattr(memory, "_trimming", True)
    big = bytearray(200 << 20)  # 200 MiB resident, then freed: the process's peak
    big[::4096] = b"x" * len(big[::4096])
    before = memory.memory_kib()["peak_rss_kib"]
    del big
    memory.start_command_accounts()
    after = memory.memory_kib()
    assert after["peak_rss_kib"] < before - (150 << 10) and after["peak_rss_kib"] >= after["rss_kib"]
    assert "malloc_trim" not in memory.allocator_setting()


def test_precision_name():
    assert runtime.precision_name(SimpleNamespace(bf16=True, fp16=False)) == "bf16"
    assert runtime.precision_name(SimpleNamespace(bf16=False, fp16=True)) == "fp16"
    assert runtime.precision_name(SimpleNamespace()) == "fp32"


# The probe runs in a fresh interpreter (the allocator setting lasts for the whole process): it frees a 24 MiB block,
# which makes glibc's default raise its mmap threshold to 24 MiB, then allocates and touches 16 MiB (more than any free
# hole the imports leave in the heap) and a small block above it (which keeps the heap's top in use), frees the
# 16 MiB, and prints how much of them stayed resident, then again after `trim` mode's malloc_trim.
_ALLOCATOR_PROBE = """
import ctypes, sys
from hf_transfer.core import memory
from hf_transfer.errors import ConfigError
if sys.argv[1] == "release":
    memory.release_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(24 << 20))
before = memory.memory_kib()["rss_kib"]
block = libc.malloc(16 << 20)
ctypes.memset(block, 1, 16 << 20)
ctypes.memset(libc.malloc(4096), 1, 4096)
libc.free(block)
kept = memory.memory_kib()["rss_kib"] - before
if sys.argv[1] == "trim":
    memory.trim_freed_memory()
print(kept, memory.memory_kib()["rss_kib"] - before, memory.allocator_setting())
"""


def _probe(mode: str) -> tuple[int, int, str]:
    out = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE, mode], capture_output=True, text=True, check=True)
    kept, after, setting = out.stdout.split(maxsplit=2)
    return int(kept), int(after), setting.strip()


@pytest.mark.skipif(not memory.can_release_freed_memory(), reason="release_freed_memory needs glibc")
def test_release_freed_memory_hands_freed_blocks_back():
    kept, _, setting = _probe("default")
    assert kept >= 12 * 1024 and setting == "default"  # the heap kept the 16 MiB
    kept, _, setting = _probe("release")
    assert kept < 2 * 1024 and "fixed mmap threshold 1024 KiB" in setting


@pytest.mark.skipif(not memory.can_release_freed_memory(), reason="trim_memory_each_step needs glibc")
def test_trim_freed_memory_hands_a_hole_in_the_heap_back():
    kept, after_trim, setting = _probe("trim")
    assert kept >= 12 * 1024  # free() left the hole resident
    assert after_trim < 2 * 1024  # malloc_trim handed it back
    assert setting == "default, malloc_trim after each optimizer step (trim_memory_each_step)"


def test_release_freed_memory_is_a_one_line_error_without_glibc(monkeypatch):
    from hf_transfer.errors import ConfigError
    from hf_transfer.train.arguments import TransferTrainingArguments

    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))
    with pytest.raises(ConfigError, match="release_freed_memory needs glibc"):
        TransferTrainingArguments(output_dir="unused", release_freed_memory=True)


def test_trim_memory_each_step_is_a_one_line_error_without_glibc(monkeypatch):
    from hf_transfer.errors import ConfigError
    from hf_transfer.train.arguments import TransferTrainingArguments

    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))
    with pytest.raises(ConfigError, match="trim_memory_each_step needs glibc"):
        TransferTrainingArguments(output_dir="unused", trim_memory_each_step=True)


def test_only_the_main_process_logs_hf_transfers_warnings(monkeypatch):
    """Under a launcher every process printed the same warnings; the others now log errors alone, while the command
    runs: the level is restored after (an in-process `main` left every later warning unlogged). transformers'
    weight-loading report (a warning of `transformers.modeling_utils`) printed once per process too."""
    import logging

    child = logging.getLogger("hf_transfer.core.data")
    loading = logging.getLogger("transformers.modeling_utils")
    before, loading_before = child.isEnabledFor(logging.WARNING), loading.isEnabledFor(logging.WARNING)
    for rank, world, warns in (("0", "2", True), ("1", "2", False), ("0", "1", True)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", world)
        with runtime.quiet_other_processes():
            assert child.isEnabledFor(logging.WARNING) is (warns and before) and child.isEnabledFor(logging.ERROR)
            assert loading.isEnabledFor(logging.WARNING) is (warns and loading_before)
            assert loading.isEnabledFor(logging.ERROR)
        assert child.isEnabledFor(logging.WARNING) is before
        assert loading.isEnabledFor(logging.WARNING) is loading_before


def test_log_level_info_prints_hf_transfers_notes(monkeypatch, capsys):
    """`--log_level info` never showed hf-transfer's own notes (a teacher's labels reordered, rows truncated): its
    logger had no handler, so Python printed warnings only. They print under `log_level: info`, for the command's
    run only, once (a root handler, as `logging.basicConfig` sets, prints them itself), and not from a launch's
    other processes."""
    import logging

    child = logging.getLogger("hf_transfer.distill.teachers")
    monkeypatch.setattr(logging.root, "handlers", [])  # as a plain command line has it (pytest adds its own)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with runtime.quiet_other_processes("info"):
        child.info("a note")
    with runtime.quiet_other_processes():
        child.info("not shown")
    assert capsys.readouterr().err == "a note\n"
    assert logging.getLogger("hf_transfer").handlers == []
    root = logging.StreamHandler()  # stderr, as logging.basicConfig adds it
    monkeypatch.setattr(logging.root, "handlers", [root])
    with runtime.quiet_other_processes("info"):
        child.info("once")
    assert capsys.readouterr().err == "once\n"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with runtime.quiet_other_processes("info"):
        child.info("another process")
    assert capsys.readouterr().err == ""


def test_log_level_error_leaves_out_the_warnings_of_hf_transfer_transformers_and_datasets(monkeypatch):
    """`--log_level error` still printed hf-transfer's warnings (rows truncated) and transformers' loading report:
    only Trainer, once built, set transformers' level. Now each is at error for the command's run, and put back."""
    import logging

    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    ours = logging.getLogger("hf_transfer.core.data")
    before = (
        ours.isEnabledFor(logging.WARNING),
        transformers_logging.get_verbosity(),
        datasets_logging.get_verbosity(),
    )
    with runtime.quiet_other_processes("error"):
        assert not ours.isEnabledFor(logging.WARNING) and ours.isEnabledFor(logging.ERROR)
        assert transformers_logging.get_verbosity() == datasets_logging.get_verbosity() == logging.ERROR
    after = (
        ours.isEnabledFor(logging.WARNING),
        transformers_logging.get_verbosity(),
        datasets_logging.get_verbosity(),
    )
    assert after == before
    # Trainer sets transformers' level to log_level (info here) for the rest of the process: put back after.
    with runtime.quiet_other_processes("info"):
        transformers_logging.set_verbosity_info()
    assert transformers_logging.get_verbosity() == before[1]


def test_bf16_with_no_accelerator_trains_on_the_cpu_instead_of_stopping(monkeypatch):
    # Trainer stopped with "Your setup doesn't support bf16/gpu" until use_cpu was also set, though the CPU was the
    # only device there and has bf16 autocast. The resolved arguments (train's and distill's) say use_cpu, so the
    # record does too.
    from hf_transfer.train import arguments

    monkeypatch.setattr(arguments, "has_accelerator", lambda: False)
    args = arguments.TransferTrainingArguments(output_dir="unused", bf16=True, report_to="none")
    assert args.bf16 and args.use_cpu and args.device.type == "cpu"
    assert arguments.TransferTrainingArguments(output_dir="unused", report_to="none").use_cpu is False


def test_progress_bars_off_silences_ours_datasets_and_transformers_then_restores(capsys, monkeypatch):
    import datasets
    import transformers

    # conftest turns datasets' bars off for the whole suite (HF_DATASETS_DISABLE_PROGRESS_BARS=1): on for this test
    monkeypatch.setattr(sys.modules["datasets.utils.tqdm"], "HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    monkeypatch.setattr(sys.modules["datasets.utils.tqdm"], "_hf_datasets_progress_bars_disabled", False)
    rows = datasets.Dataset.from_dict({"x": list(range(5))})
    with runtime.progress_bars_off(True):
        assert runtime.progress_bar(total=3).disable
        rows.map(lambda r: r, desc="Tokenizing")
        assert not transformers.utils.logging.is_progress_bar_enabled()
    assert "Tokenizing" not in capsys.readouterr().err
    assert not runtime.progress_bar(total=3).disable
    assert datasets.is_progress_bar_enabled() and transformers.utils.logging.is_progress_bar_enabled()
    with runtime.progress_bars_off(False):
        assert not runtime.progress_bar(total=3).disable


def test_other_processes_of_a_launch_draw_no_bar(tmp_path, monkeypatch, capsys):
    """Under `accelerate launch` every process drew its own data bars; now the main process alone draws them."""
    from hf_transfer import cli
    from hf_transfer.outputs.arguments import CardArguments

    seen = {}

    def fake_card(args):
        seen[os.environ["RANK"]] = runtime.progress_bar(total=1).disable
        return {}

    monkeypatch.setitem(cli.COMMANDS, "card", lambda: ((CardArguments,), fake_card))
    monkeypatch.setattr(cli, "ONE_PROCESS_COMMANDS", frozenset())  # run in every process, as train is
    monkeypatch.setenv("WORLD_SIZE", "2")  # a launch of 2 processes (a launcher sets both)
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        assert cli.main(["card", str(tmp_path)]) == 0
    assert seen == {"1": True, "0": False}


def test_tqdm_disable_in_the_environment_silences_our_bars(monkeypatch):
    """tqdm reads TQDM_DISABLE only for a bar that passes no `disable`; ours always passed one, so the README's
    `TQDM_DISABLE=1` left evaluate's, predict's and the teacher pass's bars drawing."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert runtime.progress_bar(total=3).disable
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert not runtime.progress_bar(total=3).disable


def test_a_missing_optional_package_is_one_line_naming_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^hf-transfer export needs onnx, .*\[export\]'\.$"):
        runtime.check_installed("hf-transfer export", "export", "onnx", "json")
    runtime.check_installed("hf-transfer export", "export", "json")


def test_export_without_onnx_installed_stops_before_loading(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """It was a traceback from `import onnx` after the model had loaded."""
    import importlib.util

    from hf_transfer.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    out = tmp_path / "exported"
    assert main(["export", str(tiny_bert_dir), "--format", "onnx", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("needs onnx, which is not installed: pip install 'hf-transfer-learning[export]'.")
    assert len(err.splitlines()) == 1 and not out.exists()


def test_a_signal_whose_interrupt_was_swallowed_is_raised_again_until_the_block_ends():
    """Python drops an exception raised inside a weakref callback ("Exception ignored"), and a search under `timeout`
    went on. The block remembers the signal: `raise_if_signalled` raises it again, and nothing once the block ends."""
    import os
    import signal

    from hf_transfer.errors import Terminated

    runtime.raise_if_signalled()  # nothing received: nothing raised
    with runtime.signals_as_interrupts() as received:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Terminated:
            pass  # swallowed, as a weakref callback's exception is
        assert received == [signal.SIGTERM]
        with pytest.raises(Terminated):
            runtime.raise_if_signalled()
    runtime.raise_if_signalled()


def test_an_interrupt_raised_where_python_cannot_raise_it_prints_no_traceback(monkeypatch):
    """SIGTERM landing in a weakref callback printed "Exception ignored in: <function WeakKeyDictionary...>" and a
    traceback ending in Terminated, beside the command's one line; the command stops at its next check all the same."""
    import signal
    import sys
    import weakref

    from hf_transfer.core import runtime
    from hf_transfer.errors import Terminated

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: reported.append(type(unraisable.exc_value)))

    class Thing:
        pass

    def drop_one(error: type[BaseException]) -> None:
        def callback(ref):
            raise error()

        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing  # the callback runs here, and Python can only report its exception
        assert ref() is None

    with runtime.signals_as_interrupts() as received:
        drop_one(ValueError)  # before any signal, and any other error: reported as Python reports it
        received.append(signal.SIGTERM)
        drop_one(Terminated)
        drop_one(ValueError)
        with pytest.raises(Terminated):
            runtime.raise_if_signalled()
    assert reported == [ValueError, ValueError]
    drop_one(Terminated)  # outside the block Python's own report is untouched
    assert reported == [ValueError, ValueError, Terminated]


def test_a_second_ctrl_c_while_a_stopped_command_exits_prints_no_traceback(tmp_path, monkeypatch):
    """Three quick Ctrl-C: the first stopped the command with its one line, the next ones cut short the exit's
    removal of the scratch folder with two tracebacks. Run from the shell (`main()` reading sys.argv), the process
    now takes them with the system's default (it ends, quietly) once stopped; called with an argv (as in these
    tests), it leaves Python's handlers alone."""
    import signal
    import subprocess
    import sys

    from hf_transfer import cli
    from hf_transfer.outputs.arguments import CardArguments

    script = tmp_path / "stop.py"
    script.write_text(
        "import signal, sys\n"
        "from hf_transfer import cli\n"
        "from hf_transfer.outputs.arguments import CardArguments\n"
        "def interrupted(args):\n"
        "    raise KeyboardInterrupt\n"
        "cli.COMMANDS['card'] = lambda: ((CardArguments,), interrupted)\n"
        f"sys.argv = ['hf-transfer', 'card', {str(tmp_path)!r}]\n"
        "status = cli.main()\n"
        "print(status, *(signal.getsignal(s) is signal.SIG_DFL for s in (signal.SIGINT, signal.SIGTERM)))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "130 True True", (done.stdout, done.stderr)
    assert done.stderr.strip() == "hf-transfer card: interrupted.", done.stderr

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "card", lambda: ((CardArguments,), interrupted))
    before = signal.getsignal(signal.SIGINT)  # Python's default_int_handler; SIG_IGN in a background job (CI's)
    assert cli.main(["card", str(tmp_path)]) == 130
    assert signal.getsignal(signal.SIGINT) is before


def test_builds_left_by_a_killed_process_are_removed_by_the_next_one(tmp_path):
    """SIGKILL during a cache build, an export or a predict left `<key>.tmp-<pid>` (half the 14 MB cache; 693 MB at
    SST-2's size), `.onnx.export-<pid>.tmp` or `.out.csv.<pid>.tmp` for good: each was removed only by the process
    that made it. The next run of this host now removes those of dead processes, and only those."""
    import os
    import socket
    import subprocess
    import sys

    from hf_transfer.core.folders import staged_output_dir
    from hf_transfer.core.scratch import remove_dead_builds
    from hf_transfer.predict.writer import PredictionWriter

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host, dead, alive = socket.gethostname(), gone.pid, os.getpid()
    cache = tmp_path / "cache"
    for name in (f"k1.tmp-{host}-{dead}", f"k2.tmp-{host}-{alive}", f"k3.tmp-elsewhere-{dead}", "k4"):
        (cache / name).mkdir(parents=True)
        (cache / name / "data.arrow").write_bytes(b"rows")
    remove_dead_builds(cache.glob("*.tmp-*"))
    assert sorted(p.name for p in cache.iterdir()) == [f"k2.tmp-{host}-{alive}", f"k3.tmp-elsewhere-{dead}", "k4"]
    (tmp_path / f".onnx.export-{host}-{dead}.tmp").mkdir()
    with staged_output_dir(tmp_path / "onnx", "export") as building:
        (building / "model.onnx").write_bytes(b"graph")
    assert not list(tmp_path.glob(".onnx.*")) and (tmp_path / "onnx" / "model.onnx").is_file()
    with pytest.raises(KeyboardInterrupt), staged_output_dir(tmp_path / "new" / "sub" / "onnx", "export"):
        raise KeyboardInterrupt  # interrupted: nothing left, not even the folders made for it
    assert not (tmp_path / "new").exists()
    (tmp_path / f".out.csv.{host}-{dead}.tmp").write_text("text,label\n")
    with PredictionWriter(tmp_path / "out.csv"):
        pass
    assert not (tmp_path / f".out.csv.{host}-{dead}.tmp").exists()


def test_a_cache_hit_removes_the_builds_of_killed_processes(tmp_path):
    """Only a miss (a build) swept the killed builds of a cache folder, so a run that hit its entry left a killed
    build's half of a 693 MB entry beside it."""
    import socket
    import subprocess
    import sys

    import datasets

    from hf_transfer.core.caching import load_or_build

    features = datasets.Features({"x": datasets.Value("int64")})
    rows = lambda: ({"x": i} for i in range(3))  # noqa: E731
    load_or_build(tmp_path, "key", 3, features, rows, what="Test")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = tmp_path / f"other.tmp-{socket.gethostname()}-{gone.pid}"
    killed.mkdir()
    (killed / "data.arrow").write_bytes(b"half")
    _, info = load_or_build(tmp_path, "key", 3, features, rows, what="Test")
    assert info["hit"] is True and not killed.exists()


def test_a_hit_checked_by_hash_notes_the_sizes_and_times_so_the_next_one_does_not_hash(tmp_path, monkeypatch):
    """An entry written before sizes and times were kept (a bare sha256 per file), or copied, was hashed in full at
    every hit, for good (1 to 4 s for SST-2's feature cache): the first hit now notes them."""
    import json

    import datasets

    from hf_transfer.core import caching

    features = datasets.Features({"x": datasets.Value("int64")})
    rows = lambda: ({"x": i} for i in range(3))  # noqa: E731
    caching.load_or_build(tmp_path, "key", 3, features, rows, what="Test")
    meta_path = tmp_path / "key" / caching.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["files"] = {name: record["sha256"] for name, record in meta["files"].items()}  # an earlier version's
    meta_path.write_text(json.dumps(meta))
    _, info = caching.load_or_build(tmp_path, "key", 3, features, rows, what="Test")
    assert info["hit"] is True
    assert all(isinstance(r, dict) and r["size"] > 0 for r in json.loads(meta_path.read_text())["files"].values())

    def no_hash(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(caching, "_sha256", no_hash)
    _, info = caching.load_or_build(tmp_path, "key", 3, features, rows, what="Test")
    assert info["hit"] is True
