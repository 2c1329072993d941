"""export.py's work: checkpoint -> native model -> ONNX (FP32, FP16, INT8), each gated before it is kept.

Every graph is written to a temporary file beside its final path and judged by the precision gate
(centernet/precision_gate.py: detections and robust head statistics vs PyTorch FP32, on
generated image-like scenes; INT8 on images of its calibration folder); only a graph that passed is renamed to its final path. A refused one is kept
as `<name>.rejected.onnx` for inspection and the run ends with one `error:` line (exit 2). The
export report `<output stem>.export.json` records each output's verdict with the checkpoint's and
the config's sha256, which `--if-stale` (the scripts) compares before reusing a file. With
`--skip-check` a graph is written unchecked, so recorded, and marked in its metadata
(onnx_export.METADATA_GATE) for inference.py to warn; `--if-stale --skip-check` reuses such a
graph, a gated request never does.

Under a script (errors.option_name) the advice names the script's variables, not the flags.
"""

import hashlib
import json
import tempfile
import time
from pathlib import Path

# Only what the reuse decision (--if-stale) needs is imported here: it must stay quick, so
# torch, onnx and the precision gate are imported when an export is made.
from . import onnx_export as ox
from .errors import UserError, option_name, running_script
from .fileio import check_output_folder, move_into_place, sha256_of, write_json

REPORT_FORMAT = 'centernet-export-1'


def report_path(output):
    return Path(output).with_suffix('.export.json')


def rejected_path(path):
    """Where a refused graph is kept: centernet_fp16.onnx -> centernet_fp16.rejected.onnx."""
    path = Path(path)
    return path.with_name(f'{path.stem}.rejected{path.suffix}')


def planned_outputs(output, precision):
    """[(precision, final path)] that `export.py --precision P --output OUTPUT` writes."""
    output = Path(output)
    if precision == 'both':
        return [('fp32', output), ('fp16', ox.fp16_sibling(output))]
    return [(precision, output)]


class _Refused(Exception):
    """Raised inside atomic_path so that a refused graph never reaches its final path."""


def reuse_problem(output, precision, weight, cfg, end2end=False, static_shape=None,
                  calibration_request=None, graph_options=None, check=True):
    """None when every file `--precision` would write exists, unchanged, and its export report says
    it passed the gate (or, when `check` is False, was written unchecked as asked) and was made
    from this checkpoint and config by this kit's format; otherwise why not, in a few words."""
    path = report_path(output)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        return f'no export report {path}'
    except (OSError, ValueError) as exc:
        return f'{path} is not readable JSON ({type(exc).__name__})'
    if not isinstance(report, dict) or report.get('format') != REPORT_FORMAT:
        return f'{path} is not an export report of this kit'
    if report.get('format_version') != ox.FORMAT_VERSION:
        return f'made for ONNX format version {report.get("format_version")}, now {ox.FORMAT_VERSION}'
    if report.get('weight_sha256') != sha256_of(weight):
        return f'made from another checkpoint than {weight}'
    if report.get('config_sha256') != sha256_of(cfg):
        return f'made with another config than {cfg}'
    if report.get('end2end') != bool(end2end) or report.get('static') != \
            (list(static_shape) if static_shape else None):
        return 'made with other --end2end/--static options'
    if graph_options is not None and report.get('graph_options') != graph_options:
        return 'made with other --opset/--no-simplify options'
    if precision == 'int8' and report.get('calibration_request') != calibration_request:
        return 'calibrated with other --calib/--calib_images/--calib_method/--int8_flavour'
    for name, final in planned_outputs(output, precision):
        entry = report.get('outputs', {}).get(name) or {}
        status = entry.get('status', 'missing')
        if status == 'skipped' and check:
            return (f'its {name} graph was written without the precision gate, and this run asks '
                    f'for a gated one')
        if status not in ('passed', 'skipped'):
            return f'its {name} graph has status {status}, not passed'
        if not final.is_file():
            return f'{final} does not exist'
        if entry.get('sha256') != sha256_of(final):
            return f'{final} changed after the export'
    return None


class _CachedReference:
    """The PyTorch FP32 heads for the gate, computed once per check input for all precisions."""

    def __init__(self, model):
        self.model, self.cache = model, {}

    def __call__(self, canvases):
        key = hashlib.sha1(canvases.tobytes()).hexdigest()
        if key not in self.cache:
            self.cache[key] = ox.run_torch(self.model, canvases)
        return self.cache[key]


def write_gated(final, make, judge):
    """make(final, accept) writes a graph to `final` atomically, calling accept(tmp) on the finished
    temporary file before the rename; judge(tmp) -> GateReport, or None (unchecked).

    The graph reaches `final` only if it passed or was not checked; a refused one goes to
    rejected_path(final), and a file an earlier export left at `final` is removed (it would
    contradict the new report, and a script or engine build would take it). Returns (where the
    file is now, its sha256, its size, the verdict)."""
    kept, found = rejected_path(final), {}

    def accept(tmp):
        found.update(verdict=judge(tmp), sha256=sha256_of(tmp), bytes=tmp.stat().st_size)
        if found['verdict'] is not None and not found['verdict'].ok:
            move_into_place(tmp, kept)  # atomic_path then has no temporary file to remove
            raise _Refused

    try:
        make(final, accept)
        kept.unlink(missing_ok=True)  # a refusal left by an earlier export is stale now
    except _Refused:
        Path(final).unlink(missing_ok=True)
        final = kept
    return Path(final), found['sha256'], found['bytes'], found['verdict']


def gate_graph(reference, path, precision, spec, static_shape=None, end2end=False, inputs=None):
    """The precision gate's report for the ONNX at `path` (ONNX Runtime CPU) vs PyTorch FP32, on
    `inputs` (INT8: int8_quantize.gate_inputs) or the gate's generated scenes."""
    from . import precision_gate as gate
    shapes = (static_shape,) if static_shape else gate.DEFAULT_SHAPES
    return gate.run_gate(reference, ox.onnxruntime_runner(path), spec, precision, shapes,
                         end2end=end2end, inputs=inputs)


def calibration_request(args):
    """What an INT8 export was asked to calibrate on (None for other precisions), as recorded in
    its report and compared by --if-stale: the options, and a digest of the images it reads (the
    calibrated ones and the gate's), so that other pictures under the same folder name count as
    another request."""
    if args.precision != 'int8' or not args.calib:  # export() says what is missing
        return None
    from .calibration_set import GATE_IMAGES, calibration_records
    digest = hashlib.sha256()
    folder = Path(args.calib)
    for record in calibration_records(folder, args.calib_images + GATE_IMAGES):
        digest.update(str(Path(record.path).relative_to(folder)).encode() + b'\0')
        try:
            digest.update(Path(record.path).read_bytes())
        except OSError:  # unreadable: calibration reports it; the request still differs
            digest.update(b'unreadable')
    return dict(calib=str(Path(args.calib).resolve()), calib_images=args.calib_images,
                calib_method=args.calib_method, int8_flavour=args.int8_flavour,
                images_sha256=digest.hexdigest())


def graph_options(args):
    """The export options that change the graph besides precision, as compared by --if-stale."""
    return dict(opset=args.opset, simplify=bool(args.simplify))


def export(args, log=print):
    from .checkpoint import load_model
    from .config import load_spec
    from .report import environment
    spec = load_spec(args.cfg)
    output = Path(args.output)
    if output.suffix != '.onnx':
        raise UserError(f'--output {output} must end in .onnx')
    check_output_folder(output)  # now, not after the model is traced
    if args.precision == 'int8' and (not args.calib or args.end2end or args.static):
        raise UserError('--precision int8 needs --calib DIR (a COCO-layout folder or a folder of '
                        'images to calibrate on) and the dynamic heads graph (no --end2end, no '
                        '--static: calibration runs every image on its own canvas shape)')
    start = time.perf_counter()
    model, classes = load_model(spec, args.weight)
    from coco_labels import COCO_CLASSES
    classes = classes or COCO_CLASSES
    report = dict(format=REPORT_FORMAT, format_version=ox.FORMAT_VERSION,
                  weight=str(args.weight), weight_sha256=sha256_of(args.weight),
                  config=str(args.cfg), config_sha256=sha256_of(args.cfg),
                  end2end=bool(args.end2end), static=list(args.static) if args.static else None,
                  graph_options=graph_options(args),
                  calibration_request=calibration_request(args), environment=environment(),
                  outputs={})
    reference = _CachedReference(model)

    def judge(precision):
        def run(path):
            if not args.check:
                return None
            inputs = None
            if precision == 'int8':
                from .int8_quantize import gate_inputs
                inputs, which = gate_inputs(args.calib, spec, args.calib_images,
                                            method=args.calib_method)
                log(f'int8: the precision gate judges {which}')
            verdict = gate_graph(reference, path, precision, spec, args.static, args.end2end,
                                 inputs)
            log(verdict.table())
            log(f'{precision}: precision gate {"passed" if verdict.ok else "REFUSED"} in '
                f'{verdict.seconds:.1f} s')
            return verdict
        return run

    def export_fp32(path, accept=None):  # its derived graphs inherit the gate marker
        ox.export_fp32(model, path, opset=args.opset, static_shape=args.static,
                       simplify=args.simplify, classes=classes, end2end=args.end2end, log=log,
                       accept=accept, gated=args.check)

    def record(precision, written):
        path, digest, size, verdict = written
        status = 'skipped' if verdict is None else 'passed' if verdict.ok else 'failed'
        report['outputs'][precision] = dict(
            status=status, path=str(path), sha256=digest, bytes=size,
            gate_seconds=None if verdict is None else round(verdict.seconds, 2),
            gate=None if verdict is None else verdict.to_dict())
        if status == 'failed':
            refused.append((precision, path, verdict.failures))
        else:
            log(f'wrote {path} ({precision}, {size / 2**20:.1f} MiB' +
                (', WITHOUT the precision gate, as asked)' if status == 'skipped' else ')'))

    refused = []
    plan = dict(planned_outputs(output, args.precision))
    with tempfile.TemporaryDirectory() as folder:
        fp32_source = Path(folder) / 'fp32.onnx'
        if 'fp32' in plan:
            record('fp32', write_gated(plan['fp32'], export_fp32, judge('fp32')))
            fp32_source = plan['fp32']
        else:  # --precision fp16/int8: the FP32 graph is only the converter's input
            export_fp32(fp32_source)
        if 'fp16' in plan and refused:
            # what an earlier export left there would contradict this report
            plan['fp16'].unlink(missing_ok=True)
            rejected_path(plan['fp16']).unlink(missing_ok=True)
            report['outputs']['fp16'] = dict(status='not made', path=None,
                                             reason='the FP32 graph was refused')
        elif 'fp16' in plan:
            record('fp16', write_gated(plan['fp16'],
                                       lambda path, accept: ox.convert_fp16(
                                           fp32_source, path, log=log, accept=accept),
                                       judge('fp16')))
        if 'int8' in plan:
            from .int8_quantize import quantize_int8
            calibration = {}
            record('int8', write_gated(plan['int8'],
                                       lambda path, accept: calibration.update(quantize_int8(
                                           fp32_source, path, args.calib, args.calib_images,
                                           args.calib_method, args.int8_flavour, accept=accept,
                                           log=log)),
                                       judge('int8')))
            report['outputs']['int8']['calibration'] = calibration or None
    report['export_seconds'] = round(time.perf_counter() - start, 2)
    write_json(report_path(output), report, indent=1)
    if refused:
        precision, kept, failures = refused[0]
        more = f'; {len(failures) - 1} more in the table' if len(failures) > 1 else ''
        raise UserError(f'the {precision} ONNX was refused by the precision gate ({failures[0]}'
                        f'{more}); it is kept as {kept} for inspection and nothing is left at its '
                        f'path; {refusal_advice(precision)}')
    return 0


# What to do about a refused graph: (export.py run by hand, export.py run by a script, whose
# variables scripts/_common.sh and _int8.sh read).
_REFUSAL_ADVICE = {
    'fp32': ('an FP32 graph should match PyTorch: report it with the table above, or pass '
             '--skip-check to write it unchecked',
             'an FP32 graph should match PyTorch: report it with the table above'),
    'fp16': ('use --precision fp32 for an FP32 model, or pass --skip-check to write it unchecked',
             'BACKEND=onnxruntime runs the FP32 graph (on the CPU) instead, or report it with the '
             'table above'),
    'int8': ('calibrate on more or other images (--calib, --calib_images) or with another '
             '--calib_method, or use --precision fp16/fp32, or pass --skip-check to write it '
             'unchecked',
             'calibrate on more or other images (CALIB_DIR=, CALIB_IMAGES=) or with another '
             'CALIB_METHOD= (minmax, entropy, percentile), run FP16 with {fp16_script}, or set '
             'INT8_UNCHECKED=1 to write and use it unchecked (kept for later runs with that '
             'setting, with a warning each time)'),
}


def refusal_advice(precision):
    """What to do about a refused graph, in the terms of the command the user ran."""
    script = running_script() or ''
    counterpart = script.replace('int8', 'fp16')
    fp16_script = (f'scripts/{counterpart}' if counterpart.startswith('infer_centernet_fp16')
                   else 'scripts/infer_centernet_fp16_accuracy.sh (or _performance.sh)')
    return option_name(*_REFUSAL_ADVICE[precision]).format(fp16_script=fp16_script)


def _written_unchecked(output):
    report = json.loads(report_path(output).read_text())
    return any(entry.get('status') == 'skipped' for entry in report['outputs'].values())


def run_cli(args, log=print):
    """export.py: export, or with --if-stale reuse what a passed export of this checkpoint and
    config already wrote."""
    if args.if_stale:
        problem = reuse_problem(args.output, args.precision, args.weight, args.cfg, args.end2end,
                                args.static, calibration_request(args), graph_options(args),
                                args.check)
        if problem is None:
            gate = 'passed the precision gate'
            if not args.check and _written_unchecked(args.output):
                gate = ('written WITHOUT the precision gate, as '
                        f'{option_name("--skip-check", "INT8_UNCHECKED=1")} asks')
            log(f'{args.output}: reusing the {args.precision} export ({gate}, made from this '
                f'checkpoint and config)')
            return 0
        log(f'{args.output}: exporting again ({problem})')
    return export(args, log)
