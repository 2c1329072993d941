# Shared by the infer_centernet_int8_* scripts: calibrate and export the INT8 Q/DQ ONNX, build its
# engine, choose the backend. Sourced after _common.sh (validate_inputs, pick_backend, die, ...).
# Variables a user may set, besides _common.sh's:
#   CALIB_DIR      calibration images: a COCO-layout folder or a folder of images
#                  (default DATASETS_DIR: the first CALIB_IMAGES images of its annotation file)
#   CALIB_IMAGES   how many (default 128)
#   CALIB_METHOD   minmax | entropy | percentile (default minmax; docs/int8.md compares them)
# TensorRT (a GPU and the tensorrt module) runs the symmetric-int8 graph as a strongly typed
# engine; anywhere else ONNX Runtime runs the CPU flavour (uint8 activations) on the CPU.

validate_int8_inputs() {
  require_positive_int CALIB_IMAGES
  case "${CALIB_METHOD:-minmax}" in
    minmax|entropy|percentile) ;;
    *) die "CALIB_METHOD=$CALIB_METHOD: choose minmax, entropy or percentile" ;;
  esac
  CALIB="${CALIB_DIR:-${DATASETS_DIR:-}}"
  [ -n "$CALIB" ] || die "set DATASETS_DIR (COCO folder) or CALIB_DIR (a folder of images) to calibrate the INT8 model on"
  [ -d "$CALIB" ] || die "CALIB_DIR=$CALIB is not a folder: point it at a COCO-layout folder or a folder of images"
}

# Sets MODEL_ARGS, BATCH, PERF_MODEL_ARGS and DEFAULT_PERF_IMAGES, and says which path runs.
prepare_int8_backend() {
  local backend flavour onnx
  backend="$(pick_backend)"
  BATCH="${BATCHSIZE:-$GPU_BATCHSIZE}" DEFAULT_PERF_IMAGES= PERF_MODEL_ARGS=()
  case "$backend" in
    tensorrt) flavour=tensorrt ;;
    tensorrt-rtx)  # its support matrix lists INT8 only for weight-only GEMMs: the CPU graph runs
      echo "== TensorRT for RTX lists INT8 only for weight-only quantized GEMMs, not for this model's INT8 convolutions (docs/tensorrt.md): the INT8 graph runs on ONNX Runtime (CPU) instead" >&2
      flavour=cpu backend=onnxruntime BATCH="${BATCHSIZE:-$CPU_BATCHSIZE}" DEFAULT_PERF_IMAGES=64 ;;
    torch|onnxruntime)  # the torch backend has no INT8: without TensorRT the CPU graph runs
      flavour=cpu backend=onnxruntime BATCH="${BATCHSIZE:-$CPU_BATCHSIZE}" DEFAULT_PERF_IMAGES=64 ;;
  esac
  onnx="$MODELS_DIR/centernet_int8_$flavour.onnx"
  mkdir -p "$MODELS_DIR"
  # Reused only when its export report says it passed the gate and was made from this checkpoint,
  # config and calibration request; otherwise calibrated and exported again.
  "$PYTHON" export.py --weight "$CHECKPOINT" --cfg "$CONFIG" --output "$onnx" --precision int8 \
    --calib "$CALIB" --calib_images "${CALIB_IMAGES:-128}" --calib_method "${CALIB_METHOD:-minmax}" \
    --int8_flavour "$flavour" --if-stale
  if [ "$backend" = tensorrt ]; then
    local engine="$MODELS_DIR/centernet_int8.engine"
    # The engine's self-check compares it with this Q/DQ ONNX on ONNX Runtime CPU.
    "$PYTHON" build_engine.py --model "$onnx" --engine "$engine" --precision int8 --if-stale
    echo "== backend: TensorRT INT8 engine $engine (strongly typed, Q/DQ), batch $BATCH"
    MODEL_ARGS=(--engine "$engine")
  else
    echo "== backend: ONNX Runtime on the CPU, INT8 Q/DQ ONNX $onnx (CPU flavour), batch $BATCH"
    MODEL_ARGS=(--engine "$onnx")
  fi
}
