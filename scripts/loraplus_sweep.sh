#!/usr/bin/env bash
# LoRA+ against plain LoRA (README, Adapters): the first 4,000 SST-2 training rows, 1 epoch, sst2_lora_lean.yaml
# (r 8, query+value, dropout 0), or with --all_linear sst2_lora.yaml (r 4, all-linear, LR 1e-3), plus the flags
# below. Variants are compared on 2,000 held-out SST-2 *training* sentences (rows 60,001-62,000, never trained on),
# so SST-2 dev is not used to choose. One line per run in OUT/summary.txt. Finished runs are skipped.
#   bash scripts/loraplus_sweep.sh [OUT]        (default runs/sweeps/loraplus)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/sweeps/loraplus}
DATA=${HF_TRANSFER_DATA_DIR:-../shared/data}/sst2
mkdir -p "$OUT"
HELDOUT=$OUT/heldout.tsv
[ -f "$HELDOUT" ] || { head -1 "$DATA/train.tsv"; sed -n 60002,62001p "$DATA/train.tsv"; } > "$HELDOUT"
run() {
  local name=$1 config=scripts/configs/sst2_lora_lean.yaml
  shift
  if [ "${1:-}" = "--all_linear" ]; then config=scripts/configs/sst2_lora.yaml; shift; fi
  [ -f "$OUT/$name/hf_transfer_run.json" ] && return 0
  hf-transfer train --config "$config" --max_train_samples 4000 --eval_strategy no \
    --validation_file "$HELDOUT" --disable_tqdm true --overwrite_output_dir true --output_dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  python - "$OUT/$name" "$name" >> "$OUT/summary.txt" <<'PY'
import json, sys
folder, name = sys.argv[1:3]
r = json.load(open(f"{folder}/hf_transfer_run.json"))
print(name, "heldout_accuracy", round(r["eval_metrics"]["eval_accuracy"], 4))
PY
}
run lr2e-3 --learning_rate 2e-3
run lr2e-3_plus4 --learning_rate 2e-3 --loraplus_lr_ratio 4
run lr1e-3_plus8 --learning_rate 1e-3 --loraplus_lr_ratio 8
run all_lr1e-3 --all_linear
run all_lr1e-3_plus8 --all_linear --loraplus_lr_ratio 8
