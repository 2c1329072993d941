#!/usr/bin/env bash
# COCO val2017 AP of CenterNet-R18 in INT8: a TensorRT engine from the Q/DQ ONNX, or ONNX Runtime
# on the CPU (scripts/_int8.sh says which, and how calibration is chosen). Evaluates DATASETS_DIR;
# without it, the bundled demo (scripts/_common.sh). Extra arguments go to inference.py, e.g.
# --save_json detections.json.
source "$(dirname "$0")/_common.sh"
check_extra_args "$@"
source "$(dirname "$0")/_int8.sh"
validate_inputs yes "$COCO_TARGET_INT8"
validate_int8_inputs
prepare_int8_backend
exec "$PYTHON" inference.py --record "$(record_path)" "${MODEL_ARGS[@]}" --batchsize "$BATCH" \
  --datasets "$EVAL_DIR" ${TARGET:+--acc_target "$TARGET"} "$@"
