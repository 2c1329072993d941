"""Where the images come from and in which batches they go to the network.

    CocoImageSet     a COCO annotation file + image folder (val2017): records in the file's order
    FolderImageSet   a picture or a folder of pictures, no annotations (the demo)
    canvas_batches   batches of images that share one canvas shape: no batch padding, so every
                     image is computed exactly as at batch size 1 (mmdet's test setting)
    ImageReader      record -> decoded image; a bad file is reported, not raised
    paste_batch      images -> one canvas buffer per shape (preprocess.CenterCanvas.paste)
    PrefetchLoader   batches loaded by background threads, bounded prefetch, optional pinned memory
"""

import contextlib
import io
import json
import math
import os
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .preprocess import DEFAULT_LIMIT, IMAGE_SUFFIXES, BadImageError, read_image

ANNOTATION_FILE = 'annotations/instances_val2017.json'
IMAGE_FOLDERS = ('images/val2017', 'val2017')
EXPECTED_LAYOUT = ('expected the layout DATASETS_DIR/{annotations/instances_val2017.json, '
                   'images/val2017/*.jpg} (or val2017/ directly under DATASETS_DIR)')


@dataclass(frozen=True)
class ImageRecord:
    index: int          # position in the set; results are returned in this order
    image_id: int
    path: str
    height: int         # the annotation's size, a batching hint checked on decode; 0: unknown
    width: int


def size_hint(value):
    """An annotation's width/height as a batching hint: 0 (measure from the pixels) unless it
    is a positive whole number. mmdet's test pipeline takes the size from the decoded image
    (ori_shape) and never reads these fields, so a null or missing one is no error."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value < 1 or value != int(value)):
        return 0
    return int(value)


class CocoImageSet:
    """COCO val2017 in the reference layout (or COCO's own), every image of the annotation file."""

    def __init__(self, root, classes):
        """classes: the model's class names, mapped to the file's category ids (`cat_ids`);
        None for a set read only for its images (INT8 calibration: any categories will do)."""
        from pycocotools.coco import COCO
        root = Path(root)
        if not root.is_dir():
            raise UserError(f'dataset folder {root} not found; {EXPECTED_LAYOUT}')
        self.ann_file = root / ANNOTATION_FILE
        if not self.ann_file.is_file():
            raise UserError(f'{self.ann_file} not found; {EXPECTED_LAYOUT}')
        folders = [root / f for f in IMAGE_FOLDERS if (root / f).is_dir()]
        if not folders:
            raise UserError(f'no image folder under {root}; {EXPECTED_LAYOUT}')
        self.image_folder = folders[0]
        try:
            content = json.loads(self.ann_file.read_text())
            assert isinstance(content, dict) and isinstance(content.get('images'), list) \
                and isinstance(content.get('categories'), list)
        except (ValueError, AssertionError, UnicodeDecodeError):
            raise UserError(f'{self.ann_file} is not a COCO annotation file (JSON with "images" '
                            'and "categories" lists); download annotations_trainval2017.zip again'
                            ) from None
        self.coco = COCO()
        self.coco.dataset = content
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' "creating index..."
                self.coco.createIndex()
        except (KeyError, TypeError) as exc:
            raise UserError(f'{self.ann_file} is malformed (missing field {exc}); download '
                            'annotations_trainval2017.zip again') from None
        # mmdet CocoDataset: label i <-> the file's category whose name is classes[i].
        self.cat_ids = [] if classes is None else self.coco.getCatIds(catNms=list(classes))
        if classes is not None and len(self.cat_ids) != len(classes):
            names = {c['name'] for c in content['categories']}
            missing = [c for c in classes if c not in names]
            raise UserError(f'{self.ann_file}: categories {missing[:5]} are missing; the model\'s '
                            f'{len(classes)} classes must all be in the annotation file')
        self.records = []
        for index, image_id in enumerate(self.coco.getImgIds()):
            info = self.coco.imgs[image_id]
            if not isinstance(info.get('file_name'), str) or not info['file_name']:
                raise UserError(f'{self.ann_file}: image {image_id} has no "file_name"; download '
                                'annotations_trainval2017.zip again')
            self.records.append(ImageRecord(index, int(image_id),
                                            str(self.image_folder / info['file_name']),
                                            size_hint(info.get('height')),
                                            size_hint(info.get('width'))))
        if not self.records:
            raise UserError(f'{self.ann_file} lists no images: nothing to evaluate')
        missing = [r.path for r in self.records if not Path(r.path).is_file()]
        if missing:
            raise UserError(f'{len(missing)} of {len(self.records)} images listed in '
                            f'{self.ann_file.name} are missing from {self.image_folder} (first: '
                            f'{Path(missing[0]).name}); unpack val2017.zip there')

    def __len__(self):
        return len(self.records)


class FolderImageSet:
    """One image file, or every image in a folder (sorted by name), for the picture demo.

    A folder's files are taken by their suffix (preprocess.IMAGE_SUFFIXES: every format OpenCV
    reads); the other entries are listed in `ignored` as (path, why), for the caller to say so:
    files of another suffix (why None), and entries with a picture's suffix that are not files
    (a folder named photos.jpg, a link whose target is gone: why says which)."""

    def __init__(self, path):
        path = Path(path)
        self.ignored = []
        if path.is_dir():
            files = []
            for entry in sorted(path.iterdir()):
                picture = entry.suffix.lower() in IMAGE_SUFFIXES
                if entry.is_file() and picture:
                    files.append(entry)
                elif entry.is_file():
                    self.ignored.append((entry, None))
                elif picture and entry.is_symlink() and not entry.exists():
                    self.ignored.append((entry, 'a link to nothing'))
                elif picture:
                    self.ignored.append((entry, 'a folder' if entry.is_dir() else 'not a file'))
        elif path.is_file():
            files = [path]
        else:
            raise UserError(f'{path} not found: pass an image file or a folder of images')
        if not files:
            raise UserError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {path}')
        # Sizes unknown until decoded: canvas_batches keeps these in file order and
        # paste_batch splits a batch by canvas shape.
        self.records = [ImageRecord(index, index, str(file), 0, 0)
                        for index, file in enumerate(files)]

    def __len__(self):
        return len(self.records)


def canvas_batches(records, canvas, batch_size):
    """Record indices in batches of at most `batch_size` whose images share one canvas shape.

    Shapes come from the annotation's width/height; an image whose decoded size differs (EXIF
    rotation) is split off by paste_batch, so a wrong hint costs speed, never correctness.
    Groups come in order of first appearance; batches keep the set's order inside a group.
    """
    if batch_size < 1:
        raise UserError(f'--batchsize must be at least 1, got {batch_size}')
    groups = OrderedDict()
    for record in records:
        key = canvas.shape(record.height, record.width) if record.height and record.width \
            else ('unknown',)
        groups.setdefault(key, []).append(record.index)
    return [indices[start:start + batch_size]
            for indices in groups.values() for start in range(0, len(indices), batch_size)]


@dataclass
class BadImage:
    index: int
    path: str
    reason: str


class ImageReader:
    """record index -> (index, decoded image HWC BGR uint8) or BadImage (reported, not raised).

    `read` (path -> image) is preprocess.read_image under `limit` (a preprocess.PixelLimit; None:
    its default) unless the caller adds a step (the picture demo's shrinking of large photos).
    `batches` (lists of indices read and run together, as canvas_batches makes them) let the
    limit count the memory of a picture's whole batch (PixelLimit.in_batch)."""

    def __init__(self, records, read=None, limit=None, batches=()):
        self.records = records
        self.read = read
        self.limit = limit or DEFAULT_LIMIT
        self.batch_of = {index: len(batch) for batch in batches for index in batch}

    def __getitem__(self, index):
        record = self.records[index]
        try:
            if self.read is not None:
                return index, self.read(record.path)
            return index, read_image(record.path,
                                     self.limit.in_batch(self.batch_of.get(index, 1)))
        except BadImageError as exc:
            return BadImage(index, record.path, exc.reason)


@dataclass
class CanvasBatch:
    indices: list           # record indices, in batch order
    canvases: 'torch.Tensor'  # (B, H, W, 3) uint8
    borders: 'torch.Tensor'   # (B, 4) float32


@dataclass
class LoadedBatch:
    batches: list           # CanvasBatch per distinct canvas shape (almost always one)
    bad: list               # BadImage entries


def paste_batch(items, canvas, pin_memory=False):
    """Decoded images -> canvas batches, pasted straight into one (optionally pinned) buffer per
    canvas shape: no per-image canvas and no extra stacking copy. A batch whose images need
    several canvas shapes (a wrong size hint, EXIF rotation) is split by shape."""
    import torch  # here: the image sets above are read without it (export.py --if-stale)
    bad = [item for item in items if isinstance(item, BadImage)]
    by_shape = OrderedDict()
    for item in items:
        if not isinstance(item, BadImage):
            by_shape.setdefault(canvas.shape(*item[1].shape[:2]), []).append(item)
    batches = []
    for (height, width), group in by_shape.items():
        canvases = torch.empty((len(group), height, width, 3), dtype=torch.uint8,
                               pin_memory=pin_memory)  # page-locked: async copies to the GPU
        borders = torch.empty((len(group), 4), dtype=torch.float32, pin_memory=pin_memory)
        target, border_rows = canvases.numpy(), borders.numpy()
        for row, (_, image) in enumerate(group):
            border_rows[row] = canvas.paste(image, target[row])
        batches.append(CanvasBatch([index for index, _ in group], canvases, borders))
    return LoadedBatch(batches, bad)


class PrefetchLoader:
    """Loads canvas batches in background threads, at most `prefetch` batches ahead, in order.

    Threads, not DataLoader processes: the work is JPEG decoding and array copies, which release
    the GIL, and threads cost no process start-up (seconds, with torch imported) and no copy of
    every canvas between processes. On two cores that start-up alone cost a quarter of a short
    ONNX Runtime run (tools/benchmark_cpu.py).
    """

    def __init__(self, reader, canvas, batches, workers, prefetch, pin_memory=False):
        self.reader, self.canvas, self.batches = reader, canvas, batches
        self.workers, self.prefetch, self.pin_memory = workers, max(prefetch, 1), pin_memory

    def _load(self, indices):
        return paste_batch([self.reader[i] for i in indices], self.canvas, self.pin_memory)

    def __iter__(self):
        if self.workers == 0:
            yield from (self._load(indices) for indices in self.batches)
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix='canvas')
        pending = deque()
        todo = iter(self.batches)
        try:
            for indices in islice(todo, self.prefetch):
                pending.append(pool.submit(self._load, indices))
            while pending:
                loaded = pending.popleft().result()
                for indices in islice(todo, 1):
                    pending.append(pool.submit(self._load, indices))
                yield loaded
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def default_workers():
    """One decoding thread per core, at most 8: a GPU eats canvases faster than 2 cores make
    them, and past 8 the GIL-holding parts of the loader dominate."""
    return min(8, os.cpu_count() or 1)


def make_loader(records, canvas, batch_size, workers=None, prefetch_batches=4, pin_memory=False,
                read=None, limit=None):
    """Canvas-shape batches of `records`, decoded by `workers` threads (0: in the caller;
    None: default_workers()). Each thread builds a whole batch, so at least `workers` batches
    are kept in flight."""
    workers = default_workers() if workers is None else workers
    batches = canvas_batches(records, canvas, batch_size)
    return PrefetchLoader(ImageReader(records, read, limit, batches), canvas, batches,
                          workers=workers, prefetch=max(prefetch_batches, workers),
                          pin_memory=pin_memory)
