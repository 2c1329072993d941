"""Generated scenes for the trained stand-in model (tools/train_standin.py), in COCO layout.

The real checkpoint cannot be downloaded here, and untrained weights detect noise, so precision
work (FP16, INT8) has no accuracy to lose on them. These scenes are easy enough for CenterNet-R18
to learn from scratch on a CPU: six classes that differ in shape, colour, texture and aspect,
one to three objects on a textured background, no occlusion. Labels are COCO classes, so the
80-class head, the COCO evaluation and every CLI stay unchanged.

Every split is a pure function of its seed: the same seed writes the same files.
"""

from pathlib import Path

import cv2
import numpy as np

from coco_labels import COCO_CLASSES

from .synthetic import save_coco_set

IMAGE_SIDE = 63          # (63 | 31) + 1 = 64: a 64x64 canvas, a 16x16 stride-4 map (CPU training)
MIN_SIDE, MAX_SIDE = 10, 30
MAX_OBJECTS = 3
# (COCO class the shape stands for, how it is drawn); colours are BGR centres, jittered per object.
SHAPES = (
    ('sports ball', 'disc', (40, 40, 220)),
    ('donut', 'ring', (40, 210, 230)),
    ('tv', 'square', (210, 90, 30)),
    ('zebra', 'stripes', None),
    ('kite', 'triangle', (60, 200, 60)),
    ('scissors', 'cross', (200, 50, 200)),
)
LABELS = tuple(COCO_CLASSES.index(name) for name, _, _ in SHAPES)
# Split seeds: train (training and INT8 calibration), val (checkpoint choice), test (reported AP).
SPLIT_SEEDS = {'train': 1000, 'val': 2000, 'test': 3000}
SPLIT_SIZES = {'train': 6000, 'val': 200, 'test': 500}


def _background(rng, side):
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    base = rng.uniform(70, 190)
    tint = rng.uniform(-25, 25, 3)
    field = 30 * np.sin(xs / rng.uniform(8, 30) + rng.uniform(0, 6)) \
        * np.cos(ys / rng.uniform(8, 30) + rng.uniform(0, 6))
    image = base + tint[None, None, :] + field[..., None] + rng.normal(0, 8, (side, side, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _mask(kind, w, h):
    """uint8 mask (h, w) of the shape filling its w x h box (touching all four sides)."""
    mask = np.zeros((h, w), np.uint8)
    if kind == 'disc':
        cv2.ellipse(mask, (w // 2, h // 2), ((w - 1) // 2, (h - 1) // 2), 0, 0, 360, 1, -1)
    elif kind == 'ring':  # a filled ellipse minus a smaller one
        axes = ((w - 1) // 2, (h - 1) // 2)
        cv2.ellipse(mask, (w // 2, h // 2), axes, 0, 0, 360, 1, -1)
        thickness = max(3, min(w, h) // 4)
        cv2.ellipse(mask, (w // 2, h // 2), (axes[0] - thickness, axes[1] - thickness),
                    0, 0, 360, 0, -1)
    elif kind in ('square', 'stripes'):
        mask[:] = 1
    elif kind == 'triangle':
        cv2.fillPoly(mask, [np.array([[w // 2, 0], [w - 1, h - 1], [0, h - 1]], np.int32)], 1)
    elif kind == 'cross':
        arm = max(3, min(w, h) // 3)
        mask[(h - arm) // 2:(h - arm) // 2 + arm, :] = 1
        mask[:, (w - arm) // 2:(w - arm) // 2 + arm] = 1
    return mask.astype(bool)


def _size(kind, rng):
    side = rng.uniform(MIN_SIDE, MAX_SIDE)
    aspect = {'stripes': rng.uniform(1.6, 2.4), 'square': rng.uniform(0.85, 1.15),
              'cross': rng.uniform(0.8, 1.25)}.get(kind, rng.uniform(0.75, 1.33))
    if rng.random() < 0.5:
        aspect = 1 / aspect
    w = int(np.clip(side * aspect ** 0.5, MIN_SIDE // 2 + 4, IMAGE_SIDE - 2))
    h = int(np.clip(side / aspect ** 0.5, MIN_SIDE // 2 + 4, IMAGE_SIDE - 2))
    return w, h


def _iou_any(box, boxes):
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        iw, ih = min(x1, a1) - max(x0, a0), min(y1, b1) - max(y0, b0)
        if iw > -2 and ih > -2:  # touching or overlapping: keep objects apart
            return True
    return False


def scene(rng, side=IMAGE_SIDE):
    """(BGR uint8 image (side, side, 3), [(x, y, w, h, label index into COCO_CLASSES), ...])."""
    image = _background(rng, side)
    placed, objects = [], []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        shape_index = int(rng.integers(len(SHAPES)))
        _, kind, colour = SHAPES[shape_index]
        w, h = _size(kind, rng)
        for _attempt in range(20):
            x, y = int(rng.integers(0, side - w + 1)), int(rng.integers(0, side - h + 1))
            if not _iou_any((x, y, x + w, y + h), placed):
                break
        else:
            continue
        mask = _mask(kind, w, h)
        patch = image[y:y + h, x:x + w]
        if kind == 'stripes':  # texture, not colour: black and white bars across the long side
            period = int(rng.integers(4, 7))
            along = np.arange(w if w >= h else h)
            bars = ((along // (period // 2 + 1)) % 2).astype(bool)
            bars = bars[None, :] if w >= h else bars[:, None]
            fill = np.where(np.broadcast_to(bars, (h, w))[..., None], 235, 20)
            fill = fill + rng.normal(0, 6, (h, w, 1))
        else:
            fill = np.array(colour, np.float32) + rng.uniform(-30, 30, 3)
            fill = np.broadcast_to(fill, (h, w, 3)) + rng.normal(0, 6, (h, w, 3))
        patch[mask] = np.clip(np.broadcast_to(fill, (h, w, 3)), 0, 255).astype(np.uint8)[mask]
        ys, xs = np.nonzero(mask)
        box = (x + int(xs.min()), y + int(ys.min()), int(xs.max() - xs.min() + 1),
               int(ys.max() - ys.min() + 1))
        placed.append((x, y, x + w, y + h))
        objects.append(box + (LABELS[shape_index],))
    return image, objects


def write_split(root, split, count, seed=None):
    """Write `count` scenes as a COCO-layout set under root/split
    (annotations/instances_val2017.json + images/val2017/*.png, the layout inference.py reads);
    returns that folder. The first N scenes of a split are the same for every `count` >= N.

    PNG, not JPEG: lossless, so the split is identical on every OpenCV build."""
    folder = Path(root) / split
    write_scenes(folder, split, count, seed)
    return folder


def write_scenes(folder, split, count, seed=None):
    """write_split's scenes, in `folder` itself."""
    seed = SPLIT_SEEDS[split] if seed is None else seed
    rng = np.random.default_rng(seed)

    def scenes():
        for index in range(count):
            yield (index + 1, f'{index + 1:012d}.png') + scene(rng)
    save_coco_set(folder, scenes(), info={'generator': 'centernet.standin_scenes',
                                          'split': split, 'seed': seed})
