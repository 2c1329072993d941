"""Heads -> detections: mmdet 3.3.0 CenterNetHead._decode_heatmap, op for op, batched, in torch.

Runs on whatever device the heads are on (the GPU when the engine ran there); only the final
(B, 100) boxes need to leave it. Every image in a batch has the same canvas shape (see
dataset.CanvasBatchSampler), so no image is decoded against padding it did not have at batch 1.
"""

import torch
import torch.nn.functional as F


def local_maximum(heatmap, kernel=3):
    """Keep a score only where it equals the max of its kernel x kernel window (ties all survive)."""
    peak = F.max_pool2d(heatmap, kernel, stride=1, padding=(kernel - 1) // 2)
    return heatmap * (peak == heatmap).float()


def decode_heads(heatmap, wh, offset, borders, stride=4, topk=100, kernel=3):
    """Decode a batch of CenterNet heads.

    Args:
        heatmap: (B, C, Hf, Wf) sigmoid scores; wh, offset: (B, 2, Hf, Wf) in feature units.
        borders: (B, 4) float32 `[top, bottom, left, right]` of each image on its canvas.
        stride: canvas pixels per feature cell (mmdet: batch_input_shape / feature size = 4.0).
    Returns:
        boxes (B, topk, 4) float32 xyxy in original-image pixels, scores (B, topk) float32,
        labels (B, topk) int64 — in descending score order, as torch.topk returns them.
    """
    heatmap, wh, offset = heatmap.float(), wh.float(), offset.float()
    batch, _, height, width = heatmap.shape
    scores, index = torch.topk(local_maximum(heatmap, kernel).view(batch, -1), topk)
    labels = index // (height * width)
    spatial = index % (height * width)
    ys = spatial // width
    xs = (spatial % width).int().float()

    def gather(feature):  # (B, 2, Hf, Wf) -> (B, topk, 2) at the peaks' spatial index
        flat = feature.permute(0, 2, 3, 1).reshape(batch, height * width, 2)
        return flat.gather(1, spatial.unsqueeze(2).expand(batch, topk, 2))

    wh, offset = gather(wh), gather(offset)
    xs = xs + offset[..., 0]
    ys = ys + offset[..., 1]
    # mmdet multiplies by the Python float batch_input_shape / feature size, which is the stride.
    ratio = float(stride)
    boxes = torch.stack([(xs - wh[..., 0] / 2) * ratio, (ys - wh[..., 1] / 2) * ratio,
                         (xs + wh[..., 0] / 2) * ratio, (ys + wh[..., 1] / 2) * ratio], dim=2)
    borders = torch.as_tensor(borders, dtype=torch.float32, device=boxes.device)
    boxes = boxes - borders[:, [2, 0, 2, 0]].unsqueeze(1)
    return boxes, scores, labels

