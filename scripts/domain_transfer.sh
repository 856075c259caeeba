#!/usr/bin/env bash
# Domain transfer and WiSE-FT weight interpolation on the Blitzer et al. (2007) Amazon reviews (books, dvd,
# electronics, kitchen), with all-MiniLM-L6-v2.
#
#   books: fine-tune on books train (scripts/configs/blitzer_books.yaml), evaluate on books dev (in-domain) and on the
#          dvd, electronics and kitchen dev sets (shifted), then sweep θ(α) = (1 − α)·θ_pretrained + α·θ_finetuned
#          over α = 0, 0.1, 0.2, 0.25, ..., 0.75, 0.8, 0.9, 1 with α picked on books dev alone (scripts/configs/blitzer_books_merge.yaml).
#   sst2:  the same evaluation and sweep for a model fine-tuned on SST-2 (scripts/configs/sst2.yaml): SST-2 dev picks
#          α, the four Blitzer dev sets are the shifted sets (scripts/configs/sst2_merge.yaml).
#   lpft:  LP-FT on books (Kumar et al. 2022): the same recipe as `books` after a linear probe on the frozen trunk
#          (linear_probe_epochs), both ends evaluated in and out of domain, then WiSE-FT between the linear-probe
#          classifier (α = 0) and the LP-FT classifier (α = 1), α picked on books dev alone. Not part of `all`.
#   sst2_lpft: LP-FT on full SST-2 (sst2.yaml after a linear probe), both ends evaluated on SST-2 dev and the four
#          Blitzer dev sets, then WiSE-FT between them, α picked on SST-2 dev alone. Not part of `all`.
#
# Usage: scripts/domain_transfer.sh [books|sst2|lpft|sst2_lpft|all] (default: all; sst2 is skipped when its model is
#        missing)
# Environment:
#   HF_TRANSFER_DATA_DIR   the data folder (default ../shared/data)
#   HF_TRANSFER_MODEL      the pretrained model, a Hub id or folder (default sentence-transformers/all-MiniLM-L6-v2)
#   HF_TRANSFER_RUNS       where the runs go (default runs)
#   HF_TRANSFER_SST2_MODEL the SST-2 classifier (default runs/sst2-minilm)
#   HF_TRANSFER_ALPHAS     the α grid (default 0,0.1,0.2,0.25,0.3,...,0.7,0.75,0.8,0.9,1)
#   HF_TRANSFER_LP_EPOCHS  the linear probe's epochs for `lpft` (default 10; it trains on the cached trunk) and
#                          `sst2_lpft` (default 1: SST-2 has 40 times the rows)
#   HF_TRANSFER_TRAIN_ARGS more flags for the training runs, e.g. "--bf16 true --use_cpu true"
#   HF_TRANSFER_RETRAIN=1  train the books model again even when its folder already holds one
set -euo pipefail
cd "$(dirname "$0")/.."

export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export HF_TRANSFER_DATA_DIR="${HF_TRANSFER_DATA_DIR:-../shared/data}"
export HF_TRANSFER_MODEL="${HF_TRANSFER_MODEL:-sentence-transformers/all-MiniLM-L6-v2}"
RUNS="${HF_TRANSFER_RUNS:-runs}"
SST2_MODEL="${HF_TRANSFER_SST2_MODEL:-runs/sst2-minilm}"
ALPHAS="${HF_TRANSFER_ALPHAS:-0,0.1,0.2,0.25,0.3,0.4,0.5,0.6,0.7,0.75,0.8,0.9,1}"
PART="${1:-all}"
read -ra TRAIN_ARGS <<<"${HF_TRANSFER_TRAIN_ARGS:-}"
DATA="$HF_TRANSFER_DATA_DIR"
# Long reviews: evaluate at the length the books model was trained with.
EVAL_ARGS=(--text_column_name sentence --label_column_name label --label_mapping "{0: negative, 1: positive}"
  --max_seq_length 256)

case "$PART" in books | sst2 | lpft | sst2_lpft | all) ;; *)
  echo "usage: $0 [books|sst2|lpft|sst2_lpft|all]" >&2
  exit 2
  ;;
esac
for domain in books dvd electronics kitchen; do
  [[ -f "$DATA/blitzer/$domain/dev.tsv" ]] || { echo "no $DATA/blitzer/$domain/dev.tsv: set HF_TRANSFER_DATA_DIR" >&2; exit 2; }
done

shifted_sets() { # --extra_eval NAME=FILE for every Blitzer domain but the one given
  for domain in books dvd electronics kitchen; do
    [[ "$domain" == "$1" ]] || printf '%s\n' --extra_eval "$domain=$DATA/blitzer/$domain/dev.tsv"
  done
}

books() {
  local model="$RUNS/blitzer-books-minilm"
  local -a shifted
  mapfile -t shifted < <(shifted_sets books)
  if [[ ! -f "$model/model.safetensors" || "${HF_TRANSFER_RETRAIN:-0}" == 1 ]]; then
    hf-transfer train --config scripts/configs/blitzer_books.yaml --output_dir "$model" --overwrite_output_dir true \
      "${TRAIN_ARGS[@]}"
  fi
  hf-transfer evaluate --model_name_or_path "$model" --validation_file "$DATA/blitzer/books/dev.tsv" \
    --validation_name books "${shifted[@]}" "${EVAL_ARGS[@]}" --output_file "$RUNS/blitzer-books-eval/metrics.json"
  rm -rf "$RUNS/blitzer-books-wiseft" # merge writes a new folder, never into an earlier one
  hf-transfer merge --config scripts/configs/blitzer_books_merge.yaml --finetuned "$model" --alphas "$ALPHAS" \
    --output_dir "$RUNS/blitzer-books-wiseft"
}

# lp_ft NAME CONFIG LP_EPOCHS VALIDATION_FILE VALIDATION_NAME MERGE_CONFIG: LP-FT with CONFIG into $RUNS/NAME, both
# ends evaluated on the validation set and the Blitzer domains it is not, then WiSE-FT between them.
lp_ft() {
  local model="$RUNS/$1" config="$2" epochs="$3" validation="$4" name="$5" merge="$6"
  local -a shifted
  mapfile -t shifted < <(shifted_sets "$name")
  if [[ ! -f "$model/model.safetensors" || "${HF_TRANSFER_RETRAIN:-0}" == 1 ]]; then
    hf-transfer train --config "$config" --linear_probe_epochs "$epochs" --output_dir "$model" --overwrite_output_dir true \
      "${TRAIN_ARGS[@]}"
  fi
  for end in linear_probe .; do
    hf-transfer evaluate --model_name_or_path "$model/$end" --validation_file "$validation" --validation_name "$name" \
      "${shifted[@]}" "${EVAL_ARGS[@]}" --output_file "$RUNS/$1-eval/${end/./lpft}.json"
  done
  rm -rf "$RUNS/$1-wiseft"
  hf-transfer merge --config "$merge" --pretrained "$model/linear_probe" --finetuned "$model" --alphas "$ALPHAS" \
    --output_dir "$RUNS/$1-wiseft"
}

sst2() {
  local -a shifted
  mapfile -t shifted < <(shifted_sets none)
  if [[ ! -f "$SST2_MODEL/model.safetensors" ]]; then
    echo "no SST-2 model in $SST2_MODEL (hf-transfer train --config scripts/configs/sst2.yaml, or set" \
      "HF_TRANSFER_SST2_MODEL)" >&2
    return 2
  fi
  hf-transfer evaluate --model_name_or_path "$SST2_MODEL" --validation_file "$DATA/sst2/dev.tsv" \
    --validation_name sst2 "${shifted[@]}" "${EVAL_ARGS[@]}" --output_file "$RUNS/sst2-eval/metrics.json"
  rm -rf "$RUNS/sst2-wiseft"
  hf-transfer merge --config scripts/configs/sst2_merge.yaml --finetuned "$SST2_MODEL" --alphas "$ALPHAS" \
    --output_dir "$RUNS/sst2-wiseft"
}

case "$PART" in
books) books ;;
sst2) sst2 ;;
lpft)
  lp_ft blitzer-books-lpft scripts/configs/blitzer_books.yaml "${HF_TRANSFER_LP_EPOCHS:-10}" \
    "$DATA/blitzer/books/dev.tsv" books scripts/configs/blitzer_books_merge.yaml
  ;;
sst2_lpft)
  lp_ft sst2-minilm-lpft scripts/configs/sst2.yaml "${HF_TRANSFER_LP_EPOCHS:-1}" "$DATA/sst2/dev.tsv" sst2 \
    scripts/configs/sst2_merge.yaml
  ;;
all)
  books
  if [[ -f "$SST2_MODEL/model.safetensors" ]]; then sst2; else echo "skipping the SST-2 part: no model in $SST2_MODEL" >&2; fi
  ;;
esac
