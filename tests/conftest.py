"""Shared fixtures: the config's spec, a seeded model and checkpoint, exported ONNX files, and
the guard that the suite writes nothing into the checkout.

Everything heavy is session-scoped: one export per test run.
"""

import contextlib
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet import onnx_export as ox  # noqa: E402
from centernet.config import load_spec  # noqa: E402
from centernet.model import build_model  # noqa: E402
from centernet.synthetic import seeded_state_dict  # noqa: E402

CONFIG = ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py'
GOLDEN = ROOT / 'tests' / 'fixtures' / 'golden'
SEED = 0  # tools/make_golden.py uses the same seed

torch.set_num_threads(2)


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
    path = tmp_path_factory.mktemp('ckpt') / 'seeded_centernet.pth'
    torch.save({'meta': {'dataset_meta': {'classes': None}}, 'state_dict': seeded_weights}, path)
    return path


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
    fp32 = tmp_path_factory.mktemp('onnx') / 'centernet.onnx'
    export_cli('--weight', checkpoint_path, '--cfg', CONFIG, '--output', fp32, '--precision',
               'both')
    return {'fp32': fp32, 'fp16': ox.fp16_sibling(fp32)}


STATIC_SHAPE = (2, 96, 128)  # export.py --static: small, and H != W


@pytest.fixture(scope='session')
def static_paths(tmp_path_factory, checkpoint_path):
    """FP32 and FP16 ONNX of the seeded model with a fixed input shape (export.py --static
    2x96x128, gated), shared read-only by the export, TensorRT and bad-input tests."""
    fp32 = tmp_path_factory.mktemp('onnx_static') / 'centernet_static.onnx'
    export_cli('--weight', checkpoint_path, '--output', fp32, '--precision', 'both', '--static',
               'x'.join(map(str, STATIC_SHAPE)))
    return {'fp32': fp32, 'fp16': ox.fp16_sibling(fp32)}


@pytest.fixture(scope='session')
def end2end_paths(tmp_path_factory, checkpoint_path):
    """FP32 and FP16 --end2end ONNX of the seeded model (decode inside the graph; export.py's own
    gate compares its detection sets with PyTorch's), shared read-only."""
    fp32 = tmp_path_factory.mktemp('onnx_e2e') / 'centernet_e2e.onnx'
    export_cli('--weight', checkpoint_path, '--output', fp32, '--precision', 'both', '--end2end')
    return {'fp32': fp32, 'fp16': ox.fp16_sibling(fp32)}


@pytest.fixture(scope='session')
def standin_test_scenes(tmp_path_factory):
    """The stand-in's 500 held-out test scenes (standin_scenes.write_split), written once and
    shared read-only by test_int8 (its APs) and test_scripts (the demo's scenes must equal them)."""
    from centernet.standin_scenes import write_split
    return write_split(tmp_path_factory.mktemp('standin_test'), 'test', 500)


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
