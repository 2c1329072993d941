"""The engine self-check: a TensorRT engine against ONNX Runtime CPU on its reference ONNX.

An engine is first run on the user's GPU, so that run has to say whether it is right. The check
runs the engine on image-like check scenes at the shapes that matter (the profile's smallest
canvas at its smallest batch, a non-square one, its largest canvas at its largest batch), runs the
reference ONNX on ONNX Runtime CPU on the same canvases, and judges the pair with the shared
precision gate (centernet.precision_gate: detections as sets, and robust statistics of the heads),
as `polygraphy run --trt --onnxrt` would.

When: build_engine runs it right after the build, on the GPU it built on, and only an engine that
passes goes to its final path. A TensorRT for RTX engine built without a GPU cannot run yet: its
sidecar says `pending`, and `open_checked_engine` (what centernet.backends.open_backend calls)
runs the check at the engine's first load on a GPU, before it serves anything, records the result
in the sidecar, and refuses an engine that fails, as build_engine.py does. Its reference ONNX is
taken from the path the build recorded or, under the same name and sha256, from beside the engine:
an engine built on one machine moves to another with its sidecar and that ONNX.

The CPU reference costs one FP32 forward pass per distinct scene, so each shape has at most
REFERENCE_BATCH distinct scenes; at the largest canvas the engine runs them repeated up to the
profile's largest batch, and the gate judges the copies in the last slots of that batch.
"""

import sys
import time
from pathlib import Path

import numpy as np

from .. import onnx_export as ox
from ..backends.tensorrt_backend import TrtBackend
from ..checkpoint import sha256_of
from ..errors import UserError
from ..precision_gate import json_safe
from .profile import FixedShape, profile_from_dict
from .sidecar import rebuild_command, record_self_check, sidecar_path

REFERENCE_BATCH = 4  # distinct scenes per check shape: the CPU reference's cost
CHECK_FORMAT = 'centernet-engine-self-check/1'


def load_gate():
    """The shared precision gate (a module with run_gate); a function so tests can stand in."""
    from .. import precision_gate
    return precision_gate


def open_engine(engine_path, rebuild_path=None):
    """The engine on the current GPU, as inference.py opens it (tests put a CPU stand-in here);
    `rebuild_path`: the engine path its rebuild advice names."""
    return TrtBackend(engine_path, warn_unchecked=False, rebuild_path=rebuild_path)


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
    sibling = ox.fp32_sibling(given_onnx)
    return sibling if sibling is not None and sibling.is_file() else None


def _host(tensor):
    return tensor.float().cpu().numpy()


def run_self_check(engine_path, reference_onnx, profile, precision, spec, log=print,
                   rebuild_path=None):
    """Open the engine at `engine_path` (its sidecar beside it) and check it (check_engine); an
    engine that does not open fails the check. Returns the sidecar's `self_check` record."""
    try:
        engine = open_engine(engine_path, rebuild_path=rebuild_path)
    except UserError as exc:
        return _failed_record(reference_onnx, profile, f'the engine does not open: {exc}', log)
    try:
        return check_engine(engine, reference_onnx, profile, precision, spec, log)
    finally:
        engine.close()  # TensorRT for RTX: the check's kernels into the runtime cache


def check_engine(engine, reference_onnx, profile, precision, spec, log=print):
    """Run the open `engine` against ONNX Runtime CPU on `reference_onnx`; print the gate's table;
    return the sidecar's `self_check` record, whose `status` is 'passed' or 'failed'."""
    from ..backends.onnxruntime_backend import OrtBackend
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
    record = _record(reference_onnx, profile)

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
        report = gate.run_gate(reference_fn, candidate_fn, spec, precision, shapes)
    except _EngineFailed as exc:  # an engine that does not even run fails the check
        log(f'self-check: {exc}')
        return dict(record, status='failed', failures=[str(exc)],
                    seconds=round(time.perf_counter() - start, 1))
    log(report.table())
    return dict(record, status='passed' if report.ok else 'failed',
                failures=list(report.failures), seconds=round(time.perf_counter() - start, 1),
                gate=json_safe(report.to_dict()))


def pending_record(reference_onnx, profile, reason):
    """The `self_check` of an engine that cannot run where it was built: what the check at its
    first load on a GPU will compare it with."""
    return dict(_record(Path(reference_onnx).resolve(), profile), status='pending', reason=reason)


def _record(reference_onnx, profile):
    shapes = check_shapes(profile)
    # resolved, as the sidecar's onnx: its rebuild command and a moved engine's check find it
    return dict(format=CHECK_FORMAT, reference_onnx=str(Path(reference_onnx).resolve()),
                reference_onnx_sha256=sha256_of(reference_onnx),
                shapes=[list(shape) for shape, _ in shapes],
                engine_batches=[batch for _, batch in shapes])


def _failed_record(reference_onnx, profile, failure, log):
    log(f'self-check: {failure}')
    return dict(_record(reference_onnx, profile), status='failed', failures=[failure], seconds=0.0)


# --- the check at an engine's first load -----------------------------------------------------

def reference_beside(engine_path, check):
    """The pending check's reference ONNX: at the path the build recorded, or under its name
    beside the engine (an engine built on one machine and copied to another, with its sidecar
    and that ONNX), whichever has the recorded sha256; None when neither does."""
    recorded = Path(check.get('reference_onnx', ''))
    expected = check.get('reference_onnx_sha256')
    for candidate in dict.fromkeys((recorded, Path(engine_path).parent / recorded.name)):
        if candidate.is_file() and sha256_of(candidate) == expected:
            return candidate
    return None


def failed_check_error(engine_path, record, command='inference.py'):
    """The UserError for an engine whose sidecar records a failed self-check, else None.
    `command` is the CLI that opened it: its --engine takes the ONNX the advice names."""
    check = record.get('self_check') or {}
    if check.get('status') != 'failed':
        return None
    reference = reference_beside(engine_path, check)
    onnx = str(reference) if reference else 'the FP32 ONNX from export.py'
    failures = check.get('failures') or ['no failure recorded']
    return UserError(f'{engine_path} failed its self-check ({failures[0]}; {len(failures)} '
                     f'failure(s), recorded in its sidecar), so it is not used: rebuild it '
                     f'with {rebuild_command(record, engine_path)}, or run on ONNX '
                     f'Runtime meanwhile ({command} --engine {onnx})')


def open_checked_engine(engine_path, log=print, **options):
    """TrtBackend for `engine_path`, self-checked first when its sidecar says the check is
    pending (built without a GPU, or on one it does not target): the result goes into the
    sidecar, and an engine that fails, now or before, is refused (UserError) as build_engine.py
    refuses one."""
    backend = TrtBackend(engine_path, warn_unchecked=False, log=log, **options)
    if (backend.record.get('self_check') or {}).get('status') == 'pending':
        _check_at_first_load(backend, backend.record['self_check'], log)
    failed = failed_check_error(engine_path, backend.record)
    if failed is not None:
        raise failed
    backend.warn_unless_checked()
    return backend


def _check_at_first_load(backend, pending, log):
    path = backend.engine_path
    reference = reference_beside(path, pending)
    if reference is None:
        recorded = Path(pending.get('reference_onnx', ''))
        places = list(dict.fromkeys((recorded, path.parent / recorded.name)))
        found = [place for place in places if place.is_file()]
        what = (f'has changed since the build ({", ".join(map(str, found))}: another sha256)'
                if found else f'is not at {" nor at ".join(map(str, places))}')
        digest = str(pending.get('reference_onnx_sha256'))[:12]
        raise UserError(f'{path} could not run where it was built and its self-check is '
                        f'pending, but its reference ONNX {recorded.name} {what}: copy '
                        f'{recorded.name} (the ONNX it was built with, sha256 {digest}...) beside '
                        f'the engine, into {path.parent}, or rebuild the engine with '
                        f'{rebuild_command(backend.record, path)}')
    gpu = backend.gpu_info
    log(f'self-check: {path} could not run where it was built; checking it now, at its first '
        f'load on {gpu.name} (sm {gpu.compute_capability}), before it is used')
    profile = profile_from_dict(backend.record['profile'])
    result = check_engine(backend, reference, profile, backend.record['precision'], backend.spec,
                          log)
    result['at_first_load'] = dict(gpu=gpu.name, compute_capability=gpu.compute_capability)
    try:
        backend.record = record_self_check(path, result)
    except UserError as exc:  # a read-only engine folder: the result holds for this run
        backend.record = dict(backend.record, self_check=result)
        print(f'warning: the self-check result ({result["status"]}) was not recorded in '
              f'{sidecar_path(path)} ({exc}): this run goes on with it, and the next load '
              'checks the engine again', file=sys.stderr)
        return result
    log(f'self-check: {result["status"]}; recorded in {sidecar_path(path)}')
    return result


class _EngineFailed(Exception):
    """The engine (not the reference) could not be opened or run: the check has failed."""
