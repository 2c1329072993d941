#!/usr/bin/env bash
# FPS of CenterNet-R18 in INT8 at batch 32: the three tiers of the FP16 script. Calibrates on
# DATASETS_DIR (or CALIB_DIR) the first time; the third tier (real files) needs DATASETS_DIR.
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_int8.sh"
prepare_int8_backend
DATA_ARGS=()
LIMIT="${PERF_IMAGES:-$INT8_PERF_IMAGES}"
if [ -n "${DATASETS_DIR:-}" ]; then DATA_ARGS=(--datasets "$DATASETS_DIR" ${LIMIT:+--limit "$LIMIT"}); fi
exec "$PYTHON" inference.py "${MODEL_ARGS[@]}" "${PERF_ARGS[@]}" --batchsize "${BATCHSIZE:-32}" --perf_only \
  --warmup "${WARMUP:-$INT8_WARMUP}" --iterations "${ITERATIONS:-$INT8_ITERATIONS}" "${DATA_ARGS[@]}" "$@"
