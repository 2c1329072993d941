# Shared by the infer_centernet_* scripts: find or make the ONNX/engine and choose the backend.
# Sourced, not run. Variables a user may set:
#   DATASETS_DIR  COCO folder (annotations/instances_val2017.json + images/val2017/)
#   CHECKPOINT    mmdet checkpoint (default checkpoints/centernet_resnet18_..._bb5b3bf7.pth)
#   MODELS_DIR    where ONNX files and engines go (default models/)
#   BACKEND       force one: tensorrt | torch | onnxruntime (default: the best available)
#   PYTHON        interpreter (default python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
CHECKPOINT="${CHECKPOINT:-checkpoints/centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth}"
MODELS_DIR="${MODELS_DIR:-models}"
CONFIG="centernet_r18_8xb16-crop512-140e_coco.py"
ONNX_FP32="$MODELS_DIR/centernet.onnx"
ONNX_FP16="$MODELS_DIR/centernet_fp16.onnx"
ENGINE_FP16="$MODELS_DIR/centernet_fp16.engine"

die() { echo "error: $*" >&2; exit 2; }

require_dataset() {
  [ -n "${DATASETS_DIR:-}" ] || die "set DATASETS_DIR to your COCO folder (annotations/instances_val2017.json + images/val2017/); to download it: DATASETS_DIR=/data/coco scripts/prepare.sh"
  [ -f "$DATASETS_DIR/annotations/instances_val2017.json" ] || die "$DATASETS_DIR/annotations/instances_val2017.json not found; to download COCO val2017: DATASETS_DIR=$DATASETS_DIR scripts/prepare.sh --only coco"
}

require_onnx() {
  if [ -f "$ONNX_FP32" ] && [ -f "$ONNX_FP16" ]; then return; fi
  [ -f "$CHECKPOINT" ] || die "checkpoint $CHECKPOINT not found; download it with: scripts/prepare.sh --only checkpoint (or set CHECKPOINT=/path/to/centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth)"
  mkdir -p "$MODELS_DIR"
  echo "== exporting $ONNX_FP32 and $ONNX_FP16 from $CHECKPOINT"
  "$PYTHON" export.py --weight "$CHECKPOINT" --cfg "$CONFIG" --output "$ONNX_FP32" --precision both
}

# Prints tensorrt, torch or onnxruntime: TensorRT if importable and a GPU is present, else torch
# on CUDA, else ONNX Runtime on the CPU.
pick_backend() {
  if [ -n "${BACKEND:-}" ]; then echo "$BACKEND"; return; fi
  "$PYTHON" - <<'PY'
import importlib.util
import torch
gpu = torch.cuda.is_available()
if gpu and importlib.util.find_spec('tensorrt'):
    print('tensorrt')
elif gpu:
    print('torch')
else:
    print('onnxruntime')
PY
}

# Sets MODEL_ARGS for inference.py (and the performance defaults) and says which path runs.
prepare_backend() {
  local backend="$1"
  # DEFAULT_PERF_IMAGES empty: inference.py's own pipeline-tier sample (1000 images)
  DEFAULT_WARMUP=20 DEFAULT_ITERATIONS=200 DEFAULT_PERF_IMAGES=
  PERF_MODEL_ARGS=()  # what only the performance script adds
  case "$backend" in
    tensorrt)
      require_onnx
      "$PYTHON" build_engine.py --model "$ONNX_FP16" --engine "$ENGINE_FP16" --precision fp16 --if-stale
      echo "== backend: TensorRT FP16 engine $ENGINE_FP16"
      MODEL_ARGS=(--engine "$ENGINE_FP16")
      ;;
    torch)
      [ -f "$CHECKPOINT" ] || die "checkpoint $CHECKPOINT not found; download it with: scripts/prepare.sh --only checkpoint"
      echo "== backend: PyTorch CUDA FP16 (TensorRT is not installed; see README, \"TensorRT\")"
      MODEL_ARGS=(--backend torch --weight "$CHECKPOINT" --cfg "$CONFIG" --device cuda --precision fp16)
      # torch.compile: 1.9x the engine FPS on an H200 for ~15 s of compiling (README, "Performance")
      PERF_MODEL_ARGS=(--compile default)
      ;;
    onnxruntime)
      require_onnx
      echo "== backend: ONNX Runtime on the CPU, FP32 ONNX (no CUDA GPU found; FP16 needs one)"
      MODEL_ARGS=(--engine "$ONNX_FP32")
      # A CPU does a few images a second: time a few batches, not 200.
      DEFAULT_WARMUP=1 DEFAULT_ITERATIONS=5 DEFAULT_PERF_IMAGES=64
      ;;
    *) die "BACKEND=$backend: choose tensorrt, torch or onnxruntime" ;;
  esac
}
