"""NVIDIA's own ONNX parser and builder on every graph the kit writes, through build_engine.py.

TensorRT for RTX (`tensorrt_rtx`, requirements-test.txt) builds engines ahead of time without a
GPU, with the same parser and builder API as TensorRT. So here the real library parses and builds
the FP32, FP16, static FP32/FP16 and --end2end FP32/FP16 graphs (the INT8 one: tests/test_int8.py)
through the CLI and build_engine(), and each real failure is checked to end in one `error:` line.
What a CPU can read is checked against an independent truth: the network's I/O against the ONNX
file's own declarations (and the real parser, run again here), the profile as the library holds it
against the flags, the targets against the library's ComputeCapability enum and NVIDIA's documented
default, the engine's size against the weights' precision. Deserialising and running an engine
needs a GPU (docs/tensorrt.md, "What only a GPU can check").
"""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

import build_engine as build_engine_cli
from centernet import onnx_export as ox
from centernet.engine import build as eb
from centernet.engine.profile import Profile
from centernet.errors import UserError
from common import run_main
import real_rtx
from real_rtx import REASON, rtx
from test_tensorrt_contract import gpu  # noqa: F401 (torch.cuda answering as a GPU)

pytestmark = pytest.mark.skipif(rtx is None, reason=REASON)

ONNX_DTYPE_NAMES = {TensorProto.FLOAT: 'FLOAT', TensorProto.FLOAT16: 'HALF',
                    TensorProto.UINT8: 'UINT8', TensorProto.INT64: 'INT64'}
from conftest import STATIC_SHAPE as STATIC  # noqa: E402
DEFAULT_CANVAS = {'min': [1, 32, 32, 3], 'opt': [32, 672, 672, 3], 'max': [32, 672, 672, 3]}
MIB = 2 ** 20


def quiet(*args, **kwargs):
    pass


def run_cli(argv):
    """(exit code, stdout, stderr) of build_engine.py with `argv`, as a user runs it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as done:
            run_main(build_engine_cli.main, argv)
    return done.value.code, out.getvalue(), err.getvalue()


def the_error_line(err):
    """The one `error:` line a failure prints; it is the last thing on stderr."""
    lines = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(lines) == 1, err[-2000:]
    assert err.rstrip().splitlines()[-1] == lines[0]
    return lines[0]


# --- the graphs, exported once per module ---------------------------------------------------

@pytest.fixture(scope='module')
def graphs(onnx_paths, static_paths, end2end_paths):
    """Every graph export.py writes that TensorRT takes: the session's exports (conftest)."""
    return {'fp32': (onnx_paths['fp32'], 'fp32'), 'fp16': (onnx_paths['fp16'], 'fp16'),
            'static-fp32': (static_paths['fp32'], 'fp32'),
            'static-fp16': (static_paths['fp16'], 'fp16'),
            'end2end-fp32': (end2end_paths['fp32'], 'fp32'),
            'end2end-fp16': (end2end_paths['fp16'], 'fp16')}


@pytest.fixture(scope='module')
def built(graphs, tmp_path_factory):
    """Each graph built once by `build_engine.py --runtime tensorrt-rtx` on this CPU: kind ->
    (exit code, stdout, stderr, sidecar record, engine size in bytes, engine path)."""
    folder = tmp_path_factory.mktemp('real_builder_engines')
    results = {}
    for kind, (path, precision) in graphs.items():
        engine = folder / f'{kind}.engine'
        code, out, err = run_cli(['--model', str(path), '--engine', str(engine), '--precision',
                                  precision, '--runtime', 'tensorrt-rtx'])
        record = json.loads((folder / f'{kind}.engine.json').read_text()) if code == 0 else None
        results[kind] = (code, out, err, record, engine.stat().st_size if code == 0 else None,
                         engine)
    return results


def onnx_io(path):
    """(inputs, outputs) as the ONNX file declares them: name, TensorRT dtype name, shape with
    -1 where dynamic."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def tensor(value):
        dims = [d.dim_value if d.HasField('dim_value') else -1
                for d in value.type.tensor_type.shape.dim]
        return dict(name=value.name, dtype=ONNX_DTYPE_NAMES[value.type.tensor_type.elem_type],
                    shape=dims)
    return [tensor(v) for v in graph.input], [tensor(v) for v in graph.output]


def reparsed_io(path):
    """The network's I/O as the real parser reads `path`, parsed again here."""
    parsed = real_rtx.parse(path)
    assert parsed.parsed
    return eb.describe_network(parsed.network)


# --- every graph builds ---------------------------------------------------------------------

KINDS = ['fp32', 'fp16', 'static-fp32', 'static-fp16', 'end2end-fp32', 'end2end-fp16']


@pytest.mark.parametrize('kind', KINDS)
def test_the_real_builder_builds_the_graph_through_the_cli(built, graphs, kind):
    """Exit 0 on a machine with no GPU; the sidecar's network is the ONNX's own I/O (names,
    dtypes, shapes: the serving stack's names kept for --end2end) and the parser's, read
    again; the runtime and version are the installed library's."""
    code, out, err, record, size, _ = built[kind]
    assert code == 0, err[-3000:]
    path = graphs[kind][0]
    inputs, outputs = onnx_io(path)
    assert record['network'] == dict(inputs=inputs, outputs=outputs) == reparsed_io(path)
    assert (record['runtime'], record['runtime_version']) == ('tensorrt-rtx', rtx.__version__)
    assert (record['gpu'], record['compute_capability']) == (None, None)
    assert record['precision'] == graphs[kind][1] and record['strongly_typed'] is True
    assert record['end2end'] is kind.startswith('end2end')
    assert size > 0 and f'wrote {record["engine"]}' not in err
    assert 'error' not in err.lower() and 'cudaError' not in err + out


def test_the_heads_and_end2end_io_are_the_contracts(built):
    """The I/O the backend and a serving stack rely on, as the library built it: canvas uint8
    (B, H, W, 3) -> heatmap/wh/offset float32 (B, C, H/4, W/4) for the heads graph, FP16 one
    included (its outputs stay FP32); canvas + borders (B, 4) -> boxes (B, 100, 4), scores
    (B, 100) float32 and labels (B, 100) int64 end to end."""
    heads = built['fp16'][3]['network']
    assert heads['inputs'] == [dict(name='canvas', dtype='UINT8', shape=[-1, -1, -1, 3])]
    assert [(t['name'], t['dtype'], t['shape']) for t in heads['outputs']] == [
        ('heatmap', 'FLOAT', [-1, 80, -1, -1]), ('wh', 'FLOAT', [-1, 2, -1, -1]),
        ('offset', 'FLOAT', [-1, 2, -1, -1])]
    end2end = built['end2end-fp16'][3]['network']
    assert [(t['name'], t['dtype'], t['shape']) for t in end2end['inputs']] == [
        ('canvas', 'UINT8', [-1, -1, -1, 3]), ('borders', 'FLOAT', [-1, 4])]
    assert [(t['name'], t['dtype'], t['shape']) for t in end2end['outputs']] == [
        ('boxes', 'FLOAT', [-1, 100, 4]), ('scores', 'FLOAT', [-1, 100]),
        ('labels', 'INT64', [-1, 100])]
    static = built['static-fp16'][3]['network']
    assert static['inputs'][0]['shape'] == [*STATIC, 3]


def test_the_profile_is_as_the_flags_say(built):
    """The optimisation profile read back from the real IOptimizationProfile: the default flags
    for a dynamic graph, exactly the static graph's shape for a static one (min = opt = max),
    and for --end2end a `borders` profile over the canvas's batch range."""
    assert built['fp32'][3]['profile_shapes'] == {'canvas': DEFAULT_CANVAS}
    fixed = [*STATIC, 3]
    assert built['static-fp16'][3]['profile_shapes'] == {
        'canvas': {'min': fixed, 'opt': fixed, 'max': fixed}}
    assert built['end2end-fp32'][3]['profile_shapes'] == {
        'canvas': DEFAULT_CANVAS, 'borders': {'min': [1, 4], 'opt': [32, 4], 'max': [32, 4]}}


def test_the_targets_are_the_librarys_portable_set(built):
    """No compute capability set (the library's default, read back as none); the sidecar's
    targets are every SMxy of the library's ComputeCapability enum from 8.0 up, which contain
    NVIDIA's documented default ("compute capability 8.0, 8.6, 8.9, 12.0, and later") and leave
    out Turing (7.5) and Hopper (9.0)."""
    record = built['fp16'][3]
    assert record['compute_capabilities_set'] == []
    enum_targets = sorted(f'{int(name[2:-1])}.{name[-1]}' for name in
                          rtx.ComputeCapability.__members__ if name.startswith('SM') and
                          int(name[2:]) >= 80)
    assert sorted(record['targets']) == enum_targets
    assert {'8.0', '8.6', '8.9', '12.0'} <= set(record['targets'])
    assert '7.5' not in record['targets'] and '9.0' not in record['targets']
    assert record['targets_requested'] == 'portable'


def test_without_a_gpu_the_self_check_is_pending_with_its_reference(built, graphs, onnx_paths):
    """The heads engines record what the check at the first GPU load compares them with: the
    FP32 ONNX (found beside the FP16 one); an end-to-end engine is not checked by the kit."""
    for kind in ('fp32', 'fp16'):
        check = built[kind][3]['self_check']
        assert check['status'] == 'pending' and 'without a GPU' in check['reason']
        assert Path(check['reference_onnx']) == onnx_paths['fp32']
        assert check['reference_onnx_sha256'] == eb.sha256_of(onnx_paths['fp32'])
    assert built['static-fp32'][3]['self_check']['shapes'] == [list(STATIC)]
    assert built['end2end-fp16'][3]['self_check']['status'] == 'skipped'
    assert 'self-check: pending' in built['fp16'][1]


def test_the_engine_size_follows_the_weights_precision(built, onnx_paths):
    """The real builder keeps each graph's precision (strong typing): the FP32 engine carries at
    least the FP32 weights, the FP16 one about half of them (the FP16 ONNX's size as truth)."""
    fp32_weights = onnx_paths['fp32'].stat().st_size
    fp16_weights = onnx_paths['fp16'].stat().st_size
    assert built['fp32'][4] >= 0.95 * fp32_weights
    assert 0.9 * fp16_weights <= built['fp16'][4] <= 0.6 * fp32_weights
    assert built['end2end-fp16'][4] <= 0.6 * built['end2end-fp32'][4]


def test_the_build_log_says_what_the_library_did(built):
    """No timing cache is claimed (TensorRT for RTX has none), no "takes minutes", the targets
    and the missing GPU are said; the CPU-only build prints no CUDA driver error."""
    out = built['fp16'][1]
    assert 'timing cache: none (TensorRT for RTX times no kernels' in out
    assert 'reusing' not in out and 'minutes' not in out
    assert 'for portable: 8.0, 8.6, 8.9, 12.0' in out and 'without a GPU' in out


def test_if_stale_and_check_accept_the_pending_engine(built, graphs, tmp_path):
    """Without a GPU nothing a rebuild does differs: --if-stale keeps the engine, --check says
    current (exit 0), and a request for other targets makes it stale."""
    source = built['fp16'][3]
    engine = tmp_path / 'm.engine'
    model = str(graphs['fp16'][0])
    assert run_cli(['--model', model, '--engine', str(engine), '--runtime', 'tensorrt-rtx',
                    '--max_batch', '8', '--opt_batch', '8'])[0] == 0
    code, out, _ = run_cli(['--model', model, '--engine', str(engine), '--runtime',
                            'tensorrt-rtx', '--max_batch', '8', '--opt_batch', '8', '--check'])
    assert code == 0 and 'current' in out and 'self-check pending' in out
    code, out, _ = run_cli(['--model', model, '--engine', str(engine), '--runtime',
                            'tensorrt-rtx', '--max_batch', '8', '--opt_batch', '8', '--check',
                            '--compute_capability', '8.6'])
    assert code == 1 and 'targets: built with portable: 8.0' in out and 'now 8.6' in out
    assert source['engine_sha256'] != json.loads(
        (tmp_path / 'm.engine.json').read_text())['engine_sha256']  # another profile


def test_build_engine_sets_the_targets_asked_for(graphs, tmp_path):
    """build_engine() with an explicit list: the real builder config holds exactly those
    ComputeCapability values (read back from it), and the sidecar says so."""
    record = eb.build_engine(graphs['fp16'][0], tmp_path / 'm.engine', 'fp16',
                             Profile(1, 2, 2, 32, 64, 64), runtime='tensorrt-rtx',
                             compute_capability='8.9,8.6', log=quiet)
    assert record['compute_capabilities_set'] == ['SM89', 'SM86']
    assert record['targets'] == ['8.9', '8.6'] and record['targets_requested'] == 'list'
    assert record['profile_shapes']['canvas']['max'] == [2, 64, 64, 3]


# --- real failures: each ends in one error line ---------------------------------------------

@pytest.fixture(scope='module')
def broken(onnx_paths, tmp_path_factory):
    """The FP16 export, broken three ways a user's file can be: an operator TensorRT does not
    know, an FP32 convolution weight left in the FP16 graph, a weight cut short."""
    folder = tmp_path_factory.mktemp('real_builder_broken')
    made = {}
    for kind in ('unknown-op', 'mixed-types', 'damaged-weight'):
        proto = onnx.load(str(onnx_paths['fp16']))
        initializers = {t.name: t for t in proto.graph.initializer}
        if kind == 'unknown-op':
            node = next(n for n in proto.graph.node if n.op_type == 'Sigmoid')
            node.op_type, node.domain = 'NoSuchOp', 'com.example'
            proto.opset_import.append(onnx.helper.make_opsetid('com.example', 1))
        elif kind == 'mixed-types':
            node = next(n for n in proto.graph.node if n.op_type == 'Conv' and
                        initializers[n.input[1]].data_type == TensorProto.FLOAT16)
            weight = initializers[node.input[1]]
            weight.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(weight).astype(np.float32), weight.name))
        else:
            weight = next(t for t in proto.graph.initializer if len(t.raw_data) > 10000)
            weight.raw_data = weight.raw_data[:len(weight.raw_data) // 2]
            node = weight
        onnx.save(proto, str(folder / f'{kind}.onnx'))
        made[kind] = (folder / f'{kind}.onnx', node.name)
    truncated = folder / 'truncated.onnx'
    truncated.write_bytes(onnx_paths['fp16'].read_bytes()[:100000])
    made['truncated'] = (truncated, None)
    return made


@pytest.mark.parametrize('kind, words', [
    ('unknown-op', ['TensorRT could not parse', 'NoSuchOp', 'Plugin not found']),
    ('mixed-types', ['TensorRT could not parse', 'must be of same type']),
    ('damaged-weight', ['TensorRT could not parse', 'Failed to import initializer']),
    ('truncated', ['is not an ONNX file', 'export']),
])
def test_a_broken_onnx_ends_in_one_error_line(broken, tmp_path, kind, words):
    """The real parser's refusal, named where TensorRT says where (the node, the weight), in one
    line after its own log; no engine and no sidecar written; no CUDA driver noise in it."""
    path, where = broken[kind]
    engine = tmp_path / 'm.engine'
    code, _, err = run_cli(['--model', str(path), '--engine', str(engine), '--runtime',
                            'tensorrt-rtx', '--skip-check'])
    line = the_error_line(err)
    assert code == 2 and all(word in line for word in words), line
    if where:
        assert where in line
    assert 'cudaError' not in err
    assert not engine.exists() and not (tmp_path / 'm.engine.json').exists()


def test_a_workspace_too_small_says_workspace(onnx_paths, tmp_path):
    """OutOfMemory from the real builder (a 1 MiB workspace) ends in one line naming
    --workspace and the value given."""
    code, _, err = run_cli(['--model', str(onnx_paths['fp16']), '--engine',
                            str(tmp_path / 'm.engine'), '--runtime', 'tensorrt-rtx',
                            '--workspace', str(1 / 1024)])
    line = the_error_line(err)
    assert code == 2 and 'OutOfMemory' in line and 'raise --workspace (now 0.000976562 GiB)' in line
    import torch
    if not torch.cuda.is_available():  # a build without a GPU: no GPU memory to free
        assert 'GPU memory' not in line, line
    assert not (tmp_path / 'm.engine').exists()


def test_an_invalid_profile_keeps_tensorrts_reason(onnx_paths, tmp_path, monkeypatch):
    """min > opt reaching the real library (the kit's own check bypassed): its logged reason,
    not "no optimization profile has been defined", in one UserError line."""
    monkeypatch.setattr(Profile, 'validate', lambda self: self)
    with pytest.raises(UserError) as error:
        eb.build_engine(onnx_paths['fp16'], tmp_path / 'm.engine', 'fp16',
                        Profile(min_batch=4, opt_batch=2), runtime='tensorrt-rtx', log=quiet)
    message = str(error.value)
    assert 'refused the optimisation profile' in message and 'MIN<=OPT<=MAX' in message
    assert 'no optimization profile' not in message and '\n' not in message
    assert 'cudaError' not in message


@pytest.mark.parametrize('flags, words', [
    (['--compute_capability', 'current'], '--compute_capability current needs a GPU'),
    (['--compute_capability', '9.0'], '8.0, 8.6, 8.9, 12.0'),
    (['--timing_cache', 'x.cache'], 'drop --timing_cache'),
])
def test_what_tensorrt_for_rtx_cannot_do_is_one_error_line(onnx_paths, tmp_path, flags, words):
    code, _, err = run_cli(['--model', str(onnx_paths['fp16']), '--engine',
                            str(tmp_path / 'm.engine'), '--runtime', 'tensorrt-rtx', *flags])
    assert code == 2 and words in the_error_line(err)
    assert not (tmp_path / 'm.engine').exists()


def test_the_backend_refuses_an_end2end_engine_in_one_line(built, gpu, tmp_path):
    """The kit's TensorRT backend runs the heads engine; given the real end-to-end engine (on
    a GPU as torch reports it), it says what the engine is for before touching the GPU."""
    from centernet.backends.tensorrt_backend import TrtBackend
    with pytest.raises(UserError, match=r'is an end-to-end engine \(canvas, borders -> boxes, '
                                        r'scores, labels\), for a serving stack') as error:
        TrtBackend(built['end2end-fp16'][5])
    assert '\n' not in str(error.value)
