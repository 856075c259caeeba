"""Print the bad-input matrix as a markdown table: case, message, exit status, pass.

BAD_INPUT_REPORT=/tmp/matrix.jsonl python -m pytest -q tests/test_bad_inputs.py
python scripts/bad_input_table.py /tmp/matrix.jsonl
"""

import json
import sys


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    print("| case | message (stderr, one line) | exit | pass |")
    print("|---|---|---:|:---:|")
    for row in rows:
        ok = row["exit"] == 2 and row["lines"] == 1 and row["output_ok"]
        message = row["message"].replace("|", "\\|")
        print(f"| {row['case']} | {message} | {row['exit']} | {'yes' if ok else 'NO'} |")
    print(
        f"\n{sum(1 for r in rows if r['exit'] == 2 and r['lines'] == 1 and r['output_ok'])} of {len(rows)} cases pass."
    )


if __name__ == "__main__":
    main(sys.argv[1])
