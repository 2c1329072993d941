"""Contract tests for the TensorRT layer: centernet.engine, build_engine.py, TrtBackend.

CONTRACT TESTS, NOT PROOF THAT TENSORRT WORKS. They run on CPU against tests/fake_tensorrt.py, a
stand-in `tensorrt` / `tensorrt_rtx` module that records calls, with torch.cuda's GPU queries
monkeypatched and a CPU stand-in for the backend's CUDA side. They check that our code asks
TensorRT 10.x / 11.x and TensorRT for RTX for the right things through the documented Python API
(strongly typed networks, never BuilderFlag.FP16, the optimisation profile, memory pool, timing
cache, targets, runtime config and cache, parser errors, set_input_shape / set_tensor_address /
execute_async_v3) and that every failure is a one-line UserError. The real builder builds every
graph in tests/test_tensorrt_real_builder.py; running an engine needs a GPU.
"""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from centernet.engine import build as eb
from centernet.engine import parts, sidecar
from centernet import onnx_export as ox
from centernet.backends.tensorrt_backend import TrtBackend
from centernet.config import CenterNetSpec
from centernet.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_tensorrt  # noqa: E402

TRT10, TRT11, RTX = '10.8.0.43', '11.0.0.12', fake_tensorrt.RTX_VERSION
PROFILE = eb.Profile()  # batch 1..32 (opt 32), sides 32..672 (opt 672)


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def onnx_files(onnx_paths):
    """The FP32 ONNX of the seeded model and its FP16 form, from export.py (conftest: once per
    session)."""
    return onnx_paths


@pytest.fixture
def install_trt(monkeypatch):
    """install_trt(version) puts a fresh fake into sys.modules and returns it: `tensorrt` for
    10.x / 11.x, `tensorrt_rtx` for 1.x (then `tensorrt` is made unimportable, so that
    --runtime auto takes TensorRT for RTX, as on a machine with only that one)."""
    def install(version=TRT10):
        module = fake_tensorrt.make_fake_tensorrt(version)
        if module.__name__ == 'tensorrt_rtx':
            monkeypatch.setitem(sys.modules, 'tensorrt', None)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return module
    return install


@pytest.fixture
def trt(install_trt):
    return install_trt(TRT10)


class FakeGpu:
    """The answers torch.cuda gives about the GPU; tests change them to move to another card."""

    def __init__(self):
        self.name = 'NVIDIA Fake H100'
        self.capability = (9, 0)


@pytest.fixture
def gpu(monkeypatch):
    state = FakeGpu()
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda index=None: state.name)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda index=None: state.capability)
    return state


class CpuStandIn:
    """CudaStreamDevice's methods on the CPU: what the tests inject instead of a CUDA stream."""

    device = torch.device('cpu')
    stream_handle = 0x5EED

    def __init__(self):
        self.allocations = []

    def upload(self, cpu_tensor):
        return cpu_tensor.clone()

    def empty(self, numel, dtype):
        self.allocations.append((numel, dtype))
        return torch.empty(numel, dtype=dtype)

    def hold(self, tensor):
        pass

    def enqueue(self, launch):
        return launch(self.stream_handle)


def quiet(*args, **kwargs):
    pass


def build(onnx, engine, precision='fp16', profile=PROFILE, check=False, **kwargs):
    """build_engine without its self-check (tests/test_engine_self_check.py tests that)."""
    return eb.build_engine(onnx, engine, precision, profile, check=check, log=quiet, **kwargs)


def copy_onnx(src, folder):
    dst = Path(folder) / src.name
    shutil.copyfile(src, dst)
    return dst


# --- build: network, profile, memory pool -------------------------------------------------------

@pytest.mark.parametrize('version, strongly_typed_bit', [(TRT10, 1), (TRT11, 0)])
def test_build_is_strongly_typed_and_never_sets_fp16(install_trt, gpu, onnx_files, tmp_path,
                                                     version, strongly_typed_bit):
    """Contract: create_network gets the STRONGLY_TYPED bit read from the enum (1 on 10.x, where
    bit 0 is the ignored EXPLICIT_BATCH; 0 on 11.x, where EXPLICIT_BATCH is gone), and no builder
    flag, BuilderFlag.FP16 in particular, is ever set: precision comes from the FP16 ONNX."""
    trt = install_trt(version)
    build(onnx_files['fp16'], tmp_path / 'm.engine')
    assert trt.calls.network_flags == [1 << strongly_typed_bit]
    assert trt.calls.builder_flags_set == []
    assert trt.calls.parsed == [str(onnx_files['fp16'])]
    built = fake_tensorrt.read_engine(tmp_path / 'm.engine')
    assert built['network_flags'] == 1 << strongly_typed_bit


def test_profile_and_memory_pool(trt, gpu, onnx_files, tmp_path):
    """Contract: one optimisation profile on `canvas`, as (B, H, W, 3) min/opt/max, and the
    workspace memory pool limit in bytes."""
    profile = eb.Profile(min_batch=2, opt_batch=8, max_batch=16, min_side=64, opt_side=512,
                         max_side=640)
    build(onnx_files['fp16'], tmp_path / 'm.engine', profile=profile, workspace_gib=2.5)
    assert trt.calls.profile_shapes == [
        ('canvas', (2, 64, 64, 3), (8, 512, 512, 3), (16, 640, 640, 3))]
    assert trt.calls.memory_pool_limits == [('WORKSPACE', int(2.5 * 2**30))]


def test_default_profile_is_batch_1_to_32_sides_32_to_672(trt, gpu, onnx_files, tmp_path):
    """Contract: the default profile the brief asks for."""
    build(onnx_files['fp16'], tmp_path / 'm.engine')
    assert trt.calls.profile_shapes == [
        ('canvas', (1, 32, 32, 3), (32, 672, 672, 3), (32, 672, 672, 3))]


@pytest.mark.parametrize('profile, words', [
    (eb.Profile(min_batch=4, opt_batch=2), '--min_batch'),
    (eb.Profile(min_side=48), 'multiples of 32'),
    (eb.Profile(max_side=640, opt_side=672), '--max_side'),
])
def test_bad_profile_is_a_user_error(trt, gpu, onnx_files, tmp_path, profile, words):
    with pytest.raises(UserError, match=words):
        build(onnx_files['fp16'], tmp_path / 'm.engine', profile=profile)
    assert trt.calls.builds == 0


# --- build: precision ---------------------------------------------------------------------------

def test_fp16_from_fp32_onnx_converts_next_to_it_and_says_so(trt, gpu, onnx_files, tmp_path):
    """Contract: fp16 asked, FP32 ONNX given -> the FP16 ONNX is written beside it (convert_fp16)
    and parsed; the sidecar keeps the sha256 of the ONNX the user named."""
    fp32 = copy_onnx(onnx_files['fp32'], tmp_path)
    said = []
    record = eb.build_engine(fp32, tmp_path / 'm.engine', 'fp16', PROFILE, check=False,
                             log=said.append)
    made = tmp_path / 'centernet_fp16.onnx'
    assert made.is_file()
    assert ox.read_metadata(made)[2]['centernet.precision'] == 'fp16'
    assert trt.calls.parsed == [str(made)]
    assert any('FP32 ONNX' in line and str(made) in line for line in said)
    assert record['precision'] == 'fp16'
    assert record['onnx_sha256'] == eb.sha256_of(fp32)
    assert record['parsed_onnx'] == str(made)
    assert trt.calls.builder_flags_set == []


def test_fp32_build_parses_the_fp32_onnx_strongly_typed(trt, gpu, onnx_files, tmp_path):
    record = build(onnx_files['fp32'], tmp_path / 'm.engine', precision='fp32')
    assert trt.calls.parsed == [str(onnx_files['fp32'])]
    assert trt.calls.network_flags == [1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)]
    assert record['precision'] == 'fp32'
    io = {t['name']: t['dtype'] for t in fake_tensorrt.read_engine(tmp_path / 'm.engine')['io']}
    assert io == {'canvas': 'UINT8', 'heatmap': 'FLOAT', 'wh': 'FLOAT', 'offset': 'FLOAT'}


def test_fp32_asked_with_fp16_onnx_is_a_user_error(trt, gpu, onnx_files, tmp_path):
    with pytest.raises(UserError, match='FP16 ONNX.*--precision fp16'):
        build(onnx_files['fp16'], tmp_path / 'm.engine', precision='fp32')
    assert not (tmp_path / 'm.engine').exists()


# --- build: sidecar, timing cache, failures -----------------------------------------------------

def test_sidecar_records_what_the_engine_was_built_from_and_for(trt, gpu, onnx_files, tmp_path):
    engine = tmp_path / 'm.engine'
    build(onnx_files['fp16'], engine, workspace_gib=3)
    record = json.loads((tmp_path / 'm.engine.json').read_text())
    assert record['format'] == eb.SIDECAR_FORMAT
    assert record['tensorrt'] == TRT10
    assert (record['gpu'], record['compute_capability']) == ('NVIDIA Fake H100', '9.0')
    assert record['precision'] == 'fp16' and record['strongly_typed'] is True
    assert record['profile'] == PROFILE.to_dict()
    assert record['canvas_shapes']['max'] == [32, 672, 672, 3]
    assert record['onnx_sha256'] == eb.sha256_of(onnx_files['fp16'])
    assert record['engine_sha256'] == eb.sha256_of(engine)
    spec, classes, meta = ox.read_metadata(onnx_files['fp16'])
    assert CenterNetSpec.from_dict(record['spec']) == spec
    assert tuple(record['classes']) == classes
    assert record['onnx_metadata'] == meta


def cache_keys(path):
    return set(json.loads(path.read_bytes()[len(fake_tensorrt.CACHE_MAGIC):])['keys'])


def test_timing_cache_is_reused_and_saved_back(trt, gpu, onnx_files, tmp_path):
    """Contract: first build starts an empty cache and writes it next to the engine; the second
    build hands those bytes to create_timing_cache and saves the grown cache back. Each says what
    TensorRT did: a new cache, then the file reused."""
    cache_file = tmp_path / 'tensorrt_timing.cache'
    said = []
    eb.build_engine(onnx_files['fp16'], tmp_path / 'a.engine', check=False, log=said.append)
    first = cache_file.read_bytes()
    assert len(cache_keys(cache_file)) == 1
    eb.build_engine(onnx_files['fp16'], tmp_path / 'b.engine',
                    profile=eb.Profile(max_batch=8, opt_batch=8), check=False, log=said.append)
    assert [line.split(' (')[0] for line in said if line.startswith('timing cache:')] == [
        f'timing cache: new; saved to {cache_file} after the build',
        f'timing cache: reusing {cache_file}']
    assert trt.calls.timing_cache_blobs[:2] == [b'', first]
    assert trt.calls.timing_cache_attached == [(True, False), (True, False)]
    assert len(cache_keys(cache_file)) == 2  # the first build's timings and the second's


def test_timing_cache_save_keeps_what_another_build_saved_meanwhile(trt, tmp_path):
    """Contract (NVIDIA's updateTimingCacheFile): the save combines this build's timings into
    the file as it is at save time, so two builds sharing the file lose nothing."""
    path = tmp_path / 'shared.cache'
    ours, theirs = (fake_tensorrt.timing_cache(trt, {'ours'}),
                    fake_tensorrt.timing_cache(trt, {'theirs'}))
    config = trt.Builder(trt.Logger()).create_builder_config()
    parts.TimingCacheFile(path, quiet).save(config, theirs)  # another build, finished first
    parts.TimingCacheFile(path, quiet).save(config, ours)
    assert cache_keys(path) == {'ours', 'theirs'}


def test_timing_cache_is_written_under_an_exclusive_lock_and_renamed(trt, tmp_path,
                                                                     monkeypatch):
    """Contract: the file is read, combined and replaced (os.replace of a temp file) while an
    exclusive flock on `<cache>.lock` is held, and the lock is released afterwards."""
    import fcntl
    import os
    events = []
    real_flock, real_replace = fcntl.flock, os.replace

    def flock(fd, operation):
        events.append(('flock', os.readlink(f'/proc/self/fd/{fd}'), operation))
        return real_flock(fd, operation)

    def replace(src, dst):
        events.append(('replace', str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(fcntl, 'flock', flock)
    monkeypatch.setattr(os, 'replace', replace)
    path = tmp_path / 'shared.cache'
    config = trt.Builder(trt.Logger()).create_builder_config()
    parts.TimingCacheFile(path, quiet).save(config, fake_tensorrt.timing_cache(trt, {'k'}))
    lock = str(tmp_path / 'shared.cache.lock')
    assert events == [('flock', lock, fcntl.LOCK_EX), ('replace', str(path)),
                      ('flock', lock, fcntl.LOCK_UN)]
    assert cache_keys(path) == {'k'}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['shared.cache', 'shared.cache.lock']


def test_build_shows_tensorrt_phases_as_progress_bars(trt, gpu, onnx_files, tmp_path, capsys):
    """Contract: config.progress_monitor is an initialised trt.IProgressMonitor; the phases the
    builder reports (the fake replays a real build's: tensorrt_rtx reports 5 steps of the top
    phase's 6) become bars (a nested one indented, and cleared when it ends), a finished phase's
    bar shows it complete, and every bar is closed."""
    build(onnx_files['fp16'], tmp_path / 'm.engine')
    [monitor] = trt.calls.progress_monitors
    assert isinstance(monitor, trt.IProgressMonitor) and monitor.bars == {}
    err = capsys.readouterr().err
    assert 'Building engine: 100%' in err and '6/6' in err
    assert '  Cloning network graph:' in err


def test_progress_bars_nest_at_any_depth(trt, gpu, onnx_files, tmp_path, monkeypatch):
    """Contract: a phase's bar sits one line below its parent's, at every depth (the fake
    replays a real build: six levels). Regression: `parent.pos + 1` put the third level on
    line 0, since tqdm keeps a fixed position as its negative."""
    import tqdm as tqdm_module
    positions = {}

    class Recording(tqdm_module.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            positions.setdefault(kwargs['desc'].strip(), set()).add(kwargs['position'])

    monkeypatch.setattr(tqdm_module, 'tqdm', Recording)
    build(onnx_files['fp16'], tmp_path / 'm.engine')
    assert positions == {
        'Building engine': {0}, 'Cloning network graph': {1},
        'Preparing graph for optimization': {1}, 'Building engine from subgraph': {1},
        'Optimizing graph': {2}, 'Computing profile costs': {2}, 'Timing tactics': {3},
        'Determining refit engines': {3}, 'Timing graph nodes': {4},
        'Timing tensor reformats': {4}, 'Computing reformatting costs': {5}}
    [monitor] = trt.calls.progress_monitors
    assert monitor.bars == {} and monitor.depths == {}


def test_progress_display_errors_cannot_cancel_the_build(trt, gpu, onnx_files, tmp_path,
                                                         monkeypatch, capsys):
    """Contract: an exception in the progress display (here: tqdm itself) never leaves the
    monitor's methods, so TensorRT's trampoline does not cancel the build; one warning says so.
    The fake cancels, as the binding does, when step_complete raises."""
    import tqdm as tqdm_module

    class Broken(tqdm_module.tqdm):
        def update(self, n=1):
            raise OSError('terminal gone')

    monkeypatch.setattr(tqdm_module, 'tqdm', Broken)
    record = build(onnx_files['fp16'], tmp_path / 'm.engine')
    assert (tmp_path / 'm.engine').is_file() and record['engine_sha256']
    err = capsys.readouterr().err
    assert err.count('warning: the build progress display failed (OSError: terminal gone)') == 1
    assert 'cancelled' not in err


@pytest.mark.parametrize('version', [TRT10, TRT11])
@pytest.mark.parametrize('precision', ['fp16', 'fp32'])
def test_tf32_is_cleared_for_every_engine(install_trt, gpu, onnx_files, tmp_path, version,
                                          precision):
    """Contract: TF32 (on by default) is cleared for fp32 engines and for the FP32 islands of
    the fp16 engine, on 10.x and 11.x; the sidecar says so."""
    trt = install_trt(version)
    record = build(onnx_files[precision], tmp_path / 'm.engine', precision=precision)
    assert trt.calls.builder_flags_cleared == [trt.BuilderFlag.TF32]
    assert fake_tensorrt.read_engine(tmp_path / 'm.engine')['tf32'] is False
    assert record['tf32'] is False


def test_failed_build_shows_the_errors_tensorrt_logged(trt, gpu, onnx_files, tmp_path, capsys):
    trt.fail_build = True
    trt.build_errors = ['Error Code 2: Internal Error (no tactic for /backbone/conv1)',
                        'Error Code 10: Internal Error (could not find any implementation)']
    with pytest.raises(UserError) as error:
        build(onnx_files['fp16'], tmp_path / 'm.engine')
    message = str(error.value)
    assert '2 error(s) logged' in message and 'could not find any implementation' in message
    assert '--workspace' not in message  # no guess
    err = capsys.readouterr().err
    assert '[TensorRT ERROR] Error Code 2: Internal Error (no tactic' in err
    assert not (tmp_path / 'm.engine').exists()


def test_an_invalid_profile_keeps_tensorrts_reason(trt, gpu, onnx_files, tmp_path, monkeypatch):
    """Contract: TensorRT refuses min > opt in add_optimization_profile (-1, the reason logged;
    set_shape raises nothing): one UserError with the shapes and TensorRT's first logged reason,
    not the build's later "no optimization profile has been defined". The kit's own check
    (Profile.validate) is bypassed to let the profile reach TensorRT."""
    monkeypatch.setattr(eb.Profile, 'validate', lambda self: self)
    with pytest.raises(UserError) as error:
        build(onnx_files['fp16'], tmp_path / 'm.engine',
              profile=eb.Profile(min_batch=4, opt_batch=2))
    message = str(error.value)
    assert 'refused the optimisation profile min/opt/max canvas 4x32x32x3 / 2x672x672x3 / ' \
           '32x672x672x3' in message
    assert 'MIN<=OPT<=MAX' in message and 'no optimization profile' not in message
    assert trt.calls.builds == 0 and not (tmp_path / 'm.engine').exists()


@pytest.fixture(scope='module')
def static_onnx(static_paths):
    """An FP32 ONNX exported with a fixed shape (export.py --static 2x96x128: conftest)."""
    return static_paths['fp32']


def test_static_onnx_gets_a_profile_at_exactly_its_shape(trt, gpu, static_onnx, tmp_path):
    """Contract: a static ONNX's canvas is fixed; TensorRT takes fixed dimensions only with
    min = opt = max (the fake fails the build otherwise, as TensorRT does), so the profile is
    exactly its shape, the flags are said not to apply, and --if-stale compares the same."""
    engine = tmp_path / 'm.engine'
    said = []
    record = eb.build_engine(static_onnx, engine, 'fp32', PROFILE, check=False,
                             log=said.append)
    assert trt.calls.profile_shapes == [('canvas', (2, 96, 128, 3), (2, 96, 128, 3),
                                         (2, 96, 128, 3))]
    assert record['profile'] == {'batch': 2, 'height': 96, 'width': 128}
    assert not any('do not apply' in line for line in said)  # the default profile: no note
    eb.build_engine(static_onnx, engine, 'fp32', eb.Profile(max_batch=8, opt_batch=8),
                    check=False, log=said.append)
    assert any('fixed input shape' in line and 'do not apply' in line for line in said)
    current, reason = eb.engine_is_current(engine, static_onnx, 'fp32', PROFILE,
                                           require_check=False)
    assert current and 'fixed shape 2x96x128' in reason
    backend = open_backend(engine)
    assert (backend.limits.min_batch, backend.limits.max_batch) == (2, 2)


def test_profile_against_a_fixed_dimension_fails_the_fake_build_like_tensorrt(
        trt, gpu, static_onnx, tmp_path, monkeypatch):
    """The fake itself: without the fixed-shape profile the build fails with TensorRT's kind of
    error, so the test above would catch a regression."""
    monkeypatch.setattr(eb, 'resolve_profile', lambda onnx, profile, log=None: profile)
    with pytest.raises(UserError, match='could not build.*dimension 0 is fixed at 2'):
        build(static_onnx, tmp_path / 'm.engine', precision='fp32')


def test_timing_cache_from_another_tensorrt_is_said_unused(install_trt, gpu, onnx_files, tmp_path):
    """Contract: TensorRT does not refuse another version's cache in create_timing_cache: it
    returns an empty one and logs a warning (the real tensorrt_rtx does so on foreign bytes). The
    build says the file was not used, with TensorRT's words, never "reusing", and the file is
    replaced by this version's cache."""
    cache_file = tmp_path / 'my.cache'
    install_trt(TRT10)
    build(onnx_files['fp16'], tmp_path / 'a.engine', timing_cache_path=cache_file)
    first = cache_file.read_bytes()
    trt11 = install_trt(TRT11)
    said = []
    eb.build_engine(onnx_files['fp16'], tmp_path / 'b.engine', 'fp16', PROFILE,
                    timing_cache_path=cache_file, check=False, log=said.append)
    assert trt11.calls.timing_cache_blobs[0] == first  # the file was handed to TensorRT
    assert trt11.calls.timing_cache_attached == [(True, False)]
    [line] = [line for line in said if line.startswith('timing cache:')]
    assert 'not used (TensorRT: Failed to deserialize timing cache' in line
    assert 'reusing' not in ' '.join(said)
    assert json.loads(cache_file.read_bytes()[len(fake_tensorrt.CACHE_MAGIC):])['version'] == TRT11


def test_timing_cache_from_another_gpu_starts_fresh(trt, gpu, onnx_files, tmp_path):
    """Contract: set_timing_cache(cache, ignore_mismatch=False) returns False for a cache timed
    on a device with other properties; the build attaches a fresh one instead."""
    cache_file = tmp_path / 'my.cache'
    build(onnx_files['fp16'], tmp_path / 'a.engine', timing_cache_path=cache_file)
    trt.device_name = 'another fake GPU'
    said = []
    eb.build_engine(onnx_files['fp16'], tmp_path / 'b.engine', 'fp16', PROFILE,
                    timing_cache_path=cache_file, check=False, log=said.append)
    assert trt.calls.timing_cache_attached == [(True, False), (False, False), (True, False)]
    assert any('another GPU' in line for line in said)
    stored = json.loads(cache_file.read_bytes()[len(fake_tensorrt.CACHE_MAGIC):])
    assert stored['device'] == 'another fake GPU'


def test_parser_errors_are_all_printed_and_raised(trt, gpu, onnx_files, tmp_path, capsys):
    trt.parser_errors = [
        fake_tensorrt.parser_error(trt, 'UNSUPPORTED_NODE', 'no importer for op Foo', 3,
                                   '/head/Foo', 'Foo'),
        fake_tensorrt.parser_error(trt, 'INVALID_GRAPH', 'dangling tensor x', -1)]
    with pytest.raises(UserError) as error:
        build(onnx_files['fp16'], tmp_path / 'm.engine')
    message = str(error.value)
    assert '2 error(s)' in message and 'node /head/Foo (Foo): UNSUPPORTED_NODE' in message
    assert '\n' not in message
    printed = capsys.readouterr().err
    assert 'no importer for op Foo' in printed
    assert 'graph: INVALID_GRAPH: dangling tensor x' in printed
    assert trt.calls.builds == 0
    assert not (tmp_path / 'm.engine').exists()


def test_failed_build_keeps_the_old_engine_and_sidecar(trt, gpu, onnx_files, tmp_path):
    engine = tmp_path / 'm.engine'
    build(onnx_files['fp16'], engine)
    before = engine.read_bytes(), (tmp_path / 'm.engine.json').read_text()
    trt.fail_build = True
    with pytest.raises(UserError, match='could not build'):
        build(onnx_files['fp16'], engine)
    assert (engine.read_bytes(), (tmp_path / 'm.engine.json').read_text()) == before


def test_not_our_onnx_is_a_user_error(trt, gpu, tmp_path):
    with pytest.raises(UserError, match='not found'):
        build(tmp_path / 'missing.onnx', tmp_path / 'm.engine')


# --- missing TensorRT / GPU ---------------------------------------------------------------------

def assert_names_alternatives(message):
    assert 'inference.py --engine model.onnx' in message
    assert '--backend torch --weight' in message and '--cfg' in message
    assert '\n' not in message


def test_no_tensorrt_is_a_user_error_naming_alternatives(monkeypatch, gpu, onnx_files, tmp_path):
    monkeypatch.setitem(sys.modules, 'tensorrt', None)  # `import tensorrt` raises ImportError
    monkeypatch.setitem(sys.modules, 'tensorrt_rtx', None)  # and so does TensorRT for RTX
    for attempt in (lambda: build(onnx_files['fp16'], tmp_path / 'm.engine'),
                    lambda: eb.engine_is_current(tmp_path / 'm.engine', onnx_files['fp16'],
                                                 'fp16', PROFILE),
                    lambda: TrtBackend(tmp_path / 'm.engine')):
        with pytest.raises(UserError) as error:
            attempt()
        assert 'TensorRT is not usable' in str(error.value)
        assert_names_alternatives(str(error.value))


def test_no_cuda_gpu_is_a_user_error_naming_alternatives(trt, monkeypatch, onnx_files, tmp_path):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for attempt in (lambda: build(onnx_files['fp16'], tmp_path / 'm.engine'),
                    lambda: TrtBackend(tmp_path / 'm.engine')):
        with pytest.raises(UserError) as error:
            attempt()
        assert 'no CUDA GPU' in str(error.value)
        assert_names_alternatives(str(error.value))


def test_tensorrt_8_is_refused(install_trt, gpu, onnx_files, tmp_path):
    install_trt('8.6.1')
    with pytest.raises(UserError, match='TensorRT 8.6.1 is too old'):
        build(onnx_files['fp16'], tmp_path / 'm.engine')


# --- staleness ----------------------------------------------------------------------------------

def test_engine_is_current_and_every_staleness_reason(install_trt, gpu, onnx_files, tmp_path):
    onnx = copy_onnx(onnx_files['fp16'], tmp_path)
    engine = tmp_path / 'm.engine'
    install_trt(TRT10)
    current, reason = eb.engine_is_current(engine, onnx, 'fp16', PROFILE)
    assert not current and 'does not exist' in reason

    build(onnx, engine)  # without its self-check: current only when none is required
    current, reason = eb.engine_is_current(engine, onnx, 'fp16', PROFILE, require_check=False)
    assert current and TRT10 in reason
    current, reason = eb.engine_is_current(engine, onnx, 'fp16', PROFILE)
    assert not current and reason == ('self-check: skipped, not passed (--skip-check accepts '
                                      'an engine without one)')

    def stale(precision='fp16', profile=PROFILE):
        current, reason = eb.engine_is_current(engine, onnx, precision, profile,
                                               require_check=False)
        assert not current
        return reason

    assert 'precision: built with fp16, now fp32' in stale(precision='fp32')
    assert 'profile: built with batch 1..32' in stale(profile=eb.Profile(max_batch=64,
                                                                          opt_batch=64))
    gpu.capability = (8, 9)
    assert 'compute capability: built with 9.0, now 8.9' in stale()
    gpu.capability = (9, 0)
    gpu.name = 'NVIDIA Fake H200'
    assert 'GPU: built with NVIDIA Fake H100, now NVIDIA Fake H200' in stale()
    gpu.name = 'NVIDIA Fake H100'
    install_trt(TRT11)
    assert f'TensorRT version: built with {TRT10}, now {TRT11}' in stale()
    install_trt(TRT10)
    import onnx as onnx_lib
    changed = onnx_lib.load(str(onnx))
    changed.doc_string = 'changed'  # a changed ONNX (its bytes are all that is compared)
    onnx_lib.save(changed, str(onnx))
    assert 'ONNX sha256' in stale()
    (tmp_path / 'm.engine.json').unlink()
    assert 'sidecar' in stale()


# --- build_engine.py ----------------------------------------------------------------------------

def test_cli_if_stale_builds_once_then_says_current(trt, gpu, onnx_files, tmp_path, capsys):
    import build_engine
    engine = tmp_path / 'm.engine'
    argv = ['--model', str(onnx_files['fp16']), '--engine', str(engine), '--max_batch', '8',
            '--opt_batch', '8', '--workspace', '1', '--skip-check', '--if-stale']
    assert build_engine.main(argv) == 0
    assert trt.calls.builds == 1
    assert 'is stale' in capsys.readouterr().out
    assert build_engine.main(argv) == 0
    assert trt.calls.builds == 1
    assert 'is current' in capsys.readouterr().out
    assert trt.calls.profile_shapes[0][3] == (8, 672, 672, 3)
    assert trt.calls.memory_pool_limits == [('WORKSPACE', 2**30)]

    check = argv[:-1] + ['--check']
    assert build_engine.main(check) == 0
    assert build_engine.main(check[:-1] + ['--precision', 'fp32', '--check']) == 1
    assert 'stale: precision' in capsys.readouterr().out
    with pytest.raises(UserError, match='exists: pass --if-stale'):
        build_engine.main(argv[:-1])
    assert build_engine.main(argv[:-1] + ['--force']) == 0
    assert trt.calls.builds == 2


# --- the backend --------------------------------------------------------------------------------

@pytest.fixture
def engine(trt, gpu, onnx_files, tmp_path):
    path = tmp_path / 'm.engine'
    build(onnx_files['fp16'], path)
    return path


def open_backend(engine):
    return TrtBackend(engine, gpu=CpuStandIn())


def test_backend_opens_with_spec_classes_and_profile(engine, onnx_files):
    backend = open_backend(engine)
    spec, classes, _ = ox.read_metadata(onnx_files['fp16'])
    assert backend.name == 'tensorrt'
    assert backend.spec == spec and backend.classes == classes
    assert backend.max_batch == 32
    described = backend.describe()
    assert described['tensorrt'] == TRT10 and described['precision'] == 'fp16'
    assert described['gpu'] == 'NVIDIA Fake H100' and described['compute_capability'] == '9.0'
    assert described['profile'] == PROFILE.to_dict()


def test_backend_sets_input_shape_and_all_four_addresses_per_batch(engine, trt):
    """Contract: per batch, set_input_shape('canvas', (B, H, W, 3)), set_tensor_address for the
    input and the three outputs (with the data_ptr of the tensors returned), execute_async_v3 on
    the backend's stream; outputs are (B, 80, H/4, W/4) float32 views."""
    backend = open_backend(engine)
    for batch, height, width in ((1, 512, 672), (3, 384, 544), (32, 672, 672), (2, 64, 32)):
        canvases = torch.zeros((batch, height, width, 3), dtype=torch.uint8)
        heatmap, wh, offset = backend.infer(canvases)
        assert trt.calls.input_shapes[-1] == ('canvas', (batch, height, width, 3))
        assert heatmap.shape == (batch, 80, height // 4, width // 4)
        assert wh.shape == offset.shape == (batch, 2, height // 4, width // 4)
        assert {t.dtype for t in (heatmap, wh, offset)} == {torch.float32}
        run = trt.calls.executions[-1]
        assert run['stream'] == CpuStandIn.stream_handle
        assert set(run['addresses']) == {'canvas', 'heatmap', 'wh', 'offset'}
        assert run['addresses']['heatmap'] == heatmap.data_ptr()
        assert run['addresses']['wh'] == wh.data_ptr()
        assert run['addresses']['offset'] == offset.data_ptr()
    assert len(trt.calls.executions) == 4


def test_backend_output_buffers_grow_only_when_needed(engine):
    backend = open_backend(engine)
    gpu = backend.gpu
    backend.infer(torch.zeros((4, 512, 512, 3), dtype=torch.uint8))
    first = len(gpu.allocations)
    assert first == 3
    heatmap, _, _ = backend.infer(torch.zeros((2, 256, 512, 3), dtype=torch.uint8))
    assert len(gpu.allocations) == first  # smaller batch: views of the same buffers
    backend.infer(torch.zeros((8, 512, 512, 3), dtype=torch.uint8))
    assert len(gpu.allocations) == first + 3


@pytest.mark.parametrize('shape, words', [
    ((33, 512, 512), 'batch size 33 is beyond.*--max_batch'),
    ((2, 704, 512), 'outside 32..672.*--max_side'),
    ((2, 520, 512), 'not a multiple of 32'),
])
def test_backend_refuses_shapes_outside_the_profile(engine, trt, shape, words):
    backend = open_backend(engine)
    with pytest.raises(UserError, match=words):
        backend.infer(torch.zeros((*shape, 3), dtype=torch.uint8))
    assert trt.calls.executions == []


def test_backend_refuses_batch_beyond_profile_in_run_too(engine, trt):
    backend = open_backend(engine)
    with pytest.raises(UserError, match='batch 40 is outside 1..32.*--max_batch'):
        backend.run(torch.zeros((40, 64, 64, 3), dtype=torch.uint8))
    assert trt.calls.input_shapes == []


def test_backend_refuses_engine_from_another_tensorrt(engine, install_trt):
    install_trt(TRT11)
    with pytest.raises(UserError, match=f'built with TensorRT {TRT10}, but TensorRT {TRT11} is '
                                        'installed: rebuild it with python3 build_engine.py'):
        open_backend(engine)


def test_backend_refuses_engine_for_another_gpu_architecture(engine, gpu):
    gpu.capability = (8, 6)
    with pytest.raises(UserError, match='compute capability 9.0.*is 8.6: rebuild'):
        open_backend(engine)


def test_backend_without_sidecar_says_rebuild(engine):
    (engine.parent / 'm.engine.json').unlink()
    with pytest.raises(UserError, match='sidecar JSON.*build_engine.py'):
        open_backend(engine)


def test_backend_refuses_engine_that_does_not_match_its_sidecar(engine):
    with open(engine, 'ab') as f:
        f.write(b' ')
    with pytest.raises(UserError, match='does not match its sidecar'):
        open_backend(engine)


def rewrite_engine(engine, edit):
    """Edit a fake engine's description and keep the sidecar's sha256 in step with it."""
    description = fake_tensorrt.read_engine(engine)
    edit(description)
    fake_tensorrt.write_engine(engine, description)
    sidecar = engine.parent / (engine.name + '.json')
    record = json.loads(sidecar.read_text())
    record['engine_sha256'] = eb.sha256_of(engine)
    sidecar.write_text(json.dumps(record))


def test_backend_deserialize_failure_is_a_user_error(engine):
    rewrite_engine(engine, lambda d: d.update(tensorrt='10.0.0'))  # fake refuses other versions
    with pytest.raises(UserError, match='could not deserialize.*TensorRT said: fake: the engine '
                                        'was built by TensorRT 10.0.0'):
        open_backend(engine)


def test_backend_checks_tensor_names_against_the_onnx_contract(engine):
    rewrite_engine(engine, lambda d: d['io'][1].update(name='scores'))
    with pytest.raises(UserError, match="I/O tensors .*'scores'.*expected"):
        open_backend(engine)


def test_backend_checks_tensor_dtypes(engine):
    rewrite_engine(engine, lambda d: d['io'][1].update(dtype='HALF'))
    with pytest.raises(UserError, match="tensor 'heatmap' is OUTPUT HALF, expected OUTPUT FLOAT"):
        open_backend(engine)


def test_backend_refuses_cpu_canvases_given_straight_to_run_on_gpu(engine):
    backend = open_backend(engine)
    backend.device = torch.device('cuda')  # as on a GPU: a CPU tensor must go through upload()
    with pytest.raises(UserError, match='pass them through backend.upload'):
        backend.run(torch.zeros((1, 64, 64, 3), dtype=torch.uint8))


def test_backend_checks_set_tensor_address(engine, trt):
    """Contract: set_tensor_address returns a bool; False (TensorRT did not take the pointer)
    is a UserError before anything runs, not a run on stale buffers."""
    backend = open_backend(engine)
    trt.refused_addresses = {'wh'}
    with pytest.raises(UserError, match="refused the memory of tensor 'wh'"):
        backend.infer(torch.zeros((1, 64, 64, 3), dtype=torch.uint8))
    assert trt.calls.executions == []


def test_backend_refuses_canvases_on_another_gpu(engine):
    """Contract: the device index counts, not only its type: canvases on cuda:1 never reach an
    engine on cuda:0 (a tensor-like stand-in: there is no CUDA here)."""
    import types
    backend = open_backend(engine)
    backend.device = torch.device('cuda', 0)
    on_gpu1 = types.SimpleNamespace(dtype=torch.uint8, ndim=4, shape=(1, 64, 64, 3),
                                    device=torch.device('cuda', 1))
    with pytest.raises(UserError, match='canvases are on cuda:1, the engine runs on cuda:0'):
        backend.run(on_gpu1)


# --- TensorRT for RTX (the fake's tensorrt_rtx flavour) -----------------------------------------

@pytest.fixture
def rtx(install_trt, gpu):
    """A fake tensorrt_rtx as the only TensorRT, on an RTX 4090 (sm 8.9) unless a test moves."""
    gpu.name, gpu.capability = 'NVIDIA GeForce RTX 4090', (8, 9)
    return install_trt(RTX)


def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


def test_rtx_builds_without_a_gpu_for_its_portable_targets(rtx, onnx_files, tmp_path,
                                                           monkeypatch):
    """--runtime auto takes TensorRT for RTX when `tensorrt` does not import; with no GPU it
    builds: no compute capability set (the library's default), no timing cache touched, the
    sidecar says runtime, version, targets, no GPU, and a pending self-check."""
    no_gpu(monkeypatch)
    record = build(onnx_files['fp16'], tmp_path / 'm.engine', check=True)
    assert rtx.calls.compute_capabilities == [['portable']]
    assert rtx.calls.timing_cache_blobs == [] and rtx.calls.timing_cache_attached == []
    assert rtx.calls.network_flags == [1]
    assert (record['runtime'], record['runtime_version']) == ('tensorrt-rtx', RTX)
    assert record['targets'] == ['8.0', '8.6', '8.9', '12.0', '12.1']
    assert (record['gpu'], record['timing_cache']) == (None, None)
    assert record['self_check']['status'] == 'pending'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.engine', 'm.engine.json']


def test_rtx_built_on_a_gpu_it_does_not_target_leaves_the_check_pending(rtx, gpu, onnx_files,
                                                                         tmp_path):
    """An engine for other GPUs, named as a list, built on an H200 (sm 9.0, not a target)
    cannot run there: its check waits for a target GPU instead of failing (and rejecting the
    engine) where it cannot run; --if-stale then takes it as current, not as one to rebuild."""
    gpu.name, gpu.capability = 'NVIDIA H200', (9, 0)
    record = build(onnx_files['fp16'], tmp_path / 'm.engine', check=True,
                   compute_capability='8.6,8.9')
    assert record['self_check']['status'] == 'pending'
    assert 'built on a GPU it does not target (NVIDIA H200, sm 9.0' in \
        record['self_check']['reason']
    assert rtx.calls.executions == [] and (tmp_path / 'm.engine').is_file()
    current, reason = sidecar.engine_is_current(tmp_path / 'm.engine', onnx_files['fp16'], 'fp16',
                                                PROFILE, compute_capability='8.6,8.9')
    assert current, reason


@pytest.mark.parametrize('capability, words', [
    ((9, 0), 'TensorRT for RTX does not target this GPU (NVIDIA GPU, sm 9.0)'),
    ((7, 5), 'portable targets (8.0, 8.6, 8.9, 12.0, 12.1) leave out this GPU (NVIDIA GPU, sm '
             '7.5), so the engine could not run here: pass --compute_capability current'),
])
def test_a_portable_build_whose_targets_leave_out_the_gpu_is_refused(rtx, gpu, onnx_files,
                                                                     tmp_path, capability, words):
    """Turing (7.5: a target only when named) and Hopper (9.0: never a target) with only TensorRT
    for RTX: a default build would write an engine that can never run on the GPU at hand, and
    --if-stale would rebuild it on every run. build, --if-stale and --check all refuse in one
    line, before any build; the advice, followed, builds one that runs here."""
    import build_engine
    from common import run_main
    gpu.name, gpu.capability = 'NVIDIA GPU', capability
    argv = ['--model', str(onnx_files['fp16']), '--engine', str(tmp_path / 'm.engine'),
            '--skip-check']
    for mode in ([], ['--if-stale'], ['--check']):
        with pytest.raises(UserError, match=re.escape(words)) as error:
            build_engine.main(argv + mode)
        assert '\n' not in str(error.value)
    assert rtx.calls.builds == 0 and not (tmp_path / 'm.engine').exists()
    if capability == (7, 5):  # the advice, as written
        with pytest.raises(SystemExit) as done:
            run_main(build_engine.main, argv + ['--compute_capability', 'current'])
        assert done.value.code == 0
        record = json.loads((tmp_path / 'm.engine.json').read_text())
        assert record['targets'] == ['7.5']
        TrtBackend(tmp_path / 'm.engine', gpu=CpuStandIn(), log=quiet)  # it opens here


def test_rtx_targets_current_and_a_list(rtx, gpu, onnx_files, tmp_path):
    """current: ComputeCapability.CURRENT on this GPU (recorded as its capability); a list:
    those members in that order; a GPU the library does not know is refused in one line."""
    record = build(onnx_files['fp16'], tmp_path / 'a.engine', runtime='tensorrt-rtx',
                   compute_capability='current')
    assert record['targets'] == ['8.9'] and record['compute_capabilities_set'] == ['CURRENT']
    assert record['gpu'] == 'NVIDIA GeForce RTX 4090'
    record = build(onnx_files['fp16'], tmp_path / 'b.engine', compute_capability='8.6, 8.9')
    assert rtx.calls.compute_capabilities[-1] == ['SM86', 'SM89']
    assert record['targets'] == ['8.6', '8.9'] and record['targets_requested'] == 'list'
    with pytest.raises(UserError, match='does not target this GPU .*sm 9.0.*--runtime tensorrt'):
        gpu.capability = (9, 0)
        build(onnx_files['fp16'], tmp_path / 'c.engine', compute_capability='current')


@pytest.mark.parametrize('capability', [(7, 5), (9, 0)])
def test_a_portable_engine_on_a_gpu_it_leaves_out_advises_a_build_that_runs_there(
        rtx, gpu, install_trt, onnx_files, tmp_path, monkeypatch, capability):
    """A portable engine built without a GPU, opened on Turing (7.5, a target only when named)
    or Hopper (9.0, never one): the error's command, run as printed on this GPU, builds an
    engine that opens here (TensorRT for RTX for this GPU; TensorRT 10 on Hopper), not the same
    portable engine again."""
    import shlex
    import build_engine
    engine = tmp_path / 'm.engine'
    no_gpu(monkeypatch)
    build(onnx_files['fp16'], engine)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    gpu.name, gpu.capability = 'NVIDIA GPU', capability
    with pytest.raises(UserError) as error:
        TrtBackend(engine, gpu=CpuStandIn())
    message = str(error.value)
    assert 'was built for compute capabilities 8.0, 8.6, 8.9, 12.0, 12.1, and this GPU' in message
    [command] = re.findall(r'python3 build_engine\.py .*? --force', message)
    assert '--compute_capability portable' not in command
    if capability == (9, 0):
        assert 'TensorRT for RTX does not target this GPU' in message
        install_trt(TRT10)  # what the message says to install
    assert build_engine.main(shlex.split(command)[2:] + ['--skip-check']) == 0
    backend = TrtBackend(engine, gpu=CpuStandIn(), log=quiet)
    assert backend.describe()['compute_capability'] == f'{capability[0]}.{capability[1]}'


def test_a_compute_capability_list_of_nothing_says_so(rtx, onnx_files, tmp_path):
    with pytest.raises(UserError, match=r"--compute_capability ' , ': TensorRT for RTX .* "
                                        r"comma list of 7.5, .*; it names none$"):
        build(onnx_files['fp16'], tmp_path / 'm.engine', compute_capability=' , ')
    with pytest.raises(UserError, match="9.0, 9.1 are not among them$"):
        build(onnx_files['fp16'], tmp_path / 'm.engine', compute_capability='8.6,9.0,9.1')


def test_the_rebuild_command_runs_as_printed_from_another_folder(trt, gpu, onnx_files, tmp_path,
                                                                  monkeypatch):
    """Built from a relative ONNX path with a profile of its own: the sidecar's rebuild command,
    run as printed from another folder, builds the same engine again (the ONNX, precision and
    profile the sidecar records), as --if-stale then confirms."""
    import shlex
    import build_engine
    (tmp_path / 'models').mkdir()
    copy_onnx(onnx_files['fp16'], tmp_path / 'models')
    monkeypatch.chdir(tmp_path)
    profile = eb.Profile(2, 4, 8, 64, 320, 640)
    first = build(Path('models/centernet_fp16.onnx'), Path('models/m.engine'), profile=profile)
    command = sidecar.rebuild_command(first, tmp_path / 'models' / 'm.engine')
    (tmp_path / 'elsewhere').mkdir()
    monkeypatch.chdir(tmp_path / 'elsewhere')
    argv = shlex.split(command)
    assert argv[:2] == ['python3', 'build_engine.py'] and argv[-1] == '--force'
    assert build_engine.main(argv[2:] + ['--skip-check']) == 0
    again = json.loads((tmp_path / 'models' / 'm.engine.json').read_text())
    assert again['profile'] == profile.to_dict() and trt.calls.builds == 2
    assert (again['onnx_sha256'], again['precision']) == (first['onnx_sha256'], 'fp16')
    current, reason = eb.engine_is_current(tmp_path / 'models' / 'm.engine', again['onnx'],
                                           'fp16', profile, require_check=False)
    assert current, reason
    assert '--reference_onnx' not in argv  # the FP32 sibling: build_engine.py finds it itself


def test_the_rebuild_command_keeps_a_reference_onnx_given_elsewhere(trt, gpu, onnx_files,
                                                                     tmp_path):
    """An engine checked against an FP32 ONNX build_engine.py would not find by itself (its
    sidecar as a self-check leaves it): the rebuild command passes it, so the rebuilt engine is
    checked against it again instead of being left unchecked; the FP32 sibling is not passed."""
    import shlex
    from centernet.engine.check import find_reference_onnx
    (tmp_path / 'models').mkdir()
    (tmp_path / 'reference').mkdir()
    onnx = copy_onnx(onnx_files['fp16'], tmp_path / 'models')
    reference = tmp_path / 'reference' / 'fp32.onnx'
    shutil.copyfile(onnx_files['fp32'], reference)
    record = build(onnx, tmp_path / 'models' / 'm.engine')
    assert find_reference_onnx(onnx, 'fp16') is None  # no sibling: unchecked without the flag
    for given, passed in ((reference, str(reference)), (onnx.with_name('centernet.onnx'), None)):
        record['self_check'] = {'status': 'passed', 'reference_onnx': str(given)}
        argv = shlex.split(sidecar.rebuild_command(record, tmp_path / 'models' / 'm.engine'))
        flag = argv[argv.index('--reference_onnx') + 1] if '--reference_onnx' in argv else None
        assert flag == passed
    assert find_reference_onnx(onnx, 'fp16', str(reference)) == reference  # what the build checks


def test_out_of_memory_without_a_gpu_names_only_the_workspace(rtx, onnx_files, tmp_path,
                                                              monkeypatch):
    no_gpu(monkeypatch)
    rtx.fail_build = True
    rtx.build_errors = ['Error Code 1: OutOfMemory (Requested size was 1048576 bytes.)']
    with pytest.raises(UserError) as error:
        build(onnx_files['fp16'], tmp_path / 'm.engine')
    assert 'raise --workspace (now 4 GiB) to more than it asked for' in str(error.value)
    assert 'GPU' not in str(error.value).split('It ran out of memory')[1]


def test_compute_capability_is_refused_for_tensorrt(trt, gpu, onnx_files, tmp_path):
    with pytest.raises(UserError, match='--compute_capability 8.6: TensorRT builds for the GPU '
                                        'it runs on .*the flag is for --runtime tensorrt-rtx'):
        build(onnx_files['fp16'], tmp_path / 'm.engine', compute_capability='8.6')
    assert trt.calls.builds == 0


def test_rtx_backend_runs_eager_shapes_with_a_runtime_cache_beside_the_engine(rtx, onnx_files,
                                                                              tmp_path):
    """The context comes from an IRuntimeConfig: EAGER shape specialisation (a new shape is
    compiled before it runs: no fallback kernel ever runs), CUDA graphs off, the runtime cache
    file loaded, and saved at close with the new shapes' kernels; a second load reuses them."""
    engine = tmp_path / 'm.engine'
    build(onnx_files['fp16'], engine)
    said = []
    backend = TrtBackend(engine, gpu=CpuStandIn(), log=said.append)
    assert rtx.calls.validity_queries == 1
    assert [set(c) for c in rtx.calls.contexts] == [{'runtime_config'}]
    config = backend._context_state[0]
    assert config.dynamic_shapes_kernel_specialization_strategy == \
        rtx.DynamicShapesKernelSpecializationStrategy.EAGER
    assert config.cuda_graph_strategy == rtx.CudaGraphStrategy.DISABLED
    assert any('runtime cache: none at' in line for line in said)
    for shape in ((1, 64, 64), (2, 96, 64), (1, 64, 64)):
        backend.infer(torch.zeros((*shape, 3), dtype=torch.uint8))
    assert rtx.calls.fallback_runs == []
    assert rtx.calls.jit_compiles == [(1, 64, 64, 3), (2, 96, 64, 3)]
    cache = tmp_path / 'm.engine.runtime_cache'
    backend.close()
    assert cache.is_file()
    said.clear()
    again = TrtBackend(engine, gpu=CpuStandIn(), log=said.append)
    assert rtx.calls.runtime_cache_loads == [True]
    assert any(line.startswith(f'runtime cache: reusing the compiled kernels in {cache}')
               for line in said)
    again.infer(torch.zeros((2, 96, 64, 3), dtype=torch.uint8))
    assert rtx.calls.jit_compiles == [(1, 64, 64, 3), (2, 96, 64, 3)]  # none compiled again


def test_rtx_runtime_cache_is_not_written_per_shape_but_when_due_and_at_close(
        rtx, onnx_files, tmp_path, monkeypatch):
    """A new input shape's kernels are not written in the request path: the cache is saved at
    open (the context's JIT, no file yet), then at most every SAVE_SECONDS while new shapes come,
    and at close with the rest; nothing is written when no kernel is new."""
    engine = tmp_path / 'm.engine'
    build(onnx_files['fp16'], engine)
    now = [0.0]
    monkeypatch.setattr(parts.time, 'monotonic', lambda: now[0])
    saved = []
    real_save = parts.RuntimeCacheFile.save
    monkeypatch.setattr(parts.RuntimeCacheFile, 'save',
                        lambda self, cache: (saved.append(cache.serialize().nbytes),
                                             real_save(self, cache)))
    backend = TrtBackend(engine, gpu=CpuStandIn(), log=quiet)
    assert len(saved) == 1  # the context's JIT
    for side in (64, 96, 128):
        backend.infer(torch.zeros((1, side, side, 3), dtype=torch.uint8))
    assert len(saved) == 1  # three new shapes, nothing written yet
    now[0] += parts.RuntimeCacheFile.SAVE_SECONDS
    backend.infer(torch.zeros((1, 160, 160, 3), dtype=torch.uint8))
    assert len(saved) == 2  # due: one save with all four shapes
    backend.infer(torch.zeros((1, 192, 192, 3), dtype=torch.uint8))
    backend.infer(torch.zeros((1, 64, 64, 3), dtype=torch.uint8))  # an old shape: nothing new
    backend.close()
    assert len(saved) == 3 and saved[2] > saved[1] > saved[0]
    backend.close()
    assert len(saved) == 3
    again = TrtBackend(engine, gpu=CpuStandIn(), log=quiet)
    compiled = len(rtx.calls.jit_compiles)
    again.infer(torch.zeros((1, 192, 192, 3), dtype=torch.uint8))  # written at close: reused
    assert len(rtx.calls.jit_compiles) == compiled and len(saved) == 3


def test_rtx_runtime_cache_goes_beside_the_engine_a_link_points_at(rtx, onnx_files, tmp_path):
    """serve.py's model instances open the engine through a symbolic link in a temporary
    repository: the runtime cache is written beside the real engine, where the next start finds
    it, not into the temporary folder."""
    engine = tmp_path / 'm.engine'
    build(onnx_files['fp16'], engine)
    linked = tmp_path / 'repository'
    linked.mkdir()
    for name in ('m.engine', 'm.engine.json'):
        (linked / name).symlink_to(tmp_path / name)
    backend = TrtBackend(linked / 'm.engine', gpu=CpuStandIn(), log=quiet)
    backend.infer(torch.zeros((1, 64, 64, 3), dtype=torch.uint8))
    backend.close()
    assert (tmp_path / 'm.engine.runtime_cache').is_file()
    assert sorted(p.name for p in linked.iterdir()) == ['m.engine', 'm.engine.json']


def test_the_fakes_lazy_strategy_runs_a_fallback_kernel_first(rtx, onnx_files, tmp_path):
    """The fake itself: under LAZY (the library's default) a new shape runs on a fallback
    kernel, so the EAGER test above would see a LAZY regression."""
    engine = tmp_path / 'm.engine'
    build(onnx_files['fp16'], engine)
    blob = engine.read_bytes()
    cuda_engine = rtx.Runtime(rtx.Logger()).deserialize_cuda_engine(blob)
    context = cuda_engine.create_execution_context(
        runtime_config=cuda_engine.create_runtime_config())
    context.set_input_shape('canvas', (1, 64, 64, 3))
    for name in ('canvas', 'heatmap', 'wh', 'offset'):
        context.set_tensor_address(name, 1)
    context.execute_async_v3(0)
    assert rtx.calls.fallback_runs == [(1, 64, 64, 3)]


def test_rtx_runtime_cache_from_another_gpu_is_said_and_replaced(rtx, gpu, onnx_files, tmp_path):
    engine = tmp_path / 'm.engine'
    build(onnx_files['fp16'], engine)
    TrtBackend(engine, gpu=CpuStandIn(), log=quiet)
    gpu.capability = (8, 6)
    said = []
    TrtBackend(engine, gpu=CpuStandIn(), log=said.append)
    assert rtx.calls.runtime_cache_loads == [False]
    assert any('was made for another GPU, driver or TensorRT for RTX version' in line
               for line in said)
    cache = json.loads((tmp_path / 'm.engine.runtime_cache').read_bytes()[
        len(fake_tensorrt.RUNTIME_CACHE_MAGIC):])
    assert cache['compute_capability'] == '8.6'


def test_rtx_engine_for_other_targets_is_refused(rtx, gpu, onnx_files, tmp_path):
    """Built for this GPU only (current, sm 8.9), opened on an sm 8.6 card: one line from the
    sidecar's targets. With the sidecar edited to claim 8.6, the library's own validity query
    refuses it (UNSUPPORTED_CC) before deserialising."""
    engine = tmp_path / 'm.engine'
    build(onnx_files['fp16'], engine, compute_capability='current')
    gpu.capability = (8, 6)
    with pytest.raises(UserError, match=r'was built for compute capabilities 8.9, and this GPU '
                                        r'.* is 8.6: rebuild it with .*--compute_capability '
                                        r'current --force'):
        TrtBackend(engine, gpu=CpuStandIn())
    sidecar = tmp_path / 'm.engine.json'
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(dict(record, targets=['8.6', '8.9'])))
    with pytest.raises(UserError, match=r'TensorRT for RTX .* says .* cannot run here .*'
                                        r'UNSUPPORTED_CC.*not among its targets'):
        TrtBackend(engine, gpu=CpuStandIn())
    assert rtx.calls.deserialized == 0


def test_rtx_staleness_compares_runtime_and_targets(rtx, onnx_files, tmp_path, monkeypatch):
    onnx = copy_onnx(onnx_files['fp16'], tmp_path)
    copy_onnx(onnx_files['fp32'], tmp_path)  # the self-check's reference
    engine = tmp_path / 'm.engine'
    build(onnx, engine)
    current, reason = sidecar.engine_is_current(engine, onnx, 'fp16', PROFILE,
                                                require_check=False)
    assert current and 'built by TensorRT for RTX' in reason and 'portable' in reason
    current, reason = sidecar.engine_is_current(engine, onnx, 'fp16', PROFILE,
                                                require_check=False, compute_capability='current')
    assert not current and 'targets: built with portable: 8.0' in reason and 'now current: 8.9' \
        in reason
    no_gpu(monkeypatch)  # without a GPU: nothing more to compare, and a pending check is fine
    build(onnx, engine, check=True)
    current, reason = sidecar.engine_is_current(engine, onnx, 'fp16', PROFILE)
    assert current and 'self-check pending' in reason, reason


# --- which TensorRT the scripts take (scripts/_common.sh pick_backend) ---------------------------

# A stand-in `torch` with only what pick_backend asks (torch.cuda.*): importing the real one took
# most of each case's 1.4 s.
SITE = '''
import sys
import types
sys.path.insert(0, {tests!r})
import fake_tensorrt
cuda = types.SimpleNamespace(
    is_available=lambda: {gpu!r} is not None, current_device=lambda: 0,
    get_device_name=lambda index=None: 'NVIDIA Fake',
    get_device_capability=lambda index=None: {gpu!r})
sys.modules['torch'] = types.SimpleNamespace(cuda=cuda, __version__='0+stand-in')
for name, version in {modules!r}.items():
    sys.modules[name] = fake_tensorrt.make_fake_tensorrt(version) if version else None
'''


@pytest.mark.parametrize('gpu_capability, modules, picked, words', [
    ((9, 0), {'tensorrt': TRT10, 'tensorrt_rtx': RTX}, 'tensorrt', 'TensorRT imports'),
    ((8, 9), {'tensorrt': None, 'tensorrt_rtx': RTX}, 'tensorrt-rtx',
     'TensorRT for RTX 1.7.1.116 targets this GPU (NVIDIA Fake, sm 8.9)'),
    ((9, 0), {'tensorrt': None, 'tensorrt_rtx': RTX}, 'torch',
     'TensorRT for RTX does not target this GPU (NVIDIA Fake, sm 9.0)'),
    ((8, 6), {'tensorrt': None, 'tensorrt_rtx': None}, 'torch', 'neither TensorRT nor'),
    (None, {'tensorrt': TRT10}, 'onnxruntime', None),
])
def test_the_scripts_pick_tensorrt_then_rtx_on_its_targets_then_torch(tmp_path, gpu_capability,
                                                                      modules, picked, words):
    """pick_backend itself, run by bash with a Python whose GPU and TensorRT modules are the
    test's (a sitecustomize): what it prints, and the line that says why."""
    import subprocess
    (tmp_path / 'sitecustomize.py').write_text(SITE.format(
        tests=str(Path(__file__).resolve().parent), gpu=gpu_capability, modules=modules))
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(['bash', '-c', 'source scripts/_common.sh && pick_backend'], cwd=root,
                          env={**__import__('os').environ, 'PYTHONPATH': str(tmp_path),
                               'PYTHON': sys.executable, 'BACKEND': ''},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == picked
    if words:
        assert words in done.stderr and 'the engine runs on' in done.stderr


@pytest.mark.parametrize('gpu_capability, modules, picked, words', [
    ((9, 0), {'tensorrt': TRT10, 'tensorrt_rtx': RTX}, 'tensorrt', 'TensorRT imports'),
    ((7, 5), {'tensorrt': None, 'tensorrt_rtx': RTX}, 'tensorrt-rtx',
     'TensorRT for RTX 1.7.1.116 targets this GPU (NVIDIA Fake, sm 7.5)'),
    ((9, 0), {'tensorrt': None, 'tensorrt_rtx': RTX}, None,
     'error: BACKEND=tensorrt: TensorRT is not installed, and TensorRT for RTX does not target '
     'this GPU (NVIDIA Fake, sm 9.0): install TensorRT 10 or 11'),
    (None, {'tensorrt_rtx': RTX}, None, 'error: BACKEND=tensorrt: no CUDA GPU is visible'),
])
def test_backend_tensorrt_takes_the_tensorrt_that_runs_here_or_ends_in_one_error(
        tmp_path, gpu_capability, modules, picked, words):
    """BACKEND=tensorrt in the scripts: TensorRT, or TensorRT for RTX where this GPU is one of its
    targets (Turing: built for this GPU); on Hopper with TensorRT for RTX alone, or without a GPU,
    one error line and exit 2 before anything is exported or built (a build there would write an
    engine that cannot run, again on every run)."""
    import subprocess
    (tmp_path / 'sitecustomize.py').write_text(SITE.format(
        tests=str(Path(__file__).resolve().parent), gpu=gpu_capability, modules=modules))
    root = Path(__file__).resolve().parents[1]
    # What the fp16 scripts run; where a backend is picked, only the pick (the rest exports).
    script = ('prepare_backend "$(pick_backend)"; echo "went on: $?"' if picked is None else
              'pick_backend')
    done = subprocess.run(
        ['bash', '-c', f'source scripts/_common.sh && {script}'],
        cwd=root, env={**__import__('os').environ, 'PYTHONPATH': str(tmp_path),
                       'PYTHON': sys.executable, 'BACKEND': 'tensorrt',
                       'MODELS_DIR': str(tmp_path / 'models')},
        capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith('error:')]
    if picked is None:
        assert done.returncode == 2 and done.stdout == '', (done.stdout, done.stderr)
        assert len(errors) == 1 and errors[0].startswith(words), done.stderr
        assert not (tmp_path / 'models').exists()
    else:
        assert done.returncode == 0 and done.stdout.strip() == picked and errors == [], \
            done.stderr
        assert words in done.stderr
