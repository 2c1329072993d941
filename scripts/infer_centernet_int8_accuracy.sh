#!/usr/bin/env bash
# COCO val2017 AP of CenterNet-R18 in INT8: a TensorRT engine from the Q/DQ ONNX, or ONNX Runtime
# on the CPU (scripts/_int8.sh says which, and how calibration is chosen). Needs DATASETS_DIR.
# Extra arguments go to inference.py, e.g. --save_json detections.json.
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_int8.sh"
validate_inputs yes
validate_int8_inputs
prepare_int8_backend
exec "$PYTHON" inference.py "${MODEL_ARGS[@]}" --batchsize "$BATCH" \
  --datasets "$DATASETS_DIR" --acc_target "${ACC_TARGET:-0.25}" "$@"
