#!/usr/bin/env bash
# The LoRA recipe sweep behind sst2_lora_lean.yaml and sst2_lora.yaml (README, Adapters): the first 4,000 SST-2
# training rows, 1 epoch, each variant (flags on sst2_lora_lean.yaml) scored on SST-2 dev; one line per run in
# OUT/summary.txt (accuracy, trainable %, training peak above the loaded model). Finished runs are skipped. Set LOCK to a file to hold it (flock) around each run on a shared machine.
#   bash scripts/lora_sweep.sh [OUT]        (default runs/sweeps/lora)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/sweeps/lora}
mkdir -p "$OUT"
run() {
  local name=$1 config=scripts/configs/sst2_lora_lean.yaml
  shift
  if [ "${1:-}" = "--full" ]; then config=scripts/configs/sst2.yaml; shift; fi
  [ -f "$OUT/$name/hf_transfer_run.json" ] && return 0
  ${LOCK:+flock "$LOCK"} hf-transfer train --config "$config" --max_train_samples 4000 --eval_strategy no \
    --disable_tqdm true --overwrite_output_dir true --output_dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  python - "$OUT/$name" "$name" >> "$OUT/summary.txt" <<'PY'
import json, sys
folder, name = sys.argv[1:3]
r = json.load(open(f"{folder}/hf_transfer_run.json"))
print(name, "accuracy", round(r["eval_metrics"]["eval_accuracy"], 4), "trainable%",
      (r.get("adapter") or {}).get("trainable_percent", 100.0),
      "training_peak_above_loaded_MiB", r["memory"]["training_peak_above_loaded_model_kib"] // 1024)
PY
}
run full --full
run qv_r8_lr5e-4_d0.1 --learning_rate 5e-4 --lora_dropout 0.1
run qv_r8_lr1e-3_d0.1 --learning_rate 1e-3 --lora_dropout 0.1
run qv_r8_lr2e-3_d0.1 --learning_rate 2e-3 --lora_dropout 0.1
run qv_r8_lr1e-3_d0 --learning_rate 1e-3 --lora_dropout 0
run qv_r8_lr2e-3_d0 --learning_rate 2e-3 --lora_dropout 0
run qv_r8_lr3e-3_d0 --learning_rate 3e-3 --lora_dropout 0
run qv_r16_lr1e-3_d0.1 --learning_rate 1e-3 --lora_dropout 0.1 --lora_r 16 --lora_alpha 32
run att_r8_lr1e-3_d0.1 --learning_rate 1e-3 --lora_dropout 0.1 --target_modules query,key,value,attention.output.dense
run all_r4_lr1e-3_d0.1 --learning_rate 1e-3 --lora_dropout 0.1 --target_modules all-linear --lora_r 4 --lora_alpha 8
