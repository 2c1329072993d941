"""mmdet 3.3.0's CenterNet training targets, losses and head initialisation, for the stand-in.

Only tools/train_standin.py trains; deployment never imports this. Each function names the mmdet
function it reproduces:
    gaussian_radius, gaussian2d, gen_gaussian_target  mmdet/models/utils/gaussian_target.py
    gaussian_focal_loss                                mmdet/models/losses/gaussian_focal_loss.py
    center_targets                                     CenterNetHead.get_targets
    centernet_loss                                     CenterNetHead.loss_by_feat
    init_head                                          CenterNetHead.init_weights
"""

import math

import torch

MIN_OVERLAP = 0.3                                    # CenterNetHead.get_targets
LOSS_WEIGHTS = dict(heatmap=1.0, wh=0.1, offset=1.0)  # the centernet_r18 config's loss_* weights
HEATMAP_BIAS = -2.19                                 # bias_init_with_prob(0.1)


def gaussian_radius(det_size, min_overlap=MIN_OVERLAP):
    """Radius so that a box with a corner this far off keeps IoU >= min_overlap (CornerNet)."""
    height, width = det_size
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def gaussian2d(radius, sigma):
    x = torch.arange(-radius, radius + 1, dtype=torch.float32).view(1, -1)
    y = torch.arange(-radius, radius + 1, dtype=torch.float32).view(-1, 1)
    h = (-(x * x + y * y) / (2 * sigma * sigma)).exp()
    h[h < torch.finfo(h.dtype).eps * h.max()] = 0
    return h


def gen_gaussian_target(heatmap, center, radius):
    """Max-paste a Gaussian of `radius` (sigma = diameter / 6) centred at integer `center`."""
    diameter = 2 * radius + 1
    kernel = gaussian2d(radius, sigma=diameter / 6)
    x, y = center
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    window = heatmap[y - top:y + bottom, x - left:x + right]
    torch.max(window, kernel[radius - top:radius + bottom, radius - left:radius + right],
              out=window)
    return heatmap


def center_targets(boxes, labels, num_classes, feat_shape, canvas_shape):
    """CenterNetHead.get_targets for one batch.

    boxes: list per image of (N, 4) float xyxy in canvas pixels; labels: list of (N,) int.
    Returns (heatmap (B, C, h, w), wh (B, 2, h, w), offset (B, 2, h, w), weight (B, 2, h, w),
    avg_factor)."""
    feat_h, feat_w = feat_shape
    width_ratio, height_ratio = feat_w / canvas_shape[1], feat_h / canvas_shape[0]
    batch = len(boxes)
    heatmap = torch.zeros(batch, num_classes, feat_h, feat_w)
    wh = torch.zeros(batch, 2, feat_h, feat_w)
    offset = torch.zeros(batch, 2, feat_h, feat_w)
    weight = torch.zeros(batch, 2, feat_h, feat_w)
    for b, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        for (x0, y0, x1, y1), label in zip(image_boxes.tolist(), image_labels.tolist()):
            cx, cy = (x0 + x1) * width_ratio / 2, (y0 + y1) * height_ratio / 2
            cx_int, cy_int = int(cx), int(cy)
            box_h, box_w = (y1 - y0) * height_ratio, (x1 - x0) * width_ratio
            radius = max(0, int(gaussian_radius((box_h, box_w))))
            gen_gaussian_target(heatmap[b, label], (cx_int, cy_int), radius)
            wh[b, 0, cy_int, cx_int], wh[b, 1, cy_int, cx_int] = box_w, box_h
            offset[b, 0, cy_int, cx_int], offset[b, 1, cy_int, cx_int] = cx - cx_int, cy - cy_int
            weight[b, :, cy_int, cx_int] = 1
    avg_factor = max(1, int(heatmap.eq(1).sum()))
    return heatmap, wh, offset, weight, avg_factor


def gaussian_focal_loss(pred, target, alpha=2.0, gamma=4.0, eps=1e-12):
    """Element-wise CornerNet focal loss on a Gaussian target (positives where target == 1)."""
    positive = target.eq(1)
    negative_weight = (1 - target).pow(gamma)
    positive_loss = -(pred + eps).log() * (1 - pred).pow(alpha) * positive
    negative_loss = -(1 - pred + eps).log() * pred.pow(alpha) * negative_weight
    return positive_loss + negative_loss


def centernet_loss(heads, targets):
    """CenterNetHead.loss_by_feat: (total, {name: value}); mmdet's avg_factor for each term."""
    heatmap_pred, wh_pred, offset_pred = heads
    heatmap, wh, offset, weight, avg_factor = targets
    losses = {
        'heatmap': LOSS_WEIGHTS['heatmap'] * gaussian_focal_loss(heatmap_pred, heatmap).sum()
        / avg_factor,
        'wh': LOSS_WEIGHTS['wh'] * ((wh_pred - wh).abs() * weight).sum() / (avg_factor * 2),
        'offset': LOSS_WEIGHTS['offset'] * ((offset_pred - offset).abs() * weight).sum()
        / (avg_factor * 2),
    }
    return sum(losses.values()), {k: v.item() for k, v in losses.items()}


def init_head(head):
    """CenterNetHead.init_weights: heatmap bias at prior 0.1, wh/offset convs N(0, 0.001)."""
    head.heatmap_head[-1].bias.data.fill_(HEATMAP_BIAS)
    for branch in (head.wh_head, head.offset_head):
        for module in branch.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.normal_(module.weight, 0, 0.001)
                torch.nn.init.zeros_(module.bias)
