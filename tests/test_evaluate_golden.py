"""Evaluation against mmdet 3.3.0's CocoMetric (golden fixtures from tools/make_golden.py)."""

import contextlib
import io
import json

import numpy as np
from pycocotools.coco import COCO

from conftest import GOLDEN

from centernet.evaluate import evaluate_coco, to_coco_results
from coco_labels import COCO_CATEGORY_IDS, COCO_CLASSES


def _golden():
    meta = json.loads((GOLDEN / 'golden.json').read_text())
    arrays = np.load(GOLDEN / 'golden.npz')
    ids = [image['id'] for image in meta['images']]
    stack = [np.stack([arrays[f'metric/{i}/{name}'] for i in ids])
             for name in ('boxes', 'scores', 'labels')]
    return meta, ids, stack


def _gt():
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(GOLDEN / 'annotations.json'))
    return gt


def test_category_ids_come_from_the_annotation_file_by_name():
    gt = _gt()
    assert gt.getCatIds(catNms=list(COCO_CLASSES)) == list(COCO_CATEGORY_IDS)


def test_results_json_equals_cocometric():
    meta, ids, (boxes, scores, labels) = _golden()
    ours = to_coco_results(ids, boxes, scores, labels, COCO_CATEGORY_IDS)
    assert ours == meta['coco_metric_results']  # same records, same floats, same order


def test_metrics_equal_cocometric():
    meta, ids, (boxes, scores, labels) = _golden()
    metrics = evaluate_coco(_gt(), to_coco_results(ids, boxes, scores, labels, COCO_CATEGORY_IDS),
                            COCO_CATEGORY_IDS, verbose=False)
    golden = meta['coco_metric']
    assert golden['bbox_mAP'] > 0.3  # a meaningful value, not an empty evaluation
    for name in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'):
        assert round(metrics[name], 3) == golden[f'bbox_{name}'], name
