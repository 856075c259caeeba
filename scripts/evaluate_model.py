"""`python scripts/evaluate_model.py --model_name_or_path DIR --validation_file FILE`: as `hf-transfer evaluate`.

Not `evaluate.py`: a script's folder comes first on sys.path, so that name would hide the `evaluate` library."""

import sys

from hf_transfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
