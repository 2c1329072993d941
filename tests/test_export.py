"""export.py: ONNX files that compute what the native model computes, at any batch and size."""

import json

import numpy as np
import onnx
import pytest

from centernet import onnx_export as ox
from centernet import precision_gate as gate
from centernet.checkpoint import sha256_of
from conftest import CONFIG

FP32_HEAD_TOLERANCE = 1e-4  # max |diff| / max(1, max |ref|): the gate's strict FP32 head check


def test_fp32_graph_contract(onnx_paths, spec):
    model = onnx.load(str(onnx_paths['fp32']))
    onnx.checker.check_model(model, full_check=True)
    (graph_input,) = model.graph.input
    assert graph_input.name == 'canvas'
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ['batch', 'height', 'width', 3]
    assert [o.name for o in model.graph.output] == ['heatmap', 'wh', 'offset']
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    read_spec, classes, meta = ox.read_metadata(onnx_paths['fp32'])
    assert read_spec == spec and len(classes) == 80 and classes[0] == 'person'
    assert meta['output_stride'] == '4' and json.loads(meta['mean']) == list(spec.mean)
    assert not any(n.op_type == 'BatchNormalization' for n in model.graph.node)  # folded


@pytest.mark.parametrize('shape', [(1, 480, 640), (3, 352, 416), (2, 32, 64)])
def test_fp32_round_trip_any_batch_and_size(onnx_paths, model, shape):
    canvases = ox.random_canvases(*shape, seed=sum(shape))
    reference = ox.run_torch(model, canvases)
    got = ox.run_onnxruntime(onnx_paths['fp32'], canvases)
    for (diff, scale), out, ref in zip(ox.compare_outputs(reference, got).values(), got, reference):
        assert out.shape == ref.shape
        assert diff <= FP32_HEAD_TOLERANCE * max(1.0, scale)


def test_fp16_graph_is_mixed_precision_and_close(onnx_paths, model):
    fp16 = onnx.load(str(onnx_paths['fp16']))
    weights = [t for t in fp16.graph.initializer if t.dims and len(t.dims) == 4]
    assert sum(t.data_type == onnx.TensorProto.FLOAT16 for t in weights) >= 25
    assert [o.type.tensor_type.elem_type for o in fp16.graph.output] == [onnx.TensorProto.FLOAT] * 3
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in fp16.metadata_props}
    assert meta['centernet.precision'] == 'fp16'
    kept = json.loads(meta['centernet.fp32_nodes'])
    assert any('Sigmoid' in name for name in kept) and any('Div' in name for name in kept)
    # mean/std stay exact FP32 (a Constant through FP16 would turn 123.675 into 123.6875)
    mean = [t for t in fp16.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
            and t.dims == [1, 3, 1, 1]]
    values = sorted(float(v) for t in mean for v in onnx.numpy_helper.to_array(t).ravel())
    assert 123.675 == pytest.approx(values[-1], abs=1e-5)
    # its detections are FP32's on scenes the export's gate did not see (another seed and shape)
    (canvases, borders), = gate.check_inputs(model.spec, [(2, 384, 512)], seed=3)
    verdict = gate.judge(ox.run_torch(model, canvases),
                         ox.run_onnxruntime(onnx_paths['fp16'], canvases), borders, 'fp16',
                         model.spec)
    assert verdict.ok and verdict.rows[0]['share'] == 1.0 and verdict.rows[0]['required'] > 100


def test_export_report_written(onnx_paths, checkpoint_path):
    report = json.loads(onnx_paths['fp32'].with_suffix('.export.json').read_text())
    assert report['weight_sha256'] == sha256_of(checkpoint_path)
    assert report['config_sha256'] == sha256_of(CONFIG)
    assert report['format_version'] == ox.FORMAT_VERSION
    assert set(report['outputs']) == {'fp32', 'fp16'}
    for precision, entry in report['outputs'].items():
        assert entry['status'] == 'passed' and entry['gate']['ok']
        assert entry['gate']['precision'] == precision
        assert entry['sha256'] == sha256_of(onnx_paths[precision])
        assert [row['shape'] for row in entry['gate']['rows']] == ['1x512x672', '3x384x544']


def test_static_export(static_paths, model):
    """export.py --static BxHxW: the fixed shape in the graph, PyTorch's function at it."""
    from conftest import STATIC_SHAPE
    for path in static_paths.values():
        dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
        assert dims == [*STATIC_SHAPE, 3]
    canvases = ox.random_canvases(*STATIC_SHAPE)
    diffs = ox.compare_outputs(ox.run_torch(model, canvases),
                               ox.run_onnxruntime(static_paths['fp32'], canvases))
    assert all(d <= FP32_HEAD_TOLERANCE * max(1.0, s) for d, s in diffs.values())


# The refusal tests' gate canvases: what a refusal does to the files is their point, not the
# default shapes (test_export_report_written checks those); a fifth of the pixels to run.
SMALL_GATE_SHAPES = ((1, 128, 160), (2, 96, 128))


@pytest.fixture
def small_gate(monkeypatch):
    monkeypatch.setattr(gate, 'DEFAULT_SHAPES', SMALL_GATE_SHAPES)


def export_exit(argv):
    import export
    from common import run_main
    with pytest.raises(SystemExit) as code:
        run_main(export.main, [str(a) for a in argv])
    return code.value.code


def test_refused_fp32_never_reaches_its_path(small_gate, tmp_path, checkpoint_path, monkeypatch,
                                             capsys):
    """If ONNX Runtime disagreed with PyTorch, the graph is kept aside, not at --output: exit 2."""
    from centernet import export_cli
    real = ox.onnxruntime_runner
    monkeypatch.setattr(export_cli.ox, 'onnxruntime_runner', lambda path: lambda c, b=None: [
        o + np.float32(0.01) for o in real(path)(c, b)])
    out = tmp_path / 'x.onnx'
    assert export_exit(['--weight', checkpoint_path, '--output', out, '--no-simplify']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: the fp32 ONNX was refused by the precision '
                                               'gate') and '--skip-check' in err[0]
    assert not out.exists() and (tmp_path / 'x.rejected.onnx').is_file()
    assert [p.name for p in tmp_path.iterdir() if '.tmp' in p.name] == []
    report = json.loads((tmp_path / 'x.export.json').read_text())
    assert report['outputs']['fp32']['status'] == 'failed'


def test_refused_fp32_removes_an_earlier_fp16(small_gate, tmp_path, checkpoint_path, monkeypatch,
                                              capsys):
    """--precision both with a refused FP32 graph makes no FP16 graph, and an FP16 file an
    earlier export left beside it goes too: the report says 'not made', a script must not find
    one."""
    from centernet import export_cli
    out = tmp_path / 'x.onnx'
    stale = tmp_path / 'x_fp16.onnx'
    stale.write_bytes(b'an earlier export')
    real = ox.onnxruntime_runner
    monkeypatch.setattr(export_cli.ox, 'onnxruntime_runner', lambda path: lambda c, b=None: [
        o + np.float32(0.01) for o in real(path)(c, b)])
    assert export_exit(['--weight', checkpoint_path, '--output', out, '--precision', 'both',
                        '--no-simplify']) == 2
    capsys.readouterr()
    assert not out.exists() and not stale.exists()
    report = json.loads((tmp_path / 'x.export.json').read_text())
    assert report['outputs']['fp16']['status'] == 'not made'


@pytest.fixture(scope='module')
def fp16_breaking_checkpoint(tmp_path_factory, spec):
    """Calibrated weights whose first block is rescaled by 1e4: the same FP32 function, but
    activations beyond FP16's range (centernet.gate_cases)."""
    import torch
    from centernet import gate_cases
    from centernet.model import build_model
    case = gate_cases.Case('overflow', seed=3, block_scale=1e4, broken=True)
    path = tmp_path_factory.mktemp('fp16_breaks') / 'fp16_breaks.pth'
    torch.save({'state_dict': case.state_dict(build_model(spec))}, path)
    return path


def test_refused_fp16_is_kept_aside_and_fp32_reused(small_gate, tmp_path, fp16_breaking_checkpoint,
                                                    capsys):
    out = tmp_path / 'centernet.onnx'
    (tmp_path / 'centernet_fp16.onnx').write_bytes(b'an earlier export')  # must not survive
    argv = ['--weight', fp16_breaking_checkpoint, '--output', out, '--precision', 'both']
    assert export_exit(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: the fp16 ONNX was refused')
    assert '--precision fp32' in err[0] and '--skip-check' in err[0]
    assert 'reference detections reproduced' in err[0]
    assert out.is_file() and not (tmp_path / 'centernet_fp16.onnx').exists()
    assert (tmp_path / 'centernet_fp16.rejected.onnx').is_file()
    report = json.loads((tmp_path / 'centernet.export.json').read_text())
    assert {k: v['status'] for k, v in report['outputs'].items()} == {'fp32': 'passed',
                                                                     'fp16': 'failed'}
    # --if-stale: the passed FP32 graph of this checkpoint is reused; the refused FP16 is not
    assert export_exit(argv[:-1] + ['fp32', '--if-stale']) == 0
    assert 'reusing the fp32 export' in capsys.readouterr().out
    from centernet.export_cli import reuse_problem
    from common import DEFAULT_CONFIG
    for opset, simplify in ((18, True), (17, False)):  # options that change the graph
        assert reuse_problem(out, 'fp32', fp16_breaking_checkpoint, DEFAULT_CONFIG,
                             graph_options=dict(opset=opset, simplify=simplify)) == \
            'made with other --opset/--no-simplify options'
    assert reuse_problem(out, 'fp32', fp16_breaking_checkpoint, DEFAULT_CONFIG,
                         graph_options=dict(opset=17, simplify=True)) is None
    assert export_exit(argv + ['--if-stale', '--skip-check']) == 0
    assert 'exporting again (its fp16 graph has status failed' in capsys.readouterr().out
    assert (tmp_path / 'centernet_fp16.onnx').is_file()  # unchecked, as asked, and so recorded
    assert not (tmp_path / 'centernet_fp16.rejected.onnx').exists()
    report = json.loads((tmp_path / 'centernet.export.json').read_text())
    assert report['outputs']['fp16']['status'] == 'skipped'


def test_uint8_input_feeds_a_cast_directly(onnx_paths):
    """TensorRT takes a uint8 network input only when a Cast consumes it directly."""
    for path in onnx_paths.values():
        graph = onnx.load(str(path)).graph
        consumers = [n.op_type for n in graph.node if 'canvas' in n.input]
        assert consumers == ['Cast'], (path.name, consumers)


def test_end2end_graph_gives_mmdets_detections(end2end_paths, spec):
    """--end2end: the decode inside the graph reproduces mmdet's detections on the golden set."""
    import json
    from conftest import GOLDEN
    from matching import assert_same_detections
    from centernet.preprocess import CenterCanvas, read_image
    meta = json.loads((GOLDEN / 'golden.json').read_text())
    arrays = np.load(GOLDEN / 'golden.npz')
    canvas = CenterCanvas(spec)
    for image in meta['images']:
        key = image['file_name'].rsplit('.', 1)[0]
        made, border = canvas(read_image(GOLDEN / 'images' / image['file_name']))
        boxes, scores, labels = ox.run_onnxruntime(end2end_paths['fp32'], made[None], border[None])
        assert boxes.shape == (1, 100, 4) and labels.dtype == np.int64
        assert_same_detections((boxes[0], scores[0], labels[0]),
                               (arrays[f'{key}/boxes'], arrays[f'{key}/scores'],
                                arrays[f'{key}/labels']), what=key)


def test_end2end_fp16_keeps_decode_fp32_and_is_refused_by_the_backends(end2end_paths):
    from centernet.backends.onnxruntime_backend import OrtBackend
    from centernet.errors import UserError
    model = onnx.load(str(end2end_paths['fp16']))
    assert [i.name for i in model.graph.input] == ['canvas', 'borders']
    assert [o.name for o in model.graph.output] == ['boxes', 'scores', 'labels']
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
            for o in model.graph.output]
    assert dims == [['batch', 100, 4], ['batch', 100], ['batch', 100]]
    kept = json.loads({p.key: p.value for p in model.metadata_props}['centernet.fp32_nodes'])
    ops = {n.name: n.op_type for n in model.graph.node}
    assert {'TopK', 'MaxPool', 'Sigmoid'} <= {ops[name] for name in kept if name in ops}
    with pytest.raises(UserError, match='is an end-to-end ONNX .* export again without --end2end'):
        OrtBackend(end2end_paths['fp32'])


def test_a_reuse_imports_neither_torch_nor_onnx(onnx_paths, checkpoint_path):
    """The scripts ask export.py --if-stale on every run: a reuse compares sha256s with the
    report, and took 1.5 s of CPU importing torch to do it."""
    import subprocess
    import sys
    from conftest import ROOT
    code = ('import sys; sys.path.insert(0, sys.argv[1]); import export; '
            'code = export.main(sys.argv[2:]); '
            'print(code, [m for m in ("torch", "onnx", "onnxruntime") if m in sys.modules])')
    done = subprocess.run([sys.executable, '-c', code, str(ROOT), '--weight',
                           str(checkpoint_path), '--cfg', str(CONFIG), '--output',
                           str(onnx_paths['fp32']), '--precision', 'both', '--if-stale'],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'reusing the both export' in done.stdout and done.stdout.splitlines()[-1] == '0 []'


def test_a_missing_output_folder_is_found_before_the_export(tmp_path, checkpoint_path, capsys,
                                                            monkeypatch):
    """It was found after the model was loaded and traced (7.6 s)."""
    import export
    from common import run_main
    monkeypatch.setattr(ox, 'export_fp32', lambda *a, **k: pytest.fail('traced the model'))
    with pytest.raises(SystemExit) as code:
        run_main(export.main, ['--weight', str(checkpoint_path), '--output',
                               str(tmp_path / 'none' / 'm.onnx')])
    assert code.value.code == 2
    assert capsys.readouterr().err.strip() == (f'error: output folder {tmp_path / "none"} does '
                                               'not exist: create it or choose another path')
