"""The Python-backend model that Triton runs for this kit: one process per model instance.

Triton's dynamic batcher hands `execute` a list of requests, and each request is answered on its
own: an image that preprocess.decode_image refuses (not an image, truncated, a size bomb), or
whose canvas is larger than the served model takes, gets an error response (HTTP 400, gRPC
INVALID_ARGUMENT) and the other requests of the batch get their detections. PyTriton's bind()
cannot answer that way: its proxy fails every request of a batch when the callable raises
(nvidia-pytriton 0.7.0, proxy/model.py), so the kit serves this model on the tritonserver that
PyTriton ships (server.py) and on a stand-alone tritonserver alike.

The role (config parameter centernet.role, see repository.py):
    detector     image bytes -> detections: decode_image, paste_batch (one canvas batch per
                 shape, as inference.py's loader), pipeline.Detector, one response per request
    preprocess   image bytes -> canvas + border               (ensemble step 1)
    network      canvas -> heads through the kit's backend     (ensemble step 2, where no native
                                                                Triton backend runs the model)
    postprocess  heads + border -> detections (decode_heads)   (ensemble step 3)
Nothing here decodes, pastes or decodes heads itself: those are the kit's own functions.
"""

import json
from pathlib import Path

import numpy as np

from . import contract
from ..errors import UserError


class TritonPythonModel:
    """Triton's entry point (the class name is the Python backend's contract)."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils
        config = json.loads(args['model_config'])
        parameters = {key: value['string_value']
                      for key, value in config.get('parameters', {}).items()}
        folder = Path(args['model_repository']) / args['model_version']
        gpu = int(args['model_instance_device_id']) if args['model_instance_kind'] == 'GPU' \
            else None
        role = ROLES[parameters[contract.ROLE]]
        try:
            self.step = role(parameters, folder, gpu)
        except UserError as exc:  # one line in Triton's log, which serve.py reports
            raise pb_utils.TritonModelException(str(exc)) from None
        self.responses = Responses(pb_utils)

    def execute(self, requests):
        return self.step.execute(requests, self.responses)

    def finalize(self):
        close = getattr(self.step, 'close', None)
        if close is not None:
            close()


class Responses:
    """Reading request tensors and making responses, through triton_python_backend_utils."""

    def __init__(self, pb_utils):
        self.pb = pb_utils

    def input(self, request, name):
        return self.pb.get_input_tensor_by_name(request, name).as_numpy()

    def answer(self, outputs):
        return self.pb.InferenceResponse(
            output_tensors=[self.pb.Tensor(name, value) for name, value in outputs.items()])

    def refuse(self, message):
        return self.pb.InferenceResponse(
            error=self.pb.TritonError(message, self.pb.TritonError.INVALID_ARG))


def open_model(parameters, folder, gpu):
    """The kit's backend, opened as inference.py opens it (backends.open_backend)."""
    from ..backends import open_backend
    options = json.loads(parameters[contract.OPTIONS])
    if gpu is not None:  # a KIND_GPU instance runs on the GPU Triton gave it
        import torch
        torch.cuda.set_device(gpu)
        if options.get('device'):
            options['device'] = f'cuda:{gpu}'
    config_file = parameters.get(contract.CONFIG_FILE)
    return open_backend(parameters[contract.BACKEND], str(folder / parameters[contract.MODEL_FILE]),
                        cfg=str(folder / config_file) if config_file else None, **options)


class ClassTable:
    """Model label index -> COCO category id and class name, as output arrays."""

    def __init__(self, classes):
        from coco_labels import COCO_CATEGORY_IDS, COCO_CLASSES
        coco = dict(zip(COCO_CLASSES, COCO_CATEGORY_IDS))
        self.names = np.array([name.encode() for name in classes], dtype=object)
        self.category_ids = np.array([coco.get(name, -1) for name in classes], np.int32)

    def outputs(self, boxes, scores, labels):
        labels = np.asarray(labels, np.int64)
        return dict(boxes=np.asarray(boxes, np.float32), scores=np.asarray(scores, np.float32),
                    labels=labels, category_ids=self.category_ids[labels],
                    names=self.names[labels])


class RequestImages:
    """The decoded images of a batch of requests, with the requests that were refused.

    `items` is what dataset.paste_batch takes: (image number, image) per decoded image, image
    numbers running over the whole batch; `owner[i]` is the request image i came from. The
    images are decoded by `decoder` threads (OpenCV releases the GIL), as inference.py's loader
    decodes them.
    """

    def __init__(self, requests, responses, canvas, max_canvas, decoder):
        self.items, self.owner, self.refused, self.counts = [], [], {}, []
        payloads = []
        for number, request in enumerate(requests):
            data = responses.input(request, contract.IMAGE).reshape(-1)
            self.counts.append(len(data))
            self.owner.extend([number] * len(data))
            payloads.extend(data)
        decoded = decoder.map(lambda payload: _decoded(payload, canvas, max_canvas), payloads)
        for index, (image, problem) in enumerate(decoded):
            if problem is None:
                self.items.append((index, image))
            else:
                self.refused.setdefault(self.owner[index], problem)

    def refuse(self, indices, message):
        for index in indices:
            self.refused.setdefault(self.owner[index], message)

    def rows(self, number):
        """This request's image numbers."""
        start = sum(self.counts[:number])
        return np.arange(start, start + self.counts[number])


def _decoded(payload, canvas, max_canvas):
    """(image, None), or (None, why it is refused)."""
    try:
        return read_image(payload, canvas, max_canvas), None
    except UserError as exc:  # preprocess.BadImageError is one
        return None, str(exc)


def decoder_threads():
    """The decoding threads of one model instance: one per core, at most 8 (the loader's)."""
    from concurrent.futures import ThreadPoolExecutor
    from ..dataset import default_workers
    return ThreadPoolExecutor(default_workers(), thread_name_prefix='decode')


def read_image(payload, canvas, max_canvas):
    """Request bytes -> decoded image (preprocess.decode_image: inference.py's decoding), refused
    if its canvas is larger than `max_canvas` (height, width). The size comes from the header
    first (image_header: the size OpenCV will decode, EXIF rotation applied), so a small file
    that declares a huge picture is refused before it costs a decode; the decoded size is
    checked again, in case a header and its pixels disagree."""
    from ..preprocess import decode_image, header_of_bytes
    data = bytes(payload)
    header = header_of_bytes(data)
    if header is not None:
        _check_canvas(header.width, header.height, canvas, max_canvas)
    image = decode_image(data, 'image')
    _check_canvas(image.shape[1], image.shape[0], canvas, max_canvas)
    return image


def _check_canvas(width, height, canvas, max_canvas):
    from ..preprocess import BadImageError
    canvas_height, canvas_width = canvas.shape(height, width)
    if canvas_height > max_canvas[0] or canvas_width > max_canvas[1]:
        raise BadImageError('image', f'{width}x{height} pixels needs a {canvas_width}x'
                            f'{canvas_height} canvas, larger than the served model takes '
                            f'({max_canvas[1]}x{max_canvas[0]}): send a smaller image')


class DetectorStep:
    """Image bytes -> detections, every backend: the accuracy mode's path, request by request."""

    def __init__(self, parameters, folder, gpu):
        from ..pipeline import Detector
        self.detector = Detector(open_model(parameters, folder, gpu))
        self.max_canvas = tuple(json.loads(parameters[contract.MAX_CANVAS]))
        self.classes = ClassTable(self.detector.backend.classes)
        self.decoder = decoder_threads()

    def close(self):
        self.decoder.shutdown()
        self.detector.backend.close()

    def execute(self, requests, responses):
        from ..dataset import paste_batch
        detector = self.detector
        images = RequestImages(requests, responses, detector.canvas, self.max_canvas,
                               self.decoder)
        loaded = paste_batch(images.items, detector.canvas,
                             pin_memory=detector.backend.device.type == 'cuda')
        topk = detector.spec.topk
        boxes = np.zeros((len(images.owner), topk, 4), np.float32)
        scores = np.zeros((len(images.owner), topk), np.float32)
        labels = np.zeros((len(images.owner), topk), np.int64)
        launched = []
        for batch in loaded.batches:  # one canvas shape each: batch 32 computes as batch 1
            try:
                launched.append((batch.indices, detector.launch(batch.canvases, batch.borders)))
            except UserError as exc:  # a canvas shape the model does not take
                images.refuse(batch.indices, f'image: {exc}')
        for indices, pending in launched:
            boxes[indices], scores[indices], labels[indices] = pending.wait()
        answers = []
        for number in range(len(requests)):
            if number in images.refused:
                answers.append(responses.refuse(images.refused[number]))
            else:
                rows = images.rows(number)
                answers.append(responses.answer(
                    self.classes.outputs(boxes[rows], scores[rows], labels[rows])))
        return answers


class PreprocessStep:
    """Image bytes -> canvas (uint8 BGR) + border, as inference.py's loader pastes them."""

    def __init__(self, parameters, folder, gpu):
        from ..config import CenterNetSpec
        from ..preprocess import CenterCanvas
        self.canvas = CenterCanvas(CenterNetSpec.from_dict(json.loads(parameters[contract.SPEC])))
        self.max_canvas = tuple(json.loads(parameters[contract.MAX_CANVAS]))
        self.decoder = decoder_threads()

    def close(self):
        self.decoder.shutdown()

    def execute(self, requests, responses):
        from ..dataset import paste_batch
        images = RequestImages(requests, responses, self.canvas, self.max_canvas, self.decoder)
        loaded = paste_batch(images.items, self.canvas)
        by_image = {}
        for batch in loaded.batches:
            for row, index in enumerate(batch.indices):
                by_image[index] = batch.canvases[row].numpy(), batch.borders[row].numpy()
        answers = []
        for number in range(len(requests)):
            rows = images.rows(number)
            if number in images.refused:
                answers.append(responses.refuse(images.refused[number]))
                continue
            canvases = [by_image[index][0] for index in rows]
            if len({c.shape for c in canvases}) > 1:
                answers.append(responses.refuse(
                    'image: the images of one request need one canvas size here (an ensemble '
                    'step batches equal shapes): send one image per request'))
                continue
            answers.append(responses.answer({
                contract.CANVAS: np.stack(canvases),
                contract.BORDER: np.stack([by_image[index][1] for index in rows])}))
        return answers


def _by_shape(arrays):
    """Request numbers grouped by their first input's shape (after the batch dimension)."""
    groups = {}
    for number, array in enumerate(arrays):
        groups.setdefault(array.shape[1:], []).append(number)
    return groups.values()


class NetworkStep:
    """Canvas -> heatmap, wh, offset through the kit's backend (TRT-RTX, torch: no native
    Triton backend runs them)."""

    def __init__(self, parameters, folder, gpu):
        self.backend = open_model(parameters, folder, gpu)

    def close(self):
        self.backend.close()

    def execute(self, requests, responses):
        import torch
        canvases = [responses.input(request, contract.CANVAS) for request in requests]
        answers = [None] * len(requests)
        for numbers in _by_shape(canvases):
            batch = torch.from_numpy(np.concatenate([canvases[n] for n in numbers]))
            heads = [h.float().cpu().numpy() for h in self.backend.infer(batch)]
            start = 0
            for number in numbers:
                count = len(canvases[number])
                answers[number] = responses.answer(
                    {name: head[start:start + count] for name, head in zip(contract.HEADS, heads)})
                start += count
        return answers


class PostprocessStep:
    """Heads + border -> detections: pipeline.decode_batch (the Detector's decode) on the CPU."""

    def __init__(self, parameters, folder, gpu):
        from ..config import CenterNetSpec
        self.spec = CenterNetSpec.from_dict(json.loads(parameters[contract.SPEC]))
        self.classes = ClassTable(json.loads(parameters[contract.CLASSES]))

    def execute(self, requests, responses):
        import torch
        from ..pipeline import decode_batch
        heads = [[responses.input(request, name) for name in contract.HEADS]
                 for request in requests]
        borders = [responses.input(request, contract.BORDER) for request in requests]
        answers = [None] * len(requests)
        for numbers in _by_shape([h[0] for h in heads]):
            batch = [torch.from_numpy(np.concatenate([heads[n][i] for n in numbers]))
                     for i in range(len(contract.HEADS))]
            found = decode_batch(self.spec, batch, np.concatenate([borders[n] for n in numbers]),
                                 'cpu')
            boxes, scores, labels = (t.numpy() for t in found)
            start = 0
            for number in numbers:
                rows = slice(start, start + len(borders[number]))
                answers[number] = responses.answer(
                    self.classes.outputs(boxes[rows], scores[rows], labels[rows]))
                start += len(borders[number])
        return answers


ROLES = dict(detector=DetectorStep, preprocess=PreprocessStep, network=NetworkStep,
             postprocess=PostprocessStep)
