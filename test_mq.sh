#!/usr/bin/env bash
# Phase 1 evaluation: g_phi on fixed test VQMs (MAE, MSE, Pearson, Spearman, per-category
# breakdown, image-dependence check, scatter plot). Metrics are written as JSON next to the
# checkpoint; the console output is logged to ./logs/mq_test/.
#
# Edit the settings below, or set any of them from the environment:
#     DATASET=PH2 bash test_mq.sh          (the test split recorded by train_mq.sh)
#     CHECKPOINT=./checkpoints/mq/mq_PH2/best.pth TEST_CSV=... bash test_mq.sh
# With no edits it evaluates the demo g_phi that `bash train_mq.sh` trained.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

DATASET="${DATASET:-demo}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-mq_${DATASET}}"
CHECKPOINT="${CHECKPOINT:-./checkpoints/mq/${EXPERIMENT_NAME}/best.pth}"
TEST_CSV="${TEST_CSV:-}"             # empty = the TEST_CSV train_mq.sh recorded in the checkpoint
BATCH_SIZE="${BATCH_SIZE:-32}"
NUM_WORKERS="${NUM_WORKERS:-2}"
VAL_SAMPLES="${VAL_SAMPLES:-5}"      # fixed VQMs per test image
SEED="${SEED:-}"                     # seed of the test VQMs; empty = the checkpoint's
DEVICE="${DEVICE:-auto}"
PYTHON="${PYTHON:-python}"
LOG_DIR="${LOG_DIR:-./logs}"                        # console logs

if [[ ! -f "$CHECKPOINT" ]]; then
  echo "error: g_phi checkpoint not found: $CHECKPOINT (run 'bash train_mq.sh' first, or set CHECKPOINT)" >&2
  exit 1
fi

EXTRA=()
[[ -n "$SEED" ]] && EXTRA+=(--seed "$SEED")
[[ -n "$TEST_CSV" ]] && EXTRA+=(--test_csv "$TEST_CSV")
mkdir -p "$LOG_DIR/mq_test"
"$PYTHON" -u -m training.test_mq \
  --checkpoint "$CHECKPOINT" \
  --batch_size "$BATCH_SIZE" \
  --num_workers "$NUM_WORKERS" \
  --val_samples "$VAL_SAMPLES" \
  --device "$DEVICE" \
  ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee "$LOG_DIR/mq_test/${EXPERIMENT_NAME}.log"
