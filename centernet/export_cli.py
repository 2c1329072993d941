"""export.py's work: checkpoint -> native model -> ONNX (FP32, FP16) -> parity report."""

import time
from pathlib import Path

from . import onnx_export as ox
from .checkpoint import load_model, sha256_of
from .config import load_spec
from .errors import UserError
from .fileio import write_json
from .report import environment, format_table

# Parity shapes: (batch, height, width) canvases; two different shapes exercise dynamic axes.
CHECK_SHAPES = ((1, 512, 672), (3, 384, 544))
# max |ONNX - reference| <= tolerance * max(1, max |reference|), per output.
TOLERANCE = {'fp32': 1e-4, 'fp16': 5e-3}
# --end2end graphs are compared as detection sets (compare.match_detections): (box px, score)
# tolerances, and the share of PyTorch's detections the ONNX must reproduce.
END2END_TOLERANCE = {'fp32': ((1e-3, 1e-5), 1.0), 'fp16': ((1.0, 5e-3), 0.98)}


def export(args):
    spec = load_spec(args.cfg)
    start = time.perf_counter()
    model, classes = load_model(spec, args.weight)
    from coco_labels import COCO_CLASSES
    classes = classes or COCO_CLASSES
    output = Path(args.output)
    if output.suffix != '.onnx':
        raise UserError(f'--output {output} must end in .onnx')
    if args.precision == 'int8' and (not args.calib or args.end2end):
        raise UserError('--precision int8 needs --calib DIR (a COCO-layout folder or a folder of '
                        'images to calibrate on) and the heads graph (no --end2end)')
    fp32_path = output if args.precision in ('fp32', 'both') else \
        output.with_name(f'.{output.stem}_fp32_tmp.onnx')
    written = []
    try:
        ox.export_fp32(model, fp32_path, opset=args.opset, static_shape=args.static,
                       simplify=args.simplify, classes=classes, end2end=args.end2end)
        if args.precision in ('fp32', 'both'):
            written.append(('fp32', fp32_path))
        if args.precision in ('fp16', 'both'):
            fp16_path = output if args.precision == 'fp16' else ox.fp16_sibling(output)
            ox.convert_fp16(fp32_path, fp16_path)
            written.append(('fp16', fp16_path))
        if args.precision == 'int8':
            from .int8_quantize import quantize_int8
            gates = []  # the gate runs before the INT8 file replaces anything at --output
            check = (lambda path: gates.append(check_int8(model, path, args.static)) or gates[-1]
                     ) if args.check else None
            quantize_int8(fp32_path, output, args.calib, args.calib_images, args.calib_method,
                          args.int8_flavour, check=check)
            written.append(('int8', output))
    finally:
        if args.precision in ('fp16', 'int8'):
            fp32_path.unlink(missing_ok=True)
    export_seconds = time.perf_counter() - start
    for precision, path in written:
        print(f'wrote {path} ({precision}, {path.stat().st_size / 2**20:.1f} MiB) '
              f'in {export_seconds:.1f} s')

    report = dict(weight=str(args.weight), config=str(args.cfg), export_seconds=export_seconds,
                  environment=environment(), outputs={})
    failed = False
    for precision, path in written:
        entry = dict(path=str(path), sha256=sha256_of(path), bytes=path.stat().st_size)
        if args.check and precision == 'int8':  # gated (and printed) before it was written
            entry['gate'] = gates[-1].to_dict()
        elif args.check and args.end2end:
            rows, ok = check_end2end_parity(model, path, precision, args.static)
            headers = ['shape BxHxW', 'matched', 'required', 'share', 'needed', 'ok']
            keys = ['shape', 'matched', 'required', 'share', 'needed', 'ok']
        elif args.check:
            rows, ok = check_parity(model, path, precision, args.static)
            headers = ['shape BxHxW', 'output', 'max |diff|', 'max |ref|', 'tolerance', 'ok']
            keys = ['shape', 'output', 'max_abs_diff', 'max_abs_ref', 'tolerance', 'ok']
        if args.check and precision != 'int8':
            print(format_table(headers, rows, title=f'{precision} ONNX (ONNX Runtime CPU) vs '
                               'PyTorch FP32'))
            entry['parity'] = [dict(zip(keys, row)) for row in rows]
            failed |= not ok
        report['outputs'][precision] = entry
    write_json(output.with_suffix('.export.json'), report, indent=1)
    if failed:
        print('error: ONNX Runtime and PyTorch disagree beyond tolerance (see table)')
        return 1
    return 0


def check_int8(model, path, static_shape=None):
    """The precision gate (INT8 tolerances) of the INT8 graph on ONNX Runtime vs PyTorch FP32."""
    from .precision_gate import DEFAULT_SHAPES, run_gate
    return run_gate(lambda canvases: ox.run_torch(model, canvases),
                    lambda canvases: ox.run_onnxruntime(path, canvases), model.spec, 'int8',
                    shapes=(static_shape,) if static_shape else DEFAULT_SHAPES)


def check_end2end_parity(model, path, precision, static_shape=None):
    """An --end2end graph's detections vs PyTorch's (network + decode), as sets."""
    import numpy as np
    from .compare import match_rate
    tolerances, needed = END2END_TOLERANCE[precision]
    rows, ok = [], True
    for shape in (static_shape,) if static_shape else CHECK_SHAPES:
        canvases = ox.random_canvases(*shape)
        borders = np.tile(np.float32([[7, shape[1] - 9, 5, shape[2] - 11]]), (shape[0], 1))
        share, matched, required = match_rate(ox.run_torch(model, canvases, borders),
                                              ox.run_onnxruntime(path, canvases, borders),
                                              *tolerances)
        rows.append(['x'.join(map(str, shape)), matched, required, share, needed,
                     'yes' if share >= needed else 'NO'])
        ok &= share >= needed
    return rows, ok


def check_parity(model, path, precision, static_shape=None):
    rows, ok = [], True
    shapes = (static_shape,) if static_shape else CHECK_SHAPES
    for shape in shapes:
        canvases = ox.random_canvases(*shape)
        reference = ox.run_torch(model, canvases)
        diffs = ox.compare_outputs(reference, ox.run_onnxruntime(path, canvases))
        for name, (diff, scale) in diffs.items():
            tolerance = TOLERANCE[precision] * max(1.0, scale)
            rows.append(['x'.join(map(str, shape)), name, diff, scale, tolerance,
                         'yes' if diff <= tolerance else 'NO'])
            ok &= diff <= tolerance
    return rows, ok
