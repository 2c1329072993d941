# Shared by the infer_centernet_int8_* scripts: calibrate and export the INT8 Q/DQ ONNX, build
# its engine, and choose the backend. Sourced after _common.sh, of which it uses PYTHON,
# CHECKPOINT, MODELS_DIR, CONFIG, die, require_dataset and pick_backend. Variables a user may set
# (besides _common.sh's):
#   CALIB_DIR      calibration images: a COCO-layout folder or a folder of images
#                  (default DATASETS_DIR; the first CALIB_IMAGES of its annotation file)
#   CALIB_IMAGES   how many (default 128)
#   CALIB_METHOD   minmax | entropy | percentile (default minmax; docs/int8.md compares them)
# TensorRT (a GPU and the tensorrt module) runs the symmetric-int8 graph as a strongly typed
# engine; anywhere else ONNX Runtime runs the CPU flavour (uint8 activations) on the CPU.

INT8_FLAVOUR=tensorrt
prepare_int8_backend() {
  local backend
  backend="$(pick_backend)"
  case "$backend" in
    tensorrt) INT8_FLAVOUR=tensorrt ;;
    torch|onnxruntime)
      # The torch backend has no INT8; a GPU without TensorRT runs the CPU graph.
      INT8_FLAVOUR=cpu backend=onnxruntime ;;
    *) die "BACKEND=$backend: choose tensorrt or onnxruntime" ;;
  esac
  local onnx="$MODELS_DIR/centernet_int8_$INT8_FLAVOUR.onnx"
  if [ ! -f "$onnx" ]; then
    local calib="${CALIB_DIR:-${DATASETS_DIR:-}}"
    [ -n "$calib" ] || die "set DATASETS_DIR (COCO folder) or CALIB_DIR (calibration images) to calibrate the INT8 model"
    [ -f "$CHECKPOINT" ] || die "checkpoint $CHECKPOINT not found; download it with: scripts/prepare.sh --only checkpoint"
    mkdir -p "$MODELS_DIR"
    echo "== calibrating and exporting $onnx ($INT8_FLAVOUR flavour) on $calib"
    "$PYTHON" export.py --weight "$CHECKPOINT" --cfg "$CONFIG" --output "$onnx" --precision int8 \
      --calib "$calib" --calib_images "${CALIB_IMAGES:-128}" --calib_method "${CALIB_METHOD:-minmax}" \
      --int8_flavour "$INT8_FLAVOUR"
  fi
  INT8_WARMUP=20 INT8_ITERATIONS=200 INT8_PERF_IMAGES=
  if [ "$backend" = tensorrt ]; then
    local engine="$MODELS_DIR/centernet_int8.engine"
    "$PYTHON" build_engine.py --model "$onnx" --engine "$engine" --precision int8 --if-stale
    echo "== backend: TensorRT INT8 engine $engine (strongly typed, Q/DQ)"
    MODEL_ARGS=(--engine "$engine") PERF_ARGS=(--cuda_graph)
  else
    echo "== backend: ONNX Runtime on the CPU, INT8 Q/DQ ONNX $onnx"
    MODEL_ARGS=(--engine "$onnx") PERF_ARGS=()
    # A CPU does a few images a second: time a few batches, not 200.
    INT8_WARMUP=1 INT8_ITERATIONS=5 INT8_PERF_IMAGES=64
  fi
}
