#!/usr/bin/env bash
# COCO val2017 AP of CenterNet-R18 through a TensorRT FP16 engine, batch 32 (on a CPU: FP32 on ONNX
# Runtime). Needs DATASETS_DIR; exports the ONNX (and builds the engine) on first use
# (scripts/_common.sh says how the backend is chosen). Extra arguments go to inference.py, e.g.
# --save_json detections.json.
source "$(dirname "$0")/_common.sh"
validate_inputs yes
prepare_backend "$(pick_backend)"
exec "$PYTHON" inference.py "${MODEL_ARGS[@]}" --batchsize "$BATCH" \
  --datasets "$DATASETS_DIR" --acc_target "${ACC_TARGET:-0.255}" "$@"
