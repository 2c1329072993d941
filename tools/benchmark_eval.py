#!/usr/bin/env python3
"""COCO evaluation benchmark: faster-coco-eval vs pycocotools, side by side in one run.

By default on a generated val2017-scale problem in memory (centernet.synthetic.evaluation_set:
5,000 images, ~37k ground-truth boxes with crowd ones, 100 detections per image = ~500k), or on
a real annotation file and saved detections:

    python tools/benchmark_eval.py [--images 5000] [--dets 100]
    python tools/benchmark_eval.py --datasets DIR --detections saved.json   # inference --save_json

Both evaluators get the same parsed annotation file (a pycocotools COCO, as inference.py) and
their own fresh copy of the same results records, with CocoMetric's parameters. Prints the
seconds per step, the ratio, and the largest difference over the 12 stats; writes --json.
"""

import argparse
import contextlib
import copy
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet.dataset import ANNOTATION_FILE  # noqa: E402
from centernet.evaluate import (EVALUATORS, METRIC_NAMES, make_evaluator,  # noqa: E402
                                to_coco_results)
from centernet.fileio import write_json  # noqa: E402
from centernet.report import environment, format_table  # noqa: E402
from coco_labels import COCO_CATEGORY_IDS, COCO_CLASSES  # noqa: E402

STEPS = ('index', 'load_results', 'evaluate+accumulate', 'summarize', 'total')


def generated_problem(images, dets):
    from centernet.synthetic import evaluation_set
    start = time.perf_counter()
    gt, ids, boxes, scores, labels, done = evaluation_set(images, dets_per_image=dets)
    made = time.perf_counter() - start
    start = time.perf_counter()
    results = to_coco_results(ids[done], boxes[done], scores[done], labels[done],
                              COCO_CATEGORY_IDS)
    converted = time.perf_counter() - start
    print(f'generated {len(gt["images"])} images, {len(gt["annotations"])} ground-truth boxes '
          f'({sum(a["iscrowd"] for a in gt["annotations"])} crowd), {len(results)} detections '
          f'in {made:.1f} s; to_coco_results {converted:.2f} s')
    return gt, results, dict(to_coco_results=converted)


def saved_problem(datasets, detections):
    ann_file = Path(datasets) / ANNOTATION_FILE
    for path in (ann_file, Path(detections)):
        if not path.is_file():
            sys.exit(f'error: {path} not found')
    gt = json.loads(ann_file.read_text())
    results = json.loads(Path(detections).read_text())
    print(f'{ann_file}: {len(gt["images"])} images, {len(gt.get("annotations", []))} boxes; '
          f'{detections}: {len(results)} detections')
    return gt, results, {}


def coco_index(dataset):
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def run_evaluator(name, coco_gt, cat_ids, results):
    start = time.perf_counter()
    evaluator = make_evaluator(name, coco_gt, cat_ids)
    index = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluator.evaluate(results)
    total = time.perf_counter() - start
    return evaluator.library, metrics, dict(index=index, **evaluator.times, total=total)


def array_load_results(coco_gt, results):
    """faster-coco-eval's loadRes from an (M, 7) array [image_id, x, y, w, h, score, cat]."""
    import faster_coco_eval
    gt = faster_coco_eval.COCO(coco_gt.dataset)
    array = np.array([[r['image_id'], *r['bbox'], r['score'], r['category_id']] for r in results])
    start = time.perf_counter()
    gt.loadRes(array)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=5000, help='generated set: images')
    parser.add_argument('--dets', type=int, default=100, help='generated set: detections/image')
    parser.add_argument('--datasets', help='COCO folder with annotations/instances_val2017.json')
    parser.add_argument('--detections', help='COCO results JSON (inference.py --save_json)')
    parser.add_argument('--json', default='results/benchmark_eval.json')
    args = parser.parse_args()
    if bool(args.datasets) != bool(args.detections):
        sys.exit('error: --datasets and --detections go together')
    if args.datasets:
        dataset, results, extra = saved_problem(args.datasets, args.detections)
    else:
        dataset, results, extra = generated_problem(args.images, args.dets)
    coco_gt = coco_index(dataset)
    cat_ids = coco_gt.getCatIds(catNms=list(COCO_CLASSES))
    runs = {}
    for name in EVALUATORS:  # each gets its own records: loadRes adds fields to them
        library, metrics, times = run_evaluator(name, coco_gt, cat_ids, copy.deepcopy(results))
        runs[name] = dict(library=library, metrics=metrics, seconds=times)
        print(f'{library}: {times["total"]:.2f} s')
    fast, reference = runs['faster'], runs['pycocotools']
    for run in runs.values():  # faster-coco-eval matches and accumulates in one call
        run['seconds']['evaluate+accumulate'] = run['seconds']['evaluate'] + \
            run['seconds']['accumulate']
    rows = [[step, reference['seconds'][step], fast['seconds'][step],
             reference['seconds'][step] / max(fast['seconds'][step], 1e-9)]
            for step in STEPS]
    print(format_table(['step', 'pycocotools s', 'faster-coco-eval s', 'ratio'], rows,
                       title=f'COCO evaluation, {len(results)} detections, '
                             f'{len(dataset["images"])} images'))
    differences = {name: abs(fast['metrics'][name] - reference['metrics'][name])
                   for name in METRIC_NAMES}
    worst = max(differences.values())
    print(format_table(['stat', 'pycocotools', 'faster-coco-eval'],
                       [[name, reference['metrics'][name], fast['metrics'][name]]
                        for name in METRIC_NAMES]))
    share = fast['seconds']['total'] / reference['seconds']['total']
    print(f'max |difference| over the 12 stats: {worst:.3e}; faster-coco-eval takes '
          f'{share:.3f} x pycocotools\' time ({1 / share:.1f}x faster)')
    if fast['library'] == 'faster-coco-eval':
        extra['faster_load_results_from_array'] = array_load_results(coco_gt, results)
        print(f'faster-coco-eval loadRes from an (M, 7) array: '
              f'{extra["faster_load_results_from_array"]:.2f} s (records: '
              f'{fast["seconds"]["load_results"]:.2f} s)')
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.json), dict(environment=environment(), images=len(dataset['images']),
                                     detections=len(results), runs=runs, extra=extra,
                                     max_difference=worst, time_share=share), indent=1)
    print(f'record: {args.json}')


if __name__ == '__main__':
    main()
