# Shared by train_mq.sh, train_SSL_methods.sh and train_versemi.sh (sourced, not run).

# check_demo_consistency VAR...: the demo's CPU profile belongs to the demo data, so
# DATASET=demo with your CSVs, or another DATASET with the demo's CSVs, is a mistake that
# is caught here, before any training.
check_demo_consistency() {
  local v on_demo
  for v in "$@"; do
    case "${!v}" in */prepare_datasets/demo_data/*) on_demo=true ;; *) on_demo=false ;; esac
    if [[ "$DATASET" == "demo" && "$on_demo" == false ]]; then
      echo "error: $v=${!v} is your data, but DATASET is still 'demo': set DATASET to its name (it names the runs and switches the demo's CPU profile off)" >&2
      exit 1
    elif [[ "$DATASET" != "demo" && "$on_demo" == true ]]; then
      echo "error: DATASET=$DATASET, but $v still points to the built-in demo (${!v}): set $v too" >&2
      exit 1
    fi
  done
}

# table_field TABLE NAME COLUMN: COLUMN of NAME's row in a tab-separated table printed by
# `python -m training.methods --list` or `python -m models.seg_models --list` (fails if no row).
table_field() {
  printf '%s\n' "$1" | awk -F '\t' -v n="$2" -v c="$3" '$1 == n { print $c; found = 1 } END { exit !found }'
}

# require_names VARIABLE WHAT TABLE: every name in $VARIABLE has a row in TABLE, or the script
# stops here, before any training, with "VARIABLE: unknown WHAT 'name'" and the valid names.
require_names() {
  local variable="$1" what="$2" table="$3" name
  for name in ${!variable}; do
    table_field "$table" "$name" 1 >/dev/null || {
      echo "error: $variable: unknown $what '$name'; valid: $(printf '%s\n' "$table" | cut -f1 | tr '\n' ' ')" >&2
      exit 1
    }
  done
}
