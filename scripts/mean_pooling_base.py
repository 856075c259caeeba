r"""Write a copy of a base model with the few-shot route's mean-pooling block appended, so that `hf-transfer train`
fine-tunes a classifier whose head reads the mean-pooled sentence embedding (what sentence-transformers bases are
trained for) instead of the first token. The block is the one `hf_transfer.train.few_shot_head` builds: zero queries
and keys, an identity value projection, so the first position receives the masked mean of the last hidden states. Its
projections must stay as built, so the script prints the `freeze_patterns` regex that keeps them frozen:

    python scripts/mean_pooling_base.py --model $HF_TRANSFER_MODEL --output_dir runs/minilm-mean  # prints PATTERN
    hf-transfer train --config scripts/configs/sst2_best.yaml --model_name_or_path runs/minilm-mean \
        --freeze_patterns 'PATTERN'

For MiniLM, PATTERN is
    encoder\.layer\.6\.(attention\.self|attention\.output\.dense|intermediate|output\.dense)\.

The head's dense layer becomes `--pooler_scale`·identity (0.1 keeps tanh near-linear on LayerNorm outputs); the final
linear layer is left freshly initialised for training (or for `linear_probe_epochs`). The output loads with
`AutoModelForSequenceClassification` and needs no remote code. On SST-2 it was measured against the first-token head
(README, "The best SST-2 recipe"): it helps the linear probe, not the fine-tune.
"""

from __future__ import annotations

import argparse
import sys

from hf_transfer.train.few_shot_head import append_mean_pooling_block, head_parts


def freeze_pattern(block: int) -> str:
    """The regex (for `freeze_patterns`) that keeps the pooling block's projections as built; its LayerNorms train."""
    return rf"encoder\.layer\.{block}\.(attention\.self|attention\.output\.dense|intermediate|output\.dense)\."


def build(model_dir: str, output_dir: str, num_labels: int, pooler_scale: float, seed: int) -> str:
    """Save the model with the pooling block to `output_dir`; returns the freeze pattern for its new block."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
    parts = head_parts(model)
    if parts is None:
        raise SystemExit(f"{model_dir}: not a BERT-style encoder with a pooler or a RoBERTa-style head")
    append_mean_pooling_block(model, parts)
    with torch.no_grad():
        parts.dense.weight.copy_(torch.eye(parts.dense.in_features) * pooler_scale)
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(output_dir)
    return freeze_pattern(len(parts.blocks) - 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the base model folder")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_labels", type=int, default=2)
    parser.add_argument("--pooler_scale", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42, help="seeds the fresh final layer")
    args = parser.parse_args(argv)
    pattern = build(args.model, args.output_dir, args.num_labels, args.pooler_scale, args.seed)
    print(f"wrote {args.output_dir}; train it with --freeze_patterns '{pattern}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
