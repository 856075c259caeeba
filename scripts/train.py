"""`accelerate launch scripts/train.py --config CONFIG.yaml [--field value ...]`: the same as `hf-transfer train`."""

import sys

from hf_transfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
