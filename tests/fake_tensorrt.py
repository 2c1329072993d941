"""A fake `tensorrt` / `tensorrt_rtx` module for contract tests on machines without a GPU.

It implements the slice of the TensorRT 10.x / 11.x and TensorRT for RTX 1.x Python APIs that
centernet uses, under the real names, with the real enum values and the real failure conventions,
and records every call in `module.calls`, so tests can assert what our code asked for. It cannot
invent API: tests/test_tensorrt_api_names.py checks every class, member and enum value it provides
against the names of each library (tests/fixtures/tensorrt_api_*.txt), and
tests/test_tensorrt_fake_vs_real.py holds its behaviour to the real `tensorrt_rtx`, which installs
on a CPU: constructors, return types, and each behaviour below that a CPU can show.

Behaviours modelled (the bindings' source is shared by the three: NVIDIA/TensorRT python/src):
  - Classes the library makes (IBuilderConfig, ITimingCache, ICudaEngine, ParserError, ...) have
    no constructor: calling one raises TypeError("... No constructor defined!"). Tests make them
    with the helpers at the bottom (parser_error, timing_cache).
  - create_network(flags): 10.x STRONGLY_TYPED = 1 (bit 0 is the ignored EXPLICIT_BATCH); 11.x
    and RTX STRONGLY_TYPED = 0; neither has BuilderFlag.FP16 / INT8 / BF16.
  - IOptimizationProfile.set_shape raises nothing on min > opt; add_optimization_profile returns -1
    for an invalid profile and logs the reason ("... satisfy MIN<=OPT<=MAX"); a profile that does
    not match a fixed network dimension fails the build (an error logged, None returned).
  - create_timing_cache on bytes it cannot read (another version's, damaged) returns an empty
    cache and logs warnings; a cache from another device makes set_timing_cache(cache, False)
    return False. TensorRT for RTX: the timing-cache calls are deprecated no-ops.
  - IProgressMonitor: the phases of a real build (14 phases, 6 levels deep, as tensorrt_rtx 1.7
    reports them for this model); step_complete returning anything false (False, None) or raising
    cancels the build (BuildCanceled logged); an exception in phase_start / phase_finish is
    printed and ignored.
  - build_serialized_network returns an IHostMemory: a buffer (memoryview, bytes()) with .nbytes
    and .dtype and no len(); None on failure, with errors logged through the Builder's ILogger.
  - ErrorCode: the parser's codes 0-14.
  - create_execution_context(strategy=...) (10.x) or (runtime_config=...) (RTX).
  - TensorRT for RTX: IBuilderConfig.num_compute_capabilities / set_compute_capability (targets,
    CURRENT needs a GPU at build); Runtime.get_engine_validity -> (EngineValidity, diagnostics
    flags) against torch.cuda's GPU; IRuntimeConfig with dynamic_shapes_kernel_specialization_
    strategy (LAZY: a new shape first runs a fallback kernel, recorded in calls.fallback_runs;
    EAGER: it compiles first, calls.jit_compiles) and an IRuntimeCache that serializes the
    compiled shapes and refuses another version's or GPU's (deserialize -> False).

Knobs (module attributes, not TensorRT's): `parser_errors` (ParserError list) fails the parse;
`fail_build` fails the build with `build_errors` logged; `device_name` is the GPU the timing
cache is stamped with; `refused_addresses` names tensors set_tensor_address refuses;
`compute(canvases) -> [heatmap, wh, offset]` (numpy) makes execute_async_v3 write those arrays to
the output addresses (CPU memory: the contract tests' stand-in for the GPU).
It computes nothing itself: an "engine" is a JSON description of its I/O, profile and targets.
"""

import ctypes
import enum
import json
import math
import sys
import types
import warnings
from dataclasses import dataclass, field

ENGINE_MAGIC = b'FAKE-TRT-ENGINE\n'
CACHE_MAGIC = b'FAKE-TRT-TIMING-CACHE\n'
RUNTIME_CACHE_MAGIC = b'FAKE-TRT-RTX-RUNTIME-CACHE\n'
ONNX_TO_TRT_DTYPE = {1: 'FLOAT', 10: 'HALF', 2: 'UINT8', 3: 'INT8', 6: 'INT32', 7: 'INT64',
                     9: 'BOOL', 16: 'BF16'}
NUMPY_DTYPES = {'FLOAT': 'float32', 'HALF': 'float16', 'UINT8': 'uint8'}
OUTPUT_STRIDE = 4  # CenterNet: outputs at 1/4 of the canvas
# Module attributes that are the fake's own (knobs and records), not TensorRT's.
FAKE_ONLY = frozenset({'calls', 'parser_errors', 'fail_build', 'build_errors', 'device_name',
                       'refused_addresses', 'compute', 'flavour'})
RTX_VERSION = '1.7.1.116'
# What tensorrt_rtx 1.7.1 builds for with no compute capability set: SM80, 86, 89, 120, 121 (and
# later). tests/test_tensorrt_fake_vs_real.py compares the fake's constants with the real module.
RTX_PORTABLE_SMS = (80, 86, 89, 120, 121)

# The values below are TensorRT's (tests/fixtures/tensorrt_api_*.txt, checked by a test).
# nvonnxparser::ErrorCode (NvOnnxParser.h): the same in 10.x, 11.x and RTX.
ErrorCode = enum.IntEnum('ErrorCode', {
    'SUCCESS': 0, 'INTERNAL_ERROR': 1, 'MEM_ALLOC_FAILED': 2, 'MODEL_DESERIALIZE_FAILED': 3,
    'INVALID_VALUE': 4, 'INVALID_GRAPH': 5, 'INVALID_NODE': 6, 'UNSUPPORTED_GRAPH': 7,
    'UNSUPPORTED_NODE': 8, 'UNSUPPORTED_NODE_ATTR': 9, 'UNSUPPORTED_NODE_INPUT': 10,
    'UNSUPPORTED_NODE_DATATYPE': 11, 'UNSUPPORTED_NODE_DYNAMIC': 12,
    'UNSUPPORTED_NODE_SHAPE': 13, 'REFIT_FAILED': 14})

# The progress phases of a real build, as tensorrt_rtx 1.7.1.116 reported them for the FP32
# CenterNet export (IProgressMonitor callbacks, recorded once; consecutive steps collapsed):
# ('start', phase, parent, steps declared) / ('steps', phase, how many) / ('finish', phase).
REAL_PHASES = (
    ('start', 'Building engine', None, 6),
    ('start', 'Cloning network graph', 'Building engine', 84),
    ('steps', 'Cloning network graph', 84), ('finish', 'Cloning network graph'),
    ('steps', 'Building engine', 2),
    ('start', 'Preparing graph for optimization', 'Building engine', 4),
    ('steps', 'Preparing graph for optimization', 4),
    ('finish', 'Preparing graph for optimization'),
    ('steps', 'Building engine', 2),
    ('start', 'Building engine from subgraph', 'Building engine', 1),
    ('start', 'Optimizing graph', 'Building engine from subgraph', 30),
    ('steps', 'Optimizing graph', 30), ('finish', 'Optimizing graph'),
    ('start', 'Computing profile costs', 'Building engine from subgraph', 5),
    ('start', 'Timing tactics', 'Computing profile costs', 3),
    ('start', 'Timing graph nodes', 'Timing tactics', 5),
    ('steps', 'Timing graph nodes', 5), ('finish', 'Timing graph nodes'),
    ('steps', 'Timing tactics', 1),
    ('start', 'Timing tensor reformats', 'Timing tactics', 5),
    ('start', 'Computing reformatting costs', 'Timing tensor reformats', 1),
    ('steps', 'Computing reformatting costs', 1), ('finish', 'Computing reformatting costs'),
    ('steps', 'Timing tensor reformats', 2),
    ('start', 'Computing reformatting costs', 'Timing tensor reformats', 1),
    ('steps', 'Computing reformatting costs', 1), ('finish', 'Computing reformatting costs'),
    ('steps', 'Timing tensor reformats', 1),
    ('start', 'Computing reformatting costs', 'Timing tensor reformats', 1),
    ('steps', 'Computing reformatting costs', 1), ('finish', 'Computing reformatting costs'),
    ('steps', 'Timing tensor reformats', 1),
    ('start', 'Computing reformatting costs', 'Timing tensor reformats', 1),
    ('steps', 'Computing reformatting costs', 1), ('finish', 'Computing reformatting costs'),
    ('steps', 'Timing tensor reformats', 1), ('finish', 'Timing tensor reformats'),
    ('steps', 'Timing tactics', 1), ('finish', 'Timing tactics'),
    ('steps', 'Computing profile costs', 3),
    ('start', 'Determining refit engines', 'Computing profile costs', 1),
    ('steps', 'Determining refit engines', 1),
    ('steps', 'Computing profile costs', 2),
    ('finish', 'Determining refit engines'), ('finish', 'Computing profile costs'),
    ('steps', 'Building engine from subgraph', 1), ('finish', 'Building engine from subgraph'),
    ('steps', 'Building engine', 1), ('finish', 'Building engine'),
)


@dataclass
class Calls:
    """What our code asked of the fake, in order."""

    network_flags: list = field(default_factory=list)        # create_network(flags)
    builder_flags_set: list = field(default_factory=list)    # config.set_flag(flag)
    builder_flags_cleared: list = field(default_factory=list)  # config.clear_flag(flag)
    parsed: list = field(default_factory=list)               # parse_from_file / parse paths
    memory_pool_limits: list = field(default_factory=list)   # (pool name, bytes)
    profile_shapes: list = field(default_factory=list)       # (name, min, opt, max)
    compute_capabilities: list = field(default_factory=list)  # targets per build (RTX)
    timing_cache_blobs: list = field(default_factory=list)   # bytes given to create_timing_cache
    timing_cache_attached: list = field(default_factory=list)  # (accepted, ignore_mismatch)
    progress_monitors: list = field(default_factory=list)  # config.progress_monitor per build
    builds: int = 0
    deserialized: int = 0
    validity_queries: int = 0                                # get_engine_validity (RTX)
    contexts: list = field(default_factory=list)             # create_execution_context kwargs
    runtime_cache_loads: list = field(default_factory=list)  # deserialize results (RTX)
    jit_compiles: list = field(default_factory=list)         # shapes compiled (RTX)
    fallback_runs: list = field(default_factory=list)        # shapes run on a fallback kernel
    input_shapes: list = field(default_factory=list)         # (name, shape) per set_input_shape
    executions: list = field(default_factory=list)           # dict per execute_async_v3


def make_fake_tensorrt(version='10.8.0.43'):
    """A fresh fake module of `version`: 10.x or 11.x (`tensorrt`), or 1.x (`tensorrt_rtx`)."""
    major = int(version.split('.')[0])
    rtx = major == 1  # TensorRT for RTX 1.x; TensorRT itself is 8.x, 10.x, 11.x
    module_name = 'tensorrt_rtx' if rtx else 'tensorrt'
    trt = types.ModuleType(module_name)
    trt.__version__ = version
    trt.flavour = 'rtx' if rtx else f'{major}.x'
    trt.calls = Calls()
    trt.parser_errors = []
    trt.fail_build = False
    trt.build_errors = ['fake: the builder failed (fail_build)']
    trt.device_name = 'fake GPU'
    trt.refused_addresses = set()
    trt.compute = None
    calls = trt.calls

    def no_constructor(cls):
        """The binding's classes that only the library makes: no constructor from Python."""
        def refuse(self, *args, **kwargs):
            raise TypeError(f'{module_name}_bindings.{module_name}.{cls.__name__}: '
                            'No constructor defined!')

        def make(klass, *args):
            obj = klass.__new__(klass)
            obj._setup(*args)
            return obj
        cls.__init__ = refuse
        if '_new' not in vars(cls):
            cls._new = classmethod(make)
        return cls

    if rtx:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum('NetworkDefinitionCreationFlag', {
            'STRONGLY_TYPED': 0})
        trt.BuilderFlag = enum.IntEnum('BuilderFlag', {'DEBUG': 2, 'REFIT': 4, 'TF32': 6,
                                                       'STRIP_PLAN': 18})
    elif major >= 11:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum('NetworkDefinitionCreationFlag', {
            'STRONGLY_TYPED': 0, 'PREFER_JIT_PYTHON_PLUGINS': 1, 'PREFER_AOT_PYTHON_PLUGINS': 2})
        trt.BuilderFlag = enum.IntEnum('BuilderFlag', {'DEBUG': 2, 'REFIT': 4, 'TF32': 6,
                                                       'STRIP_PLAN': 18})
    else:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum('NetworkDefinitionCreationFlag', {
            'EXPLICIT_BATCH': 0, 'STRONGLY_TYPED': 1})
        trt.BuilderFlag = enum.IntEnum('BuilderFlag', {
            'FP16': 0, 'INT8': 1, 'DEBUG': 2, 'REFIT': 4, 'TF32': 6,
            'OBEY_PRECISION_CONSTRAINTS': 9, 'BF16': 17, 'STRIP_PLAN': 19})
    trt.MemoryPoolType = enum.IntEnum('MemoryPoolType', {'WORKSPACE': 0, 'TACTIC_SHARED_MEMORY': 5})
    trt.DataType = enum.IntEnum('DataType', {'FLOAT': 0, 'HALF': 1, 'INT8': 2, 'INT32': 3,
                                             'BOOL': 4, 'UINT8': 5, 'BF16': 7, 'INT64': 8})
    trt.TensorIOMode = enum.IntEnum('TensorIOMode', {'NONE': 0, 'INPUT': 1, 'OUTPUT': 2})
    trt.ExecutionContextAllocationStrategy = enum.IntEnum('ExecutionContextAllocationStrategy', {
        'STATIC': 0, 'ON_PROFILE_CHANGE': 1, 'USER_MANAGED': 2})
    trt.ErrorCode = ErrorCode
    if rtx:
        trt.ComputeCapability = enum.IntEnum('ComputeCapability', {
            'NONE': 0, 'CURRENT': 1, 'SM75': 75, 'SM80': 80, 'SM86': 86, 'SM89': 89,
            'SM120': 120, 'SM121': 121})
        trt.DynamicShapesKernelSpecializationStrategy = enum.IntEnum(
            'DynamicShapesKernelSpecializationStrategy', {'LAZY': 0, 'EAGER': 1, 'NONE': 2})
        trt.CudaGraphStrategy = enum.IntEnum('CudaGraphStrategy', {
            'DISABLED': 0, 'WHOLE_GRAPH_CAPTURE': 1})
        trt.EngineValidity = enum.IntEnum('EngineValidity', {
            'VALID': 0, 'SUBOPTIMAL': 1, 'INVALID': 2})
        trt.EngineInvalidityDiagnostics = enum.IntEnum('EngineInvalidityDiagnostics', {
            'VERSION_MISMATCH': 1, 'UNSUPPORTED_CC': 2, 'OLD_CUDA_DRIVER': 4,
            'OLD_CUDA_RUNTIME': 8, 'INSUFFICIENT_GPU_MEMORY': 16, 'MALFORMED_ENGINE': 32,
            'CUDA_ERROR': 64})

    def deprecated_in_rtx():
        if rtx:  # python/include/utils.h deprecateMemberInTrtRtxOnly, the message as it reads
            warnings.warn('Use Deprecated in TensorRT-RTX 1.2. Timing cache operations are '
                          'no-ops in TensorRT-RTX. instead.', DeprecationWarning, stacklevel=3)

    def torch_gpu():
        """(available, 'major.minor') of the GPU torch sees (the tests monkeypatch it)."""
        import torch
        if not torch.cuda.is_available():
            return False, None
        major_cc, minor_cc = torch.cuda.get_device_capability()
        return True, f'{major_cc}.{minor_cc}'

    class ILogger:
        """pybind11's ILogger: Severity nested, its values also on the class (export_values)."""

        Severity = enum.IntEnum('Severity', {'INTERNAL_ERROR': 0, 'ERROR': 1, 'WARNING': 2,
                                             'INFO': 3, 'VERBOSE': 4})
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

        def __init__(self):
            self._initialised = True

        def log(self, severity, msg):
            raise NotImplementedError

    class Logger(ILogger):
        def __init__(self, min_severity=ILogger.Severity.WARNING):
            super().__init__()
            self.min_severity = min_severity

        def log(self, severity, msg):
            if severity <= self.min_severity:
                print(f'[fake TRT] {msg}', file=sys.stderr)

    def log_to(logger, severity, message):
        assert getattr(logger, '_initialised', False), 'an ILogger subclass skipped __init__'
        logger.log(severity, message)

    def log_error(logger, message):
        log_to(logger, ILogger.Severity.ERROR, message)

    @no_constructor
    class IHostMemory(bytes):
        """Library memory: a buffer (memoryview, bytes(), file.write), .nbytes, .dtype, no len()."""

        @classmethod
        def _new(cls, blob):
            return bytes.__new__(cls, blob)

        @property
        def nbytes(self):
            return bytes.__len__(self)

        @property
        def dtype(self):
            return trt.DataType.INT8

        def __len__(self):
            raise TypeError(f"object of type '{module_name}_bindings.{module_name}.IHostMemory' "
                            'has no len()')

    @no_constructor
    class ParserError:
        """The ONNX parser's error record (ParserError in python/src/parsers/pyOnnx.cpp)."""

        def _setup(self, code_name, description, node_index=-1, name='', operator=''):
            self._code, self._desc = ErrorCode[code_name], description
            self._node, self._name, self._operator = node_index, name, operator

        def code(self):
            return self._code

        def desc(self):
            return self._desc

        def node(self):
            return self._node

        def node_name(self):
            return self._name

        def node_operator(self):
            return self._operator

    @no_constructor
    class ITensor:
        def _setup(self, name, dtype, shape):
            self._name, self._dtype, self._shape = name, dtype, shape

        @property
        def name(self):
            return self._name

        @property
        def dtype(self):
            return trt.DataType[self._dtype]

        @property
        def shape(self):
            return tuple(-1 if d is None else d for d in self._shape)

    @no_constructor
    class INetworkDefinition:
        def _setup(self, flags):
            self._flags = flags
            self._io = []  # dicts: name, mode, dtype, channels, dims (None where dynamic)

        def _tensors(self, mode):
            return [ITensor._new(t['name'], t['dtype'], t['dims']) for t in self._io
                    if t['mode'] == mode]

        @property
        def num_inputs(self):
            return len(self._tensors('INPUT'))

        @property
        def num_outputs(self):
            return len(self._tensors('OUTPUT'))

        def get_input(self, index):
            return self._tensors('INPUT')[index]

        def get_output(self, index):
            return self._tensors('OUTPUT')[index]

    class OnnxParser:
        def __init__(self, network, logger):
            self._network = network
            self._errors = []

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, index):
            return self._errors[index]

        def parse_from_file(self, model):
            calls.parsed.append(str(model))
            if trt.parser_errors:
                self._errors = list(trt.parser_errors)
                return False
            import onnx
            proto = onnx.load(str(model), load_external_data=False)
            for mode, values in (('INPUT', proto.graph.input), ('OUTPUT', proto.graph.output)):
                for value in values:
                    tensor_type = value.type.tensor_type
                    dims = [d.dim_value if d.HasField('dim_value') else None
                            for d in tensor_type.shape.dim]
                    channels = dims[1] if mode == 'OUTPUT' else dims[-1]
                    self._network._io.append(dict(
                        name=value.name, mode=mode, dims=dims, channels=channels,
                        dtype=ONNX_TO_TRT_DTYPE.get(tensor_type.elem_type, 'FLOAT')))
            return True

    @no_constructor
    class ITimingCache:
        def _setup(self, keys=(), device=None):
            self._keys = set(keys)
            self._device = device or trt.device_name

        def serialize(self):
            deprecated_in_rtx()
            return IHostMemory._new(CACHE_MAGIC + json.dumps(dict(
                version=version, device=self._device, keys=sorted(self._keys))).encode())

        def combine(self, input_cache, ignore_mismatch):
            deprecated_in_rtx()
            if input_cache._device != self._device and not ignore_mismatch:
                return False
            self._keys |= input_cache._keys
            return True

    @no_constructor
    class IOptimizationProfile:
        def _setup(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 (the binding's keyword names)
            # Nothing is checked here: setDimensions "can be validated only partially"
            # (NvInferRuntime.h); the builder config checks min <= opt <= max when it is added.
            shapes = tuple(tuple(int(d) for d in s) for s in (min, opt, max))
            calls.profile_shapes.append((input, *shapes))
            self._shapes[input] = shapes

        def get_shape(self, input):  # noqa: A002
            return [tuple(s) for s in self._shapes.get(input, ())]

        def _valid(self):
            return all(len(low) == len(mid) == len(high)
                       and all(0 <= a <= b <= c for a, b, c in zip(low, mid, high))
                       for low, mid, high in self._shapes.values())

    class IProgressMonitor:
        """Like pybind11's base: a subclass that skips __init__ is unusable."""

        def __init__(self):
            self._initialised = True

    @no_constructor
    class IBuilderConfig:
        def _setup(self, logger):
            self._logger = logger
            self._profiles = []
            self._timing_cache = None
            self._flags = {trt.BuilderFlag.TF32}  # TF32 is on by default (NvInfer.h kTF32)
            self._targets = []
            self.progress_monitor = None

        def set_flag(self, flag):
            calls.builder_flags_set.append(flag)
            self._flags.add(flag)

        def clear_flag(self, flag):
            calls.builder_flags_cleared.append(flag)
            self._flags.discard(flag)

        def get_flag(self, flag):
            return flag in self._flags

        def set_memory_pool_limit(self, pool, pool_size):
            calls.memory_pool_limits.append((pool.name, int(pool_size)))
            self._workspace = int(pool_size)

        def add_optimization_profile(self, profile):
            if not profile._valid():
                names = ', '.join(profile._shapes)
                log_error(self._logger, f'IOptimizationProfile::isValid: Error Code 4: API Usage '
                                        f'Error (Invalid optimization profiles for input tensors '
                                        f'{names}, please ensure that the optimization profiles '
                                        f'satisfy MIN<=OPT<=MAX. In isValid)')
                log_error(self._logger, 'IBuilderConfig::addOptimizationProfile: Error Code 3: '
                                        'API Usage Error (Parameter check failed, condition: '
                                        'profile->isValid(). In addOptimizationProfile)')
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache):
            deprecated_in_rtx()
            blob = bytes(serialized_timing_cache)
            calls.timing_cache_blobs.append(blob)
            if not blob:
                return ITimingCache._new()
            stored = None
            if blob.startswith(CACHE_MAGIC):
                stored = json.loads(blob[len(CACHE_MAGIC):])
            if stored is None or stored['version'] != version:
                for line in ('The timing cache will not be used!',
                             'Failed to deserialize timing cache. Returning an empty timing '
                             'cache.'):
                    log_to(self._logger, ILogger.Severity.WARNING, line)
                return ITimingCache._new()
            return ITimingCache._new(stored['keys'], stored['device'])

        def set_timing_cache(self, cache, ignore_mismatch):
            deprecated_in_rtx()
            accepted = ignore_mismatch or cache._device == trt.device_name
            calls.timing_cache_attached.append((accepted, ignore_mismatch))
            if accepted:
                self._timing_cache = cache
            return accepted

        def get_timing_cache(self):
            deprecated_in_rtx()
            return self._timing_cache

        if rtx:  # the targets of an ahead-of-time build
            @property
            def num_compute_capabilities(self):
                return len(self._targets)

            @num_compute_capabilities.setter
            def num_compute_capabilities(self, count):
                self._targets = [trt.ComputeCapability.NONE] * int(count)

            def set_compute_capability(self, compute_capability, index):
                current = compute_capability == trt.ComputeCapability.CURRENT
                if compute_capability == trt.ComputeCapability.NONE or not \
                        0 <= index < len(self._targets) or (current and len(self._targets) != 1):
                    return False
                self._targets[index] = compute_capability
                return True

            def get_compute_capability(self, index):
                return self._targets[index]

    def run_monitor(monitor, logger):
        """The phases of a real build through the binding's trampoline semantics; False when
        the build is cancelled."""
        calls.progress_monitors.append(monitor)
        assert monitor._initialised
        done = {}

        def call(method, *args):
            try:
                return getattr(monitor, method)(*args)
            except Exception as exc:  # the trampoline prints it, and step_complete cancels
                print(f'[ERROR] Exception caught in {method}(): {exc}', file=sys.stderr)
                return False if method == 'step_complete' else None

        for event in REAL_PHASES:
            if event[0] == 'start':
                done[event[1]] = 0
                call('phase_start', *event[1:])
            elif event[0] == 'finish':
                call('phase_finish', event[1])
            else:
                for _ in range(event[2]):
                    if not call('step_complete', event[1], done[event[1]]):
                        log_error(logger, 'IBuilder::buildSerializedNetwork: Error Code 7: '
                                          'BuildCanceled (Build canceled by user)')
                        return False
                    done[event[1]] += 1
        return True

    class Builder:
        def __init__(self, logger):
            self._logger = logger

        def create_network(self, flags=0):
            calls.network_flags.append(flags)
            return INetworkDefinition._new(flags)

        def create_builder_config(self):
            return IBuilderConfig._new(self._logger)

        def create_optimization_profile(self):
            return IOptimizationProfile._new()

        def build_serialized_network(self, network, config):
            calls.builds += 1

            def fail(*messages):
                for message in messages:
                    log_error(self._logger, message)
                return None

            if trt.fail_build:
                return fail(*trt.build_errors)
            if not config._profiles or not network._io:
                return fail('Network has dynamic or shape inputs, but no optimization profile '
                            'has been defined.')
            profile = config._profiles[0]._shapes
            for tensor in network._io:
                if tensor['mode'] != 'INPUT':
                    continue
                if tensor['name'] not in profile:
                    return fail(f'fake: {tensor["name"]}: a dynamic input without a profile')
                for axis, fixed in enumerate(tensor['dims']):
                    seen = {s[axis] for s in profile[tensor['name']]}
                    if fixed is not None and seen != {fixed}:
                        return fail(f'fake: {tensor["name"]}: dimension {axis} is fixed at '
                                    f'{fixed} in the network, the profile has {sorted(seen)}')
            targets = None
            if rtx:
                targets = [t.name for t in config._targets] or ['portable']
                calls.compute_capabilities.append(targets)
                if 'CURRENT' in targets:
                    available, capability = torch_gpu()
                    if not available:
                        return fail('IBuilder::buildSerializedNetwork: Error Code 1: Cuda Runtime '
                                    '(In generateForCurrent (cudaError 35: CUDA driver version '
                                    'is insufficient for CUDA runtime version))')
                    targets = [f'SM{capability.replace(".", "")}']
            if config._timing_cache is not None and not rtx:  # the timings this build measured
                config._timing_cache._keys |= {json.dumps(profile, sort_keys=True)}
            if config.progress_monitor is not None and \
                    not run_monitor(config.progress_monitor, self._logger):
                return None
            description = dict(tensorrt=version, io=network._io, network_flags=network._flags,
                               tf32=trt.BuilderFlag.TF32 in config._flags,
                               profile={k: v for k, v in profile.items()}, targets=targets)
            return IHostMemory._new(ENGINE_MAGIC + json.dumps(description).encode())

    @no_constructor
    class IRuntimeCache:
        def _setup(self):
            self._kernels = set()

        def serialize(self):
            _, capability = torch_gpu()
            return IHostMemory._new(RUNTIME_CACHE_MAGIC + json.dumps(dict(
                version=version, compute_capability=capability,
                kernels=sorted(self._kernels))).encode())

        def deserialize(self, blob):
            blob = bytes(blob)
            _, capability = torch_gpu()
            stored = (json.loads(blob[len(RUNTIME_CACHE_MAGIC):])
                      if blob.startswith(RUNTIME_CACHE_MAGIC) else None)
            ok = (stored is not None and stored['version'] == version
                  and stored['compute_capability'] == capability)
            calls.runtime_cache_loads.append(ok)
            if ok:
                self._kernels = {tuple(k) for k in stored['kernels']}
            return ok

        def reset(self):
            self._kernels = set()
            return True

    @no_constructor
    class IRuntimeConfig:
        def _setup(self):
            self.dynamic_shapes_kernel_specialization_strategy = \
                trt.DynamicShapesKernelSpecializationStrategy.LAZY
            self.cuda_graph_strategy = trt.CudaGraphStrategy.DISABLED
            self._cache = None
            self._strategy = trt.ExecutionContextAllocationStrategy.STATIC

        def create_runtime_cache(self):
            return IRuntimeCache._new()

        def set_runtime_cache(self, cache=None):
            self._cache = cache
            return True

        def get_runtime_cache(self):
            return self._cache

        def set_execution_context_allocation_strategy(self, strategy):
            self._strategy = strategy

        def get_execution_context_allocation_strategy(self):
            return self._strategy

    @no_constructor
    class IExecutionContext:
        def _setup(self, engine, runtime_config=None):
            self._engine = engine
            self._runtime_config = runtime_config
            self._input_shape = None
            self._addresses = {}

        def set_input_shape(self, name, shape):
            shape = tuple(int(d) for d in shape)
            calls.input_shapes.append((name, shape))
            low, _, high = self._engine.get_tensor_profile_shape(name, 0)
            if len(shape) != len(low) or any(not lo <= d <= hi
                                             for lo, d, hi in zip(low, shape, high)):
                return False
            self._input_shape = shape
            config = self._runtime_config
            if rtx and config is not None and config.dynamic_shapes_kernel_specialization_strategy \
                    == trt.DynamicShapesKernelSpecializationStrategy.EAGER:
                self._compile(shape)
            return True

        def _compile(self, shape):
            cache = self._runtime_config.get_runtime_cache() if self._runtime_config else None
            kernels = cache._kernels if cache is not None else self._engine._kernels
            if shape not in kernels:
                calls.jit_compiles.append(shape)
                kernels.add(shape)

        def _kernels(self):
            cache = self._runtime_config.get_runtime_cache() if self._runtime_config else None
            return cache._kernels if cache is not None else self._engine._kernels

        def get_tensor_shape(self, name):
            tensor = self._engine._tensors[name]
            if tensor['mode'] == 'INPUT':
                return self._input_shape
            batch, height, width, _ = self._input_shape
            return (batch, tensor['channels'], height // OUTPUT_STRIDE, width // OUTPUT_STRIDE)

        def set_tensor_address(self, name, memory):
            if name not in self._engine._tensors or name in trt.refused_addresses or not memory:
                return False
            self._addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle):
            ready = (self._input_shape is not None
                     and set(self._addresses) == set(self._engine._tensors)
                     and all(self._addresses.values()))
            calls.executions.append(dict(stream=stream_handle, input_shape=self._input_shape,
                                         addresses=dict(self._addresses)))
            if ready and rtx and self._input_shape not in self._kernels():
                # LAZY (or NONE): this run used a fallback kernel; the specialised one is
                # compiled in the background for the next run.
                calls.fallback_runs.append(self._input_shape)
                self._compile(self._input_shape)
            if ready and trt.compute is not None:
                self._compute()
            return ready

        def _compute(self):
            """Host memory only (the tests' CPU stand-in): read the canvas, write the outputs."""
            import numpy as np
            tensors = self._engine._tensors
            [input_name] = [n for n, t in tensors.items() if t['mode'] == 'INPUT']
            shape = self._input_shape
            raw = ctypes.string_at(self._addresses[input_name], math.prod(shape))
            outputs = trt.compute(np.frombuffer(raw, np.uint8).reshape(shape).copy())
            names = [n for n, t in tensors.items() if t['mode'] == 'OUTPUT']
            for name, array in zip(names, outputs):
                array = np.ascontiguousarray(array, NUMPY_DTYPES[tensors[name]['dtype']])
                assert array.shape == tuple(self.get_tensor_shape(name)), (name, array.shape)
                ctypes.memmove(self._addresses[name], array.ctypes.data, array.nbytes)

    @no_constructor
    class ICudaEngine:
        def _setup(self, description):
            self._description = description
            self._tensors = {t['name']: t for t in description['io']}
            self._names = [t['name'] for t in description['io']]
            self._kernels = set()  # shapes compiled without a runtime cache (RTX)

        @property
        def num_io_tensors(self):
            return len(self._names)

        def get_tensor_name(self, index):
            return self._names[index]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode[self._tensors[name]['mode']]

        def get_tensor_dtype(self, name):
            return trt.DataType[self._tensors[name]['dtype']]

        def get_tensor_profile_shape(self, name, profile_index):
            return [tuple(s) for s in self._description['profile'][name]]

        def create_execution_context(self, *args, **kwargs):
            """(strategy=...) on every version, (runtime_config=...) on TensorRT for RTX: the
            binding's two overloads, one argument at most."""
            allowed = {'strategy', 'runtime_config'} if rtx else {'strategy'}
            assert len(args) + len(kwargs) <= 1 and set(kwargs) <= allowed, (args, kwargs)
            config = kwargs.get('runtime_config')
            if args and isinstance(args[0], IRuntimeConfig):
                config = args[0]
            calls.contexts.append(dict(kwargs) if kwargs else {'positional': args})
            return IExecutionContext._new(self, config)

        if rtx:
            def create_runtime_config(self):
                return IRuntimeConfig._new()

    class Runtime:
        def __init__(self, logger):
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            calls.deserialized += 1
            description = self._description(serialized_engine)
            if description is None:
                log_error(self._logger, 'fake: not a serialized engine')
                return None
            if description['tensorrt'] != version:  # engines load only on their own version
                log_error(self._logger, f'fake: the engine was built by TensorRT '
                                        f'{description["tensorrt"]}, this is {version}')
                return None
            return ICudaEngine._new(description)

        @staticmethod
        def _description(serialized_engine):
            blob = bytes(serialized_engine)
            return json.loads(blob[len(ENGINE_MAGIC):]) if blob.startswith(ENGINE_MAGIC) else None

        if rtx:
            def get_engine_validity(self, buffer):
                """(EngineValidity, diagnostics flags as int), as the binding returns them."""
                calls.validity_queries += 1
                flags = trt.EngineInvalidityDiagnostics
                available, capability = torch_gpu()
                if not available:  # the real one, without a driver: INVALID and no diagnostics
                    log_to(self._logger, ILogger.Severity.INTERNAL_ERROR,
                           'Error reading CUDA GPU properties (cudaError 35: CUDA driver '
                           'version is insufficient for CUDA runtime version)')
                    return trt.EngineValidity.INVALID, 0
                description = self._description(buffer)
                if description is None:
                    return trt.EngineValidity.INVALID, int(flags.MALFORMED_ENGINE)
                if description['tensorrt'] != version:
                    return trt.EngineValidity.INVALID, int(flags.VERSION_MISMATCH)
                targets = description['targets'] or ['portable']
                sms = (RTX_PORTABLE_SMS if targets == ['portable']
                       else tuple(int(t[2:]) for t in targets))
                if int(capability.replace('.', '')) not in sms:
                    return trt.EngineValidity.INVALID, int(flags.UNSUPPORTED_CC)
                return trt.EngineValidity.VALID, 0

    classes = [ILogger, Logger, INetworkDefinition, ITensor, OnnxParser, ParserError, ITimingCache,
               IOptimizationProfile, IProgressMonitor, IBuilderConfig, Builder, IHostMemory,
               IExecutionContext, ICudaEngine, Runtime]
    if rtx:
        classes += [IRuntimeConfig, IRuntimeCache]
    for cls in classes:
        setattr(trt, cls.__name__, cls)
    return trt


# --- what tests make that only the library makes ---------------------------------------------

def parser_error(trt, code_name, description, node_index=-1, name='', operator=''):
    """A ParserError as the fake parser reports it (the real class has no constructor)."""
    return trt.ParserError._new(code_name, description, node_index, name, operator)


def timing_cache(trt, keys=(), device=None):
    """An ITimingCache holding `keys` (the real class has no constructor)."""
    return trt.ITimingCache._new(keys, device)


def read_engine(path):
    """The JSON description inside a fake engine file."""
    blob = open(path, 'rb').read()
    assert blob.startswith(ENGINE_MAGIC)
    return json.loads(blob[len(ENGINE_MAGIC):])


def write_engine(path, description):
    """Write a fake engine file from a (possibly edited) description."""
    with open(path, 'wb') as f:
        f.write(ENGINE_MAGIC + json.dumps(description).encode())
