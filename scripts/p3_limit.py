"""How fast a cached-trunk training step can be, measured on the real batches (issue 23, P3).

    python scripts/p3_limit.py --model $HF_TRANSFER_MODEL --data ../shared/data/sst2/train.tsv --rows 4000

P3 compares an epoch on the frozen-feature cache with an epoch of naive freezing (embeddings and the bottom k blocks
frozen, so they run in eval mode without autograd, every step). A cached step can at best skip that frozen work and
nothing else: its floor is the naive step minus the frozen trunk's forward. This script times, for the same batches
(the first `--rows` rows, batch 32, a seeded shuffle, dynamic padding, max length 128), in one process and alternated
per batch so that the machine's noise falls on all three alike:
- `naive`: a whole training step with the bottom k blocks frozen (forward, backward, AdamW step);
- `trunk`: the frozen part alone (embeddings and blocks 0..k-1, eval mode, no gradient): what a cache saves;
- `cached`: the training step on the trunk's output through `cached_trunk`, as `hf-transfer train` runs it.
The limit is (naive - trunk) / naive; `cached / naive` is what the cached path reaches without Trainer's loop and
the data loader around it. The trained blocks' own costs (their dropout layers and the attention dropout, which
sends SDPA to its slower kernel on CPU) are in both steps: no cache removes them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_budget import read_rows  # noqa: E402  (scripts/ is not a package)


def batches(tokenizer, texts: list[str], batch_size: int, max_length: int, seed: int) -> list[dict]:
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    out = []
    for start in range(0, len(order), batch_size):
        chunk = [texts[i] for i in order[start : start + batch_size]]
        batch = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        batch["labels"] = torch.tensor([i % 2 for i in order[start : start + batch_size]])
        out.append(dict(batch))
    return out


def setup(model_path: str, k: int):
    from transformers import AutoModelForSequenceClassification

    from hf_transfer.core.freezing import apply_freeze, resolve_frozen_parameters
    from hf_transfer.core.layers import discover_layers

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    layout = discover_layers(model)
    apply_freeze(model, resolve_frozen_parameters(layout, freeze_embeddings=True, freeze_layers=k))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    return model, layout, optimizer


def measure(model_path: str, k: int, steps: list[dict]) -> dict:
    from hf_transfer.train.feature_cache import _trunk_output, cached_trunk

    model, layout, optimizer = setup(model_path, k)
    times: dict[str, list[float]] = {"naive": [], "trunk": [], "cached": []}

    def step(batch, hidden=None):
        if hidden is None:
            loss = model(**batch).loss
        else:
            with cached_trunk(model, layout, k, hidden):
                loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i, batch in enumerate(steps):
        started = time.perf_counter()
        step(batch)
        naive = time.perf_counter() - started
        with torch.no_grad():
            started = time.perf_counter()
            was = model.training
            model.eval()
            hidden = _trunk_output(model, layout, k, {n: v for n, v in batch.items() if n != "labels"})
            model.train(was)
            trunk = time.perf_counter() - started
        started = time.perf_counter()
        step(batch, hidden.detach())
        cached = time.perf_counter() - started
        if i >= 3:  # warm-up batches are not counted
            for name, value in (("naive", naive), ("trunk", trunk), ("cached", cached)):
                times[name].append(value)
    total = {name: sum(values) for name, values in times.items()}
    return {
        "frozen_blocks": k,
        "steps": len(times["naive"]),
        "seconds": total,
        "limit": (total["naive"] - total["trunk"]) / total["naive"],
        "cached_over_naive": total["cached"] / total["naive"],
        "median_step_ms": {name: 1000 * statistics.median(values) for name, values in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a tsv whose first column is the sentence (SST-2's)")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--frozen_blocks", type=int, nargs="+", default=[4, 5])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    steps = batches(tokenizer, read_rows(args.data, args.rows), args.batch_size, args.max_seq_length, args.seed)
    print(f"{len(steps)} batches of {args.batch_size}, threads {torch.get_num_threads()}")
    for k in args.frozen_blocks:
        r = measure(args.model, k, steps)
        ms = r["median_step_ms"]
        print(
            f"k={k}: limit {r['limit']:.3f}  cached/naive {r['cached_over_naive']:.3f}  median ms: naive "
            f"{ms['naive']:.1f}, frozen trunk {ms['trunk']:.1f}, cached {ms['cached']:.1f} ({r['steps']} steps)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
