"""The engine self-check: a new TensorRT engine against ONNX Runtime CPU on its reference ONNX.

TensorRT cannot run where this kit is developed, so an engine is first run on the user's GPU,
right after its build. build_engine runs it there on image-like check scenes at the shapes that
matter (the profile's smallest canvas at its smallest batch, a non-square one, its largest canvas
at its largest batch), runs the FP32 ONNX on ONNX Runtime CPU on the same canvases, and judges the
pair with the shared precision gate (centernet.precision_gate: detections as sets, and robust
statistics of the heads), as `polygraphy run --trt --onnxrt` would. Only an engine that passes
goes to its final path.

The CPU reference costs one FP32 forward pass per distinct scene, so each shape has at most
REFERENCE_BATCH distinct scenes; at the largest canvas the engine runs them repeated up to the
profile's largest batch, and the gate judges the copies in the last slots of that batch.
"""

import time
from pathlib import Path

import numpy as np

from . import onnx_export as ox
from .checkpoint import sha256_of
from .engine_profile import FixedShape
from .errors import UserError
from .precision_gate import json_safe

REFERENCE_BATCH = 4  # distinct scenes per check shape: the CPU reference's cost
CHECK_FORMAT = 'centernet-engine-self-check/1'


def load_gate():
    """The shared precision gate (a module with run_gate); a function so tests can stand in."""
    from . import precision_gate
    return precision_gate


def open_engine(engine_path):
    """The engine on the current GPU, as inference.py opens it (tests put a CPU stand-in here)."""
    from .backends.tensorrt_backend import TrtBackend
    return TrtBackend(engine_path, warn_unchecked=False)


def check_shapes(profile):
    """[(batch, height, width) the gate checks, batch the engine runs it at], extremes first."""
    if isinstance(profile, FixedShape):
        return [((profile.batch, profile.height, profile.width), profile.batch)]

    def batch(wanted):
        return max(profile.min_batch, min(profile.max_batch, wanted))

    shapes = [((profile.min_batch, profile.min_side, profile.min_side), profile.min_batch)]
    if profile.min_side < profile.max_side:  # H != W: a transposed layout would show
        shapes.append(((batch(2), profile.max_side, profile.min_side), batch(2)))
    largest = (batch(REFERENCE_BATCH), profile.max_side, profile.max_side)
    shapes.append((largest, profile.max_batch))
    unique = {}
    for shape, run_batch in shapes:
        unique.setdefault(shape, run_batch)
    return list(unique.items())


def find_reference_onnx(given_onnx, given_precision, reference_onnx=None):
    """The ONNX to check the engine against, or None when there is none to be found.

    An FP32 or FP16 engine is checked against the FP32 ONNX: `reference_onnx` when given (it must
    be an FP32 export of this kit); else the ONNX given to build_engine when it is the FP32 one;
    else the FP32 ONNX whose FP16 form it is, by onnx_export.fp16_sibling's naming
    (centernet_fp16.onnx -> centernet.onnx). An INT8 engine is checked against its own Q/DQ ONNX,
    which export.py's gate accepted on the calibration folder's images: the same scales on both
    runtimes, so the check judges TensorRT's arithmetic, not the calibration (against FP32 on
    generated scenes, which a calibration never saw, sound INT8 graphs and broken ones overlap;
    docs/int8.md)."""
    given_onnx = Path(given_onnx)
    if given_precision == 'int8':
        if reference_onnx is not None:
            raise UserError('--reference_onnx: an INT8 engine is checked against the Q/DQ ONNX it '
                            'is built from; drop --reference_onnx')
        return given_onnx
    if reference_onnx is not None:
        path = Path(reference_onnx)
        if not path.is_file():
            raise UserError(f'--reference_onnx {path} not found: pass the FP32 ONNX from '
                            'export.py, or --skip-check')
        precision = ox.read_metadata(path)[2].get('centernet.precision', 'fp32')
        if precision != 'fp32':
            raise UserError(f'--reference_onnx {path} is the {precision} ONNX; the self-check '
                            'needs the FP32 one (export.py --precision fp32)')
        return path
    if given_precision == 'fp32':
        return given_onnx
    suffix = '_fp16'
    if given_onnx.stem.endswith(suffix):
        sibling = given_onnx.with_name(given_onnx.stem[:-len(suffix)] + given_onnx.suffix)
        if sibling.is_file() and ox.fp16_sibling(sibling) == given_onnx:
            return sibling
    return None


def _host(tensor):
    return tensor.float().cpu().numpy()


def run_self_check(engine_path, reference_onnx, profile, precision, spec, log=print):
    """Run the engine at `engine_path` (its sidecar beside it) against ONNX Runtime CPU on
    `reference_onnx`; print the gate's table; return the sidecar's `self_check` record, whose
    `status` is 'passed' or 'failed'."""
    from .backends.onnxruntime_backend import OrtBackend
    import torch
    gate = load_gate()
    plan = check_shapes(profile)
    run_batches = dict(plan)
    shapes = [shape for shape, _ in plan]
    log('self-check: the engine against ONNX Runtime CPU on ' + str(reference_onnx) + ' at ' +
        ', '.join(f'{b}x{h}x{w}' + (f' (run at batch {run_batches[(b, h, w)]})'
                                     if run_batches[(b, h, w)] != b else '')
                  for b, h, w in shapes))
    start = time.perf_counter()
    reference = OrtBackend(reference_onnx)
    record = dict(format=CHECK_FORMAT, reference_onnx=str(reference_onnx),
                  reference_onnx_sha256=sha256_of(reference_onnx),
                  shapes=[list(s) for s in shapes],
                  engine_batches=[run_batches[s] for s in shapes])

    def reference_fn(canvases):
        return [_host(t) for t in reference.infer(torch.from_numpy(canvases))]

    def candidate_fn(canvases):
        batch, height, width = canvases.shape[:3]
        run_batch = run_batches.get((batch, height, width), batch)
        if run_batch != batch:  # the same scenes, repeated up to the batch the engine runs
            canvases = np.concatenate([canvases] * -(-run_batch // batch))[-run_batch:]
        try:
            outputs = engine.infer(torch.from_numpy(np.ascontiguousarray(canvases)))
        except UserError as exc:
            raise _EngineFailed(f'{batch}x{height}x{width} (batch {run_batch}): {exc}') from None
        return [_host(t[-batch:]) for t in outputs]  # the last slots of the batch

    try:
        try:
            engine = open_engine(engine_path)
        except UserError as exc:
            raise _EngineFailed(f'the engine does not open: {exc}') from None
        report = gate.run_gate(reference_fn, candidate_fn, spec, precision, shapes)
    except _EngineFailed as exc:  # an engine that does not even run fails the check
        log(f'self-check: {exc}')
        return dict(record, status='failed', failures=[str(exc)],
                    seconds=round(time.perf_counter() - start, 1))
    log(report.table())
    return dict(record, status='passed' if report.ok else 'failed',
                failures=list(report.failures), seconds=round(time.perf_counter() - start, 1),
                gate=json_safe(report.to_dict()))


class _EngineFailed(Exception):
    """The engine (not the reference) could not be opened or run: the check has failed."""
