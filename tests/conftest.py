"""Shared fixtures: the config's spec, a seeded model and checkpoint, exported ONNX files.

Everything heavy is session-scoped: one export per test run.
"""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


@pytest.fixture(scope='session')
def onnx_paths(tmp_path_factory, checkpoint_path):
    """FP32 and FP16 ONNX of the seeded model, made by export.py itself (parity check on)."""
    import export
    folder = tmp_path_factory.mktemp('onnx')
    fp32 = folder / 'centernet.onnx'
    with pytest.raises(SystemExit) as exit_info:
        from common import run_main
        run_main(export.main, ['--weight', str(checkpoint_path), '--cfg', str(CONFIG),
                               '--output', str(fp32), '--precision', 'both'])
    assert exit_info.value.code == 0
    return {'fp32': fp32, 'fp16': folder / 'centernet_fp16.onnx'}
