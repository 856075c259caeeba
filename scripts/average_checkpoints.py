"""Average the weights of a run's last checkpoints into one model (a uniform "soup" along the training trajectory,
as LAWA and SWA do), and write it as a plain model folder that `hf-transfer evaluate` and `pipeline()` load:

    python scripts/average_checkpoints.py --run runs/sst2/model --last 4 --output_dir runs/sst2/avg4
    python scripts/average_checkpoints.py --checkpoints runs/x/checkpoint-3500 runs/x/checkpoint-4000 --output_dir out

Floating-point tensors are averaged in float64 and stored in the checkpoints' dtype; integer buffers (position ids)
must agree and are kept. The tokenizer and config come from the last checkpoint; the run folder's
`hf_transfer_config.yaml`, when there is one, is copied so that `evaluate` reads the trained `max_seq_length`.
`averaged_from.json` names the checkpoints. Used for the SST-2 measurement in the README ("The best SST-2 recipe").
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

WEIGHTS = "model.safetensors"


def run_checkpoints(run: Path) -> list[Path]:
    """The run's `checkpoint-N` folders holding weights, in step order."""
    found = [
        p for p in run.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name) and (p / WEIGHTS).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def average_state_dicts(states: list[dict]) -> dict:
    """The element-wise mean of same-shaped state dicts (integer tensors must be equal and are kept)."""
    import torch

    if not states:
        raise ValueError("no state dict to average")
    keys = set(states[0])
    for state in states[1:]:
        if set(state) != keys:
            raise ValueError(f"the checkpoints hold different tensors: {sorted(keys ^ set(state))[:3]}")
    out = {}
    for key, first in states[0].items():
        if not first.is_floating_point():
            if any(not torch.equal(first, s[key]) for s in states[1:]):
                raise ValueError(f"{key!r} is an integer tensor that differs between checkpoints")
            out[key] = first.clone()
            continue
        total = sum(s[key].to(torch.float64) for s in states)
        out[key] = (total / len(states)).to(first.dtype).contiguous()
    return out


def average(checkpoints: list[Path], output_dir: Path, run: Path | None = None) -> Path:
    from safetensors.torch import load_file, save_file

    states = [load_file(str(c / WEIGHTS)) for c in checkpoints]
    averaged = average_state_dicts(states)
    output_dir.mkdir(parents=True, exist_ok=True)
    last = checkpoints[-1]
    for path in last.iterdir():  # config, tokenizer (not the optimizer, scheduler or trainer state)
        if path.is_file() and (path.suffix in (".json", ".txt", ".model") and path.name != "trainer_state.json"):
            shutil.copy2(path, output_dir / path.name)
    save_file(averaged, str(output_dir / WEIGHTS), metadata={"format": "pt"})
    if run is not None and (run / "hf_transfer_config.yaml").is_file():
        shutil.copy2(run / "hf_transfer_config.yaml", output_dir / "hf_transfer_config.yaml")
    (output_dir / "averaged_from.json").write_text(
        json.dumps({"checkpoints": [c.name for c in checkpoints]}, indent=2)
    )
    return output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run's output_dir; its last --last checkpoints are averaged")
    source.add_argument("--checkpoints", type=Path, nargs="+", help="checkpoint folders to average")
    parser.add_argument("--last", type=int, default=2, help="with --run: how many of the last checkpoints")
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.run is not None:
        found = run_checkpoints(args.run)
        if args.last < 1 or args.last > len(found):
            parser.error(f"--last {args.last}: {args.run} holds {len(found)} checkpoints with weights")
        checkpoints = found[-args.last :]
    else:
        checkpoints = list(args.checkpoints)
        missing = [str(c) for c in checkpoints if not (c / WEIGHTS).is_file()]
        if missing:
            parser.error(f"no {WEIGHTS} in {', '.join(missing)}")
    average(checkpoints, args.output_dir, args.run)
    print(f"averaged {', '.join(c.name for c in checkpoints)} into {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
