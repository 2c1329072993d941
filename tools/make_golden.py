#!/usr/bin/env python3
"""Make the golden fixtures under tests/fixtures/golden/ with real mmdet 3.3.0 + mmcv 2.1.0.

Needs an environment with mmdet (docs/mmdet-parity.md, "Regenerating the golden data"):
    pip install torch==2.13.0 mmengine==0.10.7 mmdet==3.3.0 "setuptools<70" wheel ninja
    MMCV_WITH_OPS=1 MAX_JOBS=2 pip install --no-build-isolation mmcv==2.1.0
    python tools/make_golden.py

What it writes (small enough to commit; CI never needs mmdet):
    images/*         generated test images: COCO-like sizes, 512x512 (canvas 544), 640x640 (672),
                     tiny, grayscale JPEG, RGBA PNG, 16-bit PNG, a JPEG with EXIF orientation 6
    annotations.json a COCO-format annotation file for those images (all 80 categories)
    golden.npz       mmdet's batch-1 detections per image (boxes, scores, labels), its border and
                     shapes, and the raw heads (heatmap, wh, offset) of the small images
    golden.json      versions, mmdet's state_dict names/shapes, the seeded weights' digest, and
                     CocoMetric's numbers + results JSON for a set of generated detections
"""

import argparse
import json
import struct
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet.synthetic import (coco_categories, scene, seeded_state_dict,  # noqa: E402
                                 state_dict_digest)
from coco_labels import COCO_CATEGORY_IDS  # noqa: E402

CONFIG = ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py'
SEED = 0
# name, (width, height), how to write it. Heads are kept for the small ones (they are large).
IMAGES = [
    ('coco_640x480.jpg', (640, 480), 'jpg'),
    ('coco_480x640.jpg', (480, 640), 'jpg'),
    ('coco_640x427.jpg', (640, 427), 'jpg'),
    ('coco_427x640.jpg', (427, 640), 'jpg'),
    ('coco_500x375.jpg', (500, 375), 'jpg'),
    ('square_512.jpg', (512, 512), 'jpg'),
    ('square_640.jpg', (640, 640), 'jpg'),
    ('odd_411x333.jpg', (411, 333), 'jpg'),
    ('tiny_23x17.png', (23, 17), 'png'),
    ('gray_333x411.jpg', (333, 411), 'gray-jpg'),
    ('rgba_200x150.png', (200, 150), 'rgba-png'),
    ('gray16_131x97.png', (131, 97), 'gray16-png'),
    ('exif6_200x120.jpg', (200, 120), 'exif6-jpg'),
]
HEADS_FOR = {'tiny_23x17.png', 'gray16_131x97.png', 'exif6_200x120.jpg', 'rgba_200x150.png'}


def exif_orientation_segment(orientation):
    """A minimal APP1 Exif segment holding one IFD0 entry: Orientation (0x0112)."""
    tiff = b'MM\x00\x2a' + struct.pack('>I', 8)
    tiff += struct.pack('>H', 1) + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack('>I', 0)
    payload = b'Exif\x00\x00' + tiff
    return b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload


def write_images(folder, rng):
    records = []
    for index, (name, (width, height), kind) in enumerate(IMAGES):
        picture, objects = scene(rng, width, height)
        path = folder / name
        if kind == 'jpg':
            cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
        elif kind == 'png':
            cv2.imwrite(str(path), picture)
        elif kind == 'gray-jpg':
            cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY))
        elif kind == 'rgba-png':
            alpha = rng.integers(0, 256, (height, width, 1), dtype=np.uint8)
            cv2.imwrite(str(path), np.concatenate([picture, alpha], axis=2))
        elif kind == 'gray16-png':
            gray = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
            cv2.imwrite(str(path), gray + rng.integers(0, 257, gray.shape, dtype=np.uint16))
        elif kind == 'exif6-jpg':
            ok, data = cv2.imencode('.jpg', picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
            data = data.tobytes()
            path.write_bytes(data[:2] + exif_orientation_segment(6) + data[2:])
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        records.append(dict(id=1000 + 37 * index, file_name=name, width=decoded.shape[1],
                            height=decoded.shape[0], objects=objects))
    return records


def write_annotations(path, records):
    annotations = []
    for record in records:
        for x, y, w, h, label in record['objects']:
            # Objects were drawn before any EXIF rotation; clip to the decoded frame.
            w, h = max(1, min(w, record['width'] - x)), max(1, min(h, record['height'] - y))
            if x >= record['width'] or y >= record['height']:
                continue
            annotations.append(dict(id=len(annotations) + 1, image_id=record['id'],
                                    category_id=COCO_CATEGORY_IDS[label], bbox=[x, y, w, h],
                                    area=float(w * h), iscrowd=0))
    images = [{k: r[k] for k in ('id', 'file_name', 'width', 'height')} for r in records]
    path.write_text(json.dumps(dict(images=images, annotations=annotations,
                                    categories=coco_categories()), indent=1))
    return annotations


def build_mmdet_model():
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules
    register_all_modules()
    model = init_detector(str(CONFIG), checkpoint=None, device='cpu')
    weights = seeded_state_dict(model, SEED)
    model.load_state_dict(weights, strict=True)
    return model.eval(), weights


def run_mmdet(model, folder, records):
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate
    pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
    arrays = {}
    for record in records:
        data = pipeline(dict(img_path=str(folder / record['file_name']), img_id=record['id']))
        batch = pseudo_collate([data])
        with torch.no_grad():
            result = model.test_step(batch)[0]
            pred = result.pred_instances
            key = Path(record['file_name']).stem
            arrays[f'{key}/boxes'] = pred.bboxes.numpy().astype(np.float32)
            arrays[f'{key}/scores'] = pred.scores.numpy().astype(np.float32)
            arrays[f'{key}/labels'] = pred.labels.numpy().astype(np.int64)
            arrays[f'{key}/border'] = np.asarray(result.metainfo['border'], np.float32)
            arrays[f'{key}/ori_shape'] = np.asarray(result.metainfo['ori_shape'], np.int64)
            arrays[f'{key}/img_shape'] = np.asarray(result.metainfo['img_shape'], np.int64)
            if record['file_name'] in HEADS_FOR:
                processed = model.data_preprocessor(batch, False)
                heatmap, wh, offset = (t[0] for t in model.bbox_head(model.extract_feat(
                    processed['inputs'])))
                arrays[f'{key}/heatmap'] = heatmap.numpy()
                arrays[f'{key}/wh'] = wh.numpy()
                arrays[f'{key}/offset'] = offset.numpy()
        print(f'{record["file_name"]:22s} ori {tuple(result.metainfo["ori_shape"])} '
              f'canvas {tuple(result.metainfo["img_shape"])} top score {pred.scores[0]:.4f}')
    return arrays


def coco_metric_golden(ann_file, records, rng):
    """Run mmdet's CocoMetric on generated detections: jittered ground truth + false positives."""
    from mmdet.evaluation import CocoMetric
    from mmdet.datasets import CocoDataset
    gt = json.loads(Path(ann_file).read_text())['annotations']
    detections = {}
    for record in records:
        boxes, scores, labels = [], [], []
        for a in (a for a in gt if a['image_id'] == record['id']):
            x, y, w, h = a['bbox']
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
            scores.append(rng.uniform(0.3, 1.0))
            labels.append(COCO_CATEGORY_IDS.index(a['category_id']))
        while len(boxes) < 100:
            x1, y1 = rng.uniform(-10, record['width']), rng.uniform(-10, record['height'])
            boxes.append([x1, y1, x1 + rng.uniform(-2, 120), y1 + rng.uniform(-2, 120)])
            scores.append(rng.uniform(0.0, 0.6))
            labels.append(int(rng.integers(0, 80)))
        order = np.argsort(-np.asarray(scores), kind='stable')
        detections[record['id']] = (np.asarray(boxes, np.float32)[order],
                                    np.asarray(scores, np.float32)[order],
                                    np.asarray(labels, np.int64)[order])
    with tempfile.TemporaryDirectory() as tmp:
        metric = CocoMetric(ann_file=str(ann_file), metric='bbox', outfile_prefix=f'{tmp}/res')
        metric.dataset_meta = CocoDataset.METAINFO
        samples = [dict(img_id=img_id, ori_shape=(0, 0), pred_instances=dict(
            bboxes=torch.from_numpy(b), scores=torch.from_numpy(s), labels=torch.from_numpy(lab)))
            for img_id, (b, s, lab) in detections.items()]
        metric.process({}, samples)
        numbers = metric.compute_metrics(metric.results)
        results_json = json.loads(Path(f'{tmp}/res.bbox.json').read_text())
    arrays = {}
    for img_id, (b, s, lab) in detections.items():
        arrays[f'metric/{img_id}/boxes'], arrays[f'metric/{img_id}/scores'] = b, s
        arrays[f'metric/{img_id}/labels'] = lab
    return {k: float(v) for k, v in numbers.items()}, results_json, arrays


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=str(ROOT / 'tests' / 'fixtures' / 'golden'))
    args = parser.parse_args()
    import mmcv
    import mmdet
    import mmengine
    out = Path(args.out)
    (out / 'images').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    records = write_images(out / 'images', rng)
    write_annotations(out / 'annotations.json', records)
    model, weights = build_mmdet_model()
    arrays = run_mmdet(model, out / 'images', records)
    metric_numbers, results_json, metric_arrays = coco_metric_golden(
        out / 'annotations.json', records, rng)
    arrays.update(metric_arrays)
    np.savez_compressed(out / 'golden.npz', **arrays)
    meta = dict(
        versions=dict(mmdet=mmdet.__version__, mmcv=mmcv.__version__,
                      mmengine=mmengine.__version__, torch=torch.__version__,
                      opencv=cv2.__version__, numpy=np.__version__),
        seed=SEED,
        weights_sha256=state_dict_digest(weights),
        state_dict=[[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()],
        images=[{k: r[k] for k in ('id', 'file_name', 'width', 'height')} for r in records],
        coco_metric=metric_numbers,
        coco_metric_results=results_json,
    )
    (out / 'golden.json').write_text(json.dumps(meta, indent=1))
    print(f'wrote {out}: {len(records)} images, CocoMetric {metric_numbers}')


if __name__ == '__main__':
    main()
