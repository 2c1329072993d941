#!/usr/bin/env python3
"""Prove the INT8 precision gate on trained weights: sound calibrations must pass, broken graphs fail.

    nice -n 10 python3 tools/int8_gate_sweep.py --weight tests/fixtures/standin/standin_centernet.pth \\
        --data /tmp/standin [--weight OTHER.pth ...] [--json int8_gate_sweep.json]

For each trained checkpoint (random weights detect nothing an INT8 graph could lose): export FP32
as export.py does, then the sound cases, every calibration export.py offers (flavours tensorrt and
cpu x methods minmax / percentile / entropy on 128 train scenes, and minmax on 16), and the broken
ones, the tensorrt MinMax graph damaged by each of centernet.gate_cases.INT8_DEFECTS. Each graph is
judged by the gate twice: on export.py's INT8 check inputs (int8_quantize.gate_inputs: calibration
folder images after the calibrated ones) and, for comparison, on the generated scenes the FP16 gate
uses. With --ap each graph's COCO AP on the test split is measured too (what a user would see).
Prints a table and both rates per input kind; writes a JSON record.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DEFAULT_CONFIG, run_main  # noqa: E402

SOUND = [(flavour, method, 128) for flavour in ('tensorrt', 'cpu')
         for method in ('minmax', 'percentile', 'entropy')] + [('tensorrt', 'minmax', 16)]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weight', action='append', required=True,
                        help='a trained checkpoint (repeat for several)')
    parser.add_argument('--data', required=True, help='folder of the stand-in splits')
    parser.add_argument('--cfg', default=DEFAULT_CONFIG)
    parser.add_argument('--ap', action='store_true', help='also measure AP on the test split')
    parser.add_argument('--json', default='results/int8_gate_sweep.json')
    return parser.parse_args(argv)


def graphs_for(fp32, calib, folder):
    """[(case, kind, path)]: the sound calibrations, then the broken copies."""
    from centernet.gate_cases import INT8_DEFECTS, make_broken_int8
    from centernet.int8_quantize import quantize_int8
    made = []
    for flavour, method, images in SOUND:
        path = Path(folder) / f'int8_{flavour}_{method}_{images}.onnx'
        quantize_int8(fp32, path, calib, images, method, flavour, log=lambda *a: None)
        made.append((f'{flavour} {method}, {images} images', 'sound', path))
    base = made[0][2]
    for index, defect in enumerate(INT8_DEFECTS):
        made.append((defect, 'broken', make_broken_int8(base, Path(folder) / f'broken{index}.onnx',
                                                        defect)))
    return made


def sweep(args):
    from centernet import onnx_export as ox
    from centernet import precision_gate as gate
    from centernet import standin_scenes as scenes
    from centernet.checkpoint import load_model
    from centernet.config import load_spec
    from centernet.fileio import write_json
    from centernet.int8_quantize import gate_inputs
    from centernet.report import format_table
    from benchmark_precision import evaluate
    from coco_labels import COCO_CLASSES
    data, spec = Path(args.data), load_spec(args.cfg)
    for split in ('train', 'test'):
        if not (data / split / 'annotations' / 'instances_val2017.json').is_file():
            scenes.write_split(data, split, scenes.SPLIT_SIZES[split])
    records, rows = [], []
    for weight in args.weight:
        model, classes = load_model(spec, weight)
        classes = classes or COCO_CLASSES
        inputs = {'calibration images': gate_inputs(data / 'train', spec, 128)[0],
                  'generated scenes': gate.check_inputs(spec)}
        with tempfile.TemporaryDirectory() as folder:
            fp32 = ox.export_fp32(model, Path(folder) / 'fp32.onnx', classes=classes,
                                  log=lambda *a: None)
            base_ap = evaluate(fp32, data / 'test', 0)[0] if args.ap else None
            for case, kind, path in graphs_for(fp32, data / 'train', folder):
                start = time.perf_counter()
                entry = dict(weight=str(weight), case=case, kind=kind,
                             ap=evaluate(path, data / 'test', 0)[0] if args.ap else None,
                             fp32_ap=base_ap)
                for name, checks in inputs.items():
                    report = gate.run_gate(lambda c: ox.run_torch(model, c),
                                           ox.onnxruntime_runner(path), spec, 'int8',
                                           inputs=checks)
                    entry[name] = dict(ok=report.ok, share=min(
                        min(r['share'], r['share_back']) for r in report.rows),
                        head_ratio=max(r[n]['stat'] / r[n]['limit'] for r in report.rows
                                       for n in ox.OUTPUT_NAMES if r.get(n)),
                        correct=report.ok != (kind == 'broken'))
                entry['seconds'] = round(time.perf_counter() - start, 1)
                records.append(entry)
                rows.append([Path(weight).name, case, kind,
                             '-' if entry['ap'] is None else f'{entry["ap"] - base_ap:+.4f}',
                             *[f'{"pass" if entry[n]["ok"] else "REFUSED"} '
                               f'{entry[n]["share"]:.2f} {entry[n]["head_ratio"]:.2f}'
                               for n in inputs]])
                print(rows[-1], flush=True)
    names = list(inputs)
    print(format_table(['weights', 'case', 'kind', 'dAP vs FP32', *[
        f'{n}: verdict share head/limit' for n in names]], rows,
        title='INT8 precision gate sweep (share: lowest detection share, both directions)'))
    for name in names:
        sound = [r for r in records if r['kind'] == 'sound']
        broken = [r for r in records if r['kind'] == 'broken']
        print(f'{name}: false alarms {sum(not r[name]["ok"] for r in sound)}/{len(sound)}, '
              f'broken caught {sum(not r[name]["ok"] for r in broken)}/{len(broken)}; lowest '
              f'sound share {min(r[name]["share"] for r in sound):.3f}, highest broken share '
              f'{max(r[name]["share"] for r in broken):.3f}')
    write_json(args.json, dict(min_share=gate.tolerances('int8', spec).min_share,
                               cases=records), indent=1)
    print(f'record: {args.json}')
    return 0


def main(argv=None):
    return sweep(parse_args(argv))


if __name__ == '__main__':
    run_main(main)
