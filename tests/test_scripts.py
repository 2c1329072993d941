"""The two user-facing shell scripts, on the CPU path (ONNX Runtime), end to end."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from centernet.synthetic import write_coco_dataset


def run_script(name, env, *args):
    full_env = dict(os.environ, PYTHON=sys.executable, **env)
    return subprocess.run(['bash', str(ROOT / 'scripts' / name), *args], env=full_env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def setup(tmp_path_factory, checkpoint_path):
    root = tmp_path_factory.mktemp('scripts')
    write_coco_dataset(root / 'coco', ((640, 480), (480, 640), (500, 375)), seed=5)
    return dict(DATASETS_DIR=str(root / 'coco'), CHECKPOINT=str(checkpoint_path),
                MODELS_DIR=str(root / 'models'), BACKEND='onnxruntime'), root


def test_accuracy_script_exports_then_evaluates(setup):
    env, root = setup
    done = run_script('infer_centernet_fp16_accuracy.sh', dict(env, ACC_TARGET='0'),
                      '--record', str(root / 'acc.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'backend: ONNX Runtime on the CPU' in done.stdout
    assert (root / 'models' / 'centernet.onnx').is_file()
    assert (root / 'models' / 'centernet_fp16.onnx').is_file()
    record = json.loads((root / 'acc.json').read_text())
    assert record['images'] == 3 and record['batchsize'] == 32


def test_performance_script(setup):
    env, root = setup
    done = run_script('infer_centernet_fp16_performance.sh',
                      dict(env, BATCHSIZE='1', WARMUP='1', ITERATIONS='2'),
                      '--record', str(root / 'perf.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(json.loads((root / 'perf.json').read_text())['tiers']) == \
        {'engine', 'engine+io', 'pipeline'}


def test_missing_dataset_and_checkpoint_say_where_to_get_them(setup, tmp_path):
    env, _ = setup
    done = run_script('infer_centernet_fp16_accuracy.sh', dict(env, DATASETS_DIR=str(tmp_path)))
    assert done.returncode == 2
    assert 'instances_val2017.json not found' in done.stderr and 'prepare.sh' in done.stderr
    done = run_script('infer_centernet_fp16_performance.sh',
                      dict(env, CHECKPOINT=str(tmp_path / 'x.pth'),
                           MODELS_DIR=str(tmp_path / 'm')))
    assert done.returncode == 2
    assert 'checkpoint' in done.stderr and 'prepare.sh --only checkpoint' in done.stderr
