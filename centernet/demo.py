"""Pictures: draw the detections above a score on each image; write them and a JSON of all.

A photo larger than the model can take (a 4000x3000 camera picture, an engine whose profile ends
at 672) is shrunk before the canvas (PictureFit), and its boxes are mapped back to the original's
pixels. Only here: COCO evaluation pastes every image unscaled, as mmdet does.
"""

import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from .dataset import FolderImageSet
from .errors import UserError
from .fileio import StagedFiles
from .pipeline import detect_records
from .preprocess import BadImageError, read_image
from .report import printable


def colour_for(label):
    """A stable, distinct BGR colour per class."""
    hue = (label * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(v) for v in bgr)


DEFAULT_MAX_CANVAS = 1344  # a model without a largest canvas (dynamic ONNX, torch): 2 x 672
# Memory per picture pixel beyond its decode's peak: the original, its drawn copy and its JPEG
# while it is written (in all 6.4 and 8.1 B per pixel for 48 and 108 MP JPEGs, of which the
# decode is 6.2; tools/benchmark_memory.py and the 12000 x 9000 case).
DRAWING_BYTES_PER_PIXEL = 2.0
# The demo writes JPEG, whose header holds each side in 16 bits; libjpeg refuses more than 65500.
JPEG_MAX_SIDE = 65500


class PictureFit:
    """Shrink pictures whose canvas would exceed `max_canvas` (height, width), keeping the aspect.

    The scale is a pure function of the picture's size, so the loader (which shrinks) and the
    demo (which maps boxes back onto the original) agree without passing it along."""

    def __init__(self, spec, max_canvas, limit=None):
        self.max_height, self.max_width = (self._largest_side(spec, side) for side in max_canvas)
        self.limit = limit

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
        """preprocess.read_image under the limit, then shrink: the loader's `read`."""
        return self.shrink(read_image(path, self.limit))

    def scale_xy(self, height, width):
        fitted_height, fitted_width = self.size(height, width)
        return fitted_width / width, fitted_height / height


def max_canvas_for(backend, max_canvas=None):
    """The largest canvas (height, width) to feed `backend`: its own limit (a TensorRT profile, a
    static ONNX), else DEFAULT_MAX_CANVAS; --max_canvas replaces the default and lowers a limit."""
    own = backend.largest_canvas()
    if max_canvas is None:
        return own or (DEFAULT_MAX_CANVAS, DEFAULT_MAX_CANVAS)
    if max_canvas < 32:
        raise UserError(f'--max_canvas must be at least 32, got {max_canvas}')
    return (max_canvas, max_canvas) if own is None else tuple(min(side, max_canvas) for side in own)


class Drawing:
    """Boxes with 'class score' captions whose lines and letters keep their share of the picture:
    2 px lines and 0.5-scale letters on a 640 x 480 photo, 12 px and 3.1 on a 4000 x 3000 one.

    At most `max_boxes` of the detections above `score_thr` are drawn, the best ones, the highest
    score last (on top): a hundred opaque captions would hide the picture."""

    FONT = cv2.FONT_HERSHEY_SIMPLEX

    def __init__(self, classes, score_thr, max_boxes):
        self.classes, self.score_thr, self.max_boxes = classes, score_thr, max_boxes

    def chosen(self, scores):
        """Indices of the detections to draw, lowest score first."""
        above = np.flatnonzero(scores >= self.score_thr)
        best = above[np.argsort(-scores[above], kind='stable')][:self.max_boxes]
        return best[::-1]

    def __call__(self, image, boxes, scores, labels):
        """A new image with the chosen detections drawn."""
        canvas = image.copy()
        scale = max(1.0, min(image.shape[:2]) / 480)
        line, letters, stroke = max(2, round(2 * scale)), 0.5 * scale, max(1, round(scale))
        pad = max(1, round(2 * scale))
        for index in self.chosen(scores):
            x1, y1, x2, y2 = (int(round(float(v))) for v in boxes[index])
            colour = colour_for(int(labels[index]))
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, line)
            caption = f'{self.classes[int(labels[index])]} {scores[index]:.2f}'
            (w, h), base = cv2.getTextSize(caption, self.FONT, letters, stroke)
            top = y1 - h - base - 2 * pad  # above the box; inside it where the picture ends
            if top < 0:
                top = max(y1, 0)
            left = max(min(x1, canvas.shape[1] - w - 2 * pad), 0)  # keep it inside the picture
            cv2.rectangle(canvas, (left, top), (left + w + 2 * pad, top + h + base + 2 * pad),
                          colour, -1)
            cv2.putText(canvas, caption, (left + pad, top + h + pad), self.FONT, letters,
                        (0, 0, 0), stroke, cv2.LINE_AA)
        return canvas


def output_names(paths):
    """A distinct picture name per input, case-insensitively (photo.jpg and Photo.PNG would be
    one file on macOS): the stem, or stem_suffix where stems repeat (photo_jpg.jpg,
    photo_png.jpg), numbered where even that is taken."""
    stems = Counter(Path(p).stem.lower() for p in paths)
    taken, names = set(), []
    for path in map(Path, paths):
        base = path.stem if stems[path.stem.lower()] == 1 else f'{path.stem}_{path.suffix[1:]}'
        name, number = f'{base}.jpg', 1
        while name.lower() in taken:
            number += 1
            name = f'{base}-{number}.jpg'
        taken.add(name.lower())
        names.append(name)
    return names


def _some(names, shown=5):
    names = list(names)
    more = f' and {len(names) - shown} more' if len(names) > shown else ''
    return ', '.join(names[:shown]) + more


def run_demo(detector, args, limit=None):
    """`limit`: the preprocess.PixelLimit for reading the pictures (None: its default).

    The pictures and detections.json appear in --out together when the run ends well, or none
    of them (fileio.StagedFiles): a stop, a full disk or a picture that cannot be written leaves
    --out as it was."""
    if args.max_boxes < 0:
        raise UserError(f'--max_boxes must be 0 (draw none) or more, got {args.max_boxes}')
    images = FolderImageSet(args.images)
    out = Path(args.out)
    names = output_names([r.path for r in images.records])
    inputs = {Path(r.path).resolve(): r.path for r in images.records}
    for name in names:
        if (out / name).resolve() in inputs:
            raise UserError(f'--out {printable(out)} would overwrite the input picture '
                            f'{printable(inputs[(out / name).resolve()])}: choose another folder')
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f'cannot create output folder {printable(out)}: {exc.strerror}') from None
    other_suffix = [path for path, why in images.ignored if why is None]
    if other_suffix:
        print(f'ignored {len(other_suffix)} file(s) whose suffix is not a picture format '
              f'OpenCV reads: {_some(printable(p.name) for p in other_suffix)}')
    not_files = [(path, why) for path, why in images.ignored if why is not None]
    if not_files:
        print(f'ignored {len(not_files)} entr{"y" if len(not_files) == 1 else "ies"} named as a '
              f'picture that {"is" if len(not_files) == 1 else "are"} not a file: '
              f'{_some(f"{printable(p.name)} ({why})" for p, why in not_files)}')
    fit = PictureFit(detector.spec, max_canvas_for(detector.backend, args.max_canvas), limit)
    detections = detect_records(detector, images.records, args.batchsize, workers=args.workers,
                                skip_bad_images=args.skip_bad_images, progress=not args.quiet,
                                description='pictures', read=fit.read)
    bad = {item.index: item.reason for item in detections.bad}
    with StagedFiles(out) as staged:
        annotate = Annotator(detector.backend.classes, args, fit, limit, detections, staged, bad)
        listing = [annotate(record, name) for record, name in zip(images.records, names)]
        written = staged.write_json('detections.json', listing, indent=1)
    if bad:
        print(f'skipped {len(bad)} picture(s) (--skip_bad_images):')
        for record in images.records:
            if record.index in bad:
                print(f'  {printable(record.path)}: {bad[record.index]}')
    print(f'wrote {len(listing) - len(bad)} picture(s) and {printable(written)}')
    return 0


class Annotator:
    """record -> its picture with the detections drawn, staged as `name`, and its entry of
    detections.json. A picture that cannot be read again or written is skipped as the loader
    skips one (it joins `bad`, with --skip_bad_images), or stops the run."""

    def __init__(self, classes, args, fit, limit, detections, staged, bad):
        self.classes, self.args, self.fit, self.limit = classes, args, fit, limit
        self.detections, self.staged, self.bad = detections, staged, bad
        self.draw = Drawing(classes, args.score_thr, args.max_boxes)

    def __call__(self, record, name):
        if record.index not in self.bad:
            try:
                return self._annotated(record, name)
            except BadImageError as exc:
                if not self.args.skip_bad_images:
                    raise BadImageError(record.path, exc.reason + ' (use --skip_bad_images to '
                                        'leave it out and go on)') from None
                self.bad[record.index] = exc.reason
        return dict(file=record.path, annotated=None, skipped=self.bad[record.index],
                    detections=[])

    def _annotated(self, record, name):
        original = read_image(record.path, self.limit)  # the loader kept only its shrunk copy
        height, width = original.shape[:2]
        scale_x, scale_y = self.fit.scale_xy(height, width)
        found = self.detections
        boxes = found.boxes[record.index] / np.array([scale_x, scale_y] * 2, np.float32)
        scores, labels = found.scores[record.index], found.labels[record.index]
        ok, encoded = cv2.imencode('.jpg', self.draw(original, boxes, scores, labels),
                                   [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise BadImageError(record.path, f'OpenCV could not write its {width}x{height} '
                                'picture as JPEG')
        target = self.staged.write_bytes(name, encoded.tobytes())
        above = int((scores >= self.args.score_thr).sum())
        drawn = min(above, self.args.max_boxes)
        print(f'{printable(record.path)}: {above} detection(s) above {self.args.score_thr}'
              + (f', the best {drawn} drawn (--max_boxes)' if drawn < above else '')
              + f' -> {printable(target)}')
        return dict(file=record.path, annotated=str(target), size_hw=[height, width],
                    network_size_hw=list(self.fit.size(height, width)),
                    scale_xy=[scale_x, scale_y], detections=[
            dict(label=self.classes[int(lab)], label_index=int(lab), score=float(s),
                 bbox_xyxy=[float(v) for v in b]) for b, s, lab in zip(boxes, scores, labels)])
