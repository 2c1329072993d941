"""A fake `tensorrt` module for contract tests on machines without TensorRT or a GPU.

It implements the slice of the TensorRT 10.x / 11.x Python API that centernet uses, with the
documented names and failure conventions (None from build_serialized_network and
deserialize_cuda_engine, False from parse_from_file, set_input_shape and execute_async_v3), and
records every call in `module.calls`, so tests can assert what our code asked TensorRT for.
It computes nothing: an "engine" is a JSON description of its I/O and profile.

Version differences it models (TensorRT 11 migration guide and 11.0 Python API reference):
  10.x  NetworkDefinitionCreationFlag: EXPLICIT_BATCH = 0 (deprecated, ignored), STRONGLY_TYPED = 1;
        BuilderFlag.FP16 exists (weak typing).
  11.x  NetworkDefinitionCreationFlag: STRONGLY_TYPED (deprecated, ignored: always strongly typed),
        at bit 0; no EXPLICIT_BATCH; no BuilderFlag.FP16 / INT8 / OBEY_PRECISION_CONSTRAINTS.

Knobs: `module.parser_errors` (a list of FakeParserError) makes the parse fail with them;
`module.fail_build = True` makes build_serialized_network return None.
"""

import enum
import json
import types
from dataclasses import dataclass, field

ENGINE_MAGIC = b'FAKE-TRT-ENGINE\n'
CACHE_MAGIC = b'FAKE-TRT-TIMING-CACHE\n'
ONNX_TO_TRT_DTYPE = {1: 'FLOAT', 10: 'HALF', 2: 'UINT8', 3: 'INT8', 6: 'INT32', 7: 'INT64',
                     9: 'BOOL', 16: 'BF16'}
OUTPUT_STRIDE = 4  # CenterNet: outputs at 1/4 of the canvas


@dataclass
class Calls:
    """What our code asked of the fake, in order."""

    network_flags: list = field(default_factory=list)        # create_network(flags)
    builder_flags_set: list = field(default_factory=list)    # config.set_flag(flag)
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


@dataclass
class FakeParserError:
    code_name: str
    description: str
    node_index: int = -1
    name: str = ''
    operator: str = ''

    def code(self):
        return types.SimpleNamespace(name=self.code_name)

    def desc(self):
        return self.description

    def node(self):
        return self.node_index

    def node_name(self):
        return self.name

    def node_operator(self):
        return self.operator


def make_fake_tensorrt(version='10.8.0.43'):
    """A fresh fake `tensorrt` module of `version` (10.x or 11.x naming)."""
    major = int(version.split('.')[0])
    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    trt.calls = Calls()
    trt.parser_errors = []
    trt.fail_build = False

    if major >= 11:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum('NetworkDefinitionCreationFlag', {
            'STRONGLY_TYPED': 0, 'PREFER_AOT_PYTHON_PLUGINS': 1, 'PREFER_JIT_PYTHON_PLUGINS': 2})
        trt.BuilderFlag = enum.IntEnum('BuilderFlag', {'DEBUG': 0, 'REFIT': 1, 'TF32': 2,
                                                       'STRIP_PLAN': 3})
    else:
        trt.NetworkDefinitionCreationFlag = enum.IntEnum('NetworkDefinitionCreationFlag', {
            'EXPLICIT_BATCH': 0, 'STRONGLY_TYPED': 1, 'PREFER_AOT_PYTHON_PLUGINS': 2,
            'PREFER_JIT_PYTHON_PLUGINS': 3})
        trt.BuilderFlag = enum.IntEnum('BuilderFlag', {
            'FP16': 0, 'INT8': 1, 'DEBUG': 2, 'REFIT': 3, 'TF32': 4, 'BF16': 5,
            'OBEY_PRECISION_CONSTRAINTS': 6, 'STRIP_PLAN': 7})
    trt.MemoryPoolType = enum.IntEnum('MemoryPoolType', {'WORKSPACE': 0, 'TACTIC_SHARED_MEMORY': 1})
    trt.DataType = enum.IntEnum('DataType', {'FLOAT': 0, 'HALF': 1, 'INT8': 2, 'INT32': 3,
                                             'BOOL': 4, 'UINT8': 5, 'BF16': 7, 'INT64': 8})
    trt.TensorIOMode = enum.IntEnum('TensorIOMode', {'NONE': 0, 'INPUT': 1, 'OUTPUT': 2})
    calls = trt.calls

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, min_severity=WARNING):
            self.min_severity = min_severity

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.io = []  # dicts: name, mode, dtype, channels

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.errors = []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, index):
            return self.errors[index]

        def parse_from_file(self, path):
            calls.parsed.append(str(path))
            if trt.parser_errors:
                self.errors = list(trt.parser_errors)
                return False
            import onnx
            model = onnx.load(str(path), load_external_data=False)
            for mode, values in (('INPUT', model.graph.input), ('OUTPUT', model.graph.output)):
                for value in values:
                    tensor_type = value.type.tensor_type
                    dims = [d.dim_value for d in tensor_type.shape.dim]
                    self.network.io.append(dict(
                        name=value.name, mode=mode,
                        dtype=ONNX_TO_TRT_DTYPE.get(tensor_type.elem_type, 'FLOAT'),
                        channels=dims[1] if mode == 'OUTPUT' else dims[3]))
            return True

    class TimingCache:
        def __init__(self, entries, foreign=False):
            self.entries = entries
            self.foreign = foreign

        def serialize(self):
            return CACHE_MAGIC + json.dumps(dict(version=version, entries=self.entries)).encode()

    class OptimizationProfile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):  # noqa: A002  (TensorRT's keyword names)
            shapes = tuple(tuple(int(d) for d in s) for s in (min, opt, max))
            calls.profile_shapes.append((name, *shapes))
            self.shapes[name] = shapes

    class IProgressMonitor:
        """Like pybind11's base: a subclass that skips __init__ is unusable."""

        def __init__(self):
            self.initialised = True

    class BuilderConfig:
        def __init__(self):
            self.profiles = []
            self.timing_cache = None
            self.progress_monitor = None

        def set_flag(self, flag):
            calls.builder_flags_set.append(flag)

        def set_memory_pool_limit(self, pool, size):
            calls.memory_pool_limits.append((pool.name, int(size)))

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob):
            blob = bytes(blob)
            calls.timing_cache_blobs.append(blob)
            if not blob:
                return TimingCache(0)
            if not blob.startswith(CACHE_MAGIC):
                return None
            stored = json.loads(blob[len(CACHE_MAGIC):])
            return TimingCache(stored['entries'], foreign=stored['version'] != version)

        def set_timing_cache(self, cache, ignore_mismatch):
            accepted = ignore_mismatch or not cache.foreign
            calls.timing_cache_attached.append((accepted, ignore_mismatch))
            if accepted:
                self.timing_cache = cache
            return accepted

        def get_timing_cache(self):
            return self.timing_cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            calls.network_flags.append(flags)
            return Network(flags)

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return OptimizationProfile()

        def build_serialized_network(self, network, config):
            calls.builds += 1
            if trt.fail_build or len(config.profiles) != 1 or not network.io:
                return None
            inputs = [t['name'] for t in network.io if t['mode'] == 'INPUT']
            if any(name not in config.profiles[0].shapes for name in inputs):
                return None  # a dynamic input without a profile: TensorRT errors out
            if config.timing_cache is not None:
                config.timing_cache.entries += 10  # the timings this build measured
            if config.progress_monitor is not None:  # the phase reports a real build makes
                monitor = config.progress_monitor
                assert monitor.initialised
                calls.progress_monitors.append(monitor)
                monitor.phase_start('Building engine', None, 2)
                monitor.phase_start('Tactic timing', 'Building engine', 3)
                for step in range(3):
                    if not monitor.step_complete('Tactic timing', step):
                        return None  # cancelled
                monitor.phase_finish('Tactic timing')
                monitor.step_complete('Building engine', 0)
                monitor.step_complete('Building engine', 1)
                monitor.phase_finish('Building engine')
            description = dict(tensorrt=version, io=network.io, network_flags=network.flags,
                               profile={k: v for k, v in config.profiles[0].shapes.items()})
            return ENGINE_MAGIC + json.dumps(description).encode()

    class ExecutionContext:
        def __init__(self, engine):
            self.engine = engine
            self.input_shape = None
            self.addresses = {}

        def set_input_shape(self, name, shape):
            shape = tuple(int(d) for d in shape)
            calls.input_shapes.append((name, shape))
            low, _, high = self.engine.get_tensor_profile_shape(name, 0)
            if len(shape) != len(low) or any(not lo <= d <= hi
                                             for lo, d, hi in zip(low, shape, high)):
                return False
            self.input_shape = shape
            return True

        def get_tensor_shape(self, name):
            tensor = self.engine.tensors[name]
            if tensor['mode'] == 'INPUT':
                return self.input_shape
            batch, height, width, _ = self.input_shape
            return (batch, tensor['channels'], height // OUTPUT_STRIDE, width // OUTPUT_STRIDE)

        def set_tensor_address(self, name, address):
            self.addresses[name] = int(address)
            return True

        def execute_async_v3(self, stream_handle):
            ready = (self.input_shape is not None
                     and set(self.addresses) == set(self.engine.tensors)
                     and all(self.addresses.values()))
            calls.executions.append(dict(stream=stream_handle, input_shape=self.input_shape,
                                         addresses=dict(self.addresses)))
            return ready

    class CudaEngine:
        def __init__(self, description):
            self.description = description
            self.tensors = {t['name']: t for t in description['io']}
            self.names = [t['name'] for t in description['io']]

        @property
        def num_io_tensors(self):
            return len(self.names)

        def get_tensor_name(self, index):
            return self.names[index]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode[self.tensors[name]['mode']]

        def get_tensor_dtype(self, name):
            return trt.DataType[self.tensors[name]['dtype']]

        def get_tensor_profile_shape(self, name, profile_index):
            return [tuple(s) for s in self.description['profile'][name]]

        def create_execution_context(self):
            return ExecutionContext(self)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, blob):
            calls.deserialized += 1
            blob = bytes(blob)
            if not blob.startswith(ENGINE_MAGIC):
                return None
            description = json.loads(blob[len(ENGINE_MAGIC):])
            if description['tensorrt'] != version:  # engines load only on their own version
                return None
            return CudaEngine(description)

    trt.Logger = Logger
    trt.IProgressMonitor = IProgressMonitor
    trt.Builder = Builder
    trt.OnnxParser = OnnxParser
    trt.Runtime = Runtime
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
