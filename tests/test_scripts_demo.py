"""The bundled demo: the four scripts as a newcomer runs them on a CPU, with nothing
downloaded, no DATASETS_DIR and no checkpoint (the trained stand-in on its generated scenes).
Its own file, so that pytest-xdist runs it beside the journey's scripts (test_scripts.py)."""

import hashlib
import json

import pytest

from conftest import CONFIG
from script_runs import DEFAULT_CHECKPOINT, STANDIN, STANDIN_RECORDED_AP, run_script


def _tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob('*') if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b'\0' + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """The four scripts as a newcomer runs them on a CPU: with nothing set but where things go."""
    if DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f'{DEFAULT_CHECKPOINT} is there: the scripts run it, not the demo')
    if not STANDIN.is_file():
        pytest.skip(f'{STANDIN} absent')
    root = tmp_path_factory.mktemp('demo')
    env = dict(MODELS_DIR=root / 'models', DEMO_CACHE=root / 'cache', BACKEND='onnxruntime')
    return root, env


def _ap(record):
    return json.loads(record.read_text())['metrics']['mAP']


# Slow (~40 s) on purpose: a newcomer's first two commands, export and 500 scenes included.
def test_demo_fp16_pair_runs_the_standin_and_says_so(demo, standin_test_scenes, tmp_path):
    root, env = demo
    done = run_script('infer_centernet_fp16_accuracy.sh', env, '--record', str(root / 'acc.json'),
                      '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith('== bundled demo, not COCO and not the published model: the '
                               "kit's stand-in CenterNet-R18") and \
        'DATASETS_DIR=/data/coco scripts/prepare.sh' in lines[0]
    assert "its target is its own, AP >= 0.64" in lines[1]
    # its AP: the one recorded when the stand-in was trained (torch backend, docs/int8.md)
    assert abs(_ap(root / 'acc.json') - STANDIN_RECORDED_AP) <= 0.01
    assert 'PASS: AP 0.6' in done.stdout and 'meets ACC_TARGET=0.64' in done.stdout
    # the scenes: exactly the stand-in's test split, generated once
    scenes = next((root / 'cache').glob('standin-*/test-500'))
    assert _tree_digest(scenes) == _tree_digest(standin_test_scenes)  # write_split's
    # its models have their own folder, made from the stand-in: a COCO run never takes them
    models = root / 'models'
    assert sorted(p.name for p in models.iterdir()) == ['standin-demo']
    report = json.loads((models / 'standin-demo' / 'centernet.export.json').read_text())
    assert report['weight_sha256'] == hashlib.sha256(STANDIN.read_bytes()).hexdigest()
    from centernet.export_cli import reuse_problem
    other = tmp_path / 'user.pth'
    other.write_bytes(STANDIN.read_bytes()[:-1] + b'x')
    assert reuse_problem(models / 'standin-demo' / 'centernet.onnx', 'fp32', other, CONFIG) == \
        f'made from another checkpoint than {other}'
    # the performance script: the same export, the real model's speed, no pipeline tier. No
    # --record: the demo's run record goes to RESULTS_DIR/standin-demo/, named by script and
    # backend (it went to the checkout's results/, shared with COCO runs)
    quick = dict(env, BATCHSIZE=1, WARMUP=0, ITERATIONS=1,  # what is printed, not how fast
                 RESULTS_DIR=tmp_path / 'results')
    done = run_script('infer_centernet_fp16_performance.sh', quick, '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith('== bundled demo, not COCO')
    assert lines[1].startswith("== these FPS are the real CenterNet-R18's")
    assert 'reusing the fp32 export' in done.stdout
    record = tmp_path / 'results' / 'standin-demo' / 'fp16_performance_onnxruntime_bs1.json'
    assert f'run record: {record}' in done.stdout
    record = json.loads(record.read_text())
    assert record['mode'] == 'performance' and set(record['tiers']) == {'engine', 'engine+io'}


# Slow (~38 s) on purpose: the INT8 pair as a newcomer runs it, calibration included.
def test_demo_int8_pair_calibrates_on_the_standin_train_scenes(demo):
    root, env = demo
    done = run_script('infer_centernet_int8_accuracy.sh', env, '--record',
                      str(root / 'acc8.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith('== bundled demo, not COCO and not the published model')
    calib = next((root / 'cache').glob('standin-*/train-136'))  # 128 calibrated + 8 gated
    assert f"== calibration: the stand-in's first 128 train scenes (generated once into {calib})" \
        in lines
    banner = next(i for i, line in enumerate(lines) if 'INT8 on ONNX Runtime (CPU)' in line)
    export = next(i for i, line in enumerate(lines) if 'exporting again' in line)
    assert banner < export  # which path, before the export
    assert abs(_ap(root / 'acc8.json') - STANDIN_RECORDED_AP) <= 0.01
    assert 'meets ACC_TARGET=0.64' in done.stdout
    from centernet import onnx_export as ox
    onnx = root / 'models' / 'standin-demo' / 'centernet_int8_cpu.onnx'
    assert ox.read_metadata(onnx)[2]['centernet.int8_flavour'] == 'cpu'
    quick = dict(env, BATCHSIZE=1, WARMUP=0, ITERATIONS=1)
    done = run_script('infer_centernet_int8_performance.sh', quick, '--record',
                      str(root / 'perf8.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'reusing the int8 export (passed the precision gate' in done.stdout
    assert json.loads((root / 'perf8.json').read_text())['backend']['precision'] == 'int8'
    assert 'warning' not in done.stderr
