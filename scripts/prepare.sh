#!/usr/bin/env bash
# Fetch the checkpoint (into checkpoints/) and COCO val2017 (into $DATASETS_DIR):
#   scripts/prepare.sh --only checkpoint        needs nothing set
#   DATASETS_DIR=/data/coco scripts/prepare.sh  [--only coco] [prepare.py options]
# PYTHON picks the interpreter (default python3); mirrors: $OPENMMLAB_MIRROR, $COCO_MIRROR.
# prepare.py reads DATASETS_DIR itself and says so when the COCO part needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" prepare.py "$@"
