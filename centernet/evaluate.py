"""Detections -> COCO results JSON -> pycocotools, as mmdet 3.3.0's CocoMetric(metric='bbox').

CocoMetric specifics reproduced: label i -> the annotation file's category id for class i; all
100 detections per image, no threshold; bbox xywh computed in float64 from the float32 xyxy;
every image of the annotation file is evaluated (an image without results has no detections);
maxDets = [100, 300, 1000], so the 12 stats are mmdet's mAP ... AR_l@1000.
"""

import contextlib
import io

import numpy as np

METRIC_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l',
                'AR@100', 'AR@300', 'AR@1000', 'AR_s@1000', 'AR_m@1000', 'AR_l@1000')
SUMMARY_TABLE = (('AP', 'mAP'), ('AP50', 'mAP_50'), ('AP75', 'mAP_75'), ('APs', 'mAP_s'),
                 ('APm', 'mAP_m'), ('APl', 'mAP_l'))


def to_coco_results(image_ids, boxes, scores, labels, cat_ids):
    """COCO results records, one per detection, images in the given order.

    image_ids (N,), boxes (N, K, 4) float32 xyxy, scores (N, K), labels (N, K) int.
    """
    image_ids = np.asarray(image_ids)
    if image_ids.size == 0:
        return []
    boxes = np.asarray(boxes, np.float32).astype(np.float64)
    xywh = np.stack([boxes[..., 0], boxes[..., 1], boxes[..., 2] - boxes[..., 0],
                     boxes[..., 3] - boxes[..., 1]], axis=-1).reshape(-1, 4).tolist()
    cats = np.asarray(cat_ids)[np.asarray(labels).reshape(-1)].tolist()
    ids = np.repeat(image_ids, np.asarray(scores).shape[1]).tolist()
    values = np.asarray(scores, np.float32).astype(np.float64).reshape(-1).tolist()
    return [{'image_id': i, 'bbox': b, 'score': s, 'category_id': c}
            for i, b, s, c in zip(ids, xywh, values, cats)]


def evaluate_coco(coco_gt, results, cat_ids, img_ids=None, verbose=True):
    """Run COCOeval (bbox) with mmdet's parameters; returns {name: value} for METRIC_NAMES.

    `img_ids`: the images evaluated (default: every image of the annotation file, as mmdet).
    pycocotools' 12-line summary is printed when `verbose`.
    """
    from pycocotools.cocoeval import COCOeval
    if not results:
        return {name: 0.0 for name in METRIC_NAMES}  # mmdet: "results ... is empty"
    with contextlib.redirect_stdout(io.StringIO()):  # loadRes chatter
        coco_dt = coco_gt.loadRes(results)
    evaluator = COCOeval(coco_gt, coco_dt, 'bbox')
    evaluator.params.catIds = list(cat_ids)
    evaluator.params.imgIds = list(coco_gt.getImgIds() if img_ids is None else img_ids)
    evaluator.params.maxDets = [100, 300, 1000]
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}
