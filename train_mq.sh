#!/usr/bin/env bash
# Phase 1: train the weak models (once per data set), then the quality predictor g_phi.
#
# Edit the settings below for your data set, or set any of them from the environment:
#     EPOCHS=3 bash train_mq.sh
#     DATASET=PH2 TRAIN_CSV=... VAL_CSV=... TEST_CSV=... bash train_mq.sh
# The defaults are the paper's (docs/METHOD.md §2-§3) for a real data set. With no edits, a fresh
# clone builds the built-in demo set and trains on it with a CPU-sized profile.
# Relative paths are relative to the repository root (this script's folder).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# ---- Data set -------------------------------------------------------------------------
DATASET="${DATASET:-demo}"
TRAIN_CSV="${TRAIN_CSV:-./prepare_datasets/demo_data/train.csv}"
VAL_CSV="${VAL_CSV:-./prepare_datasets/demo_data/val.csv}"
TEST_CSV="${TEST_CSV:-./prepare_datasets/demo_data/test.csv}"

# shellcheck source=training/script_helpers.sh
source ./training/script_helpers.sh
check_demo_consistency TRAIN_CSV VAL_CSV TEST_CSV

# ---- CPU profile of the built-in demo (only applies when DATASET=demo) -----------------
if [[ "$DATASET" == "demo" ]]; then
  : "${IMAGE_SIZE:=128}" "${EPOCHS:=8}" "${SAMPLES_PER_IMAGE:=10}" "${PRETRAINED:=false}"
  : "${NUM_WORKERS:=2}" "${WEAK_EPOCHS:=4}" "${WEAK_SAVE_EPOCHS:=1 2 3 4}"
  : "${LR:=1e-3}" "${SCHEDULER:=onecycle}"
fi

# ---- g_phi (docs/METHOD.md §3) ------------------------------------------------------------
BACKBONE="${BACKBONE:-resnet18.a1_in1k}"
BACKBONE_ACRONYM="${BACKBONE_ACRONYM:-}"      # short name in messages; empty = BACKBONE
DROPOUT="${DROPOUT:-0.15}"
PRETRAINED="${PRETRAINED:-true}"           # ImageNet weights for the backbone
PRETRAINED_PATH="${PRETRAINED_PATH:-}"      # local weights file; empty = timm's own source
EPOCHS="${EPOCHS:-150}"
BATCH_SIZE="${BATCH_SIZE:-32}"
LR="${LR:-3e-4}"
WEIGHT_DECAY="${WEIGHT_DECAY:-5e-4}"
IMAGE_SIZE="${IMAGE_SIZE:-224}"
SAMPLES_PER_IMAGE="${SAMPLES_PER_IMAGE:-50}"         # K
SAMPLES_PER_IMAGE_VAL="${SAMPLES_PER_IMAGE_VAL:-5}"
LOSS_FUNC="${LOSS_FUNC:-smoothl1}"                   # smoothl1 | mse
SCHEDULER="${SCHEDULER:-cosine}"                     # cosine | onecycle
MIXED_PRECISION="${MIXED_PRECISION:-auto}"           # auto: fp16 on CUDA, bf16 on a CPU that has it | fp16 | bf16 | no
COMPILE="${COMPILE:-auto}"                           # torch.compile: auto (CUDA only) | on | off
GRAD_CLIP="${GRAD_CLIP:-1.0}"
PATIENCE="${PATIENCE:-25}"

# ---- VQM corruption mix (the other five categories keep the paper's values) ------------
IDENTITY_PROB="${IDENTITY_PROB:-0.20}"
CROSS_IMAGE_PROB="${CROSS_IMAGE_PROB:-0.10}"
USE_WEAK_MODELS="${USE_WEAK_MODELS:-true}"
WEAK_MODEL_PROB="${WEAK_MODEL_PROB:-0.05}"           # p_weak

# ---- Weak models (trained unless their folder holds them; an interrupted training resumes)
WEAK_MODEL_DIR="${WEAK_MODEL_DIR:-./checkpoints/weak_models/${DATASET}}"
WEAK_EPOCHS="${WEAK_EPOCHS:-20}"
WEAK_SAVE_EPOCHS="${WEAK_SAVE_EPOCHS:-1 3 5 10 15 20}"
WEAK_ENCODER="${WEAK_ENCODER:-resnet18}"
WEAK_BATCH_SIZE="${WEAK_BATCH_SIZE:-16}"
WEAK_LR="${WEAK_LR:-1e-3}"

# ---- System and outputs ----------------------------------------------------------------
NUM_WORKERS="${NUM_WORKERS:-4}"
SEED="${SEED:-42}"
DEVICE="${DEVICE:-auto}"                             # auto | cuda | cpu
NPROC_PER_NODE="${NPROC_PER_NODE:-1}"                # >1: one process per GPU (torchrun, DDP)
OUTPUT_DIR="${OUTPUT_DIR:-./checkpoints/mq}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-mq_${DATASET}}"
RESUME="${RESUME:-false}"                            # true: continue the run from latest.pth
PYTHON="${PYTHON:-python}"
LOG_DIR="${LOG_DIR:-./logs}"                        # console logs

# ---------------------------------------------------------------------------------------
if [[ "$DATASET" == "demo" && ! -f "$TRAIN_CSV" ]]; then
  echo "Building the built-in demo data set (prepare_datasets/demo_data) ..."
  "$PYTHON" -m prepare_datasets.make_demo_dataset --output_dir ./prepare_datasets/demo_data
fi

if [[ "$USE_WEAK_MODELS" == "true" && ! -f "$WEAK_MODEL_DIR/weak_models.json" ]]; then
  echo "Training weak models into $WEAK_MODEL_DIR ..."
  WEAK_RESUME=()
  [[ -f "$WEAK_MODEL_DIR/latest.pth" ]] && WEAK_RESUME=(--resume)
  # shellcheck disable=SC2086  # WEAK_SAVE_EPOCHS is a list
  "$PYTHON" -u -m training.train_weak_models \
    --train_csv "$TRAIN_CSV" \
    --output_dir "$WEAK_MODEL_DIR" \
    --image_size "$IMAGE_SIZE" \
    --epochs "$WEAK_EPOCHS" \
    --save_epochs $WEAK_SAVE_EPOCHS \
    --encoder "$WEAK_ENCODER" \
    --batch_size "$WEAK_BATCH_SIZE" \
    --lr "$WEAK_LR" \
    --seed "$SEED" \
    --num_workers "$NUM_WORKERS" \
    --device "$DEVICE" \
    --mixed_precision "$MIXED_PRECISION" \
    --compile "$COMPILE" \
    ${WEAK_RESUME[@]+"${WEAK_RESUME[@]}"}
fi

LAUNCH=("$PYTHON" -u -m)
if (( NPROC_PER_NODE > 1 )); then
  LAUNCH=(torchrun --standalone --nproc_per_node "$NPROC_PER_NODE" -m)
fi
EXTRA=()
[[ -n "$PRETRAINED_PATH" ]] && EXTRA+=(--pretrained_path "$PRETRAINED_PATH")
[[ "$RESUME" == "true" ]] && EXTRA+=(--resume)

mkdir -p "$LOG_DIR/mq_train"
"${LAUNCH[@]}" training.train_mq \
  --dataset "$DATASET" \
  --train_csv "$TRAIN_CSV" \
  --val_csv "$VAL_CSV" \
  --test_csv "$TEST_CSV" \
  --backbone "$BACKBONE" \
  --dropout "$DROPOUT" \
  --pretrained "$PRETRAINED" \
  --epochs "$EPOCHS" \
  --batch_size "$BATCH_SIZE" \
  --lr "$LR" \
  --weight_decay "$WEIGHT_DECAY" \
  --image_size "$IMAGE_SIZE" \
  --samples_per_image "$SAMPLES_PER_IMAGE" \
  --samples_per_image_val "$SAMPLES_PER_IMAGE_VAL" \
  --loss_func "$LOSS_FUNC" \
  --scheduler "$SCHEDULER" \
  --mixed_precision "$MIXED_PRECISION" \
  --compile "$COMPILE" \
  --grad_clip "$GRAD_CLIP" \
  --identity_prob "$IDENTITY_PROB" \
  --cross_image_prob "$CROSS_IMAGE_PROB" \
  --use_weak_models "$USE_WEAK_MODELS" \
  --weak_model_dir "$WEAK_MODEL_DIR" \
  --weak_model_prob "$WEAK_MODEL_PROB" \
  --num_workers "$NUM_WORKERS" \
  --seed "$SEED" \
  --device "$DEVICE" \
  --patience "$PATIENCE" \
  --output_dir "$OUTPUT_DIR" \
  --experiment_name "$EXPERIMENT_NAME" \
  ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee "$LOG_DIR/mq_train/${EXPERIMENT_NAME}.log"

echo "g_phi (${BACKBONE_ACRONYM:-$BACKBONE}) trained: ${OUTPUT_DIR}/${EXPERIMENT_NAME}/best.pth"
