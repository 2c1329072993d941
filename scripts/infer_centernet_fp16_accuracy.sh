#!/usr/bin/env bash
# COCO val2017 AP of CenterNet-R18 through a TensorRT FP16 engine, batch 32 (on a CPU: FP32 on ONNX
# Runtime). Evaluates DATASETS_DIR; without it, the bundled demo (scripts/_common.sh). Exports the
# ONNX (and builds the engine) on first use (scripts/_common.sh says how the backend is chosen).
# Extra arguments go to inference.py, e.g. --save_json detections.json.
source "$(dirname "$0")/_common.sh"
check_extra_args "$@"
validate_inputs yes "$COCO_TARGET_FP16"
prepare_backend "$(pick_backend)"
exec "$PYTHON" inference.py --record "$(record_path)" "${MODEL_ARGS[@]}" --batchsize "$BATCH" \
  --datasets "$EVAL_DIR" ${TARGET:+--acc_target "$TARGET"} "$@"
