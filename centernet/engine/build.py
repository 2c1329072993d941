"""build_engine.py's work: a CenterNet ONNX -> a strongly typed TensorRT engine + its sidecar JSON.

One build path for TensorRT 10.x, 11.x and TensorRT for RTX 1.x (engine.api holds what differs): a
strongly typed network parsed from an ONNX whose precision is in the graph itself (the FP32
export, the mixed-precision FP16 ONNX that onnx_export.convert_fp16 writes, or the INT8 Q/DQ one).
TensorRT 11 and TensorRT for RTX have no weak-typing builder flags (BuilderFlag.FP16 and friends)
and build every network strongly typed; TensorRT 10 opts in with the STRONGLY_TYPED creation flag.
BuilderFlag.FP16 is never used, so every runtime builds the same graph with the same precisions.
The heads graph is what inference.py runs; an --end2end graph (the decode inside: canvas, borders
-> boxes, scores, labels) is built too, for serving stacks, with its I/O names kept.

Before an engine reaches its final path it is self-checked against ONNX Runtime CPU on its
reference ONNX (engine.check); one that fails is kept beside as <name>.rejected<suffix>. A
TensorRT for RTX engine built without a GPU cannot run here: it is written with its self-check
`pending`, and the check runs at its first load on a GPU. The sidecar (engine.sidecar) records
what the engine was built from and for.
"""

import dataclasses
import datetime
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import onnx_export as ox
from ..checkpoint import sha256_of
from ..errors import UserError
from . import check as engine_check
from . import parts
from .api import import_tensorrt
from .profile import Profile, resolve_profile
from .sidecar import (SIDECAR_FORMAT, engine_is_current, read_sidecar, remove_engine,
                      runtime_cache_path, sibling_engine, sidecar_path, write_engine)

PRECISIONS = ('fp16', 'fp32', 'int8')
PRECISION_KEY = 'centernet.precision'
GIB = 2 ** 30


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
    end2end: bool


def prepare_onnx(onnx_path, precision, log=print):
    """Check the ONNX is ours and of the requested precision; make the FP16 form when asked for
    fp16 and given the FP32 export."""
    if precision not in PRECISIONS:
        raise UserError(f'precision {precision!r} is not supported; choose one of {PRECISIONS}')
    onnx_path = Path(onnx_path)
    spec, classes, meta = ox.read_metadata(onnx_path, allow_end2end=True)
    onnx_precision = meta.get(PRECISION_KEY, 'fp32')
    if onnx_precision not in PRECISIONS:
        raise UserError(f'{onnx_path} says {PRECISION_KEY}={onnx_precision!r}; expected one of '
                        f'{PRECISIONS}: export it again with export.py')
    parsed = onnx_path
    if 'int8' in (precision, onnx_precision):  # Q/DQ in the graph; nothing to convert here
        from ..int8_quantize import check_tensorrt_int8
        check_tensorrt_int8(onnx_path, precision, meta)
    elif precision != onnx_precision:
        if precision == 'fp32':
            raise UserError(f'{onnx_path} is the FP16 ONNX, and an fp32 engine needs the FP32 one: '
                            'pass the FP32 export (export.py --precision fp32) or --precision fp16')
        parsed = ox.fp16_sibling(onnx_path)
        log(f'{onnx_path} is the FP32 ONNX: writing its mixed-precision FP16 form to {parsed} '
            '(onnx_export.convert_fp16) and building from that')
        ox.convert_fp16(onnx_path, parsed, log=log)
        spec, classes, meta = ox.read_metadata(parsed, allow_end2end=True)
    return OnnxSource(onnx_path, sha256_of(onnx_path), onnx_precision, parsed, precision, spec,
                      tuple(classes), dict(meta), meta.get(ox.METADATA_END2END) == '1')


# --- the build ----------------------------------------------------------------------------------

def describe_parser_error(error, without_gpu=False):
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
    if without_gpu:
        description = parts.without_driver_reports(description)
    return f'{where}: {getattr(code, "name", code)}: {description}'


def _optional_call(obj, name):
    method = getattr(obj, name, None)
    return method() if callable(method) else None


def describe_network(network):
    """The parsed network's I/O as TensorRT holds it: name, data type, shape (-1: dynamic)."""
    def tensor(t):
        return dict(name=t.name, dtype=t.dtype.name, shape=[int(d) for d in t.shape])
    return dict(inputs=[tensor(network.get_input(i)) for i in range(network.num_inputs)],
                outputs=[tensor(network.get_output(i)) for i in range(network.num_outputs)])


@dataclass(frozen=True)
class BuiltEngine:
    """The serialized engine (IHostMemory: a buffer), the network's I/O and the profile as
    TensorRT holds them."""

    serialized: object
    network: dict
    profile_shapes: dict  # input name -> [min, opt, max], read back from the profile
    targets_set: list     # TensorRT for RTX: the ComputeCapability names read back ([]: default)


class EngineBuilder:
    """Parses one ONNX into a strongly typed network and returns the serialized engine."""

    def __init__(self, api, workspace_bytes, log=print, without_gpu=False):
        self.api = api
        self.trt = api.trt
        self.workspace_bytes = int(workspace_bytes)
        self.log = log
        self.without_gpu = without_gpu
        # prints TensorRT's warnings, keeps its errors
        self.logger = parts.make_logger(self.trt, without_gpu=without_gpu)

    def build(self, onnx_path, profile, targets, timing_cache=None, end2end=False):
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(self.api.network_flags())
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
        self.api.configure_targets(config, targets)
        profile_shapes = self._add_profile(builder, config, profile, onnx_path, end2end)
        cache = timing_cache.attach(config, self.logger) if timing_cache is not None else None
        # TensorRT's phases as progress bars; `monitor` is held until this returns: TensorRT
        # needs it for the whole build.
        monitor = parts.make_build_progress(trt)
        config.progress_monitor = monitor

        self.logger.take_errors()  # what went before (a foreign timing cache) is not the build
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            self._raise_build_errors(onnx_path, profile)
        if timing_cache is not None:
            timing_cache.save(config, cache)
        return BuiltEngine(serialized, describe_network(network), profile_shapes,
                           self.api.targets_set(config))

    def _add_profile(self, builder, config, profile, onnx_path, end2end):
        """One optimisation profile for every input; the shapes as TensorRT then holds them.

        TensorRT checks min <= opt <= max when the profile is added (addOptimizationProfile
        returns -1, and the reason is logged); set_shape raises (RuntimeError) only on what
        setDimensions already sees, such as another rank."""
        optimization_profile = builder.create_optimization_profile()
        shapes = profile.input_shapes(end2end)
        self.logger.take_errors()
        try:
            for name, (low, mid, high) in shapes.items():
                optimization_profile.set_shape(name, low, mid, high)
        except (RuntimeError, TypeError, ValueError) as exc:  # pybind11: RuntimeError
            self._refuse_profile(shapes, onnx_path, ' '.join(str(exc).split()) or
                                 type(exc).__name__)
        if config.add_optimization_profile(optimization_profile) < 0:
            self._refuse_profile(shapes, onnx_path, 'TensorRT logged no reason')
        return {name: [[int(d) for d in shape] for shape in optimization_profile.get_shape(name)]
                for name in shapes}

    def _refuse_profile(self, shapes, onnx_path, fallback):
        errors = self.logger.take_errors()
        reason = errors[0] if errors else fallback  # the first is the cause, the rest follow it
        shown = '; '.join(f'{name} ' + ' / '.join('x'.join(map(str, s)) for s in triple)
                          for name, triple in shapes.items())
        raise UserError(f'TensorRT refused the optimisation profile min/opt/max {shown} for '
                        f'{onnx_path}: {reason}. Check --min/opt/max_batch and _side '
                        '(1 <= batch, sides multiples of 32, min <= opt <= max)') from None

    def _raise_parse_errors(self, parser, onnx_path):
        errors = [describe_parser_error(parser.get_error(i), self.without_gpu)
                  for i in range(parser.num_errors)]
        for line in errors:
            print(f'TensorRT ONNX parser: {line}', file=sys.stderr)
        first = errors[0] if errors else 'no details (see the TensorRT log above)'
        raise UserError(f'TensorRT could not parse {onnx_path}: {len(errors)} error(s), the first: '
                        f'{first}. Export it again with export.py, or use a newer TensorRT')

    def _raise_build_errors(self, onnx_path, profile):
        errors = self.logger.take_errors()
        said = (f'{len(errors)} error(s) logged (above), the last: {errors[-1]}' if errors
                else 'TensorRT logged no error')
        advice = ''
        if any('OutOfMemory' in line for line in errors):
            advice = (f'. It ran out of memory: raise --workspace (now '
                      f'{self.workspace_bytes / GIB:g} GiB) to more than it asked for'
                      + ('' if self.without_gpu else ', or free GPU memory'))
        raise UserError(f'TensorRT could not build an engine from {onnx_path} '
                        f'({profile.describe()}): {said}{advice}')


def build_engine(onnx_path, engine_path, precision='fp16', profile=Profile(), workspace_gib=4.0,
                 timing_cache_path=None, check=True, reference_onnx=None, runtime='auto',
                 compute_capability=None, log=print):
    """Build `engine_path` (and its sidecar) from `onnx_path` with `runtime` ('auto',
    'tensorrt', 'tensorrt-rtx'), self-check it (engine.check) unless `check` is False, and
    return the sidecar record. A failed self-check is a UserError, the engine kept beside as
    <name>.rejected<suffix>, and `engine_path` left as it was. Without a GPU (TensorRT for RTX)
    the engine is written with its self-check pending. `compute_capability`: TensorRT for RTX's
    targets, 'portable' (None: the library's default), 'current' or a comma list."""
    api = import_tensorrt(runtime)
    gpu = api.gpu_for_build()
    targets = api.targets(compute_capability, gpu)
    profile.validate()
    if workspace_gib <= 0:
        raise UserError(f'--workspace {workspace_gib} must be a positive number of GiB')
    if timing_cache_path and not api.has_timing_cache:
        raise UserError(f'--timing_cache: {api.title} has no timing cache (it times no kernels '
                        'when it builds; its kernels are compiled on the GPU and kept in the '
                        'runtime cache beside the engine): drop --timing_cache')
    engine_path = Path(engine_path)
    if not engine_path.parent.is_dir():  # fail now, not after the build
        raise UserError(f'output folder {engine_path.parent} does not exist: create it or choose '
                        'another --engine path')
    source = prepare_onnx(onnx_path, precision, log)
    profile = resolve_profile(source.parsed, profile, log)
    reference = _reference(source, check, reference_onnx)
    if precision == 'int8' and api.builds_without_gpu:
        log('warning: TensorRT for RTX\'s support matrix lists INT8 only for weight-only '
            'quantized GEMMs, not for convolutions: this INT8 engine builds, but how (and '
            'whether) its INT8 convolutions run on an RTX GPU is not documented; its self-check '
            'on the GPU judges the result (docs/tensorrt.md)')
    timing_cache = (parts.TimingCacheFile(Path(timing_cache_path) if timing_cache_path else
                                          default_timing_cache(engine_path), log)
                    if api.has_timing_cache else None)

    where = (f'on {gpu.name} (sm {gpu.compute_capability})' if not api.builds_without_gpu else
             f'for {targets.describe()}, ' + (f'on a machine with {gpu.name}' if gpu else
                                              'without a GPU (CPU-only ahead-of-time build)'))
    log(f'building {engine_path} from {source.parsed}: {precision}, strongly typed, '
        f'{"end-to-end, " if source.end2end else ""}{profile.describe()}, workspace '
        f'{workspace_gib:g} GiB, {api.describe()} {where}; {expected_duration(api, engine_path)}')
    if timing_cache is None:
        log(f'timing cache: none ({api.title} times no kernels when it builds; its kernels are '
            'compiled on the GPU at the first load and kept in the runtime cache beside the '
            'engine)')
    start = time.perf_counter()
    built = EngineBuilder(api, workspace_gib * GIB, log, without_gpu=gpu is None).build(
        source.parsed, profile, targets, timing_cache, source.end2end)
    seconds = time.perf_counter() - start
    record = dict(
        format=SIDECAR_FORMAT,
        engine=engine_path.name,
        engine_sha256=None,  # set when written
        runtime=api.runtime,
        runtime_version=api.version,
        tensorrt=api.version,  # the first sidecars' name for the version
        gpu=gpu.name if gpu else None,
        compute_capability=gpu.compute_capability if gpu else None,
        targets=list(targets.capabilities),
        targets_requested=targets.request,
        compute_capabilities_set=built.targets_set,
        precision=precision,
        strongly_typed=True,
        tf32=False,
        end2end=source.end2end,
        profile=profile.to_dict(),
        canvas_shapes=dict(zip(('min', 'opt', 'max'), built.profile_shapes[ox.INPUT_NAME])),
        profile_shapes={name: dict(zip(('min', 'opt', 'max'), shapes))
                        for name, shapes in built.profile_shapes.items()},
        network=built.network,
        workspace_gib=workspace_gib,
        onnx=str(source.given.resolve()),  # the rebuild command runs from any folder
        onnx_sha256=source.given_sha256,
        parsed_onnx=str(source.parsed),
        parsed_onnx_sha256=sha256_of(source.parsed),
        spec=dataclasses.asdict(source.spec),
        classes=list(source.classes),
        onnx_metadata=source.metadata,
        timing_cache=str(timing_cache.path) if timing_cache else None,
        build_seconds=round(seconds, 1),
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    )
    record['self_check'] = _self_check(built.serialized, engine_path, record, source, reference,
                                       profile, check, gpu, log)
    write_engine(built.serialized, engine_path, record)
    if record['self_check']['status'] != 'passed':  # else the check's kernels were moved there
        runtime_cache_path(engine_path).unlink(missing_ok=True)  # an older engine's kernels
    log(f'wrote {engine_path} ({engine_path.stat().st_size / 2**20:.1f} MiB) in {seconds:.1f} s, '
        f'and {sidecar_path(engine_path)} (self-check: {record["self_check"]["status"]})')
    return record


def expected_duration(api, engine_path):
    """What the log says before a build: the last build's time of this engine when its sidecar
    has one from this runtime, else what is known of the runtime (engine.api)."""
    try:
        record = read_sidecar(engine_path)
    except UserError:
        record = None
    if record and (record['runtime'], record['runtime_version']) == (api.runtime, api.version) \
            and isinstance(record.get('build_seconds'), (int, float)):
        return f'its last build here took {record["build_seconds"]:g} s'
    return api.expected_build


def _reference(source, check, reference_onnx):
    if source.end2end:
        if reference_onnx is not None:
            raise UserError('--reference_onnx: an end-to-end engine is not self-checked by this '
                            'kit (its serving stack runs it); drop --reference_onnx')
        return None
    return (engine_check.find_reference_onnx(source.given, source.given_precision,
                                             reference_onnx) if check else None)


def _self_check(serialized, engine_path, record, source, reference, profile, check, gpu, log):
    if not check:
        return dict(status='skipped', reason='--skip-check')
    if source.end2end:
        return dict(status='skipped', reason='an end-to-end engine: its serving stack runs it, '
                                             'and the kit\'s TensorRT backend takes the heads '
                                             'engine only')
    if reference is None:
        result = dict(status='unchecked', reason=f'no FP32 ONNX next to {source.given} (the FP16 '
                                                 'ONNX is named after it: centernet.onnx -> '
                                                 'centernet_fp16.onnx)')
        log(f'warning: the engine is not self-checked: {result["reason"]}; pass '
            '--reference_onnx FP32.onnx to check it')
        return result
    if gpu is None:
        return engine_check.pending_record(
            reference, profile, 'built without a GPU: the check runs at the engine\'s first load '
                                'on a GPU, before it is used')
    if gpu.compute_capability not in record['targets']:  # RTX, a list of other GPUs' targets
        return engine_check.pending_record(
            reference, profile, f'built on a GPU it does not target ({gpu.name}, sm '
                                f'{gpu.compute_capability}; --compute_capability '
                                f'{",".join(record["targets"])}): the check runs at the '
                                'engine\'s first load on one of its targets, before it is used')
    return _checked(serialized, engine_path, record, reference, profile, source.spec, log)


def _checked(serialized, engine_path, record, reference, profile, spec, log):
    """Self-check the engine at a staging name beside `engine_path`; its `self_check` record
    when it passes. When it fails: the engine moved to <name>.rejected<suffix>, a UserError."""
    staging = sibling_engine(engine_path, 'unchecked')
    write_engine(serialized, staging, dict(record, self_check=dict(status='running')))
    try:
        result = engine_check.run_self_check(staging, reference, profile, record['precision'],
                                             spec, log, rebuild_path=engine_path)
    except BaseException:  # the check could not run (a bad reference, Ctrl-C): no engine left
        remove_engine(staging)
        raise
    if result['status'] == 'passed':
        # The kernels TensorRT for RTX compiled for the check are the installed engine's too
        # (the same bytes): its runtime cache goes along.
        if runtime_cache_path(staging).is_file():
            os.replace(runtime_cache_path(staging), runtime_cache_path(engine_path))
        remove_engine(staging)
        return result
    rejected = sibling_engine(engine_path, 'rejected')
    remove_engine(rejected)
    write_engine(serialized, rejected, dict(record, self_check=result))
    remove_engine(staging)
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
                                            require_check=not args.skip_check,
                                            runtime=args.runtime,
                                            compute_capability=args.compute_capability)
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
                 check=not args.skip_check, reference_onnx=args.reference_onnx,
                 runtime=args.runtime, compute_capability=args.compute_capability, log=log)
    return 0
