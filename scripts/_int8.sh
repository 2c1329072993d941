# Shared by the infer_centernet_int8_* scripts: calibrate and export the INT8 Q/DQ ONNX, build its
# engine, choose the backend. Sourced after _common.sh (validate_inputs, pick_backend, die, ...).
# Variables a user may set, besides _common.sh's:
#   CALIB_DIR      calibration images: a COCO-layout folder or a folder of images (default
#                  DATASETS_DIR: the first CALIB_IMAGES images of its annotation file; without
#                  DATASETS_DIR, the bundled demo's train scenes)
#   CALIB_IMAGES   how many (default 128)
#   CALIB_METHOD   minmax | entropy | percentile (default minmax; docs/int8.md compares them)
#   INT8_UNCHECKED 1: write and use the INT8 graph without the precision gate, for weights it
#                  refuses (kept apart, as *_unchecked.onnx, and reused by later runs with the
#                  setting; every run that uses it warns); default 0
# TensorRT (a GPU and the tensorrt module) runs the symmetric-int8 graph as a strongly typed
# engine; anywhere else ONNX Runtime runs the CPU flavour (uint8 activations) on the CPU.

validate_int8_inputs() {
  require_positive_int CALIB_IMAGES
  case "${CALIB_METHOD:-minmax}" in
    minmax|entropy|percentile) ;;
    *) die "CALIB_METHOD=$CALIB_METHOD: choose minmax, entropy or percentile" ;;
  esac
  case "${INT8_UNCHECKED:-0}" in
    0|1) ;;
    *) die "INT8_UNCHECKED=$INT8_UNCHECKED: set 1 to write and use the INT8 graph without the precision gate, or 0 (the default) to gate it" ;;
  esac
  if [ -n "${CALIB_DIR:-}" ]; then
    CALIB="$CALIB_DIR"
    [ -d "$CALIB" ] || die "CALIB_DIR=$CALIB is not a folder: point it at a COCO-layout folder or a folder of images"
  elif [ -n "${DATASETS_DIR:-}" ]; then
    CALIB="$DATASETS_DIR"
  else
    CALIB="$("$PYTHON" demo_scenes.py train --calib_images "${CALIB_IMAGES:-128}")"
    if [ "$RUN" = demo ]; then
      echo "== calibration: the stand-in's first ${CALIB_IMAGES:-128} train scenes (generated once into $CALIB)"
    else
      echo "== calibration: no CALIB_DIR or DATASETS_DIR, so the demo's first ${CALIB_IMAGES:-128} train scenes (in $CALIB): ranges measured on 63x63 shapes do not fit COCO weights; set CALIB_DIR to images like yours"
    fi
  fi
}

# Sets MODEL_ARGS, BATCH, PERF_MODEL_ARGS and DEFAULT_PERF_IMAGES, and says which path runs.
prepare_int8_backend() {
  local backend flavour onnx why unchecked=
  backend="$(pick_backend)" || exit 2  # BACKEND=tensorrt where none runs: its error line is out
  BATCH="${BATCHSIZE:-$GPU_BATCHSIZE}" DEFAULT_PERF_IMAGES= PERF_MODEL_ARGS=()
  case "$backend" in
    tensorrt) flavour=tensorrt ;;
    tensorrt-rtx)  # its support matrix lists INT8 only for weight-only GEMMs: the CPU graph runs
      why="TensorRT for RTX lists INT8 only for weight-only quantized GEMMs, not for this model's INT8 convolutions (docs/tensorrt.md)"
      flavour=cpu backend=onnxruntime BATCH="${BATCHSIZE:-$CPU_BATCHSIZE}" DEFAULT_PERF_IMAGES=64 ;;
    torch|onnxruntime)  # the torch backend has no INT8: without TensorRT the CPU graph runs
      why="no CUDA GPU"
      if [ "$backend" = torch ]; then why="no TensorRT, and the torch backend has no INT8"; fi
      case "${BACKEND:-}" in
        onnxruntime) why="BACKEND=onnxruntime" ;;
        torch) why="BACKEND=torch, and the torch backend has no INT8" ;;
      esac
      flavour=cpu backend=onnxruntime BATCH="${BATCHSIZE:-$CPU_BATCHSIZE}" DEFAULT_PERF_IMAGES=64 ;;
  esac
  RECORD_BACKEND="$backend"
  # Unchecked graphs (and their engines) have their own names: a later gated run never deletes
  # one, and a gated file is never taken for one.
  if [ "${INT8_UNCHECKED:-0}" = 1 ]; then unchecked=_unchecked; fi
  onnx="$MODELS_DIR/centernet_int8_$flavour$unchecked.onnx"
  if [ "$flavour" = tensorrt ]; then
    echo "== INT8 on TensorRT: the tensorrt-flavour Q/DQ graph (symmetric int8), calibrated on the first ${CALIB_IMAGES:-128} images of $CALIB (${CALIB_METHOD:-minmax}), built into a strongly typed engine; batch $BATCH"
  else
    echo "== $why: INT8 on ONNX Runtime (CPU): the cpu-flavour Q/DQ graph (uint8 activations), calibrated on the first ${CALIB_IMAGES:-128} images of $CALIB (${CALIB_METHOD:-minmax}); batch $BATCH"
  fi
  if [ -n "$unchecked" ]; then
    echo "== warning: INT8_UNCHECKED=1: $onnx is written and used without the precision gate: its detections are not checked against PyTorch FP32 (run without INT8_UNCHECKED=1 to gate it)"
  fi
  mkdir -p "$MODELS_DIR"
  # Reused only when its export report says it passed the gate (or, unchecked, was written as
  # asked) and was made from this checkpoint, config and calibration request; otherwise
  # calibrated and exported again.
  "$PYTHON" export.py --weight "$CHECKPOINT" --cfg "$CONFIG" --output "$onnx" --precision int8 \
    --calib "$CALIB" --calib_images "${CALIB_IMAGES:-128}" --calib_method "${CALIB_METHOD:-minmax}" \
    --int8_flavour "$flavour" ${unchecked:+--skip-check} --if-stale
  if [ "$backend" = tensorrt ]; then
    local engine="$MODELS_DIR/centernet_int8$unchecked.engine"
    # The engine's self-check compares it with this Q/DQ ONNX on ONNX Runtime CPU.
    "$PYTHON" build_engine.py --model "$onnx" --engine "$engine" --precision int8 --if-stale
    echo "== backend: TensorRT INT8 engine $engine (strongly typed, Q/DQ), batch $BATCH"
    MODEL_ARGS=(--engine "$engine")
  else
    echo "== backend: ONNX Runtime on the CPU, INT8 Q/DQ ONNX $onnx (CPU flavour), batch $BATCH"
    MODEL_ARGS=(--engine "$onnx")
  fi
}
