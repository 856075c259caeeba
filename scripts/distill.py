"""`accelerate launch scripts/distill.py --config CONFIG.yaml [--field value ...]`: same as `hf-transfer distill`."""

import sys

from hf_transfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
