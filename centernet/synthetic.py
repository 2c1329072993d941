"""Seeded stand-ins for what cannot be downloaded here: weights, images and COCO-format sets.

Used by the tests, tools/gate_sweep.py, tools/make_golden.py (mmdet's golden outputs are computed
on exactly these weights) and by the benchmarks. Nothing here is used on a real run.
"""

from pathlib import Path

import cv2
import numpy as np

from coco_labels import COCO_CATEGORY_IDS, COCO_CLASSES

# Image sizes (width, height) in roughly COCO val2017's proportions: mostly 640x480 and 640x427,
# both orientations, some 640x640 and 500x375.
COCO_LIKE_SIZES = ((640, 480),) * 8 + ((480, 640),) * 4 + ((640, 427),) * 4 + ((427, 640),) * 2 \
    + ((640, 640),) * 1 + ((500, 375),) * 1


def seeded_state_dict(model, seed=0):
    """Deterministic, well-scaled weights for `model` (mmdet key names): the heatmap is neither
    flat nor saturated, so decode, ties and top-k are exercised as with trained weights."""
    import torch  # here: the scene writers below need no torch (the demo's scene cache)
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


def save_coco_set(root, scenes, image_folder='images/val2017',
                  ann_path='annotations/instances_val2017.json', params=(), info=None):
    """Write generated scenes as a COCO-layout set under `root`; returns the annotation path.

    scenes: (image_id, file_name, BGR picture, [(x, y, w, h, label index), ...]) in file order.
    The annotation file is written last, atomically: an interrupted run leaves no set that looks
    complete."""
    from .fileio import write_json
    root = Path(root)
    (root / image_folder).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, file_name, picture, objects in scenes:
        cv2.imwrite(str(root / image_folder / file_name), picture, list(params))
        images.append({'id': image_id, 'file_name': file_name, 'width': picture.shape[1],
                       'height': picture.shape[0]})
        for x, y, w, h, label in objects:
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                                'category_id': COCO_CATEGORY_IDS[label],
                                'bbox': [x, y, w, h], 'area': float(w * h), 'iscrowd': 0})
    ann_file = root / ann_path
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    record = {'images': images, 'annotations': annotations, 'categories': coco_categories()}
    write_json(ann_file, dict(record, info=info) if info else record)
    return ann_file


def write_coco_dataset(root, sizes, seed=0, image_folder='images/val2017',
                       ann_path='annotations/instances_val2017.json', first_id=1, quality=90):
    """Write a COCO-format set of generated scenes (JPEG) under `root` in the reference layout;
    returns the annotation path.

    Image ids are not in file order on purpose (evaluation must follow the annotation file).
    """
    rng = np.random.default_rng(seed)

    def scenes():
        for index, (width, height) in enumerate(sizes):
            image_id = first_id + (index * 7919) % 100003
            yield (image_id, f'{image_id:012d}.jpg') + scene(rng, width, height)
    return save_coco_set(root, scenes(), image_folder, ann_path,
                         params=(cv2.IMWRITE_JPEG_QUALITY, quality))


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
    import torch
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


def evaluation_set(num_images, dets_per_image=100, seed=0, crowd_fraction=0.01,
                   empty_fraction=0.01, undetected_fraction=0.01, categories_without_gt=3,
                   score_levels=256):
    """A COCO-shaped evaluation problem without pictures, val2017-like at num_images=5000.

    Returns (ground truth dict, image_ids (N,), boxes (N, K, 4) float32 xyxy, scores (N, K)
    float32, labels (N, K) int64, done (N,) bool): the arrays inference produces. Exercises
    what evaluation must get right: crowd boxes, images without ground truth, images without
    detections (done=False), categories that are detected but never in the ground truth, and
    ties in scores (scores are quantised to `score_levels` values). About 7.5 objects per image;
    detections are jittered copies of the ground truth plus false positives of every size.
    """
    rng = np.random.default_rng(seed)
    cat_ids = np.asarray(COCO_CATEGORY_IDS)
    gt_labels = np.arange(len(cat_ids) - categories_without_gt)  # the last few never in GT
    sizes = np.asarray(COCO_LIKE_SIZES)[rng.integers(0, len(COCO_LIKE_SIZES), num_images)]
    image_ids = 1 + (np.arange(num_images) * 7919) % 1000003
    images, annotations = [], []
    boxes = np.zeros((num_images, dets_per_image, 4), np.float32)
    scores = np.zeros((num_images, dets_per_image), np.float32)
    labels = np.zeros((num_images, dets_per_image), np.int64)
    for row, (image_id, (width, height)) in enumerate(zip(image_ids.tolist(), sizes.tolist())):
        images.append({'id': image_id, 'file_name': f'{image_id:012d}.jpg', 'width': width,
                       'height': height})
        count = 0 if rng.random() < empty_fraction else int(rng.poisson(7.5))
        # Log-uniform sizes from a few pixels to most of the image: small, medium and large.
        w = np.exp(rng.uniform(np.log(4), np.log(width * 0.9), count))
        h = np.clip(w * np.exp(rng.normal(0, 0.5, count)), 3, height * 0.95)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        gt = np.stack([x, y, w, h], 1).round(2)
        gt_label = rng.choice(gt_labels, count)
        crowd = rng.random(count) < crowd_fraction
        for (bx, by, bw, bh), label, is_crowd in zip(gt.tolist(), gt_label.tolist(),
                                                     crowd.tolist()):
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                                'category_id': int(cat_ids[label]), 'bbox': [bx, by, bw, bh],
                                'area': bw * bh, 'iscrowd': int(is_crowd)})
        hits = min(count * 3, dets_per_image)  # up to 3 jittered detections per object
        source = rng.integers(0, max(count, 1), hits)
        jitter = rng.normal(0, 0.08, (hits, 4)) * np.repeat(gt[source][:, 2:], 2, 1) \
            if count else np.zeros((0, 4))
        true_boxes = gt[source] + jitter if count else np.zeros((0, 4))
        true_labels = np.where(rng.random(hits) < 0.85, gt_label[source] if count else 0,
                               rng.integers(0, len(cat_ids), hits))
        misses = dets_per_image - hits
        fw = np.exp(rng.uniform(np.log(2), np.log(width), misses))
        fh = np.exp(rng.uniform(np.log(2), np.log(height), misses))
        false_boxes = np.stack([rng.uniform(0, width - fw * 0.5), rng.uniform(0, height - fh * 0.5),
                                fw, fh], 1)
        xywh = np.concatenate([true_boxes, false_boxes])
        boxes[row] = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        labels[row] = np.concatenate([true_labels, rng.integers(0, len(cat_ids), misses)])
        score = np.concatenate([rng.uniform(0.3, 1.0, hits), rng.uniform(0.0, 0.6, misses)])
        order = np.argsort(-score, kind='stable')  # inference gives descending scores
        boxes[row], labels[row] = boxes[row][order], labels[row][order]
        scores[row] = np.floor(score[order] * score_levels) / score_levels
    done = rng.random(num_images) >= undetected_fraction
    gt = {'images': images, 'annotations': annotations, 'categories': coco_categories()}
    return gt, image_ids, boxes, scores, labels, done
