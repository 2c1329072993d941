"""Canvas geometry, decoding and evaluation against analytic truths.

The analytic end-to-end case renders perfect heads from ground-truth boxes (a peak of 1.0 at the
box centre's stride-4 cell, exact wh and sub-cell offset, all shifted by the canvas border),
decodes them and evaluates them (the default evaluator, checked against pycocotools below): AP
must be 1.0. Moving the border by one pixel must make it drop, so the test can fail.
"""

import json

import numpy as np
import pytest
import torch

from centernet.decode import decode_heads, local_maximum
from centernet.evaluate import evaluate_coco, to_coco_results
from centernet.preprocess import CenterCanvas
from centernet.synthetic import coco_categories
from coco_labels import COCO_CATEGORY_IDS


@pytest.mark.parametrize('hw, canvas_hw, border', [
    # The spec's worked examples (§3.3).
    ((427, 640), (448, 672), [11, 438, 16, 656]),
    ((375, 500), (384, 512), [5, 380, 6, 506]),
    ((512, 512), (544, 544), [16, 528, 16, 528]),
    ((333, 411), (352, 416), [10, 343, 3, 414]),
    ((1, 1), (32, 32), [16, 17, 16, 17]),
    ((31, 32), (32, 64), [1, 32, 16, 48]),
])
def test_canvas_geometry(spec, hw, canvas_hw, border):
    image = np.full(hw + (3,), 200, np.uint8)
    canvas, got = CenterCanvas(spec)(image)
    assert canvas.shape == canvas_hw + (3,) and canvas.dtype == np.uint8
    assert got.dtype == np.float32 and got.tolist() == border
    top, bottom, left, right = border
    assert (canvas[top:bottom, left:right] == 200).all()
    assert canvas.sum(dtype=np.int64) == 200 * 3 * hw[0] * hw[1]  # black elsewhere


def test_every_canvas_side_is_the_next_multiple_of_32_strictly_above(spec):
    for side in range(1, 1400):
        assert spec.canvas_side(side) == 32 * (side // 32 + 1)


def test_peak_test_keeps_plateaus_and_edges():
    heat = torch.zeros(1, 1, 4, 5)
    heat[0, 0, 0, 0] = 0.9           # corner: compared with in-bounds neighbours only
    heat[0, 0, 2, 2] = heat[0, 0, 2, 3] = 0.5  # a plateau: both survive (exact equality)
    heat[0, 0, 3, 4] = 0.4           # neighbour of the plateau: suppressed
    kept = local_maximum(heat)
    assert kept[0, 0, 0, 0] == 0.9 and kept[0, 0, 2, 2] == 0.5 and kept[0, 0, 2, 3] == 0.5
    assert kept[0, 0, 3, 4] == 0


def render_heads(boxes, labels, border, canvas_hw, num_classes=80, stride=4):
    """Perfect CenterNet heads for xywh `boxes` in original-image pixels."""
    fh, fw = canvas_hw[0] // stride, canvas_hw[1] // stride
    heatmap = np.zeros((num_classes, fh, fw), np.float32)
    wh = np.zeros((2, fh, fw), np.float32)
    offset = np.zeros((2, fh, fw), np.float32)
    ys, xs = np.mgrid[0:fh, 0:fw]
    top, _, left, _ = border
    for (x, y, w, h), label in zip(boxes, labels):
        fx, fy = (x + w / 2 + left) / stride, (y + h / 2 + top) / stride
        cx, cy = int(fx), int(fy)
        peak = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 1.5 ** 2)).astype(np.float32)
        heatmap[label] = np.maximum(heatmap[label], peak)
        wh[:, cy, cx] = (w / stride, h / stride)
        offset[:, cy, cx] = (fx - cx, fy - cy)
    return heatmap, wh, offset


@pytest.fixture(scope='module')
def analytic_set():
    """Images of COCO-like sizes with well-separated boxes of 12..60 px."""
    rng = np.random.default_rng(7)
    sizes = [(480, 640), (640, 480), (427, 640), (375, 500), (512, 512), (640, 640)]
    images, annotations = [], []
    for image_id, (h, w) in enumerate(sizes, start=1):
        images.append(dict(id=image_id, file_name=f'{image_id}.jpg', height=h, width=w))
        for gx in range(3):
            for gy in range(3):
                bw, bh = rng.uniform(12, 60, 2)
                x = gx * w / 3 + rng.uniform(5, w / 3 - bw - 5)
                y = gy * h / 3 + rng.uniform(5, h / 3 - bh - 5)
                label = int(rng.integers(0, 80))
                annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                        category_id=COCO_CATEGORY_IDS[label],
                                        bbox=[float(x), float(y), float(bw), float(bh)],
                                        area=float(bw * bh), iscrowd=0))
    return dict(images=images, annotations=annotations, categories=coco_categories())


def _coco(dataset):
    import contextlib
    import io
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = json.loads(json.dumps(dataset))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _detect(spec, dataset, border_shift=0.0):
    canvas = CenterCanvas(spec)
    image_ids, all_boxes, all_scores, all_labels = [], [], [], []
    for image in dataset['images']:
        anns = [a for a in dataset['annotations'] if a['image_id'] == image['id']]
        _, border = canvas(np.zeros((image['height'], image['width'], 3), np.uint8))
        canvas_hw = canvas.shape(image['height'], image['width'])
        heads = render_heads([a['bbox'] for a in anns],
                             [COCO_CATEGORY_IDS.index(a['category_id']) for a in anns],
                             border, canvas_hw)
        decode_border = border + np.float32(border_shift)
        boxes, scores, labels = decode_heads(*(torch.from_numpy(h)[None] for h in heads),
                                             torch.from_numpy(decode_border)[None])
        image_ids.append(image['id'])
        all_boxes.append(boxes[0].numpy())
        all_scores.append(scores[0].numpy())
        all_labels.append(labels[0].numpy())
    return to_coco_results(image_ids, np.stack(all_boxes), np.stack(all_scores),
                           np.stack(all_labels), COCO_CATEGORY_IDS)


def test_perfect_heads_give_ap_1(spec, analytic_set):
    results = _detect(spec, analytic_set)
    assert len(results) == 100 * len(analytic_set['images'])
    metrics = evaluate_coco(_coco(analytic_set), results, COCO_CATEGORY_IDS, verbose=False)
    assert metrics['mAP'] == pytest.approx(1.0, abs=1e-9)
    assert metrics['mAP_50'] == pytest.approx(1.0, abs=1e-9)


def test_border_off_by_one_pixel_lowers_ap(spec, analytic_set):
    results = _detect(spec, analytic_set, border_shift=1.0)
    metrics = evaluate_coco(_coco(analytic_set), results, COCO_CATEGORY_IDS, verbose=False)
    assert metrics['mAP'] < 0.95
    assert metrics['mAP_50'] == pytest.approx(1.0, abs=1e-9)  # still overlapping well


def test_eval_equals_direct_pycocotools_on_the_same_json(spec, analytic_set, tmp_path):
    """Our evaluation == pycocotools' defaults on the written JSON (<= 100 dets per image)."""
    from pycocotools.cocoeval import COCOeval
    results = _detect(spec, analytic_set, border_shift=0.5)
    (tmp_path / 'results.json').write_text(json.dumps(results))
    (tmp_path / 'gt.json').write_text(json.dumps(analytic_set))
    ours = evaluate_coco(_coco(analytic_set), results, COCO_CATEGORY_IDS, verbose=False)
    import contextlib
    import io
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / 'gt.json'))
        direct = COCOeval(gt, gt.loadRes(str(tmp_path / 'results.json')), 'bbox')
        direct.evaluate()
        direct.accumulate()
        direct.summarize()
    names = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
    assert 0.2 < ours['mAP'] < 0.99  # a non-trivial value
    for index, name in enumerate(names):
        assert ours[name] == pytest.approx(direct.stats[index], abs=1e-12), name


def _full_topk(heatmap, k=100):
    return torch.topk(local_maximum(heatmap).view(heatmap.shape[0], -1), k)


def test_candidate_peak_search_equals_the_full_peak_test(monkeypatch):
    """Many peaks (a trained model's noise floor): the CPU fast path is taken and is exact."""
    import centernet.decode as decode
    generator = torch.Generator().manual_seed(1)
    heatmap = torch.rand((3, 80, 40, 56), generator=generator) ** 6
    expected = _full_topk(heatmap)
    monkeypatch.setattr(decode, 'local_maximum', lambda *a, **k: pytest.fail('full path taken'))
    scores, index = decode.topk_peaks(heatmap, 100, 3)
    assert torch.equal(scores, expected.values)
    for b in range(3):  # equal scores exist among 500k random floats: their order is free
        assert sorted(zip(scores[b].tolist(), index[b].tolist())) == \
            sorted(zip(expected.values[b].tolist(), expected.indices[b].tolist()))


def test_few_peaks_fall_back_to_the_full_test(monkeypatch):
    """Two blobs and zeros elsewhere: fewer than 100 positive peaks, so the candidate search is
    tried, rejected, and the fallback runs; the remaining slots hold score 0, as in mmdet."""
    from centernet import decode
    side = 48  # a plane of 2304 cells holds more than the 1600 candidates: the search is tried
    heatmap = torch.zeros((1, 80, side, side))
    ys, xs = torch.meshgrid(torch.arange(float(side)), torch.arange(float(side)), indexing='ij')
    heatmap[0, 3] = torch.exp(-((xs - 10) ** 2 + (ys - 7) ** 2) / 8)
    heatmap[0, 50] = 0.7 * torch.exp(-((xs - 20) ** 2 + (ys - 25) ** 2) / 8)
    full_tests = []
    local_maximum = decode.local_maximum
    monkeypatch.setattr(decode, 'local_maximum',
                        lambda *a: full_tests.append(1) or local_maximum(*a))
    scores, index = decode.topk_peaks(heatmap, 100, 3)
    assert full_tests == [1]  # the candidates were rejected: the full test ran once
    expected = _full_topk(heatmap)
    assert torch.equal(scores, expected.values)
    plane = side * side
    assert index[0, 0] == 3 * plane + 7 * side + 10 and index[0, 1] == 50 * plane + 25 * side + 20
    assert (scores[0, 2:] == 0).all()


def test_plateau_peaks_match_as_a_set():
    """Saturated scores (sigmoid = 1.0) make plateaus; every plateau cell is a peak in mmdet's
    test. Order among equal scores is unspecified, so compare (score, index) sets."""
    from centernet.decode import topk_peaks
    generator = torch.Generator().manual_seed(2)
    heatmap = torch.rand((2, 80, 48, 48), generator=generator) ** 4 * 0.9  # > 1600 cells a plane
    heatmap[:, 7, 5:8, 5:9] = 1.0
    scores, index = topk_peaks(heatmap, 100, 3)
    expected = _full_topk(heatmap)
    for b in range(2):
        assert sorted(zip(scores[b].tolist(), index[b].tolist())) == \
            sorted(zip(expected.values[b].tolist(), expected.indices[b].tolist()))
        assert (scores[b, :12] == 1.0).all()


@pytest.mark.parametrize('candidates_per_peak', [0, 16])
def test_decode_of_channels_last_heads(candidates_per_peak):
    """The torch CUDA backend runs channels_last, so its heads arrive in that layout."""
    generator = torch.Generator().manual_seed(3)
    heads = [torch.rand((2, 80, 40, 48), generator=generator) ** 4,  # 16: the candidate search
             torch.rand((2, 2, 40, 48), generator=generator) * 9,
             torch.rand((2, 2, 40, 48), generator=generator)]
    borders = torch.tensor([[3., 150., 5., 180.], [0., 160., 0., 192.]])
    expected = decode_heads(*heads, borders, candidates_per_peak=candidates_per_peak)
    channels_last = [h.contiguous(memory_format=torch.channels_last) for h in heads]
    got = decode_heads(*channels_last, borders, candidates_per_peak=candidates_per_peak)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def test_decode_of_a_large_photo_copies_no_heatmap():
    """torch's CPU topk over one flat row copies it into 16-byte (value, index) pairs: 4x the
    heatmap, 720 MB for a 3000 x 3000 photo. Taken plane by plane, the decode's own peak is a
    small share of the heatmap's size (peak = the fresh process's VmHWM)."""
    import subprocess
    import sys
    from conftest import ROOT
    code = '''
import sys, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(2)
from centernet.decode import decode_heads
def peak():
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM'))
heads = [torch.rand((1, 80, 752, 752)) ** 8, torch.rand((1, 2, 752, 752)), torch.rand((1, 2, 752, 752))]
before = peak()
boxes, scores, labels = decode_heads(*heads, torch.zeros(1, 4))
print(peak() - before, heads[0].numel() * 4, scores.shape[1])
'''
    done = subprocess.run([sys.executable, '-c', code, str(ROOT)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    extra, heatmap, kept = (int(v) for v in done.stdout.split())
    assert kept == 100 and extra < heatmap / 4, (extra, heatmap)
