"""inference.py end to end on a generated COCO-format set: accuracy, batching, backends, perf, demo."""

import json
from collections import defaultdict

import numpy as np
import pytest

import inference
from common import run_main
from conftest import CONFIG
from matching import assert_same_detections

from centernet.synthetic import COCO_LIKE_SIZES, write_coco_dataset
from centernet.timing import STAGES


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    # 9 images, 5 canvas shapes, one image with no annotations is fine too
    write_coco_dataset(root, COCO_LIKE_SIZES[::2] + ((23, 17),), seed=3)
    return root


def run_cli(argv):
    with pytest.raises(SystemExit) as code:
        run_main(inference.main, argv + ['--quiet'])
    return code.value.code


def by_image(results):
    grouped = defaultdict(list)
    for r in results:
        grouped[r['image_id']].append(r)
    out = {}
    for image_id, rows in grouped.items():
        boxes = np.array([r['bbox'] for r in rows])
        boxes[:, 2:] += boxes[:, :2]
        out[image_id] = (boxes, np.array([r['score'] for r in rows]),
                         np.array([r['category_id'] for r in rows]))
    return out


@pytest.fixture(scope='module')
def onnx_batch1(dataset, onnx_paths, tmp_path_factory):
    out = tmp_path_factory.mktemp('runs')
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset),
                    '--batchsize', '1', '--workers', '0', '--save_json', str(out / 'b1.json'),
                    '--record', str(out / 'b1.record.json')]) == 0
    return json.loads((out / 'b1.json').read_text()), json.loads((out / 'b1.record.json').read_text())


def test_accuracy_run_writes_all_detections_and_record(onnx_batch1, dataset):
    results, record = onnx_batch1
    ann = json.loads((dataset / 'annotations/instances_val2017.json').read_text())
    assert len(results) == 100 * len(ann['images'])
    assert {r['image_id'] for r in results} == {i['id'] for i in ann['images']}
    assert record['images'] == len(ann['images']) and record['backend']['backend'] == 'onnxruntime'
    assert set(record['metrics']) >= {'mAP', 'mAP_50', 'AR@100'}
    assert len(record['canvas_shapes']) >= 4


def test_accuracy_record_breaks_the_wall_time_down(onnx_batch1):
    record = onnx_batch1[1]
    times = record['times']
    stages = {name for name, _ in STAGES}
    assert set(times) == stages | {'other', 'total'}
    assert all(times[name] >= 0 for name in times)
    assert times['network'] > 0 and times['annotations'] > 0 and times['evaluation'] > 0
    assert sum(times[name] for name in stages) <= times['total'] + 1e-9
    assert abs(sum(times[name] for name in stages) + times['other'] - times['total']) < 1e-9
    assert times['evaluation'] == record['eval_seconds']
    assert times['loader_wait'] == record['loader_wait_seconds']
    assert record['evaluator'] == 'faster-coco-eval'
    assert sum(record['eval_steps'].values()) <= record['eval_seconds']


def test_evaluators_give_the_same_metrics_through_the_cli(dataset, onnx_paths, tmp_path):
    metrics = {}
    for name in ('pycocotools', 'faster'):
        record = tmp_path / f'{name}.json'
        assert run_cli(['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset),
                        '--limit', '3', '--workers', '0', '--evaluator', name,
                        '--record', str(record)]) == 0
        metrics[name] = json.loads(record.read_text())
    assert metrics['pycocotools']['evaluator'] == 'pycocotools'
    assert metrics['pycocotools']['metrics'] == metrics['faster']['metrics']


@pytest.mark.parametrize('extra', [['--batchsize', '32', '--workers', '2'],
                                   ['--batchsize', '3', '--workers', '1']])
def test_batched_detections_equal_batch_1(onnx_batch1, dataset, onnx_paths, tmp_path, extra):
    out = tmp_path / 'b.json'
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset),
                    '--save_json', str(out), '--record', str(tmp_path / 'r.json')] + extra) == 0
    single, batched = by_image(onnx_batch1[0]), by_image(json.loads(out.read_text()))
    assert single.keys() == batched.keys()
    for image_id in single:
        assert_same_detections(batched[image_id], single[image_id], what=f'image {image_id}')


# --compile: TorchInductor on the CPU (the GPU's kernels differ; gpu_check compares those). At
# batch 1 the first 8 images (4 canvas shapes) make two compilations (~20 s each on 2 cores): the
# static graph of the first shape, then the shape-generic one that serves the others. The 9th
# image's 32x32 canvas would cost a third: inductor guards its convs on a minimum size.
@pytest.mark.parametrize('extra', [[], ['--compile', 'default', '--batchsize', '1', '--limit', '8']])
def test_torch_backend_equals_onnxruntime(onnx_batch1, dataset, checkpoint_path, tmp_path, extra):
    out, record = tmp_path / 't.json', tmp_path / 'r.json'
    assert run_cli(['--backend', 'torch', '--weight', str(checkpoint_path), '--cfg', str(CONFIG),
                    '--device', 'cpu', '--datasets', str(dataset), '--batchsize', '4',
                    '--workers', '0', '--save_json', str(out), '--record', str(record)]
                   + extra) == 0
    compiled = json.loads(record.read_text())['backend']['compile_mode']
    assert compiled == (extra[1] if extra else None)
    single, torch_results = by_image(onnx_batch1[0]), by_image(json.loads(out.read_text()))
    assert len(torch_results) == (8 if extra else len(single))
    for image_id in torch_results:
        assert_same_detections(torch_results[image_id], single[image_id], what=f'{image_id}')


def test_acc_target(dataset, onnx_paths, tmp_path, onnx_batch1):
    ap = onnx_batch1[1]['metrics']['mAP']
    common = ['--engine', str(onnx_paths['fp32']), '--datasets', str(dataset), '--limit', '2',
              '--workers', '0', '--record', str(tmp_path / 'r.json')]
    assert run_cli(common + ['--acc_target', '0.9']) == 1
    assert run_cli(common + ['--acc_target', str(min(ap, 0.0))]) == 0


@pytest.mark.parametrize('flag', [['--perf_only'], ['--perf_only', 'True']])
def test_perf_only_reports_three_tiers(dataset, onnx_paths, tmp_path, flag):
    record = tmp_path / 'perf.json'
    code = run_cli(['--engine', str(onnx_paths['fp32']), '--batchsize', '1', '--warmup', '1',
                    '--iterations', '2', '--datasets', str(dataset), '--limit', '2',
                    '--workers', '0', '--record', str(record)] + flag)
    assert code == 0
    tiers = json.loads(record.read_text())['tiers']
    assert set(tiers) == {'engine', 'engine+io', 'pipeline'}
    assert all(t['fps'] > 0 for t in tiers.values())
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--batchsize', '1', '--warmup', '0',
                    '--iterations', '1', '--perf_only', '--fps_target', '1e9',
                    '--record', str(record)]) == 1


def test_demo_draws_pictures(dataset, onnx_paths, tmp_path):
    import cv2
    out = tmp_path / 'pictures'
    images = dataset / 'images' / 'val2017'
    assert run_cli(['--engine', str(onnx_paths['fp32']), '--images', str(images), '--out', str(out),
                    '--score_thr', '0.3', '--batchsize', '4']) == 0
    listing = json.loads((out / 'detections.json').read_text())
    assert len(listing) == len(list(images.iterdir()))
    for entry in listing:
        drawn, original = cv2.imread(entry['annotated']), cv2.imread(entry['file'])
        assert drawn.shape == original.shape
        assert len(entry['detections']) == 100
        if any(d['score'] >= 0.3 for d in entry['detections']):
            assert np.abs(drawn.astype(int) - original.astype(int)).max() > 100  # boxes drawn
