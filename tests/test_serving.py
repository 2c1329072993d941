"""serve.py on nvidia-pytriton's tritonserver: detections, refusals, shutdown, repositories.

One server for the module (serve.py in a subprocess, ONNX Runtime on the session's FP32 ONNX,
small images); its answers are checked against inference.py run locally on the same files,
exactly. Where nvidia-pytriton is not installed the server tests skip with one reason; the
missing-package message is checked everywhere.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import inference
import serve
from common import run_main
from conftest import ROOT

from centernet.serving import contract
from centernet.serving.server import free_ports
from centernet.synthetic import write_coco_dataset
from test_bad_inputs import fails_with
from test_inference import run_cli
from test_tensorrt_contract import gpu, install_trt  # noqa: F401 - fixtures

HAVE_PYTRITON = importlib.util.find_spec('pytriton') is not None
needs_pytriton = pytest.mark.skipif(not HAVE_PYTRITON, reason='nvidia-pytriton is not installed '
                                    '(pip install -r requirements-serve.txt)')
# Eight small images, seven canvas shapes; the server refuses canvases above MAX_CANVAS.
SIZES = ((160, 120), (120, 160), (200, 150), (160, 120), (96, 64), (23, 17), (150, 200),
         (64, 96))
MAX_CANVAS = 256
BATCH = 8  # = len(SIZES): the accuracy run's requests fill one batch, which then runs at once


def descendants(pid):
    """Process ids under `pid` (children, grandchildren ...), from /proc."""
    parents = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid):
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return False
    return state != 'Z'


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('serve_coco')
    write_coco_dataset(root, SIZES, seed=3)
    return root


@pytest.fixture(scope='module')
def local_run(dataset, onnx_paths, tmp_path_factory):
    """inference.py's own accuracy run on the same files: the truth the server must equal."""
    out = tmp_path_factory.mktemp('local_run')
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset),
                    '--save_json', str(out / 'local.json'),
                    '--record', str(out / 'record.json')]) == 0
    return json.loads((out / 'local.json').read_text())


def by_file(dataset, results):
    """file name -> that image's detections (a list of COCO result records, in order)."""
    ann = json.loads((dataset / 'annotations/instances_val2017.json').read_text())
    names = {image['id']: image['file_name'] for image in ann['images']}
    grouped = {}
    for row in results:
        grouped.setdefault(names[row['image_id']], []).append(row)
    return grouped


@pytest.fixture(scope='module')
def server(onnx_paths, tmp_path_factory):
    """serve.py in a subprocess; up to BATCH requests wait up to 2 s for each other, so requests
    sent together are one dynamic batch (a full one runs at once)."""
    http, grpc, metrics = free_ports(3)
    log = tmp_path_factory.mktemp('serve') / 'triton.log'
    process = subprocess.Popen(
        [sys.executable, 'serve.py', '--engine', str(onnx_paths['fp32']), '--host', '127.0.0.1',
         '--port', str(http), '--grpc_port', str(grpc), '--metrics_port', str(metrics),
         '--threads', '1', '--batchsize', str(BATCH), '--max_queue_delay_us', '2000000',
         '--max_canvas', str(MAX_CANVAS), '--log_file', str(log)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # blocks until serve.py says it is ready (or exits)
        lines.append(line)
        if line.startswith('ready:'):
            break
    else:
        pytest.fail('serve.py did not start:\n' + ''.join(lines))
    drain = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    drain.start()
    token = next(line for line in lines if 'triton-access-token:' in line).split()[-1]
    yield SimpleNamespace(process=process, address=f'127.0.0.1:{http}', token=token,
                          lines=lines, drain=drain, log=log)
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=120)


def statistics(server):
    """(requests answered, batches run) by the module server's detector so far."""
    from centernet.serving.client import ServedDetector
    detector = ServedDetector(server.address)
    try:
        counts = detector.statistics(server.token)
        return counts['requests'], counts['batches']
    finally:
        detector.close()


@needs_pytriton
def test_detections_through_the_server_equal_a_local_run(server, dataset, local_run, tmp_path):
    out = tmp_path / 'served.json'
    before = statistics(server)
    assert run_cli(['--server', server.address, '--datasets', str(dataset),
                    '--concurrency', str(BATCH), '--save_json', str(out),
                    '--record', str(tmp_path / 'record.json')]) == 0
    served = json.loads(out.read_text())
    local, remote = by_file(dataset, local_run), by_file(dataset, served)
    assert remote.keys() == local.keys() and len(remote) == len(SIZES)
    for name in local:  # exactly: same decode, same canvases, batch-size independent network
        assert remote[name] == local[name], name
    inferences, executions = (after - first for after, first in zip(statistics(server), before))
    assert (inferences, executions) == (len(SIZES), 1)  # one dynamic batch
    record = json.loads((tmp_path / 'record.json').read_text())
    assert record['backend']['served']['backend'] == 'onnxruntime'
    assert record['backend']['concurrency'] == BATCH and record['times']['server_wait'] > 0


def png_bomb(width, height):
    """A PNG whose header declares width x height pixels, with almost no data."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\0'))
            + chunk(b'IEND', b''))


@needs_pytriton
def test_bad_requests_are_refused_one_by_one_in_a_batch(server, dataset, local_run):
    from centernet.serving.client import Refused, ServedDetector
    files = sorted((dataset / 'images/val2017').iterdir())
    good = {f.name: f.read_bytes() for f in files[:3]}
    jpeg = good[files[0].name]
    huge = cv2.imencode('.png', np.zeros((300, 300, 3), np.uint8))[1].tobytes()
    limit = f'larger than the served model takes ({MAX_CANVAS}x{MAX_CANVAS}): send a smaller image'
    # (text with no image signature: no header, so nothing to check before OpenCV refuses it;
    # a format's signature would make it that format's file, whose decoders differ by OpenCV)
    bad = {'not an image': (b'plain text, no image in it', 'not a readable image'),
           'empty': (b'', 'empty file'),
           # refused from their headers, by the canvas limit, before any decode
           'size bomb': (png_bomb(100_000, 100_000),
                         f'100000x100000 pixels needs a 100032x100032 canvas, {limit}'),
           'under the pixel cap': (png_bomb(12000, 9000),
                                   f'12000x9000 pixels needs a 12032x9024 canvas, {limit}'),
           'huge image': (huge, f'300x300 pixels needs a 320x320 canvas, {limit}')}
    assert len(good) + len(bad) == BATCH  # one full dynamic batch
    requests = list(good.items()) + [(name, data) for name, (data, _) in bad.items()]
    detector = ServedDetector(server.address)

    def send(payload):
        try:
            return detector.detect(payload)
        except Refused as exc:
            return str(exc)
    before = statistics(server)
    with ThreadPoolExecutor(BATCH) as pool:
        answers = dict(zip([name for name, _ in requests],
                           pool.map(send, [data for _, data in requests])))
    inferences, executions = (after - first for after, first in zip(statistics(server), before))
    assert (inferences, executions) == (BATCH, 1)  # all eight were one batch
    local = by_file(dataset, local_run)
    for name in good:
        boxes, scores, labels = answers[name]
        expected = local[name]
        assert np.array_equal(scores.astype(np.float64), [r['score'] for r in expected]), name
        xyxy = boxes.astype(np.float64)  # as evaluate.to_coco_results makes COCO's xywh
        xywh = np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0],
                         xyxy[:, 3] - xyxy[:, 1]], 1)
        assert np.array_equal(xywh, [r['bbox'] for r in expected]), name
        assert len(labels) == 100
    for name, (_, reason) in bad.items():
        assert isinstance(answers[name], str) and reason in answers[name], (name, answers[name])
    assert isinstance(send(jpeg), tuple)  # and it keeps serving
    detector.close()


def test_an_image_too_large_for_the_canvas_is_refused_from_its_header(spec, monkeypatch):
    """A 12000 x 9000 PNG (under the 250 MP pixel cap; a real one, 331 KB of zeros, took 620 MB
    to decode): the server's refusal comes from the header, and OpenCV never decodes it."""
    from centernet.preprocess import BadImageError, CenterCanvas
    from centernet.serving.triton_model import read_image
    decoded = []
    monkeypatch.setattr(cv2, 'imdecode', lambda *args: decoded.append(args))
    with pytest.raises(BadImageError) as error:
        read_image(png_bomb(12000, 9000), CenterCanvas(spec), (256, 256))
    assert error.value.reason == ('12000x9000 pixels needs a 12032x9024 canvas, larger than the '
                                  'served model takes (256x256): send a smaller image')
    assert decoded == []


@needs_pytriton
def test_server_answers_curl_style_json_with_names_and_category_ids(server, dataset):
    """Plain HTTP/JSON outputs (what curl gets): names and COCO ids agree with the labels."""
    import tritonclient.http as httpclient
    from coco_labels import COCO_CATEGORY_IDS, COCO_CLASSES
    data = sorted((dataset / 'images/val2017').iterdir())[0].read_bytes()
    client = httpclient.InferenceServerClient(server.address)
    try:
        image = httpclient.InferInput(contract.IMAGE, [1, 1], 'BYTES')
        image.set_data_from_numpy(np.array([[data]], dtype=object))
        result = client.infer(contract.MODEL, [image], outputs=[
            httpclient.InferRequestedOutput(name, binary_data=False) for name in contract.OUTPUTS])
    finally:
        client.close()
    labels, ids, names = (result.as_numpy(n)[0] for n in ('labels', 'category_ids', 'names'))
    assert [COCO_CLASSES[i] for i in labels] == names.tolist()  # JSON: strings
    assert [COCO_CATEGORY_IDS[i] for i in labels] == ids.tolist()


@needs_pytriton
def test_a_written_ensemble_loads_into_the_bundled_server_and_answers(server, onnx_paths,
                                                                      dataset, local_run):
    """A written (copied, kit inside) ensemble repository, loaded into the module's server
    through Triton's model-repository API: preprocess -> network (the kit's ONNX Runtime
    backend in the Python backend: the bundled server has no onnxruntime backend) ->
    postprocess answers as inference.py does, with a refusal among good requests."""
    import tritonclient.http as httpclient
    from centernet.serve_cli import describe_model
    from centernet.serving.client import Refused, ServedDetector
    from centernet.serving.repository import Batching, write_repository
    repository = Path(next(line for line in server.lines
                           if 'model repository' in line).split()[2])
    served = describe_model(serve.parse_args(['--engine', str(onnx_paths['fp32']),
                                              '--threads', '1']))
    name = 'centernet_ensemble'
    write_repository(repository, served, Batching(4, 1, 1000), 'ensemble', 'python', model=name)
    client = httpclient.InferenceServerClient(server.address)
    try:
        client.load_model(name, headers={'triton-access-token': server.token})
    finally:
        client.close()
    files = sorted((dataset / 'images/val2017').iterdir())[:3]
    detector = ServedDetector(server.address, model=name)

    def send(payload):
        try:
            return detector.detect(payload)
        except Refused as exc:
            return str(exc)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, [f.read_bytes() for f in files] + [b'\x89PNG nope']))
    detector.close()
    assert 'not a readable image' in answers[-1]
    local = by_file(dataset, local_run)
    for file, (boxes, scores, labels) in zip(files, answers):
        assert np.array_equal(scores.astype(np.float64), [r['score'] for r in local[file.name]])


@needs_pytriton
def test_sigterm_stops_the_server_and_every_process_under_it(server):
    """Last test of the module: it stops the module's server."""
    children = descendants(server.process.pid)
    assert len(children) >= 2  # tritonserver and the model instances' stubs
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=120) == 0, "".join(server.lines)
    server.drain.join(timeout=30)
    output = ''.join(server.lines)
    assert 'stopping: SIGTERM received' in output and output.rstrip().endswith('server stopped')
    assert [pid for pid in children if alive(pid)] == []


def test_a_missing_pytriton_is_one_line_naming_the_requirements(capsys, monkeypatch, onnx_paths):
    monkeypatch.setitem(sys.modules, 'pytriton', None)  # import pytriton raises ImportError
    fails_with(capsys, serve.main, ['--engine', str(onnx_paths['fp32'])],
               'serve.py needs nvidia-pytriton', 'pip install -r requirements-serve.txt')
    monkeypatch.setitem(sys.modules, 'tritonclient.http', None)
    fails_with(capsys, inference.main, ['--server', 'localhost:8000', '--datasets', '.'],
               'inference.py --server needs', 'requirements-serve.txt')


@needs_pytriton
@pytest.mark.parametrize('argv, message', [
    (['--batchsize', '0'], '--batchsize must be at least 1'),
    (['--port', '70000'], '--port must be a TCP port'),
    (['--grpc_port', '8000'], 'must differ'),
    (['--max_canvas', '16'], '--max_canvas must be at least 32'),
    (['--log_file', '/no/such/folder/triton.log'], 'its folder does not exist'),
    (['--layout', 'ensemble', '--network', 'native'],
     'has only the Python backend: serve --layout ensemble with --network python'),
])
def test_serve_refuses_bad_flags_up_front(capsys, onnx_paths, argv, message):
    fails_with(capsys, serve.main, ['--engine', str(onnx_paths['fp32'])] + argv, message)


@needs_pytriton
def test_a_port_in_use_is_refused_naming_its_flag(capsys, onnx_paths):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        fails_with(capsys, serve.main, ['--engine', str(onnx_paths['fp32']), '--host',
                                        '127.0.0.1', '--grpc_port', str(port)],
                   f'cannot listen on 127.0.0.1:{port} (--grpc_port)', 'pass a free port')


@needs_pytriton
def test_no_server_at_the_address_is_one_line(capsys, dataset):
    port = free_ports(1)[0]
    fails_with(capsys, inference.main, ['--server', f'127.0.0.1:{port}', '--datasets',
                                        str(dataset)],
               f'no Triton server answers at 127.0.0.1:{port}', 'serve.py --engine MODEL')
    fails_with(capsys, inference.main, ['--server', 'localhost', '--datasets', str(dataset)],
               'expected HOST:PORT')


@needs_pytriton
def test_server_flag_refuses_a_local_model(capsys, dataset, onnx_paths):
    fails_with(capsys, inference.main, ['--server', 'localhost:8000', '--engine',
                                        str(onnx_paths['fp32']), '--datasets', str(dataset)],
               'drop --engine')


def test_python_library_comes_first_on_the_library_path(monkeypatch):
    """PyTriton issue #51: the stub must load this interpreter's libpython, not the system's."""
    from centernet.serving.server import python_library_dir, python_library_first
    folder = python_library_dir()
    if folder is None:
        pytest.skip('this interpreter has no shared libpython (nothing for the stub to mix up)')
    environ = {'LD_LIBRARY_PATH': f'/opt/x{os.pathsep}{folder}'}
    with python_library_first(environ):
        assert environ['LD_LIBRARY_PATH'] == f'{folder}{os.pathsep}/opt/x'
    assert environ == {'LD_LIBRARY_PATH': f'/opt/x{os.pathsep}{folder}'}
    empty = {}
    with python_library_first(empty):
        assert empty['LD_LIBRARY_PATH'] == folder
    assert empty == {}


@needs_pytriton
def test_the_stub_links_this_interpreters_libpython(tmp_path):
    """The dynamic linker's own answer (ldd), for PyTriton's stub of this Python version."""
    import sysconfig
    from pytriton.utils.distribution import get_stub_path
    from centernet.serving.server import python_library_dir, python_library_first
    if python_library_dir() is None:
        pytest.skip('this interpreter has no shared libpython')
    stub = get_stub_path(f'{sys.version_info[0]}.{sys.version_info[1]}')
    environ = dict(os.environ)
    with python_library_first(environ):
        linked = subprocess.run(['ldd', str(stub)], env=environ, capture_output=True,
                                text=True, check=True).stdout
    library = sysconfig.get_config_var('INSTSONAME')
    line = next(line for line in linked.splitlines() if library in line)
    assert f'{python_library_dir()}/{library}' in line, line


def configs(folder):
    """model name -> ModelConfig, parsed with Triton's own protobuf definitions."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2
    found = {}
    for path in sorted(Path(folder).glob('*/config.pbtxt')):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        found[config.name] = config
        assert path.parent.name == config.name and (path.parent / '1').is_dir()
    return found


@needs_pytriton
def test_native_repository_matches_the_onnx_graph_and_wires_the_ensemble(onnx_paths, tmp_path,
                                                                         capsys):
    import onnx
    from tritonclient.grpc import model_config_pb2 as mc
    folder = tmp_path / 'models'
    with pytest.raises(SystemExit) as code:
        run_main(serve.main, ['--engine', str(onnx_paths['fp32']), '--write_repository',
                              str(folder), '--batchsize', '4', '--instances', '2'])
    assert code.value.code == 0
    found = configs(folder)
    assert set(found) == {contract.MODEL, contract.PREPROCESS, contract.NETWORK,
                          contract.POSTPROCESS}
    network = found[contract.NETWORK]
    assert network.platform == 'onnxruntime_onnx' and network.max_batch_size == 4
    assert (folder / contract.NETWORK / '1' / network.default_model_filename).read_bytes() == \
        onnx_paths['fp32'].read_bytes()
    graph = onnx.load(str(onnx_paths['fp32']), load_external_data=False).graph
    onnx_types = {onnx.TensorProto.UINT8: mc.TYPE_UINT8, onnx.TensorProto.FLOAT: mc.TYPE_FP32}
    for config_tensors, graph_tensors in ((network.input, graph.input),
                                          (network.output, graph.output)):
        assert [t.name for t in config_tensors] == [t.name for t in graph_tensors]
        for tensor, value in zip(config_tensors, graph_tensors):
            shape = value.type.tensor_type.shape.dim[1:]  # Triton's dims leave the batch out
            assert tensor.data_type == onnx_types[value.type.tensor_type.elem_type]
            assert list(tensor.dims) == [d.dim_value if d.HasField('dim_value') else -1
                                         for d in shape]
    for name, config in found.items():
        if name != contract.MODEL:
            assert config.dynamic_batching.max_queue_delay_microseconds == 2000
            assert [(g.count, g.kind) for g in config.instance_group] == \
                [(2, mc.ModelInstanceGroup.KIND_CPU)]
    # The ensemble: every step input is an ensemble input or an earlier step's output, every
    # step tensor exists in that step's config, and every ensemble output is produced.
    ensemble = found[contract.MODEL]
    available = {t.name for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = found[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}
        assert set(step.input_map.values()) <= available
        assert set(step.output_map) <= {t.name for t in model.output}
        available |= set(step.output_map.values())
    assert {t.name for t in ensemble.output} <= available
    assert json.loads(ensemble.parameters[contract.CLASSES].string_value)[0] == 'person'
    for step in (contract.PREPROCESS, contract.POSTPROCESS):
        assert (folder / step / '1' / 'centernet' / 'serving' / 'triton_model.py').is_file()


@needs_pytriton
def test_tensorrt_engines_become_tensorrt_plan_on_gpu_instances(tmp_path):
    """Written from what serve.py learns of an engine (no GPU here to open one)."""
    from tritonclient.grpc import model_config_pb2 as mc
    from centernet.config import load_spec
    from centernet.serving.repository import Batching, ServedModel, write_repository
    from coco_labels import COCO_CLASSES
    from conftest import CONFIG
    engine = tmp_path / 'centernet.engine'
    engine.write_bytes(b'plan bytes')
    served = ServedModel('tensorrt', engine, None, {}, load_spec(CONFIG), COCO_CLASSES,
                         (672, 672), True, {'backend': 'tensorrt'})
    write_repository(tmp_path / 'models', served, Batching(16, 2, 500), 'ensemble', 'native')
    network = configs(tmp_path / 'models')[contract.NETWORK]
    assert network.platform == 'tensorrt_plan' and network.default_model_filename == 'model.plan'
    assert [(g.count, g.kind) for g in network.instance_group] == \
        [(2, mc.ModelInstanceGroup.KIND_GPU)]
    assert (tmp_path / 'models' / contract.NETWORK / '1' / 'model.plan').read_bytes() == \
        b'plan bytes'
    torch_model = ServedModel('torch', engine, None, {}, load_spec(CONFIG), COCO_CLASSES,
                              (672, 672), True, {})
    from centernet.errors import UserError
    with pytest.raises(UserError, match='no Triton backend runs the kit\'s torch models'):
        write_repository(tmp_path / 'other', torch_model, Batching(), 'ensemble', 'native')


@needs_pytriton
def test_a_repository_is_written_whole_or_not_at_all(capsys, onnx_paths, tmp_path, monkeypatch):
    from centernet.serving import repository
    argv = ['--engine', str(onnx_paths['fp32']), '--write_repository']
    (tmp_path / 'taken').mkdir()
    fails_with(capsys, serve.main, argv + [str(tmp_path / 'taken')], 'taken already exists')

    def broken(*_):
        raise OSError(28, 'No space left on device')  # errno.ENOSPC, in the last step
    monkeypatch.setattr(repository._Writer, 'ensemble', broken)
    fails_with(capsys, serve.main, argv + [str(tmp_path / 'models')],
               f'cannot write {tmp_path / "models"}: no space left on the device')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['taken']  # no folder, no temporary


@needs_pytriton
def test_a_model_triton_cannot_load_is_one_error_with_tritons_reason(onnx_paths, tmp_path):
    """The native network step in the bundled server, which has no onnxruntime backend."""
    from centernet.errors import UserError
    from centernet.serve_cli import describe_model
    from centernet.serving.repository import Batching, write_repository
    from centernet.serving.server import BundledServer, Endpoints
    served = describe_model(serve.parse_args(['--engine', str(onnx_paths['fp32'])]))
    write_repository(tmp_path / 'all', served, Batching(), 'ensemble', 'native')
    (tmp_path / 'models').mkdir()
    (tmp_path / 'all' / contract.NETWORK).rename(tmp_path / 'models' / contract.NETWORK)
    server = BundledServer(tmp_path / 'models', tmp_path / 'workspace',
                           Endpoints('127.0.0.1', *free_ports(3)), tmp_path / 'triton.log')
    with pytest.raises(UserError, match=f'Triton could not load model {contract.NETWORK}: '
                                        '.*onnxruntime.*the server log: '):
        server.start()
    assert server.triton is None  # stopped again


# --- TensorRT engines in a written repository, read from their sidecars (no GPU here) ----------

def fake_engine(install_trt, folder, onnx_paths, monkeypatch, runtime, profile=(),
                check=False):
    """An engine built by build_engine.py with the fake TensorRT (RTX: without a GPU; TensorRT 10:
    on a fake H100), its ONNX beside it; afterwards neither a GPU nor TensorRT is importable."""
    import build_engine
    import torch
    from test_tensorrt_contract import RTX, TRT10
    for onnx in onnx_paths.values():
        (folder / onnx.name).write_bytes(onnx.read_bytes())
    install_trt(RTX if runtime == 'tensorrt-rtx' else TRT10)
    if runtime == 'tensorrt-rtx':
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    engine = folder / 'm.engine'
    assert build_engine.main(['--model', str(folder / 'centernet_fp16.onnx'), '--engine',
                              str(engine), '--workspace', '1', *profile]
                             + ([] if check else ['--skip-check'])) == 0
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setitem(sys.modules, 'tensorrt', None)
    monkeypatch.setitem(sys.modules, 'tensorrt_rtx', None)
    return engine


@needs_pytriton
def test_an_rtx_engine_is_written_with_the_python_network_step_without_a_gpu(
        install_trt, gpu, onnx_paths, tmp_path, monkeypatch, capsys):
    """serve.py --write_repository with a TensorRT for RTX engine built without a GPU, on a
    machine with neither GPU nor TensorRT: read from its sidecar; the network step is the kit's
    backend in the Python backend (Triton's tensorrt_plan cannot load an RTX engine), carrying
    the engine, its sidecar, its runtime cache and the pending check's reference ONNX; an
    explicit --network native is refused in one line."""
    from centernet.engine.sidecar import runtime_cache_path
    engine = fake_engine(install_trt, tmp_path, onnx_paths, monkeypatch, 'tensorrt-rtx',
                         check=True)
    runtime_cache_path(engine).write_bytes(b'compiled kernels')  # as a GPU run leaves it
    capsys.readouterr()
    with pytest.raises(SystemExit) as code:
        run_main(serve.main, ['--engine', str(engine), '--write_repository',
                              str(tmp_path / 'models')])
    assert code.value.code == 0
    out = capsys.readouterr().out
    assert "the network step is the kit's tensorrt backend in Triton's Python backend" in out
    network = configs(tmp_path / 'models')[contract.NETWORK]
    assert network.backend == 'python' and network.platform == ''
    version = tmp_path / 'models' / contract.NETWORK / '1'
    for name in ('m.engine', 'm.engine.json', 'm.engine.runtime_cache', 'centernet.onnx'):
        assert (version / name).read_bytes() == (tmp_path / name).read_bytes(), name
    fails_with(capsys, serve.main, ['--engine', str(engine), '--write_repository',
                                    str(tmp_path / 'native'), '--network', 'native'],
               "is a TensorRT for RTX engine, and Triton's TensorRT backend (tensorrt_plan) loads "
               'TensorRT 10/11 plans only: pass --network python')


@needs_pytriton
def test_a_pending_engine_without_its_reference_onnx_is_refused_saying_where_it_goes(
        install_trt, gpu, onnx_paths, tmp_path, monkeypatch, capsys):
    """The repository carries a pending check's reference ONNX: an engine moved without it (and
    gone from where the build left it) is refused in one line saying where to copy it, and
    nothing is written; copied there, as the line says, the repository is written with it."""
    import shutil
    (tmp_path / 'build').mkdir()
    engine = fake_engine(install_trt, tmp_path / 'build', onnx_paths, monkeypatch,
                         'tensorrt-rtx', check=True)
    moved = tmp_path / 'moved'
    moved.mkdir()
    for name in ('m.engine', 'm.engine.json'):
        shutil.move(engine.with_name(name), moved / name)
    (tmp_path / 'build' / 'centernet.onnx').rename(tmp_path / 'centernet.onnx')
    argv = ['--engine', str(moved / 'm.engine'), '--write_repository', str(tmp_path / 'models')]
    capsys.readouterr()  # the build's progress
    fails_with(capsys, serve.main, argv, 'has a pending self-check (it runs at the engine\'s '
               'first load on a GPU, against centernet.onnx), but centernet.onnx is neither where '
               f'the build left it nor beside the engine: copy it beside the engine, into {moved}')
    assert not (tmp_path / 'models').exists()
    shutil.copyfile(tmp_path / 'centernet.onnx', moved / 'centernet.onnx')
    with pytest.raises(SystemExit) as code:
        run_main(serve.main, argv)
    assert code.value.code == 0
    assert (tmp_path / 'models' / contract.NETWORK / '1' / 'centernet.onnx').read_bytes() == \
        onnx_paths['fp32'].read_bytes()


@needs_pytriton
def test_a_tensorrt_engine_is_written_as_tensorrt_plan_without_a_gpu(
        install_trt, gpu, onnx_paths, tmp_path, monkeypatch, capsys):
    engine = fake_engine(install_trt, tmp_path, onnx_paths, monkeypatch, 'tensorrt')
    with pytest.raises(SystemExit) as code:
        run_main(serve.main, ['--engine', str(engine), '--write_repository',
                              str(tmp_path / 'models'), '--batchsize', '8'])
    assert code.value.code == 0
    network = configs(tmp_path / 'models')[contract.NETWORK]
    assert network.platform == 'tensorrt_plan' and network.max_batch_size == 8
    assert (tmp_path / 'models' / contract.NETWORK / '1' / 'model.plan').read_bytes() == \
        engine.read_bytes()


@needs_pytriton
@pytest.mark.parametrize('profile, words', [
    (['--min_batch', '2', '--opt_batch', '2'], 'serve.py runs batches of as few as one image (a '
     "request is one image, and a dynamic batch runs grouped by canvas size): batch size 1 is "
     "below the TensorRT engine's minimum 2"),
    (['--min_side', '96', '--opt_side', '96', '--max_side', '96'],
     'takes one canvas size only (96x96), and a server gets images of every size'),
])
def test_serve_refuses_an_engine_that_would_refuse_nearly_every_request(
        install_trt, gpu, onnx_paths, tmp_path, monkeypatch, capsys, profile, words):
    engine = fake_engine(install_trt, tmp_path, onnx_paths, monkeypatch, 'tensorrt', profile)
    capsys.readouterr()
    fails_with(capsys, serve.main, ['--engine', str(engine), '--write_repository',
                                    str(tmp_path / 'models'), '--batchsize', '8'], words)
    assert not (tmp_path / 'models').exists()


def test_the_container_command_installs_what_the_python_steps_import():
    """docs/serving.md's NGC container command installs every package of requirements.txt that
    the preprocess and postprocess steps import (asked of Python itself, in a fresh process)."""
    import re
    from importlib.metadata import packages_distributions
    probe = ('import json, sys; before = set(sys.modules); '
             'import centernet.serving.triton_model, centernet.config, centernet.preprocess, '
             'centernet.dataset, centernet.pipeline, coco_labels; '
             'print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - before})))')
    imported = json.loads(subprocess.run([sys.executable, '-c', probe], cwd=ROOT, check=True,
                                         capture_output=True, text=True).stdout)
    def name(text):
        return re.sub(r'[-_.]+', '-', text).lower()
    required = {name(re.split(r'[<>=!~;\s\[]', line.strip())[0])
                for line in (ROOT / 'requirements.txt').read_text().splitlines()
                if line.strip() and not line.startswith('#')}
    distributions = packages_distributions()
    needed = {name(dist) for module in imported for dist in distributions.get(module, ())
              } & required
    assert {'numpy', 'torch', 'imagesize'} <= needed  # the probe sees the real imports
    docs = (ROOT / 'docs' / 'serving.md').read_text()
    [command] = re.findall(r"pip install ([^&']+?) --index-url", docs)
    assert needed <= {name(word) for word in command.split()}, (needed, command)


def test_benchmark_serving_checks_its_requirements_before_the_direct_pass(capsys, monkeypatch):
    sys.path.insert(0, str(ROOT / 'tools'))
    import benchmark_serving
    monkeypatch.setattr(benchmark_serving, 'Direct', lambda *args: pytest.fail('ran'))
    monkeypatch.setitem(sys.modules, 'pytriton', None)
    fails_with(capsys, benchmark_serving.main, ['--images', '2'],
               'tools/benchmark_serving.py needs nvidia-pytriton', 'requirements-serve.txt')


@pytest.mark.parametrize('flag', [['--batchsize', '8'], ['--workers', '2'],
                                  ['--max_pixels', '1e6']])
def test_server_refuses_the_flags_of_a_local_run(capsys, flag):
    fails_with(capsys, inference.main, ['--server', 'localhost:8000', '--datasets', '.'] + flag,
               f'--server: drop {flag[0]}, which applies to a local run only')
