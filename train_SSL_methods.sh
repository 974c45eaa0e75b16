#!/usr/bin/env bash
# Phase 2: train f_theta with every semi-supervised method on every architecture, then
# print the results table (rows: methods; columns: Dice and Jaccard per model).
#
# Edit the settings below for your data set, or set any of them from the environment:
#     METHODS="mean_teacher ours_qar" SEG_MODELS="unetpp" bash train_SSL_methods.sh
#     SEED=1 EPOCHS=100 bash train_SSL_methods.sh
# The defaults are SPEC.md's (the paper's) for a real data set. With no edits, a fresh
# clone runs the built-in demo (after `bash train_mq.sh`) with a CPU-sized profile.
# Relative paths are relative to the repository root (this script's folder).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# ---- Data set -------------------------------------------------------------------------
DATASET="${DATASET:-demo}"
TRAIN_CSV="${TRAIN_CSV:-./prepare_datasets/demo_data/train.csv}"
VAL_CSV="${VAL_CSV:-./prepare_datasets/demo_data/val.csv}"
TEST_CSV="${TEST_CSV:-./prepare_datasets/demo_data/test.csv}"
UNLABELED_CSV_5K="${UNLABELED_CSV_5K:-./prepare_datasets/demo_data/unlabeled.csv}"

# shellcheck source=training/script_helpers.sh
source ./training/script_helpers.sh
check_demo_consistency TRAIN_CSV VAL_CSV TEST_CSV UNLABELED_CSV_5K

# ---- CPU profile of the built-in demo (only applies when DATASET=demo) -----------------
# 64 px f_theta (g_phi, trained at 128 px by train_mq.sh, sees inputs resized to 128),
# a ResNet18 encoder with random init and a narrow decoder, a higher learning rate and a
# short schedule.
if [[ "$DATASET" == "demo" ]]; then
  : "${SEG_MODELS:=unetpp}" "${IMAGE_SIZE:=64}" "${EPOCHS:=4}" "${ENCODER_WEIGHTS:=none}"
  : "${SEG_ENCODER:=resnet18}"
  : "${BATCH_SIZE_LABELED:=8}" "${BATCH_SIZE_UNLABELED:=16}" "${LR:=1e-3}"
  : "${NUM_WORKERS:=1}" "${MQ_RESIZE:=true}" "${EMA_WARMUP_STEPS:=50}"
  : "${LAMBDA_WARMUP_QAR:=1}" "${LAMBDA_RAMPUP_QAR:=2}"
  : "${LAMBDA_WARMUP_PL_QW:=1}" "${LAMBDA_RAMPUP_PL_QW:=2}"
  : "${DECODER_CHANNELS:=64 32 16 16 16}"
fi

# ---- Models ---------------------------------------------------------------------------
SEG_MODELS="${SEG_MODELS:-unetpp attentionunet swinunet}"
SEG_ENCODER="${SEG_ENCODER:-resnet34}"                # U-Net++ and Attention U-Net
ENCODER_WEIGHTS="${ENCODER_WEIGHTS:-imagenet}"        # imagenet | none
SWIN_PRETRAINED_PATH="${SWIN_PRETRAINED_PATH:-./checkpoints/pretrained/swin_tiny_patch4_window7_224_22k.pth}"
DECODER_CHANNELS="${DECODER_CHANNELS:-}"              # empty = smp default (256 128 64 32 16)

# ---- Quality predictor g_phi (from train_mq.sh) ----------------------------------------
MQ_CHECKPOINT="${MQ_CHECKPOINT:-./checkpoints/mq/mq_${DATASET}/best.pth}"
MQ_RESIZE="${MQ_RESIZE:-false}"     # true: resize inputs to g_phi's size when they differ

# ---- Training (SPEC.md) ---------------------------------------------------------------
EPOCHS="${EPOCHS:-200}"
BATCH_SIZE_LABELED="${BATCH_SIZE_LABELED:-32}"
BATCH_SIZE_UNLABELED="${BATCH_SIZE_UNLABELED:-64}"
LR="${LR:-1e-4}"
WEIGHT_DECAY="${WEIGHT_DECAY:-1e-4}"
IMAGE_SIZE="${IMAGE_SIZE:-224}"
MIXED_PRECISION="${MIXED_PRECISION:-fp16}"            # fp16 | bf16 | no (CUDA only)
GRAD_CLIP="${GRAD_CLIP:-1.0}"
EMA_DECAY="${EMA_DECAY:-0.999}"
EMA_WARMUP_STEPS="${EMA_WARMUP_STEPS:-1000}"

# ---- Lambda schedules -----------------------------------------------------------------
LAMBDA_INITIAL_QAR="${LAMBDA_INITIAL_QAR:-0.0}"
LAMBDA_FINAL_QAR_VALUE="${LAMBDA_FINAL_QAR_VALUE:-0.01}"
LAMBDA_WARMUP_QAR="${LAMBDA_WARMUP_QAR:-30}"
LAMBDA_RAMPUP_QAR="${LAMBDA_RAMPUP_QAR:-40}"
LAMBDA_INITIAL_PL_QW="${LAMBDA_INITIAL_PL_QW:-0.0}"   # PL-QW and every baseline
LAMBDA_FINAL_PL_QW_VALUE="${LAMBDA_FINAL_PL_QW_VALUE:-0.25}"
LAMBDA_WARMUP_PL_QW="${LAMBDA_WARMUP_PL_QW:-15}"
LAMBDA_RAMPUP_PL_QW="${LAMBDA_RAMPUP_PL_QW:-30}"

# ---- Method-specific ------------------------------------------------------------------
CONFIDENCE_THRESHOLD_PSEUDO="${CONFIDENCE_THRESHOLD_PSEUDO:-0.9}"
CONFIDENCE_THRESHOLD_PSEUDO_SR="${CONFIDENCE_THRESHOLD_PSEUDO_SR:-0.9}"
CONFIDENCE_TEMPERATURE_PSEUDO_SR="${CONFIDENCE_TEMPERATURE_PSEUDO_SR:-2.0}"
CONSISTENCY_TYPE="${CONSISTENCY_TYPE:-mse}"
LAMBDA_CONTRAST="${LAMBDA_CONTRAST:-0.1}"
CONFIDENCE_THRESHOLD_CONTRAST="${CONFIDENCE_THRESHOLD_CONTRAST:-0.9}"
TEMPERATURE_CONTRAST="${TEMPERATURE_CONTRAST:-0.1}"
NUM_NEGATIVES_CONTRAST="${NUM_NEGATIVES_CONTRAST:-256}"
ICT_ALPHA="${ICT_ALPHA:-1.0}"
QUALITY_THRESHOLD_SR="${QUALITY_THRESHOLD_SR:-0.5}"
QUALITY_TEMPERATURE_SR="${QUALITY_TEMPERATURE_SR:-2.0}"

# ---- System and outputs ---------------------------------------------------------------
NUM_WORKERS="${NUM_WORKERS:-4}"
SEED="${SEED:-42}"
DEVICE="${DEVICE:-auto}"
NPROC_PER_NODE="${NPROC_PER_NODE:-1}"                 # >1: one process per GPU (torchrun, DDP)
PATIENCE="${PATIENCE:-30}"
OUTPUT_DIR="${OUTPUT_DIR:-./checkpoints/methods/${DATASET}}"
RESUME="${RESUME:-false}"
PYTHON="${PYTHON:-python}"
LOG_DIR="${LOG_DIR:-./logs}"                        # console logs
ALL_METHODS="supervised pseudo_label pseudo_label_sample_reweighting mean_teacher ua_mt mean_teacher_quality ict ict_quality cps cps_quality_weighted contrastive contrastive_quality ours_qar ours_pl_qw"
METHODS="${METHODS:-$ALL_METHODS}"                    # all fourteen by default

# ---------------------------------------------------------------------------------------
# Run names use the paper's acronyms. (Functions rather than associative arrays: the
# script also runs on bash 3.2, macOS's /bin/bash.)
ALL_SEG_MODELS="unetpp attentionunet swinunet"
method_acronym() {
  case "$1" in
    supervised) echo SUP ;; pseudo_label) echo PL-T ;; pseudo_label_sample_reweighting) echo PL-C ;;
    mean_teacher) echo MT ;; ua_mt) echo UA-MT ;; mean_teacher_quality) echo MT-QW ;;
    ict) echo ICT ;; ict_quality) echo ICT-QW ;; cps) echo CPS ;; cps_quality_weighted) echo CPS-QW ;;
    contrastive) echo CL ;; contrastive_quality) echo CL-QW ;; ours_qar) echo QAR ;;
    ours_pl_qw) echo PL-QW ;; *) return 1 ;;
  esac
}
seg_model_acronym() {
  case "$1" in unetpp) echo UP ;; attentionunet) echo AU ;; swinunet) echo SU ;; *) return 1 ;; esac
}
QUALITY_METHODS=" mean_teacher_quality ict_quality cps_quality_weighted contrastive_quality ours_qar ours_pl_qw "

for m in $METHODS; do
  method_acronym "$m" >/dev/null || { echo "error: unknown method '$m'; valid: $ALL_METHODS" >&2; exit 1; }
  if [[ "$QUALITY_METHODS" == *" $m "* && ! -f "$MQ_CHECKPOINT" ]]; then
    echo "error: $m needs g_phi but MQ_CHECKPOINT=$MQ_CHECKPOINT does not exist (run 'bash train_mq.sh' first)" >&2
    exit 1
  fi
done
for s in $SEG_MODELS; do
  seg_model_acronym "$s" >/dev/null || { echo "error: unknown model '$s'; valid: $ALL_SEG_MODELS" >&2; exit 1; }
done

LAUNCH=("$PYTHON" -u -m)
if (( NPROC_PER_NODE > 1 )); then
  LAUNCH=(torchrun --standalone --nproc_per_node "$NPROC_PER_NODE" -m)
fi

set_method_args() {  # METHOD_ARGS: the flags a method takes (lambda schedule, own settings)
  local m="$1"
  local qar=(--lambda_initial "$LAMBDA_INITIAL_QAR" --lambda_final "$LAMBDA_FINAL_QAR_VALUE"
             --lambda_warmup "$LAMBDA_WARMUP_QAR" --lambda_rampup "$LAMBDA_RAMPUP_QAR")
  local base=(--lambda_initial "$LAMBDA_INITIAL_PL_QW" --lambda_final "$LAMBDA_FINAL_PL_QW_VALUE"
              --lambda_warmup "$LAMBDA_WARMUP_PL_QW" --lambda_rampup "$LAMBDA_RAMPUP_PL_QW")
  local qw=(--mq_checkpoint "$MQ_CHECKPOINT" --quality_threshold "$QUALITY_THRESHOLD_SR"
            --quality_temperature "$QUALITY_TEMPERATURE_SR")
  METHOD_ARGS=()
  case "$m" in
    supervised) ;;
    pseudo_label) METHOD_ARGS=("${base[@]}" --confidence_threshold "$CONFIDENCE_THRESHOLD_PSEUDO") ;;
    pseudo_label_sample_reweighting)
      METHOD_ARGS=("${base[@]}" --confidence_threshold "$CONFIDENCE_THRESHOLD_PSEUDO_SR"
        --confidence_temperature "$CONFIDENCE_TEMPERATURE_PSEUDO_SR") ;;
    mean_teacher) METHOD_ARGS=("${base[@]}" --consistency_type "$CONSISTENCY_TYPE") ;;
    ua_mt) METHOD_ARGS=("${base[@]}") ;;
    mean_teacher_quality) METHOD_ARGS=("${base[@]}" "${qw[@]}" --consistency_type "$CONSISTENCY_TYPE") ;;
    ict) METHOD_ARGS=("${base[@]}" --ict_alpha "$ICT_ALPHA") ;;
    ict_quality) METHOD_ARGS=("${base[@]}" "${qw[@]}" --ict_alpha "$ICT_ALPHA") ;;
    cps) METHOD_ARGS=("${base[@]}") ;;
    cps_quality_weighted) METHOD_ARGS=("${base[@]}" "${qw[@]}") ;;
    contrastive)
      METHOD_ARGS=("${base[@]}" --lambda_contrast "$LAMBDA_CONTRAST"
        --confidence_threshold "$CONFIDENCE_THRESHOLD_CONTRAST"
        --contrast_temperature "$TEMPERATURE_CONTRAST" --num_negatives "$NUM_NEGATIVES_CONTRAST") ;;
    contrastive_quality)
      METHOD_ARGS=("${base[@]}" "${qw[@]}" --lambda_contrast "$LAMBDA_CONTRAST"
        --confidence_threshold "$CONFIDENCE_THRESHOLD_CONTRAST"
        --contrast_temperature "$TEMPERATURE_CONTRAST" --num_negatives "$NUM_NEGATIVES_CONTRAST") ;;
    ours_qar) METHOD_ARGS=("${qar[@]}" "${qw[@]}") ;;
    ours_pl_qw) METHOD_ARGS=("${base[@]}" "${qw[@]}") ;;
  esac
}

mkdir -p "$LOG_DIR/methods"
for SEG_MODEL in $SEG_MODELS; do
  SEG_ACRONYM="$(seg_model_acronym "$SEG_MODEL")"
  BASE_EXPERIMENT_NAME="${DATASET}_${SEG_ACRONYM}_${EPOCHS}_${PATIENCE}_${BATCH_SIZE_LABELED}_${BATCH_SIZE_UNLABELED}_${LR}_${WEIGHT_DECAY}_${EMA_DECAY}_${SEED}"
  COMMON_ARGS=(
    --dataset "$DATASET"
    --labeled_train_csv "$TRAIN_CSV"
    --labeled_val_csv "$VAL_CSV"
    --labeled_test_csv "$TEST_CSV"
    --unlabeled_csv "$UNLABELED_CSV_5K"
    --seg_model "$SEG_MODEL"
    --encoder "$SEG_ENCODER"
    --encoder_weights "$ENCODER_WEIGHTS"
    --epochs "$EPOCHS"
    --batch_size_labeled "$BATCH_SIZE_LABELED"
    --batch_size_unlabeled "$BATCH_SIZE_UNLABELED"
    --lr "$LR"
    --weight_decay "$WEIGHT_DECAY"
    --image_size "$IMAGE_SIZE"
    --grad_clip "$GRAD_CLIP"
    --mixed_precision "$MIXED_PRECISION"
    --ema_decay "$EMA_DECAY"
    --ema_warmup_steps "$EMA_WARMUP_STEPS"
    --num_workers "$NUM_WORKERS"
    --seed "$SEED"
    --device "$DEVICE"
    --patience "$PATIENCE"
    --output_dir "$OUTPUT_DIR"
  )
  if [[ "$SEG_MODEL" == "swinunet" && "$ENCODER_WEIGHTS" != "none" ]]; then
    COMMON_ARGS+=(--swin_pretrained_path "$SWIN_PRETRAINED_PATH")
  fi
  # shellcheck disable=SC2206  # a list of integers
  [[ -n "$DECODER_CHANNELS" && "$SEG_MODEL" != "swinunet" ]] && COMMON_ARGS+=(--decoder_channels $DECODER_CHANNELS)
  [[ "$MQ_RESIZE" == "true" ]] && COMMON_ARGS+=(--mq_resize)
  [[ "$RESUME" == "true" ]] && COMMON_ARGS+=(--resume)

  for METHOD in $METHODS; do
    ACRONYM="$(method_acronym "$METHOD")"
    EXPERIMENT_NAME="${ACRONYM}_${BASE_EXPERIMENT_NAME}"
    echo "=== ${ACRONYM} on ${SEG_ACRONYM} (${EXPERIMENT_NAME}) ==="
    set_method_args "$METHOD"
    # ${A[@]+"${A[@]}"}: an empty array under `set -u` on bash < 4.4
    "${LAUNCH[@]}" training.train_semisup \
      --method "$METHOD" \
      --experiment_name "$EXPERIMENT_NAME" \
      "${COMMON_ARGS[@]}" \
      ${METHOD_ARGS[@]+"${METHOD_ARGS[@]}"} 2>&1 | tee "$LOG_DIR/methods/${EXPERIMENT_NAME}.log"
  done
done

"$PYTHON" -m training.collect_results --output_dir "$OUTPUT_DIR" \
  --markdown "$OUTPUT_DIR/results_table.md" --csv "$OUTPUT_DIR/results_table.csv"
