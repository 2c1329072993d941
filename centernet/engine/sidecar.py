"""`<engine>.json`, the sidecar: what an engine was built from and for, and whether it is stale.

build_engine.py writes it beside every engine: the runtime (`tensorrt` or `tensorrt-rtx`) and its
version, the GPU and compute capability it was built on (none for a TensorRT for RTX build without
a GPU), the compute capabilities it runs on (`targets`), precision, the optimisation profile as
TensorRT holds it, the network's I/O as the parser read it, the ONNX sha256, the model spec and
classes, and the self-check's result (`self_check.status`: passed, failed, pending, unchecked or
skipped). `engine_is_current` compares it with the installed runtime, the GPU and the request, so
that the shell scripts rebuild only when something changed; the TensorRT backend reads the spec
from it, so it needs no ONNX at run time.
"""

import dataclasses
import json
import shlex
from pathlib import Path

from ..checkpoint import sha256_of
from ..errors import UserError
from ..fileio import atomic_path, write_json
from ..onnx_export import fp32_sibling
from .api import Targets, import_tensorrt, rtx_does_not_target
from .parts import make_logger
from .profile import Profile, profile_from_dict, resolve_profile

SIDECAR_FORMAT = 'centernet-tensorrt-sidecar/1'
# Self-check states an engine may be used in without a rebuild: passed, or pending (it runs at
# the engine's first load on a GPU, before anything else).
USABLE_CHECKS = ('passed', 'pending')


def sidecar_path(engine_path):
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + '.json')


def runtime_cache_path(engine_path):
    """TensorRT for RTX's compiled kernels for this engine, kept across runs."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + '.runtime_cache')


def sibling_engine(engine_path, tag):
    """m.engine -> m.<tag>.engine: where an engine waits for its self-check, or is kept when it
    fails it."""
    engine_path = Path(engine_path)
    return engine_path.with_name(f'{engine_path.stem}.{tag}{engine_path.suffix}')


def rebuild_command(record, engine_path, targets=None, runtime=None):
    """The build_engine.py command that builds `engine_path` again as its sidecar describes: the
    ONNX at the absolute path the build recorded, the precision, the profile flags that differ
    from build_engine.py's defaults, the runtime and its targets. `targets` replaces TensorRT for
    RTX's recorded targets ('current': this GPU only); `runtime='tensorrt'` builds with TensorRT
    10/11 instead."""
    words = ['python3', 'build_engine.py', '--model', record.get('onnx', 'MODEL.onnx'),
             '--engine', str(engine_path), '--precision', record.get('precision', 'fp16')]
    words += profile_flags(record.get('profile'))
    words += _reference_flag(record)
    runtime = runtime or record.get('runtime')
    if runtime == 'tensorrt-rtx':
        if targets is None:
            requested = record.get('targets_requested', 'portable')
            targets = ','.join(record.get('targets') or []) if requested == 'list' else requested
        words += ['--runtime', 'tensorrt-rtx', '--compute_capability', targets]
    elif runtime != record.get('runtime'):
        words += ['--runtime', runtime]
    return ' '.join(shlex.quote(str(word)) for word in words + ['--force'])


def _reference_flag(record):
    """--reference_onnx when the build checked against an FP32 ONNX that build_engine.py would
    not find by itself (check.find_reference_onnx: the ONNX given when FP32, else its FP32
    sibling, centernet_fp16.onnx -> centernet.onnx); without it the rebuild is left unchecked."""
    reference = (record.get('self_check') or {}).get('reference_onnx')
    onnx = record.get('onnx')
    if not reference or not onnx or record.get('precision') == 'int8':
        return []
    defaults = (Path(onnx), fp32_sibling(onnx))
    return [] if Path(reference) in defaults else ['--reference_onnx', reference]


def profile_flags(fields):
    """build_engine.py's profile flags for a sidecar's `profile`, those that differ from the
    defaults; none for a static ONNX's fixed shape (the ONNX sets it)."""
    try:
        profile = profile_from_dict(fields)
    except (KeyError, TypeError, ValueError):
        return []
    if not isinstance(profile, Profile):
        return []
    flags = []
    for field in dataclasses.fields(Profile):
        value = getattr(profile, field.name)
        if value != field.default:
            flags += [f'--{field.name}', str(value)]
    return flags


def rebuild_for_this_gpu(record, engine_path, api, gpu):
    """Advice for a TensorRT for RTX engine whose targets leave `gpu` out, whose command, run on
    `gpu`, builds an engine that runs there: for this GPU only (`--compute_capability current`)
    where TensorRT for RTX knows its compute capability, else with TensorRT 10/11."""
    known = api.known_targets()
    if gpu.compute_capability in known:
        return (f'rebuild it with {rebuild_command(record, engine_path, targets="current")}, '
                'on this GPU')
    return rtx_does_not_target(gpu, known, rebuild_command(record, engine_path, runtime='tensorrt'))


def read_sidecar(engine_path):
    """The sidecar record of `engine_path`; UserError when it is missing or not ours."""
    path = sidecar_path(engine_path)
    rebuild = (f'rebuild the engine with python3 build_engine.py --model MODEL.onnx --engine '
               f'{engine_path} --force')
    if not path.is_file():
        raise UserError(f'{path} not found: the TensorRT backend needs the sidecar JSON that '
                        f'build_engine.py writes next to the engine; {rebuild}')
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f'{path} is not readable JSON ({type(exc).__name__}): {rebuild}') from None
    found = record.get('format') if isinstance(record, dict) else None
    if found != SIDECAR_FORMAT:
        raise UserError(f'{path} is not a sidecar from this kit (format {found!r}): {rebuild}')
    record.setdefault('runtime', 'tensorrt')  # the first sidecars knew one runtime
    record.setdefault('runtime_version', record.get('tensorrt'))
    return record


def write_engine(serialized, path, record):
    """The engine and its sidecar at `path`, each atomically; the sidecar goes last, so an old
    sidecar never describes a new engine."""
    sidecar_path(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(memoryview(serialized))  # atomic_path fsyncs it before the rename
    record['engine'], record['engine_sha256'] = Path(path).name, sha256_of(path)
    write_json(sidecar_path(path), record, indent=1)


def remove_engine(path):
    """The engine, its sidecar and its runtime cache, wherever they exist."""
    for leftover in (path, sidecar_path(path), runtime_cache_path(path)):
        leftover.unlink(missing_ok=True)


def record_self_check(engine_path, result):
    """Replace the sidecar's `self_check` with `result`, atomically (a check run at load). A
    sidecar that is a symbolic link (serve.py's temporary model repository links the engine's
    files) is written where it points, not replaced by a file beside the link."""
    record = read_sidecar(engine_path)
    record['self_check'] = result
    write_json(sidecar_path(engine_path).resolve(), record, indent=1)
    return record


def _short(digest):
    return digest[:12] if isinstance(digest, str) else digest


def built_targets(record):
    """The sidecar's targets as Targets (what build_engine.py would resolve them to now)."""
    return Targets(record.get('targets_requested', 'this GPU'), tuple(record.get('targets') or ()))


def runs_here(targets, gpu):
    """Whether a build for `targets` is meant to run on the visible `gpu`. Not so for TensorRT
    for RTX targets the user listed without it (an engine for other machines): then this GPU
    says nothing about the engine, and a rebuild would build the same one again."""
    return gpu is not None and gpu.compute_capability in targets.capabilities


def staleness_reasons(record, api, gpu, precision, profile, targets, onnx_sha256, engine_sha256,
                      require_check=True):
    """What differs between the sidecar and what a build now would produce; [] when nothing.
    With `require_check`, an engine whose self-check neither passed nor is pending is stale."""
    try:
        built_profile = profile_from_dict(record['profile']).describe()
    except (KeyError, TypeError, ValueError):
        built_profile = None
    checks = [('runtime', record.get('runtime'), api.runtime),
              (f'{api.title} version', record.get('runtime_version'), api.version)]
    if api.builds_without_gpu:
        checks.append(('targets', built_targets(record).describe(), targets.describe()))
    else:
        checks += [('GPU', record.get('gpu'), gpu.name),
                   ('compute capability', record.get('compute_capability'),
                    gpu.compute_capability)]
    checks += [
        ('precision', record.get('precision'), precision),
        ('profile', built_profile, profile.describe()),
        ('ONNX sha256', _short(record.get('onnx_sha256')), _short(onnx_sha256)),
        ('engine sha256 (the engine file changed after the build)',
         _short(record.get('engine_sha256')), _short(engine_sha256)),
    ]
    reasons = [f'{label}: built with {built}, now {now}' for label, built, now in checks
               if built != now]
    if not reasons and api.builds_without_gpu and runs_here(targets, gpu):
        reasons += api.compatibility(record, gpu)[0]
    status = (record.get('self_check') or {}).get('status')
    if require_check and not record.get('end2end') and status not in USABLE_CHECKS:
        reasons.append(f'self-check: {status or "none recorded"}, not passed (--skip-check '
                       'accepts an engine without one)')
    return reasons


def validity_reasons(api, engine_path):
    """Why the runtime says the engine cannot run on this GPU ([] when it can, or when the
    runtime has no such query): TensorRT for RTX's get_engine_validity."""
    runtime = api.trt.Runtime(make_logger(api.trt))
    answer = api.engine_validity(runtime, Path(engine_path).read_bytes())
    if answer is None or answer[0] != 'INVALID':
        return []
    return [f'{api.title} says it cannot run here ({", ".join(answer[1]) or "no reason given"})']


def engine_is_current(engine_path, onnx_path, precision, profile, require_check=True,
                      runtime='auto', compute_capability=None):
    """(True, why) when `engine_path` was built by the installed runtime, for this GPU (TensorRT)
    or for the requested targets (TensorRT for RTX), with this precision and profile, from this
    ONNX; else (False, the reasons). UserError when the runtime (or, for TensorRT, a GPU) is
    missing or the ONNX does not exist (no build could happen)."""
    engine_path = Path(engine_path)
    api = import_tensorrt(runtime)
    gpu = api.gpu_for_build()
    targets = api.targets(compute_capability, gpu)
    if not Path(onnx_path).is_file():
        raise UserError(f'{onnx_path} not found: make it with export.py (see README)')
    profile = resolve_profile(onnx_path, profile, log=lambda *args: None)
    if not engine_path.is_file():
        return False, f'{engine_path} does not exist'
    try:
        record = read_sidecar(engine_path)
    except UserError:
        return False, f'its sidecar {sidecar_path(engine_path)} is missing or not ours'
    reasons = staleness_reasons(record, api, gpu, precision, profile, targets,
                                sha256_of(onnx_path), sha256_of(engine_path), require_check)
    if not reasons and api.builds_without_gpu and runs_here(targets, gpu):
        reasons = validity_reasons(api, engine_path)
    if reasons:
        return False, '; '.join(reasons)
    where = (f'for {record["gpu"]} (sm {record["compute_capability"]})' if not
             api.builds_without_gpu else f'for {built_targets(record).describe()}')
    check = (record.get('self_check') or {}).get('status', 'none')
    return True, (f'built by {api.describe()} {where}, {precision}, {profile.describe()}, from '
                  f'{Path(onnx_path).name} sha256 {_short(record["onnx_sha256"])}, self-check '
                  f'{check}')
