"""The user's journey with the two shell scripts, on the CPU path (ONNX Runtime), end to end.

With weights the seeded fixtures did not make (BatchNorm statistics calibrated on generated
scenes, as a trained network's are; other seeds), from an empty models folder: export (gated),
evaluate, time; a second run reuses the export, another checkpoint or a refused/doctored export
makes the scripts export again. Bad inputs fail at once, before any long work.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from centernet.synthetic import write_coco_dataset


def run_script(name, env, *args):
    full_env = dict(os.environ, PYTHON=sys.executable, **env)
    return subprocess.run(['bash', str(ROOT / 'scripts' / name), *args], env=full_env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def journey(tmp_path_factory, spec):
    from centernet.gate_cases import Case
    from centernet.model import build_model
    root = tmp_path_factory.mktemp('journey')
    write_coco_dataset(root / 'coco', ((160, 120), (120, 160), (200, 152)), seed=5)
    checkpoints = {}
    for case in (Case('calibrated, heads x1.5', seed=41, head_scale=1.5),
                 Case('calibrated, gammas x0.7', seed=42, gamma_scale=0.7)):
        path = root / f'user_{case.seed}.pth'
        torch.save({'meta': {'dataset_meta': {'classes': None}},
                    'state_dict': case.state_dict(build_model(spec))}, path)
        checkpoints[case.seed] = path
    return root, checkpoints


def env_for(root, checkpoint, models):
    return dict(DATASETS_DIR=str(root / 'coco'), CHECKPOINT=str(checkpoint),
                MODELS_DIR=str(root / models), BACKEND='onnxruntime')


def export_report(root, models):
    return json.loads((root / models / 'centernet.export.json').read_text())


@pytest.mark.parametrize('seed', [41, 42])
def test_first_run_from_an_empty_models_folder(journey, seed):
    root, checkpoints = journey
    env = env_for(root, checkpoints[seed], f'models_{seed}')
    done = run_script('infer_centernet_fp16_accuracy.sh', dict(env, ACC_TARGET='0'),
                      '--record', str(root / f'acc_{seed}.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'BACKEND=onnxruntime: this runs FP32 on ONNX Runtime (CPU), not FP16 (FP16 needs a GPU)' \
        in done.stdout
    assert 'exporting again (no export report' in done.stdout
    models = sorted(p.name for p in (root / f'models_{seed}').iterdir())
    assert models == ['centernet.export.json', 'centernet.onnx']  # the CPU path needs only FP32
    assert export_report(root, f'models_{seed}')['outputs']['fp32']['status'] == 'passed'
    record = json.loads((root / f'acc_{seed}.json').read_text())
    assert record['images'] == 3 and record['batchsize'] == 4  # the CPU default
    # the performance script reuses the export it just made
    done = run_script('infer_centernet_fp16_performance.sh',
                      dict(env, WARMUP='1', ITERATIONS='2'),
                      '--record', str(root / f'perf_{seed}.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'reusing the fp32 export' in done.stdout
    assert set(json.loads((root / f'perf_{seed}.json').read_text())['tiers']) == \
        {'engine', 'engine+io', 'pipeline'}


def test_another_checkpoint_or_a_refused_export_is_exported_again(journey):
    root, checkpoints = journey
    env = env_for(root, checkpoints[42], 'models_41')
    if not (root / 'models_41' / 'centernet.onnx').is_file():
        pytest.skip('needs test_first_run_from_an_empty_models_folder[41]')
    done = run_script('infer_centernet_fp16_accuracy.sh', dict(env, ACC_TARGET='0'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'exporting again (made from another checkpoint' in done.stdout
    assert export_report(root, 'models_41')['weight'] == str(checkpoints[42])
    # what a refused export leaves: the graph aside, its report saying failed
    models = root / 'models_41'
    report = export_report(root, 'models_41')
    report['outputs']['fp32']['status'] = 'failed'
    (models / 'centernet.export.json').write_text(json.dumps(report))
    (models / 'centernet.onnx').rename(models / 'centernet.rejected.onnx')
    done = run_script('infer_centernet_fp16_accuracy.sh', dict(env, ACC_TARGET='0'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'exporting again (its fp32 graph has status failed, not passed)' in done.stdout
    assert sorted(p.name for p in models.iterdir()) == ['centernet.export.json', 'centernet.onnx']


@pytest.mark.parametrize('script, variables, message', [
    ('infer_centernet_fp16_accuracy.sh', {'DATASETS_DIR': ''}, 'set DATASETS_DIR to your COCO'),
    ('infer_centernet_fp16_accuracy.sh', {'DATASETS_DIR': '{tmp}'},
     'instances_val2017.json not found; to download COCO val2017'),
    ('infer_centernet_fp16_performance.sh', {'DATASETS_DIR': '{tmp}'},
     'instances_val2017.json not found'),
    ('infer_centernet_fp16_performance.sh', {'CHECKPOINT': '{tmp}/x.pth'},
     'prepare.sh --only checkpoint'),
    ('infer_centernet_fp16_performance.sh', {'BACKEND': 'gpu'}, 'BACKEND=gpu: choose tensorrt'),
    ('infer_centernet_fp16_performance.sh', {'BATCHSIZE': '0'}, 'BATCHSIZE=0: expected a whole'),
    ('infer_centernet_fp16_performance.sh', {'ITERATIONS': 'ten'}, 'ITERATIONS=ten: expected'),
    ('infer_centernet_fp16_accuracy.sh', {'ACC_TARGET': '25.5'}, 'ACC_TARGET=25.5: expected an AP'),
])
def test_bad_inputs_fail_at_once(journey, tmp_path, script, variables, message):
    root, checkpoints = journey
    env = env_for(root, checkpoints[41], tmp_path / 'models')
    env.update({k: v.format(tmp=tmp_path) for k, v in variables.items()})
    done = run_script(script, env)
    assert done.returncode == 2
    assert done.stderr.startswith('error: ') and message in done.stderr, done.stderr
    assert not (tmp_path / 'models').exists()  # nothing started: no export, no timing
