"""Running the user scripts as a user does, for the script tests (test_scripts*.py): the
variables they read and a clean environment (the journey's data and checkpoints: conftest's
`journey` fixture)."""

import json
import os
import subprocess
import sys

from conftest import ROOT

# The variables the scripts read: a test sets the ones it means, never inherits the caller's.
SCRIPT_VARIABLES = ('DATASETS_DIR', 'CHECKPOINT', 'MODELS_DIR', 'BACKEND', 'BATCHSIZE', 'WARMUP',
                    'ITERATIONS', 'PERF_IMAGES', 'ACC_TARGET', 'CALIB_DIR', 'CALIB_IMAGES',
                    'CALIB_METHOD', 'INT8_UNCHECKED', 'DEMO_CACHE', 'XDG_CACHE_HOME',
                    'RESULTS_DIR')
STANDIN = ROOT / 'tests' / 'fixtures' / 'standin' / 'standin_centernet.pth'
# docs/int8.md: the stand-in's test AP on ONNX Runtime FP32, measured when it was trained
STANDIN_RECORDED_AP = 0.6506
DEFAULT_CHECKPOINT = ROOT / 'checkpoints' / \
    'centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth'


def run_script(name, env, *args):
    inherited = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARIABLES}
    full_env = dict(inherited, PYTHON=sys.executable, **{k: str(v) for k, v in env.items()})
    return subprocess.run(['bash', str(ROOT / 'scripts' / name), *args], env=full_env,
                          capture_output=True, text=True, timeout=900)


def env_for(root, checkpoint, models):
    return dict(DATASETS_DIR=str(root / 'coco'), CHECKPOINT=str(checkpoint),
                MODELS_DIR=str(root / models), BACKEND='onnxruntime',
                DEMO_CACHE=str(root / 'demo_cache'))


def export_report(root, models):
    return json.loads((root / models / 'centernet.export.json').read_text())


