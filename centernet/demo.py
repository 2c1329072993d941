"""Pictures: draw the detections above a score on each image; write them and a JSON of all."""

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


def draw_detections(image, boxes, scores, labels, classes, score_thr):
    """Boxes with 'class score' captions; returns a new image."""
    canvas = image.copy()
    for box, score, label in zip(boxes, scores, labels):
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
    detections = detect_records(detector, images.records, args.batchsize, workers=args.workers,
                                skip_bad_images=args.skip_bad_images, progress=not args.quiet,
                                description='pictures')
    classes = detector.backend.classes
    listing = []
    for record in images.records:
        if not detections.done[record.index]:
            continue
        boxes, scores, labels = (detections.boxes[record.index], detections.scores[record.index],
                                 detections.labels[record.index])
        picture = draw_detections(read_image(record.path), boxes, scores, labels, classes,
                                  args.score_thr)
        target = out / (Path(record.path).stem + '.jpg')
        ok, encoded = cv2.imencode('.jpg', picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
        with atomic_path(target) as tmp:
            tmp.write_bytes(encoded.tobytes())
        listing.append(dict(file=record.path, annotated=str(target), detections=[
            dict(label=classes[int(lab)], label_index=int(lab), score=float(s),
                 bbox_xyxy=[float(v) for v in b]) for b, s, lab in zip(boxes, scores, labels)]))
        shown = int((scores >= args.score_thr).sum())
        print(f'{record.path}: {shown} detection(s) above {args.score_thr} -> {target}')
    write_json(out / 'detections.json', listing, indent=1)
    print(f'wrote {len(listing)} picture(s) and {out / "detections.json"}')
    return 0
