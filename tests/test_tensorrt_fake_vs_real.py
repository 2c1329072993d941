"""tests/fake_tensorrt.py held to the real TensorRT for RTX module, side by side on this CPU.

The fake stands in for TensorRT wherever a test needs a GPU (running an engine) or TensorRT 10/11
(not installable here). It was written from the bindings' source; the real `tensorrt_rtx`
installs here and showed where it was wrong. This test runs the same calls on both and compares
what a CPU can see: names and enum values, which classes have a Python constructor, what each call
returns, and the behaviours the kit depends on (a progress callback returning None, an invalid
profile, a foreign timing cache, the build's phases, the serialized engine's type). The 10.x and
11.x flavours of the fake share these behaviours (the bindings' source, NVIDIA/TensorRT python/src,
is one for the three), so they are compared too; where TensorRT 10/11 and TensorRT for RTX really
differ, docs/tensorrt.md has the table, and the fake keeps each side.
"""

import enum
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_tensorrt  # noqa: E402
from real_rtx import REASON, rtx  # noqa: E402
from test_tensorrt_api_names import fake_class_members, members_set_in_setup  # noqa: E402

pytestmark = pytest.mark.skipif(rtx is None, reason=REASON)

FLAVOURS = ['10.8.0.43', '11.0.0.12', fake_tensorrt.RTX_VERSION]


@pytest.fixture
def fake_rtx():
    return fake_tensorrt.make_fake_tensorrt(fake_tensorrt.RTX_VERSION)


def recording_logger(trt):
    class Recording(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines = []

        def log(self, severity, msg):
            self.lines.append((int(severity), str(msg)))

        def said(self, level):
            return [msg for severity, msg in self.lines if severity <= level]

    return Recording()


def has_constructor(cls):
    """False only when Python may not make the class at all ("No constructor defined!")."""
    try:
        cls()
    except TypeError as exc:
        return 'No constructor defined!' not in str(exc)
    return True


# --- names ------------------------------------------------------------------------------------

def test_every_name_the_rtx_fake_defines_is_the_real_modules(fake_rtx):
    """Module attributes, class members (read from the fake's source) and enum values: each one
    the fake has, the installed tensorrt_rtx has, with the same value."""
    members = fake_class_members()
    problems = []
    for name, value in vars(fake_rtx).items():
        if name in fake_tensorrt.FAKE_ONLY or name.startswith('__') and name != '__version__':
            continue
        if not hasattr(rtx, name):
            problems.append(f'{name} is not in tensorrt_rtx')
            continue
        real = getattr(rtx, name)
        if isinstance(value, type) and issubclass(value, enum.Enum):
            for member in value:
                real_member = getattr(real, member.name, None)
                if real_member is None or int(real_member) != int(member):
                    problems.append(f'{name}.{member.name} = {int(member)} in the fake, '
                                    f'{None if real_member is None else int(real_member)} real')
        elif isinstance(value, type):
            for member in sorted(members.get(value.__name__, ())):
                if not hasattr(value, member) and member not in members_set_in_setup(value):
                    continue
                if not hasattr(real, member):
                    problems.append(f'{name}.{member} is not in tensorrt_rtx')
    assert problems == []


def test_the_parsers_error_codes_are_the_real_ones():
    """ErrorCode 0-14 (the fake had 0-8)."""
    real = {name: int(value) for name, value in rtx.ErrorCode.__members__.items()}
    assert {m.name: int(m) for m in fake_tensorrt.ErrorCode} == real
    assert sorted(real.values()) == list(range(15))


def test_the_portable_targets_are_the_real_enums(fake_rtx):
    real = sorted(int(n[2:]) for n in rtx.ComputeCapability.__members__ if n.startswith('SM'))
    assert [sm for sm in real if sm >= 80] == list(fake_tensorrt.RTX_PORTABLE_SMS)


@pytest.mark.parametrize('version', FLAVOURS)
def test_the_same_classes_have_constructors(version):
    """ITimingCache, ICudaEngine, IBuilderConfig, ParserError, IHostMemory ... have none (the
    old fake let tests build them); Builder, Runtime, OnnxParser, ILogger, Logger,
    IProgressMonitor have one."""
    fake = fake_tensorrt.make_fake_tensorrt(version)
    classes = [name for name, value in vars(fake).items() if isinstance(value, type) and
               not issubclass(value, enum.Enum) and hasattr(rtx, name)]
    assert len(classes) >= 15
    got = {name: has_constructor(getattr(fake, name)) for name in classes}
    assert got == {name: has_constructor(getattr(rtx, name)) for name in classes}
    assert not got['ITimingCache'] and not got['IHostMemory'] and got['Builder']


# --- calls, side by side ----------------------------------------------------------------------

def network_of(trt, onnx_path):
    logger = recording_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse_from_file(str(onnx_path))
    return logger, builder, network, parsed


def small_profile(trt, builder):
    profile = builder.create_optimization_profile()
    returned = profile.set_shape('canvas', (1, 32, 32, 3), (2, 64, 64, 3), (2, 64, 64, 3))
    return profile, returned


class Phases:
    """An IProgressMonitor that records the phases and answers step_complete with `answer`."""

    @staticmethod
    def make(trt, answer):
        class Monitor(trt.IProgressMonitor):
            def __init__(self):
                trt.IProgressMonitor.__init__(self)
                self.started = []

            def phase_start(self, phase_name, parent_phase, num_steps):
                self.started.append((phase_name, parent_phase))

            def step_complete(self, phase_name, step):
                return answer

            def phase_finish(self, phase_name):
                pass

        return Monitor()


def build_with(trt, onnx_path, answer=True):
    logger, builder, network, _ = network_of(trt, onnx_path)
    config = builder.create_builder_config()
    profile, _ = small_profile(trt, builder)
    config.add_optimization_profile(profile)
    monitor = Phases.make(trt, answer)
    config.progress_monitor = monitor
    return builder.build_serialized_network(network, config), monitor, logger


@pytest.fixture(scope='module')
def real_build(onnx_paths):
    return build_with(rtx, onnx_paths['fp32'])


@pytest.mark.parametrize('version', FLAVOURS)
def test_the_calls_return_what_the_real_ones_return(version, onnx_paths, real_build):
    """Type names and values of what the kit calls, fake and real on the same ONNX."""
    fake = fake_tensorrt.make_fake_tensorrt(version)
    results = []
    for trt in (fake, rtx):
        logger, builder, network, parsed = network_of(trt, onnx_paths['fp32'])
        config = builder.create_builder_config()
        profile, set_shape = small_profile(trt, builder)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            cache = config.create_timing_cache(b'')
        tensor = network.get_input(0)
        results.append(dict(
            parsed=parsed, network=type(network).__name__, config=type(config).__name__,
            profile=type(profile).__name__, set_shape=set_shape,
            added=config.add_optimization_profile(profile), cache=type(cache).__name__,
            tensor=type(tensor).__name__, name=tensor.name, dtype=tensor.dtype.name,
            shape=[int(d) for d in tensor.shape],  # real: a Dims; fake: a tuple; both iterate
            profile_shape=[[int(d) for d in s] for s in profile.get_shape('canvas')],
            inputs=network.num_inputs, outputs=network.num_outputs))
    assert results[0] == results[1]
    assert results[1]['parsed'] is True and results[1]['added'] == 0


@pytest.mark.parametrize('version', FLAVOURS)
def test_the_serialized_engine_is_host_memory(version, onnx_paths, real_build):
    """build_serialized_network returns an IHostMemory: a buffer (memoryview, bytes()) with
    .nbytes, and no len() (the old fake returned bytes)."""
    fake_serialized = build_with(fake_tensorrt.make_fake_tensorrt(version), onnx_paths['fp32'])[0]
    for serialized in (fake_serialized, real_build[0]):
        assert type(serialized).__name__ == 'IHostMemory'
        assert serialized.nbytes == memoryview(serialized).nbytes == len(bytes(serialized)) > 0
        with pytest.raises(TypeError, match='has no len'):
            len(serialized)


@pytest.mark.parametrize('version', FLAVOURS)
def test_a_progress_callback_returning_none_cancels_the_build(version, onnx_paths):
    """step_complete must return True: None (a method that forgets to return) cancels, with
    BuildCanceled logged, in the real binding; the old fake went on."""
    for trt in (fake_tensorrt.make_fake_tensorrt(version), rtx):
        serialized, _, logger = build_with(trt, onnx_paths['fp16'], answer=None)
        assert serialized is None
        assert any('BuildCanceled' in line for line in logger.said(1)), logger.lines


def test_the_phases_are_the_real_builds(onnx_paths, real_build, fake_rtx):
    """The fake replays a real build's phases: the same phases under the same parents, in the
    same order, six levels deep (the old fake had three levels of invented ones)."""
    fake_monitor = build_with(fake_rtx, onnx_paths['fp32'])[1]
    real_monitor = real_build[1]
    assert fake_monitor.started == real_monitor.started
    parents = dict(real_monitor.started)

    def depth(name):
        return 0 if parents[name] is None else 1 + depth(parents[name])
    assert len(real_monitor.started) == 14 and max(map(depth, parents)) == 5


@pytest.mark.parametrize('version', FLAVOURS)
def test_an_invalid_profile_is_refused_when_added(version):
    """min > opt: set_shape raises nothing (the old fake raised), add_optimization_profile
    returns -1 and the reason is logged, naming MIN<=OPT<=MAX."""
    for trt in (fake_tensorrt.make_fake_tensorrt(version), rtx):
        logger = recording_logger(trt)
        builder = trt.Builder(logger)
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        assert profile.set_shape('canvas', (4, 32, 32, 3), (2, 672, 672, 3),
                                 (32, 672, 672, 3)) is None
        assert config.add_optimization_profile(profile) == -1
        assert any('MIN<=OPT<=MAX' in line for line in logger.said(1)), logger.lines


@pytest.mark.parametrize('version', FLAVOURS)
def test_a_foreign_timing_cache_gives_an_empty_one_and_a_warning(version):
    """create_timing_cache on bytes it cannot read returns a cache (empty), not None, and says
    so in a warning (the old fake returned None)."""
    for trt in (fake_tensorrt.make_fake_tensorrt(version), rtx):
        logger = recording_logger(trt)
        config = trt.Builder(logger).create_builder_config()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            cache = config.create_timing_cache(b'not a timing cache at all')
        assert type(cache).__name__ == 'ITimingCache'
        warned = [line for severity, line in logger.lines if severity == 2]
        assert any('Returning an empty timing cache' in line for line in warned), logger.lines


def test_the_rtx_timing_cache_calls_are_deprecated_no_ops(fake_rtx):
    """TensorRT for RTX warns (DeprecationWarning) on its timing-cache calls, fake and real."""
    for trt in (fake_rtx, rtx):
        config = trt.Builder(recording_logger(trt)).create_builder_config()
        with pytest.warns(DeprecationWarning, match='no-ops in TensorRT-RTX'):
            config.set_timing_cache(config.create_timing_cache(b''), False)


def test_the_targets_calls_answer_as_the_real_ones(fake_rtx):
    """num_compute_capabilities / set_compute_capability: what is accepted and refused."""
    answers = []
    for trt in (fake_rtx, rtx):
        config = trt.Builder(recording_logger(trt)).create_builder_config()
        cc = trt.ComputeCapability
        row = [config.num_compute_capabilities]
        config.num_compute_capabilities = 2
        row += [config.set_compute_capability(cc.SM86, 0),
                config.set_compute_capability(cc.SM89, 1),
                config.set_compute_capability(cc.CURRENT, 0),
                config.set_compute_capability(cc.NONE, 1),
                config.set_compute_capability(cc.SM86, 5),
                [config.get_compute_capability(i).name for i in range(2)]]
        config.num_compute_capabilities = 1
        row.append(config.set_compute_capability(cc.CURRENT, 0))
        answers.append(row)
    assert answers[0] == answers[1] == [0, True, True, False, False, False, ['SM86', 'SM89'], True]


def test_engine_validity_without_a_gpu_is_the_real_answer(fake_rtx, onnx_paths, real_build):
    """Runtime.get_engine_validity returns (EngineValidity, diagnostics int); with no GPU both
    say INVALID with no diagnostic (the kit asks it only on a GPU)."""
    fake_serialized = build_with(fake_rtx, onnx_paths['fp32'])[0]
    answers = []
    for trt, serialized in ((fake_rtx, fake_serialized), (rtx, real_build[0])):
        validity, diagnostics = trt.Runtime(recording_logger(trt)).get_engine_validity(serialized)
        answers.append((type(validity).__name__, validity.name, type(diagnostics).__name__,
                        diagnostics))
    assert answers[0] == answers[1] == ('EngineValidity', 'INVALID', 'int', 0)


def test_the_execution_context_overloads_are_the_real_ones(fake_rtx, onnx_paths):
    """create_execution_context(strategy=...) or (runtime_config=...): the real binding's two
    overloads (read from its signature), both taken by the fake's engine."""
    doc = rtx.ICudaEngine.create_execution_context.__doc__
    assert 'strategy: tensorrt_rtx_bindings.tensorrt_rtx.ExecutionContextAllocationStrategy' in doc
    assert 'runtime_config: tensorrt_rtx_bindings.tensorrt_rtx.IRuntimeConfig' in doc
    serialized = build_with(fake_rtx, onnx_paths['fp32'])[0]
    engine = fake_rtx.Runtime(recording_logger(fake_rtx)).deserialize_cuda_engine(serialized)
    assert engine.create_execution_context(
        strategy=fake_rtx.ExecutionContextAllocationStrategy.STATIC) is not None
    assert engine.create_execution_context(
        runtime_config=engine.create_runtime_config()) is not None
    with pytest.raises(AssertionError):
        engine.create_execution_context(runtime_cache=None)
