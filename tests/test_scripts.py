"""The user's journey with the shell scripts, on the CPU path (ONNX Runtime), end to end.

With weights the seeded fixtures did not make (BatchNorm statistics calibrated on generated scenes,
as a trained network's are; other seeds), from an empty models folder: export (gated), evaluate,
time; a second run reuses the export, another checkpoint makes the scripts export again (a refused
export on disk is a reason export.py --if-stale gives for it too). Bad inputs fail at once, before
any long work. The bundled demo's four scripts are in test_scripts_demo.py, and INT8 weights the
gate refuses in test_scripts_int8.py: their own files, which pytest-xdist runs beside this one.
Every run writes into tmp_path only: --record, MODELS_DIR and DEMO_CACHE (conftest's guard checks
the checkout).
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import CONFIG, ROOT, checkout_changes, checkout_state
from script_runs import (DEFAULT_CHECKPOINT, STANDIN_RECORDED_AP, env_for, export_report,
                         run_script)


# Seed 41 only: seed 42's first run took the same path (14 s); its weights are exported, gated
# and evaluated by the scripts in test_another_checkpoint_or_a_refused_export_is_exported_again.
# Slow (~25 s) on purpose: a user's first run, each script a bash and Python processes of its own.
@pytest.mark.parametrize('seed', [41])
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
    # the performance script reuses the export it just made (what it prints and records, not
    # how fast: batch 1, one iteration; the batch default is asserted on the accuracy record)
    done = run_script('infer_centernet_fp16_performance.sh',
                      dict(env, BATCHSIZE=1, WARMUP=0, ITERATIONS=1),
                      '--record', str(root / f'perf_{seed}.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'reusing the fp32 export' in done.stdout
    assert set(json.loads((root / f'perf_{seed}.json').read_text())['tiers']) == \
        {'engine', 'engine+io', 'pipeline'}


# Slow (~20 s) on purpose: the export it asserts is made again is a real one, gated.
def test_another_checkpoint_or_a_refused_export_is_exported_again(journey):
    root, checkpoints = journey
    env = env_for(root, checkpoints[42], 'models_41')
    if not (root / 'models_41' / 'centernet.onnx').is_file():
        pytest.skip('needs test_first_run_from_an_empty_models_folder[41]')
    record = ['--record', str(root / 'acc_another.json'), '--quiet']
    done = run_script('infer_centernet_fp16_accuracy.sh', dict(env, ACC_TARGET='0'), *record)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'exporting again (made from another checkpoint' in done.stdout
    models = root / 'models_41'
    report = export_report(root, 'models_41')
    assert report['weight'] == str(checkpoints[42])
    assert report['outputs']['fp32']['status'] == 'passed'  # seed 42's weights pass the gate
    assert sorted(p.name for p in models.iterdir()) == ['centernet.export.json', 'centernet.onnx']
    record = json.loads((root / 'acc_another.json').read_text())
    assert record['images'] == 3 and record['backend']['model'] == str(models / 'centernet.onnx')
    # what a refused export leaves: the graph aside, its report saying failed. The script asks
    # export.py --if-stale, as above; the reason it gets (test_export's refused tests follow it
    # to the new export, which removes the rejected file) comes from reuse_problem:
    # (on a copy: the next test reuses models_41)
    from centernet.export_cli import reuse_problem
    refused = root / 'models_refused'
    shutil.copytree(models, refused)
    report['outputs']['fp32']['status'] = 'failed'
    (refused / 'centernet.export.json').write_text(json.dumps(report))
    (refused / 'centernet.onnx').rename(refused / 'centernet.rejected.onnx')
    assert reuse_problem(refused / 'centernet.onnx', 'fp32', checkpoints[42], CONFIG) == \
        'its fp32 graph has status failed, not passed'


# Slow (~14 s): the run it describes is 500 scenes, and the record must say 500.
def test_a_checkpoint_without_coco_runs_on_the_demo_scenes_and_says_what_that_means(journey):
    """Either half given: the user's checkpoint, no DATASETS_DIR. The demo's test scenes, a
    warning that the AP means nothing for COCO weights, no target (exit 0 whatever the AP)."""
    root, checkpoints = journey
    env = dict(env_for(root, checkpoints[42], 'models_41'), DATASETS_DIR='')
    done = run_script('infer_centernet_fp16_accuracy.sh', env, '--record',
                      str(root / 'acc_demo_scenes.json'), '--quiet')
    assert done.returncode == 0, done.stderr[-3000:]
    first = done.stdout.splitlines()[0]
    assert first.startswith(f'== no DATASETS_DIR: {checkpoints[42]} runs on the bundled demo\'s '
                            '500 generated scenes') and 'this AP means nothing' in first
    record = json.loads((root / 'acc_demo_scenes.json').read_text())
    assert record['images'] == 500 and 'standin-' in record['dataset']
    assert '--acc_target' not in done.stdout and 'PASS' not in done.stdout
    assert not (root / 'models_41' / 'standin-demo').exists()  # its own models, as with COCO


@pytest.mark.parametrize('script, variables, message', [
    ('infer_centernet_fp16_accuracy.sh', {'DATASETS_DIR': '', 'DEMO_CACHE': '{tmp}/file/x'},
     "cannot make the folder for the demo's scenes {tmp}/file/x/standin-"),
    ('infer_centernet_fp16_accuracy.sh', {'DATASETS_DIR': '{coco}', 'CHECKPOINT': ''},
     'checkpoint checkpoints/centernet_resnet18_140e_coco_20210705_093630-bb5b3bf7.pth not '
     'found; download it with: scripts/prepare.sh --only checkpoint'),
    ('infer_centernet_fp16_accuracy.sh', {'DATASETS_DIR': '{tmp}'},
     'instances_val2017.json not found; to download COCO val2017'),
    ('infer_centernet_fp16_performance.sh', {'DATASETS_DIR': '{tmp}'},
     'instances_val2017.json not found'),
    ('infer_centernet_fp16_performance.sh', {'CHECKPOINT': '{tmp}/x.pth'},
     'CHECKPOINT={tmp}/x.pth: no such file: fix CHECKPOINT (the path of an mmdet CenterNet-R18 '
     'checkpoint .pth) or unset it'),
    ('infer_centernet_fp16_performance.sh', {'BACKEND': 'gpu'}, 'BACKEND=gpu: choose tensorrt'),
    ('infer_centernet_fp16_performance.sh', {'BATCHSIZE': '0'}, 'BATCHSIZE=0: expected a whole'),
    ('infer_centernet_fp16_performance.sh', {'ITERATIONS': 'ten'}, 'ITERATIONS=ten: expected'),
    ('infer_centernet_fp16_accuracy.sh', {'ACC_TARGET': '25.5'}, 'ACC_TARGET=25.5: expected an AP'),
    ('infer_centernet_int8_accuracy.sh', {'INT8_UNCHECKED': 'yes'}, 'INT8_UNCHECKED=yes: set 1'),
    ('infer_centernet_int8_performance.sh', {'CALIB_METHOD': 'kl'}, 'CALIB_METHOD=kl: choose'),
    ('infer_centernet_int8_performance.sh', {'CALIB_DIR': '{tmp}/none'},
     'CALIB_DIR={tmp}/none is not a folder'),
])
def test_bad_inputs_fail_at_once(journey, tmp_path, script, variables, message):
    root, checkpoints = journey
    env = env_for(root, checkpoints[41], tmp_path / 'models')
    if variables.get('CHECKPOINT') == '' and DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f'{DEFAULT_CHECKPOINT} is there: the scripts take it')
    env.update({k: v.format(tmp=tmp_path, coco=root / 'coco') for k, v in variables.items()})
    (tmp_path / 'file').write_text('a file where a folder should be')
    done = run_script(script, env)
    assert done.returncode == 2
    assert done.stderr.startswith('error: ') and message.format(tmp=tmp_path) in done.stderr, \
        done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / 'models').exists()  # nothing started: no export, no timing


@pytest.mark.parametrize('script', ['infer_centernet_fp16_accuracy.sh',
                                    'infer_centernet_int8_performance.sh'])
def test_a_bad_extra_argument_stops_before_any_work(journey, tmp_path, script):
    """The extra arguments go to inference.py; a typo in them was found only after the export.
    Now inference.py's own parser checks them first: one line, and nothing made."""
    root, checkpoints = journey
    done = run_script(script, env_for(root, checkpoints[41], tmp_path / 'models'), '--bogus', '1')
    assert done.returncode == 2
    assert done.stderr == (f'error: inference.py: unrecognized arguments: --bogus 1 ({script} '
                           'passes its extra arguments to inference.py: python3 inference.py '
                           '--help lists what it takes)\n')
    assert done.stdout == '' and not (tmp_path / 'models').exists()


def test_run_records_of_each_script_and_run_kind_have_their_own_name(tmp_path):
    """The FP32-on-CPU FP16 script, the INT8 script and a COCO run all wrote
    results/accuracy_onnxruntime_bs4.json over one another (and the demo into the checkout)."""
    paths = set()
    for script in ('infer_centernet_fp16_accuracy.sh', 'infer_centernet_fp16_performance.sh',
                   'infer_centernet_int8_accuracy.sh', 'infer_centernet_int8_performance.sh'):
        for run in ('coco', 'demo', 'own-on-demo'):
            done = subprocess.run(
                ['bash', '-c', f'source scripts/_common.sh; CENTERNET_SCRIPT={script} RUN={run} '
                 'RECORD_BACKEND=onnxruntime BATCH=4 record_path'], cwd=ROOT,
                env=dict(os.environ, RESULTS_DIR=str(tmp_path)), capture_output=True, text=True)
            paths.add(done.stdout.strip())
    assert len(paths) == 12
    assert str(tmp_path / 'standin-demo' / 'int8_accuracy_onnxruntime_bs4.json') in paths
    assert str(tmp_path / 'fp16_accuracy_onnxruntime_bs4.json') in paths


def test_readme_lists_the_targets_the_scripts_use():
    """README's Quick start names each script's ACC_TARGET default; they are the scripts' own
    values (scripts/_common.sh, read by bash)."""
    values = subprocess.run(['bash', '-c', 'source scripts/_common.sh && echo $COCO_TARGET_FP16 '
                             '$COCO_TARGET_INT8 $STANDIN_TARGET'], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    readme = (ROOT / 'README.md').read_text()
    quick_start = readme[readme.index('## Quick start'):readme.index('### The precision gate')]
    listed = re.search(r'`ACC_TARGET`\s+\(FP16 ([0-9.]+), INT8 ([0-9.]+), demo ([0-9.]+)\)',
                       quick_start)
    assert listed, 'README Quick start must list ACC_TARGET (FP16 x, INT8 y, demo z)'
    assert list(listed.groups()) == values
    assert float(values[2]) == pytest.approx(STANDIN_RECORDED_AP - 0.01, abs=0.001)


def test_checkout_guard_names_what_a_run_wrote(tmp_path):
    """conftest's guard: a created, a changed and a removed file are each named."""
    (tmp_path / 'kept.txt').write_text('a')
    (tmp_path / 'gone.txt').write_text('b')
    (tmp_path / '__pycache__').mkdir()
    before = checkout_state(tmp_path)
    (tmp_path / 'results').mkdir()
    (tmp_path / 'results' / 'accuracy_onnxruntime_bs4.json').write_text('{}')
    (tmp_path / 'kept.txt').write_text('changed')
    os.utime(tmp_path / 'kept.txt', ns=(1, 1))
    (tmp_path / 'gone.txt').unlink()
    (tmp_path / '__pycache__' / 'x.pyc').write_bytes(b'')  # Python's, not a test's
    assert checkout_changes(before, checkout_state(tmp_path)) == [
        'changed kept.txt', 'created results/accuracy_onnxruntime_bs4.json', 'removed gone.txt']
