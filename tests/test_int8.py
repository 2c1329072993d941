"""INT8 Q/DQ export (centernet.int8_quantize): graph structure, ONNX Runtime run, CLI, the
TensorRT build contract, and the trained stand-in's AP gate (when its checkpoint is present).

The structure tests use the seeded weights (what is checked is where Q/DQ sit, not accuracy);
accuracy is judged on the trained stand-in, whose detections mean something.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from centernet.engine import build as eb
from centernet import onnx_export as ox
from centernet import standin_scenes
from centernet.errors import UserError
from centernet.int8_quantize import qdq_summary, quantize_int8

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_rtx import requires_rtx  # noqa: E402
from test_tensorrt_contract import TRT10, TRT11, gpu, install_trt, quiet  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / 'tests' / 'fixtures' / 'standin' / 'standin_centernet.pth'
STANDIN_MIN_AP = 0.5       # issue 12's target; measured 0.651 on the test split (docs/int8.md)
INT8_MAX_AP_LOSS = 0.02    # measured loss ~0.00x (docs/int8.md); the target is 0.01
HEAD_LAST_CONVS = {'/bbox_head/heatmap_head.2/Conv', '/bbox_head/wh_head.2/Conv',
                   '/bbox_head/offset_head.2/Conv'}


@pytest.fixture(scope='module')
def calib_dir(tmp_path_factory):
    """A few generated scenes in COCO layout (the stand-in's train split generator)."""
    return standin_scenes.write_split(tmp_path_factory.mktemp('calib'), 'train', 8)


@pytest.fixture(scope='module')
def int8_paths(onnx_paths, calib_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp('int8')
    paths = {}
    for flavour in ('tensorrt', 'cpu'):
        paths[flavour] = folder / f'centernet_int8_{flavour}.onnx'
        quantize_int8(onnx_paths['fp32'], paths[flavour], calib_dir, calib_images=8,
                      flavour=flavour, log=quiet)
    return paths


def _graph(path):
    proto = onnx.load(str(path))
    producer = {o: n for n in proto.graph.node for o in n.output}
    return proto, producer


def test_calibration_feeds_are_the_canvases_inference_makes(spec, tmp_path):
    """A folder of images of several sizes (no annotation file): every image reaches the
    quantizer exactly as preprocess.CenterCanvas pastes it for inference, batched by shape."""
    import cv2
    from centernet.int8_quantize import CanvasReader, calibration_records
    from centernet.preprocess import CenterCanvas, read_image
    rng = np.random.default_rng(3)
    for index, (h, w) in enumerate([(63, 63), (40, 90), (63, 63), (100, 70)]):
        cv2.imwrite(str(tmp_path / f'{index}.png'), rng.integers(0, 256, (h, w, 3), np.uint8))
    records = calibration_records(tmp_path, limit=3)
    reader = CanvasReader(records, spec, batch_size=4)
    feeds = []
    while (feed := reader.get_next()) is not None:
        feeds.append(feed[ox.INPUT_NAME])
    canvas = CenterCanvas(spec)
    expected = [canvas(read_image(r.path))[0] for r in records]
    assert [f.shape[0] for f in feeds] == [2, 1]  # 63x63 twice, then 40x90
    got = [c for f in feeds for c in f]
    assert all(np.array_equal(a, b) for a, b in zip(sorted(got, key=lambda c: c.shape),
                                                     sorted(expected, key=lambda c: c.shape)))
    assert reader.images == 3 and len(got) == 3


@pytest.mark.parametrize('flavour, dtype, symmetric', [('tensorrt', 'int8', True),
                                                       ('cpu', 'uint8', False)])
def test_every_conv_but_the_heads_last_has_int8_per_channel_weights(int8_paths, flavour, dtype,
                                                                    symmetric):
    proto, producer = _graph(int8_paths[flavour])
    summary = qdq_summary(proto)
    assert set(summary['float_convs']) == HEAD_LAST_CONVS
    assert len(summary['int8_convs']) == 32 - 3  # 20 backbone + 6 neck (3 deconv) + 3 head 3x3
    assert summary['activation_dtypes'] == [dtype]
    assert (summary['nonzero_zero_points'] == 0) == symmetric
    initializers = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.name in summary['int8_convs']:
            dq = producer[node.input[1]]
            scale = onnx.numpy_helper.to_array(initializers[dq.input[1]])
            assert scale.size == onnx.numpy_helper.to_array(
                initializers[dq.input[0]]).shape[0 if node.op_type == 'Conv' else 1]  # per channel


def test_tensorrt_flavour_keeps_biases_fp32_and_cpu_flavour_quantizes_them(int8_paths):
    for flavour, int32 in (('tensorrt', False), ('cpu', True)):
        proto, _ = _graph(int8_paths[flavour])
        has_int32 = any(t.data_type == TensorProto.INT32 for t in proto.graph.initializer)
        assert has_int32 == int32, flavour


def test_qdq_placement_conv_inputs_residual_adds_and_fp32_islands(int8_paths):
    proto, producer = _graph(int8_paths['tensorrt'])
    nodes = {n.name: n for n in proto.graph.node}
    # Every quantized conv reads its activation through a DequantizeLinear.
    for name in qdq_summary(proto)['int8_convs']:
        assert producer[nodes[name].input[0]].op_type == 'DequantizeLinear', name
    # TensorRT's placement: the residual input of every Add is quantized, its conv-side input
    # is not (so conv -> Add -> ReLU -> Q fuses into one INT8 kernel), and no conv output is
    # quantized but a residual one (the downsample convs').
    adds = [n for n in proto.graph.node if n.op_type == 'Add']
    assert len(adds) == 8
    for add in adds:
        assert [producer[i].op_type for i in add.input] == ['Conv', 'DequantizeLinear']
    residuals = {producer[producer[a.input[1]].input[0]].input[0] for a in adds}
    conv_outputs = {o for n in proto.graph.node if n.op_type in ('Conv', 'ConvTranspose')
                    for o in n.output}
    quantized_conv_outputs = {n.input[0] for n in proto.graph.node
                              if n.op_type == 'QuantizeLinear' and n.input[0] in conv_outputs}
    assert len(quantized_conv_outputs) == 3 and quantized_conv_outputs <= residuals
    # The FP32 islands: no Q/DQ between the uint8 input and the first conv's Q, and the heads'
    # last convs read FP32 weights and feed the Sigmoid / outputs directly.
    islands = json.loads({p.key: p.value for p in proto.metadata_props}['centernet.fp32_nodes'])
    for name in islands:
        node = nodes[name]
        assert node.op_type not in ('QuantizeLinear', 'DequantizeLinear')
        for tensor in node.input[1:] if node.op_type == 'Conv' else node.input:
            if tensor in producer:
                assert producer[tensor].op_type != 'DequantizeLinear', (name, tensor)
    sigmoid = next(n for n in proto.graph.node if n.op_type == 'Sigmoid')
    assert producer[sigmoid.input[0]].name == '/bbox_head/heatmap_head.2/Conv'


def test_metadata_says_int8_with_its_calibration(int8_paths):
    spec, classes, meta = ox.read_metadata(int8_paths['tensorrt'])
    assert meta['centernet.precision'] == 'int8'
    assert meta['centernet.int8_flavour'] == 'tensorrt'
    calibration = json.loads(meta['centernet.int8_calibration'])
    assert calibration['method'] == 'minmax' and calibration['images'] == 8
    assert len(classes) == 80


@pytest.mark.parametrize('flavour', ['tensorrt', 'cpu'])
def test_onnxruntime_runs_it_close_to_fp32(int8_paths, onnx_paths, flavour):
    """On ONNX Runtime CPU, through the kit's backend: finite heads of the right shapes that
    follow the FP32 graph's (a wrong scale or a dropped Q/DQ pair would break the correlation)."""
    import torch
    from centernet.backends.onnxruntime_backend import OrtBackend
    canvases = ox.random_canvases(2, 128, 160)
    backend = OrtBackend(int8_paths[flavour])
    assert backend.describe()['precision'] == 'int8'
    got = [t.numpy() for t in backend.run(torch.from_numpy(canvases))]
    reference = ox.run_onnxruntime(onnx_paths['fp32'], canvases)
    for name, g, r in zip(ox.OUTPUT_NAMES, got, reference):
        assert g.shape == r.shape and np.isfinite(g).all()
        assert np.corrcoef(g.ravel(), r.ravel())[0, 1] > 0.95, name


# --- CLI ----------------------------------------------------------------------------------------

def _export(argv):
    import export
    from common import run_main
    with pytest.raises(SystemExit) as exit_info:
        run_main(export.main, argv)
    return exit_info.value.code


def test_calibration_request_changes_with_the_images_under_the_folder(tmp_path):
    """--if-stale compares what was calibrated on: other pictures under the same folder name, or
    another count, are another request; the same files are the same request."""
    import argparse
    from centernet.export_cli import calibration_request
    folder = standin_scenes.write_split(tmp_path, 'train', 12)
    args = argparse.Namespace(precision='int8', calib=str(folder), calib_images=2,
                              calib_method='minmax', int8_flavour='tensorrt')
    first = calibration_request(args)
    assert calibration_request(args) == first
    assert calibration_request(argparse.Namespace(**dict(vars(args), calib_images=3))) != first
    picture = sorted((folder / 'images' / 'val2017').iterdir())[1]
    picture.write_bytes(sorted((folder / 'images' / 'val2017').iterdir())[0].read_bytes())
    changed = calibration_request(args)
    assert changed['images_sha256'] != first['images_sha256']
    assert {k: v for k, v in changed.items() if k != 'images_sha256'} == \
        {k: v for k, v in first.items() if k != 'images_sha256'}


def test_cli_int8_without_calib_is_one_error_line_and_no_file(checkpoint_path, tmp_path, capsys):
    output = tmp_path / 'm.onnx'
    assert _export(['--weight', str(checkpoint_path), '--output', str(output),
                    '--precision', 'int8']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--calib' in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('calib_images, held_out', [(3, 2), (5, 0), (10, 0)])
def test_gate_inputs_are_held_out_images_topped_up_without_repeats(spec, tmp_path, calib_images,
                                                                    held_out):
    """export.py's INT8 gate images: those after the calibrated ones, topped up from the
    calibrated ones, never one twice (a 5-image folder gives 5 whatever --calib_images is)."""
    from centernet.int8_quantize import GATE_IMAGES, gate_inputs
    folder = standin_scenes.write_split(tmp_path, 'train', 5)
    inputs, which = gate_inputs(folder, spec, calib_images)
    canvases = np.concatenate([c for c, _ in inputs])
    assert len(canvases) == 5 < GATE_IMAGES
    assert len({c.tobytes() for c in canvases}) == 5  # the scenes differ: no image twice
    assert which.startswith(f'5 images of {folder} ({held_out} after the ')


def test_cli_int8_static_is_refused_in_one_line_before_any_work(checkpoint_path, tmp_path,
                                                                capsys):
    calib = standin_scenes.write_split(tmp_path, 'train', 2)
    output = tmp_path / 'out' / 'm.onnx'
    output.parent.mkdir()
    assert _export(['--weight', str(checkpoint_path), '--output', str(output), '--precision',
                    'int8', '--calib', str(calib), '--static', '1x64x64']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'no --static' in err[0]
    assert list(output.parent.iterdir()) == []


def test_cli_int8_with_missing_calib_folder_leaves_nothing(checkpoint_path, tmp_path, capsys):
    output = tmp_path / 'm.onnx'
    assert _export(['--weight', str(checkpoint_path), '--output', str(output),
                    '--precision', 'int8', '--calib', str(tmp_path / 'nope')]) == 2
    assert 'not a folder' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_torch_backend_refuses_int8_in_one_line(checkpoint_path, capsys):
    import inference
    from common import run_main
    with pytest.raises(SystemExit) as exit_info:
        run_main(inference.main, ['--backend', 'torch', '--weight', str(checkpoint_path),
                                  '--device', 'cpu', '--precision', 'int8', '--perf_only'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'precision int8' in err[0]


# --- TensorRT build contract (tests/fake_tensorrt.py) -------------------------------------------

@pytest.mark.parametrize('version', [TRT10, TRT11])
def test_int8_engine_is_built_strongly_typed_from_the_qdq_onnx(install_trt, gpu, int8_paths,
                                                               tmp_path, version):
    """Contract: the Q/DQ graph is parsed as it is (no conversion), strongly typed, with no
    builder flag (no INT8 flag, no calibrator: the scales are in the graph)."""
    trt = install_trt(version)
    record = eb.build_engine(int8_paths['tensorrt'], tmp_path / 'm.engine', 'int8', eb.Profile(),
                             check=False, log=quiet)
    assert trt.calls.parsed == [str(int8_paths['tensorrt'])]
    assert trt.calls.network_flags == [1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)]
    assert trt.calls.builder_flags_set == []
    assert record['precision'] == 'int8'


def test_int8_engine_self_check_is_against_its_own_qdq_onnx(int8_paths, onnx_paths):
    """The INT8 engine's reference is the Q/DQ graph it is built from (same scales), never the
    FP32 ONNX on generated scenes, where sound and broken calibrations overlap."""
    from centernet.engine import check as engine_check
    assert engine_check.find_reference_onnx(int8_paths['tensorrt'], 'int8') == \
        int8_paths['tensorrt']
    with pytest.raises(UserError, match='drop --reference_onnx'):
        engine_check.find_reference_onnx(int8_paths['tensorrt'], 'int8',
                                         reference_onnx=onnx_paths['fp32'])


@pytest.mark.parametrize('engine', ['right', 'swapped wh/offset'])
def test_int8_engine_self_check_runs_the_qdq_onnx_beside_it(install_trt, gpu, int8_paths,
                                                             tmp_path, monkeypatch, engine):
    """A fake INT8 engine returning ONNX Runtime's outputs of the Q/DQ graph passes the real gate;
    one with two outputs swapped is refused and moved aside."""
    import torch
    from centernet.engine import check as engine_check
    from centernet.backends.onnxruntime_backend import OrtBackend
    from centernet.backends.tensorrt_backend import TrtBackend
    from test_tensorrt_contract import CpuStandIn
    trt = install_trt(TRT10)
    qdq = OrtBackend(int8_paths['tensorrt'])
    monkeypatch.setattr(engine_check, 'open_engine', lambda path, rebuild_path=None: TrtBackend(
        path, gpu=CpuStandIn(), warn_unchecked=False, rebuild_path=rebuild_path))

    def compute(canvases):
        heatmap, wh, offset = [t.numpy() for t in qdq.infer(torch.from_numpy(canvases))]
        return [heatmap, offset, wh] if engine != 'right' else [heatmap, wh, offset]
    trt.compute = compute
    profile = eb.Profile(1, 2, 4, 64, 96, 96)
    if engine == 'right':
        record = eb.build_engine(int8_paths['tensorrt'], tmp_path / 'm.engine', 'int8', profile,
                                 log=quiet)
        assert record['self_check']['status'] == 'passed'
        assert record['self_check']['reference_onnx'] == str(int8_paths['tensorrt'])
        json.dumps(record['self_check'], allow_nan=False)  # strict JSON all through
    else:
        with pytest.raises(UserError, match='self-check failed'):
            eb.build_engine(int8_paths['tensorrt'], tmp_path / 'm.engine', 'int8', profile,
                            log=quiet)
        assert not (tmp_path / 'm.engine').exists()


@pytest.mark.parametrize('which, precision, words', [
    ('cpu', 'int8', 'tensorrt'), ('fp32', 'int8', 'Q/DQ ONNX'), ('tensorrt', 'fp16', 'INT8 ONNX')])
def test_int8_engine_from_the_wrong_onnx_is_a_user_error(install_trt, gpu, int8_paths,
                                                         onnx_paths, tmp_path, which, precision,
                                                         words):
    install_trt(TRT10)
    source = int8_paths.get(which) or onnx_paths[which]
    with pytest.raises(UserError, match=words):
        eb.build_engine(source, tmp_path / 'm.engine', precision, eb.Profile(), log=quiet)
    assert not (tmp_path / 'm.engine').exists()


# --- the real builder (TensorRT for RTX on this CPU; tests/test_tensorrt_real_builder.py) -------

@requires_rtx
def test_the_real_builder_builds_the_int8_graph(int8_paths, onnx_paths, tmp_path):
    """tensorrt_rtx builds the tensorrt-flavour Q/DQ graph through build_engine.py without a GPU:
    the heads I/O contract, int8 weights kept (the engine is under 40 % of the FP32 weights'
    bytes), a pending self-check against the Q/DQ ONNX itself, and the warning that the support
    matrix lists INT8 only for weight-only GEMMs."""
    import json
    from test_tensorrt_real_builder import run_cli
    engine = tmp_path / 'm.engine'
    code, out, err = run_cli(['--model', str(int8_paths['tensorrt']), '--engine', str(engine),
                              '--precision', 'int8', '--runtime', 'tensorrt-rtx'])
    assert code == 0, err[-3000:]
    record = json.loads((tmp_path / 'm.engine.json').read_text())
    assert record['precision'] == 'int8' and record['runtime'] == 'tensorrt-rtx'
    assert [t['name'] for t in record['network']['outputs']] == list(ox.OUTPUT_NAMES)
    assert {t['dtype'] for t in record['network']['outputs']} == {'FLOAT'}
    assert engine.stat().st_size < 0.4 * onnx_paths['fp32'].stat().st_size
    assert record['self_check']['status'] == 'pending'
    assert record['self_check']['reference_onnx'] == str(int8_paths['tensorrt'].resolve())
    assert 'lists INT8 only for weight-only quantized GEMMs' in out


@requires_rtx
def test_the_cpu_flavour_graph_is_refused_as_the_real_parser_refuses_it(int8_paths, tmp_path):
    """build_engine.py refuses the CPU-flavour graph in one line naming --int8_flavour
    tensorrt, before any build; and the real parser does refuse that graph (its int32 biases
    into DequantizeLinear), so the refusal is TensorRT's rule, not the kit's taste."""
    import real_rtx
    from test_tensorrt_real_builder import run_cli, the_error_line
    code, _, err = run_cli(['--model', str(int8_paths['cpu']), '--engine',
                            str(tmp_path / 'm.engine'), '--precision', 'int8', '--runtime',
                            'tensorrt-rtx'])
    assert code == 2 and 'export with --int8_flavour tensorrt' in the_error_line(err)
    assert not (tmp_path / 'm.engine').exists()
    parsed = real_rtx.parse(int8_paths['cpu'])
    assert not parsed.parsed
    said = ' '.join(str(parsed.parser.get_error(i).desc()) for i in range(parsed.parser.num_errors))
    assert 'DequantizeLinear' in said and 'Int32' in said, said


# --- the trained stand-in (tests/fixtures/standin; tools/train_standin.py makes it) -------------

@pytest.fixture(scope='module')
def standin(tmp_path_factory, standin_test_scenes):
    if not STANDIN.is_file():
        pytest.skip(f'{STANDIN.relative_to(ROOT)} absent: make it with tools/train_standin.py')
    root = tmp_path_factory.mktemp('standin')
    return dict(checkpoint=STANDIN, test=standin_test_scenes,
                calib=standin_scenes.write_split(root, 'train', 72), root=root)


def _inference_ap(argv, record):
    import inference
    from common import run_main
    with pytest.raises(SystemExit) as exit_info:
        run_main(inference.main, argv + ['--record', str(record), '--quiet', '--workers', '0'])
    assert exit_info.value.code == 0
    return json.loads(record.read_text())['metrics']['mAP']


@pytest.fixture(scope='module')
def standin_int8(standin):
    """export.py --precision int8 on the stand-in (its precision gate passes, or export fails)."""
    output = standin['root'] / 'standin_int8.onnx'
    assert _export(['--weight', str(standin['checkpoint']), '--output', str(output),
                    '--precision', 'int8', '--calib', str(standin['calib']),
                    '--calib_images', '64']) == 0
    return output


@pytest.fixture(scope='module')
def standin_fp32_ap(standin):
    """The stand-in's FP32 AP on its 500 held-out scenes, through inference.py (torch)."""
    return _inference_ap(['--backend', 'torch', '--weight', str(standin['checkpoint']),
                          '--device', 'cpu', '--datasets', str(standin['test'])],
                         standin['root'] / 'fp32.json')


def test_standin_detects_its_held_out_scenes(standin_fp32_ap):
    """FP32, through inference.py: the stand-in is a trained detector, not noise."""
    assert standin_fp32_ap >= STANDIN_MIN_AP


def test_standin_int8_keeps_its_ap(standin, standin_int8, standin_fp32_ap):
    int8 = _inference_ap(['--engine', str(standin_int8), '--datasets', str(standin['test'])],
                         standin['root'] / 'int8.json')
    assert abs(int8 - standin_fp32_ap) <= INT8_MAX_AP_LOSS


@pytest.mark.parametrize('defect', ['activation scales / 8 (every activation clipped)',
                                    'activation scales x 8 (5-bit activations)'])
def test_precision_gate_refuses_a_broken_int8_graph(standin, standin_int8, defect):
    """Every activation clipped to an eighth of its range, or rounded to 8x coarser steps (the
    case whose detections alone passed on the committed stand-in; its heads do not): the INT8
    tolerances that pass the sound graph (standin_int8 fixture) must reject both."""
    from centernet.checkpoint import load_model
    from centernet.config import load_spec
    from centernet.int8_quantize import gate_inputs
    from centernet.precision_gate import run_gate
    from centernet.gate_cases import make_broken_int8
    broken = make_broken_int8(standin_int8, standin['root'] / 'broken_int8.onnx', defect)
    model, _ = load_model(load_spec(ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py'),
                          standin['checkpoint'])
    inputs, _ = gate_inputs(standin['calib'], model.spec, 64)  # export.py's
    report = run_gate(lambda c: ox.run_torch(model, c), lambda c: ox.run_onnxruntime(broken, c),
                      model.spec, 'int8', inputs=inputs)
    assert not report.ok


def test_calibration_and_its_gate_refuse_a_picture_the_memory_cannot_take(spec, tmp_path,
                                                                          monkeypatch):
    """Calibration keeps every intermediate tensor (700 bytes per pixel with minmax): one 3 MP
    photo took 3 GB, unchecked. Both readers now apply calibration_limit: a picture that does
    not fit is left out and named, with advice in the terms of the command run."""
    import cv2
    from centernet import image_header
    from centernet.errors import SCRIPT_ENV
    from centernet.int8_quantize import (CanvasReader, calibration_limit, calibration_records,
                                         gate_inputs)
    rng = np.random.default_rng(4)
    cv2.imwrite(str(tmp_path / 'a_small.png'), rng.integers(0, 256, (48, 64, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'b_large.png'), np.full((300, 400, 3), 90, np.uint8))  # 1 kB
    large = tmp_path / 'b_large.png'
    # the large one's batch (both: sizes unknown) needs 2 x 120000 x (6.2 + 700) B = 170 MB
    monkeypatch.setattr(image_header, 'available_memory', lambda: 20_000_000)
    monkeypatch.delenv(SCRIPT_ENV, raising=False)
    reader = CanvasReader(calibration_records(tmp_path, 2), spec, limit=calibration_limit('minmax'))
    while reader.get_next() is not None:
        pass
    assert reader.images == 1 and [b.path for b in reader.bad] == [str(large)]
    assert reader.bad[0].reason.startswith(
        '400x300 pixels (0.1 MP) would need about 0.2 GB of memory to calibrate INT8 (minmax) on '
        'it, 2 pictures of this size at once (the images of its batch, which share its canvas '
        'size) (706 bytes per pixel each), more than the 20 MB available now: shrink the picture, '
        'calibrate on other pictures (--calib DIR) or on fewer, which it reads first '
        '(--calib_images N), or free memory')
    monkeypatch.setenv(SCRIPT_ENV, 'infer_centernet_int8_accuracy.sh')
    inputs, which = gate_inputs(tmp_path, spec, calib_images=1, count=2)
    assert sum(len(canvases) for canvases, _ in inputs) == 1
    assert f'left out {large} (400x300 pixels' in which
    assert 'calibrate on other pictures (CALIB_DIR=) or on fewer, which it reads first ' \
        '(CALIB_IMAGES=)' in which and '--calib' not in which
