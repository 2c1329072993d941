"""A fake `tensorrt` module for contract tests on machines without TensorRT or a GPU.

It implements the slice of the TensorRT 10.x / 11.x Python API that centernet uses, under the real
names, with the real enum values and the real failure conventions, and records every call in
`module.calls`, so tests can assert what our code asked TensorRT for. It cannot invent API:
tests/test_tensorrt_api_names.py checks every class, member and enum value it provides against
the names extracted from TensorRT's own binding sources (tests/fixtures/tensorrt_api_*.txt).

Behaviours modelled, each from the bindings (python/src/infer/pyCore.cpp) or NvInfer.h:
  - create_network(flags): 10.x STRONGLY_TYPED = 1 (bit 0 is the ignored EXPLICIT_BATCH);
    11.x STRONGLY_TYPED = 0 (deprecated, ignored: every network is strongly typed), and no
    BuilderFlag.FP16 / INT8 / BF16 / OBEY_PRECISION_CONSTRAINTS.
  - IOptimizationProfile.set_shape raises RuntimeError when min/opt/max are inconsistent;
    a profile that does not match a fixed network dimension fails the build (an error logged,
    None returned).
  - A timing cache from another TensorRT version fails in create_timing_cache (None, an error
    logged); one from another device makes set_timing_cache(cache, ignore_mismatch=False)
    return False ("CUDA device property ... different", NvInfer.h setTimingCache).
  - IProgressMonitor: an exception in step_complete cancels the build (the binding's
    trampoline returns false); one in phase_start / phase_finish is printed and ignored.
  - build_serialized_network, deserialize_cuda_engine: None on failure, with errors logged
    through the ILogger the Builder / Runtime was given.

Knobs (module attributes, not TensorRT's): `parser_errors` (ParserError list) fails the parse;
`fail_build` fails the build with `build_errors` logged; `device_name` is the GPU the timing
cache is stamped with; `refused_addresses` names tensors set_tensor_address refuses;
`compute(canvases) -> [heatmap, wh, offset]` (numpy) makes execute_async_v3 write those arrays to
the output addresses (CPU memory: the contract tests' stand-in for the GPU).
It computes nothing itself: an "engine" is a JSON description of its I/O and profile.
"""

import ctypes
import enum
import json
import math
import sys
import types
from dataclasses import dataclass, field

ENGINE_MAGIC = b'FAKE-TRT-ENGINE\n'
CACHE_MAGIC = b'FAKE-TRT-TIMING-CACHE\n'
ONNX_TO_TRT_DTYPE = {1: 'FLOAT', 10: 'HALF', 2: 'UINT8', 3: 'INT8', 6: 'INT32', 7: 'INT64',
                     9: 'BOOL', 16: 'BF16'}
NUMPY_DTYPES = {'FLOAT': 'float32', 'HALF': 'float16', 'UINT8': 'uint8'}
OUTPUT_STRIDE = 4  # CenterNet: outputs at 1/4 of the canvas
# Module attributes that are the fake's own (knobs and records), not TensorRT's.
FAKE_ONLY = frozenset({'calls', 'parser_errors', 'fail_build', 'build_errors', 'device_name',
                       'refused_addresses', 'compute'})

# The values below are TensorRT's (tests/fixtures/tensorrt_api_*.txt, checked by a test).
# nvonnxparser::ErrorCode (NvOnnxParser.h), the same in 10.x and 11.x.
ErrorCode = enum.IntEnum('ErrorCode', {
    'SUCCESS': 0, 'INTERNAL_ERROR': 1, 'MEM_ALLOC_FAILED': 2, 'MODEL_DESERIALIZE_FAILED': 3,
    'INVALID_VALUE': 4, 'INVALID_GRAPH': 5, 'INVALID_NODE': 6, 'UNSUPPORTED_GRAPH': 7,
    'UNSUPPORTED_NODE': 8})


@dataclass
class Calls:
    """What our code asked of the fake, in order."""

    network_flags: list = field(default_factory=list)        # create_network(flags)
    builder_flags_set: list = field(default_factory=list)    # config.set_flag(flag)
    builder_flags_cleared: list = field(default_factory=list)  # config.clear_flag(flag)
    parsed: list = field(default_factory=list)               # parse_from_file / parse paths
    memory_pool_limits: list = field(default_factory=list)   # (pool name, bytes)
    profile_shapes: list = field(default_factory=list)       # (name, min, opt, max)
    timing_cache_blobs: list = field(default_factory=list)   # bytes given to create_timing_cache
    timing_cache_attached: list = field(default_factory=list)  # (accepted, ignore_mismatch)
    progress_monitors: list = field(default_factory=list)  # config.progress_monitor per build
    builds: int = 0
    deserialized: int = 0
    input_shapes: list = field(default_factory=list)         # (name, shape) per set_input_shape
    executions: list = field(default_factory=list)           # dict per execute_async_v3


class ParserError:
    """The ONNX parser's error record (ParserError in python/src/parsers/pyOnnx.cpp)."""

    def __init__(self, code_name, description, node_index=-1, name='', operator=''):
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


def make_fake_tensorrt(version='10.8.0.43'):
    """A fresh fake `tensorrt` module of `version` (10.x or 11.x naming and values)."""
    major = int(version.split('.')[0])
    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    trt.calls = Calls()
    trt.parser_errors = []
    trt.fail_build = False
    trt.build_errors = ['fake: the builder failed (fail_build)']
    trt.device_name = 'fake GPU'
    trt.refused_addresses = set()
    trt.compute = None
    calls = trt.calls

    if major >= 11:
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
    trt.ErrorCode = ErrorCode
    trt.ParserError = ParserError

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

    def log_error(logger, message):
        assert getattr(logger, '_initialised', False), 'an ILogger subclass skipped __init__'
        logger.log(ILogger.Severity.ERROR, message)

    class INetworkDefinition:
        def __init__(self, flags):
            self._flags = flags
            self._io = []  # dicts: name, mode, dtype, channels, dims (None where dynamic)

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
                    self._network._io.append(dict(
                        name=value.name, mode=mode, dims=dims,
                        dtype=ONNX_TO_TRT_DTYPE.get(tensor_type.elem_type, 'FLOAT'),
                        channels=dims[1] if mode == 'OUTPUT' else dims[3]))
            return True

    class ITimingCache:
        def __init__(self, keys=(), device=None):
            self._keys = set(keys)
            self._device = device or trt.device_name

        def serialize(self):
            return CACHE_MAGIC + json.dumps(dict(version=version, device=self._device,
                                                 keys=sorted(self._keys))).encode()

        def combine(self, input_cache, ignore_mismatch):
            if input_cache._device != self._device and not ignore_mismatch:
                return False
            self._keys |= input_cache._keys
            return True

    class IOptimizationProfile:
        def __init__(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 (the binding's keyword names)
            shapes = tuple(tuple(int(d) for d in s) for s in (min, opt, max))
            calls.profile_shapes.append((input, *shapes))
            low, mid, high = shapes
            if not (len(low) == len(mid) == len(high)
                    and all(a <= b <= c for a, b, c in zip(low, mid, high))):
                raise RuntimeError('Shape provided for opt is inconsistent with other shapes.')
            self._shapes[input] = shapes

    class IProgressMonitor:
        """Like pybind11's base: a subclass that skips __init__ is unusable."""

        def __init__(self):
            self._initialised = True

    class IBuilderConfig:
        def __init__(self, logger):
            self._logger = logger
            self._profiles = []
            self._timing_cache = None
            self._flags = {trt.BuilderFlag.TF32}  # TF32 is on by default (NvInfer.h kTF32)
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

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache):
            blob = bytes(serialized_timing_cache)
            calls.timing_cache_blobs.append(blob)
            if not blob:
                return ITimingCache()
            if not blob.startswith(CACHE_MAGIC):
                log_error(self._logger, 'fake: timing cache: not a serialized timing cache')
                return None
            stored = json.loads(blob[len(CACHE_MAGIC):])
            if stored['version'] != version:
                log_error(self._logger, f'fake: timing cache from TensorRT {stored["version"]}, '
                                        f'this is {version}')
                return None
            return ITimingCache(stored['keys'], stored['device'])

        def set_timing_cache(self, cache, ignore_mismatch):
            accepted = ignore_mismatch or cache._device == trt.device_name
            calls.timing_cache_attached.append((accepted, ignore_mismatch))
            if accepted:
                self._timing_cache = cache
            return accepted

        def get_timing_cache(self):
            return self._timing_cache

    def run_monitor(monitor):
        """The phases a build reports, three levels deep, through the binding's trampoline
        semantics; False when the build is cancelled."""
        calls.progress_monitors.append(monitor)
        assert monitor._initialised

        def call(method, *args):
            try:
                return getattr(monitor, method)(*args)
            except Exception as exc:  # the trampoline prints it, and step_complete cancels
                print(f'[ERROR] Exception caught in {method}(): {exc}', file=sys.stderr)
                return False if method == 'step_complete' else None

        call('phase_start', 'Building engine', None, 2)
        call('phase_start', 'Tactic timing', 'Building engine', 2)
        for step in range(2):
            call('phase_start', 'Layer timing', 'Tactic timing', 3)
            for inner in range(3):
                if call('step_complete', 'Layer timing', inner) is False:
                    return False
            call('phase_finish', 'Layer timing')
            if call('step_complete', 'Tactic timing', step) is False:
                return False
        call('phase_finish', 'Tactic timing')
        for step in range(2):
            if call('step_complete', 'Building engine', step) is False:
                return False
        call('phase_finish', 'Building engine')
        return True

    class Builder:
        def __init__(self, logger):
            self._logger = logger

        def create_network(self, flags=0):
            calls.network_flags.append(flags)
            return INetworkDefinition(flags)

        def create_builder_config(self):
            return IBuilderConfig(self._logger)

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            calls.builds += 1

            def fail(*messages):
                for message in messages:
                    log_error(self._logger, message)
                return None

            if trt.fail_build:
                return fail(*trt.build_errors)
            if len(config._profiles) != 1 or not network._io:
                return fail('fake: a network with inputs needs one optimisation profile')
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
            if config._timing_cache is not None:  # the timings this build measured
                config._timing_cache._keys |= {json.dumps(profile, sort_keys=True)}
            if config.progress_monitor is not None and not run_monitor(config.progress_monitor):
                return fail('fake: the build was cancelled by the progress monitor')
            description = dict(tensorrt=version, io=network._io, network_flags=network._flags,
                               tf32=trt.BuilderFlag.TF32 in config._flags,
                               profile={k: v for k, v in profile.items()})
            return ENGINE_MAGIC + json.dumps(description).encode()

    class IExecutionContext:
        def __init__(self, engine):
            self._engine = engine
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
            return True

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

    class ICudaEngine:
        def __init__(self, description):
            self._description = description
            self._tensors = {t['name']: t for t in description['io']}
            self._names = [t['name'] for t in description['io']]

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

        def create_execution_context(self):
            return IExecutionContext(self)

    class Runtime:
        def __init__(self, logger):
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            calls.deserialized += 1
            blob = bytes(serialized_engine)
            if not blob.startswith(ENGINE_MAGIC):
                log_error(self._logger, 'fake: not a serialized engine')
                return None
            description = json.loads(blob[len(ENGINE_MAGIC):])
            if description['tensorrt'] != version:  # engines load only on their own version
                log_error(self._logger, f'fake: the engine was built by TensorRT '
                                        f'{description["tensorrt"]}, this is {version}')
                return None
            return ICudaEngine(description)

    for cls in (ILogger, Logger, INetworkDefinition, OnnxParser, ITimingCache,
                IOptimizationProfile, IProgressMonitor, IBuilderConfig, Builder,
                IExecutionContext, ICudaEngine, Runtime):
        setattr(trt, cls.__name__, cls)
    return trt


def read_engine(path):
    """The JSON description inside a fake engine file."""
    blob = open(path, 'rb').read()
    assert blob.startswith(ENGINE_MAGIC)
    return json.loads(blob[len(ENGINE_MAGIC):])


def write_engine(path, description):
    """Write a fake engine file from a (possibly edited) description."""
    with open(path, 'wb') as f:
        f.write(ENGINE_MAGIC + json.dumps(description).encode())
