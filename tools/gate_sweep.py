#!/usr/bin/env python3
"""Prove the precision gate: sound FP16 conversions of varied weight sets must pass, broken ones fail.

    python3 tools/gate_sweep.py [--json gate_sweep.json] [--shapes 1x320x416 2x256x352]

For each case (centernet/gate_cases.py) the model is exported exactly as export.py exports it, the
FP16 graph made (and, for a broken case, damaged), and the gate (centernet/precision_gate.py) run
on its FP32 and FP16 graphs against PyTorch FP32. Prints a table and both rates, writes a JSON.
The default shapes are smaller than export.py's to keep the sweep to a few minutes on 2 cores.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DEFAULT_CONFIG, parse_shape, run_main  # noqa: E402

SWEEP_SHAPES = ((1, 320, 416), (2, 256, 352))


def run_case(case, spec, shapes, folder, simplify=True):
    """{'fp32': GateReport, 'fp16': GateReport} for one case."""
    import torch
    from centernet import gate_cases, onnx_export as ox, precision_gate as gate
    from centernet.model import build_model
    model = build_model(spec)
    model.load_state_dict(case.state_dict(model), strict=True)
    quiet = lambda *a, **k: None  # noqa: E731
    fp32 = ox.export_fp32(model.eval(), Path(folder) / 'case.onnx', simplify=simplify, log=quiet)
    fp16 = gate_cases.make_fp16(case, fp32, Path(folder) / 'case_fp16.onnx', log=quiet)
    inputs = gate.check_inputs(spec, shapes)
    with torch.no_grad():
        references = [ox.run_torch(model, canvases) for canvases, _ in inputs]
    reports = {}
    for precision, path in (('fp32', fp32), ('fp16', fp16)):
        run = ox.onnxruntime_runner(path)
        rows = [row for reference, (canvases, borders) in zip(references, inputs)
                for row in gate.judge(reference, run(canvases), borders, precision, spec).rows]
        reports[precision] = gate.GateReport(precision, gate.tolerances(precision, spec), rows)
    return reports


def summary(case, reports):
    fp16 = reports['fp16']
    worst = max((row[n]['stat'] / row[n]['limit'] for row in fp16.rows for n in ('heatmap', 'wh',
                 'offset') if row.get(n)), default=float('inf'))
    return dict(case=case.name, kind='broken' if case.broken else 'sound',
                fp16='pass' if fp16.ok else 'REFUSED', fp32='pass' if reports['fp32'].ok else 'REFUSED',
                share=min(min(r['share'], r['share_back']) for r in fp16.rows),
                head_ratio=worst,
                non_finite=sum(row[n]['non_finite'] for row in fp16.rows
                               for n in ('heatmap', 'wh', 'offset') if row.get(n)),
                correct=fp16.ok != case.broken)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cfg', default=DEFAULT_CONFIG, help='mmdet config file')
    parser.add_argument('--shapes', nargs='+', type=parse_shape, default=SWEEP_SHAPES,
                        metavar='BxHxW', help='check canvases (default: 1x320x416 2x256x352; '
                        "export.py's are 1x512x672 3x384x544)")
    parser.add_argument('--only', choices=('sound', 'broken'), help='run one kind of case')
    parser.add_argument('--cases', nargs='+', metavar='TEXT',
                        help='only the cases whose name contains one of these')
    parser.add_argument('--json', default='gate_sweep.json', help='JSON record to write')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    from tqdm import tqdm
    from centernet import gate_cases
    from centernet.config import load_spec
    from centernet.fileio import write_json
    from centernet.report import format_table
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    spec = load_spec(args.cfg)
    cases = [] if args.only == 'broken' else gate_cases.sound_cases()
    cases += [] if args.only == 'sound' else gate_cases.broken_cases()
    if args.cases:
        cases = [c for c in cases if any(text in c.name for text in args.cases)]
    rows, records, start = [], [], time.perf_counter()

    def rates():
        sound = [r for r in rows if r['kind'] == 'sound']
        broken = [r for r in rows if r['kind'] == 'broken']
        return (sum(r['fp16'] != 'pass' for r in sound), len(sound),
                sum(r['fp16'] != 'pass' for r in broken), len(broken))

    with tempfile.TemporaryDirectory() as folder:
        for case in tqdm(cases, desc='gate sweep', unit='case'):
            reports = run_case(case, spec, args.shapes, folder)
            rows.append(summary(case, reports))
            records.append(dict(rows[-1], reports={k: r.to_dict() for k, r in reports.items()}))
            false_alarms, sound, caught, broken = rates()  # after every case: a partial record
            write_json(args.json, dict(shapes=[list(s) for s in args.shapes], complete=False,
                                       false_alarms=false_alarms, sound=sound, caught=caught,
                                       broken=broken, cases=records), indent=1)
    keys = ['case', 'kind', 'fp16', 'fp32', 'share', 'head_ratio', 'non_finite']
    shapes = ' '.join('x'.join(map(str, s)) for s in args.shapes)
    print(format_table(['case', 'kind', 'FP16 gate', 'FP32 gate', 'min share', 'p99.9/limit',
                        'non-finite'], [[r[k] for k in keys] for r in rows],
                       title=f'precision gate sweep, shapes {shapes}'))
    false_alarms, sound, caught, broken = rates()
    print(f'false alarms: {false_alarms}/{sound} sound sets; detected: {caught}/{broken} broken '
          f'cases; {time.perf_counter() - start:.0f} s')
    write_json(args.json, dict(shapes=[list(s) for s in args.shapes], complete=True,
                               false_alarms=false_alarms, sound=sound, caught=caught,
                               broken=broken, cases=records), indent=1)
    return 0 if all(r['correct'] for r in rows) else 1


if __name__ == '__main__':
    run_main(main)
