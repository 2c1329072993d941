#!/usr/bin/env python3
"""Numbers behind "equal to mmdet": max differences on the golden images (tests/fixtures/golden).

    python tools/parity_report.py

Heads (heatmap, wh, offset) of the native model, the FP32 ONNX and the FP16 ONNX against mmdet
3.3.0's own heads, and the detections' largest box/score difference against mmdet's, per path.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from centernet import onnx_export as ox  # noqa: E402
from centernet.backends.torch_backend import TorchBackend  # noqa: E402
from centernet.compare import match_rate  # noqa: E402
from centernet.config import load_spec  # noqa: E402
from centernet.dataset import ImageRecord  # noqa: E402
from centernet.model import build_model  # noqa: E402
from centernet.pipeline import Detector, detect_records  # noqa: E402
from centernet.preprocess import CenterCanvas, read_image  # noqa: E402
from centernet.report import format_table  # noqa: E402
from centernet.synthetic import seeded_state_dict  # noqa: E402
from coco_labels import COCO_CLASSES  # noqa: E402

GOLDEN = ROOT / 'tests' / 'fixtures' / 'golden'


def main():
    meta = json.loads((GOLDEN / 'golden.json').read_text())
    arrays = dict(np.load(GOLDEN / 'golden.npz'))
    spec = load_spec(ROOT / 'centernet_r18_8xb16-crop512-140e_coco.py')
    model = build_model(spec)
    model.load_state_dict(seeded_state_dict(model, meta['seed']))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = ox.export_fp32(model, Path(tmp) / 'm.onnx', classes=COCO_CLASSES, log=lambda *_: 0)
        fp16 = ox.convert_fp16(fp32, Path(tmp) / 'm16.onnx', log=lambda *_: 0)
        canvas = CenterCanvas(spec)
        head_rows = []
        for image in meta['images']:
            key = image['file_name'].rsplit('.', 1)[0]
            if f'{key}/heatmap' not in arrays:
                continue
            made, _ = canvas(read_image(GOLDEN / 'images' / image['file_name']))
            mmdet = [arrays[f'{key}/{n}'][0] for n in ox.OUTPUT_NAMES]
            paths = {'native torch': [t[0] for t in ox.run_torch(model, made[None])],
                     'ONNX FP32': [t[0] for t in ox.run_onnxruntime(fp32, made[None])],
                     'ONNX FP16': [t[0] for t in ox.run_onnxruntime(fp16, made[None])]}
            for path, heads in paths.items():
                head_rows.append([key, path] + [float(np.abs(a - b).max())
                                                for a, b in zip(heads, mmdet)])
        print(format_table(['image', 'path', 'heatmap', 'wh', 'offset'], head_rows,
                           title='max |heads - mmdet heads|'))
        records = [ImageRecord(i, im['id'], str(GOLDEN / 'images' / im['file_name']),
                               im['height'], im['width']) for i, im in enumerate(meta['images'])]
        from centernet.backends.onnxruntime_backend import OrtBackend
        keys = [image['file_name'].rsplit('.', 1)[0] for image in meta['images']]
        theirs = tuple(np.stack([arrays[f'{key}/{name}'] for key in keys])
                       for name in ('boxes', 'scores', 'labels'))
        det_rows = []
        for path, backend, batch in (('native torch', TorchBackend.for_model(model), 1),
                                     ('ONNX FP32', OrtBackend(fp32), 1),
                                     ('ONNX FP32', OrtBackend(fp32), 13),
                                     ('ONNX FP16', OrtBackend(fp16), 13)):
            result = detect_records(Detector(backend), records, batch, workers=0, progress=False)
            is_fp16 = path == 'ONNX FP16'
            tolerance = (1.0, 5e-3) if is_fp16 else (1e-3, 1e-5)
            _, matched, required = match_rate(result.arrays, theirs, *tolerance)
            # Rank-wise differences mean something only where the ranks agree (not in FP16).
            box = '-' if is_fp16 else float(np.abs(result.boxes - theirs[0]).max())
            score = '-' if is_fp16 else float(np.abs(result.scores - theirs[1]).max())
            det_rows.append([path, batch, f'{matched}/{required}', str(tolerance), box, score])
        print(format_table(['path', 'batch', 'matched', '(box px, score) tol',
                            'max |box diff| rank-wise', 'max |score diff|'], det_rows,
                           title=f'detections vs mmdet 3.3.0 batch 1, {len(records)} golden images'))


if __name__ == '__main__':
    main()
