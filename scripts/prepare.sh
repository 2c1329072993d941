#!/usr/bin/env bash
# Fetch the checkpoint and COCO val2017 into $DATASETS_DIR: scripts/prepare.sh [prepare.py options]
# PYTHON picks the interpreter (default python3); mirrors: $OPENMMLAB_MIRROR, $COCO_MIRROR.
set -euo pipefail
: "${DATASETS_DIR:?set DATASETS_DIR to the folder that gets annotations/ and images/val2017/}"
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" prepare.py --datasets "$DATASETS_DIR" "$@"
