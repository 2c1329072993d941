"""Detections -> COCO results records -> COCOeval, as mmdet 3.3.0's CocoMetric(metric='bbox').

CocoMetric specifics reproduced: label i -> the annotation file's category id for class i; all
100 detections per image, no threshold; bbox xywh computed in float64 from the float32 xyxy;
every image of the annotation file is evaluated (an image without results has no detections);
maxDets = [100, 300, 1000], so the 12 stats are mmdet's mAP ... AR_l@1000.

Two evaluators give these numbers (docs/evaluation.md):
    pycocotools   the library mmdet's CocoMetric calls: the reference, and the tests' truth
    faster        faster-coco-eval's COCOeval_faster (C++ matching and accumulation): the same
                  12 stats, max difference 0.0 on a val2017-scale set, 5-7x faster (default)
"""

import contextlib
import io
import time

import numpy as np

METRIC_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l',
                'AR@100', 'AR@300', 'AR@1000', 'AR_s@1000', 'AR_m@1000', 'AR_l@1000')
SUMMARY_TABLE = (('AP', 'mAP'), ('AP50', 'mAP_50'), ('AP75', 'mAP_75'), ('APs', 'mAP_s'),
                 ('APm', 'mAP_m'), ('APl', 'mAP_l'))
MAX_DETS = [100, 300, 1000]  # CocoMetric's proposal_nums
# pycocotools' _summarizeDets with maxDets MAX_DETS: (AP or AR, IoU, area, maxDets) of each stat.
# Both evaluators' stats are printed through this one layout (faster-coco-eval's own summary
# labels stat 0 maxDets=1000 and adds two AR lines).
SUMMARY_LINES = ((1, None, 'all', 100), (1, .5, 'all', 1000), (1, .75, 'all', 1000),
                 (1, None, 'small', 1000), (1, None, 'medium', 1000), (1, None, 'large', 1000),
                 (0, None, 'all', 100), (0, None, 'all', 300), (0, None, 'all', 1000),
                 (0, None, 'small', 1000), (0, None, 'medium', 1000), (0, None, 'large', 1000))
EVALUATORS = ('faster', 'pycocotools')
DEFAULT_EVALUATOR = 'faster'


def to_coco_results(image_ids, boxes, scores, labels, cat_ids):
    """COCO results records, one per detection, images in the given order.

    image_ids (N,), boxes (N, K, 4) float32 xyxy, scores (N, K), labels (N, K) int.
    Records, not an (M, 7) array: both libraries' loadRes turn an array into these same records
    with a per-row Python loop, which measured 3x slower than this (docs/evaluation.md).
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


class CocoEvaluator:
    """COCOeval (bbox) with CocoMetric's parameters over one annotation set.

    `coco_gt`: a pycocotools COCO (what dataset.CocoImageSet holds); `img_ids`: the images
    evaluated (default: every image of the annotation file, as mmdet). `times` holds the seconds
    of the last evaluate() per step (load_results, evaluate, accumulate, summarize).
    """

    library = 'pycocotools'

    def __init__(self, coco_gt, cat_ids, img_ids=None):
        self.coco_gt = coco_gt
        self.cat_ids = list(cat_ids)
        self.img_ids = list(coco_gt.getImgIds() if img_ids is None else img_ids)
        self.times = {}

    def _cocoeval(self, coco_dt):
        from pycocotools.cocoeval import COCOeval
        return COCOeval(self.coco_gt, coco_dt, 'bbox')

    def _load_results(self, results):
        with contextlib.redirect_stdout(io.StringIO()):  # loadRes chatter
            return self.coco_gt.loadRes(results)

    def _stats(self, evaluator):
        return evaluator.stats

    def evaluate(self, results, verbose=False):
        """{name: value} for METRIC_NAMES. `results`: to_coco_results records (loadRes adds fields
        to them: write them out first). pycocotools' 12-line summary is printed when `verbose`."""
        self.times = {}
        if not results:
            return {name: 0.0 for name in METRIC_NAMES}  # mmdet: "results ... is empty"
        clock = time.perf_counter()

        def lap(name):
            nonlocal clock
            now = time.perf_counter()
            self.times[name] = now - clock
            clock = now

        coco_dt = self._load_results(results)
        lap('load_results')
        evaluator = self._cocoeval(coco_dt)
        evaluator.params.catIds = self.cat_ids
        evaluator.params.imgIds = self.img_ids
        evaluator.params.maxDets = list(MAX_DETS)
        with contextlib.redirect_stdout(io.StringIO()):  # the libraries' progress chatter
            evaluator.evaluate()
            lap('evaluate')
            evaluator.accumulate()
            lap('accumulate')
            evaluator.summarize()
            stats = self._stats(evaluator)
            lap('summarize')
        if verbose:
            print(summary_text(stats))
        return {name: float(value) for name, value in zip(METRIC_NAMES, stats)}


def summary_text(stats):
    """The 12 stats in pycocotools' summarize() layout (SUMMARY_LINES)."""
    lines = []
    for value, (ap, iou, area, max_dets) in zip(stats, SUMMARY_LINES):
        title, kind = ('Average Precision', '(AP)') if ap else ('Average Recall', '(AR)')
        iou = '0.50:0.95' if iou is None else f'{iou:0.2f}'
        lines.append(f' {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | '
                     f'maxDets={max_dets:>3d} ] = {value:0.3f}')
    return '\n'.join(lines)


class FasterCocoEvaluator(CocoEvaluator):
    """faster-coco-eval's COCOeval_faster over its own index of the same parsed annotation file
    (built from coco_gt.dataset: no second read of the file; 0.01-0.09 s for 37k boxes)."""

    library = 'faster-coco-eval'

    def __init__(self, coco_gt, cat_ids, img_ids=None):
        import faster_coco_eval
        super().__init__(coco_gt, cat_ids, img_ids)
        self.faster = faster_coco_eval
        self.coco_gt = faster_coco_eval.COCO(coco_gt.dataset)

    def _cocoeval(self, coco_dt):
        # separate_eval=False: evaluate() matches and accumulates in one C++ call, so `accumulate`
        # in `times` is ~0 and `evaluate` holds both.
        return self.faster.COCOeval_faster(self.coco_gt, coco_dt, 'bbox', print_function=print)

    def _stats(self, evaluator):
        # pycocotools' summarize takes stat 0 (AP) at maxDets=100 whatever params.maxDets are;
        # COCOeval_faster takes it at maxDets[-1] (1000). Equal while no image has over 100
        # detections of one category (inference keeps 100 per image): take pycocotools' choice.
        stats = np.array(evaluator.stats[:len(METRIC_NAMES)], np.float64)
        with contextlib.redirect_stdout(io.StringIO()):
            stats[0] = evaluator._summarize(1, maxDets=MAX_DETS[0])
        return stats


def make_evaluator(name, coco_gt, cat_ids, img_ids=None, log=print):
    """The evaluator called `name` (EVALUATORS). 'faster' without faster-coco-eval installed
    falls back to pycocotools, saying so in one line through `log`."""
    if name not in EVALUATORS:
        raise ValueError(f'evaluator {name!r}: expected one of {EVALUATORS}')
    if name == 'faster':
        try:
            return FasterCocoEvaluator(coco_gt, cat_ids, img_ids)
        except ImportError:
            log('faster-coco-eval is not installed: evaluating with pycocotools (same numbers, '
                '5-7x slower; pip install faster-coco-eval)')
    return CocoEvaluator(coco_gt, cat_ids, img_ids)


def evaluate_coco(coco_gt, results, cat_ids, img_ids=None, verbose=True,
                  evaluator='pycocotools'):
    """One evaluation: make_evaluator(evaluator, ...).evaluate(results, verbose). The default is
    the reference (pycocotools), so a caller that names none is checked against it; inference.py
    and the tools ask for DEFAULT_EVALUATOR."""
    return make_evaluator(evaluator, coco_gt, cat_ids, img_ids).evaluate(results, verbose)
