"""`python scripts/evaluate.py --model_name_or_path DIR --validation_file FILE`: the same as `hf-transfer evaluate`."""

import sys

from hf_transfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
