#!/usr/bin/env bash
# Experiment grids: expand a grid file (training/grids/*.toml) into runs of train_mq.sh,
# test_mq.sh and train_SSL_methods.sh, skip what finished, resume what was interrupted,
# and write the tables and plots (docs/METHOD.md §10).
#
#     bash run_experiments.sh                                 # the demo grid on a CPU
#     bash run_experiments.sh training/grids/main.toml --dry_run
#     bash run_experiments.sh GRID --parallel 4 --gpus 0,1,2,3
#     bash run_experiments.sh GRID --slurm --submit --gpus_per_task 1
#     bash run_experiments.sh GRID --report                   # tables and plots only
# `bash run_experiments.sh --help` lists every option. Copy a grid file to make your own;
# relative paths in it are relative to this folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -u "$ROOT/training/run_experiments.py" "$@"
