#!/usr/bin/env python3
"""What FP16 and INT8 cost on the trained stand-in: AP, kept detections, gate, speed, calibration.

    nice -n 10 python3 tools/benchmark_precision.py \\
        --weight tests/fixtures/standin/standin_centernet.pth --data /tmp/standin

Exports the stand-in to FP32, FP16 and INT8 (each calibration method; flavours tensorrt and
cpu), then, all on ONNX Runtime CPU:
  - COCO AP on the held-out test split (generated from its seed if absent), with the kit's
    loader, decode and evaluation (what inference.py runs);
  - the share of FP32's confident detections (score >= 0.3) each keeps: same label, IoU >= 0.7
    and a score within 0.1;
  - export.py's precision gate (centernet.precision_gate; INT8 on calibration-folder images);
  - engine-only img/s of FP32 and the INT8 graphs at batch 1, 512x672 canvases, interleaved
    round by round in one process so both see the same machine load;
  - calibration seconds.
Prints tables and writes a JSON record (--record).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common import DEFAULT_CONFIG, run_main  # noqa: E402

KEEP_SCORE, KEEP_IOU, KEEP_SCORE_DIFF = 0.3, 0.7, 0.1
BROKEN = 'activation scales / 8 (every activation clipped)'  # a centernet.gate_cases defect


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weight', required=True, help='the stand-in checkpoint')
    parser.add_argument('--cfg', default=DEFAULT_CONFIG)
    parser.add_argument('--data', required=True, help='folder of the stand-in splits')
    parser.add_argument('--out', default='results/precision', help='folder for the ONNX files')
    parser.add_argument('--record', default='results/precision_benchmark.json')
    parser.add_argument('--calib_images', type=int, default=128)
    parser.add_argument('--methods', nargs='+', default=['minmax', 'entropy', 'percentile'])
    parser.add_argument('--speed_rounds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=0, help='ONNX Runtime threads (0: cores)')
    return parser.parse_args(argv)


def _iou(box, boxes):
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def kept_share(reference, candidate):
    """Share of the reference's detections scoring >= KEEP_SCORE that the candidate keeps."""
    kept = total = 0
    for ref_boxes, ref_scores, ref_labels, boxes, scores, labels in zip(*reference, *candidate):
        for box, score, label in zip(ref_boxes, ref_scores, ref_labels):
            if score < KEEP_SCORE:
                continue
            total += 1
            same = (labels == label) & (np.abs(scores - score) <= KEEP_SCORE_DIFF)
            kept += bool(same.any() and (_iou(box, boxes[same]) >= KEEP_IOU).any())
    return (kept / total if total else None), total


def evaluate(path, folder, threads):
    """(AP, detections) of an ONNX on a COCO-layout split, as inference.py computes them."""
    from centernet.backends.onnxruntime_backend import OrtBackend
    from centernet.pipeline import folder_ap
    return folder_ap(OrtBackend(path, threads=threads), folder)


def gate(model, path, calib, calib_images):
    """export.py's precision gate on `path`: INT8 on the calibration folder's images, as export
    judges it (int8_quantize.gate_inputs), the others on the gate's generated scenes."""
    from centernet import onnx_export as ox
    from centernet.int8_quantize import gate_inputs
    from centernet.precision_gate import run_gate
    meta = ox.read_metadata(path)[2]
    precision = meta['centernet.precision']
    inputs = gate_inputs(calib, model.spec, calib_images)[0] \
        if precision == 'int8' else None
    return run_gate(lambda c: ox.run_torch(model, c), lambda c: ox.run_onnxruntime(path, c),
                    model.spec, precision, inputs=inputs)


def engine_speed(paths, rounds, threads):
    """img/s per graph, batch 1 at 512x672, rounds interleaved across graphs (median)."""
    import onnxruntime as ort
    from centernet import onnx_export as ox
    canvases = ox.random_canvases(1, 512, 672)
    sessions = {}
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        sessions[name] = ort.InferenceSession(str(path), options,
                                              providers=['CPUExecutionProvider'])
        sessions[name].run(None, {ox.INPUT_NAME: canvases})
    times = {name: [] for name in paths}
    for _ in range(rounds):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {ox.INPUT_NAME: canvases})
            times[name].append(time.perf_counter() - start)
    return {name: 1.0 / float(np.median(t)) for name, t in times.items()}


def benchmark(args):
    from centernet import onnx_export as ox
    from centernet import standin_scenes as scenes
    from centernet.checkpoint import load_model
    from centernet.config import load_spec
    from centernet.fileio import write_json
    from centernet.gate_cases import make_broken_int8
    from centernet.int8_quantize import quantize_int8
    from centernet.report import environment, format_table
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split in ('train', 'test'):
        if not (data / split / 'annotations' / 'instances_val2017.json').is_file():
            scenes.write_split(data, split, scenes.SPLIT_SIZES[split])
    model, classes = load_model(load_spec(args.cfg), args.weight)
    fp32 = ox.export_fp32(model, out / 'standin.onnx', classes=classes, log=lambda *a: None)
    graphs = {'fp32': dict(path=fp32), 'fp16': dict(path=ox.convert_fp16(
        fp32, out / 'standin_fp16.onnx', log=lambda *a: None))}
    for flavour in ('tensorrt', 'cpu'):
        for method in args.methods:
            path = out / f'standin_int8_{flavour}_{method}.onnx'
            calibration = quantize_int8(fp32, path, data / 'train', args.calib_images, method,
                                        flavour, log=lambda *a: None)
            graphs[f'int8 {flavour} {method}'] = dict(path=path,
                                                      calib_seconds=calibration['seconds'])
    broken = out / 'standin_int8_broken.onnx'
    graphs['int8 broken (scales/8)'] = dict(path=make_broken_int8(
        graphs[f'int8 tensorrt {args.methods[0]}']['path'], broken, BROKEN))
    reference = None
    for name, entry in graphs.items():
        entry['ap'], detections = evaluate(entry['path'], data / 'test', args.threads)
        if reference is None:
            reference = detections
        entry['kept'], entry['fp32_confident'] = kept_share(reference, detections)
        report = gate(model, entry['path'], data / 'train', args.calib_images)
        entry['gate_ok'], entry['gate'] = report.ok, report.to_dict()
        entry['gate_share'] = min(min(r['share'], r['share_back']) for r in report.rows)
        print(f'{name}: AP {entry["ap"]:.4f}', flush=True)
    speed_names = ['fp32'] + [n for n in graphs if n.endswith(' minmax')]
    speeds = engine_speed({n: graphs[n]['path'] for n in speed_names}, args.speed_rounds,
                          args.threads)
    for name, fps in speeds.items():
        graphs[name]['img_per_s'] = fps
    base = graphs['fp32']['ap']
    rows = [[name, e['ap'], e['ap'] - base, e['kept'], e['gate_share'],
             'yes' if e['gate_ok'] else 'NO', e.get('calib_seconds'), e.get('img_per_s'),
             e.get('img_per_s', 0) / speeds['fp32'] if 'img_per_s' in e else None]
            for name, e in graphs.items()]
    print(format_table(['graph', 'AP', 'dAP', 'kept', 'gate share', 'gate', 'calib s', 'img/s',
                        'x FP32'], rows,
                       title=f'stand-in, test split ({scenes.SPLIT_SIZES["test"]} scenes), '
                             f'ONNX Runtime CPU; kept: FP32 detections >= {KEEP_SCORE} kept; '
                             'img/s: batch 1, 512x672'))
    for entry in graphs.values():
        entry['path'] = str(entry['path'])
    write_json(args.record, dict(environment=environment(), weight=str(args.weight),
                                 calib_images=args.calib_images, graphs=graphs), indent=1)
    print(f'record: {args.record}')
    return 0


def main(argv=None):
    return benchmark(parse_args(argv))


if __name__ == '__main__':
    run_main(main)
