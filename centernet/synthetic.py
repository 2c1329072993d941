"""Seeded stand-ins for what cannot be downloaded here: weights, images and COCO-format sets.

Used by the tests, tools/gate_sweep.py, tools/make_golden.py (mmdet's golden outputs are computed
on exactly these weights) and by the benchmarks. Nothing here is used on a real run.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from coco_labels import COCO_CATEGORY_IDS, COCO_CLASSES

# Image sizes (width, height) in roughly COCO val2017's proportions: mostly 640x480 and 640x427,
# both orientations, some 640x640 and 500x375.
COCO_LIKE_SIZES = ((640, 480),) * 8 + ((480, 640),) * 4 + ((640, 427),) * 4 + ((427, 640),) * 2 \
    + ((640, 640),) * 1 + ((500, 375),) * 1


def seeded_state_dict(model, seed=0):
    """Deterministic, well-scaled weights for `model` (mmdet key names): the heatmap is neither
    flat nor saturated, so decode, ties and top-k are exercised as with trained weights."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in sorted(model.state_dict().items()):
        shape = tensor.shape
        if name.endswith('num_batches_tracked'):
            value = torch.zeros((), dtype=torch.int64)
        elif name.endswith('running_mean'):
            value = torch.randn(shape, generator=generator) * 0.1
        elif name.endswith('running_var'):
            value = torch.rand(shape, generator=generator) * 0.5 + 0.75
        elif tensor.dim() == 1 and '.bn' in name or '.downsample.1.' in name or 'bn1' in name:
            if name.endswith('weight'):
                value = torch.rand(shape, generator=generator) * 0.4 + 0.6
            else:
                value = torch.randn(shape, generator=generator) * 0.05
        elif name.endswith('bias'):  # head conv biases; the heatmap's starts low, like CenterNet's
            value = torch.randn(shape, generator=generator) * 0.05
            if name == 'bbox_head.heatmap_head.2.bias':
                value -= 2.19
            if name == 'bbox_head.wh_head.2.bias':
                value += 6.0  # mostly positive sizes (mmdet keeps negative ones verbatim too)
        else:  # conv / deconv weights: He initialisation over the fan-in
            fan_in = shape[1] * shape[2] * shape[3]
            if 'neck' in name and shape[2] == 4:  # ConvTranspose2d(k4, s2): ~4 taps per output
                fan_in = shape[0] * 4
            value = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
            if name == 'bbox_head.wh_head.2.weight':
                value *= 2.0  # box sizes of a few feature cells to tens of cells
            if name == 'bbox_head.heatmap_head.2.weight':
                value *= 0.3  # scores spread over (0, 1) instead of saturating
        state[name] = value.to(tensor.dtype).contiguous()
    return state


def state_dict_digest(state_dict):
    """sha256 over names, shapes, dtypes and bytes, in key order."""
    import hashlib
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f'{name}|{tuple(tensor.shape)}|{tensor.dtype}|'.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def scene(rng, width, height, num_objects=4):
    """A BGR uint8 picture of coloured boxes and discs on a gradient; returns (image, boxes)
    where boxes are (x, y, w, h, label) of the drawn objects."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    image = np.stack([(base[c] + 60 * np.sin(xs / (17 + 7 * c)) + 40 * np.cos(ys / (23 + 5 * c)))
                      for c in range(3)], axis=2)
    image = np.clip(image, 0, 255).astype(np.uint8)
    objects = []
    for _ in range(num_objects):
        w = int(rng.integers(max(4, width // 10), max(5, width // 2)))
        h = int(rng.integers(max(4, height // 10), max(5, height // 2)))
        x = int(rng.integers(0, max(1, width - w)))
        y = int(rng.integers(0, max(1, height - h)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, -1)
        else:
            cv2.ellipse(image, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1)
        objects.append((x, y, w, h, int(rng.integers(0, len(COCO_CLASSES)))))
    return image, objects


def coco_categories():
    return [{'id': cid, 'name': name, 'supercategory': 'object'}
            for cid, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES)]


def write_coco_dataset(root, sizes, seed=0, image_folder='images/val2017',
                       ann_path='annotations/instances_val2017.json', first_id=1, quality=90):
    """Write a COCO-format set under `root` in the reference layout; returns the annotation path.

    Image ids are not in file order on purpose (evaluation must follow the annotation file).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / image_folder).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, (width, height) in enumerate(sizes):
        image_id = first_id + (index * 7919) % 100003
        file_name = f'{image_id:012d}.jpg'
        picture, objects = scene(rng, width, height)
        cv2.imwrite(str(root / image_folder / file_name), picture,
                    [cv2.IMWRITE_JPEG_QUALITY, quality])
        images.append({'id': image_id, 'file_name': file_name, 'width': width, 'height': height})
        for x, y, w, h, label in objects:
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                                'category_id': COCO_CATEGORY_IDS[label],
                                'bbox': [x, y, w, h], 'area': float(w * h), 'iscrowd': 0})
    ann_file = root / ann_path
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps({'images': images, 'annotations': annotations,
                                    'categories': coco_categories()}))
    return ann_file


def calibration_canvases(spec, count=4, height=224, width=288, seed=0):
    """(count, height, width, 3) uint8 canvases of generated scenes, pasted as inference pastes."""
    from .preprocess import CenterCanvas
    rng = np.random.default_rng(seed)
    paste = CenterCanvas(spec)
    canvases = np.empty((count, height, width, 3), np.uint8)
    for index in range(count):
        image, _ = scene(rng, width - 1 - int(rng.integers(0, 24)),
                         height - 1 - int(rng.integers(0, 24)), num_objects=int(rng.integers(3, 9)))
        paste.paste(image, canvases[index])
    return canvases


def calibrated_state_dict(model, seed=0, gamma_scale=1.0, head_scale=1.0, canvases=None):
    """Seeded weights whose BatchNorm statistics are those of the network's own activations on
    generated scenes, layer by layer, as a trained network's are (running_mean/var describe what
    each BN actually sees, so every BN output is ~N(beta, gamma^2) rather than a seeded guess).

    gamma_scale multiplies every BN weight and head_scale the three heads' 3x3 conv weights (both
    within what trained networks show, e.g. 0.5-2), for varied yet sound weight sets.
    """
    import copy
    state = seeded_state_dict(model, seed)
    for name in state:
        if name.endswith('.weight') and name.replace('.weight', '.running_var') in state:
            state[name] = state[name] * gamma_scale
        if name.startswith('bbox_head.') and name.endswith('.0.weight'):
            state[name] = state[name] * head_scale
    net = copy.deepcopy(model).eval()
    net.load_state_dict(state, strict=True)

    def calibrate(bn, inputs):  # runs before bn's forward: it then normalises with these stats
        x = inputs[0].detach().double()
        bn.running_mean.copy_(x.mean(dim=(0, 2, 3)).float())
        bn.running_var.copy_(x.var(dim=(0, 2, 3)).float().clamp_min(1e-4))

    hooks = [m.register_forward_pre_hook(calibrate) for m in net.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    if canvases is None:
        canvases = calibration_canvases(net.spec, seed=seed)
    try:
        with torch.no_grad():
            net(torch.from_numpy(canvases))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: tensor.detach().clone() for name, tensor in net.state_dict().items()}
