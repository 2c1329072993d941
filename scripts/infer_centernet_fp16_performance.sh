#!/usr/bin/env bash
# FPS of CenterNet-R18's TensorRT FP16 engine at batch 32: three labelled tiers (README,
# "Performance"). The third tier (real files) runs when DATASETS_DIR is set.
source "$(dirname "$0")/_common.sh"
prepare_backend "$(pick_backend)"
DATA_ARGS=()
LIMIT="${PERF_IMAGES:-$DEFAULT_PERF_IMAGES}"
if [ -n "${DATASETS_DIR:-}" ]; then DATA_ARGS=(--datasets "$DATASETS_DIR" ${LIMIT:+--limit "$LIMIT"}); fi
exec "$PYTHON" inference.py "${MODEL_ARGS[@]}" "${PERF_MODEL_ARGS[@]}" --batchsize "${BATCHSIZE:-32}" --perf_only \
  --cuda_graph --warmup "${WARMUP:-$DEFAULT_WARMUP}" --iterations "${ITERATIONS:-$DEFAULT_ITERATIONS}" "${DATA_ARGS[@]}" "$@"
