"""The precision gate: passes sound conversions of weights it was not tuned on, refuses broken ones.

The full sweep (>= 20 sound weight sets, every broken case) is tools/gate_sweep.py; here a few of
each, on small canvases, plus analytic cases of `judge` (identical heads, swapped heads, NaN).
"""

import numpy as np
import pytest

from centernet import gate_cases
from centernet import precision_gate as gate
from centernet.preprocess import CenterCanvas

SMALL_SHAPES = ((1, 192, 256), (2, 160, 224))


@pytest.fixture(scope='module')
def seeded_heads(model):
    from centernet import onnx_export as ox
    (canvases, borders), = gate.check_inputs(model.spec, [(2, 192, 256)], seed=7)
    return ox.run_torch(model, canvases), borders


def test_check_inputs_are_pasted_scenes(spec):
    inputs = gate.check_inputs(spec, SMALL_SHAPES, seed=1)
    fill = np.array(spec.canvas_fill, np.uint8)
    for (canvases, borders), (batch, height, width) in zip(inputs, SMALL_SHAPES):
        assert canvases.shape == (batch, height, width, 3) and canvases.dtype == np.uint8
        for canvas, (top, bottom, left, right) in zip(canvases, borders.astype(int)):
            assert CenterCanvas(spec).shape(bottom - top, right - left) == (height, width)
            inside = canvas[top:bottom, left:right]
            assert (canvas[:top] == fill).all() and (canvas[bottom:] == fill).all()
            assert inside.std() > 20  # a picture, not a flat fill
    again = gate.check_inputs(spec, SMALL_SHAPES, seed=1)
    assert all((a[0] == b[0]).all() for a, b in zip(inputs, again))  # deterministic


def test_tolerances_follow_from_the_unit_roundoff(spec):
    fp16 = gate.tolerances('fp16', spec)
    assert fp16.rounded_layers == 29  # ResNet-18: 1 + 16 + 3 downsample + 6 neck + 3 head convs
    assert fp16.eps == pytest.approx(6 * 2 ** -11 * 29 ** 0.5)
    assert fp16.detection_tolerances({'heatmap': 0.5, 'wh': 20.0, 'offset': 1.0}, 4) == \
        pytest.approx((4 * fp16.eps * 11.0, fp16.eps * 0.5))
    assert gate.tolerances('fp32', spec).detection_tolerances({}, 4) == (1e-3, 1e-5)
    int8 = gate.tolerances('int8', spec)  # the same formulas at 8-bit steps, calibrated (int8.md)
    assert not int8.provisional and int8.eps == pytest.approx(6 * 2 ** -7 * 29 ** 0.5)


def test_identical_heads_pass_every_precision(seeded_heads, spec):
    heads, borders = seeded_heads
    for precision in gate.PRECISIONS:
        report = gate.judge(heads, [h.copy() for h in heads], borders, precision, spec)
        (row,) = report.rows
        assert report.ok and report.failures == [] and row['share'] == 1.0
        # INT8's score tolerance puts most detections under compare.py's floor
        assert row['required'] > (0 if precision == 'int8' else 100)


def test_one_bad_pixel_does_not_decide_fp16_but_nan_does(seeded_heads, spec):
    heads, borders = seeded_heads
    spiked = [h.copy() for h in heads]
    spiked[0][0, 5, 3, 4] += 0.05  # one cell of 2 x 80 x 48 x 64, 10x the score tolerance
    assert gate.judge(heads, spiked, borders, 'fp16', spec).ok
    assert not gate.judge(heads, spiked, borders, 'fp32', spec).ok  # FP32 stays strict
    spiked[1][1, 0, 7, 7] = np.nan
    failures = gate.judge(heads, spiked, borders, 'fp16', spec).failures
    assert any('1 non-finite' in f for f in failures)


def test_swapped_heads_fail_by_a_wide_margin(seeded_heads, spec):
    heads, borders = seeded_heads
    report = gate.judge(heads, [heads[0], heads[2], heads[1]], borders, 'fp16', spec)
    assert report.rows[0]['share'] < 0.1
    assert 'reference detections reproduced' in report.failures[0]
    assert 'fp16' in report.table() and 'NO' in report.table()
    import json
    assert json.loads(json.dumps(report.to_dict()))['ok'] is False


def run_case(case, spec, tmp_path):
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / 'tools'))
    from gate_sweep import run_case as sweep_case
    return sweep_case(case, spec, SMALL_SHAPES, tmp_path, simplify=False)


@pytest.mark.parametrize('case', [
    gate_cases.Case('calibrated seed 51, heads x1.5', 51, head_scale=1.5),
    gate_cases.Case('calibrated seed 52, gammas x0.5', 52, gamma_scale=0.5),
], ids=lambda c: c.name)
def test_sound_fp16_conversions_pass(case, spec, tmp_path):
    reports = run_case(case, spec, tmp_path)
    assert reports['fp16'].ok, reports['fp16'].table()
    assert reports['fp32'].ok, reports['fp32'].table()


@pytest.mark.parametrize('case', [
    gate_cases.Case('block x1e5: past FP16 range', 53, block_scale=1e5, broken=True),
    gate_cases.Case('block x1e-6: FP16 subnormals', 53, block_scale=1e-6, broken=True),
    gate_cases.Case('wrong cast', 53, graph_defect='wrong cast (INT32) after the stem',
                    broken=True),
], ids=lambda c: c.name)
def test_broken_fp16_graphs_are_refused(case, spec, tmp_path):
    reports = run_case(case, spec, tmp_path)
    assert reports['fp32'].ok, reports['fp32'].table()  # the FP32 function is intact
    fp16 = reports['fp16']
    assert not fp16.ok
    assert max(min(r['share'], r['share_back']) for r in fp16.rows) < 0.5, fp16.table()
