#!/usr/bin/env bash
# FPS of CenterNet-R18 in INT8: the three tiers of the FP16 script. Calibrates on CALIB_DIR, else
# DATASETS_DIR, else the bundled demo's scenes, the first time; the third tier (real files) needs
# DATASETS_DIR.
source "$(dirname "$0")/_common.sh"
check_extra_args "$@"
source "$(dirname "$0")/_int8.sh"
validate_inputs no
announce_demo_performance
validate_int8_inputs
prepare_int8_backend
perf_count_args
DATA_ARGS=()
LIMIT="${PERF_IMAGES:-$DEFAULT_PERF_IMAGES}"
if [ -n "${DATASETS_DIR:-}" ]; then DATA_ARGS=(--datasets "$DATASETS_DIR" ${LIMIT:+--limit "$LIMIT"}); fi
exec "$PYTHON" inference.py --record "$(record_path)" "${MODEL_ARGS[@]}" "${PERF_MODEL_ARGS[@]}" --batchsize "$BATCH" --perf_only \
  "${PERF_COUNT_ARGS[@]}" "${DATA_ARGS[@]}" "$@"
