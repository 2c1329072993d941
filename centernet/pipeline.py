"""The detector: backend + decode, and the loop that runs it over an image set.

    loader (workers: file -> canvas)  ->  backend.infer (network)  ->  decode_heads  ->  arrays
"""

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .dataset import make_loader
from .decode import decode_heads
from .preprocess import BadImageError, CenterCanvas
from .timing import StageTimer


class Detector:
    """Canvas batch -> (boxes, scores, labels) on the host; decode runs on the backend's device."""

    def __init__(self, backend):
        self.backend = backend
        self.spec = backend.spec
        self.canvas = CenterCanvas(backend.spec)

    def heads(self, canvases):
        return self.backend.infer(canvases)

    def decode(self, heads, borders):
        return decode_batch(self.spec, heads, borders, self.backend.device)

    @torch.inference_mode()
    def launch(self, canvases, borders, timer=None):
        """Queue network + decode for a batch; returns a HostResults to `wait()` on later.

        On a GPU nothing here blocks the host: the caller can launch the next batch (whose
        upload then overlaps this one's compute) before waiting for this one. `timer`
        (timing.StageTimer) gets the host seconds of each part.
        """
        stage = timer.stage if timer is not None else _untimed
        with stage('network'):
            heads = self.heads(canvases)
        with stage('decode'):
            return HostResults(self.decode(heads, borders))

    def __call__(self, canvases, borders):
        """(boxes, scores, labels) as numpy arrays, for one batch."""
        return self.launch(canvases, borders).wait()


def decode_batch(spec, heads, borders, device):
    """(boxes, scores, labels) of a batch of heads, on `device`: the Detector's decode, also the
    served ensemble's decode step (serving.triton_model)."""
    borders = torch.as_tensor(borders).to(device, non_blocking=True)
    return decode_heads(*heads, borders, stride=spec.stride, topk=spec.topk,
                        kernel=spec.local_maximum_kernel)


def _untimed(stage):
    return contextlib.nullcontext()


class HostResults:
    """Final detections on their way to the host: on a GPU an asynchronous copy into pinned
    memory and an event, so waiting for one batch does not wait for the batches queued after."""

    def __init__(self, tensors):
        self.event = None
        if tensors[0].device.type == 'cuda':
            tensors = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(
                t, non_blocking=True) for t in tensors]
            self.event = torch.cuda.Event()
            self.event.record()
        self.tensors = tensors

    def wait(self):
        if self.event is not None:
            self.event.synchronize()
        return tuple(t.numpy() for t in self.tensors)


@dataclass
class Detections:
    """Results for a record list, in record order; rows of bad images stay empty (done=False)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    done: np.ndarray
    bad: list = field(default_factory=list)
    seconds: float = 0.0
    wait_seconds: float = 0.0  # time the engine waited for the loader
    batches: int = 0
    shapes: dict = field(default_factory=dict)  # canvas (H, W) -> images

    @property
    def arrays(self):
        """(boxes, scores, labels), what compare.match_rate takes."""
        return self.boxes, self.scores, self.labels

    @classmethod
    def empty(cls, count, topk):
        return cls(np.zeros((count, topk, 4), np.float32), np.zeros((count, topk), np.float32),
                   np.zeros((count, topk), np.int64), np.zeros(count, bool))


def detect_records(detector, records, batch_size, workers=None, skip_bad_images=False,
                   progress=True, description='detect', estimate=False, read=None, timer=None,
                   limit=None):
    """Run `detector` over `records` in canvas-shape batches; returns Detections in record order.

    A bad image raises BadImageError (file name + reason) unless `skip_bad_images`, which keeps
    it as an image without detections and lists it in `Detections.bad`. `estimate` prints the
    expected run time once a few batches are timed; `read` replaces preprocess.read_image (the
    picture demo shrinks large photos with it); `limit` (preprocess.PixelLimit) is what the
    default reader refuses. `timer` (timing.StageTimer) gets loader wait, network, decode and
    device-wait seconds.
    """
    timer = timer if timer is not None else StageTimer()
    pin = detector.backend.device.type == 'cuda'
    loader = make_loader(records, detector.canvas, batch_size, workers=workers, pin_memory=pin,
                         read=read, limit=limit)
    result = Detections.empty(len(records), detector.spec.topk)
    bar = tqdm(total=len(records), desc=description, unit='img', disable=not progress,
               dynamic_ncols=True)
    if estimate:
        bar = RunTimeEstimate(bar, len(records))
    start = time.perf_counter()
    waited_since = start
    in_flight = None  # (batch, HostResults): one batch launched ahead of the one being stored
    try:
        for loaded in loader:
            waited = time.perf_counter() - waited_since
            result.wait_seconds += waited
            timer.add('loader_wait', waited)
            for bad in loaded.bad:
                keep_bad_image(result, bad, skip_bad_images)
                bar.update(1)
            for batch in loaded.batches:
                launched = (batch, detector.launch(batch.canvases, batch.borders, timer))
                if in_flight is not None:
                    _store(result, *in_flight, bar, timer)
                in_flight = launched
            waited_since = time.perf_counter()
        if in_flight is not None:
            _store(result, *in_flight, bar, timer)
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start
    return result


def keep_bad_image(result, bad, skip_bad_images):
    """A bad image (dataset.BadImage) stops the run with its reason, unless --skip_bad_images
    keeps it in `result.bad` as an image without detections."""
    if not skip_bad_images:
        raise BadImageError(bad.path, bad.reason + ' (use --skip_bad_images to count it as an '
                            'image without detections and go on)')
    result.bad.append(bad)


class RunTimeEstimate:
    """Wraps the progress bar: after a few batches, print once how long the whole run will take.

    The first batch is left out of the rate: it carries the start-up (thread pool, first
    kernels, autotuning)."""

    AFTER_BATCHES = 3

    def __init__(self, bar, total):
        self.bar, self.total = bar, total
        self.updates, self.done, self.first = 0, 0, None

    def update(self, count):
        self.bar.update(count)
        self.updates += 1
        self.done += count
        now = time.perf_counter()
        if self.first is None:
            self.first, self.done_at_first = now, self.done
            return
        if self.updates == self.AFTER_BATCHES and self.done < self.total:
            rate = (self.done - self.done_at_first) / max(now - self.first, 1e-9)
            seconds = (self.total - self.done) / rate
            tqdm.write(f'estimate: about {format_duration(seconds)} more for the remaining '
                       f'{self.total - self.done} of {self.total} images at {rate:.1f} img/s')

    def close(self):
        self.bar.close()


def format_duration(seconds):
    if seconds < 90:
        return f'{seconds:.0f} s'
    if seconds < 90 * 60:
        return f'{seconds / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'


def _store(result, batch, pending, bar, timer):
    with timer.stage('device_wait'):
        boxes, scores, labels = pending.wait()
    index = np.asarray(batch.indices)
    result.boxes[index], result.scores[index], result.labels[index] = boxes, scores, labels
    result.done[index] = True
    shape = tuple(batch.canvases.shape[1:3])
    result.shapes[shape] = result.shapes.get(shape, 0) + len(index)
    result.batches += 1
    bar.update(len(index))


def folder_ap(backend, folder, batch_size=32):
    """(COCO AP@[.5:.95], (boxes, scores, labels) per image) of `backend` on a COCO-layout
    folder, through the same loader, detector and evaluation as inference.py (faster-coco-eval,
    no progress bar); for the tools that compare models (stand-in training, precision
    benchmarks), not a second inference path."""
    from .dataset import CocoImageSet
    from .evaluate import evaluate_coco, to_coco_results
    images = CocoImageSet(folder, backend.classes)
    found = detect_records(Detector(backend), images.records, batch_size, workers=0,
                           progress=False)
    ids = np.array([r.image_id for r in images.records])
    results = to_coco_results(ids, found.boxes, found.scores, found.labels, images.cat_ids)
    ap = evaluate_coco(images.coco, results, images.cat_ids, verbose=False,
                       evaluator='faster')['mAP']
    return ap, (found.boxes, found.scores, found.labels)
