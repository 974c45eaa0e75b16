#!/usr/bin/env bash
# VerSemi (docs/METHOD.md §11): one task-prompted model over several data sets, its
# quality-guided variants (VerSemi-QW, VerSemi+QAR), and the baselines VerSemi's paper
# compares with: each task trained alone (SUP, MT) and all tasks pooled without prompts.
# Then one results table per task (rows: methods), every run tested on that task.
#
#     bash train_versemi.sh                                  # the built-in two-task demo (CPU)
#     TASK_TABLE=tasks.csv NAME=polyps bash train_versemi.sh # your data sets
#     SEEDS="1 2 3" MQ_MODE=per_task TASK_TABLE=... bash train_versemi.sh
# A task table has one row per data set: name,labeled_csv,unlabeled_csv,val_csv,test_csv
# (paths relative to the table's folder; unlabeled_csv may be empty). Every setting below
# can be set from the environment. Relative paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# ---- Tasks ----------------------------------------------------------------------------
TASK_TABLE="${TASK_TABLE:-}"            # empty = the built-in demo: skin lesions + glands
NAME="${NAME:-demo_multitask}"          # names the g_phi runs and the output folder
PYTHON="${PYTHON:-python}"

if [[ -z "$TASK_TABLE" ]]; then
  # ---- The built-in demo's data and CPU profile (only without a TASK_TABLE) -------------
  DEMO_DIR=./prepare_datasets/demo_multitask
  for kind in dermoscopy glands; do
    "$PYTHON" -m prepare_datasets.make_demo_dataset --output_dir "$DEMO_DIR/$kind" \
      --kind "$kind" --image_size 64 --num_train 48 --num_val 20 --num_test 30 \
      --num_unlabeled 96 --no_progress
  done
  printf '%s\n' "name,labeled_csv,unlabeled_csv,val_csv,test_csv" \
    "skin,dermoscopy/train.csv,dermoscopy/unlabeled.csv,dermoscopy/val.csv,dermoscopy/test.csv" \
    "glands,glands/train.csv,glands/unlabeled.csv,glands/val.csv,glands/test.csv" \
    > "$DEMO_DIR/tasks.csv"
  TASK_TABLE="$DEMO_DIR/tasks.csv"
  : "${IMAGE_SIZE:=64}" "${EPOCHS:=5}" "${STAGE2_EPOCH:=2}" "${ENCODER_WEIGHTS:=none}"
  : "${SEG_ENCODER:=resnet18}" "${DECODER_CHANNELS:=64 32 16 16 16}" "${NUM_WORKERS:=1}"
  : "${BATCH_SIZE_LABELED:=8}" "${BATCH_SIZE_UNLABELED:=8}" "${EMA_WARMUP_STEPS:=20}"
  : "${LAMBDA_WARMUP_PL_QW:=1}" "${LAMBDA_RAMPUP_PL_QW:=2}" "${MIXED_PRECISION:=no}"
  : "${MQ_EPOCHS:=4}" "${MQ_IMAGE_SIZE:=64}" "${MQ_SAMPLES_PER_IMAGE:=6}" "${MQ_LR:=1e-3}"
  : "${MQ_PRETRAINED:=false}" "${MQ_USE_WEAK_MODELS:=false}" "${MQ_BACKBONE:=resnet18.a1_in1k}"
fi

# ---- Methods --------------------------------------------------------------------------
# Empty = none; unset = the defaults from the method tables (SUP and MT; every multi-task one).
METHODS_PER_TASK="${METHODS_PER_TASK-$("$PYTHON" -m training.methods --versemi_baselines)}"
MULTITASK_TABLE="$("$PYTHON" -m training.methods --list --multitask)"  # name, acronym, g_phi, ...
METHODS_MULTITASK="${METHODS_MULTITASK-$(printf '%s\n' "$MULTITASK_TABLE" | cut -f1 | tr '\n' ' ')}"
SEEDS="${SEEDS:-42}"
# Unknown names are refused here, before g_phi or any per-task run trains.
# shellcheck source=training/script_helpers.sh
source ./training/script_helpers.sh
SINGLE_TASK_TABLE="$("$PYTHON" -m training.methods --list)"  # an assignment, so set -e stops on a failed listing
require_names METHODS_PER_TASK method "$SINGLE_TASK_TABLE"
require_names METHODS_MULTITASK method "$MULTITASK_TABLE"

# ---- f_theta (docs/METHOD.md §4, §11) --------------------------------------------------
SEG_MODEL="${SEG_MODEL:-unetpp}"                 # unetpp | attentionunet | swinunet
SEG_ENCODER="${SEG_ENCODER:-resnet34}"
ENCODER_WEIGHTS="${ENCODER_WEIGHTS:-imagenet}"   # imagenet | none | a local weights file
DECODER_CHANNELS="${DECODER_CHANNELS:-}"
IMAGE_SIZE="${IMAGE_SIZE:-224}"
EPOCHS="${EPOCHS:-200}"
STAGE2_EPOCH="${STAGE2_EPOCH:-$((EPOCHS / 2))}"  # VerSemi's stage switch: equal stages
LR="${LR:-1e-3}"                                 # VerSemi's Adam: lr 1e-3, betas 0.5 0.999,
BETAS="${BETAS:-0.5 0.999}"                      # for every method here, baselines included
BATCH_SIZE_LABELED="${BATCH_SIZE_LABELED:-8}"    # VerSemi's 8 + 8, shared among the tasks
BATCH_SIZE_UNLABELED="${BATCH_SIZE_UNLABELED:-8}"
LAMBDA_QAR_VERSEMI="${LAMBDA_QAR_VERSEMI:-}"     # VerSemi+QAR's weight (empty: 0.01)
MIXED_PRECISION="${MIXED_PRECISION:-auto}"
EMA_WARMUP_STEPS="${EMA_WARMUP_STEPS:-1000}"
LAMBDA_WARMUP_PL_QW="${LAMBDA_WARMUP_PL_QW:-}"   # MT's schedule per task (empty: its own)
LAMBDA_RAMPUP_PL_QW="${LAMBDA_RAMPUP_PL_QW:-}"
NUM_WORKERS="${NUM_WORKERS:-4}"
RESUME="${RESUME:-false}"

# ---- g_phi (train_mq.sh on the tasks' labeled masks) ------------------------------------
MQ_MODE="${MQ_MODE:-shared}"          # shared: one g_phi on all tasks' masks | per_task
MQ_EPOCHS="${MQ_EPOCHS:-150}"
MQ_IMAGE_SIZE="${MQ_IMAGE_SIZE:-$IMAGE_SIZE}"
MQ_SAMPLES_PER_IMAGE="${MQ_SAMPLES_PER_IMAGE:-50}"
MQ_LR="${MQ_LR:-3e-4}"
MQ_BACKBONE="${MQ_BACKBONE:-resnet18.a1_in1k}"
MQ_PRETRAINED="${MQ_PRETRAINED:-true}"
MQ_PRETRAINED_PATH="${MQ_PRETRAINED_PATH:-}"
MQ_USE_WEAK_MODELS="${MQ_USE_WEAK_MODELS:-true}"
MQ_OUTPUT_DIR="${MQ_OUTPUT_DIR:-./checkpoints/mq}"  # g_phi runs: $MQ_OUTPUT_DIR/mq_<NAME>_<...>

OUTPUT_DIR="${OUTPUT_DIR:-./checkpoints/versemi/${NAME}}"
# ---------------------------------------------------------------------------------------

# The tasks, as the Python table reads them (errors name the row at fault).
TASK_ROWS="$("$PYTHON" -m data.multitask "$TASK_TABLE")"
mkdir -p "$OUTPUT_DIR"

train_gphi() {  # train_gphi NAME TRAIN VAL TEST: a g_phi run of train_mq.sh (resumes)
  DATASET="$1" TRAIN_CSV="$2" VAL_CSV="$3" TEST_CSV="$4" EPOCHS="$MQ_EPOCHS" \
    IMAGE_SIZE="$MQ_IMAGE_SIZE" SAMPLES_PER_IMAGE="$MQ_SAMPLES_PER_IMAGE" LR="$MQ_LR" \
    BACKBONE="$MQ_BACKBONE" PRETRAINED="$MQ_PRETRAINED" PRETRAINED_PATH="$MQ_PRETRAINED_PATH" \
    USE_WEAK_MODELS="$MQ_USE_WEAK_MODELS" NUM_WORKERS="$NUM_WORKERS" PYTHON="$PYTHON" \
    MIXED_PRECISION="$MIXED_PRECISION" OUTPUT_DIR="$MQ_OUTPUT_DIR" bash train_mq.sh
}

needs_gphi=false
for m in $METHODS_MULTITASK; do
  [[ "$(printf '%s\n' "$MULTITASK_TABLE" | awk -F '\t' -v n="$m" '$1 == n { print $3 }')" == 1 ]] && needs_gphi=true
done
MQ_CHECKPOINT=""
MULTI_TABLE="$TASK_TABLE"
if [[ "$needs_gphi" == true ]]; then
  if [[ "$MQ_MODE" == "shared" ]]; then
    "$PYTHON" -m data.multitask "$TASK_TABLE" --pool "$OUTPUT_DIR/pooled" >/dev/null
    MQ_CHECKPOINT="$MQ_OUTPUT_DIR/mq_${NAME}_pooled/best.pth"
    [[ -f "$MQ_CHECKPOINT" && "$RESUME" != "true" ]] ||
      train_gphi "${NAME}_pooled" "$OUTPUT_DIR/pooled/train.csv" "$OUTPUT_DIR/pooled/val.csv" "$OUTPUT_DIR/pooled/test.csv"
  elif [[ "$MQ_MODE" == "per_task" ]]; then
    MULTI_TABLE="$OUTPUT_DIR/tasks_per_task_gphi.csv"
    echo "name,labeled_csv,unlabeled_csv,val_csv,test_csv,mq_checkpoint" > "$MULTI_TABLE"
    while IFS=$'\t' read -r task labeled unlabeled val test; do
      ckpt="$MQ_OUTPUT_DIR/mq_${NAME}_${task}/best.pth"
      [[ "$ckpt" == /* ]] || ckpt="$PWD/$ckpt"  # the table copy lives in another folder
      [[ -f "$ckpt" && "$RESUME" != "true" ]] || train_gphi "${NAME}_${task}" "$labeled" "$val" "$test"
      [[ "$unlabeled" == "-" ]] && unlabeled=""
      echo "$task,$labeled,$unlabeled,$val,$test,$ckpt" >> "$MULTI_TABLE"
    done <<<"$TASK_ROWS"
  else
    echo "error: MQ_MODE=$MQ_MODE: use shared or per_task" >&2
    exit 1
  fi
fi

phase2() {  # phase2 ENV...: train_SSL_methods.sh with this script's f_theta settings
  env SEG_MODELS="$SEG_MODEL" SEG_ENCODER="$SEG_ENCODER" ENCODER_WEIGHTS="$ENCODER_WEIGHTS" \
    DECODER_CHANNELS="$DECODER_CHANNELS" IMAGE_SIZE="$IMAGE_SIZE" EPOCHS="$EPOCHS" LR="$LR" \
    BETAS="$BETAS" \
    BATCH_SIZE_LABELED="$BATCH_SIZE_LABELED" BATCH_SIZE_UNLABELED="$BATCH_SIZE_UNLABELED" \
    MIXED_PRECISION="$MIXED_PRECISION" EMA_WARMUP_STEPS="$EMA_WARMUP_STEPS" \
    NUM_WORKERS="$NUM_WORKERS" RESUME="$RESUME" PYTHON="$PYTHON" "$@" \
    bash train_SSL_methods.sh
}

for SEED in $SEEDS; do
  # Each task alone (its own data set, D_U = its own unlabeled images).
  if [[ -n "$METHODS_PER_TASK" ]]; then
    while IFS=$'\t' read -r task labeled unlabeled val test; do
      if [[ "$unlabeled" == "-" ]]; then
        echo "notice: task $task has no unlabeled images: only SUP runs on it alone" >&2
        methods=supervised unlabeled=""
      else
        methods="$METHODS_PER_TASK"
      fi
      phase2 DATASET="$task" TRAIN_CSV="$labeled" VAL_CSV="$val" TEST_CSV="$test" \
        UNLABELED_CSV_5K="$unlabeled" METHODS="$methods" SEED="$SEED" \
        LAMBDA_WARMUP_PL_QW="$LAMBDA_WARMUP_PL_QW" LAMBDA_RAMPUP_PL_QW="$LAMBDA_RAMPUP_PL_QW" \
        OUTPUT_DIR="$OUTPUT_DIR/$task" MQ_CHECKPOINT=/nonexistent TASK_TABLE=""
    done <<<"$TASK_ROWS"
  fi
  # All tasks in one model: Pooled and VerSemi with its variants.
  if [[ -n "$METHODS_MULTITASK" ]]; then
    phase2 DATASET="$NAME" TASK_TABLE="$MULTI_TABLE" METHODS="$METHODS_MULTITASK" SEED="$SEED" \
      LAMBDA_WARMUP_VERSEMI="$STAGE2_EPOCH" LAMBDA_QAR_VERSEMI="$LAMBDA_QAR_VERSEMI" \
      MQ_CHECKPOINT="${MQ_CHECKPOINT:-/nonexistent}" OUTPUT_DIR="$OUTPUT_DIR/multitask"
  fi
done

"$PYTHON" -m training.collect_results --output_dir "$OUTPUT_DIR" \
  --markdown "$OUTPUT_DIR/results_table.md" --csv "$OUTPUT_DIR/results_table.csv"
echo "per-task results: $OUTPUT_DIR/results_table.md"
