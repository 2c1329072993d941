#!/usr/bin/env bash
# FPS of CenterNet-R18's TensorRT FP16 engine at batch 32 (on a CPU: FP32 on ONNX Runtime): three
# labelled tiers (docs/performance.md). The third tier (real files) runs when DATASETS_DIR is set.
# Without a checkpoint, the bundled demo's stand-in weights: the same network, the same speed.
source "$(dirname "$0")/_common.sh"
check_extra_args "$@"
validate_inputs no
announce_demo_performance
prepare_backend "$(pick_backend)"
perf_count_args
DATA_ARGS=()
LIMIT="${PERF_IMAGES:-$DEFAULT_PERF_IMAGES}"
if [ -n "${DATASETS_DIR:-}" ]; then DATA_ARGS=(--datasets "$DATASETS_DIR" ${LIMIT:+--limit "$LIMIT"}); fi
exec "$PYTHON" inference.py --record "$(record_path)" "${MODEL_ARGS[@]}" "${PERF_MODEL_ARGS[@]}" --batchsize "$BATCH" --perf_only \
  --cuda_graph "${PERF_COUNT_ARGS[@]}" "${DATA_ARGS[@]}" "$@"
