"""Parity with real mmdet 3.3.0 (fixtures made by tools/make_golden.py with mmdet + mmcv 2.1.0).

The same seeded weights are regenerated here; their digest proves they are the ones mmdet ran.
"""

import json

import numpy as np
import pytest
import torch

from conftest import GOLDEN
from matching import assert_same_detections

from centernet.dataset import ImageRecord
from centernet.decode import decode_heads
from centernet.pipeline import Detector, detect_records
from centernet.preprocess import CenterCanvas, read_image
from centernet.synthetic import state_dict_digest

FP32_HEAD_TOLERANCE = 1e-4


@pytest.fixture(scope='module')
def golden():
    meta = json.loads((GOLDEN / 'golden.json').read_text())
    arrays = dict(np.load(GOLDEN / 'golden.npz'))
    return meta, arrays


def _stem(name):
    return name.rsplit('.', 1)[0]


def _records(meta):
    return [ImageRecord(i, image['id'], str(GOLDEN / 'images' / image['file_name']),
                        image['height'], image['width']) for i, image in enumerate(meta['images'])]


def test_state_dict_names_shapes_dtypes_equal_mmdet(golden, model):
    meta, _ = golden
    ours = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    assert len(meta['state_dict']) == 168
    assert sorted(ours) == sorted(meta['state_dict'])


def test_seeded_weights_are_the_ones_mmdet_ran(golden, seeded_weights):
    meta, _ = golden
    assert state_dict_digest(seeded_weights) == meta['weights_sha256'], (
        'regenerated weights differ from the golden run: torch RNG changed? rerun '
        'tools/make_golden.py')


def test_canvas_and_border_equal_mmdet(golden, spec):
    meta, arrays = golden
    canvas = CenterCanvas(spec)
    for image in meta['images']:
        key = _stem(image['file_name'])
        picture = read_image(GOLDEN / 'images' / image['file_name'])
        made, border = canvas(picture)
        assert picture.shape[:2] == tuple(arrays[f'{key}/ori_shape']), key
        assert made.shape[:2] == tuple(arrays[f'{key}/img_shape']), key
        np.testing.assert_array_equal(border, arrays[f'{key}/border'], err_msg=key)


def _heads_keys(arrays):
    return sorted(k.split('/')[0] for k in arrays if k.endswith('/heatmap'))


@pytest.mark.parametrize('source', ['torch', 'onnx-fp32'])
def test_raw_heads_equal_mmdet(golden, spec, model, onnx_paths, source):
    meta, arrays = golden
    canvas = CenterCanvas(spec)
    names = {_stem(i['file_name']): i['file_name'] for i in meta['images']}
    keys = _heads_keys(arrays)
    assert len(keys) >= 3
    for key in keys:
        made, _ = canvas(read_image(GOLDEN / 'images' / names[key]))
        if source == 'torch':
            with torch.no_grad():
                heads = [t[0].numpy() for t in model(torch.from_numpy(made)[None])]
        else:
            from centernet.onnx_export import run_onnxruntime
            heads = [h[0] for h in run_onnxruntime(onnx_paths['fp32'], made[None])]
        for name, ours in zip(('heatmap', 'wh', 'offset'), heads):
            theirs = arrays[f'{key}/{name}'][0]  # mmdet's (1, C, H, W)
            assert ours.shape == theirs.shape
            scale = max(1.0, float(np.abs(theirs).max()))
            assert np.abs(ours - theirs).max() <= FP32_HEAD_TOLERANCE * scale, (key, name)


def test_decode_of_mmdet_heads_is_bit_exact(golden, spec):
    """decode_heads on mmdet's own heads reproduces mmdet's boxes exactly (same ops, same order)."""
    _, arrays = golden
    for key in _heads_keys(arrays):
        heads = [torch.from_numpy(arrays[f'{key}/{n}']) for n in ('heatmap', 'wh', 'offset')]
        border = torch.from_numpy(arrays[f'{key}/border'])[None]
        boxes, scores, labels = decode_heads(*heads, border, stride=spec.stride, topk=spec.topk,
                                             kernel=spec.local_maximum_kernel)
        np.testing.assert_array_equal(boxes[0].numpy(), arrays[f'{key}/boxes'], err_msg=key)
        np.testing.assert_array_equal(scores[0].numpy(), arrays[f'{key}/scores'], err_msg=key)
        np.testing.assert_array_equal(labels[0].numpy(), arrays[f'{key}/labels'], err_msg=key)


def _backend(kind, model, onnx_paths):
    if kind == 'torch':
        from centernet.backends.torch_backend import TorchBackend
        return TorchBackend.for_model(model)
    from centernet.backends.onnxruntime_backend import OrtBackend
    return OrtBackend(onnx_paths['fp32'])


@pytest.mark.parametrize('kind', ['torch', 'onnx-fp32'])
@pytest.mark.parametrize('batch_size', [1, 5])
def test_detections_equal_mmdet_batch1(golden, model, onnx_paths, kind, batch_size):
    """All golden images (COCO-like, 512 -> 544, 640 -> 672, tiny, gray, RGBA, 16-bit, EXIF)
    through the full pipeline; batch 5 mixes sizes, which canvas grouping must make harmless."""
    meta, _ = golden
    detector = Detector(_backend(kind, model, onnx_paths))
    records = _records(meta)
    result = detect_records(detector, records, batch_size, workers=0, progress=False)
    _assert_equal_to_golden(result, records, golden, f'{kind} batch {batch_size}')


def _assert_equal_to_golden(result, records, golden, what):
    meta, arrays = golden
    assert result.done.all()
    for record, image in zip(records, meta['images']):
        key = _stem(image['file_name'])
        ours = (result.boxes[record.index], result.scores[record.index],
                result.labels[record.index])
        theirs = (arrays[f'{key}/boxes'], arrays[f'{key}/scores'], arrays[f'{key}/labels'])
        assert_same_detections(ours, theirs, what=f'{what} {key}')


def test_exif_rotated_image_with_pre_rotation_size_hint(golden, spec, onnx_paths):
    """Real COCO annotation files give the stored (pre-EXIF) size; OpenCV returns the rotated
    image. The wrong size hint must only split the batch, never change a detection."""
    meta, _ = golden
    from centernet.backends.onnxruntime_backend import OrtBackend
    records = []
    for i, image in enumerate(meta['images']):
        height, width = image['height'], image['width']
        if image['file_name'].startswith('exif6'):
            height, width = width, height  # the stored JPEG is 200 wide, 120 high
        records.append(ImageRecord(i, image['id'], str(GOLDEN / 'images' / image['file_name']),
                                   height, width))
    exif = next(r for r in records if 'exif6' in r.path)
    assert (exif.height, exif.width) == (120, 200)
    result = detect_records(Detector(OrtBackend(onnx_paths['fp32'])), records, 13, workers=2,
                            progress=False)
    _assert_equal_to_golden(result, records, golden, 'size hint from before EXIF rotation')
