"""Heads -> detections: mmdet 3.3.0 CenterNetHead._decode_heatmap, op for op, batched, in torch.

Runs on whatever device the heads are on (the GPU when the engine ran there); only the final
(B, 100) boxes need to leave it. Every image in a batch has the same canvas shape (see
dataset.canvas_batches), so no image is decoded against padding it did not have at batch 1.
"""

import torch
import torch.nn.functional as F


def local_maximum(heatmap, kernel=3):
    """Keep a score only where it equals the max of its kernel x kernel window (ties all survive)."""
    peak = F.max_pool2d(heatmap, kernel, stride=1, padding=(kernel - 1) // 2)
    return heatmap * (peak == heatmap).float()


def topk_peaks(heatmap, topk=100, kernel=3, candidates_per_peak=16):
    """Scores and class-major flat indices of the `topk` best local maxima, best first.

    Equal to `torch.topk(local_maximum(heatmap, kernel).view(B, -1), topk)` — mmdet's two lines —
    except possibly among scores exactly equal to the topk-th (their order, and which of them fill
    the last slots, e.g. the score-0 cells of a map with fewer than `topk` peaks), which torch.topk
    leaves unspecified too.

    On the CPU the full peak test costs more than the engine's last layers (a 3x3 max over
    80 x H/4 x W/4 values per image), so it first takes the `topk * candidates_per_peak` largest
    raw scores and tests only those for being peaks. That is exact whenever at least `topk` of them
    are peaks and the topk-th peak scores strictly above the smallest candidate: every peak above
    that value is then among the candidates. Otherwise (few objects, flat maps) it falls back to
    the full test. It runs only where a class plane holds more cells than the candidates: on a
    smaller map (the stand-in's 64x64 canvases, 16x16 cells) its first step already sorts every
    plane whole, and the full test is the cheaper one (3 ms against 24 ms for 4 such images). On
    a GPU the full test is cheap and needs no host sync, so it always runs;
    `candidates_per_peak=0` forces it anywhere (an exported graph must not branch on data).
    """
    batch, _, height, width = heatmap.shape
    flat = heatmap.reshape(batch, -1)
    count = topk * candidates_per_peak
    on_cpu = heatmap.device.type == 'cpu'
    if candidates_per_peak and on_cpu and count < height * width:
        values, index = _topk_by_plane(heatmap, count)
        is_peak = values >= _window_max(flat, index, height, width, kernel)
        peak_values = values.masked_fill(~is_peak, float('-inf'))
        best, position = peak_values.topk(topk)
        if bool((best[:, -1] > values[:, -1]).all()):
            return best, index.gather(1, position)
    if candidates_per_peak and on_cpu:  # not in an exported graph: it keeps mmdet's two ops
        return _topk_by_plane(local_maximum(heatmap, kernel), topk)
    # reshape, not mmdet's view: the torch CUDA backend's heads are channels_last.
    return torch.topk(local_maximum(heatmap, kernel).reshape(batch, -1), topk)


def _topk_by_plane(heatmap, k):
    """`torch.topk(heatmap.reshape(B, -1), k)` in two steps: the k best of each class plane,
    then the k best of those (the same set: each of the k best overall is among its plane's k
    best; the order of exactly equal scores is unspecified in both).

    torch's CPU topk copies its whole row into a (value, index) buffer: on one flat row that is
    16 bytes per score, 80 bytes per canvas pixel, 1.4 GB for a 4000x3000 photo. One row per
    class plane keeps the buffer to a plane per thread.
    """
    batch, classes, height, width = heatmap.shape
    plane = height * width
    values, index = heatmap.reshape(batch, classes, plane).topk(min(k, plane))
    index = index + torch.arange(classes, device=index.device).view(1, classes, 1) * plane
    values, position = values.reshape(batch, -1).topk(k)
    return values, index.reshape(batch, -1).gather(1, position)


def _window_max(flat, index, height, width, kernel):
    """Max over each indexed cell's kernel x kernel neighbours (same class, in bounds)."""
    radius = (kernel - 1) // 2
    steps = torch.arange(-radius, radius + 1, device=index.device)
    dy, dx = torch.meshgrid(steps, steps, indexing='ij')
    dy, dx = dy.reshape(-1), dx.reshape(-1)
    plane = index - index % (height * width)
    y = (index % (height * width)) // width
    x = index % width
    ny, nx = y.unsqueeze(-1) + dy, x.unsqueeze(-1) + dx
    inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
    neighbours = plane.unsqueeze(-1) + ny.clamp(0, height - 1) * width + nx.clamp(0, width - 1)
    values = flat.gather(1, neighbours.reshape(flat.shape[0], -1)).view(neighbours.shape)
    return values.masked_fill(~inside, float('-inf')).amax(dim=-1)


def decode_heads(heatmap, wh, offset, borders, stride=4, topk=100, kernel=3,
                 candidates_per_peak=16):
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
    scores, index = topk_peaks(heatmap, topk, kernel, candidates_per_peak)
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
    # [left, top, left, top] by slicing (a list index would sync with the GPU every batch).
    left_top = torch.cat([borders[:, 2:3], borders[:, 0:1]], dim=1).repeat(1, 2)
    boxes = boxes - left_top.unsqueeze(1)
    return boxes, scores, labels

