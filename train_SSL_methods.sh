#!/usr/bin/env bash
# Phase 2: train f_theta with every semi-supervised method on every architecture, then
# print the results table (rows: methods; columns: Dice and Jaccard per model).
#
# Edit the settings below for your data set, or set any of them from the environment:
#     METHODS="mean_teacher ours_qar" SEG_MODELS="unetpp" bash train_SSL_methods.sh
#     SEED=1 EPOCHS=100 bash train_SSL_methods.sh
# The defaults are the paper's (docs/METHOD.md §4) for a real data set. With no edits, a fresh
# clone runs the built-in demo (after `bash train_mq.sh`) with a CPU-sized profile.
# Relative paths are relative to the repository root (this script's folder).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

set -a  # every setting below reaches the Python scripts' environment too
# ---- Data set -------------------------------------------------------------------------
DATASET="${DATASET:-demo}"
TRAIN_CSV="${TRAIN_CSV:-./prepare_datasets/demo_data/train.csv}"
VAL_CSV="${VAL_CSV:-./prepare_datasets/demo_data/val.csv}"
TEST_CSV="${TEST_CSV:-./prepare_datasets/demo_data/test.csv}"
UNLABELED_CSV_5K="${UNLABELED_CSV_5K:-./prepare_datasets/demo_data/unlabeled.csv}"
# A task table (several data sets; docs/METHOD.md §11) instead of the four CSVs: the
# methods are then the multi-task ones (VerSemi, Pooled). train_versemi.sh sets it.
TASK_TABLE="${TASK_TABLE:-}"

# shellcheck source=training/script_helpers.sh
source ./training/script_helpers.sh
[[ -n "$TASK_TABLE" ]] || check_demo_consistency TRAIN_CSV VAL_CSV TEST_CSV UNLABELED_CSV_5K

# ---- CPU profile of the built-in demo (only applies when DATASET=demo) -----------------
# 64 px f_theta (g_phi, trained at 128 px by train_mq.sh, sees inputs resized to 128),
# a ResNet18 encoder with random init and a narrow decoder, a higher learning rate and a
# 3-epoch schedule whose lambda is fully on from epoch 2.25; two runs side by side, one
# thread each (1.19x faster than one run on two threads on a 2-core CPU; README, "Built-in demo").
if [[ "$DATASET" == "demo" ]]; then
  : "${SEG_MODELS:=unetpp}" "${IMAGE_SIZE:=64}" "${EPOCHS:=3}" "${ENCODER_WEIGHTS:=none}"
  : "${SEG_ENCODER:=resnet18}"
  : "${BATCH_SIZE_LABELED:=8}" "${BATCH_SIZE_UNLABELED:=16}" "${LR:=1e-3}"
  : "${NUM_WORKERS:=1}" "${MQ_RESIZE:=true}" "${EMA_WARMUP_STEPS:=50}"
  : "${LAMBDA_WARMUP_QAR:=0.75}" "${LAMBDA_RAMPUP_QAR:=1.5}"
  : "${LAMBDA_WARMUP_PL_QW:=0.75}" "${LAMBDA_RAMPUP_PL_QW:=1.5}"
  : "${DECODER_CHANNELS:=64 32 16 16 16}"
  if (( $(nproc) >= 2 )); then : "${PARALLEL_RUNS:=2}"; fi
fi

# ---- Models ---------------------------------------------------------------------------
SEG_MODELS="${SEG_MODELS:-}"                          # empty = every model (U-Net++, Attention U-Net, Swin-UNet)
SEG_ENCODER="${SEG_ENCODER:-resnet34}"                # U-Net++ and Attention U-Net
ENCODER_WEIGHTS="${ENCODER_WEIGHTS:-imagenet}"        # imagenet | none | a local weights file
SWIN_PRETRAINED_PATH="${SWIN_PRETRAINED_PATH:-./checkpoints/pretrained/swin_tiny_patch4_window7_224_22k.pth}"
DECODER_CHANNELS="${DECODER_CHANNELS:-}"              # empty = smp default (256 128 64 32 16)

# ---- Quality predictor g_phi (from train_mq.sh) ----------------------------------------
MQ_CHECKPOINT="${MQ_CHECKPOINT:-./checkpoints/mq/mq_${DATASET}/best.pth}"
MQ_RESIZE="${MQ_RESIZE:-false}"     # true: resize inputs to g_phi's size when they differ

# ---- Training (docs/METHOD.md §4) -----------------------------------------------------
EPOCHS="${EPOCHS:-200}"
BATCH_SIZE_LABELED="${BATCH_SIZE_LABELED:-32}"
BATCH_SIZE_UNLABELED="${BATCH_SIZE_UNLABELED:-64}"
LR="${LR:-1e-4}"
WEIGHT_DECAY="${WEIGHT_DECAY:-1e-4}"
BETAS="${BETAS:-}"                                    # AdamW's betas; empty: the method's own
IMAGE_SIZE="${IMAGE_SIZE:-224}"
MIXED_PRECISION="${MIXED_PRECISION:-auto}"            # auto: fp16 on CUDA, bf16 on a CPU that has it | fp16 | bf16 | no
COMPILE="${COMPILE:-auto}"                            # torch.compile: auto (CUDA only) | on | off
GRAD_CLIP="${GRAD_CLIP:-1.0}"
EMA_DECAY="${EMA_DECAY:-0.999}"
EMA_WARMUP_STEPS="${EMA_WARMUP_STEPS:-1000}"

# ---- Lambda schedules and method settings ----------------------------------------------
# Empty = the method's own default (python training/train_semisup.py --method M --help):
# a setting reaches a method only when it is set here or in the environment.
LAMBDA_INITIAL_QAR="${LAMBDA_INITIAL_QAR:-}"          # QAR's lambda(t): 0 -> 0.01,
LAMBDA_FINAL_QAR_VALUE="${LAMBDA_FINAL_QAR_VALUE:-}"  # warm-up 30, ramp 40 epochs
LAMBDA_WARMUP_QAR="${LAMBDA_WARMUP_QAR:-}"
LAMBDA_RAMPUP_QAR="${LAMBDA_RAMPUP_QAR:-}"
LAMBDA_INITIAL_PL_QW="${LAMBDA_INITIAL_PL_QW:-}"      # PL-QW and every baseline: 0 -> 0.25,
LAMBDA_FINAL_PL_QW_VALUE="${LAMBDA_FINAL_PL_QW_VALUE:-}"  # warm-up 15, ramp 30 epochs
LAMBDA_WARMUP_PL_QW="${LAMBDA_WARMUP_PL_QW:-}"
LAMBDA_RAMPUP_PL_QW="${LAMBDA_RAMPUP_PL_QW:-}"
CONFIDENCE_THRESHOLD_PSEUDO="${CONFIDENCE_THRESHOLD_PSEUDO:-}"            # PL-T (0.9)
CONFIDENCE_THRESHOLD_PSEUDO_SR="${CONFIDENCE_THRESHOLD_PSEUDO_SR:-}"      # PL-C (0.9)
CONFIDENCE_TEMPERATURE_PSEUDO_SR="${CONFIDENCE_TEMPERATURE_PSEUDO_SR:-}"  # PL-C (2.0)
CONSISTENCY_TYPE="${CONSISTENCY_TYPE:-}"              # MT, UA-MT, MT-QW, ICT, ICT-QW (mse)
LAMBDA_CONTRAST="${LAMBDA_CONTRAST:-}"                # CL, CL-QW (0.1)
CONFIDENCE_THRESHOLD_CONTRAST="${CONFIDENCE_THRESHOLD_CONTRAST:-}"        # CL, CL-QW (0.9)
TEMPERATURE_CONTRAST="${TEMPERATURE_CONTRAST:-}"      # CL, CL-QW (0.1)
NUM_NEGATIVES_CONTRAST="${NUM_NEGATIVES_CONTRAST:-}"  # CL, CL-QW (256)
ICT_ALPHA="${ICT_ALPHA:-}"                            # ICT, ICT-QW (1.0)
QUALITY_THRESHOLD_SR="${QUALITY_THRESHOLD_SR:-}"      # tau of every quality method (0.5)
QUALITY_TEMPERATURE_SR="${QUALITY_TEMPERATURE_SR:-}"  # T of every quality method (2.0)
CONFIDENCE_THRESHOLD_WS="${CONFIDENCE_THRESHOLD_WS:-}"  # FixMatch, UniMatch and variants (0.95)
FP_DROPOUT="${FP_DROPOUT:-}"                          # UniMatch's feature perturbation (0.5)
LAMBDA_INITIAL_WS="${LAMBDA_INITIAL_WS:-}"            # FixMatch's and UniMatch's lambda: 1
LAMBDA_FINAL_WS_VALUE="${LAMBDA_FINAL_WS_VALUE:-}"    # throughout (UniMatch+QAR: QAR's)
LAMBDA_WARMUP_WS="${LAMBDA_WARMUP_WS:-}"
LAMBDA_RAMPUP_WS="${LAMBDA_RAMPUP_WS:-}"
BN_FORWARD="${BN_FORWARD:-}"                          # mixed | separate | labeled_stats (mixed; SUP labeled_only)

# ---- System and outputs ---------------------------------------------------------------
NUM_WORKERS="${NUM_WORKERS:-4}"
SEED="${SEED:-42}"
DEVICE="${DEVICE:-auto}"
NPROC_PER_NODE="${NPROC_PER_NODE:-1}"                 # >1: one process per GPU (torchrun, DDP)
PARALLEL_RUNS="${PARALLEL_RUNS:-1}"                   # runs side by side (each console log in LOG_DIR)
PATIENCE="${PATIENCE:-30}"
OUTPUT_DIR="${OUTPUT_DIR:-./checkpoints/methods/${DATASET}}"
RUN_NAME="${RUN_NAME:-}"                              # one run's folder name (one method, one model); empty = <ACRONYM>_<settings>
RESUME="${RESUME:-false}"
PYTHON="${PYTHON:-python}"
LOG_DIR="${LOG_DIR:-./logs}"                        # console logs
METHODS="${METHODS:-}"                                # empty = every registered method
set +a

# ---------------------------------------------------------------------------------------
# The names, acronyms and needs of methods and models come from their Python tables.
METHOD_TABLE="$("$PYTHON" -m training.methods --list ${TASK_TABLE:+--multitask})"
SEG_MODEL_TABLE="$("$PYTHON" -m models.seg_models --list)"
ALL_METHODS="$(printf '%s\n' "$METHOD_TABLE" | cut -f1 | tr '\n' ' ')"
ALL_SEG_MODELS="$(printf '%s\n' "$SEG_MODEL_TABLE" | cut -f1 | tr '\n' ' ')"
METHODS="${METHODS:-$ALL_METHODS}"
SEG_MODELS="${SEG_MODELS:-$ALL_SEG_MODELS}"

require_names METHODS method "$METHOD_TABLE"
require_names SEG_MODELS model "$SEG_MODEL_TABLE"
for m in $METHODS; do
  # (a task table may name a g_phi per task instead: train_semisup checks it)
  if [[ "$(table_field "$METHOD_TABLE" "$m" 3)" == 1 && -z "$TASK_TABLE" && ! -f "$MQ_CHECKPOINT" ]]; then
    echo "error: $m needs g_phi but MQ_CHECKPOINT=$MQ_CHECKPOINT does not exist (run 'bash train_mq.sh' first)" >&2
    exit 1
  fi
done
[[ "$PARALLEL_RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "error: PARALLEL_RUNS must be a whole number >= 1, got '$PARALLEL_RUNS'" >&2; exit 1; }
if [[ -n "$RUN_NAME" ]] && (( $(wc -w <<<"$METHODS") != 1 || $(wc -w <<<"$SEG_MODELS") != 1 )); then
  echo "error: RUN_NAME=$RUN_NAME names one run: set one method (METHODS) and one model (SEG_MODELS)" >&2
  exit 1
fi

LAUNCH=("$PYTHON" -u -m)
if (( NPROC_PER_NODE > 1 )); then
  LAUNCH=(torchrun --standalone --nproc_per_node "$NPROC_PER_NODE" -m)
fi
if (( PARALLEL_RUNS > 1 )); then
  # Runs side by side share the cores (2 one-thread runs beat one two-thread run on 2 cores).
  : "${OMP_NUM_THREADS:=$(( $(nproc) / PARALLEL_RUNS > 0 ? $(nproc) / PARALLEL_RUNS : 1 ))}"
  export OMP_NUM_THREADS
  FAILED_DIR="$(mktemp -d)"
  trap 'rm -rf "$FAILED_DIR"' EXIT
  echo "$PARALLEL_RUNS runs side by side, $OMP_NUM_THREADS thread(s) each; console logs in $LOG_DIR/methods"
fi
start_side_by_side() {  # start_side_by_side NAME LOG COMMAND...: one run in the background
  local name="$1" log="$2"
  shift 2
  (
    t0=$SECONDS
    if "$@" >"$log" 2>&1; then
      echo "=== finished ${name} in $(( SECONDS - t0 )) s"
    else
      echo "=== FAILED ${name} (exit $?; see $log)" >&2
      touch "$FAILED_DIR/$name"
    fi
  ) &
}
finish_side_by_side() {  # wait for every background run; fail if one failed
  (( PARALLEL_RUNS > 1 )) || return 0
  wait
  local failed
  failed="$(ls "$FAILED_DIR")"
  if [[ -n "$failed" ]]; then
    echo "error: these runs failed (logs in $LOG_DIR/methods): $(tr '\n' ' ' <<<"$failed")" >&2
    exit 1
  fi
}

mkdir -p "$LOG_DIR/methods"
for SEG_MODEL in $SEG_MODELS; do
  SEG_ACRONYM="$(table_field "$SEG_MODEL_TABLE" "$SEG_MODEL" 2)"
  BASE_EXPERIMENT_NAME="${DATASET}_${SEG_ACRONYM}_${EPOCHS}_${PATIENCE}_${BATCH_SIZE_LABELED}_${BATCH_SIZE_UNLABELED}_${LR}_${WEIGHT_DECAY}_${EMA_DECAY}_${SEED}"
  if [[ -n "$TASK_TABLE" ]]; then
    DATA_ARGS=(--task_table "$TASK_TABLE")
  else
    DATA_ARGS=(--labeled_train_csv "$TRAIN_CSV" --labeled_val_csv "$VAL_CSV"
               --labeled_test_csv "$TEST_CSV" --unlabeled_csv "$UNLABELED_CSV_5K")
  fi
  COMMON_ARGS=(
    --dataset "$DATASET"
    "${DATA_ARGS[@]}"
    --seg_model "$SEG_MODEL"
    --encoder_weights "$ENCODER_WEIGHTS"
    --epochs "$EPOCHS"
    --batch_size_labeled "$BATCH_SIZE_LABELED"
    --batch_size_unlabeled "$BATCH_SIZE_UNLABELED"
    --lr "$LR"
    --weight_decay "$WEIGHT_DECAY"
    --image_size "$IMAGE_SIZE"
    --grad_clip "$GRAD_CLIP"
    --mixed_precision "$MIXED_PRECISION"
    --compile "$COMPILE"
    --ema_decay "$EMA_DECAY"
    --ema_warmup_steps "$EMA_WARMUP_STEPS"
    --num_workers "$NUM_WORKERS"
    --seed "$SEED"
    --device "$DEVICE"
    --patience "$PATIENCE"
    --output_dir "$OUTPUT_DIR"
  )
  # Each network gets the settings it takes (models.seg_models refuses the others).
  TAKES=",$(table_field "$SEG_MODEL_TABLE" "$SEG_MODEL" 3),"
  [[ "$TAKES" == *,encoder,* ]] && COMMON_ARGS+=(--encoder "$SEG_ENCODER")
  if [[ "$TAKES" == *,swin_pretrained_path,* && "$ENCODER_WEIGHTS" != "none" ]]; then
    # Swin-UNet has no smp encoder: a weights file meant for one does not fit it.
    [[ "$ENCODER_WEIGHTS" != "imagenet" ]] && echo "notice: $SEG_ACRONYM loads SWIN_PRETRAINED_PATH=$SWIN_PRETRAINED_PATH, not ENCODER_WEIGHTS=$ENCODER_WEIGHTS (a CNN encoder's file)" >&2
    COMMON_ARGS+=(--swin_pretrained_path "$SWIN_PRETRAINED_PATH")
  fi
  # shellcheck disable=SC2206  # a list of integers
  [[ -n "$DECODER_CHANNELS" && "$TAKES" == *,decoder_channels,* ]] && COMMON_ARGS+=(--decoder_channels $DECODER_CHANNELS)
  # shellcheck disable=SC2206  # two numbers
  [[ -n "$BETAS" ]] && COMMON_ARGS+=(--betas $BETAS)
  [[ "$MQ_RESIZE" == "true" ]] && COMMON_ARGS+=(--mq_resize)
  [[ "$RESUME" == "true" ]] && COMMON_ARGS+=(--resume)

  for METHOD in $METHODS; do
    ACRONYM="$(table_field "$METHOD_TABLE" "$METHOD" 2)"
    EXPERIMENT_NAME="${RUN_NAME:-${ACRONYM}_${BASE_EXPERIMENT_NAME}}"
    echo "=== ${ACRONYM} on ${SEG_ACRONYM} (${EXPERIMENT_NAME}) ==="
    # The method's own flags: only those whose setting above is not empty.
    METHOD_ARGS=()
    while IFS= read -r a; do METHOD_ARGS+=("$a"); done < <("$PYTHON" -m training.methods --script_args "$METHOD")
    if [[ "$(table_field "$METHOD_TABLE" "$METHOD" 3)" == 1 ]] && [[ -z "$TASK_TABLE" || -f "$MQ_CHECKPOINT" ]]; then
      METHOD_ARGS+=(--mq_checkpoint "$MQ_CHECKPOINT")
    fi
    # ${A[@]+"${A[@]}"}: an empty array under `set -u` on bash < 4.4
    RUN=("${LAUNCH[@]}" training.train_semisup --method "$METHOD" --experiment_name "$EXPERIMENT_NAME"
         "${COMMON_ARGS[@]}" ${METHOD_ARGS[@]+"${METHOD_ARGS[@]}"})
    LOG="$LOG_DIR/methods/${EXPERIMENT_NAME}.log"
    if (( PARALLEL_RUNS > 1 )); then
      while (( $(jobs -rp | wc -l) >= PARALLEL_RUNS )); do wait -n || true; done
      start_side_by_side "$EXPERIMENT_NAME" "$LOG" "${RUN[@]}"
    else
      "${RUN[@]}" 2>&1 | tee "$LOG"
    fi
  done
done
finish_side_by_side

"$PYTHON" -m training.collect_results --output_dir "$OUTPUT_DIR" \
  --markdown "$OUTPUT_DIR/results_table.md" --csv "$OUTPUT_DIR/results_table.csv"
