"""build_engine.py's work: a CenterNet ONNX -> a strongly typed TensorRT engine + its sidecar JSON.

One build path for TensorRT 10.x and 11.x: a strongly typed network parsed from an ONNX whose
precision is in the graph itself (the FP32 export, or the mixed-precision FP16 ONNX that
onnx_export.convert_fp16 writes). TensorRT 11 removed the weak-typing builder flags
(BuilderFlag.FP16 and friends) and builds every network strongly typed; TensorRT 10 opts in with
the STRONGLY_TYPED creation flag. BuilderFlag.FP16 is never used, so both versions build the same
graph with the same precisions.

Before an engine reaches its final path it is self-checked against ONNX Runtime CPU on the FP32
ONNX (engine_check); one that fails is kept beside as <name>.rejected<suffix>. The sidecar
`<engine>.json` records what the engine was built from and for: TensorRT version, GPU, compute
capability, precision, optimisation profile (engine_profile), ONNX sha256, the model spec and
classes, and the self-check's result. `engine_is_current` compares it with the installed
TensorRT, the GPU and the request (and wants a passed check), so that the shell scripts rebuild
only when something changed; the TensorRT backend reads the spec from it, so it needs no ONNX at
run time. The TensorRT-side helpers (logger, progress bars, timing cache) are in engine_parts.
"""

import dataclasses
import datetime
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import engine_check
from . import engine_parts as parts
from . import onnx_export as ox
from .checkpoint import sha256_of
from .errors import UserError
from .engine_profile import (SIDE_MULTIPLE, FixedShape, Profile, profile_from_dict,  # noqa: F401
                             resolve_profile)
from .fileio import atomic_path, write_json

PRECISIONS = ('fp16', 'fp32', 'int8')
PRECISION_KEY = 'centernet.precision'
SIDECAR_FORMAT = 'centernet-tensorrt-sidecar/1'
GIB = 2 ** 30

ALTERNATIVES = ('or run without TensorRT: the ONNX Runtime backend (inference.py --engine '
                'model.onnx) or the torch backend (inference.py --backend torch --weight '
                'CHECKPOINT.pth --cfg CONFIG.py)')


# --- TensorRT 10.x / 11.x: imports and the names that differ, all in this one place ------------

MIN_TENSORRT_MAJOR = 10  # the name-based I/O API (set_tensor_address, execute_async_v3)

# TensorRT DataType name -> torch dtype name, for the engine's I/O tensors.
TORCH_DTYPE_NAMES = {'FLOAT': 'float32', 'HALF': 'float16', 'BF16': 'bfloat16', 'INT8': 'int8',
                     'UINT8': 'uint8', 'INT32': 'int32', 'INT64': 'int64', 'BOOL': 'bool'}


def import_tensorrt():
    """The `tensorrt` module, 10.x or later; UserError naming the alternatives otherwise."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but libnvinfer is not
        raise UserError(f'TensorRT is not usable here ({type(exc).__name__}: '
                        f'{str(exc).splitlines()[0] if str(exc) else "import tensorrt failed"}): '
                        f'install TensorRT 10 or 11 (pip install tensorrt), '
                        f'{ALTERNATIVES}') from None
    if tensorrt_major(trt) < MIN_TENSORRT_MAJOR:
        raise UserError(f'TensorRT {trt.__version__} is too old: this kit needs TensorRT 10 or 11 '
                        f'(pip install -U tensorrt), {ALTERNATIVES}')
    return trt


def tensorrt_major(trt):
    try:
        return int(str(trt.__version__).split('.')[0])
    except ValueError:
        return 0


def strongly_typed_network_flags(trt):
    """The create_network() flags for a strongly typed network, on TensorRT 10.x and 11.x.

    10.x: STRONGLY_TYPED opts in (EXPLICIT_BATCH, bit 0, is deprecated and ignored: every network
    is explicit batch). 11.x: every network is strongly typed; EXPLICIT_BATCH is gone and
    STRONGLY_TYPED is kept, deprecated and ignored, at another bit. So the bit is read from the
    enum, never hard-coded; a later release without the flag gets 0, which there means the same.
    """
    flag = getattr(trt.NetworkDefinitionCreationFlag, 'STRONGLY_TYPED', None)
    if flag is None:
        if tensorrt_major(trt) < 11:
            raise UserError(f'TensorRT {trt.__version__} has no strongly typed networks: '
                            'install TensorRT 10 or 11')
        return 0
    return 1 << int(flag)


def torch_dtype_for(trt_dtype):
    """torch dtype for a TensorRT DataType, matched by name (enum values are no contract)."""
    import torch
    name = getattr(trt_dtype, 'name', str(trt_dtype).split('.')[-1])
    if name not in TORCH_DTYPE_NAMES:
        raise UserError(f'the engine uses TensorRT data type {name}, which this kit does not '
                        'handle: rebuild it from this kit\'s ONNX with build_engine.py')
    return getattr(torch, TORCH_DTYPE_NAMES[name])


# --- the GPU ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # 'major.minor': TensorRT engines are specific to it


def current_gpu():
    """The CUDA GPU torch uses now; UserError naming the alternatives when there is none."""
    import torch
    if not torch.cuda.is_available():
        raise UserError(f'no CUDA GPU is visible (torch.cuda.is_available() is False) and '
                        f'TensorRT needs one: check the driver and CUDA_VISIBLE_DEVICES, '
                        f'{ALTERNATIVES}')
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return GpuInfo(torch.cuda.get_device_name(index), f'{major}.{minor}')


# --- the ONNX to build from ---------------------------------------------------------------------

@dataclass(frozen=True)
class OnnxSource:
    """The ONNX the user named, and the one TensorRT parses (its FP16 form when converted)."""

    given: Path
    given_sha256: str
    given_precision: str
    parsed: Path
    precision: str
    spec: object
    classes: tuple
    metadata: dict


def prepare_onnx(onnx_path, precision, log=print):
    """Check the ONNX is ours and of the requested precision; make the FP16 form when asked for
    fp16 and given the FP32 export."""
    if precision not in PRECISIONS:
        raise UserError(f'precision {precision!r} is not supported; choose one of {PRECISIONS}')
    onnx_path = Path(onnx_path)
    spec, classes, meta = ox.read_metadata(onnx_path)
    onnx_precision = meta.get(PRECISION_KEY, 'fp32')
    if onnx_precision not in PRECISIONS:
        raise UserError(f'{onnx_path} says {PRECISION_KEY}={onnx_precision!r}; expected one of '
                        f'{PRECISIONS}: export it again with export.py')
    parsed = onnx_path
    if 'int8' in (precision, onnx_precision):  # Q/DQ in the graph; nothing to convert here
        from .int8_quantize import check_tensorrt_int8
        check_tensorrt_int8(onnx_path, precision, meta)
    elif precision != onnx_precision:
        if precision == 'fp32':
            raise UserError(f'{onnx_path} is the FP16 ONNX, and an fp32 engine needs the FP32 one: '
                            'pass the FP32 export (export.py --precision fp32) or --precision fp16')
        parsed = ox.fp16_sibling(onnx_path)
        log(f'{onnx_path} is the FP32 ONNX: writing its mixed-precision FP16 form to {parsed} '
            '(onnx_export.convert_fp16) and building from that')
        ox.convert_fp16(onnx_path, parsed, log=log)
        spec, classes, meta = ox.read_metadata(parsed)
    return OnnxSource(onnx_path, sha256_of(onnx_path), onnx_precision, parsed, precision, spec,
                      tuple(classes), dict(meta))


# --- the build ----------------------------------------------------------------------------------

def describe_parser_error(error):
    """One line per ONNX parser error: where (node name and operator when TensorRT says), what."""
    node_name = _optional_call(error, 'node_name')
    operator = _optional_call(error, 'node_operator')
    node_index = _optional_call(error, 'node')
    if node_name:
        where = f'node {node_name}' + (f' ({operator})' if operator else '')
    elif isinstance(node_index, int) and node_index >= 0:
        where = f'node #{node_index}'
    else:
        where = 'graph'
    code = error.code()
    description = ' '.join(str(error.desc()).split())  # one line, whatever TensorRT wrote
    return f'{where}: {getattr(code, "name", code)}: {description}'


def _optional_call(obj, name):
    method = getattr(obj, name, None)
    return method() if callable(method) else None


class EngineBuilder:
    """Parses one ONNX into a strongly typed TensorRT network and returns the serialized engine."""

    def __init__(self, trt, workspace_bytes, log=print):
        self.trt = trt
        self.workspace_bytes = int(workspace_bytes)
        self.log = log
        self.logger = parts.make_logger(trt)  # prints TensorRT's warnings, keeps its errors

    def build(self, onnx_path, profile, timing_cache):
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(strongly_typed_network_flags(trt))
        parser = trt.OnnxParser(network, self.logger)
        # parse_from_file, not parse(bytes): it also finds weights stored beside the ONNX.
        if not parser.parse_from_file(str(onnx_path)):
            self._raise_parse_errors(parser, onnx_path)

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        # TF32 is on by default (BuilderFlag::kTF32 in NvInfer.h: "Allow ... computations on
        # tensors of type DataType::kFLOAT to use TF32 ... Enabled by default"), and strong
        # typing does not turn it off: TensorRT 11 builds every network strongly typed and still
        # has the flag. TF32 rounds the inputs of convolutions to a 10-bit mantissa, so an fp32
        # engine could not match the FP32 ONNX at FP32 tolerance, and in the fp16 engine the
        # three 1x1 head convolutions that the FP16 ONNX keeps FP32 on purpose (their scores
        # and box sizes; onnx_export.fp32_islands) would lose what FP32 was kept for.
        config.clear_flag(trt.BuilderFlag.TF32)
        config.add_optimization_profile(self._profile(builder, profile, onnx_path))
        cache = timing_cache.attach(config)
        # A build takes minutes: show TensorRT's phases. `monitor` is held until this returns:
        # TensorRT needs it for the whole build.
        monitor = parts.make_build_progress(trt)
        config.progress_monitor = monitor

        self.logger.take_errors()  # what went before (a foreign timing cache) is not the build
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            errors = self.logger.take_errors()
            said = (f'{len(errors)} error(s) logged (above), the last: {errors[-1]}' if errors
                    else 'TensorRT logged no error')
            raise UserError(f'TensorRT could not build an engine from {onnx_path} '
                            f'({profile.describe()}): {said}')
        timing_cache.save(config, cache)
        return serialized

    def _profile(self, builder, profile, onnx_path):
        optimization_profile = builder.create_optimization_profile()
        shapes = profile.canvas_shapes()
        try:
            optimization_profile.set_shape(ox.INPUT_NAME, *shapes)
        except (RuntimeError, TypeError, ValueError) as exc:  # pybind11: RuntimeError
            errors = self.logger.take_errors()
            reason = errors[-1] if errors else ' '.join(str(exc).split()) or type(exc).__name__
            raise UserError(f'TensorRT refused the optimisation profile min/opt/max '
                            f'{" / ".join("x".join(map(str, s)) for s in shapes)} for '
                            f'{onnx_path}: {reason}. Check --min/opt/max_batch and _side '
                            '(1 <= batch, sides multiples of 32, min <= opt <= max)') from None
        return optimization_profile

    def _raise_parse_errors(self, parser, onnx_path):
        errors = [describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        for line in errors:
            print(f'TensorRT ONNX parser: {line}', file=sys.stderr)
        first = errors[0] if errors else 'no details (see the TensorRT log above)'
        raise UserError(f'TensorRT could not parse {onnx_path}: {len(errors)} error(s), the first: '
                        f'{first}. Export it again with export.py, or use a newer TensorRT')


def sidecar_path(engine_path):
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + '.json')


def sibling_engine(engine_path, tag):
    """m.engine -> m.<tag>.engine: where an engine waits for its self-check, or is kept when it
    fails it."""
    engine_path = Path(engine_path)
    return engine_path.with_name(f'{engine_path.stem}.{tag}{engine_path.suffix}')


def build_engine(onnx_path, engine_path, precision='fp16', profile=Profile(), workspace_gib=4.0,
                 timing_cache_path=None, check=True, reference_onnx=None, log=print):
    """Build `engine_path` (and its sidecar) from `onnx_path`, self-check it (engine_check)
    unless `check` is False; return the sidecar record. A failed self-check is a UserError, the
    engine kept beside as <name>.rejected<suffix>, and `engine_path` left as it was."""
    trt = import_tensorrt()
    gpu = current_gpu()
    profile.validate()
    if workspace_gib <= 0:
        raise UserError(f'--workspace {workspace_gib} must be a positive number of GiB')
    engine_path = Path(engine_path)
    if not engine_path.parent.is_dir():  # fail now, not after minutes of building
        raise UserError(f'output folder {engine_path.parent} does not exist: create it or choose '
                        'another --engine path')
    source = prepare_onnx(onnx_path, precision, log)
    profile = resolve_profile(source.parsed, profile, log)
    reference = (engine_check.find_reference_onnx(source.given, source.given_precision,
                                                  reference_onnx) if check else None)
    cache_path = Path(timing_cache_path) if timing_cache_path else default_timing_cache(engine_path)

    log(f'building {engine_path} from {source.parsed}: {precision}, strongly typed, '
        f'{profile.describe()}, workspace {workspace_gib:g} GiB, TensorRT {trt.__version__} on '
        f'{gpu.name} (sm {gpu.compute_capability}); this takes minutes')
    start = time.perf_counter()
    serialized = EngineBuilder(trt, workspace_gib * GIB, log).build(
        source.parsed, profile, parts.TimingCacheFile(cache_path, log))
    seconds = time.perf_counter() - start
    record = dict(
        format=SIDECAR_FORMAT,
        engine=engine_path.name,
        engine_sha256=None,  # set when written
        tensorrt=str(trt.__version__),
        gpu=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=precision,
        strongly_typed=True,
        tf32=False,
        profile=profile.to_dict(),
        canvas_shapes=dict(zip(('min', 'opt', 'max'), profile.canvas_shapes())),
        workspace_gib=workspace_gib,
        onnx=str(source.given),
        onnx_sha256=source.given_sha256,
        parsed_onnx=str(source.parsed),
        parsed_onnx_sha256=sha256_of(source.parsed),
        spec=dataclasses.asdict(source.spec),
        classes=list(source.classes),
        onnx_metadata=source.metadata,
        timing_cache=str(cache_path),
        build_seconds=round(seconds, 1),
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    )
    if not check:
        record['self_check'] = dict(status='skipped', reason='--skip-check')
    elif reference is None:
        record['self_check'] = dict(
            status='unchecked', reason=f'no FP32 ONNX next to {source.given} (the FP16 ONNX '
                                       'is named after it: centernet.onnx -> centernet_fp16.onnx)')
        log(f'warning: the engine is not self-checked: {record["self_check"]["reason"]}; pass '
            '--reference_onnx FP32.onnx to check it')
    else:
        record['self_check'] = _checked(serialized, engine_path, record, reference, profile,
                                        source.spec, log)
    _write_engine(serialized, engine_path, record)
    log(f'wrote {engine_path} ({engine_path.stat().st_size / 2**20:.1f} MiB) in {seconds:.0f} s, '
        f'and {sidecar_path(engine_path)} (self-check: {record["self_check"]["status"]})')
    return record


def _write_engine(serialized, path, record):
    """The engine and its sidecar at `path`, each atomically; the sidecar goes first."""
    sidecar_path(path).unlink(missing_ok=True)  # an old sidecar never describes a new engine
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(memoryview(serialized))  # atomic_path fsyncs it before the rename
    record['engine'], record['engine_sha256'] = Path(path).name, sha256_of(path)
    write_json(sidecar_path(path), record, indent=1)


def _remove_engine(path):
    for leftover in (path, sidecar_path(path)):
        leftover.unlink(missing_ok=True)


def _checked(serialized, engine_path, record, reference, profile, spec, log):
    """Self-check the engine at a staging name beside `engine_path`; its `self_check` record
    when it passes. When it fails: the engine moved to <name>.rejected<suffix>, a UserError."""
    staging = sibling_engine(engine_path, 'unchecked')
    _write_engine(serialized, staging, dict(record, self_check=dict(status='running')))
    try:
        result = engine_check.run_self_check(staging, reference, profile, record['precision'],
                                             spec, log)
    except BaseException:  # the check could not run (a bad reference, Ctrl-C): no engine left
        _remove_engine(staging)
        raise
    if result['status'] == 'passed':
        _remove_engine(staging)
        return result
    rejected = sibling_engine(engine_path, 'rejected')
    _remove_engine(rejected)
    _write_engine(serialized, rejected, dict(record, self_check=result))
    _remove_engine(staging)
    kept = (f'{engine_path} is unchanged' if engine_path.exists()
            else f'nothing was written to {engine_path}')
    raise UserError(f'the engine self-check failed: {result["failures"][0]} '
                    f'({len(result["failures"])} failure(s), table above). The new engine is kept '
                    f'beside as {rejected} (and {sidecar_path(rejected).name}) for a bug report; '
                    f'{kept}. Run on ONNX Runtime meanwhile (inference.py --engine {reference}), '
                    'or rebuild with --skip-check to use this engine anyway')


def default_timing_cache(engine_path):
    """Next to the engine, shared by the engines built there (the cache is per version + GPU)."""
    return Path(engine_path).with_name('tensorrt_timing.cache')


# --- the sidecar and staleness ------------------------------------------------------------------

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
    return record


def _short(digest):
    return digest[:12] if isinstance(digest, str) else digest


def staleness_reasons(record, installed_version, gpu, precision, profile, onnx_sha256,
                      engine_sha256, require_check=True):
    """What differs between the sidecar and what a build now would produce; [] when nothing.
    With `require_check`, an engine without a passed self-check is stale too."""
    try:
        built_profile = profile_from_dict(record['profile']).describe()
    except (KeyError, TypeError, ValueError):
        built_profile = None
    checks = (
        ('TensorRT version', record.get('tensorrt'), str(installed_version)),
        ('GPU', record.get('gpu'), gpu.name),
        ('compute capability', record.get('compute_capability'), gpu.compute_capability),
        ('precision', record.get('precision'), precision),
        ('profile', built_profile, profile.describe()),
        ('ONNX sha256', _short(record.get('onnx_sha256')), _short(onnx_sha256)),
        ('engine sha256 (the engine file changed after the build)',
         _short(record.get('engine_sha256')), _short(engine_sha256)),
    )
    reasons = [f'{label}: built with {built}, now {now}' for label, built, now in checks
               if built != now]
    status = (record.get('self_check') or {}).get('status')
    if require_check and status != 'passed':
        reasons.append(f'self-check: {status or "none recorded"}, not passed (--skip-check '
                       'accepts an engine without one)')
    return reasons


def engine_is_current(engine_path, onnx_path, precision, profile, require_check=True):
    """(True, why) when `engine_path` was built by the installed TensorRT, for this GPU, with this
    precision and profile, from this ONNX; else (False, the reasons). UserError when TensorRT or a
    GPU is missing or the ONNX does not exist (no build could happen)."""
    engine_path = Path(engine_path)
    trt = import_tensorrt()
    gpu = current_gpu()
    if not Path(onnx_path).is_file():
        raise UserError(f'{onnx_path} not found: make it with export.py (see README)')
    profile = resolve_profile(onnx_path, profile, log=lambda *args: None)
    if not engine_path.is_file():
        return False, f'{engine_path} does not exist'
    try:
        record = read_sidecar(engine_path)
    except UserError:
        return False, f'its sidecar {sidecar_path(engine_path)} is missing or not ours'
    reasons = staleness_reasons(record, trt.__version__, gpu, precision, profile,
                                sha256_of(onnx_path), sha256_of(engine_path), require_check)
    if reasons:
        return False, '; '.join(reasons)
    return True, (f'built by TensorRT {record["tensorrt"]} for {record["gpu"]} (sm '
                  f'{record["compute_capability"]}), {precision}, {profile.describe()}, from '
                  f'{Path(onnx_path).name} sha256 {_short(record["onnx_sha256"])}')


# --- build_engine.py ----------------------------------------------------------------------------

def profile_from_args(args):
    return Profile(args.min_batch, args.opt_batch, args.max_batch,
                   args.min_side, args.opt_side, args.max_side).validate()


def run_cli(args, log=print):
    """build_engine.py: build, build only when stale (--if-stale), or only report (--check)."""
    profile = profile_from_args(args)
    engine = Path(args.engine)
    if args.check or args.if_stale:
        current, reason = engine_is_current(engine, args.model, args.precision, profile,
                                            require_check=not args.skip_check)
        if args.check:
            log(f'{engine}: {"current" if current else "stale"}: {reason}')
            return 0 if current else 1
        if current:
            log(f'{engine} is current ({reason}): nothing to build')
            return 0
        log(f'{engine} is stale ({reason}): rebuilding')
    elif engine.exists() and not args.force:
        raise UserError(f'{engine} exists: pass --if-stale to rebuild it only when it is out of '
                        'date, or --force to rebuild it anyway')
    build_engine(args.model, engine, args.precision, profile, args.workspace, args.timing_cache,
                 check=not args.skip_check, reference_onnx=args.reference_onnx, log=log)
    return 0
