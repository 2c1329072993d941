"""Pictures: draw the detections above a score on each image; write them and a JSON of all.

A photo larger than the model can take (a 4000x3000 camera picture, an engine whose profile ends
at 672) is shrunk before the canvas (PictureFit), and its boxes are mapped back to the original's
pixels. Only here: COCO evaluation pastes every image unscaled, as mmdet does.
"""

import math
from pathlib import Path

import cv2
import numpy as np

from .dataset import FolderImageSet
from .errors import UserError
from .fileio import atomic_path, write_json
from .pipeline import detect_records
from .preprocess import read_image


def colour_for(label):
    """A stable, distinct BGR colour per class."""
    hue = (label * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(v) for v in bgr)


DEFAULT_MAX_CANVAS = 1344  # a model without a largest canvas (dynamic ONNX, torch): 2 x 672


class PictureFit:
    """Shrink pictures whose canvas would exceed `max_canvas` (height, width), keeping the aspect.

    The scale is a pure function of the picture's size, so the loader (which shrinks) and the
    demo (which maps boxes back onto the original) agree without passing it along."""

    def __init__(self, spec, max_canvas):
        self.max_height, self.max_width = (self._largest_side(spec, side) for side in max_canvas)

    @staticmethod
    def _largest_side(spec, canvas):
        """The largest picture side whose canvas (spec.canvas_side) is at most `canvas`."""
        side = canvas
        while side > 1 and spec.canvas_side(side) > canvas:
            side -= 1
        return side

    def size(self, height, width):
        """(height, width) the network sees."""
        scale = min(1.0, self.max_height / height, self.max_width / width)
        if scale == 1.0:
            return height, width
        return (min(self.max_height, max(1, math.floor(height * scale))),
                min(self.max_width, max(1, math.floor(width * scale))))

    def shrink(self, image):
        height, width = self.size(*image.shape[:2])
        if (height, width) == image.shape[:2]:
            return image
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    def read(self, path):
        """preprocess.read_image, then shrink: the loader's `read`."""
        return self.shrink(read_image(path))

    def scale_xy(self, height, width):
        fitted_height, fitted_width = self.size(height, width)
        return fitted_width / width, fitted_height / height


def max_canvas_for(backend, max_side=None):
    """The largest canvas (height, width) to feed `backend`: its own limit (a TensorRT profile, a
    static ONNX), else DEFAULT_MAX_CANVAS; --max_side replaces the default and lowers a limit."""
    own = backend.largest_canvas()
    if max_side is None:
        return own or (DEFAULT_MAX_CANVAS, DEFAULT_MAX_CANVAS)
    if max_side < 32:
        raise UserError(f'--max_side must be at least 32, got {max_side}')
    return (max_side, max_side) if own is None else tuple(min(side, max_side) for side in own)


def draw_detections(image, boxes, scores, labels, classes, score_thr):
    """Boxes with 'class score' captions, the highest score drawn last (on top); a new image."""
    canvas = image.copy()
    for index in np.argsort(scores, kind='stable'):
        box, score, label = boxes[index], scores[index], labels[index]
        if score < score_thr:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        colour = colour_for(int(label))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        caption = f'{classes[int(label)]} {score:.2f}'
        (w, h), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y1 - h - base - 2, 0)
        left = max(min(x1, canvas.shape[1] - w - 3), 0)  # keep the caption inside the picture
        cv2.rectangle(canvas, (left, top), (left + w + 2, top + h + base + 2), colour, -1)
        cv2.putText(canvas, caption, (left + 1, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def run_demo(detector, args):
    images = FolderImageSet(args.images)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f'cannot create output folder {out}: {exc.strerror}') from None
    fit = PictureFit(detector.spec, max_canvas_for(detector.backend, args.max_side))
    detections = detect_records(detector, images.records, args.batchsize, workers=args.workers,
                                skip_bad_images=args.skip_bad_images, progress=not args.quiet,
                                description='pictures', read=fit.read)
    classes = detector.backend.classes
    listing = []
    for record in images.records:
        if not detections.done[record.index]:
            continue
        original = read_image(record.path)
        height, width = original.shape[:2]
        scale_x, scale_y = fit.scale_xy(height, width)
        boxes = detections.boxes[record.index] / np.array([scale_x, scale_y] * 2, np.float32)
        scores, labels = detections.scores[record.index], detections.labels[record.index]
        picture = draw_detections(original, boxes, scores, labels, classes, args.score_thr)
        target = out / (Path(record.path).stem + '.jpg')
        ok, encoded = cv2.imencode('.jpg', picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
        with atomic_path(target) as tmp:
            tmp.write_bytes(encoded.tobytes())
        listing.append(dict(file=record.path, annotated=str(target), size_hw=[height, width],
                            network_size_hw=list(fit.size(height, width)),
                            scale_xy=[scale_x, scale_y], detections=[
            dict(label=classes[int(lab)], label_index=int(lab), score=float(s),
                 bbox_xyxy=[float(v) for v in b]) for b, s, lab in zip(boxes, scores, labels)]))
        shown = int((scores >= args.score_thr).sum())
        print(f'{record.path}: {shown} detection(s) above {args.score_thr} -> {target}')
    write_json(out / 'detections.json', listing, indent=1)
    print(f'wrote {len(listing)} picture(s) and {out / "detections.json"}')
    return 0
