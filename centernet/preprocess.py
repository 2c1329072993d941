"""Image file -> uint8 BGR canvas + border: mmdet's test-time LoadImageFromFile + RandomCenterCropPad.

This is the only preprocessing in the kit; every backend is fed what `CenterCanvas` makes. The
normalisation ((x - mean) / std, BGR->RGB) lives inside the network (model.DataPreprocessor), so the
canvas stays uint8: a quarter of the bytes to copy to an accelerator, and exact on every backend.
"""

import os
import tempfile

import cv2
import numpy as np

from .image_header import (IMAGE_SUFFIXES, BadImageError, PixelLimit,  # noqa: F401
                           header_of_bytes, jpeg_is_complete, read_header)

# OpenCV logs its decoders' complaints ("[ WARN:0@0.1] ... TIFFRGBAImageOK: Sorry, can not handle
# images with 64-bit samples") on stderr, around the kit's own one-line refusal of the file.
# OpenCV 5 has the call in cv2.utils.logging, OpenCV 4.11 (requirements-serve.txt) as cv2.setLogLevel.
_logging = getattr(getattr(cv2, 'utils', None), 'logging', cv2)
_logging.setLogLevel(0)  # LOG_LEVEL_SILENT

# The limit decode_image and read_image apply when the caller passes none; a program may replace
# it (the CLIs pass their own, with --max_pixels and what they do with the picture next).
DEFAULT_LIMIT = PixelLimit()
_UNREADABLE = 'not a readable image (corrupt, truncated or unknown format)'


def decode_image(data: bytes, path='<bytes>', limit: PixelLimit = None) -> np.ndarray:
    """Decode like mmcv.imfrombytes(flag='color', backend='cv2'): H x W x 3 BGR uint8.

    OpenCV's IMREAD_COLOR applies EXIF orientation, turns grayscale into 3 equal channels, drops
    alpha without blending and scales 16-bit to 8-bit, exactly as mmdet sees the file. First the
    size the header declares must pass `limit` (DEFAULT_LIMIT when None). Every refusal and
    every decode failure is a BadImageError naming `path`.
    """
    if not data:
        raise BadImageError(path, 'empty file')
    header = header_of_bytes(data)
    _check(path, header, limit, file_bytes=0)  # the caller already holds the bytes
    return _decode(data, path, header)


def read_image(path, limit: PixelLimit = None) -> np.ndarray:
    """decode_image of a file, whose header is checked before the rest of it is read."""
    try:
        with open(path, 'rb') as file:
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                raise BadImageError(path, 'empty file')
            header = read_header(file)
            _check(path, header, limit, file_bytes=size)
            file.seek(0)
            data = file.read()
    except OSError as exc:
        raise BadImageError(path, f'cannot read file ({exc.strerror or exc})') from None
    return _decode(data, path, header)


def _check(path, header, limit, file_bytes):
    if header is None:
        raise BadImageError(path, _UNREADABLE)
    (limit or DEFAULT_LIMIT).check(path, header, file_bytes)


def _decode(data, path, header):
    # libjpeg decodes a cut-off JPEG without error (the missing rows come out grey); mmdet would
    # score that image silently. Data after a complete JPEG is not part of it, for libjpeg too.
    if header.format == 'jpeg' and jpeg_is_complete(data) is False:
        raise BadImageError(path, 'truncated JPEG (the data ends before its end-of-image marker)')
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own checks (its pixel cap, a broken header)
        detail = exc.err
        if 'CV_IO_MAX_IMAGE' in detail:
            detail += ': over OpenCV\'s own size limit, which the environment variables ' \
                'OPENCV_IO_MAX_IMAGE_PIXELS/_WIDTH/_HEIGHT raise'
        raise BadImageError(path, f'OpenCV cannot decode it ({detail})') from None
    except MemoryError:
        raise BadImageError(path, 'not enough memory to decode it') from None
    if image is None:
        raise BadImageError(path, _UNREADABLE if _has_decoder(data) else _no_decoder(header))
    return image


def _has_decoder(data):
    """Whether this OpenCV has a decoder for the format `data` starts with; True when that
    cannot be asked (the generic reason is then given). Only called after a failed decode."""
    # cv2.haveImageReader looks at a file's signature only: the first bytes are enough.
    try:
        with tempfile.NamedTemporaryFile(suffix='.img') as head:
            head.write(data[:64])
            head.flush()
            return cv2.haveImageReader(head.name)
    except OSError:  # no writable temporary folder (full, read-only): not worth a second error
        return True


def _no_decoder(header):
    # OpenCV 4.11 (what requirements-serve.txt's numpy<2 allows) has no GIF or AVIF decoder;
    # mmdet, which decodes with the same OpenCV, could not read the file either.
    name = {'iso': 'AVIF'}.get(header.format, header.format.upper())
    return (f'this OpenCV ({cv2.__version__}) has no {name} decoder: convert '
            'the picture to PNG or JPEG')


class CenterCanvas:
    """Paste the whole image, unscaled and centred, on a canvas of `(side | 31) + 1` per axis.

    The border is mmdet's `[top, bottom, left, right]` (float32): the decoder subtracts left from
    x and top from y to return to original-image pixels.
    """

    def __init__(self, spec):
        self.spec = spec
        self.fill = np.array(spec.canvas_fill, np.uint8)

    def shape(self, height, width):
        """Canvas (height, width) for an image of this size: always a multiple of 32, > the side."""
        return self.spec.canvas_side(height), self.spec.canvas_side(width)

    def paste(self, image, canvas):
        """Fill `canvas` (its shape is self.shape(h, w) + (3,)) and paste `image` centred on it;
        returns the border. The loader pastes straight into its batch buffer this way."""
        height, width = image.shape[:2]
        canvas_h, canvas_w = canvas.shape[:2]
        top, left = canvas_h // 2 - height // 2, canvas_w // 2 - width // 2
        canvas[...] = self.fill
        canvas[top:top + height, left:left + width] = image
        return np.array([top, top + height, left, left + width], np.float32)

    def __call__(self, image):
        """image -> (canvas, border) for one image."""
        canvas = np.empty(self.shape(*image.shape[:2]) + (3,), np.uint8)
        return canvas, self.paste(image, canvas)
