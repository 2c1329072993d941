"""Evaluation against mmdet 3.3.0's CocoMetric (golden fixtures from tools/make_golden.py), and
faster-coco-eval against pycocotools (the reference)."""

import contextlib
import io
import json
import sys

import numpy as np
import pytest
from pycocotools.coco import COCO

from conftest import GOLDEN

from centernet.evaluate import (EVALUATORS, METRIC_NAMES, CocoEvaluator, evaluate_coco,
                                make_evaluator, to_coco_results)
from centernet.synthetic import evaluation_set
from coco_labels import COCO_CATEGORY_IDS, COCO_CLASSES


def _golden():
    meta = json.loads((GOLDEN / 'golden.json').read_text())
    arrays = np.load(GOLDEN / 'golden.npz')
    ids = [image['id'] for image in meta['images']]
    stack = [np.stack([arrays[f'metric/{i}/{name}'] for i in ids])
             for name in ('boxes', 'scores', 'labels')]
    return meta, ids, stack


def _gt(dataset=None):
    with contextlib.redirect_stdout(io.StringIO()):
        if dataset is None:
            return COCO(str(GOLDEN / 'annotations.json'))
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
    return gt


def test_category_ids_come_from_the_annotation_file_by_name():
    gt = _gt()
    assert gt.getCatIds(catNms=list(COCO_CLASSES)) == list(COCO_CATEGORY_IDS)


def test_results_json_equals_cocometric():
    meta, ids, (boxes, scores, labels) = _golden()
    ours = to_coco_results(ids, boxes, scores, labels, COCO_CATEGORY_IDS)
    assert ours == meta['coco_metric_results']  # same records, same floats, same order


@pytest.fixture(scope='module')
def golden_metrics():
    meta, ids, (boxes, scores, labels) = _golden()
    return meta['coco_metric'], {
        name: evaluate_coco(_gt(), to_coco_results(ids, boxes, scores, labels, COCO_CATEGORY_IDS),
                            COCO_CATEGORY_IDS, verbose=False, evaluator=name)
        for name in EVALUATORS}


@pytest.mark.parametrize('name', EVALUATORS)
def test_metrics_equal_cocometric(golden_metrics, name):
    golden, metrics = golden_metrics[0], golden_metrics[1][name]
    assert golden['bbox_mAP'] > 0.3  # a meaningful value, not an empty evaluation
    for key in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'):
        assert round(metrics[key], 3) == golden[f'bbox_{key}'], key


def test_faster_equals_pycocotools_on_golden_exactly(golden_metrics):
    metrics = golden_metrics[1]
    assert metrics['faster'] == metrics['pycocotools']  # all 12, to the last bit


@pytest.fixture(scope='module')
def generated():
    """200 images: crowd boxes, images without GT, images without detections, detected
    categories without GT, score ties; 150 detections on some images (more than maxDets=100)."""
    gt, ids, boxes, scores, labels, done = evaluation_set(
        200, dets_per_image=150, seed=7, crowd_fraction=0.1, empty_fraction=0.1,
        undetected_fraction=0.1, categories_without_gt=5, score_levels=16)
    annotations = gt['annotations']
    assert sum(a['iscrowd'] for a in annotations) > 10
    assert len({a['image_id'] for a in annotations}) < len(gt['images'])  # images without GT
    assert not done.all() and len(np.unique(scores)) <= 16
    gt_cats = {a['category_id'] for a in annotations}
    detected = set(np.asarray(COCO_CATEGORY_IDS)[labels[done].reshape(-1)].tolist())
    assert detected - gt_cats  # detected categories with no ground truth
    # Most images keep 100 detections, as inference does; every fourth keeps 150, all of one
    # category (maxDets counts per image and category) and with the true hits scored lowest:
    # there AR@300 > AR@100, and pycocotools' AP at maxDets=100 differs from AP at 1000.
    results = []
    for row in np.flatnonzero(done):
        keep = 150 if row % 4 == 1 else 100
        if keep == 150:
            labels[row] = labels[row, 0]
            scores[row] = scores[row][::-1].copy()
        results += to_coco_results(ids[row:row + 1], boxes[row:row + 1, :keep],
                                   scores[row:row + 1, :keep], labels[row:row + 1, :keep],
                                   COCO_CATEGORY_IDS)
    return gt, results


def test_faster_equals_pycocotools_on_generated_set(generated):
    gt, results = generated
    metrics = {}
    for name in EVALUATORS:
        records = [dict(r) for r in results]  # loadRes adds fields to the records
        metrics[name] = evaluate_coco(_gt(gt), records, COCO_CATEGORY_IDS, verbose=False,
                                      evaluator=name)
    reference = metrics['pycocotools']
    assert 0.05 < reference['mAP'] < 0.95 and reference['AR@100'] != reference['AR@300']
    for name in METRIC_NAMES:
        assert abs(metrics['faster'][name] - reference[name]) <= 1e-12, name


def test_faster_equals_pycocotools_on_an_image_subset(generated):
    """--limit evaluates only the images run (params.imgIds)."""
    gt, results = generated
    subset = [image['id'] for image in gt['images'][:50]]
    chosen = set(subset)
    metrics = [evaluate_coco(_gt(gt), [dict(r) for r in results if r['image_id'] in chosen],
                             COCO_CATEGORY_IDS, img_ids=subset, verbose=False, evaluator=name)
               for name in EVALUATORS]
    assert metrics[0]['mAP'] > 0
    for name in METRIC_NAMES:
        assert abs(metrics[0][name] - metrics[1][name]) <= 1e-12, name


def test_fallback_to_pycocotools_without_faster_coco_eval(monkeypatch, golden_metrics):
    monkeypatch.setitem(sys.modules, 'faster_coco_eval', None)  # import raises ImportError
    lines = []
    evaluator = make_evaluator('faster', _gt(), COCO_CATEGORY_IDS, log=lines.append)
    assert type(evaluator) is CocoEvaluator and evaluator.library == 'pycocotools'
    assert len(lines) == 1 and 'faster-coco-eval' in lines[0] and 'pycocotools' in lines[0]
    meta, ids, (boxes, scores, labels) = _golden()
    metrics = evaluator.evaluate(to_coco_results(ids, boxes, scores, labels, COCO_CATEGORY_IDS))
    assert metrics == golden_metrics[1]['pycocotools']


def test_no_results_give_zeros():
    for name in EVALUATORS:
        evaluator = make_evaluator(name, _gt(), COCO_CATEGORY_IDS)
        assert evaluator.evaluate([]) == {key: 0.0 for key in METRIC_NAMES}


def test_unknown_evaluator_is_refused():
    with pytest.raises(ValueError, match='pycocotools'):
        make_evaluator('detectron', _gt(), COCO_CATEGORY_IDS)


@pytest.mark.parametrize('name', EVALUATORS)
def test_printed_summary_is_pycocotools_own(name, capsys):
    """Both evaluators print pycocotools' summarize() text, line for line (faster-coco-eval's own
    summary labels AP maxDets=1000 and adds lines)."""
    from pycocotools.cocoeval import COCOeval
    meta, ids, (boxes, scores, labels) = _golden()
    results = to_coco_results(ids, boxes, scores, labels, COCO_CATEGORY_IDS)
    gt = _gt()
    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), 'bbox')
    reference.params.catIds, reference.params.maxDets = list(COCO_CATEGORY_IDS), [100, 300, 1000]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        reference.evaluate()
        reference.accumulate()
    with contextlib.redirect_stdout(printed := io.StringIO()):
        reference.summarize()
    capsys.readouterr()
    make_evaluator(name, _gt(), COCO_CATEGORY_IDS).evaluate(results, verbose=True)
    assert capsys.readouterr().out.strip('\n') == printed.getvalue().strip('\n')
