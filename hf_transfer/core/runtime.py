"""Facts about the running process: how many processes were launched, whether an accelerator is present, which
reporting integrations are installed, the precision in use, its progress bars, loggers and signals (memory use and the
allocator: `core/memory.py`)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading

from hf_transfer.errors import ConfigError, Terminated


def _launcher_number(name: str, default: int) -> int:
    """A launcher's integer variable; a stray or malformed one (`WORLD_SIZE=abc`, empty) is read as unset, as
    torch reads none at all outside a launch: a traceback had stopped even `--version`."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched_world_size() -> int:
    """The number of processes the launcher started (`WORLD_SIZE`; 1 when run directly)."""
    return max(_launcher_number("WORLD_SIZE", 1), 1)


def deepspeed_launch() -> bool:
    """Whether `accelerate launch` runs this process under DeepSpeed."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("true", "1")


def sharded_weights() -> str | None:
    """The engine, when `accelerate launch` shards the trained model's weights over several processes (FSDP,
    DeepSpeed ZeRO-3): a forward pass or an in-place edit of that model then needs every process at once, so the
    steps that run it in the main process alone (the teacher comparison, the adapter's reload check) cannot."""
    if launched_world_size() < 2:
        return None
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("true", "1"):
        return "FSDP"
    zero3 = deepspeed_launch() and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    return "DeepSpeed ZeRO-3" if zero3 else None


def is_launched_main_process() -> bool:
    """Whether this is the launcher's process 0 (`RANK`; true when run directly, whatever a stray `RANK` says: with
    `RANK=-1` left in the environment and no launch, every command printed nothing and exited 0)."""
    return launched_world_size() <= 1 or _launcher_number("RANK", 0) == 0


@contextlib.contextmanager
def quiet_other_processes(log_level: str = "passive"):
    """Under a launcher, hf_transfer's own warnings and notes are logged by the main process alone while a command
    runs: every process printed the same lines. Errors still print from every process. With `log_level` info or
    debug, its notes print too (a teacher's labels reordered, rows truncated): with no handler of its own the logger
    printed warnings only. With error or critical, its warnings and those of transformers and datasets are left out
    (they printed whatever the level; Trainer sets transformers' level only once it is built). The levels are
    restored after (a command run in-process, by a test or a library user, leaves the loggers as it found them).
    transformers' weight-loading report is the main process's alone too: every process loads the same files. PEFT
    reads transformers' deprecated `is_gradient_checkpointing` each time it wraps or loads an adapter: that
    FutureWarning, which the user can do nothing about, is left out (-W error still sees any other)."""
    import warnings

    logger = logging.getLogger("hf_transfer")
    loading = logging.getLogger("transformers.modeling_utils")
    level, loading_level, handler, libraries = logger.level, loading.level, None, []
    if log_level != "passive":  # Trainer sets transformers' level to it, for the rest of the process: put back after
        import datasets.utils.logging
        import transformers.utils.logging

        libraries = [(each, each.get_verbosity()) for each in (transformers.utils.logging, datasets.utils.logging)]
    if launched_world_size() > 1 and not is_launched_main_process():
        logger.setLevel(logging.ERROR)
        loading.setLevel(logging.ERROR)
    elif log_level in ("error", "critical"):
        quiet = logging.ERROR if log_level == "error" else logging.CRITICAL
        for each, _ in libraries:
            each.set_verbosity(quiet)
        logger.setLevel(quiet)
    elif log_level in ("info", "debug", "detail"):
        logger.setLevel(logging.INFO)
        if not logger.hasHandlers():  # one of the root's (logging.basicConfig) would print each note too
            handler = logging.StreamHandler()  # stderr, the message alone, as Python prints a bare warning
            logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
            )
            yield
    finally:
        logger.setLevel(level)
        loading.setLevel(loading_level)
        for library, library_level in libraries:
            library.set_verbosity(library_level)
        if handler is not None:
            logger.removeHandler(handler)


@contextlib.contextmanager
def leaves_the_process_as_found():
    """What a command sets for its own run is put back when it returns, for a process that runs more (a notebook
    calling `main`): TOKENIZERS_PARALLELISM, set to false for the command (forked data-loader workers warned of it;
    the user's own batch encoding then ran on one thread), accelerate's process state, which its Trainer starts in
    the run's precision (the user's own `Accelerator()` then ran in bf16, or refused another precision), and what
    `full_determinism` switches on. A state the process had before the command is the user's, and stays."""
    environ = {name: os.environ.get(name) for name in ("TOKENIZERS_PARALLELISM", *_DETERMINISM_ENV)}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    state = sys.modules.get("accelerate.state")
    had_state = state is not None and bool(state.PartialState._shared_state)
    determinism = _torch_determinism()
    try:
        yield
    finally:
        for name, value in environ.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        _set_torch_determinism(determinism)
        state = sys.modules.get("accelerate.state")
        if state is not None and not had_state and launched_world_size() == 1:
            state.AcceleratorState._reset_state(reset_partial_state=True)


# What `full_determinism: true` (transformers' `enable_full_determinism`) sets for the whole process, besides torch's
# switches: it made every later step of a notebook deterministic, and slower, and refused ops with no such kernel.
_DETERMINISM_ENV = ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "FLASH_ATTENTION_DETERMINISTIC")


def _torch_determinism() -> tuple[bool, bool, bool]:
    """(deterministic algorithms, cudnn.deterministic, cudnn.benchmark): torch's defaults before it is imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False, False, False
    cudnn = torch.backends.cudnn
    return torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark


def _set_torch_determinism(values: tuple[bool, bool, bool]) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and _torch_determinism() != values:
        torch.use_deterministic_algorithms(values[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = values[1], values[2]


_bars_off = False


def progress_bar(*args, disable: bool = False, **kwargs):
    """A tqdm bar of ours, off under `progress_bars_off` (`disable_tqdm: true`, or a launcher's other process) and
    with `TQDM_DISABLE` set in the environment (tqdm reads it only for a bar that passes no `disable`)."""
    from tqdm.auto import tqdm

    off = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return tqdm(*args, disable=disable or _bars_off or off, **kwargs)


def check_installed(command: str, extra: str, *modules: str) -> None:
    """ConfigError naming the extra to install when one of `modules` is missing: found before any model loads, where
    the import failed with a traceback after loading."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"{command} needs {', '.join(missing)}, which {'are' if len(missing) > 1 else 'is'} not installed: "
            f"pip install 'hf-transfer-learning[{extra}]'."
        )


@contextlib.contextmanager
def progress_bars_off(off: bool):
    """While a command runs with `off`, no progress bar draws: ours, datasets' map and filter ("Labels", "Tokenizing"),
    transformers' weight loading and saving, the Hub's. `disable_tqdm: true` had silenced Trainer's bars alone, and
    under a launcher every process drew the data bars. Each library's setting is restored after."""
    global _bars_off
    if not off:
        yield
        return
    import datasets
    import huggingface_hub.utils as hub
    import transformers

    restore = []
    # HF_DATASETS_DISABLE_PROGRESS_BARS=0 set by the user wins (datasets would warn and keep its bars).
    if datasets.is_progress_bar_enabled() and datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is not False:
        datasets.disable_progress_bars()
        restore.append(datasets.enable_progress_bars)
    if transformers.utils.logging.is_progress_bar_enabled():
        transformers.utils.logging.disable_progress_bar()
        restore.append(transformers.utils.logging.enable_progress_bar)
    if not hub.are_progress_bars_disabled():
        hub.disable_progress_bars()
        restore.append(hub.enable_progress_bars)
    before, _bars_off = _bars_off, True
    try:
        yield
    finally:
        _bars_off = before
        for enable in restore:
            enable()


def effective_batch_size(per_device: int, accumulation: int, processes: int) -> int:
    """Training rows per optimizer step: per device, times the accumulation steps, times the processes."""
    return per_device * accumulation * processes


def has_accelerator() -> bool:
    import torch

    return torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()


def one_gpu_per_process(args) -> None:
    """Several GPUs visible to one process: Trainer would wrap the model in `nn.DataParallel`, whose replicas share
    the forwards and hooks this package patches (the frozen-trunk cache, the few-shot head) and whose batch the run
    record does not count. The process trains on the first GPU alone, and says how to use them all."""
    import torch

    if args.use_cpu or launched_world_size() > 1 or not torch.cuda.is_available():
        return
    if torch.cuda.device_count() > 1 and args.n_gpu > 1:
        args._n_gpu = 1
        if said_once("one_gpu_per_process"):  # arguments are built again (few-shot route, search trials)
            return
        logging.getLogger(__name__).warning(
            "%d GPUs are visible to this one process: it trains on the first alone; to train on all of them, launch "
            "one process per GPU: accelerate launch --multi_gpu --num_processes %d -m hf_transfer ...",
            torch.cuda.device_count(), torch.cuda.device_count(),
        )  # fmt: skip


_said: set[str] = set()


def said_once(what: str) -> bool:
    """True when `what` was said before in this process; marks it said."""
    said = what in _said
    _said.add(what)
    return said


def check_reporting_integrations(report_to) -> list[str]:
    """`report_to` as a list, names separated by commas split (`tensorboard,wandb`, as other list fields take them).
    Each integration must exist (a typo was told to `pip install` it) and be installed: else one line now, not a
    traceback once the model is loaded."""
    import difflib

    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    report_to = [report_to] if isinstance(report_to, str) else list(report_to or [])
    report_to = [part.strip() for name in report_to for part in str(name).split(",") if part.strip()]
    wanted = [name for name in report_to if name not in ("none", "all")]
    for name in (name for name in wanted if name not in INTEGRATION_TO_CALLBACK):
        near = difflib.get_close_matches(name, list(INTEGRATION_TO_CALLBACK), n=1)
        raise ConfigError(
            f"report_to {name!r} is no reporting integration; they are {', '.join(sorted(INTEGRATION_TO_CALLBACK))}, "
            f"all or none" + (f". Did you mean {near[0]!r}?" if near else ".")
        )
    missing = [name for name in wanted if name not in get_available_reporting_integrations()]
    if missing:
        extra = " (or `pip install hf-transfer-learning[tensorboard]`)" if "tensorboard" in missing else ""
        raise ConfigError(
            f"report_to {', '.join(missing)}: the integration is not installed; `pip install {' '.join(missing)}`"
            f"{extra}, or drop it from report_to."
        )
    return [name for name in report_to if name != "none"] if len(report_to) > 1 else report_to


def adopt_launch_precision(args) -> str:
    """`mixed_precision` from an accelerate config (`accelerate launch` passes it on as ACCELERATE_MIXED_PRECISION),
    which Trainer runs when neither bf16 nor fp16 is given: set as that flag, so it is checked, recorded and carded
    as given (the record said fp32). Returns the words that name where it came from, or ''."""
    mixed = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    say = logging.getLogger(__name__).warning if is_launched_main_process() else lambda *a: None  # once, not per rank
    if mixed not in ("bf16", "fp16"):
        return ""
    if args.bf16 or args.fp16:
        given = "bf16" if args.bf16 else "fp16"
        if given != mixed:  # the launcher's --mixed_precision fp16 gave way to --bf16 true in silence
            say("training in %s as given; the accelerate config's mixed_precision %s is not used.", given, mixed)
        return ""
    # said: it also overrides an explicit `--bf16 false`, as Trainer's does
    say(
        "training in %s, the accelerate config's mixed_precision (ACCELERATE_MIXED_PRECISION); to train in fp32, "
        "launch with --mixed_precision no.",
        mixed,
    )
    setattr(args, mixed, True)
    return " (the accelerate config's mixed_precision)"


def precision_name(args) -> str:
    """`bf16`, `fp16` or `fp32`, from TrainingArguments."""
    return "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else "fp32"


def run_autocast(args):
    """The autocast a Trainer run puts around its models' forward passes (accelerate's native AMP: bf16 or fp16 on
    the run's device, none in fp32), for passes made outside the Trainer that must compute as the run does."""
    import torch

    precision = precision_name(args)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(args.device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# What the run record says the saved model's figures (final evaluation, test, confusion matrix, calibration) were
# measured in, whatever precision trained it: the precision its float32 weights load in for evaluate and pipeline().
FINAL_METRICS_PRECISION = "fp32"


def score_in_fp32(model) -> None:
    """Take accelerate's mixed-precision autocast off a trained model's forward (Trainer's `model`, or the one its
    callbacks get), in place, once training is over: a bf16 or fp16 run saves float32 weights, which
    `hf-transfer evaluate` scores in fp32, so the figures reported as the saved model's are measured in fp32 too
    (per-epoch evaluations during training stay in the run's precision)."""
    from accelerate.utils import extract_model_from_parallel

    extract_model_from_parallel(model, keep_fp32_wrapper=False)


@contextlib.contextmanager
def signals_as_interrupts():
    """For the block: Ctrl-C raises KeyboardInterrupt, as always, and SIGTERM raises `Terminated` (a
    KeyboardInterrupt) instead of killing the process on the spot, so a staged folder, a temporary file or a cut-off
    checkpoint is removed for both. Yields the list of the signals received: a library may turn the interrupt into
    another error (an extension whose import was cut off raises ImportError), which is still an interrupt. A signal
    the caller ignores (a background job's SIGINT) stays ignored; a forked worker keeps the default behaviour."""
    received = _received_signals
    received.clear()
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield received
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked DataLoader or datasets worker: as if no handler had been set
            if signum == signal.SIGINT:
                signal.default_int_handler(signum, frame)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        received.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    hook = sys.unraisablehook

    def quiet_interrupt(unraisable):  # raised in a weakref callback or `__del__`: Python printed a traceback and
        if not (received and isinstance(unraisable.exc_value, KeyboardInterrupt)):  # went on; the next
            hook(unraisable)  # `raise_if_signalled` (each step, each trial) stops the command with its one line

    sys.unraisablehook = quiet_interrupt
    try:
        yield received
    finally:
        sys.unraisablehook = hook
        for signum, before in previous.items():
            signal.signal(signum, before)
        received.clear()


# The signals `signals_as_interrupts` received in its block (one block at a time: the command's).
_received_signals: list[int] = []


def raise_if_signalled() -> None:
    """The interrupt again, for a signal received in `signals_as_interrupts` whose exception never reached the
    command: raised inside a weakref callback or a `__del__` (Python prints "Exception ignored" and goes on), or
    turned into another error that a search counts as a failed trial. A search under `timeout` kept running."""
    if signalled():
        raise Terminated() if _received_signals[-1] == signal.SIGTERM else KeyboardInterrupt()


def signalled() -> bool:
    """Whether the command's `signals_as_interrupts` block has received Ctrl-C or SIGTERM."""
    return bool(_received_signals)
