"""Shared fixtures: the config's spec, a seeded model and checkpoint, exported ONNX files, and
the guard that the suite writes nothing into the checkout.

Everything heavy is session-scoped: one export per test run, shared by pytest-xdist's workers
(made_once).
"""

import contextlib
import os
import shutil
import sys
from pathlib import Path

# Under pytest-xdist (pytest.ini: -n 2) each worker gets its share of the cores, so that two
# workers' OpenMP pools do not oversubscribe them. Set before torch is imported, so that torch's
# pool and the subprocesses the tests start (export.py, the scripts) take it.
WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '0'))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS) if WORKERS else 2
if WORKERS:
    os.environ['OMP_NUM_THREADS'] = str(THREADS)

import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet import onnx_export as ox  # noqa: E402
from centernet.config import load_spec  # noqa: E402
from centernet.model import build_model  # noqa: E402
from centernet.synthetic import seeded_state_dict  # noqa: E402

CONFIG = ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py'
GOLDEN = ROOT / 'tests' / 'fixtures' / 'golden'
SEED = 0  # tools/make_golden.py uses the same seed

torch.set_num_threads(THREADS)


def made_once(tmp_path_factory, name, make):
    """The folder `name` with what make(folder) writes, made once per test run: under
    pytest-xdist the first worker to ask makes it, under a lock, and the others wait and share
    it (read-only, as the fixtures that call this already are within one process)."""
    if not WORKERS:
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    folder = tmp_path_factory.getbasetemp().parent / name  # the run's folder, above the workers'
    made = folder.with_name(name + '.made')
    with FileLock(str(folder) + '.lock'):
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed left
            folder.mkdir()
            make(folder)
            made.touch()
    return folder


# pytest-xdist (pytest.ini: -n 2 --dist loadfile --no-loadscope-reorder) hands each worker whole
# files, in collection order. The files that take longest go first, longest first, so that the
# two workers end together instead of one running a long file alone at the end (measured: each
# 40-200 s of worker time with these first; every other file under 30 s).
LONGEST_FIRST = ('test_inference.py', 'test_scripts_demo.py', 'test_scripts.py', 'test_int8.py',
                 'test_bad_inputs.py', 'test_scripts_int8.py')


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within kept


@pytest.fixture(scope='session')
def spec():
    return load_spec(CONFIG)


@pytest.fixture(scope='session')
def seeded_weights(spec):
    return seeded_state_dict(build_model(spec), SEED)


@pytest.fixture(scope='session')
def model(spec, seeded_weights):
    net = build_model(spec)
    net.load_state_dict(seeded_weights, strict=True)
    return net.eval()


@pytest.fixture(scope='session')
def checkpoint_path(tmp_path_factory, seeded_weights):
    """An mmdet-3.x-style checkpoint of the seeded weights."""
    def save(folder):
        torch.save({'meta': {'dataset_meta': {'classes': None}}, 'state_dict': seeded_weights},
                   folder / 'seeded_centernet.pth')
    return made_once(tmp_path_factory, 'ckpt', save) / 'seeded_centernet.pth'


def export_cli(*argv):
    """export.py in this process (run_main: exit code, one error line); asserts it exits 0."""
    import export
    from common import run_main
    with pytest.raises(SystemExit) as exit_info:
        run_main(export.main, [str(a) for a in argv])
    assert exit_info.value.code == 0


@pytest.fixture(scope='session')
def onnx_paths(tmp_path_factory, checkpoint_path):
    """FP32 and FP16 ONNX of the seeded model, made by export.py itself (parity check on)."""
    fp32 = made_once(tmp_path_factory, 'onnx', lambda folder: export_cli(
        '--weight', checkpoint_path, '--cfg', CONFIG, '--output', folder / 'centernet.onnx',
        '--precision', 'both')) / 'centernet.onnx'
    return {'fp32': fp32, 'fp16': ox.fp16_sibling(fp32)}


STATIC_SHAPE = (2, 96, 128)  # export.py --static: small, and H != W


@pytest.fixture(scope='session')
def static_paths(tmp_path_factory, checkpoint_path):
    """FP32 and FP16 ONNX of the seeded model with a fixed input shape (export.py --static
    2x96x128, gated), shared read-only by the export, TensorRT and bad-input tests."""
    fp32 = made_once(tmp_path_factory, 'onnx_static', lambda folder: export_cli(
        '--weight', checkpoint_path, '--output', folder / 'centernet_static.onnx', '--precision',
        'both', '--static', 'x'.join(map(str, STATIC_SHAPE)))) / 'centernet_static.onnx'
    return {'fp32': fp32, 'fp16': ox.fp16_sibling(fp32)}


@pytest.fixture(scope='session')
def end2end_paths(tmp_path_factory, checkpoint_path):
    """FP32 and FP16 --end2end ONNX of the seeded model (decode inside the graph; export.py's own
    gate compares its detection sets with PyTorch's), shared read-only."""
    fp32 = made_once(tmp_path_factory, 'onnx_e2e', lambda folder: export_cli(
        '--weight', checkpoint_path, '--output', folder / 'centernet_e2e.onnx', '--precision',
        'both', '--end2end')) / 'centernet_e2e.onnx'
    return {'fp32': fp32, 'fp16': ox.fp16_sibling(fp32)}


@pytest.fixture(scope='session')
def standin_test_scenes(tmp_path_factory):
    """The stand-in's 500 held-out test scenes (standin_scenes.write_split), written once and
    shared read-only by test_int8 (its APs) and test_scripts_demo (the demo's scenes must
    equal them)."""
    from centernet.standin_scenes import write_split
    return made_once(tmp_path_factory, 'standin_test',
                     lambda folder: write_split(folder, 'test', 500)) / 'test'


@pytest.fixture(scope='module')
def journey(tmp_path_factory, spec):
    """The script tests' user (test_scripts*.py): a small COCO-layout set and two checkpoints
    the seeded fixtures did not make (gate_cases: BatchNorm calibrated on generated scenes)."""
    from centernet.gate_cases import Case
    from centernet.model import build_model
    from centernet.synthetic import write_coco_dataset
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


# What Python, pytest and virtual environments keep in a checkout: not the suite's writing.
_NOT_OURS = {'.git', '__pycache__', '.pytest_cache'}


def checkout_state(root):
    """{path relative to `root`: (size, mtime_ns)} of every file in the checkout, tracked,
    untracked or git-ignored (results/, models/, ...), but for _NOT_OURS and .venv* folders."""
    state = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders
                         if d not in _NOT_OURS and not d.startswith('.venv')]
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                stat = os.lstat(path)
                state[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return state


def checkout_changes(before, after):
    """Sorted 'created/changed/removed PATH' lines between two checkout_state()s."""
    return sorted([f'created {p}' for p in after.keys() - before.keys()]
                  + [f'removed {p}' for p in before.keys() - after.keys()]
                  + [f'changed {p}' for p in before.keys() & after.keys()
                     if before[p] != after[p]])


@pytest.fixture(scope='session', autouse=True)
def checkout_stays_unchanged():
    """The suite must never write into the checkout (a test's record, export or cache under
    results/, models/ or ~ belongs in tmp_path): fails the run, naming the files, if it did."""
    before = checkout_state(ROOT)
    yield
    changes = checkout_changes(before, checkout_state(ROOT))
    assert not changes, 'the test suite wrote into the checkout ' + str(ROOT) + ': ' + \
        '; '.join(changes[:20])
