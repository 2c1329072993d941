"""Image file -> uint8 BGR canvas + border: mmdet's test-time LoadImageFromFile + RandomCenterCropPad.

This is the only preprocessing in the kit; every backend is fed what `CenterCanvas` makes. The
normalisation ((x - mean) / std, BGR->RGB) lives inside the network (model.DataPreprocessor), so the
canvas stays uint8: a quarter of the bytes to copy to an accelerator, and exact on every backend.
"""

from pathlib import Path

import cv2
import numpy as np

from .errors import UserError

_JPEG_SOI, _JPEG_SOS, _JPEG_EOI = b'\xff\xd8', b'\xff\xda', b'\xff\xd9'


class BadImageError(UserError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""

    def __init__(self, path, reason):
        super().__init__(f'{path}: {reason}')
        self.path = str(path)
        self.reason = reason


def decode_image(data: bytes, path='<bytes>') -> np.ndarray:
    """Decode like mmcv.imfrombytes(flag='color', backend='cv2'): H x W x 3 BGR uint8.

    OpenCV's IMREAD_COLOR applies EXIF orientation, turns grayscale into 3 equal channels, drops
    alpha without blending and scales 16-bit to 8-bit, exactly as mmdet sees the file.
    """
    if not data:
        raise BadImageError(path, 'empty file')
    # libjpeg decodes a cut-off JPEG without error (the missing rows come out grey); mmdet would
    # score that image silently. A complete JPEG ends its last scan (SOS) with an EOI marker, and
    # neither marker can occur inside entropy-coded data, so compare their last positions.
    if data.startswith(_JPEG_SOI) and data.rfind(_JPEG_EOI) < data.rfind(_JPEG_SOS):
        raise BadImageError(path, 'truncated JPEG (no end-of-image marker after the last scan)')
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImageError(path, 'not a readable image (corrupt, truncated or unknown format)')
    return image


def read_image(path) -> np.ndarray:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadImageError(path, f'cannot read file ({exc.strerror or exc})') from None
    return decode_image(data, path)


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
