# Shared by the infer_centernet_* scripts: check every input, find or make the ONNX/engine, choose
# the backend. Sourced, not run. Variables a user may set:
#   DATASETS_DIR  COCO folder (annotations/instances_val2017.json + images/val2017/)
#   CHECKPOINT    mmdet checkpoint (default checkpoints/centernet_resnet18_..._bb5b3bf7.pth)
#   MODELS_DIR    where ONNX files and engines go (default models/; the demo's: MODELS_DIR/standin-demo)
#   BACKEND       force one: tensorrt (TensorRT or TensorRT for RTX) | torch | onnxruntime
#                 (default: the best available)
#   BATCHSIZE     images per batch (default 32 on a GPU, CPU_BATCHSIZE on the CPU)
#   WARMUP, ITERATIONS, PERF_IMAGES, ACC_TARGET   passed on to inference.py when set
#   DEMO_CACHE    where the bundled demo's generated scenes go (default ~/.cache/centernet-kit)
#   RESULTS_DIR   where run records go (default results/; the demo's: RESULTS_DIR/standin-demo,
#                 a checkpoint of yours on the demo's scenes: RESULTS_DIR/standin-scenes);
#                 --record FILE among the extra arguments replaces the whole path
#   PYTHON        interpreter (default python3)
# With neither DATASETS_DIR nor a checkpoint (CHECKPOINT unset and the default one absent) the
# scripts run the bundled demo: the trained stand-in checkpoint on its generated held-out scenes
# (centernet/standin_demo.py); with a checkpoint but no DATASETS_DIR, that checkpoint on them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
# export.py's advice names this script's variables instead of its own flags (centernet/errors.py)
export CENTERNET_SCRIPT="${0##*/}"
DEFAULT_CHECKPOINT="checkpoints/centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth"
STANDIN_CHECKPOINT="tests/fixtures/standin/standin_centernet.pth"
MODELS_DIR="${MODELS_DIR:-models}"
CONFIG="centernet_r18_8xb16-crop512-140e_coco.py"
# ACC_TARGET defaults (README "Quick start" lists them; tests/test_scripts.py checks they agree).
COCO_TARGET_FP16=0.255  # the reference project's FP16 target (published AP 0.259)
COCO_TARGET_INT8=0.25   # INT8 may lose up to half a point more
# The demo's: the stand-in's recorded test AP, 0.6506 (ONNX Runtime FP32, docs/int8.md), less
# 0.01, the AP the kit lets INT8 lose; every sound precision and backend measured 0.649-0.652.
STANDIN_TARGET=0.64
GPU_BATCHSIZE=32
# ONNX Runtime FP32 on 2 (shared) cores, 512x672 canvases: batch 1 1.3 img/s, batch 2/4/8 1.5-2.3
# img/s, 4 and 8 equal within noise (docs/precision-gate.md, "CPU batch"); 4 keeps memory small and
# the progress bar moving. Batch 32 took 13 s a batch.
CPU_BATCHSIZE=4

die() { echo "error: $*" >&2; exit 2; }

# The script's extra arguments (they go to inference.py) checked by inference.py's own parser
# before any long work, so that a typo (--bogus) stops at once in one line instead of after an
# export; the parser alone, no torch. `--help` shows inference.py's help and ends the script.
check_extra_args() {
  local status=0
  "$PYTHON" -c 'import sys, inference
try:
    inference.parse_args(sys.argv[1:])
except SystemExit as stop:
    sys.exit(3 if stop.code in (0, None) else stop.code)' "$@" || status=$?
  case "$status" in
    0) ;;
    3) exit 0 ;;
    *) exit "$status" ;;
  esac
}

require_positive_int() {  # NAME: the variable must be unset or a whole number >= 1 (>= 0 with 0)
  local name="$1" min="${2:-1}" value="${!1:-}"
  [ -z "$value" ] && return
  [[ "$value" =~ ^[0-9]+$ ]] && [ "$value" -ge "$min" ] || die "$name=$value: expected a whole number >= $min"
}

# Everything a run needs, checked before any long work (a model export, a timing run). Decides
# what runs (RUN: coco, demo, or own-on-demo: the user's checkpoint on the demo's scenes), sets
# CHECKPOINT, MODELS_DIR and, when the script evaluates (need_dataset=yes), EVAL_DIR and TARGET.
validate_inputs() {
  local need_dataset="$1" target="${2:-$COCO_TARGET_FP16}"
  case "${BACKEND:-}" in
    ''|tensorrt|torch|onnxruntime) ;;
    *) die "BACKEND=$BACKEND: choose tensorrt, torch or onnxruntime (or leave it unset for the best available)" ;;
  esac
  require_positive_int BATCHSIZE
  require_positive_int WARMUP 0
  require_positive_int ITERATIONS
  require_positive_int PERF_IMAGES
  if [ -n "${ACC_TARGET:-}" ]; then
    [[ "$ACC_TARGET" =~ ^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$ ]] || die "ACC_TARGET=$ACC_TARGET: expected an AP between 0 and 1, such as $target"
  fi
  if [ -n "${DATASETS_DIR:-}" ]; then
    [ -f "$DATASETS_DIR/annotations/instances_val2017.json" ] || die "$DATASETS_DIR/annotations/instances_val2017.json not found; to download COCO val2017: DATASETS_DIR=$DATASETS_DIR scripts/prepare.sh --only coco"
    [ -d "$DATASETS_DIR/images/val2017" ] || die "$DATASETS_DIR/images/val2017/ not found (the COCO layout is annotations/ + images/val2017/); to download it: DATASETS_DIR=$DATASETS_DIR scripts/prepare.sh --only coco"
    RUN=coco
  elif [ -z "${CHECKPOINT:-}" ] && [ ! -f "$DEFAULT_CHECKPOINT" ]; then
    RUN=demo CHECKPOINT="$STANDIN_CHECKPOINT" MODELS_DIR="$MODELS_DIR/standin-demo"
    [ -f "$CHECKPOINT" ] || die "the bundled demo's checkpoint $CHECKPOINT is missing: run the scripts from a complete clone, or fetch the real checkpoint and COCO: DATASETS_DIR=/data/coco scripts/prepare.sh"
  else
    RUN=own-on-demo
  fi
  if [ -n "${CHECKPOINT:-}" ]; then
    [ -f "$CHECKPOINT" ] || die "CHECKPOINT=$CHECKPOINT: no such file: fix CHECKPOINT (the path of an mmdet CenterNet-R18 checkpoint .pth) or unset it"
  fi
  CHECKPOINT="${CHECKPOINT:-$DEFAULT_CHECKPOINT}"
  [ -f "$CHECKPOINT" ] || die "checkpoint $CHECKPOINT not found; download it with: scripts/prepare.sh --only checkpoint (or set CHECKPOINT=/path/to/centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth)"
  [ -f "$CONFIG" ] || die "config $CONFIG not found in $ROOT: run the scripts from a complete clone"
  ONNX_FP32="$MODELS_DIR/centernet.onnx"
  ONNX_FP16="$MODELS_DIR/centernet_fp16.onnx"
  ENGINE_FP16="$MODELS_DIR/centernet_fp16.engine"
  if [ "$RUN" = demo ]; then
    echo "== bundled demo, not COCO and not the published model: the kit's stand-in CenterNet-R18 ($CHECKPOINT, trained on generated shapes); the real run: DATASETS_DIR=/data/coco scripts/prepare.sh (fetches COCO val2017 and the checkpoint), then this script with DATASETS_DIR=/data/coco"
  fi
  EVAL_DIR="${DATASETS_DIR:-}" TARGET="${ACC_TARGET:-$target}"
  [ "$need_dataset" = yes ] && [ "$RUN" != coco ] || return 0
  EVAL_DIR="$("$PYTHON" demo_scenes.py test)"
  if [ "$RUN" = demo ]; then
    TARGET="${ACC_TARGET:-$STANDIN_TARGET}"
    echo "== it runs on the stand-in's 500 held-out test scenes (63x63, generated once into $EVAL_DIR); its target is its own, AP >= $STANDIN_TARGET (its recorded AP 0.6506 less 0.01), not COCO's $target${ACC_TARGET:+; here ACC_TARGET=$ACC_TARGET}"
  else
    TARGET="${ACC_TARGET:-}"
    echo "== no DATASETS_DIR: $CHECKPOINT runs on the bundled demo's 500 generated scenes (63x63 shapes, in $EVAL_DIR), not COCO: for COCO weights this AP means nothing, and no target applies unless ACC_TARGET is set; for COCO val2017: DATASETS_DIR=/data/coco scripts/prepare.sh --only coco"
  fi
}

# The run record inference.py writes: by run kind (COCO, the bundled demo, a checkpoint of
# yours on the demo's scenes), then by script and backend, so that no run overwrites another's
# (fp16_accuracy_onnxruntime_bs4.json, int8_performance_tensorrt_bs32.json, ...).
record_path() {
  local folder="${RESULTS_DIR:-results}" name="${CENTERNET_SCRIPT%.sh}"
  case "$RUN" in
    demo) folder="$folder/standin-demo" ;;
    own-on-demo) folder="$folder/standin-scenes" ;;
  esac
  echo "$folder/${name#infer_centernet_}_${RECORD_BACKEND}_bs$BATCH.json"
}

# The performance scripts' word on the demo: what the FPS mean, and why the pipeline tier is out.
announce_demo_performance() {
  [ "$RUN" = demo ] || return 0
  echo "== these FPS are the real CenterNet-R18's: the same network on the same canvas sizes, whatever the weights; the pipeline tier (images from disk) runs with DATASETS_DIR, since the demo's 63x63 scenes would not measure it"
}

# require_onnx fp32|both: reuse $ONNX_FP32 (and $ONNX_FP16) only when their export report says they
# passed the precision gate and were made from this checkpoint and config; else export them again.
require_onnx() {
  mkdir -p "$MODELS_DIR"
  "$PYTHON" export.py --weight "$CHECKPOINT" --cfg "$CONFIG" --output "$ONNX_FP32" --precision "$1" --if-stale
}

# Prints tensorrt, tensorrt-rtx, torch or onnxruntime, and says why on stderr: TensorRT when it
# imports and a GPU is present; else TensorRT for RTX when this GPU is one of its targets; else
# torch on CUDA; else ONNX Runtime on the CPU (centernet.engine.api.runtime_for_this_gpu).
# BACKEND=tensorrt takes the same TensorRT, and ends in one error line (exit 2) where neither
# runs an engine on this GPU: a build there would write an engine that cannot run.
pick_backend() {
  if [ -n "${BACKEND:-}" ] && [ "$BACKEND" != tensorrt ]; then echo "$BACKEND"; return; fi
  BACKEND="${BACKEND:-}" "$PYTHON" - <<'PY'
import os
import sys
import torch
forced = os.environ['BACKEND'] == 'tensorrt'
if not torch.cuda.is_available():
    if forced:
        print('error: BACKEND=tensorrt: no CUDA GPU is visible, and a TensorRT engine runs on one: '
              'check the driver and CUDA_VISIBLE_DEVICES, or unset BACKEND for ONNX Runtime on the '
              'CPU', file=sys.stderr)
        sys.exit(2)
    print('onnxruntime')
    sys.exit()
from centernet.engine.api import runtime_for_this_gpu
runtime, why = runtime_for_this_gpu()
if forced and runtime is None:
    print(f'error: BACKEND=tensorrt: {why}: install TensorRT 10 or 11 (pip install tensorrt, '
          'docs/tensorrt.md), or unset BACKEND for the best available backend', file=sys.stderr)
    sys.exit(2)
chosen = {'tensorrt': 'TensorRT', 'tensorrt-rtx': 'TensorRT for RTX'}.get(runtime, 'PyTorch CUDA')
print(f'== {why}: the engine runs on {chosen}', file=sys.stderr)
print(runtime or 'torch')
PY
}

# Sets MODEL_ARGS (and BATCH, PERF_MODEL_ARGS, DEFAULT_PERF_IMAGES) and says which path runs.
prepare_backend() {
  local backend="$1"
  RECORD_BACKEND="$backend"
  DEFAULT_PERF_IMAGES=  # empty: inference.py's own pipeline-tier sample
  PERF_MODEL_ARGS=()    # what only the performance script adds
  BATCH="${BATCHSIZE:-$GPU_BATCHSIZE}"
  case "$backend" in
    '') exit 2 ;;  # pick_backend failed, and said why in its error line
    tensorrt|tensorrt-rtx)
      require_onnx both
      local runtime_args=(--runtime auto) title=TensorRT
      if [ "$backend" = tensorrt-rtx ]; then
        # For this GPU only: the quickest ahead-of-time build, and its self-check runs at once.
        runtime_args=(--runtime tensorrt-rtx --compute_capability current) title="TensorRT for RTX"
      fi
      "$PYTHON" build_engine.py --model "$ONNX_FP16" --engine "$ENGINE_FP16" --precision fp16 \
        "${runtime_args[@]}" --if-stale
      echo "== backend: $title FP16 engine $ENGINE_FP16, batch $BATCH"
      MODEL_ARGS=(--engine "$ENGINE_FP16")
      ;;
    torch)
      echo "== backend: PyTorch CUDA FP16, batch $BATCH (TensorRT is not installed; see docs/tensorrt.md)"
      MODEL_ARGS=(--backend torch --weight "$CHECKPOINT" --cfg "$CONFIG" --device cuda --precision fp16)
      # torch.compile: 1.9x the engine FPS on an H200 for ~15 s of compiling (docs/performance.md)
      PERF_MODEL_ARGS=(--compile default)
      ;;
    onnxruntime)
      BATCH="${BATCHSIZE:-$CPU_BATCHSIZE}"
      local why="no CUDA GPU"
      if [ -n "${BACKEND:-}" ]; then why="BACKEND=onnxruntime"; fi
      echo "== $why: this runs FP32 on ONNX Runtime (CPU), not FP16 (FP16 needs a GPU); batch $BATCH"
      require_onnx fp32
      echo "== backend: ONNX Runtime on the CPU, FP32 ONNX $ONNX_FP32"
      MODEL_ARGS=(--engine "$ONNX_FP32")
      DEFAULT_PERF_IMAGES=64  # the pipeline tier reads this many files: a CPU does a few a second
      ;;
  esac
}

# inference.py's performance-mode counts, only when the user set them (otherwise inference.py
# sizes warm-up and timing by time).
perf_count_args() {
  PERF_COUNT_ARGS=()
  if [ -n "${WARMUP:-}" ]; then PERF_COUNT_ARGS+=(--warmup "$WARMUP"); fi
  if [ -n "${ITERATIONS:-}" ]; then PERF_COUNT_ARGS+=(--iterations "$ITERATIONS"); fi
}
