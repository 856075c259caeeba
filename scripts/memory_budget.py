"""What a training step must hold in memory, counted exactly, for the full fine-tune and for LoRA (issue 23, P5).

    python scripts/memory_budget.py --model $HF_TRANSFER_MODEL --data ../shared/data/sst2/train.tsv --rows 4000

For every batch of one epoch (the first `--rows` rows, batch 32, the Trainer's seeded shuffle, dynamic padding to
the batch's longest row, max length 128) the forward pass runs under `torch.autograd.graph.saved_tensors_hooks`,
which sees every tensor autograd keeps for the backward pass; tensors sharing a storage count once. The batch with
the most saved bytes sets the activation term. To it the script adds the gradients of the trainable parameters and
AdamW's two fp32 moments per trainable parameter: the memory a training step cannot do without, above the loaded
model. The ratio LoRA / full of those totals is the floor for P5's measured ratio (peak RSS above the loaded model),
which also holds the allocator's slack and the backward pass's transient buffers.

Configurations: the full fine-tune; LoRA as `sst2_lora_lean.yaml` sets it (r 8, alpha 16, query and value, pooler and
classifier trained) with lora_dropout 0.1; the same with lora_dropout 0. The model's own dropout layers are on in
all three, as in a real run.
"""

from __future__ import annotations

import argparse
import csv
import sys

import torch


def read_rows(path: str, rows: int) -> list[str]:
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [line[0].strip() for _, line in zip(range(rows), reader, strict=False)]


def saved_bytes(model, batch: dict) -> int:
    """Bytes of the distinct storages autograd saves during one forward pass of `batch`."""
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(**batch)
    del out
    return sum(storages.values())


def build(model_path: str, kind: str):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    if kind != "full":
        from peft import LoraConfig, TaskType, get_peft_model

        dropout = 0.1 if kind == "lora" else 0.0
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=8,
            lora_alpha=16,
            lora_dropout=dropout,
            target_modules=["query", "value"],
            modules_to_save=["pooler", "classifier"],
        )
        model = get_peft_model(model, config)
    model.train()
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="an SST-2 style tsv (sentence<TAB>label)")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    texts = read_rows(args.data, args.rows)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(args.seed)).tolist()
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    # Saved bytes grow with the batch's padded length (attention grows with its square): measure the longest few.
    longest = sorted(batches, key=lambda b: max(lengths[i] for i in b), reverse=True)[:3]
    mib = 1 << 20
    totals = {}
    print(f"{len(batches)} batches of {args.batch_size}; padded lengths of the 3 longest: "
          f"{[max(lengths[i] for i in b) for b in longest]}")  # fmt: skip
    for kind in ("full", "lora", "lora_dropout0"):
        model = build(args.model, kind)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        activations = 0
        for rows in longest:
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=args.max_length,
                              return_tensors="pt")  # fmt: skip
            batch["labels"] = torch.zeros(len(rows), dtype=torch.long)
            activations = max(activations, saved_bytes(model, batch))
        grads, moments = 4 * trainable, 8 * trainable
        totals[kind] = activations + grads + moments
        print(f"{kind:14s} trainable {trainable:>10,}  saved activations {activations / mib:7.1f} MiB  "
              f"gradients {grads / mib:6.1f} MiB  AdamW moments {moments / mib:6.1f} MiB  "
              f"total {totals[kind] / mib:7.1f} MiB")  # fmt: skip
    for kind in ("lora", "lora_dropout0"):
        print(f"limit {kind} / full: {totals[kind] / totals['full']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
